/* gitaly-hooks: the hook git runs; it forwards the hook to the node's HookService; see docs/technical/hooks.md. */
#include "base/pb.h"
#include "base/strbuf.h"
#include "base/strvec.h"
#include "base/util.h"
#include "grpc/auth.h"
#include "grpc/client.h"
#include "grpc/metadata.h"
#include "hook.pb-c.h"
#include "rpc/registry.h"
#include "txid/txid.h"

#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdnoreturn.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/*
 * git runs us through symlinks named after the hook: pre-receive,
 * post-receive, update (ref old new) and reference-transaction (state).
 * GITALY_HOOKS_PAYLOAD (base64 JSON written by the node) names the internal
 * socket and the hooks the node wants; a hook it did not ask for exits 0 at
 * once. Otherwise the whole environment and stdin go to the matching
 * HookService RPC, its stdout/stderr come back to ours, and we exit with the
 * last exit status it sent. Any failure prints "error executing git hook" and
 * exits 1; details go to $GITALY_LOG_DIR/gitaly_hooks.log, never to
 * stdout/stderr, which git shows to the pushing user.
 */

#define STDIN_MAX (64 * 1024 * 1024)
#define CHUNK (128 * 1024)

enum hook { H_REFTX = 1, H_UPDATE = 2, H_PRE_RECEIVE = 4, H_POST_RECEIVE = 8 };

static const struct {
	const char *name;
	enum hook bit;
	const char *method;
} hooks[] = {
	{ "reference-transaction", H_REFTX, "/gitaly.HookService/ReferenceTransactionHook" },
	{ "update", H_UPDATE, "/gitaly.HookService/UpdateHook" },
	{ "pre-receive", H_PRE_RECEIVE, "/gitaly.HookService/PreReceiveHook" },
	{ "post-receive", H_POST_RECEIVE, "/gitaly.HookService/PostReceiveHook" },
};

struct payload {
	unsigned requested;
	char *socket, *token;
	int has_user;
	char *userid, *username, *remote_ip;
	json_t *flags;                 /* feature_flags_with_value, borrowed from root */
	json_t *root;
	Gitaly__Repository repo;
	struct strvec repo_strings;    /* owns the repository's strings */
	char **alternates;
};

static void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Append one logfmt line to $GITALY_LOG_DIR/gitaly_hooks.log; silently nothing without it. */
static void log_error(const char *fmt, ...)
{
	const char *dir = getenv("GITALY_LOG_DIR");
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT, line = STRBUF_INIT;
	char ts[64];
	time_t now = time(NULL);
	struct tm tm;
	va_list ap;
	int fd;

	if (!dir || !*dir)
		return;
	va_start(ap, fmt);
	strbuf_vaddf(&msg, fmt, ap);
	va_end(ap);
	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	strbuf_addf(&line, "time=\"%s\" level=error msg=\"error executing git hook\" error=", ts);
	strbuf_add_json_string(&line, msg.buf, msg.len);
	strbuf_addch(&line, '\n');
	strbuf_addf(&path, "%s/gitaly_hooks.log", dir);
	fd = open(path.buf, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd >= 0) {
		if (write(fd, line.buf, line.len) < 0) {
			/* nowhere else to report it */
		}
		close(fd);
	}
	strbuf_release(&path);
	strbuf_release(&msg);
	strbuf_release(&line);
}

static noreturn void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static noreturn void fail(const char *fmt, ...)
{
	struct strbuf msg = STRBUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	strbuf_vaddf(&msg, fmt, ap);
	va_end(ap);
	log_error("%s", msg.buf);
	fputs("error executing git hook\n", stderr);
	fflush(stderr);
	exit(1);
}

/* --- the payload --- */

static char *repo_string(struct payload *p, json_t *o, const char *camel, const char *snake)
{
	json_t *v = json_object_get(o, camel);
	const char *s;
	if (!v)
		v = json_object_get(o, snake);
	s = json_string_value(v);
	return (char *)strvec_push(&p->repo_strings, s ? s : "");
}

