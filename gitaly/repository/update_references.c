/*
 * UpdateReferences (RefService, client streaming): the updates of every
 * request message go to one `git update-ref -z --stdin` transaction as they
 * arrive; the half-close commits it, and its reference-transaction hook
 * votes (docs/technical/refs.md, "UpdateReferences").
 */
#include "repository/repository.h"
#include "read/read.h"
#include "hooks/hooks.h"
#include "base/util.h"
#include "errors.pb-c.h"
#include "ref.pb-c.h"

#include <stdlib.h>
#include <string.h>

#define UR_OUT_CAP 4096

struct update_refs {
	struct gitaly_call base;
	struct strbuf path;
	Gitaly__UpdateReferencesRequest *first;   /* held until the updater runs */
	struct cleanup_writer *writer;
	struct git_cmd *cmd;                      /* update-ref, NULL once it exited */
	size_t hexsz;
	int messages, failed, ready, half_closed, committing, recv_paused;
	struct strbuf out;
};

static void ur_release(struct gitaly_call *c)
{
	struct update_refs *x = container_of(c, struct update_refs, base);
	msg_free(x->first);
	strbuf_release(&x->path);
	strbuf_release(&x->out);
	free(x);
}

static void ur_stop(struct update_refs *x)
{
	if (x->cmd)
		git_cmd_stop(x->cmd);   /* SIGTERM: git drops its locks, the transaction is aborted */
}

static void ur_cancel(struct gitaly_call *c)
{
	ur_stop(container_of(c, struct update_refs, base));
}

static void ur_fail_detail(struct update_refs *x, enum grpc_code code, const char *msg,
			   const Gitaly__UpdateReferencesError *detail)
{
	x->failed = 1;
	if (detail)
		gitaly_call_finish_detail(&x->base, code, msg, &detail->base);
	else
		gitaly_call_finish(&x->base, code, msg, NULL);
	ur_stop(x);
}

static void ur_fail(struct update_refs *x, enum grpc_code code, const char *fmt, const char *arg)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, fmt, arg);
	ur_fail_detail(x, code, sb.buf, NULL);
	strbuf_release(&sb);
}

/* Upstream's reference name rules (git.ValidateReference); NULL when `name` passes. */
static const char *ur_check_reference(const char *name, size_t len)
{
	const char *p, *end = name + len;
	if (len == 4 && !memcmp(name, "HEAD", 4))
		return "HEAD reference not allowed";
	if (len < 5 || memcmp(name, "refs/", 5))
		return "reference is not fully qualified";
	name += 5;
	if (name == end)
		return "refs/ is not a valid reference";
	if (end[-1] == '/')
		return "reference must not end with slash";
	if (end[-1] == '.')
		return "reference must not end with dot";
	for (p = name; p + 1 < end; p++) {
		if (p[0] == '@' && p[1] == '{')
			return "reference must not contain @{";
		if (p[0] == '.' && p[1] == '.')
			return "reference must not contain double dots";
	}
	for (p = name; p < end; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == ' ' || c == '\t' || c == '\n')
			return "reference must not contain space characters";
		if (strchr(":?[\\^~*\177", c) && c)
			return "reference must not contain special characters";
		if (c < 32)
			return "reference must not contain control characters";
	}
	for (p = name; p < end;) {
		const char *slash = memchr(p, '/', (size_t)(end - p));
		size_t n = slash ? (size_t)(slash - p) : (size_t)(end - p);
		if (!n)
			return "empty component is not allowed";
		if (p[0] == '.')
			return "component must not start with dot";
		if (n >= 5 && !memcmp(p + n - 5, ".lock", 5))
			return "component must not end with .lock";
		p += n + 1;
	}
	return NULL;
}

/* Go's ObjectHash.ValidateHex message for `hex`; 0 when it passes. */
static int ur_check_hex(struct update_refs *x, const char *what, const ProtobufCBinaryData *b)
{
	struct strbuf msg = STRBUF_INIT, hex = STRBUF_INIT;
	int rc = 0;
	strbuf_add(&hex, b->data, b->len);
	if (rd_has_nul(b->data, b->len) || hooks_validate_hex(hex.buf, x->hexsz, &msg) < 0) {
		if (!msg.len)
			strbuf_addstr(&msg, "invalid object ID");
		ur_fail(x, GRPC_INVALID_ARGUMENT, what, msg.buf);
		rc = -1;
	}
	strbuf_release(&msg);
	strbuf_release(&hex);
	return rc;
}

