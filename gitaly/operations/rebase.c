/* OperationService: UserRebaseToRef and UserRebaseConfirmable, rebases replayed with merge-tree (docs/technical/operations-merge.md, "Rebase"). */
#include "operations/operations.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

#define MERGE_TREE_OUT_CAP (4 * 1024 * 1024)
#define TODO_CAP (16 * 1024 * 1024)
#define HELPER_ENV                                                                                          \
	"GIT_AUTHOR_NAME=GitLab Bot", "GIT_AUTHOR_EMAIL=gitlab-bot@gitlab.com", "GIT_AUTHOR_DATE=694540800 +0000", \
		"GIT_COMMITTER_NAME=GitLab Bot", "GIT_COMMITTER_EMAIL=gitlab-bot@gitlab.com",                   \
		"GIT_COMMITTER_DATE=694540800 +0000"

enum rb_step {
	R_FIRST, R_SOURCE, R_TARGET, R_OLD, R_UP, R_BRANCH, R_MERGE_BASE, R_TODO, R_UP_TREE,
	R_READ, R_HELPER_OURS, R_HELPER_THEIRS, R_MERGE, R_PARENT_TREE, R_WRITE,
};

/* UserRebaseConfirmable's two messages, as UserMergeBranch's */
enum rc_state { RC_HEADER, RC_REBASING, RC_WAIT_APPLY, RC_DONE };

struct rebase {
	struct op op;
	enum rb_step step;
	Gitaly__UserRebaseToRefRequest *req;
	/* UserRebaseConfirmable */
	int confirm;
	enum rc_state state;
	Gitaly__UserRebaseConfirmableRequest *first_req;
	Gitaly__UserRebaseConfirmableRequest__Header *h;
	struct strbuf ref;                       /* refs/heads/<branch> */
	struct strvec conflicts;
	struct strbuf first, source, target_ref, old, up, branch, result;
	struct strbuf ours, ours_tree;           /* the rebased history so far */
	struct strvec todo;                      /* the commits to replay, oldest first */
	size_t next;
	Gitaly__GitCommit *cur;                  /* the commit being replayed */
	struct strbuf cur_message;
	struct strbuf helper_ours, helper_theirs, tree;
	struct op_signature sig;
	int have_sig;
};

static void rb_release(struct op *op)
{
	struct rebase *r = container_of(op, struct rebase, op);
	msg_free(r->req);
	msg_free(r->first_req);
	strbuf_release(&r->ref);
	strvec_clear(&r->conflicts);
	strbuf_release(&r->first);
	strbuf_release(&r->source);
	strbuf_release(&r->target_ref);
	strbuf_release(&r->old);
	strbuf_release(&r->up);
	strbuf_release(&r->branch);
	strbuf_release(&r->result);
	strbuf_release(&r->ours);
	strbuf_release(&r->ours_tree);
	strvec_clear(&r->todo);
	if (r->cur)
		protobuf_c_message_free_unpacked(&r->cur->base, NULL);
	strbuf_release(&r->cur_message);
	strbuf_release(&r->helper_ours);
	strbuf_release(&r->helper_theirs);
	strbuf_release(&r->tree);
	if (r->have_sig)
		op_signature_release(&r->sig);
	free(r);
}

static void rb_step(struct op *op, int status, struct strbuf *out, struct strbuf *err);

static void run(struct rebase *r, enum rb_step step, const char *subcmd, const char *const *flags,
		const char *const *args, const char *const *env, const char *in, size_t inlen, size_t cap)
{
	struct git_call gc;
	r->step = step;
	op_git_call(&r->op, &gc, subcmd);
	gc.flags = flags;
	gc.args = args;
	gc.env = env;
	op_git(&r->op, &gc, in, inlen, cap, rb_step);
}

