/*
 * DeleteRefs (RefService): one `git update-ref --stdin` transaction whose
 * reference-transaction hook votes, plus the RPC's own PREPARED and
 * COMMITTED votes on the deleted names (docs/technical/refs.md, "DeleteRefs").
 */
#include "repository/repository.h"
#include "read/read.h"
#include "base/util.h"
#include "core/vote.h"
#include "errors.pb-c.h"
#include "ref.pb-c.h"

#include <stdlib.h>
#include <string.h>

#define DR_LIST_MAX (256u * 1024 * 1024)
#define DR_OUT_CAP 4096
#define DR_ERR_CAP (64 * 1024)

enum dr_state { DR_LISTING, DR_WRITER, DR_PREPARE, DR_VOTE_PREPARED, DR_COMMIT, DR_VOTE_COMMITTED, DR_DONE };

struct delete_refs {
	struct gitaly_call op;
	Gitaly__DeleteRefsRequest *req;
	char *path;
	struct strvec refs;
	enum dr_state state;
	struct git_cmd *cmd;
	struct cleanup_writer *writer;
	struct strbuf out, err, names;
	int exited, exit_status, vote_pending;
	uint8_t vote[20];
};

static void dr_release(struct gitaly_call *op)
{
	struct delete_refs *x = container_of(op, struct delete_refs, op);
	msg_free(x->req);
	free(x->path);
	strvec_clear(&x->refs);
	strbuf_release(&x->out);
	strbuf_release(&x->err);
	strbuf_release(&x->names);
	free(x);
}

static void dr_cancel(struct gitaly_call *op)
{
	struct delete_refs *x = container_of(op, struct delete_refs, op);
	reposvc_kill(x->cmd);
}

/* The call ends now: a running update-ref is stopped in the background (git drops its locks). */
static void dr_detach(struct delete_refs *x)
{
	x->state = DR_DONE;
	if (x->cmd) {
		git_cmd_detach(x->cmd);
		x->cmd = NULL;
	}
}

static void dr_finish_detail(struct delete_refs *x, enum grpc_code code, const char *msg,
			     const Gitaly__DeleteRefsError *detail)
{
	struct gitaly_call *op = &x->op;
	dr_detach(x);
	if (op->finished)
		return;
	/* as reposvc_finish(), with a status detail */
	if (op->call) {
		op->holds--;
		gitaly_call_finish_detail(op, code, msg, &detail->base);
		return;
	}
	gitaly_call_finish(op, code, msg, NULL);
	gitaly_call_drop(op);
}

static void dr_fail(struct delete_refs *x, enum grpc_code code, const char *fmt, const char *arg)
{
	struct strbuf sb = STRBUF_INIT;
	dr_detach(x);
	strbuf_addf(&sb, fmt, arg);
	reposvc_finish(&x->op, gitaly_call_gone(&x->op) ? GRPC_CANCELLED : code, sb.buf);
	strbuf_release(&sb);
}

static void dr_chomp(struct strbuf *sb)
{
	while (sb->len && (sb->buf[sb->len - 1] == '\n' || sb->buf[sb->len - 1] == ' '))
		strbuf_setlen(sb, sb->len - 1);
}

/* update-ref failed before committing: a held lock is the caller's conflict, anything else ours. */
static void dr_prepare_failed(struct delete_refs *x)
{
	const char *p = strstr(x->err.buf, "cannot lock ref '");
	dr_chomp(&x->err);
	if (p && strstr(p, "File exists")) {
		Gitaly__DeleteRefsError det = GITALY__DELETE_REFS_ERROR__INIT;
		Gitaly__ReferencesLockedError locked = GITALY__REFERENCES_LOCKED_ERROR__INIT;
		ProtobufCBinaryData ref;
		const char *name = p + strlen("cannot lock ref '"), *q = strchr(name, '\'');
		ref.data = (uint8_t *)name;
		ref.len = q ? (size_t)(q - name) : strlen(name);
		locked.refs = &ref;
		locked.n_refs = 1;
		det.error_case = GITALY__DELETE_REFS_ERROR__ERROR_REFERENCES_LOCKED;
		det.references_locked = &locked;
		dr_finish_detail(x, GRPC_ABORTED, "cannot lock references", &det);
		return;
	}
	dr_fail(x, GRPC_INTERNAL, "unable to prepare: %s", x->err.buf);
}

static void dr_committed_vote(void *arg, enum grpc_code code, const char *msg)
{
	struct delete_refs *x = arg;
	Gitaly__DeleteRefsResponse resp = GITALY__DELETE_REFS_RESPONSE__INIT;
	x->vote_pending = 0;
	if (code != GRPC_OK) {
		dr_fail(x, GRPC_INTERNAL, "committing vote: %s", msg ? msg : "");
		return;
	}
	x->state = DR_DONE;
	reposvc_reply(&x->op, &resp);
}