/* Queue one request's updates; -1 after failing the call. */
static int ur_apply(struct update_refs *x, const Gitaly__UpdateReferencesRequest *req)
{
	struct strbuf in = STRBUF_INIT;
	if (x->messages > 1 && req->repository) {
		ur_fail(x, GRPC_INVALID_ARGUMENT, "%s", "repository set in subsequent request");
		return -1;
	}
	if (!req->n_updates) {
		ur_fail(x, GRPC_INVALID_ARGUMENT, "%s", "no updates specified");
		return -1;
	}
	for (size_t i = 0; i < req->n_updates; i++) {
		const Gitaly__UpdateReferencesRequest__Update *u = req->updates[i];
		const char *bad = rd_has_nul(u->reference.data, u->reference.len) ? "reference must not contain control characters"
			: ur_check_reference((const char *)u->reference.data, u->reference.len);
		if (bad) {
			Gitaly__UpdateReferencesError det = GITALY__UPDATE_REFERENCES_ERROR__INIT;
			Gitaly__InvalidRefFormatError inv = GITALY__INVALID_REF_FORMAT_ERROR__INIT;
			ProtobufCBinaryData ref = u->reference;
			struct strbuf m = STRBUF_INIT;
			inv.refs = &ref;
			inv.n_refs = 1;
			det.error_case = GITALY__UPDATE_REFERENCES_ERROR__ERROR_INVALID_FORMAT;
			det.invalid_format = &inv;
			strbuf_addf(&m, "validating reference: %s", bad);
			ur_fail_detail(x, GRPC_INVALID_ARGUMENT, m.buf, &det);
			strbuf_release(&m);
			strbuf_release(&in);
			return -1;
		}
		if ((u->old_object_id.len && ur_check_hex(x, "validating old object ID: %s", &u->old_object_id) < 0) ||
		    ur_check_hex(x, "validating new object ID: %s", &u->new_object_id) < 0) {
			strbuf_release(&in);
			return -1;
		}
		strbuf_addstr(&in, "update ");
		strbuf_add(&in, u->reference.data, u->reference.len);
		strbuf_addch(&in, '\0');
		strbuf_add(&in, u->new_object_id.data, u->new_object_id.len);
		strbuf_addch(&in, '\0');
		strbuf_add(&in, u->old_object_id.data, u->old_object_id.len);
		strbuf_addch(&in, '\0');
	}
	if (x->cmd)
		git_cmd_write_stdin(x->cmd, in.buf, in.len);
	strbuf_release(&in);
	if (x->cmd && git_cmd_stdin_queued(x->cmd) > GIT_CMD_STDIN_HIGH && !x->recv_paused && x->base.call) {
		x->recv_paused = 1;
		grpc_call_pause_recv(x->base.call);
	}
	return 0;
}

static void ur_commit(struct update_refs *x)
{
	if (x->failed || x->committing || !x->cmd)
		return;
	x->committing = 1;
	git_cmd_write_stdin(x->cmd, "commit", sizeof("commit"));
	git_cmd_close_stdin(x->cmd);
}