static void rev_parse(struct rebase *r, enum rb_step step, const char *fmt, const char *rev)
{
	static const char *const flags[] = { "--verify", NULL };
	struct strbuf sb = STRBUF_INIT;
	const char *args[] = { NULL, NULL };
	strbuf_addf(&sb, fmt, rev);
	args[0] = sb.buf;
	run(r, step, "rev-parse", flags, args, NULL, NULL, 0, 4096);
	strbuf_release(&sb);
}

static void set_line(struct strbuf *sb, struct strbuf *out)
{
	op_chomp(out);
	strbuf_reset(sb);
	strbuf_add(sb, out->buf, out->len);
}

static void fail_conflict(struct rebase *r, const struct strbuf *out)
{
	Gitaly__UserRebaseConfirmableError e = GITALY__USER_REBASE_CONFIRMABLE_ERROR__INIT;
	Gitaly__MergeConflictError mc = GITALY__MERGE_CONFLICT_ERROR__INIT;
	struct strbuf msg = STRBUF_INIT;
	ProtobufCBinaryData *files;
	char *ids[2];
	const char *p, *end = out->buf + out->len, *nul;

	if (!r->confirm) {
		op_fail(&r->op, GRPC_FAILED_PRECONDITION, "failed to rebase %s on %s while preparing %s due to conflict",
			r->source.buf, r->first.buf, r->target_ref.buf);
		return;
	}
	/* merge-tree -z --name-only: the tree, then each conflicting path once, then an empty field */
	p = memchr(out->buf, '\0', out->len);
	for (p = p ? p + 1 : end; p < end && *p && (nul = memchr(p, '\0', (size_t)(end - p))); p = nul + 1)
		strvec_push(&r->conflicts, p);
	files = xcalloc(r->conflicts.nr ? r->conflicts.nr : 1, sizeof(*files));
	for (size_t i = 0; i < r->conflicts.nr; i++) {
		files[i].data = (uint8_t *)r->conflicts.v[i];
		files[i].len = strlen(r->conflicts.v[i]);
	}
	ids[0] = r->up.buf;
	ids[1] = r->branch.buf;
	mc.n_conflicting_files = r->conflicts.nr;
	mc.conflicting_files = files;
	mc.n_conflicting_commit_ids = 2;
	mc.conflicting_commit_ids = ids;
	e.error_case = GITALY__USER_REBASE_CONFIRMABLE_ERROR__ERROR_REBASE_CONFLICT;
	e.rebase_conflict = &mc;
	strbuf_addf(&msg, "rebasing commits: rebase: commit \"%s\": there are conflicting files", r->cur->id);
	op_fail_detail(&r->op, GRPC_FAILED_PRECONDITION, msg.buf, &e.base);
	strbuf_release(&msg);
	free(files);
}

static void updated(struct op *op, const struct op_update_result *res)
{
	struct rebase *r = container_of(op, struct rebase, op);
	Gitaly__UserRebaseToRefResponse resp = GITALY__USER_REBASE_TO_REF_RESPONSE__INIT;
	if (res->fail != UPD_OK) {
		op_fail(op, GRPC_FAILED_PRECONDITION, "could not update %s. Please refresh and try again",
			r->target_ref.buf);
		return;
	}
	resp.commit_id = r->result.buf;
	msg_reply(op->base.call, &resp);
}

static void finish(struct rebase *r, const char *oid)
{
	strbuf_reset(&r->result);
	strbuf_addstr(&r->result, oid);
	if (r->confirm) {
		Gitaly__UserRebaseConfirmableResponse resp = GITALY__USER_REBASE_CONFIRMABLE_RESPONSE__INIT;
		resp.user_rebase_confirmable_response_payload_case =
			GITALY__USER_REBASE_CONFIRMABLE_RESPONSE__USER_REBASE_CONFIRMABLE_RESPONSE_PAYLOAD_REBASE_SHA;
		resp.rebase_sha = r->result.buf;
		if (gitaly_call_send(&r->op.base, &resp) < 0)
			return;
		/* nothing moves until the client applies the rebase */
		r->state = RC_WAIT_APPLY;
		grpc_call_resume_recv(r->op.base.call);
		return;
	}
	/* like UserMergeToRef: no hooks, but the update votes */
	op_update_ref_plain(&r->op, r->target_ref.buf, r->result.buf, r->old.buf, updated);
}

