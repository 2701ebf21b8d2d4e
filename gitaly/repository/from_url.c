/* CreateRepositoryFromURL: the creation routine seeded by git clone. */
#include "repository/repository.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include "base/banned.h"

struct from_url_op {
	struct gitaly_call op;
	struct reposvc_create *rc;
	struct git_cmd *cmd;
	char *url;
	int mirror;
	struct strvec env;             /* credentials as GIT_CONFIG_* */
	struct strbuf tmp_path;
	const Gitaly__Repository *tmp_repo;
};

static void from_url_release(struct gitaly_call *op)
{
	struct from_url_op *f = container_of(op, struct from_url_op, op);
	free(f->url);
	strvec_clear(&f->env);
	strbuf_release(&f->tmp_path);
	free(f);
}

static void from_url_cancel(struct gitaly_call *op)
{
	struct from_url_op *f = container_of(op, struct from_url_op, op);
	reposvc_create_cancel(f->rc);
	reposvc_kill(f->cmd);
}

static void percent_decode(struct strbuf *out, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%' && i + 2 < len && hex_digit(s[i + 1]) >= 0 && hex_digit(s[i + 2]) >= 0) {
			strbuf_addch(out, hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
			i += 2;
		} else {
			strbuf_addch(out, s[i]);
		}
	}
}

static void add_config_env(struct strvec *env, size_t *nr, const char *key, const char *value)
{
	strvec_pushf(env, "GIT_CONFIG_KEY_%zu=%s", *nr, key);
	strvec_pushf(env, "GIT_CONFIG_VALUE_%zu=%s", *nr, value);
	(*nr)++;
}

/*
 * Take credentials out of the URL into an Authorization header, pin DNS when
 * asked, and pass the secrets through the environment (never argv).
 */
static int prepare_clone(struct from_url_op *f, const Gitaly__CreateRepositoryFromURLRequest *req,
			 struct strbuf *err)
{
	const char *url = req->url, *scheme_end = strstr(url, "://");
	struct strbuf u = STRBUF_INIT, header = STRBUF_INIT, creds = STRBUF_INIT;
	size_t nr = 0;
	int rc = 0;

	strbuf_addstr(&u, url);
	if (scheme_end) {
		const char *auth = scheme_end + 3;
		size_t alen = strcspn(auth, "/?#");
		const char *at = NULL;
		for (size_t i = 0; i < alen; i++)
			if (auth[i] == '@')
				at = auth + i;
		if (at) {
			const char *colon = memchr(auth, ':', (size_t)(at - auth));
			if (colon) {
				percent_decode(&creds, auth, (size_t)(colon - auth));
				strbuf_addch(&creds, ':');
				percent_decode(&creds, colon + 1, (size_t)(at - colon - 1));
			} else {
				percent_decode(&creds, auth, (size_t)(at - auth));
			}
			strbuf_reset(&u);
			strbuf_add(&u, url, (size_t)(auth - url));
			strbuf_addstr(&u, at + 1);
			strbuf_addstr(&header, "Authorization: Basic ");
			{
				struct strbuf b64 = STRBUF_INIT;
				grpc_base64_encode(&b64, creds.buf, creds.len);
				while (b64.len % 4)
					strbuf_addch(&b64, '=');
				strbuf_add(&header, b64.buf, b64.len);
				strbuf_release(&b64);
			}
		}
	}
	if (!header.len && req->http_authorization_header && *req->http_authorization_header)
		strbuf_addf(&header, "Authorization: %s", req->http_authorization_header);
	if (header.len)
		add_config_env(&f->env, &nr, "http.extraHeader", header.buf);

