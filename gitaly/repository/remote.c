/*
 * RemoteService probes of a remote given by URL: FindRemoteRepository (does
 * `git ls-remote <url> HEAD` answer with an object id?) and FindRemoteRootRef
 * (the remote's HEAD branch from `git remote show`). UpdateRemoteMirror lives
 * in remote_mirror.c. See docs/technical/remotes.md.
 */
#include "repository/repository.h"
#include "base/log.h"
#include "base/util.h"
#include "remote.pb-c.h"

#include <stdlib.h>
#include <string.h>
#include "base/banned.h"

#define PROBE_OUT_CAP (4 * 1024 * 1024)

struct probe {
	struct gitaly_call op;
	struct git_cmd *cmd;
	struct reposvc_remote remote;
	char *path;
};

static void probe_release(struct gitaly_call *op)
{
	struct probe *p = container_of(op, struct probe, op);
	reposvc_remote_release(&p->remote);
	free(p->path);
	free(p);
}

static void probe_cancel(struct gitaly_call *op)
{
	reposvc_kill(container_of(op, struct probe, op)->cmd);
}

static struct probe *probe_new(struct gitaly *g, struct grpc_call *call)
{
	struct probe *p = xcalloc(1, sizeof(*p));
	reposvc_init(&p->op, g, call, probe_release);
	p->op.cancel = probe_cancel;
	reposvc_remote_init(&p->remote);
	gitaly_call_watch(&p->op);   /* from here on, every end goes through reposvc_finish() */
	return p;
}

static void probe_start(struct probe *p, struct git_call *gc, git_capture_fn done)
{
	struct strbuf msg = STRBUF_INIT;
	gc->env = reposvc_remote_env(&p->remote);
	gc->rpc = p->op.call;
	if (gitaly_git_capture(p->op.g, gc, NULL, 0, PROBE_OUT_CAP, done, p, &p->cmd, &msg) < 0)
		reposvc_finishf(&p->op, GRPC_INTERNAL, "error executing git command: %s", msg.buf);
	strbuf_release(&msg);
}

/* --- FindRemoteRepository --- */

static void ls_remote_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct probe *p = arg;
	Gitaly__FindRemoteRepositoryResponse resp = GITALY__FIND_REMOTE_REPOSITORY_RESPONSE__INIT;
	const char *tab;
	size_t oidlen;

	(void)err;
	p->cmd = NULL;
	if (gitaly_call_gone(&p->op)) {
		reposvc_finish(&p->op, GRPC_CANCELLED, "context canceled");
		return;
	}
	/* any failure means "no": the remote may be down, absent or private */
	tab = status == 0 ? memchr(out->buf, '\t', out->len) : NULL;
	if (tab && !strcmp(tab + 1, "HEAD\n")) {
		oidlen = (size_t)(tab - out->buf);
		resp.exists = oidlen == 40 || oidlen == 64;
	}
	reposvc_reply(&p->op, &resp);
}

static void find_remote_repository(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	static const char *const args[] = { "inmemory", "HEAD", NULL };
	struct gitaly *g = data;
	Gitaly__FindRemoteRepositoryRequest *req =
		msg_unpack(call, &gitaly__find_remote_repository_request__descriptor, buf, len);
	struct git_call gc = { 0 };
	struct probe *p;

	if (!req)
		return;
	if (!req->remote || !*req->remote) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "empty remote can't be checked.", NULL);
		goto out;
	}
	p = probe_new(g, call);
	/* the URL goes through the environment, not argv: it may carry credentials */
	reposvc_remote_secret_url(&p->remote, req->remote);
	reposvc_remote_config(&p->remote, "remote.inmemory.url", req->remote);
	gc.subcmd = "ls-remote";
	gc.args = args;
	probe_start(p, &gc, ls_remote_done);
out:
	msg_free(req);
}

/* --- FindRemoteRootRef --- */

static void remote_show_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	static const char head[] = "HEAD branch: ";
	struct probe *p = arg;
	Gitaly__FindRemoteRootRefResponse resp = GITALY__FIND_REMOTE_ROOT_REF_RESPONSE__INIT;
	struct strbuf ref = STRBUF_INIT, m = STRBUF_INIT;
	const char *line = out->buf, *end = out->buf + out->len;
	int found = 0;

	p->cmd = NULL;
	if (gitaly_call_gone(&p->op)) {
		reposvc_finish(&p->op, GRPC_CANCELLED, "context canceled");
		return;
	}
	while (line < end && !found) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		const char *s = line, *e = nl ? nl : end;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
			e--;
		if ((size_t)(e - s) >= sizeof(head) - 1 && !memcmp(s, head, sizeof(head) - 1)) {
			strbuf_add(&ref, s + sizeof(head) - 1, (size_t)(e - s) - (sizeof(head) - 1));
			found = 1;
		}
		line = nl ? nl + 1 : end;
	}
	if (found && !strcmp(ref.buf, "(unknown)")) {
		reposvc_finish(&p->op, GRPC_NOT_FOUND, "no remote HEAD found");
	} else if (found) {
		resp.ref = ref.buf;
		reposvc_reply(&p->op, &resp);
	} else if (status != 0) {
		struct log_entry e;
		struct strbuf text = STRBUF_INIT;
		strbuf_add(&text, err->buf, err->len);
		reposvc_remote_redact(&p->remote, &text);
		if (log_begin(&e, LOG_WARN, "git remote show failed")) {
			log_strn(&e, "stderr", text.buf, text.len);
			log_end(&e);
		}
		gitaly_describe_status(&m, status);
		reposvc_finish(&p->op, GRPC_INTERNAL, m.buf);
		strbuf_release(&text);
	} else {
		reposvc_finish(&p->op, GRPC_NOT_FOUND, "couldn't query the remote HEAD");
	}
	strbuf_release(&ref);
	strbuf_release(&m);
}

static void find_remote_root_ref(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	static const char *const args[] = { "show", "inmemory", NULL };
	struct gitaly *g = data;
	Gitaly__FindRemoteRootRefRequest *req =
		msg_unpack(call, &gitaly__find_remote_root_ref_request__descriptor, buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	struct git_call gc = { 0 };
	enum grpc_code code;
	struct probe *p;

	if (!req)
		return;
	if (!req->remote_url || !*req->remote_url) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "missing remote URL", NULL);
		goto out;
	}
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto out;
	}
	p = probe_new(g, call);
	p->path = strbuf_detach(&path, NULL);
	if (reposvc_remote_setup(&p->remote, "inmemory", req->remote_url, req->http_authorization_header,
				 req->resolved_address, &msg) < 0) {
		reposvc_finish(&p->op, GRPC_INVALID_ARGUMENT, msg.buf);
		goto out;
	}
	gc.git_dir = p->path;
	gc.repo = req->repository;
	gc.subcmd = "remote";
	gc.args = args;
	probe_start(p, &gc, remote_show_done);
out:
	strbuf_release(&path);
	strbuf_release(&msg);
	msg_free(req);
}

void gitaly_register_remote(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.RemoteService/FindRemoteRepository", find_remote_repository, g);
	gitaly_add_unary(s, "/gitaly.RemoteService/FindRemoteRootRef", find_remote_root_ref, g);
	reposvc_register_remote_mirror(g, s);
}