/* Replay the next commit of the todo list onto r->ours, or finish. */
static void replay_next(struct rebase *r)
{
	static const char *const flags[] = { "--batch", NULL };
	struct strbuf in = STRBUF_INIT;
	if (r->next == r->todo.nr) {
		finish(r, r->ours.buf);
		return;
	}
	strbuf_addf(&in, "%s\n", r->todo.v[r->next++]);
	run(r, R_READ, "cat-file", flags, NULL, NULL, in.buf, in.len, 64 * 1024 * 1024);
	strbuf_release(&in);
}

static void helper_commit(struct rebase *r, enum rb_step step, const char *tree)
{
	static const char *const env[] = { HELPER_ENV, NULL };
	const char *flags[] = { "-p", r->cur->parent_ids[0], "-F", "-", NULL };
	const char *args[] = { tree, NULL };
	run(r, step, "commit-tree", flags, args, env, "", 0, 4096);
}

static void merge(struct rebase *r, const char *ours, const char *theirs)
{
	static const char *const flags[] = { "-z", "--write-tree", "--name-only", "--allow-unrelated-histories",
					     NULL };
	const char *args[] = { ours, theirs, NULL };
	run(r, R_MERGE, "merge-tree", flags, args, NULL, NULL, 0, MERGE_TREE_OUT_CAP);
}

/* The replayed commit: its author and message, our committer, on top of r->ours. */
static void write_commit(struct rebase *r)
{
	const Gitaly__CommitAuthor *a = r->cur->author;
	struct strbuf adate = STRBUF_INIT, cdate = STRBUF_INIT;
	struct strvec env = STRVEC_INIT;
	const char *flags[] = { "-p", r->ours.buf, "-F", "-", NULL };
	const char *args[] = { r->tree.buf, NULL };
	int tz_ok = a && a->timezone.len == 5 && (a->timezone.data[0] == '+' || a->timezone.data[0] == '-');

	/* a zone that is not "+hhmm" leaves the date in UTC, as upstream */
	strbuf_addf(&adate, "%lld %.*s", (long long)(a && a->date ? a->date->seconds : 0), 5,
		    tz_ok ? (const char *)a->timezone.data : "+0000");
	op_signature_date(&r->sig, &cdate);
	strvec_pushf(&env, "GIT_AUTHOR_NAME=%.*s", a ? (int)a->name.len : 0, a ? (const char *)a->name.data : "");
	strvec_pushf(&env, "GIT_AUTHOR_EMAIL=%.*s", a ? (int)a->email.len : 0, a ? (const char *)a->email.data : "");
	strvec_pushf(&env, "GIT_AUTHOR_DATE=%s", adate.buf);
	strvec_pushf(&env, "GIT_COMMITTER_NAME=%s", r->sig.name.buf);
	strvec_pushf(&env, "GIT_COMMITTER_EMAIL=%s", r->sig.email.buf);
	strvec_pushf(&env, "GIT_COMMITTER_DATE=%s", cdate.buf);
	run(r, R_WRITE, "commit-tree", flags, args, (const char *const *)env.v, r->cur_message.buf,
	    r->cur_message.len, 4096);
	strbuf_release(&adate);
	strbuf_release(&cdate);
	strvec_clear(&env);
}

static int is_empty_tree(const char *oid)
{
	return !strcmp(oid, "4b825dc642cb6eb9a060e54bf8d69288fbee4904") ||
	       !strcmp(oid, "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321");
}