/* git's complaint about `err` as upstream's updater reports it. */
static void ur_commit_failed(struct update_refs *x, const struct strbuf *err)
{
	Gitaly__UpdateReferencesError det = GITALY__UPDATE_REFERENCES_ERROR__INIT;
	const char *p = strstr(err->buf, "cannot lock ref '"), *name, *q;
	ProtobufCBinaryData ref;

	if (p) {
		name = p + strlen("cannot lock ref '");
		q = strchr(name, '\'');
		ref.data = (uint8_t *)name;
		ref.len = q ? (size_t)(q - name) : strlen(name);
		if (q && strstr(q, "Unable to create") && strstr(q, "File exists")) {
			Gitaly__ReferencesLockedError locked = GITALY__REFERENCES_LOCKED_ERROR__INIT;
			locked.refs = &ref;
			locked.n_refs = 1;
			det.error_case = GITALY__UPDATE_REFERENCES_ERROR__ERROR_REFERENCES_LOCKED;
			det.references_locked = &locked;
			ur_fail_detail(x, GRPC_ABORTED, "reference is already locked", &det);
			return;
		}
		if (q && !strncmp(q, "': is at ", 9)) {
			/* "is at <actual> but expected <expected>" */
			Gitaly__ReferenceStateMismatchError mm = GITALY__REFERENCE_STATE_MISMATCH_ERROR__INIT;
			const char *actual = q + 9, *sep = strstr(actual, " but expected "), *exp, *nl;
			if (sep) {
				exp = sep + strlen(" but expected ");
				nl = strchr(exp, '\n');
				mm.reference_name = ref;
				mm.actual_object_id.data = (uint8_t *)actual;
				mm.actual_object_id.len = (size_t)(sep - actual);
				mm.expected_object_id.data = (uint8_t *)exp;
				mm.expected_object_id.len = nl ? (size_t)(nl - exp) : strlen(exp);
				det.error_case = GITALY__UPDATE_REFERENCES_ERROR__ERROR_REFERENCE_STATE_MISMATCH;
				det.reference_state_mismatch = &mm;
				ur_fail_detail(x, GRPC_ABORTED, "reference does not point to expected object", &det);
				return;
			}
		}
	}
	if (strstr(err->buf, "with nonexistent object")) {
		ur_fail(x, GRPC_NOT_FOUND, "%s", "target object missing");
		return;
	}
	ur_fail(x, GRPC_INTERNAL, "committing update: %s", err->len ? err->buf : "update-ref failed");
}

static void ur_stdout(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct update_refs *x = git_cmd_user(cmd);
	if (x->out.len < UR_OUT_CAP)
		strbuf_add(&x->out, buf, MIN(len, UR_OUT_CAP - x->out.len));
}

static void ur_drained(struct git_cmd *cmd)
{
	struct update_refs *x = git_cmd_user(cmd);
	if (x->recv_paused && x->base.call) {
		x->recv_paused = 0;
		grpc_call_resume_recv(x->base.call);
	}
}

static void ur_exit(struct git_cmd *cmd, int status)
{
	struct update_refs *x = git_cmd_user(cmd);
	struct strbuf err = STRBUF_INIT;
	x->cmd = NULL;
	if (x->base.call && !x->failed) {
		if (x->committing && status == 0 && strstr(x->out.buf, "commit: ok\n")) {
			Gitaly__UpdateReferencesResponse resp = GITALY__UPDATE_REFERENCES_RESPONSE__INIT;
			gitaly_call_send(&x->base, &resp);
			gitaly_call_finish(&x->base, GRPC_OK, NULL, NULL);
		} else {
			const struct strbuf *e = git_cmd_stderr(cmd);
			strbuf_add(&err, e->buf, e->len);
			while (err.len && err.buf[err.len - 1] == '\n')
				strbuf_setlen(&err, err.len - 1);
			ur_commit_failed(x, &err);
		}
	}
	strbuf_release(&err);
	gitaly_call_drop(&x->base);
}

static const struct git_cmd_ops ur_ops = {
	.on_stdout = ur_stdout,
	.on_stdin_drained = ur_drained,
	.on_exit = ur_exit,
};

static void ur_format(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	static const char *const flags[] = { "-z", "--stdin", NULL };
	struct update_refs *x = arg;
	struct strbuf msg = STRBUF_INIT;
	struct git_call gc = { 0 };
	(void)err;

	if (x->failed || !x->base.call) {
		cleanup_writer_leave(x->writer);
		goto out;
	}
	if (status == 0 && !strncmp(out->buf, "sha256", 6))
		x->hexsz = 64;
	else if (status == 0 && !strncmp(out->buf, "sha1", 4))
		x->hexsz = 40;
	else {
		cleanup_writer_leave(x->writer);
		ur_fail(x, GRPC_INTERNAL, "detecting object hash: %s", "unknown object format");
		goto out;
	}
	gc.git_dir = x->path.buf;
	gc.repo = x->first->repository;
	gc.subcmd = "update-ref";
	gc.flags = flags;
	gc.hooks = HOOK_REFERENCE_TRANSACTION;   /* the hook votes on the transaction */
	gc.rpc = x->base.call;
	gitaly_call_hold(&x->base);
	if (gitaly_git_spawn(x->base.g, &gc, 1, 1, &ur_ops, x, &x->cmd, &msg) < 0) {
		x->cmd = NULL;
		x->base.holds--;
		cleanup_writer_leave(x->writer);
		ur_fail(x, GRPC_INTERNAL, "creating updater: %s", msg.buf);
		goto out;
	}
	cleanup_writer_leave_on_reap(x->writer, x->cmd);
	git_cmd_write_stdin(x->cmd, "start", sizeof("start"));
	x->ready = 1;
	if (ur_apply(x, x->first) < 0)
		goto out;
	if (x->half_closed)
		ur_commit(x);
	else if (x->base.call && !x->recv_paused)
		grpc_call_resume_recv(x->base.call);
out:
	gitaly_call_drop(&x->base);
	strbuf_release(&msg);
}