	if (req->resolved_address && *req->resolved_address) {
		const char *ra = req->resolved_address;
		unsigned char ip[16];
		if (inet_pton(AF_INET, ra, ip) != 1 && inet_pton(AF_INET6, ra, ip) != 1) {
			strbuf_addstr(err, "couldn't get curloptResolve config: resolved address has invalid IPv4/IPv6 address");
			rc = -1;
			goto out;
		}
		if (!strncmp(u.buf, "http://", 7) || !strncmp(u.buf, "https://", 8) || !strncmp(u.buf, "git://", 6)) {
			const char *host = strstr(u.buf, "://") + 3;
			size_t hl = strcspn(host, "/?#");
			struct strbuf hp = STRBUF_INIT, kv = STRBUF_INIT;
			const char *port;
			strbuf_add(&hp, host, hl);
			/* [v6]:port or host:port */
			port = hp.buf[0] == '[' ? strstr(hp.buf, "]:") : strrchr(hp.buf, ':');
			if (port && hp.buf[0] == '[')
				port++;
			if (port) {
				strbuf_addf(&kv, "%.*s:%s:%s", (int)(port - hp.buf), hp.buf, port + 1, ra);
			} else {
				const char *def = !strncmp(u.buf, "https", 5) ? "443" : !strncmp(u.buf, "git", 3) ? "9418" : "80";
				strbuf_addf(&kv, "%s:%s:%s", hp.buf, def, ra);
			}
			/* http.curloptResolve wants the bare host, without IPv6 brackets */
			if (kv.buf[0] == '[') {
				char *close = strchr(kv.buf, ']');
				if (close) {
					memmove(close, close + 1, strlen(close + 1) + 1);
					memmove(kv.buf, kv.buf + 1, strlen(kv.buf));
				}
			}
			add_config_env(&f->env, &nr, "http.curloptResolve", kv.buf);
			strbuf_release(&hp);
			strbuf_release(&kv);
		} else if (!strncmp(u.buf, "ssh://", 6)) {
			const char *host = u.buf + 6;
			size_t hl = strcspn(host, "/?#");
			const char *at = memchr(host, '@', hl);
			const char *h = at ? at + 1 : host;
			size_t rest = hl - (size_t)(h - host);
			const char *colon = memchr(h, ':', rest);
			struct strbuf n = STRBUF_INIT;
			strbuf_add(&n, u.buf, (size_t)(h - u.buf));
			strbuf_addstr(&n, ra);
			if (colon)
				strbuf_add(&n, colon, rest - (size_t)(colon - h));
			strbuf_addstr(&n, h + rest);
			strbuf_reset(&u);
			strbuf_add(&u, n.buf, n.len);
			strbuf_release(&n);
		} else {
			const char *colon = strchr(u.buf, ':');
			const char *at = strchr(u.buf, '@');
			struct strbuf n = STRBUF_INIT;
			if (!colon || memchr(u.buf, '/', (size_t)(colon - u.buf))) {
				strbuf_addf(err, "couldn't get curloptResolve config: invalid protocol/URL encountered: %s",
					    u.buf);
				rc = -1;
				goto out;
			}
			if (at && at < colon)
				strbuf_add(&n, u.buf, (size_t)(at - u.buf) + 1);
			strbuf_addf(&n, "%s%s", ra, colon);
			strbuf_reset(&u);
			strbuf_add(&u, n.buf, n.len);
			strbuf_release(&n);
		}
	}
	if (nr)
		strvec_pushf(&f->env, "GIT_CONFIG_COUNT=%zu", nr);
	f->url = strbuf_detach(&u, NULL);
out:
	strbuf_release(&u);
	strbuf_release(&header);
	strbuf_release(&creds);
	return rc;
}

static void remove_origin_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct from_url_op *f = arg;
	struct reposvc_create *rc = f->rc;
	f->cmd = NULL;
	if (status != 0) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addstr(&m, "removing origin remote: remote cmd wait: ");
		gitaly_describe_status(&m, status);
		reposvc_create_seeded(rc, GRPC_INTERNAL, m.buf);
		strbuf_release(&m);
		return;
	}
	reposvc_create_seeded(rc, GRPC_OK, NULL);
}