static void rb_step(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct rebase *r = container_of(op, struct rebase, op);
	switch (r->step) {
	case R_FIRST:
		if (status != 0) {
			op_fail(op, GRPC_INVALID_ARGUMENT, "invalid FirstParentRef");
			return;
		}
		set_line(&r->first, out);
		rev_parse(r, R_SOURCE, "%s", r->req->source_sha);
		return;
	case R_SOURCE: {
		static const char *const flags[] = { "--format=%(refname)%00%(objectname)%00%(symref)", NULL };
		const char *args[] = { r->target_ref.buf, NULL };
		const char *expected = r->req->expected_old_oid ? r->req->expected_old_oid : "";
		if (status != 0) {
			op_fail(op, GRPC_INVALID_ARGUMENT, "invalid SourceSha");
			return;
		}
		set_line(&r->source, out);
		if (*expected) {
			if (op_check_expected_old(op, expected) < 0)
				return;
			rev_parse(r, R_OLD, "%s^{object}", expected);
			return;
		}
		run(r, R_TARGET, "for-each-ref", flags, args, NULL, NULL, 0, 1024 * 1024);
		return;
	}
	case R_TARGET: {
		const char *p = out->buf, *end = out->buf + out->len;
		if (status != 0) {
			op_fail(op, GRPC_INTERNAL, "could not read target reference: exit status %d", status);
			return;
		}
		strbuf_reset(&r->old);
		strbuf_addstr(&r->old, op_zero_oid(op));
		while (p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			const char *le = nl ? nl : end;
			const char *z1 = memchr(p, '\0', (size_t)(le - p));
			const char *z2 = z1 ? memchr(z1 + 1, '\0', (size_t)(le - z1 - 1)) : NULL;
			if (z2 && (size_t)(z1 - p) == r->target_ref.len && !memcmp(p, r->target_ref.buf, r->target_ref.len)) {
				if (le > z2 + 1) {
					struct strbuf q = STRBUF_INIT;
					hooks_quote(&q, r->target_ref.buf, r->target_ref.len);
					op_fail(op, GRPC_FAILED_PRECONDITION, "target reference is symbolic: %s", q.buf);
					strbuf_release(&q);
					return;
				}
				strbuf_reset(&r->old);
				strbuf_add(&r->old, z1 + 1, (size_t)(z2 - z1 - 1));
				break;
			}
			p = le + 1;
		}
		goto resolved_old;
	}
	case R_OLD:
		if (status != 0) {
			op_fail(op, GRPC_INVALID_ARGUMENT, "cannot resolve expected old object ID: reference not found");
			return;
		}
		set_line(&r->old, out);
		goto resolved_old;
	case R_UP:
		if (status != 0) {
			if (r->confirm)
				op_fail(op, GRPC_INTERNAL, "resolve start ref: reference not found");
			else
				op_fail(op, GRPC_INVALID_ARGUMENT, "resolving upstream commit: reference not found");
			return;
		}
		set_line(&r->up, out);
		rev_parse(r, R_BRANCH, "%s^{commit}", r->source.buf);
		return;
	case R_BRANCH: {
		const char *args[] = { r->up.buf, NULL, NULL };
		if (status != 0) {
			op_fail(op, r->confirm ? GRPC_INTERNAL : GRPC_INVALID_ARGUMENT, "%sresolving branch commit: reference not found",
				r->confirm ? "rebasing commits: " : "");
			return;
		}
		set_line(&r->branch, out);
		args[1] = r->branch.buf;
		run(r, R_MERGE_BASE, "merge-base", NULL, args, NULL, NULL, 0, 4096);
		return;
	}
	case R_MERGE_BASE: {
		static const char *const flags[] = { "--cherry-pick", "--right-only", "--no-merges", "--topo-order",
						     "--reverse", NULL };
		struct strbuf range = STRBUF_INIT;
		const char *args[] = { NULL, NULL };
		if (status != 0) {
			op_fail(op, GRPC_INTERNAL, "rebasing commits: get merge-base: exit status %d", status);
			return;
		}
		op_chomp(out);
		/* one side contains the other: a fast-forward */
		if (!strcmp(out->buf, r->up.buf)) {
			finish(r, r->branch.buf);
			return;
		}
		if (!strcmp(out->buf, r->branch.buf)) {
			finish(r, r->up.buf);
			return;
		}
		strbuf_addf(&range, "%s...%s", r->up.buf, r->branch.buf);
		args[0] = range.buf;
		run(r, R_TODO, "rev-list", flags, args, NULL, NULL, 0, TODO_CAP);
		strbuf_release(&range);
		return;
	}
	case R_TODO: {
		char *line = out->buf, *nl;
		if (status != 0) {
			op_fail(op, GRPC_INTERNAL, "rebasing commits: rebase using merge-tree: git rev-list: exit status %d",
				status);
			return;
		}
		while (*line && (nl = strchr(line, '\n'))) {
			*nl = '\0';
			if (*line)
				strvec_push(&r->todo, line);
			line = nl + 1;
		}
		strbuf_reset(&r->ours);
		strbuf_add(&r->ours, r->up.buf, r->up.len);
		rev_parse(r, R_UP_TREE, "%s^{tree}", r->up.buf);
		return;
	}
	case R_UP_TREE:
		if (status != 0) {
			op_fail(op, GRPC_INTERNAL, "rebasing commits: reading upstream commit: %s", err->buf);
			return;
		}
		set_line(&r->ours_tree, out);
		replay_next(r);
		return;
	case R_READ: {
		const char *oid, *type, *data, *sep;
		size_t oidlen, typelen, len;
		if (status != 0 || op_parse_batch(out, &oid, &oidlen, &type, &typelen, &data, &len) < 0) {
			op_fail(op, GRPC_INTERNAL, "rebasing commits: reading todo list commit: %s", err->buf);
			return;
		}
		if (r->cur)
			protobuf_c_message_free_unpacked(&r->cur->base, NULL);
		r->cur = op_parse_commit(oid, oidlen, data, len);
		/* the whole message, not the capped body of a GitCommit */
		strbuf_reset(&r->cur_message);
		sep = len >= 2 ? memmem(data, len, "\n\n", 2) : NULL;
		if (sep)
			strbuf_add(&r->cur_message, sep + 2, len - (size_t)(sep + 2 - data));
		if (!r->cur->n_parent_ids) {
			merge(r, r->ours.buf, r->cur->id);
			return;
		}
		/* git 2.39 has no --merge-base: helpers with the parent as only parent stand in for it */
		helper_commit(r, R_HELPER_OURS, r->ours_tree.buf);
		return;
	}
	case R_HELPER_OURS:
	case R_HELPER_THEIRS:
		if (status != 0) {
			op_fail(op, GRPC_INTERNAL, "rebasing commits: write temporary commit: %s", err->buf);
			return;
		}
		if (r->step == R_HELPER_OURS) {
			set_line(&r->helper_ours, out);
			helper_commit(r, R_HELPER_THEIRS, r->cur->tree_id);
		} else {
			set_line(&r->helper_theirs, out);
			merge(r, r->helper_ours.buf, r->helper_theirs.buf);
		}
		return;
	case R_MERGE: {
		const char *nul = memchr(out->buf, '\0', out->len);
		size_t hexlen = nul ? (size_t)(nul - out->buf) : 0;
		if (status == 1 && hexlen == op->hexlen) {
			fail_conflict(r, out);
			return;
		}
		if (status != 0 || hexlen != op->hexlen) {
			op_fail(op, GRPC_INTERNAL, "rebasing commits: merging todo list commit: merge-tree: exit status %d",
				status);
			return;
		}
		strbuf_reset(&r->tree);
		strbuf_add(&r->tree, out->buf, hexlen);
		if (strcmp(r->tree.buf, r->ours_tree.buf)) {
			write_commit(r);
			return;
		}
		/* nothing changed: keep a commit that was empty to begin with, drop one that became empty */
		if (!r->cur->n_parent_ids) {
			if (is_empty_tree(r->cur->tree_id))
				write_commit(r);
			else
				replay_next(r);
			return;
		}
		rev_parse(r, R_PARENT_TREE, "%s^{tree}", r->cur->parent_ids[0]);
		return;
	}
	case R_PARENT_TREE:
		if (status != 0) {
			op_fail(op, GRPC_INTERNAL, "rebasing commits: reading parent commit: %s", err->buf);
			return;
		}
		op_chomp(out);
		if (strcmp(r->cur->tree_id, out->buf))
			replay_next(r);
		else
			write_commit(r);
		return;
	case R_WRITE:
		if (status != 0) {
			op_fail(op, GRPC_INTERNAL, "rebasing commits: write commit: commit-tree: exit status %d: %s", status,
				err->buf);
			return;
		}
		set_line(&r->ours, out);
		strbuf_reset(&r->ours_tree);
		strbuf_add(&r->ours_tree, r->tree.buf, r->tree.len);
		replay_next(r);
		return;
	}
	return;
resolved_old:
	rev_parse(r, R_UP, "%s^{commit}", r->first.buf);
}