static void ur_writer_ready(void *arg)
{
	static const char *const flags[] = { "--show-object-format", NULL };
	struct update_refs *x = arg;
	struct strbuf msg = STRBUF_INIT;
	struct git_call gc = { 0 };

	if (x->failed || !x->base.call) {
		cleanup_writer_leave(x->writer);
		gitaly_call_drop(&x->base);
		return;
	}
	gc.git_dir = x->path.buf;
	gc.repo = x->first->repository;
	gc.subcmd = "rev-parse";
	gc.flags = flags;
	gc.rpc = x->base.call;
	/* the hold of the writer wait passes to the capture */
	if (gitaly_git_capture(x->base.g, &gc, NULL, 0, 4096, ur_format, x, NULL, &msg) < 0) {
		cleanup_writer_leave(x->writer);
		ur_fail(x, GRPC_INTERNAL, "detecting object hash: %s", msg.buf);
		gitaly_call_drop(&x->base);
	}
	strbuf_release(&msg);
}

static void ur_message(struct grpc_call *call, const uint8_t *buf, size_t len)
{
	struct update_refs *x = grpc_call_user(call);
	Gitaly__UpdateReferencesRequest *req;
	struct strbuf msg = STRBUF_INIT;
	enum grpc_code code;

	if (x->failed)
		return;
	if (!(req = msg_unpack(call, &gitaly__update_references_request__descriptor, buf, len))) {
		x->failed = 1;
		ur_stop(x);
		return;
	}
	if (x->messages++) {
		ur_apply(x, req);
		msg_free(req);
		return;
	}
	code = gitaly_locate(x->base.g, req->repository, 0, &x->path, &msg);
	if (code != GRPC_OK) {
		ur_fail(x, code, "%s", msg.buf);
		msg_free(req);
		strbuf_release(&msg);
		return;
	}
	strbuf_release(&msg);
	/* later messages wait until the updater runs */
	x->first = req;
	grpc_call_pause_recv(call);
	gitaly_call_hold(&x->base);
	x->writer = cleanup_writer_enter(x->base.g, x->path.buf, ur_writer_ready, x);
}

static void ur_half_close(struct grpc_call *call)
{
	struct update_refs *x = grpc_call_user(call);
	if (x->failed)
		return;
	if (!x->messages) {
		ur_fail(x, GRPC_UNKNOWN, "%s", "receiving initial request: EOF");
		return;
	}
	x->half_closed = 1;
	if (x->ready)
		ur_commit(x);
}

static void ur_close(struct grpc_call *call, enum grpc_code code)
{
	struct update_refs *x = grpc_call_user(call);
	(void)code;
	gitaly_call_closed(&x->base);
}

static const struct grpc_call_ops ur_call_ops = {
	.on_message = ur_message,
	.on_half_close = ur_half_close,
	.on_close = ur_close,
};

static void update_references(struct grpc_call *call, void *data)
{
	struct update_refs *x = xcalloc(1, sizeof(*x));
	gitaly_call_init(&x->base, data, call, ur_release);
	x->base.cancel = ur_cancel;
	strbuf_init(&x->path, 0);
	strbuf_init(&x->out, 0);
	grpc_call_set_ops(call, &ur_call_ops, x);
}

void gitaly_register_update_references(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_method(s, "/gitaly.RefService/UpdateReferences", update_references, g);
}
