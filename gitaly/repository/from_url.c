/* CreateRepositoryFromURL: the creation routine seeded by git clone. */
#include "repository/repository.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <stdlib.h>
#include <string.h>
#include "base/banned.h"

struct from_url_op {
	struct gitaly_call op;
	struct reposvc_create *rc;
	struct git_cmd *cmd;
	char *url;
	int mirror;
	struct reposvc_remote remote;  /* credentials as GIT_CONFIG_* (remote_config.c) */
	struct strbuf tmp_path;
	const Gitaly__Repository *tmp_repo;
};

static void from_url_release(struct gitaly_call *op)
{
	struct from_url_op *f = container_of(op, struct from_url_op, op);
	free(f->url);
	reposvc_remote_release(&f->remote);
	strbuf_release(&f->tmp_path);
	free(f);
}

static void from_url_cancel(struct gitaly_call *op)
{
	struct from_url_op *f = container_of(op, struct from_url_op, op);
	reposvc_create_cancel(f->rc);
	reposvc_kill(f->cmd);
}

/*
 * Take credentials out of the URL into an Authorization header, pin DNS when
 * asked, and pass the secrets through the environment (never argv).
 */
static int prepare_clone(struct from_url_op *f, const Gitaly__CreateRepositoryFromURLRequest *req,
			 struct strbuf *err)
{
	const char *url = req->url, *host = NULL;
	struct strbuf u = STRBUF_INIT, header = STRBUF_INIT, user = STRBUF_INIT, pass = STRBUF_INIT;
	int rc = 0;

	strbuf_addstr(&u, url);
	reposvc_remote_secret_url(&f->remote, url);
	if (reposvc_remote_userinfo(url, &user, &pass, &host)) {
		struct strbuf creds = STRBUF_INIT, b64 = STRBUF_INIT;
		const char *auth = strstr(url, "://") + 3;
		strbuf_add(&creds, user.buf, user.len);
		if (memchr(auth, ':', (size_t)(host - 1 - auth))) {
			strbuf_addch(&creds, ':');
			strbuf_add(&creds, pass.buf, pass.len);
		}
		strbuf_reset(&u);
		strbuf_add(&u, url, (size_t)(strstr(url, "://") + 3 - url));
		strbuf_addstr(&u, host);
		grpc_base64_encode(&b64, creds.buf, creds.len);
		while (b64.len % 4)
			strbuf_addch(&b64, '=');
		strbuf_addstr(&header, "Authorization: Basic ");
		strbuf_add(&header, b64.buf, b64.len);
		reposvc_remote_secret(&f->remote, b64.buf);
		strbuf_release(&creds);
		strbuf_release(&b64);
	}
	if (!header.len && req->http_authorization_header && *req->http_authorization_header) {
		strbuf_addf(&header, "Authorization: %s", req->http_authorization_header);
		reposvc_remote_secret(&f->remote, req->http_authorization_header);
	}
	if (header.len)
		reposvc_remote_config(&f->remote, "http.extraHeader", header.buf);
	if (reposvc_remote_resolve(&f->remote, u.buf, req->resolved_address, err) < 0)
		rc = -1;
	else
		f->url = xstrdup(f->remote.url.buf);
	strbuf_release(&u);
	strbuf_release(&header);
	strbuf_release(&user);
	strbuf_release(&pass);
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
	gc.env = reposvc_remote_env(&f->remote);
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
	reposvc_remote_init(&f->remote);
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