static void rb_hash_known(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct rebase *r = container_of(op, struct rebase, op);
	rev_parse(r, R_FIRST, "%s", r->first.buf);
}

static struct rebase *rebase_new(struct grpc_call *call, void *data, int unary)
{
	struct rebase *r = xcalloc(1, sizeof(*r));
	strbuf_init(&r->ref, 0);
	strvec_init(&r->conflicts);
	strbuf_init(&r->first, 0);
	strbuf_init(&r->source, 0);
	strbuf_init(&r->target_ref, 0);
	strbuf_init(&r->old, 0);
	strbuf_init(&r->up, 0);
	strbuf_init(&r->branch, 0);
	strbuf_init(&r->result, 0);
	strbuf_init(&r->ours, 0);
	strbuf_init(&r->ours_tree, 0);
	strvec_init(&r->todo);
	strbuf_init(&r->cur_message, 0);
	strbuf_init(&r->helper_ours, 0);
	strbuf_init(&r->helper_theirs, 0);
	strbuf_init(&r->tree, 0);
	op_init(&r->op, data, call, rb_release, unary);
	return r;
}

static void user_rebase_to_ref(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct rebase *r = rebase_new(call, data, 1);
	struct strbuf err = STRBUF_INIT;
	Gitaly__UserRebaseToRefRequest *req;
	struct op *op = &r->op;

	req = r->req = msg_unpack(call, &gitaly__user_rebase_to_ref_request__descriptor, buf, len);
	if (!req)
		return;
	if (op_locate(op, req->repository) != GRPC_OK)
		return;
	if (!req->first_parent_ref.len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty FirstParentRef");
		return;
	}
	if (!req->user) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty User");
		return;
	}
	if (!req->source_sha || !*req->source_sha) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty SourceSha");
		return;
	}
	if (!req->target_ref.len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty TargetRef");
		return;
	}
	if (req->target_ref.len < 19 || memcmp(req->target_ref.data, "refs/merge-requests", 19)) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "invalid TargetRef");
		return;
	}
	strbuf_add(&r->first, req->first_parent_ref.data, req->first_parent_ref.len);
	if (memchr(r->first.buf, '\0', r->first.len) || strchr(r->first.buf, '\n')) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "invalid FirstParentRef");
		return;
	}
	if (strchr(req->source_sha, '\n')) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "invalid SourceSha");
		return;
	}
	strbuf_add(&r->target_ref, req->target_ref.data, req->target_ref.len);
	if (memchr(r->target_ref.buf, '\0', r->target_ref.len) || strchr(r->target_ref.buf, '\n')) {
		op_fail(op, GRPC_FAILED_PRECONDITION, "could not update %s. Please refresh and try again",
			r->target_ref.buf);
		return;
	}
	r->have_sig = 1;
	if (op_signature(req->user, req->timestamp, &r->sig, &err) < 0) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "%s", err.buf);
		strbuf_release(&err);
		return;
	}
	if (op_quarantine(op) < 0)
		return;
	op_detect_hash(op, rb_hash_known);
}