static void parse_payload(const char *b64, struct payload *p)
{
	struct strbuf why = STRBUF_INIT;
	json_error_t je;
	json_t *v, *repo, *alts;
	const char *s;
	int rc;

	memset(p, 0, sizeof(*p));
	strvec_init(&p->repo_strings);
	rc = txid_envelope_decode(b64, strlen(b64), &p->root, &why);
	if (rc == -EINVAL)
		fail("error when getting hooks payload: illegal base64 data");
	if (rc < 0)
		fail("error when getting hooks payload: %s", why.buf);
	strbuf_release(&why);
	v = json_object_get(p->root, "requested_hooks");
	p->requested = json_is_integer(v) ? (unsigned)json_integer_value(v) : 0;
	if (!p->requested)
		p->requested = 31;
	s = json_string_value(json_object_get(p->root, "internal_socket"));
	p->socket = xstrdup(s ? s : "");
	s = json_string_value(json_object_get(p->root, "internal_socket_token"));
	p->token = xstrdup(s ? s : "");
	v = json_object_get(p->root, "user_details");
	if (json_is_object(v)) {
		p->has_user = 1;
		s = json_string_value(json_object_get(v, "userid"));
		p->userid = xstrdup(s ? s : "");
		s = json_string_value(json_object_get(v, "username"));
		p->username = xstrdup(s ? s : "");
		s = json_string_value(json_object_get(v, "remote_ip"));
		p->remote_ip = xstrdup(s ? s : "");
	}
	p->flags = json_object_get(p->root, "feature_flags_with_value");

	gitaly__repository__init(&p->repo);
	s = json_string_value(json_object_get(p->root, "repository"));
	repo = json_loads(s ? s : "{}", 0, &je);
	if (!json_is_object(repo))
		fail("error when getting hooks payload: repository: %s", repo ? "not an object" : je.text);
	p->repo.storage_name = repo_string(p, repo, "storageName", "storage_name");
	p->repo.relative_path = repo_string(p, repo, "relativePath", "relative_path");
	p->repo.git_object_directory = repo_string(p, repo, "gitObjectDirectory", "git_object_directory");
	p->repo.gl_repository = repo_string(p, repo, "glRepository", "gl_repository");
	p->repo.gl_project_path = repo_string(p, repo, "glProjectPath", "gl_project_path");
	alts = json_object_get(repo, "gitAlternateObjectDirectories");
	if (!alts)
		alts = json_object_get(repo, "git_alternate_object_directories");
	if (json_is_array(alts) && json_array_size(alts)) {
		size_t n = json_array_size(alts);
		p->alternates = xcalloc(n, sizeof(char *));
		for (size_t i = 0; i < n; i++) {
			const char *a = json_string_value(json_array_get(alts, i));
			p->alternates[i] = (char *)strvec_push(&p->repo_strings, a ? a : "");
		}
		p->repo.git_alternate_object_directories = p->alternates;
		p->repo.n_git_alternate_object_directories = n;
	}
	json_decref(repo);
}

static void build_metadata(const struct payload *p, struct grpc_metadata *md)
{
	size_t i;
	json_t *f;
	if (*p->token)
		auth_v2_add(md, p->token);
	if (p->has_user) {
		grpc_metadata_addstr(md, "user_id", p->userid);
		grpc_metadata_addstr(md, "username", p->username);
		grpc_metadata_addstr(md, "remote_ip", p->remote_ip);
	}
	if (json_is_array(p->flags)) {
		json_array_foreach(p->flags, i, f) {
			const char *name = json_string_value(json_object_get(json_object_get(f, "flag"), "name"));
			struct strbuf key = STRBUF_INIT;
			if (!name || !*name)
				continue;
			strbuf_addstr(&key, "gitaly-feature-");
			for (const char *c = name; *c; c++)
				strbuf_addch(&key, *c == '_' ? '-' : (*c >= 'A' && *c <= 'Z' ? *c + 32 : *c));
			grpc_metadata_addstr(md, key.buf, json_is_true(json_object_get(f, "enabled")) ? "true" : "false");
			strbuf_release(&key);
		}
	}
	{
		const char *cid = getenv("CORRELATION_ID");
		if (cid && *cid)
			grpc_metadata_addstr(md, "x-gitlab-correlation-id", cid);
	}
}

