/*
 * FetchSourceBranch: make `target_ref` point at the commit `source_branch`
 * names in another repository, possibly on another node
 * (docs/technical/remotes.md, "FetchSourceBranch"). The source node is the
 * one gitaly-servers metadata names for the source's storage: FindCommit
 * there resolves the revision, a fetch of that object through gitaly-ssh
 * into a quarantine brings what we lack, then the objects move in and one
 * voted `git update-ref` writes the ref.
 */
#include "repository/repository.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "grpc/auth.h"
#include "grpc/client.h"
#include "commit.pb-c.h"
#include "repository.pb-c.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "base/banned.h"

struct fsb {
	struct gitaly_call op;
	Gitaly__FetchSourceBranchRequest *req;
	char *path;
	char *address, *token;
	struct grpc_channel *ch;
	struct grpc_client_call *ccall;
	struct strbuf resp;               /* FindCommit's answer */
	struct git_cmd *cmd;
	struct cleanup_writer *writer;
	struct strbuf quarantine;         /* object directory of the fetch, removed at release */
	struct strbuf oid;
};

static void fsb_release(struct gitaly_call *op)
{
	struct fsb *x = container_of(op, struct fsb, op);
	if (x->quarantine.len)
		fs_remove_tree(x->quarantine.buf);
	cleanup_writer_leave(x->writer);
	if (x->ch)
		grpc_channel_close(x->ch);
	msg_free(x->req);
	free(x->path);
	free(x->address);
	free(x->token);
	strbuf_release(&x->resp);
	strbuf_release(&x->quarantine);
	strbuf_release(&x->oid);
	free(x);
}

static void fsb_cancel(struct gitaly_call *op)
{
	struct fsb *x = container_of(op, struct fsb, op);
	reposvc_kill(x->cmd);
	if (x->ccall)
		grpc_client_call_cancel(x->ccall);
}

static int fsb_gone(struct fsb *x)
{
	if (!gitaly_call_gone(&x->op))
		return 0;
	reposvc_finish(&x->op, GRPC_CANCELLED, "context canceled");
	return 1;
}

static void fsb_result(struct fsb *x, int result)
{
	Gitaly__FetchSourceBranchResponse resp = GITALY__FETCH_SOURCE_BRANCH_RESPONSE__INIT;
	resp.result = result;
	reposvc_reply(&x->op, &resp);
}

static void fsb_run(struct fsb *x, struct git_call *gc, const char *in, size_t inlen, git_capture_fn done)
{
	struct strbuf msg = STRBUF_INIT;
	gc->git_dir = x->path;
	gc->rpc = x->op.call;
	if (gitaly_git_capture(x->op.g, gc, in ? in : "", inlen, 64 * 1024, done, x, &x->cmd, &msg) < 0)
		reposvc_finish(&x->op, GRPC_INTERNAL, msg.buf);
	strbuf_release(&msg);
}

/* --- step 4: the ref, voted on by the reference-transaction hook --- */

static void update_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct fsb *x = arg;
	(void)out;
	x->cmd = NULL;
	if (fsb_gone(x))
		return;
	if (status != 0) {
		struct strbuf m = STRBUF_INIT;
		const char *e = err->buf;
		if (!strncmp(e, "fatal: ", 7))
			e += 7;
		strbuf_addstr(&m, e);
		while (m.len && m.buf[m.len - 1] == '\n')
			strbuf_setlen(&m, m.len - 1);
		if (!m.len)
			gitaly_describe_status(&m, status);
		reposvc_finish(&x->op, strstr(m.buf, "transaction") ? GRPC_ABORTED : GRPC_INTERNAL, m.buf);
		strbuf_release(&m);
		return;
	}
	fsb_result(x, 1);
}

