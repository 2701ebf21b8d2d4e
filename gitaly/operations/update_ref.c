/* "Update a reference with hooks" for the User* RPCs, asynchronous (docs/technical/gitaly-node.md, "Write RPCs"). */
#include "operations/operations.h"
#include "base/log.h"
#include "base/util.h"
#include "core/vote.h"

#include <stdlib.h>
#include <string.h>

/* What a custom hook may print into an error detail; the detail travels in a trailer. */
#define HOOK_OUTPUT_CAP (64 * 1024)
#define UPDATE_REF_OUT_CAP 4096
#define UPDATE_REF_ERR_CAP (64 * 1024)

enum upd_state {
	U_PRE_RECEIVE,
	U_UPDATE,
	U_WRITER,          /* waiting for our turn in the repository (core/cleanup.h) */
	U_WAIT_PREPARE,    /* update-ref locks the reference */
	U_VOTE_PREPARED,
	U_ABORTING,        /* the prepared vote failed: update-ref is told to give up */
	U_WAIT_COMMIT,
	U_VOTE_COMMITTED,
	U_POST_RECEIVE,
};

struct op_update {
	struct op *op;
	op_update_fn done;
	char *ref, *new_oid, *old_oid;
	struct strbuf changes;
	char *payload_q;         /* GITALY_HOOKS_PAYLOAD=... for the quarantined repository */
	char *payload;           /* ... and for the repository itself */
	enum upd_state state;
	struct hook_run *run;
	struct git_cmd *cmd;
	int exited, exit_status;
	int vote_pending;
	int writer_pending;      /* cleanup_writer_enter()'s ready is due */
	struct cleanup_writer *writer;
	int cancelled;
	int no_hooks;            /* op_update_ref_plain(): votes only */
	enum grpc_code vote_code;
	struct strbuf vote_msg;
	struct strbuf out, err;  /* update-ref's stdout and stderr */
	struct strbuf hook_out, hook_err;
	struct op_update_result res;
};

static void upd_free(struct op_update *u)
{
	free(u->ref);
	free(u->new_oid);
	free(u->old_oid);
	free(u->payload_q);
	free(u->payload);
	strbuf_release(&u->changes);
	strbuf_release(&u->vote_msg);
	strbuf_release(&u->out);
	strbuf_release(&u->err);
	strbuf_release(&u->hook_out);
	strbuf_release(&u->hook_err);
	strbuf_release(&u->res.msg);
	strbuf_release(&u->res.hook_stdout);
	strbuf_release(&u->res.hook_stderr);
	strbuf_release(&u->res.hook_error);
	strbuf_release(&u->res.api_msg);
	strbuf_release(&u->res.user_id);
	strbuf_release(&u->res.protocol);
	strbuf_release(&u->res.changes);
	strbuf_release(&u->res.cause);
	free(u);
}

static void upd_finish(struct op_update *u)
{
	struct op *op = u->op;
	op->upd = NULL;
	if (!op_step_end(op))
		u->done(op, &u->res);
	upd_free(u);
}