/* --- the call --- */

struct run {
	uv_loop_t *loop;
	struct grpc_channel *ch;
	int done;
	int exit_code;
	enum grpc_code code;
	struct strbuf err;
};

static void write_all(int fd, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return; /* git went away; the RPC's status still decides our exit code */
		}
		buf += n;
		len -= (size_t)n;
	}
}

static void on_message(struct grpc_client_call *call, const uint8_t *msg, size_t len)
{
	struct run *r = grpc_client_call_user(call);
	const uint8_t *p = msg, *end = msg + len;
	struct pb_field f;
	int rc;
	while ((rc = pb_next_field(&p, end, &f)) == 1) {
		if (f.num == 1 && f.wire == PB_LEN) {
			write_all(1, f.data, f.len);
		} else if (f.num == 2 && f.wire == PB_LEN) {
			write_all(2, f.data, f.len);
		} else if (f.num == 3 && f.wire == PB_LEN) {
			const uint8_t *q = f.data, *qend = f.data + f.len;
			struct pb_field e;
			r->exit_code = 0;
			while (pb_next_field(&q, qend, &e) == 1)
				if (e.num == 1 && e.wire == PB_VARINT)
					r->exit_code = (int)(int32_t)e.varint;
		}
	}
}

static void on_close(struct grpc_client_call *call, enum grpc_code code, const char *message,
		     const struct grpc_metadata *trailers)
{
	struct run *r = grpc_client_call_user(call);
	r->done = 1;
	r->code = code;
	strbuf_addstr(&r->err, message ? message : "");
}

static const struct grpc_client_ops call_ops = {
	.on_message = on_message,
	.on_close = on_close,
};

static void read_stdin(struct strbuf *in)
{
	char buf[65536];
	for (;;) {
		ssize_t n = read(0, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fail("reading stdin: %s", strerror(errno));
		}
		if (n == 0)
			return;
		if (in->len + (size_t)n > STDIN_MAX)
			fail("hook input larger than %d bytes", STDIN_MAX);
		strbuf_add(in, buf, (size_t)n);
	}
}

static void pack_send(struct grpc_client_call *call, const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = xmalloc(n ? n : 1);
	protobuf_c_message_pack(m, buf);
	grpc_client_call_send(call, buf, n);
	free(buf);
}

/* Stdin as further requests carrying only field `field`. */
static void send_stdin(struct grpc_client_call *call, uint32_t field, const struct strbuf *in)
{
	struct strbuf msg = STRBUF_INIT;
	for (size_t off = 0; off < in->len; off += CHUNK) {
		size_t n = MIN((size_t)CHUNK, in->len - off);
		strbuf_reset(&msg);
		pb_put_bytes(&msg, field, in->buf + off, n);
		grpc_client_call_send(call, msg.buf, msg.len);
	}
	strbuf_release(&msg);
}

static char **push_options(size_t *nr)
{
	const char *c = getenv("GIT_PUSH_OPTION_COUNT");
	char *end;
	long n;
	char **v;
	*nr = 0;
	if (!c || !*c)
		return NULL;
	n = strtol(c, &end, 10);
	if (*end || n <= 0 || n > 10000)
		return NULL;
	v = xcalloc((size_t)n, sizeof(char *));
	for (long i = 0; i < n; i++) {
		char key[64];
		const char *val;
		snprintf(key, sizeof(key), "GIT_PUSH_OPTION_%ld", i);
		val = getenv(key);
		v[i] = (char *)(val ? val : "");
	}
	*nr = (size_t)n;
	return v;
}

/* --- pack-objects (docs/technical/pack-objects-cache.md) --- */

/*
 * git upload-pack runs "gitaly-hooks git [--shallow-file ''] pack-objects
 * ...". We listen on a fresh Unix socket named in the call's
 * "gitaly-sidechannel-socket" metadata; the node connects, reads our stdin
 * until we half-close, then sends pack-objects' stdout and stderr as
 * side-band pkt-lines (band 1 and 2) until it closes.
 */