static void update_ref(struct fsb *x)
{
	static const char *const flags[] = { "-z", "--stdin", NULL };
	const Gitaly__Repository *r = x->req->repository;
	struct strbuf in = STRBUF_INIT, err = STRBUF_INIT, dst = STRBUF_INIT;
	struct git_call gc = { 0 };

	if (x->quarantine.len) {
		strbuf_addf(&dst, "%s/%s", x->path,
			    r->git_object_directory && *r->git_object_directory ? r->git_object_directory : "objects");
		if (gitaly_migrate_objects(x->quarantine.buf, dst.buf, &err) < 0) {
			reposvc_finishf(&x->op, GRPC_INTERNAL, "migrating quarantined objects: %s", err.buf);
			goto out;
		}
		strbuf_reset(&x->quarantine);   /* moved: nothing left to remove */
	}
	strbuf_addstr(&in, "update ");
	strbuf_add(&in, x->req->target_ref.data, x->req->target_ref.len);
	strbuf_addch(&in, '\0');
	strbuf_add(&in, x->oid.buf, x->oid.len);
	strbuf_addch(&in, '\0');
	strbuf_addch(&in, '\0');
	gc.repo = r;
	gc.subcmd = "update-ref";
	gc.flags = flags;
	gc.hooks = HOOK_REFERENCE_TRANSACTION;
	fsb_run(x, &gc, in.buf, in.len, update_done);
out:
	strbuf_release(&in);
	strbuf_release(&err);
	strbuf_release(&dst);
}

/* --- step 3: the objects, through gitaly-ssh into a quarantine --- */

static void fetch_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct fsb *x = arg;
	(void)out;
	x->cmd = NULL;
	if (fsb_gone(x))
		return;
	if (status != 0) {
		/* upstream's quirk: a failed fetch is a false result, not an error */
		struct log_entry e;
		if (log_begin(&e, LOG_WARN, "git fetch failed")) {
			log_str(&e, "oid", x->oid.buf);
			log_strn(&e, "stderr", err->buf, MIN(err->len, (size_t)65536));
			log_end(&e);
		}
		fsb_result(x, 0);
		return;
	}
	update_ref(x);
}

static void start_fetch(struct fsb *x)
{
	static const char *const flags[] = { "--no-write-fetch-head", "--quiet", "--no-tags", NULL };
	static const char *const config[] = { "advice.fetchShowForcedUpdates=false" };
	const Gitaly__Repository *r = x->req->repository;
	const struct gitaly_storage *st;
	const char *args[] = { "ssh://gitaly/internal.git", x->oid.buf, NULL };
	struct strvec env = STRVEC_INIT;
	struct strbuf msg = STRBUF_INIT;
	struct git_call gc = { 0 };

	if (gitaly_storage(x->op.g, r->storage_name, &st, &msg) != GRPC_OK ||
	    gitaly_tmp_dir(x->op.g, st, &x->quarantine) < 0) {
		strbuf_reset(&x->quarantine);
		reposvc_finishf(&x->op, GRPC_INTERNAL, "creating quarantine directory: %s",
				msg.len ? msg.buf : strerror(errno));
		goto out;
	}
	strbuf_addstr(&x->quarantine, "/quarantine-fetch-XXXXXX");
	if (!mkdtemp(x->quarantine.buf)) {
		strbuf_reset(&x->quarantine);
		reposvc_finishf(&x->op, GRPC_INTERNAL, "creating quarantine directory: %s", strerror(errno));
		goto out;
	}
	reposvc_ssh_env(x->op.g, x->op.call, x->req->source_repository, x->address, x->token, &env);
	/* what the fetch brings lands in the quarantine; the repository's objects are its alternate */
	strvec_pushf(&env, "GIT_OBJECT_DIRECTORY=%s", x->quarantine.buf);
	strvec_pushf(&env, "GIT_ALTERNATE_OBJECT_DIRECTORIES=%s/%s", x->path,
		     r->git_object_directory && *r->git_object_directory ? r->git_object_directory : "objects");
	gc.subcmd = "fetch";
	gc.flags = flags;
	gc.args = args;
	gc.config = config;
	gc.nr_config = ARRAY_SIZE(config);
	gc.env = env.v;
	fsb_run(x, &gc, NULL, 0, fetch_done);
out:
	strvec_clear(&env);
	strbuf_release(&msg);
}