/* ======================= UserRebaseConfirmable ======================= */

static void rc_updated(struct op *op, const struct op_update_result *res)
{
	Gitaly__UserRebaseConfirmableResponse resp = GITALY__USER_REBASE_CONFIRMABLE_RESPONSE__INIT;
	if (res->fail == UPD_CUSTOM_HOOK) {
		Gitaly__UserRebaseConfirmableError e = GITALY__USER_REBASE_CONFIRMABLE_ERROR__INIT;
		Gitaly__AccessCheckError ac = GITALY__ACCESS_CHECK_ERROR__INIT;
		struct strbuf msg = STRBUF_INIT;
		strbuf_addstr(&msg, "access check: ");
		hooks_quote(&msg, res->msg.buf, res->msg.len);
		ac.error_message = res->hook_error.buf;
		e.error_case = GITALY__USER_REBASE_CONFIRMABLE_ERROR__ERROR_ACCESS_CHECK;
		e.access_check = &ac;
		op_fail_detail(op, GRPC_PERMISSION_DENIED, msg.buf, &e.base);
		strbuf_release(&msg);
		return;
	}
	if (res->fail != UPD_OK) {
		op_fail(op, GRPC_INTERNAL, "updating ref with hooks: %s", res->msg.buf);
		return;
	}
	resp.user_rebase_confirmable_response_payload_case =
		GITALY__USER_REBASE_CONFIRMABLE_RESPONSE__USER_REBASE_CONFIRMABLE_RESPONSE_PAYLOAD_REBASE_APPLIED;
	resp.rebase_applied = 1;
	msg_reply(op->base.call, &resp);
}