struct po_side {
	int listen_fd;
	char dir[4096], sock[4200];
	char err[256];                 /* empty: the exchange went well */
	int accepted;
};

static void po_cleanup(struct po_side *s)
{
	unlink(s->sock);
	rmdir(s->dir);
}

static int read_full(int fd, void *buf, size_t len)
{
	char *b = buf;
	while (len) {
		ssize_t n = read(fd, b, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -1 : (b == buf ? 0 : -1);
		b += n;
		len -= (size_t)n;
	}
	return 1;
}

static void po_set_err(struct po_side *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void po_set_err(struct po_side *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
}

static void *po_side_run(void *arg)
{
	struct po_side *s = arg;
	char buf[65536];
	int c;

	do
		c = accept(s->listen_fd, NULL, NULL);
	while (c < 0 && errno == EINTR);
	if (c < 0) {
		po_set_err(s, "accept: %s", strerror(errno));
		return NULL;
	}
	s->accepted = 1;
	/* gone from the file system as soon as the node is connected */
	po_cleanup(s);
	for (;;) {
		ssize_t n = read(0, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			po_set_err(s, "copy stdin: %s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		write_all(c, (const uint8_t *)buf, (size_t)n);
	}
	if (shutdown(c, SHUT_WR) < 0) {
		po_set_err(s, "close write: %s", strerror(errno));
		goto out;
	}
	for (;;) {
		char hdr[5] = { 0 };
		unsigned long n;
		char *end;
		int rc = read_full(c, hdr, 4);
		if (rc == 0)
			break;
		if (rc < 0) {
			po_set_err(s, "demux response: read pkt-line header");
			goto out;
		}
		n = strtoul(hdr, &end, 16);
		if (end != hdr + 4) {
			po_set_err(s, "demux response: invalid pkt-line length %.4s", hdr);
			goto out;
		}
		if (n == 0)
			continue;   /* a flush carries nothing */
		if (n < 5 || n > 65520 || read_full(c, buf, n - 4) <= 0) {
			po_set_err(s, "demux response: bad pkt-line");
			goto out;
		}
		if (buf[0] == 1)
			write_all(1, (const uint8_t *)buf + 1, n - 5);
		else if (buf[0] == 2)
			write_all(2, (const uint8_t *)buf + 1, n - 5);
		else {
			po_set_err(s, "demux response: unexpected side band: %d", buf[0]);
			goto out;
		}
	}
out:
	close(c);
	return NULL;
}

static noreturn void pack_objects(struct payload *p, struct run *r, struct grpc_metadata *md, char **args,
				  size_t nargs)
{
	Gitaly__PackObjectsHookWithSidechannelRequest req = GITALY__PACK_OBJECTS_HOOK_WITH_SIDECHANNEL_REQUEST__INIT;
	const char *method = "/gitaly.HookService/PackObjectsHookWithSidechannel";
	const char *rd = json_string_value(json_object_get(p->root, "runtime_dir"));
	const char *proto = getenv("GIT_PROTOCOL");
	struct grpc_client_call *call;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct po_side s = { .listen_fd = -1 };
	pthread_t th;
	int rc;

	if (rd && *rd) {
		snprintf(s.dir, sizeof(s.dir), "%s/chan.d", rd);
		if (mkdir(s.dir, 0700) < 0 && errno != EEXIST)
			fail("pack-objects: creating %s: %s", s.dir, strerror(errno));
		snprintf(s.dir, sizeof(s.dir), "%s/chan.d/XXXXXX", rd);
	} else {
		const char *tmp = getenv("TMPDIR");
		snprintf(s.dir, sizeof(s.dir), "%s/gitalyXXXXXX", tmp && *tmp ? tmp : "/tmp");
	}
	if (!mkdtemp(s.dir))
		fail("pack-objects: creating the sidechannel directory: %s", strerror(errno));
	snprintf(s.sock, sizeof(s.sock), "%s/sidechannel", s.dir);
	if (strlen(s.sock) >= sizeof(sa.sun_path)) {
		rmdir(s.dir);
		fail("pack-objects: sidechannel path too long: %s", s.sock);
	}
	memcpy(sa.sun_path, s.sock, strlen(s.sock) + 1);
	s.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s.listen_fd < 0 || bind(s.listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(s.listen_fd, 1) < 0) {
		po_cleanup(&s);
		fail("pack-objects: listening on %s: %s", s.sock, strerror(errno));
	}
	if (pthread_create(&th, NULL, po_side_run, &s)) {
		po_cleanup(&s);
		fail("pack-objects: cannot start a thread");
	}
	grpc_metadata_addstr(md, "gitaly-sidechannel-socket", s.sock);

	req.repository = &p->repo;
	req.args = args;
	req.n_args = nargs;
	req.gl_id = p->has_user ? p->userid : (char *)"";
	req.gl_username = p->has_user ? p->username : (char *)"";
	req.remote_ip = p->has_user ? p->remote_ip : (char *)"";
	req.git_protocol = (char *)(proto ? proto : "");
	rc = grpc_channel_call(r->ch, method, md, 0, 0, &call_ops, r, &call);
	if (rc < 0) {
		po_cleanup(&s);
		fail("call PackObjectsHookWithSidechannel: %s", strerror(-rc));
	}
	pack_send(call, &req.base);
	grpc_client_call_close_send(call);
	while (!r->done)
		uv_run(r->loop, UV_RUN_ONCE);
	if (r->code != GRPC_OK) {
		po_cleanup(&s);
		fail("call PackObjectsHookWithSidechannel: rpc error: code = %s desc = %s", grpc_code_name(r->code),
		     r->err.buf);
	}
	if (!s.accepted) {
		po_cleanup(&s);
		fail("pack-objects: the node never connected to the sidechannel");
	}
	pthread_join(th, NULL);
	if (*s.err)
		fail("pack-objects: %s", s.err);
	fflush(stdout);
	exit(0);
}

/* The payload from GITALY_HOOKS_PAYLOAD (`b64`), or a failure naming its absence. */
static void load_payload(const char *b64, struct payload *p)
{
	if (!b64)
		fail("error when getting hooks payload: no hooks payload found in environment");
	parse_payload(b64, p);
}

/* A channel to the gitaly named in the payload, and the metadata every call carries. */
static void connect_gitaly(const struct payload *p, struct run *r, struct grpc_metadata *md)
{
	struct strbuf target = STRBUF_INIT;
	r->loop = uv_default_loop();
	strbuf_init(&r->err, 0);
	strbuf_addf(&target, "unix:%s", p->socket);
	if (grpc_channel_new(r->loop, target.buf, NULL, &r->ch) < 0)
		fail("error when connecting to gitaly: invalid socket \"%s\"", p->socket);
	strbuf_release(&target);
	build_metadata(p, md);
}

int main(int argc, char **argv)
{
	extern char **environ;
	const char *slash = strrchr(argv[0], '/');
	const char *name = slash ? slash + 1 : argv[0];
	const char *b64 = getenv("GITALY_HOOKS_PAYLOAD");
	struct payload p;
	struct run r = { 0 };
	struct grpc_metadata md = GRPC_METADATA_INIT;
	struct grpc_client_call *call;
	struct strbuf in = STRBUF_INIT;
	size_t env_nr = 0, idx = ARRAY_SIZE(hooks), npo = 0;
	char **po = NULL;
	int rc;

	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < ARRAY_SIZE(hooks); i++)
		if (!strcmp(name, hooks[i].name))
			idx = i;
	if (idx == ARRAY_SIZE(hooks)) {
		if (!strcmp(name, "gitaly-hooks") && argc >= 2 && !strcmp(argv[1], "git")) {
			load_payload(b64, &p);
			connect_gitaly(&p, &r, &md);
			pack_objects(&p, &r, &md, argv + 2, (size_t)(argc - 2));
		}
		fail("subcommand name invalid: \"%s\"", name);
	}
	if (!rpc_lookup(hooks[idx].method, strlen(hooks[idx].method)))
		fail("method \"%s\" is not in the RPC registry (proto/*.proto)", hooks[idx].method);
	load_payload(b64, &p);
	if (!(p.requested & hooks[idx].bit))
		exit(0);

	while (environ[env_nr])
		env_nr++;
	connect_gitaly(&p, &r, &md);

	switch (hooks[idx].bit) {
	case H_UPDATE: {
		Gitaly__UpdateHookRequest req = GITALY__UPDATE_HOOK_REQUEST__INIT;
		if (argc != 4)
			fail("update hook expects exactly three arguments, got %d", argc - 1);
		req.repository = &p.repo;
		req.environment_variables = environ;
		req.n_environment_variables = env_nr;
		req.ref.data = (uint8_t *)argv[1];
		req.ref.len = strlen(argv[1]);
		req.old_value = argv[2];
		req.new_value = argv[3];
		rc = grpc_channel_call(r.ch, hooks[idx].method, &md, 0, 0, &call_ops, &r, &call);
		if (rc < 0)
			fail("error when starting command for update hook: %s", strerror(-rc));
		pack_send(call, &req.base);
		break;
	}
	case H_PRE_RECEIVE: {
		Gitaly__PreReceiveHookRequest req = GITALY__PRE_RECEIVE_HOOK_REQUEST__INIT;
		read_stdin(&in);
		po = push_options(&npo);
		req.repository = &p.repo;
		req.environment_variables = environ;
		req.n_environment_variables = env_nr;
		req.git_push_options = po;
		req.n_git_push_options = npo;
		rc = grpc_channel_call(r.ch, hooks[idx].method, &md, 0, 0, &call_ops, &r, &call);
		if (rc < 0)
			fail("error when getting preReceiveHookStream client for: %s", strerror(-rc));
		pack_send(call, &req.base);
		send_stdin(call, 4, &in);
		break;
	}
	case H_POST_RECEIVE: {
		Gitaly__PostReceiveHookRequest req = GITALY__POST_RECEIVE_HOOK_REQUEST__INIT;
		read_stdin(&in);
		po = push_options(&npo);
		req.repository = &p.repo;
		req.environment_variables = environ;
		req.n_environment_variables = env_nr;
		req.git_push_options = po;
		req.n_git_push_options = npo;
		rc = grpc_channel_call(r.ch, hooks[idx].method, &md, 0, 0, &call_ops, &r, &call);
		if (rc < 0)
			fail("error when getting stream client for post-receive hook: %s", strerror(-rc));
		pack_send(call, &req.base);
		send_stdin(call, 3, &in);
		break;
	}
	default: {
		Gitaly__ReferenceTransactionHookRequest req = GITALY__REFERENCE_TRANSACTION_HOOK_REQUEST__INIT;
		if (argc != 2)
			fail("reference-transaction hook is missing required arguments, got %d", argc - 1);
		if (!strcmp(argv[1], "prepared"))
			req.state = GITALY__REFERENCE_TRANSACTION_HOOK_REQUEST__STATE__PREPARED;
		else if (!strcmp(argv[1], "committed"))
			req.state = GITALY__REFERENCE_TRANSACTION_HOOK_REQUEST__STATE__COMMITTED;
		else if (!strcmp(argv[1], "aborted"))
			req.state = GITALY__REFERENCE_TRANSACTION_HOOK_REQUEST__STATE__ABORTED;
		else
			fail("reference-transaction hook has invalid state: \"%s\"", argv[1]);
		read_stdin(&in);
		req.repository = &p.repo;
		req.environment_variables = environ;
		req.n_environment_variables = env_nr;
		rc = grpc_channel_call(r.ch, hooks[idx].method, &md, 0, 0, &call_ops, &r, &call);
		if (rc < 0)
			fail("error when getting referenceTransactionHookStream client: %s", strerror(-rc));
		pack_send(call, &req.base);
		send_stdin(call, 3, &in);
		break;
	}
	}
	grpc_client_call_close_send(call);
	while (!r.done)
		uv_run(r.loop, UV_RUN_ONCE);
	if (r.code != GRPC_OK)
		fail("error when receiving data for %s hook: rpc error: code = %s desc = %s", hooks[idx].name,
		     grpc_code_name(r.code), r.err.buf);
	fflush(stdout);
	/* exit() rather than return: what main's frame points to is still in use */
	exit(r.exit_code);
}