/* --- step 2: do we have the commit already? --- */

static void have_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct fsb *x = arg;
	(void)out;
	(void)err;
	x->cmd = NULL;
	if (fsb_gone(x))
		return;
	if (status == 0)
		update_ref(x);   /* nothing to fetch */
	else
		start_fetch(x);
}

static void check_local(struct fsb *x)
{
	static const char *const flags[] = { "-e", NULL };
	struct strbuf rev = STRBUF_INIT;
	const char *args[2] = { NULL, NULL };
	struct git_call gc = { 0 };
	strbuf_addf(&rev, "%s^{commit}", x->oid.buf);
	args[0] = rev.buf;
	gc.repo = x->req->repository;
	gc.subcmd = "cat-file";
	gc.flags = flags;
	gc.args = args;
	fsb_run(x, &gc, NULL, 0, have_done);
	strbuf_release(&rev);
}

/* --- step 1: resolve the source branch --- */

static void local_resolved(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct fsb *x = arg;
	(void)err;
	x->cmd = NULL;
	if (fsb_gone(x))
		return;
	if (status != 0) {
		fsb_result(x, 0);   /* not found */
		return;
	}
	while (out->len && out->buf[out->len - 1] == '\n')
		strbuf_setlen(out, out->len - 1);
	strbuf_add(&x->oid, out->buf, out->len);
	update_ref(x);            /* same repository: the objects are here */
}

static void cc_message(struct grpc_client_call *call, const uint8_t *msg, size_t len)
{
	struct fsb *x = grpc_client_call_user(call);
	if (x->resp.len + len <= 4 * 1024 * 1024)
		strbuf_add(&x->resp, msg, len);
}

static void cc_close(struct grpc_client_call *call, enum grpc_code code, const char *message,
		     const struct grpc_metadata *trailers)
{
	struct fsb *x = grpc_client_call_user(call);
	Gitaly__FindCommitResponse *resp;
	(void)trailers;
	x->ccall = NULL;
	if (fsb_gone(x)) {
		gitaly_call_drop(&x->op);
		return;
	}
	if (code != GRPC_OK) {
		reposvc_finish(&x->op, code, message ? message : "");
		gitaly_call_drop(&x->op);
		return;
	}
	resp = gitaly__find_commit_response__unpack(NULL, x->resp.len, (const uint8_t *)x->resp.buf);
	if (!resp) {
		reposvc_finish(&x->op, GRPC_INTERNAL, "remote repository: cannot decode FindCommit response");
	} else if (!resp->commit || !resp->commit->id || !*resp->commit->id) {
		fsb_result(x, 0);   /* no such revision there */
	} else {
		const char *id = resp->commit->id;
		size_t n = strlen(id);
		int ok = n == 40 || n == 64;
		for (size_t i = 0; ok && i < n; i++)
			ok = hex_digit(id[i]) >= 0;
		if (!ok) {
			reposvc_finishf(&x->op, GRPC_INTERNAL, "parsing object ID: invalid object ID: \"%s\"", id);
		} else {
			strbuf_add(&x->oid, id, n);
			check_local(x);
		}
	}
	gitaly__find_commit_response__free_unpacked(resp, NULL);
	gitaly_call_drop(&x->op);
}

static const struct grpc_client_ops cc_ops = {
	.on_message = cc_message,
	.on_close = cc_close,
};