static void upd_fail(struct op_update *u, enum op_update_fail kind, enum grpc_code code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void upd_fail(struct op_update *u, enum op_update_fail kind, enum grpc_code code, const char *fmt, ...)
{
	va_list ap;
	u->res.fail = kind;
	u->res.code = code;
	strbuf_reset(&u->res.msg);
	va_start(ap, fmt);
	strbuf_vaddf(&u->res.msg, fmt, ap);
	va_end(ap);
	upd_finish(u);
}

static int blank(const struct strbuf *sb)
{
	for (size_t i = 0; i < sb->len; i++)
		if (!strchr(" \t\r\n\v\f", sb->buf[i]))
			return 0;
	return 1;
}

static const char *kind_name(enum hook_kind k)
{
	return k == HOOK_KIND_PRE_RECEIVE ? "pre-receive" : k == HOOK_KIND_UPDATE ? "update" : "post-receive";
}

/* upstream's wrapHookError(): custom hook failures keep their output apart, others get it appended */
static void fail_from_hook(struct op_update *u, enum hook_kind kind, const struct hook_result *hr)
{
	struct op_update_result *r = &u->res;
	if (hr->fail == HOOK_FAIL_CUSTOM) {
		const struct strbuf *text = !blank(&u->hook_err) ? &u->hook_err : !blank(&u->hook_out) ? &u->hook_out
												   : &hr->msg;
		r->hook = kind;
		strbuf_add(&r->hook_stdout, u->hook_out.buf, u->hook_out.len);
		strbuf_add(&r->hook_stderr, u->hook_err.buf, u->hook_err.len);
		strbuf_add(&r->hook_error, text->buf, text->len);
		upd_fail(u, UPD_CUSTOM_HOOK, GRPC_PERMISSION_DENIED, "running %s hooks: %s", kind_name(kind),
			 r->hook_error.buf);
		return;
	}
	{
		struct strbuf m = STRBUF_INIT;
		strbuf_add(&m, hr->msg.buf, hr->msg.len);
		if (!blank(&u->hook_err)) {
			strbuf_addstr(&m, ", stderr: ");
			hooks_quote(&m, u->hook_err.buf, u->hook_err.len);
		} else if (!blank(&u->hook_out)) {
			strbuf_addstr(&m, ", stdout: ");
			hooks_quote(&m, u->hook_out.buf, u->hook_out.len);
		}
		if (hr->fail == HOOK_FAIL_NOT_ALLOWED) {
			strbuf_addstr(&r->api_msg, hr->api_msg.buf);
			strbuf_addstr(&r->user_id, hr->user_id ? hr->user_id : "");
			strbuf_addstr(&r->protocol, hr->protocol ? hr->protocol : "");
			strbuf_add(&r->changes, u->changes.buf, u->changes.len);
			upd_fail(u, UPD_NOT_ALLOWED, GRPC_PERMISSION_DENIED, "running %s hooks: %s", kind_name(kind), m.buf);
		} else {
			upd_fail(u, UPD_OTHER, hr->code ? hr->code : GRPC_INTERNAL, "running %s hooks: %s",
				 kind_name(kind), m.buf);
		}
		strbuf_release(&m);
	}
}

/* --- the hooks --- */

static void on_hook_output(void *arg, int fd, const char *buf, size_t len)
{
	struct op_update *u = arg;
	struct strbuf *sb = fd == 1 ? &u->hook_out : &u->hook_err;
	if (sb->len < HOOK_OUTPUT_CAP)
		strbuf_add(sb, buf, MIN(len, HOOK_OUTPUT_CAP - sb->len));
}

static void on_hook_done(void *arg, const struct hook_result *hr);

static void start_hook(struct op_update *u, enum hook_kind kind, const Gitaly__Repository *repo,
		       const char *payload)
{
	struct hook_run_opts o = { 0 };
	const char *env[] = { payload };
	o.kind = kind;
	o.repo = repo;
	o.env = env;
	o.nr_env = 1;
	o.changes = u->changes.buf;
	o.changes_len = u->changes.len;
	o.ref = u->ref;
	o.old_value = u->old_oid;
	o.new_value = u->new_oid;
	o.tx_call = u->op->base.call;
	o.on_output = on_hook_output;
	o.done = on_hook_done;
	o.arg = u;
	u->run = hook_run_start(u->op->base.g, &o);
}

static void start_update_ref(struct op_update *u);

static void on_hook_done(void *arg, const struct hook_result *hr)
{
	struct op_update *u = arg;
	struct op *op = u->op;
	enum hook_kind kind = u->state == U_PRE_RECEIVE ? HOOK_KIND_PRE_RECEIVE
			     : u->state == U_UPDATE ? HOOK_KIND_UPDATE : HOOK_KIND_POST_RECEIVE;
	u->run = NULL;
	if (hr->fail != HOOK_FAIL_NONE) {
		if (kind == HOOK_KIND_POST_RECEIVE && hr->fail == HOOK_FAIL_CUSTOM) {
			/* like git, a failing post-receive hook does not undo the update */
			log_msgf(LOG_ERROR, "custom post-receive hook returned an error: %s", hr->msg.buf);
			upd_finish(u);
			return;
		}
		fail_from_hook(u, kind, hr);
		return;
	}
	switch (u->state) {
	case U_PRE_RECEIVE: {
		struct strbuf err = STRBUF_INIT;
		/* GitLab agreed: the new objects may join the repository before refs point at them */
		if (op->qrepo && op_quarantine_migrate(op, &err) < 0) {
			upd_fail(u, UPD_OTHER, GRPC_INTERNAL, "migrating quarantined objects: %s", err.buf);
			strbuf_release(&err);
			return;
		}
		strbuf_release(&err);
		u->state = U_UPDATE;
		start_hook(u, HOOK_KIND_UPDATE, op->qrepo ? op->qrepo : op->repo, u->payload);
		return;
	}
	case U_UPDATE:
		start_update_ref(u);
		return;
	default:
		upd_finish(u);
		return;
	}
}

/* --- git update-ref, driven through its transaction commands --- */

/* The "fatal: ..." git printed, as upstream's updateref package names it. */
static void parse_update_ref_error(const struct strbuf *err, int status, struct strbuf *cause)
{
	static const char packed_new[] = "packed-refs.new: File exists\n";
	const char *e = err->buf;
	int fatal = !strncmp(e, "fatal: ", 7);
	if (fatal && strstr(e, ": cannot lock ref '") && strstr(e, "': Unable to create '") &&
	    strstr(e, "': File exists.") && (!strncmp(e + 7, "prepare: ", 9) || !strncmp(e + 7, "commit: ", 8)))
		strbuf_addstr(cause, "reference is already locked");
	else if (strstr(e, "packed-refs.lock': File exists.\n") ||
		 (err->len >= sizeof(packed_new) - 1 && !strcmp(e + err->len - (sizeof(packed_new) - 1), packed_new)))
		strbuf_addstr(cause, "packed-refs locked");
	else if (!strncmp(e, "fatal: invalid ref format: ", 27))
		strbuf_addstr(cause, "invalid reference format");
	else if (fatal && strstr(e, ": cannot lock ref '") && strstr(e, "' exists; cannot create '"))
		strbuf_addstr(cause, "file directory conflict");
	else if (fatal && strstr(e, "' at the same time\n"))
		strbuf_addstr(cause, "conflicting reference updates in the same transaction");
	else if (fatal && strstr(e, "' with nonexistent object "))
		strbuf_addstr(cause, "target object missing");
	else if (fatal && strstr(e, ": trying to write non-commit object "))
		strbuf_addstr(cause, "target object not a commit");
	else if (fatal && strstr(e, ": cannot lock ref '") && strstr(e, "': is at ") && strstr(e, " but expected "))
		strbuf_addstr(cause, "reference does not point to expected object");
	else if (fatal && strstr(e, ": cannot lock ref '") && strstr(e, "': reference already exists\n"))
		strbuf_addstr(cause, "reference already exists");
	else if (fatal && strstr(e, ": multiple updates for ref '") && strstr(e, "' not allowed\n"))
		strbuf_addstr(cause, "reference has been updated multiple times within a transaction");
	else if (status > 0)
		strbuf_addf(cause, "exit status %d", status);
	else
		strbuf_addf(cause, "signal: %d", -status);
}

static void fail_ref(struct op_update *u)
{
	struct op_update_result *r = &u->res;
	parse_update_ref_error(&u->err, u->exit_status, &r->cause);
	r->ref = u->ref;
	r->old_oid = u->old_oid;
	r->new_oid = u->new_oid;
	upd_fail(u, UPD_REF, GRPC_FAILED_PRECONDITION, "reference update: %s", r->cause.buf);
}

/* A vote came back: 1 when the update was cancelled meanwhile (then `u` is gone). */
static int vote_returned(struct op_update *u)
{
	u->vote_pending = 0;
	if (!u->cancelled)
		return 0;
	op_step_end(u->op);
	upd_free(u);
	return 1;
}

static void on_committed_vote(void *arg, enum grpc_code code, const char *msg)
{
	struct op_update *u = arg;
	if (vote_returned(u))
		return;
	if (code != GRPC_OK) {
		upd_fail(u, UPD_OTHER, GRPC_INTERNAL,
			 "executing committing reference-transaction hook: error voting on transaction: %s", msg ? msg : "");
		return;
	}
	if (u->no_hooks) {
		upd_finish(u);
		return;
	}
	u->state = U_POST_RECEIVE;
	start_hook(u, HOOK_KIND_POST_RECEIVE, u->op->repo, u->payload);
}

static void vote(struct op_update *u, enum vote_phase phase, vote_done_fn fn)
{
	uint8_t hash[20];
	gitaly_sha1(u->changes.buf, u->changes.len, hash);
	u->vote_pending = 1;
	vote_cast(u->op->base.g, u->op->base.call, phase, hash, fn, u);
}

/* Decide what the update-ref process's state means now; called on output, exit and vote results. */
static void update_ref_progress(struct op_update *u)
{
	switch (u->state) {
	case U_WAIT_PREPARE:
		if (u->exited) {
			fail_ref(u);
			return;
		}
		break;
	case U_ABORTING:
		if (u->exited && !u->vote_pending)
			upd_fail(u, UPD_OTHER, GRPC_INTERNAL,
				 "executing preparatory reference-transaction hook: error voting on transaction: %s",
				 u->vote_msg.buf);
		break;
	case U_WAIT_COMMIT:
		if (!u->exited)
			break;
		if (u->exit_status == 0 && strstr(u->out.buf, "commit: ok\n")) {
			u->state = U_VOTE_COMMITTED;
			vote(u, VOTE_PHASE_COMMITTED, on_committed_vote);
		} else {
			fail_ref(u);
		}
		break;
	default:
		break;
	}
}

static void on_prepared_vote(void *arg, enum grpc_code code, const char *msg)
{
	struct op_update *u = arg;
	if (vote_returned(u))
		return;
	if (code != GRPC_OK) {
		u->vote_code = code;
		strbuf_addstr(&u->vote_msg, msg ? msg : "");
		u->state = U_ABORTING;
		if (u->cmd)
			git_cmd_close_stdin(u->cmd);   /* an unfinished transaction is aborted at EOF */
		update_ref_progress(u);
		return;
	}
	if (u->exited) {
		fail_ref(u);
		return;
	}
	u->state = U_WAIT_COMMIT;
	git_cmd_write_stdin(u->cmd, "commit", sizeof("commit"));   /* with its NUL terminator */
	git_cmd_close_stdin(u->cmd);
}

static void ur_stdout(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct op_update *u = git_cmd_user(cmd);
	if (u->out.len < UPDATE_REF_OUT_CAP)
		strbuf_add(&u->out, buf, MIN(len, UPDATE_REF_OUT_CAP - u->out.len));
	if (u->state == U_WAIT_PREPARE && strstr(u->out.buf, "prepare: ok\n")) {
		/* the reference is locked: vote as git's reference-transaction hook would */
		u->state = U_VOTE_PREPARED;
		vote(u, VOTE_PHASE_PREPARED, on_prepared_vote);
	}
}

static void ur_stderr(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct op_update *u = git_cmd_user(cmd);
	if (u->err.len < UPDATE_REF_ERR_CAP)
		strbuf_add(&u->err, buf, MIN(len, UPDATE_REF_ERR_CAP - u->err.len));
}

static void ur_exit(struct git_cmd *cmd, int status)
{
	struct op_update *u = git_cmd_user(cmd);
	u->cmd = NULL;
	u->exited = 1;
	u->exit_status = status;
	update_ref_progress(u);
}

static const struct git_cmd_ops update_ref_ops = {
	.on_stdout = ur_stdout,
	.on_stderr = ur_stderr,
	.on_exit = ur_exit,
};

static void writer_ready(void *arg)
{
	static const char *const flags[] = { "-z", "--stdin", NULL };
	struct op_update *u = arg;
	struct op *op = u->op;
	struct git_call gc;
	struct strbuf msg = STRBUF_INIT, in = STRBUF_INIT;

	u->writer_pending = 0;
	if (u->cancelled) {
		cleanup_writer_leave(u->writer);
		op_step_end(op);
		upd_free(u);
		return;
	}
	op_git_call(op, &gc, "update-ref");
	/* objects were migrated: from here on the repository itself, without hooks */
	gc.repo = op->repo;
	gc.flags = flags;
	u->state = U_WAIT_PREPARE;
	if (gitaly_git_spawn(op->base.g, &gc, 1, 1, &update_ref_ops, u, &u->cmd, &msg) < 0) {
		cleanup_writer_leave(u->writer);
		upd_fail(u, UPD_OTHER, GRPC_INTERNAL, "creating updater: %s", msg.buf);
		strbuf_release(&msg);
		return;
	}
	/* the writer leaves when update-ref is gone, also after a cancel detached it */
	cleanup_writer_leave_on_reap(u->writer, u->cmd);
	strbuf_addstr(&in, "start");
	strbuf_addch(&in, '\0');
	strbuf_addf(&in, "update %s", u->ref);
	strbuf_addch(&in, '\0');
	strbuf_addstr(&in, u->new_oid);
	strbuf_addch(&in, '\0');
	strbuf_addstr(&in, u->old_oid);
	strbuf_addch(&in, '\0');
	strbuf_addstr(&in, "prepare");
	strbuf_addch(&in, '\0');
	git_cmd_write_stdin(u->cmd, in.buf, in.len);
	strbuf_release(&in);
	strbuf_release(&msg);
}

/* Stale locks in the repository go first when no other writer of ours runs there. */
static void start_update_ref(struct op_update *u)
{
	u->state = U_WRITER;
	u->writer_pending = 1;
	u->writer = cleanup_writer_enter(u->op->base.g, u->op->path.buf, writer_ready, u);
}

/* --- entry points --- */

/* GITALY_HOOKS_PAYLOAD=... exactly as git would get it for a hooked command on `repo`. */
static char *payload_for(struct op *op, const Gitaly__Repository *repo, const Gitaly__User *user)
{
	struct gitaly_user_details ud = { user->gl_id, user->gl_username, "web", "" };
	struct git_call gc;
	struct strvec argv = STRVEC_INIT, env = STRVEC_INIT;
	struct strbuf msg = STRBUF_INIT;
	char *res = NULL;

	op_git_call(op, &gc, "update-ref");
	gc.repo = repo;
	gc.hooks = HOOK_RECEIVE_PACK;
	gc.user = &ud;
	if (gitaly_git_spec(op->base.g, &gc, &argv, &env, &msg) == 0)
		for (size_t i = 0; i < env.nr; i++)
			if (!strncmp(env.v[i], HOOK_PAYLOAD_ENV "=", sizeof(HOOK_PAYLOAD_ENV)))
				res = xstrdup(env.v[i]);
	strvec_clear(&argv);
	strvec_clear(&env);
	strbuf_release(&msg);
	return res ? res : xstrdup(HOOK_PAYLOAD_ENV "=");
}

static struct op_update *upd_new(struct op *op, const char *ref, const char *new_oid, const char *old_oid,
				 op_update_fn done)
{
	struct op_update *u = xcalloc(1, sizeof(*u));
	u->op = op;
	u->done = done;
	u->ref = xstrdup(ref);
	u->new_oid = xstrdup(new_oid);
	u->old_oid = xstrdup(old_oid);
	strbuf_init(&u->changes, 0);
	strbuf_addf(&u->changes, "%s %s %s\n", old_oid, new_oid, ref);
	strbuf_init(&u->vote_msg, 0);
	strbuf_init(&u->out, 0);
	strbuf_init(&u->err, 0);
	strbuf_init(&u->hook_out, 0);
	strbuf_init(&u->hook_err, 0);
	strbuf_init(&u->res.msg, 0);
	strbuf_init(&u->res.hook_stdout, 0);
	strbuf_init(&u->res.hook_stderr, 0);
	strbuf_init(&u->res.hook_error, 0);
	strbuf_init(&u->res.api_msg, 0);
	strbuf_init(&u->res.user_id, 0);
	strbuf_init(&u->res.protocol, 0);
	strbuf_init(&u->res.changes, 0);
	strbuf_init(&u->res.cause, 0);
	op->upd = u;
	gitaly_call_hold(&op->base);
	return u;
}

void op_update_ref(struct op *op, const Gitaly__User *user, const char *ref, const char *new_oid,
		   const char *old_oid, op_update_fn done)
{
	struct op_update *u = upd_new(op, ref, new_oid, old_oid, done);
	u->payload_q = payload_for(op, op->qrepo ? op->qrepo : op->repo, user);
	u->payload = payload_for(op, op->repo, user);
	u->state = U_PRE_RECEIVE;
	start_hook(u, HOOK_KIND_PRE_RECEIVE, op->qrepo ? op->qrepo : op->repo, u->payload_q);
}

void op_update_ref_plain(struct op *op, const char *ref, const char *new_oid, const char *old_oid,
			 op_update_fn done)
{
	struct op_update *u = upd_new(op, ref, new_oid, old_oid, done);
	struct strbuf err = STRBUF_INIT;
	u->no_hooks = 1;
	if (op->qrepo && op->qdir.len && op_quarantine_migrate(op, &err) < 0) {
		upd_fail(u, UPD_OTHER, GRPC_INTERNAL, "migrating quarantined objects: %s", err.buf);
		strbuf_release(&err);
		return;
	}
	strbuf_release(&err);
	start_update_ref(u);
}

void op_update_cancel(struct op *op)
{
	struct op_update *u = op->upd;
	if (!u)
		return;
	op->upd = NULL;
	u->cancelled = 1;
	if (u->run) {
		hook_run_cancel(u->run);
		u->run = NULL;
	}
	if (u->cmd) {
		/* like upstream's cancelled context: SIGTERM, and git removes its locks before dying */
		git_cmd_detach(u->cmd);
		u->cmd = NULL;
	}
	if (u->vote_pending || u->writer_pending)
		return;   /* the vote's (or the writer's) callback ends the step and frees us */
	op->base.holds--;   /* inside the close: gitaly_call_closed() releases */
	upd_free(u);
}