static void dr_progress(struct delete_refs *x)
{
	if (x->state == DR_PREPARE && x->exited) {
		dr_prepare_failed(x);
	} else if (x->state == DR_COMMIT && x->exited) {
		if (x->exit_status == 0 && strstr(x->out.buf, "commit: ok\n")) {
			x->state = DR_VOTE_COMMITTED;
			x->vote_pending = 1;
			vote_cast(x->op.g, x->op.call, VOTE_PHASE_COMMITTED, x->vote, dr_committed_vote, x);
			return;
		}
		dr_chomp(&x->err);
		dr_fail(x, GRPC_INTERNAL, "unable to commit: %s", x->err.buf);
	}
}

static void dr_prepared_vote(void *arg, enum grpc_code code, const char *msg)
{
	struct delete_refs *x = arg;
	x->vote_pending = 0;
	if (code != GRPC_OK || gitaly_call_gone(&x->op)) {
		/* update-ref is stopped: the transaction is aborted */
		dr_fail(x, GRPC_INTERNAL, "preparatory vote: %s", code != GRPC_OK && msg ? msg : "context canceled");
		return;
	}
	x->state = DR_COMMIT;
	if (x->exited) {
		dr_progress(x);
		return;
	}
	git_cmd_write_stdin(x->cmd, "commit", sizeof("commit"));
	git_cmd_close_stdin(x->cmd);
}

static void dr_stdout(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct delete_refs *x = git_cmd_user(cmd);
	if (x->out.len < DR_OUT_CAP)
		strbuf_add(&x->out, buf, MIN(len, DR_OUT_CAP - x->out.len));
	if (x->state == DR_PREPARE && strstr(x->out.buf, "prepare: ok\n")) {
		/* every reference is locked and the hook voted: now our own vote */
		x->state = DR_VOTE_PREPARED;
		x->vote_pending = 1;
		vote_cast(x->op.g, x->op.call, VOTE_PHASE_PREPARED, x->vote, dr_prepared_vote, x);
	}
}

static void dr_stderr(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct delete_refs *x = git_cmd_user(cmd);
	if (x->err.len < DR_ERR_CAP)
		strbuf_add(&x->err, buf, MIN(len, DR_ERR_CAP - x->err.len));
}

static void dr_exit(struct git_cmd *cmd, int status)
{
	struct delete_refs *x = git_cmd_user(cmd);
	x->cmd = NULL;
	x->exited = 1;
	x->exit_status = status;
	if (!x->vote_pending)
		dr_progress(x);
}

static const struct git_cmd_ops dr_ops = {
	.on_stdout = dr_stdout,
	.on_stderr = dr_stderr,
	.on_exit = dr_exit,
};

static void dr_writer_ready(void *arg)
{
	static const char *const flags[] = { "-z", "--stdin", NULL };
	struct delete_refs *x = arg;
	struct strbuf in = STRBUF_INIT, msg = STRBUF_INIT;
	struct git_call gc = { 0 };

	if (gitaly_call_gone(&x->op)) {
		cleanup_writer_leave(x->writer);
		dr_fail(x, GRPC_CANCELLED, "%s", "context canceled");
		return;
	}
	gc.git_dir = x->path;
	gc.repo = x->req->repository;
	gc.subcmd = "update-ref";
	gc.flags = flags;
	gc.hooks = HOOK_REFERENCE_TRANSACTION;   /* the hook votes on the deletions too */
	gc.rpc = x->op.call;
	x->state = DR_PREPARE;
	if (gitaly_git_spawn(x->op.g, &gc, 1, 1, &dr_ops, x, &x->cmd, &msg) < 0) {
		cleanup_writer_leave(x->writer);
		dr_fail(x, GRPC_INTERNAL, "start reference transaction: %s", msg.buf);
		strbuf_release(&msg);
		return;
	}
	cleanup_writer_leave_on_reap(x->writer, x->cmd);
	strbuf_add(&in, "start", sizeof("start"));
	for (size_t i = 0; i < x->refs.nr; i++) {
		/* no old value: whatever the reference points to, it goes */
		strbuf_addf(&in, "delete %s", x->refs.v[i]);
		strbuf_add(&in, "\0", 2);
	}
	strbuf_add(&in, "prepare", sizeof("prepare"));
	git_cmd_write_stdin(x->cmd, in.buf, in.len);
	strbuf_release(&in);
	strbuf_release(&msg);
}