static void clone_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct from_url_op *f = arg;
	struct reposvc_create *rc = f->rc;
	static const char *const args[] = { "remove", "origin", NULL };
	struct git_call gc = { 0 };
	struct strbuf m = STRBUF_INIT;

	f->cmd = NULL;
	if (status != 0) {
		struct log_entry e;
		strbuf_addstr(&m, "cloning repository: ");
		gitaly_describe_status(&m, status);
		if (log_begin(&e, LOG_WARN, "clone failed")) {
			log_strn(&e, "stderr", err->buf, err->len);
			log_end(&e);
		}
		reposvc_create_seeded(rc, GRPC_INTERNAL, m.buf);
		strbuf_release(&m);
		return;
	}
	if (gitaly_call_gone(&f->op)) {
		reposvc_create_seeded(rc, GRPC_CANCELLED, "context canceled");
		return;
	}
	gc.git_dir = f->tmp_path.buf;
	gc.repo = f->tmp_repo;
	gc.subcmd = "remote";
	gc.args = args;
	gc.hooks = HOOK_REFERENCE_TRANSACTION;
	gc.rpc = f->op.call;
	if (gitaly_git_capture(f->op.g, &gc, NULL, 0, 64 * 1024, remove_origin_done, f, &f->cmd, &m) < 0)
		reposvc_create_seeded(rc, GRPC_INTERNAL, m.buf);
	strbuf_release(&m);
}

static void clone_seed(struct reposvc_create *rc, const char *tmp_path, const Gitaly__Repository *tmp_repo)
{
	struct from_url_op *f = reposvc_create_data(rc);
	const char *flags[] = { "--quiet", f->mirror ? "--mirror" : "--bare", NULL };
	const char *args[] = { f->url, tmp_path, NULL };
	struct git_call gc = { 0 };
	struct strbuf m = STRBUF_INIT;

	f->rc = rc;
	strbuf_addstr(&f->tmp_path, tmp_path);
	f->tmp_repo = tmp_repo;
	gc.subcmd = "clone";
	gc.flags = flags;
	gc.args = args;
	gc.env = f->env.v;
	/* hooks disabled: nothing to vote on in a repository nobody can see yet */
	if (gitaly_git_capture(f->op.g, &gc, NULL, 0, 64 * 1024, clone_done, f, &f->cmd, &m) < 0)
		reposvc_create_seeded(rc, GRPC_INTERNAL, m.buf);
	strbuf_release(&m);
}

static void from_url_done(struct reposvc_create *rc, enum grpc_code code, const char *msg)
{
	struct from_url_op *f = reposvc_create_data(rc);
	f->rc = NULL;
	if (code == GRPC_OK) {
		Gitaly__CreateRepositoryFromURLResponse resp = GITALY__CREATE_REPOSITORY_FROM_URLRESPONSE__INIT;
		reposvc_reply(&f->op, &resp);
	} else {
		reposvc_finishf(&f->op, code, "creating repository: %s", msg);
	}
}

void reposvc_create_from_url(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__CreateRepositoryFromURLRequest *req =
		msg_unpack(call, &gitaly__create_repository_from_urlrequest__descriptor, buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	struct reposvc_create_opts opts = { 0 };
	struct from_url_op *f;
	enum grpc_code code;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, LOCATE_NO_EXIST_CHECK, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto out;
	}
	if (!req->url || !*req->url) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "empty Url", NULL);
		goto out;
	}
	f = xcalloc(1, sizeof(*f));
	reposvc_init(&f->op, g, call, from_url_release);
	f->op.cancel = from_url_cancel;
	f->mirror = req->mirror;
	strvec_init(&f->env);
	strbuf_init(&f->tmp_path, 0);
	if (prepare_clone(f, req, &msg) < 0) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "creating repository: %s", msg.buf);
		from_url_release(&f->op);
		goto out;
	}
	opts.skip_init = 1;
	opts.seed = clone_seed;
	opts.done = from_url_done;
	opts.data = f;
	code = reposvc_create_start(&f->op, req->repository, &opts, &f->rc, &msg);
	if (code != GRPC_OK) {
		grpc_call_finishf(call, code, "creating repository: %s", msg.buf);
		from_url_release(&f->op);
		goto out;
	}
	gitaly_call_watch(&f->op);
out:
	strbuf_release(&path);
	strbuf_release(&msg);
	msg_free(req);
}