static void rc_hash_known(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct rebase *r = container_of(op, struct rebase, op);
	struct strbuf e = STRBUF_INIT;
	if (hooks_validate_hex(r->h->branch_sha, op->hexlen, &e) < 0) {
		op_fail(op, GRPC_NOT_FOUND, "%s", e.buf);
		strbuf_release(&e);
		return;
	}
	strbuf_release(&e);
	strbuf_addstr(&r->old, r->h->branch_sha);
	strbuf_addstr(&r->source, r->h->branch_sha);
	rev_parse(r, R_UP, "%s^{commit}", r->first.buf);
}

/*
 * Through praefect the target is rewritten to its replica and the other
 * repository is not: the GitLab repository name (gl_repository) then tells
 * they are the same.
 */
static int same_repo(const Gitaly__Repository *a, const Gitaly__Repository *b)
{
	if (a->gl_repository && *a->gl_repository && b->gl_repository && !strcmp(a->gl_repository, b->gl_repository))
		return 1;
	return !strcmp(a->storage_name ? a->storage_name : "", b->storage_name ? b->storage_name : "") &&
	       !strcmp(a->relative_path ? a->relative_path : "", b->relative_path ? b->relative_path : "");
}

static void rc_header(struct rebase *r, Gitaly__UserRebaseConfirmableRequest *req)
{
	struct op *op = &r->op;
	struct strbuf err = STRBUF_INIT;
	Gitaly__UserRebaseConfirmableRequest__Header *h;
	r->first_req = req;
	h = r->h = req->user_rebase_confirmable_request_payload_case ==
				   GITALY__USER_REBASE_CONFIRMABLE_REQUEST__USER_REBASE_CONFIRMABLE_REQUEST_PAYLOAD_HEADER
			   ? req->header : NULL;
	if (!h) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty UserRebaseConfirmableRequest.Header");
		return;
	}
	if (op_locate(op, h->repository) != GRPC_OK)
		return;
	if (!h->user) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty User");
		return;
	}
	if (!h->branch.len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty Branch");
		return;
	}
	if (!h->branch_sha || !*h->branch_sha) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty BranchSha");
		return;
	}
	if (!h->remote_repository) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty RemoteRepository");
		return;
	}
	if (!h->remote_branch.len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty RemoteBranch");
		return;
	}
	if (gitaly_check_revision((const char *)h->remote_branch.data, h->remote_branch.len, &err) < 0) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "invalid branch name");
		strbuf_release(&err);
		return;
	}
	if (!same_repo(h->remote_repository, h->repository)) {
		/* upstream fetches the remote branch from there; we do not reach other repositories yet */
		op_fail(op, GRPC_UNIMPLEMENTED, "remote repository other than the target repository is not supported");
		return;
	}
	strbuf_add(&r->first, h->remote_branch.data, h->remote_branch.len);
	strbuf_add(&r->ref, "refs/heads/", 11);
	strbuf_add(&r->ref, h->branch.data, h->branch.len);
	if (memchr(r->ref.buf, '\0', r->ref.len)) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "invalid branch name");
		return;
	}
	if (op_quarantine(op) < 0)
		return;
	r->have_sig = 1;
	if (op_signature(h->user, h->timestamp, &r->sig, &err) < 0) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "%s", err.buf);
		strbuf_release(&err);
		return;
	}
	r->state = RC_REBASING;
	op_detect_hash(op, rc_hash_known);
}