/* Names known: refuse malformed ones, then take our turn as a writer. */
static void dr_names_ready(struct delete_refs *x)
{
	Gitaly__DeleteRefsError det = GITALY__DELETE_REFS_ERROR__INIT;
	Gitaly__InvalidRefFormatError inv = GITALY__INVALID_REF_FORMAT_ERROR__INIT;
	ProtobufCBinaryData *bad = NULL;
	struct strbuf msg = STRBUF_INIT;
	size_t nbad = 0;

	for (size_t i = 0; i < x->refs.nr; i++) {
		/* names from the request may hold NUL, which the string copy would cut */
		const ProtobufCBinaryData *raw = x->req->n_refs ? &x->req->refs[i] : NULL;
		strbuf_reset(&msg);
		if ((raw && rd_has_nul(raw->data, raw->len)) ||
		    gitaly_check_revision(x->refs.v[i], strlen(x->refs.v[i]), &msg) < 0) {
			bad = xrealloc(bad, (nbad + 1) * sizeof(*bad));
			bad[nbad].data = raw ? raw->data : (uint8_t *)x->refs.v[i];
			bad[nbad++].len = raw ? raw->len : strlen(x->refs.v[i]);
		}
		strbuf_addf(&x->names, "%s\n", x->refs.v[i]);
	}
	strbuf_release(&msg);
	if (nbad) {
		inv.refs = bad;
		inv.n_refs = nbad;
		det.error_case = GITALY__DELETE_REFS_ERROR__ERROR_INVALID_FORMAT;
		det.invalid_format = &inv;
		dr_finish_detail(x, GRPC_INVALID_ARGUMENT, "invalid references", &det);
		free(bad);
		return;
	}
	gitaly_sha1(x->names.buf, x->names.len, x->vote);
	x->state = DR_WRITER;
	x->writer = cleanup_writer_enter(x->op.g, x->path, dr_writer_ready, x);
}

static int dr_excluded(const struct delete_refs *x, const char *name, size_t len)
{
	for (size_t i = 0; i < x->req->n_except_with_prefix; i++) {
		const ProtobufCBinaryData *p = &x->req->except_with_prefix[i];
		if (len >= p->len && !memcmp(name, p->data, p->len))
			return 1;
	}
	return 0;
}

static void dr_listed(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct delete_refs *x = arg;
	char *p = out->buf, *end = out->buf + out->len;
	x->cmd = NULL;
	if (gitaly_call_gone(&x->op)) {
		dr_fail(x, GRPC_CANCELLED, "%s", "context canceled");
		return;
	}
	if (status != 0) {
		dr_chomp(err);
		dr_fail(x, GRPC_INTERNAL, "listing references: %s", err->buf);
		return;
	}
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (n && !dr_excluded(x, p, n))
			strvec_pushf(&x->refs, "%.*s", (int)n, p);
		p += n + 1;
	}
	dr_names_ready(x);
}

static const char *dr_validate(const Gitaly__DeleteRefsRequest *req)
{
	if (req->n_except_with_prefix && req->n_refs)
		return "ExceptWithPrefix and Refs are mutually exclusive";
	if (!req->n_except_with_prefix && !req->n_refs)
		return "empty ExceptWithPrefix and Refs";
	for (size_t i = 0; i < req->n_except_with_prefix; i++)
		if (!req->except_with_prefix[i].len)
			return "empty prefix for exclusion";
	for (size_t i = 0; i < req->n_refs; i++)
		if (!req->refs[i].len)
			return "empty ref";
	return NULL;
}

static void delete_refs(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__DeleteRefsRequest *req = msg_unpack(call, &gitaly__delete_refs_request__descriptor, buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	struct delete_refs *x;
	enum grpc_code code;
	const char *bad;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		msg_free(req);
		goto out;
	}
	if ((bad = dr_validate(req))) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, bad, NULL);
		msg_free(req);
		goto out;
	}
	x = xcalloc(1, sizeof(*x));
	reposvc_init(&x->op, g, call, dr_release);
	x->op.cancel = dr_cancel;
	x->req = req;
	x->path = strbuf_detach(&path, NULL);
	strvec_init(&x->refs);
	strbuf_init(&x->out, 0);
	strbuf_init(&x->err, 0);
	strbuf_init(&x->names, 0);
	gitaly_call_watch(&x->op);
	if (req->n_refs) {
		for (size_t i = 0; i < req->n_refs; i++)
			strvec_pushf(&x->refs, "%.*s", (int)req->refs[i].len, (const char *)req->refs[i].data);
		dr_names_ready(x);
	} else {
		static const char *const flags[] = { "--format=%(refname)", NULL };
		struct git_call gc = { 0 };
		gc.git_dir = x->path;
		gc.repo = req->repository;
		gc.subcmd = "for-each-ref";
		gc.flags = flags;
		gc.rpc = call;
		x->state = DR_LISTING;
		if (gitaly_git_capture(g, &gc, NULL, 0, DR_LIST_MAX, dr_listed, x, &x->cmd, &msg) < 0)
			dr_fail(x, GRPC_INTERNAL, "listing references: %s", msg.buf);
	}
out:
	strbuf_release(&path);
	strbuf_release(&msg);
}

void gitaly_register_delete_refs(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.RefService/DeleteRefs", delete_refs, g);
}