static void resolve_remote(struct fsb *x)
{
	Gitaly__FindCommitRequest req = GITALY__FIND_COMMIT_REQUEST__INIT;
	struct grpc_metadata md = GRPC_METADATA_INIT;
	uint64_t deadline = grpc_call_deadline(x->op.call), timeout = 0;
	size_t n;
	uint8_t *buf;
	int rc;

	req.repository = x->req->source_repository;
	req.revision = x->req->source_branch;
	n = gitaly__find_commit_request__get_packed_size(&req);
	buf = xmalloc(n ? n : 1);
	gitaly__find_commit_request__pack(&req, buf);
	if (deadline) {
		uint64_t now = now_ms();
		timeout = deadline > now ? deadline - now : 1;
	}
	if (x->token && *x->token)
		auth_v2_add(&md, x->token);
	gitaly_call_hold(&x->op);   /* until on_close */
	rc = grpc_channel_call(x->ch, gitaly_out[OUT_FIND_COMMIT], &md, timeout, 0, &cc_ops, x, &x->ccall);
	if (rc == 0) {
		grpc_client_call_send(x->ccall, buf, n);
		grpc_client_call_close_send(x->ccall);
	} else {
		x->ccall = NULL;
		x->op.holds--;
		reposvc_finishf(&x->op, GRPC_INTERNAL, "remote repository: cannot call FindCommit: %s", strerror(-rc));
	}
	grpc_metadata_release(&md);
	free(buf);
}

static void fsb_go(void *arg)
{
	struct fsb *x = arg;
	const Gitaly__Repository *t = x->req->repository, *s = x->req->source_repository;

	if (fsb_gone(x))
		return;
	if (s && !strcmp(t->storage_name, s->storage_name) && !strcmp(t->relative_path, s->relative_path)) {
		/* the same repository: resolve here, nothing to fetch */
		static const char *const flags[] = { "--verify", "--quiet", NULL };
		struct strbuf rev = STRBUF_INIT;
		const char *args[2] = { NULL, NULL };
		struct git_call gc = { 0 };
		strbuf_add(&rev, x->req->source_branch.data, x->req->source_branch.len);
		strbuf_addstr(&rev, "^{commit}");
		args[0] = rev.buf;
		gc.repo = t;
		gc.subcmd = "rev-parse";
		gc.flags = flags;
		gc.args = args;
		fsb_run(x, &gc, NULL, 0, local_resolved);
		strbuf_release(&rev);
		return;
	}
	resolve_remote(x);
}

static int check_rev(const ProtobufCBinaryData *b, struct strbuf *msg)
{
	return gitaly_check_revision((const char *)b->data, b->len, msg);
}

void reposvc_fetch_source_branch(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__FetchSourceBranchRequest *req =
		msg_unpack(call, &gitaly__fetch_source_branch_request__descriptor, buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	enum grpc_code code;
	struct fsb *x;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	if (code == GRPC_OK && (check_rev(&req->source_branch, &msg) < 0 || check_rev(&req->target_ref, &msg) < 0))
		code = GRPC_INVALID_ARGUMENT;
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		msg_free(req);
		goto out;
	}
	x = xcalloc(1, sizeof(*x));
	reposvc_init(&x->op, g, call, fsb_release);
	x->op.cancel = fsb_cancel;
	x->req = req;
	x->path = strbuf_detach(&path, NULL);
	strbuf_init(&x->resp, 0);
	strbuf_init(&x->quarantine, 0);
	strbuf_init(&x->oid, 0);
	gitaly_call_watch(&x->op);
	/* as upstream, the source's node must be known even when the source is this repository */
	if (reposvc_source_server(call, req->source_repository ? req->source_repository->storage_name : "",
				  &x->address, &x->token, &msg) < 0) {
		reposvc_finishf(&x->op, GRPC_INTERNAL, "remote repository: %s", msg.buf);
		goto out;
	}
	if (grpc_channel_new(g->loop, reposvc_channel_target(x->address), NULL, &x->ch) < 0) {
		x->ch = NULL;
		reposvc_finishf(&x->op, GRPC_INTERNAL, "dial: cannot dial \"%s\"", x->address);
		goto out;
	}
	x->writer = cleanup_writer_enter(g, x->path, fsb_go, x);
out:
	strbuf_release(&path);
	strbuf_release(&msg);
}