static void rc_message(struct grpc_call *call, const uint8_t *buf, size_t len)
{
	struct rebase *r = grpc_call_user(call);
	Gitaly__UserRebaseConfirmableRequest *req;
	int apply;
	if (r->state != RC_HEADER && r->state != RC_WAIT_APPLY)
		return;
	req = msg_unpack(call, &gitaly__user_rebase_confirmable_request__descriptor, buf, len);
	if (!req) {
		r->state = RC_DONE;
		return;
	}
	grpc_call_pause_recv(call);   /* one message at a time */
	if (r->state == RC_HEADER) {
		rc_header(r, req);
		return;
	}
	r->state = RC_DONE;
	apply = req->user_rebase_confirmable_request_payload_case ==
			GITALY__USER_REBASE_CONFIRMABLE_REQUEST__USER_REBASE_CONFIRMABLE_REQUEST_PAYLOAD_APPLY &&
		req->apply;
	msg_free(req);
	if (!apply) {
		op_fail(&r->op, GRPC_FAILED_PRECONDITION, "rebase aborted by client");
		return;
	}
	op_update_ref(&r->op, r->h->user, r->ref.buf, r->result.buf, r->old.buf, rc_updated);
}

static void rc_half_close(struct grpc_call *call)
{
	struct rebase *r = grpc_call_user(call);
	if (r->state == RC_HEADER || r->state == RC_WAIT_APPLY) {
		op_fail(&r->op, GRPC_INTERNAL, r->state == RC_HEADER ? "EOF" : "recv: EOF");
		r->state = RC_DONE;
	}
}

static void rc_close(struct grpc_call *call, enum grpc_code code)
{
	struct rebase *r = grpc_call_user(call);
	op_closed(&r->op);
}

static const struct grpc_call_ops rc_ops = {
	.on_message = rc_message,
	.on_half_close = rc_half_close,
	.on_close = rc_close,
};

static void user_rebase_confirmable(struct grpc_call *call, void *data)
{
	struct rebase *r = rebase_new(call, data, 0);
	r->confirm = 1;
	grpc_call_set_ops(call, &rc_ops, r);
}

void op_register_rebase(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.OperationService/UserRebaseToRef", user_rebase_to_ref, g);
	gitaly_add_method(s, "/gitaly.OperationService/UserRebaseConfirmable", user_rebase_confirmable, g);
}
