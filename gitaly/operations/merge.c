/* OperationService merges and branch moves: UserMergeBranch, UserMergeToRef, UserFFBranch, UserUpdateBranch. */
#include "operations/merge.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

/* merge-tree prints the tree and the conflicting names; more than this is not a merge we answer */
#define MERGE_TREE_OUT_CAP (4 * 1024 * 1024)

static void merge_release(struct op *op)
{
	struct merge *m = container_of(op, struct merge, op);
	msg_free(m->req);
	strbuf_release(&m->branch);
	strbuf_release(&m->ref);
	strbuf_release(&m->old);
	strbuf_release(&m->ours);
	strbuf_release(&m->theirs);
	strbuf_release(&m->tree);
	strbuf_release(&m->commit);
	strbuf_release(&m->target_ref);
	strvec_clear(&m->conflicts);
	if (m->have_sig)
		op_signature_release(&m->sig);
	if (m->have_author)
		op_signature_release(&m->author);
	strbuf_release(&m->message);
	free(m);
}

struct merge *merge_new(struct grpc_call *call, void *data, enum merge_kind kind, int unary)
{
	struct merge *m = xcalloc(1, sizeof(*m));
	m->kind = kind;
	strbuf_init(&m->branch, 0);
	strbuf_init(&m->ref, 0);
	strbuf_init(&m->old, 0);
	strbuf_init(&m->ours, 0);
	strbuf_init(&m->theirs, 0);
	strbuf_init(&m->tree, 0);
	strbuf_init(&m->commit, 0);
	strbuf_init(&m->target_ref, 0);
	strvec_init(&m->conflicts);
	strbuf_init(&m->message, 0);
	op_init(&m->op, data, call, merge_release, unary);
	return m;
}

/* A bytes field as a C string; -1 when it holds a NUL, which no reference may contain. */
int merge_bytes_str(const ProtobufCBinaryData *b, struct strbuf *out)
{
	strbuf_reset(out);
	strbuf_add(out, b->data, b->len);
	return b->len && memchr(b->data, '\0', b->len) ? -1 : 0;
}

/* A string that goes onto a git command line or into cat-file's stdin. */
int merge_bad_rev(const char *s)
{
	return !*s || strchr(s, '\n') != NULL;
}

/* ======================= the merge itself ======================= */

static void merge_committed(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct merge *m = container_of(op, struct merge, op);
	if (status != 0) {
		if (m->kind == MK_MERGE_TO_REF)
			op_fail(op, GRPC_FAILED_PRECONDITION,
				"Failed to create merge commit for source_sha %s and target_sha %s at %s", m->theirs.buf,
				m->ours.buf, m->target_ref.buf);
		else
			op_fail(op, GRPC_INTERNAL, "merge: create commit from tree: commit-tree: exit status %d: %s",
				status, err->buf);
		return;
	}
	op_chomp(out);
	strbuf_reset(&m->commit);
	strbuf_add(&m->commit, out->buf, out->len);
	m->merged(m);
}

/* commit-tree with both signatures from the request, so every replica writes the same bytes */
static void merge_commit(struct merge *m, const ProtobufCBinaryData *message)
{
	struct strbuf date = STRBUF_INIT, adate = STRBUF_INIT;
	struct strvec env = STRVEC_INIT;
	const char *flags[] = { "-p", m->ours.buf, "-p", m->theirs.buf, "-F", "-", NULL };
	const char *args[] = { m->tree.buf, NULL };
	const struct op_signature *author = m->have_author ? &m->author : &m->sig;
	struct git_call gc;

	if (m->kind == MK_SQUASH) {
		/* a squash has the start as its only parent */
		flags[2] = "-F";
		flags[3] = "-";
		flags[4] = NULL;
	}
	op_signature_date(&m->sig, &date);
	op_signature_date(author, &adate);
	strvec_pushf(&env, "GIT_AUTHOR_NAME=%s", author->name.buf);
	strvec_pushf(&env, "GIT_AUTHOR_EMAIL=%s", author->email.buf);
	strvec_pushf(&env, "GIT_AUTHOR_DATE=%s", adate.buf);
	strvec_pushf(&env, "GIT_COMMITTER_NAME=%s", m->sig.name.buf);
	strvec_pushf(&env, "GIT_COMMITTER_EMAIL=%s", m->sig.email.buf);
	strvec_pushf(&env, "GIT_COMMITTER_DATE=%s", date.buf);
	op_git_call(&m->op, &gc, "commit-tree");
	gc.flags = flags;
	gc.args = args;
	gc.env = env.v;
	op_git(&m->op, &gc, message->len ? (const char *)message->data : "", message->len, 4096, merge_committed);
	strbuf_release(&date);
	strbuf_release(&adate);
	strvec_clear(&env);
}

static ProtobufCBinaryData merge_message(const struct merge *m)
{
	ProtobufCBinaryData b = { m->message.len, (uint8_t *)m->message.buf };
	if (m->kind == MK_MERGE_BRANCH)
		return m->mb->message;
	if (m->kind == MK_MERGE_TO_REF)
		return m->mtr->message;
	return b;
}

/*
 * "git merge-tree -z --name-only --write-tree" output: the tree, then for a
 * conflict NUL-separated names ending in an empty field, then messages.
 */
static void parse_conflicts(struct merge *m, const struct strbuf *out)
{
	const char *p = out->buf, *end = out->buf + out->len;
	const char *nul = memchr(p, '\0', (size_t)(end - p));
	if (!nul)
		return;
	p = nul + 1;
	while (p < end && *p) {
		nul = memchr(p, '\0', (size_t)(end - p));
		if (!nul)
			break;
		strvec_push(&m->conflicts, p);
		p = nul + 1;
	}
}

static void fail_conflict(struct merge *m)
{
	Gitaly__UserMergeBranchError e = GITALY__USER_MERGE_BRANCH_ERROR__INIT;
	Gitaly__UserSquashError se = GITALY__USER_SQUASH_ERROR__INIT;
	Gitaly__MergeConflictError mc = GITALY__MERGE_CONFLICT_ERROR__INIT;
	ProtobufCBinaryData *files = xcalloc(m->conflicts.nr ? m->conflicts.nr : 1, sizeof(*files));
	char *ids[2] = { m->ours.buf, m->theirs.buf };

	for (size_t i = 0; i < m->conflicts.nr; i++) {
		files[i].data = (uint8_t *)m->conflicts.v[i];
		files[i].len = strlen(m->conflicts.v[i]);
	}
	mc.n_conflicting_files = m->conflicts.nr;
	mc.conflicting_files = files;
	mc.n_conflicting_commit_ids = 2;
	mc.conflicting_commit_ids = ids;
	if (m->kind == MK_SQUASH) {
		/* a merge conflict, under the old "rebase" name */
		se.error_case = GITALY__USER_SQUASH_ERROR__ERROR_REBASE_CONFLICT;
		se.rebase_conflict = &mc;
		op_fail_detail(&m->op, GRPC_FAILED_PRECONDITION, "squashing commits: merge: there are conflicting files",
			       &se.base);
	} else {
		e.error_case = GITALY__USER_MERGE_BRANCH_ERROR__ERROR_MERGE_CONFLICT;
		e.merge_conflict = &mc;
		op_fail_detail(&m->op, GRPC_FAILED_PRECONDITION, "merging commits: merge: there are conflicting files",
			       &e.base);
	}
	free(files);
}

static void merge_tree_done(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct merge *m = container_of(op, struct merge, op);
	const char *nul = memchr(out->buf, '\0', out->len);
	size_t hexlen = nul ? (size_t)(nul - out->buf) : 0;
	int parsed = hexlen == op->hexlen;   /* merge-tree's output starts with the tree */

	if ((status != 0 || !parsed) && m->kind == MK_MERGE_TO_REF) {
		/* upstream hides the reason: conflicts and failures read the same */
		op_fail(op, GRPC_FAILED_PRECONDITION, "Failed to create merge commit for source_sha %s and target_sha %s at %s",
			m->theirs.buf, m->ours.buf, m->target_ref.buf);
		return;
	}
	if (status == 1 && parsed) {
		parse_conflicts(m, out);
		fail_conflict(m);
		return;
	}
	if (status != 0) {
		op_fail(op, GRPC_INTERNAL, "merge: merge-tree: exit status %d", status);
		return;
	}
	if (!parsed) {
		op_fail(op, GRPC_INTERNAL, "merge: hex to oid: invalid merge-tree output");
		return;
	}
	strbuf_reset(&m->tree);
	strbuf_add(&m->tree, out->buf, hexlen);
	{
		ProtobufCBinaryData msg = merge_message(m);
		merge_commit(m, &msg);
	}
}

/* Merge m->theirs into m->ours; m->merged() follows with m->commit set. */
void merge_run(struct merge *m, void (*merged)(struct merge *m))
{
	static const char *const flags[] = { "-z", "--write-tree", "--allow-unrelated-histories", "--name-only",
					     NULL };
	const char *args[] = { m->ours.buf, m->theirs.buf, NULL };
	struct git_call gc;
	m->merged = merged;
	op_git_call(&m->op, &gc, "merge-tree");
	gc.flags = flags;
	gc.args = args;
	op_git(&m->op, &gc, NULL, 0, MERGE_TREE_OUT_CAP, merge_tree_done);
}

/* ======================= the branch's old value ======================= */

static void old_resolved(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct merge *m = container_of(op, struct merge, op);
	if (status != 0) {
		if (*m->expected_old)
			op_fail(op, GRPC_INVALID_ARGUMENT, "cannot resolve expected old object ID: reference not found");
		else if (m->kind == MK_MERGE_BRANCH)
			op_fail(op, GRPC_NOT_FOUND, "reference not found");
		else
			op_fail(op, GRPC_INVALID_ARGUMENT, "reference not found");
		return;
	}
	op_chomp(out);
	strbuf_reset(&m->old);
	strbuf_add(&m->old, out->buf, out->len);
	m->resolved(m);
}

/* expected_old_oid when given (it must exist), else the branch's current value */
void merge_resolve_old(struct merge *m, void (*resolved)(struct merge *m))
{
	struct strbuf rev = STRBUF_INIT;
	m->resolved = resolved;
	if (*m->expected_old) {
		if (op_check_expected_old(&m->op, m->expected_old) < 0)
			return;
		strbuf_addf(&rev, "%s^{object}", m->expected_old);
	} else {
		strbuf_add(&rev, m->ref.buf, m->ref.len);
	}
	op_rev_parse(&m->op, rev.buf, old_resolved);
	strbuf_release(&rev);
}

/* ======================= UserMergeBranch ======================= */

static void mb_updated(struct op *op, const struct op_update_result *r)
{
	struct merge *m = container_of(op, struct merge, op);
	struct strbuf msg = STRBUF_INIT;

	switch (r->fail) {
	case UPD_OK: {
		Gitaly__UserMergeBranchResponse resp = GITALY__USER_MERGE_BRANCH_RESPONSE__INIT;
		Gitaly__OperationBranchUpdate bu = GITALY__OPERATION_BRANCH_UPDATE__INIT;
		bu.commit_id = m->commit.buf;
		resp.branch_update = &bu;
		msg_reply(op->base.call, &resp);
		return;
	}
	case UPD_NOT_ALLOWED:
		strbuf_addf(&msg, "GitLab: %s", r->api_msg.buf);
		break;
	case UPD_CUSTOM_HOOK:
		strbuf_add(&msg, r->hook_error.buf, r->hook_error.len);
		break;
	case UPD_REF:
		strbuf_add(&msg, r->msg.buf, r->msg.len);
		break;
	default:
		break;
	}
	if (op_fail_update(op, r, &gitaly__user_merge_branch_error__descriptor, msg.buf) < 0)
		op_fail(op, r->code && r->code != GRPC_PERMISSION_DENIED ? r->code : GRPC_INTERNAL, "target update: %s",
			r->msg.buf);
	strbuf_release(&msg);
}

static void mb_merged(struct merge *m)
{
	Gitaly__UserMergeBranchResponse resp = GITALY__USER_MERGE_BRANCH_RESPONSE__INIT;
	resp.commit_id = m->commit.buf;
	if (gitaly_call_send(&m->op.base, &resp) < 0)
		return;
	/* the client sees the merge commit and answers whether to apply it */
	m->state = MB_WAIT_APPLY;
	grpc_call_resume_recv(m->op.base.call);
}

static void mb_resolved(struct merge *m)
{
	strbuf_reset(&m->ours);
	strbuf_add(&m->ours, m->old.buf, m->old.len);
	merge_run(m, mb_merged);
}

static void mb_hash_known(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct merge *m = container_of(op, struct merge, op);
	merge_resolve_old(m, mb_resolved);
}

static void mb_first(struct merge *m, Gitaly__UserMergeBranchRequest *req)
{
	struct op *op = &m->op;
	struct strbuf err = STRBUF_INIT;
	m->req = &req->base;
	m->mb = req;
	if (op_locate(op, req->repository) != GRPC_OK)
		return;
	if (!req->user) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty user");
		return;
	}
	if (!req->user->email.len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty user email");
		return;
	}
	if (!req->user->name.len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty user name");
		return;
	}
	if (!req->branch.len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty branch name");
		return;
	}
	if (!req->commit_id || !*req->commit_id) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty commit ID");
		return;
	}
	if (!req->message.len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty message");
		return;
	}
	if (merge_bytes_str(&req->branch, &m->branch) < 0 || merge_bad_rev(req->commit_id)) {
		op_fail(op, GRPC_NOT_FOUND, "reference not found");
		return;
	}
	if (op_signature(req->user, req->timestamp, &m->sig, &err) < 0) {
		m->have_sig = 1;
		op_fail(op, GRPC_INVALID_ARGUMENT, "%s", err.buf);
		strbuf_release(&err);
		return;
	}
	m->have_sig = 1;
	m->user = req->user;
	m->expected_old = req->expected_old_oid ? req->expected_old_oid : "";
	strbuf_addf(&m->ref, "refs/heads/%s", m->branch.buf);
	strbuf_addstr(&m->theirs, req->commit_id);
	if (op_quarantine(op) < 0)
		return;
	m->state = MB_MERGING;
	op_detect_hash(op, mb_hash_known);
}

static void mb_message(struct grpc_call *call, const uint8_t *buf, size_t len)
{
	struct merge *m = grpc_call_user(call);
	Gitaly__UserMergeBranchRequest *req;

	if (m->state != MB_FIRST && m->state != MB_WAIT_APPLY)
		return;
	req = msg_unpack(call, &gitaly__user_merge_branch_request__descriptor, buf, len);
	if (!req) {
		m->state = MB_UPDATING;   /* the call is finished: nothing more to read */
		return;
	}
	/* one message at a time: the next waits until this one is answered */
	grpc_call_pause_recv(call);
	if (m->state == MB_FIRST) {
		mb_first(m, req);
		return;
	}
	m->state = MB_UPDATING;
	if (!req->apply) {
		msg_free(req);
		op_fail(&m->op, GRPC_FAILED_PRECONDITION, "merge aborted by client");
		return;
	}
	msg_free(req);
	op_update_ref(&m->op, m->user, m->ref.buf, m->commit.buf, m->old.buf, mb_updated);
}

static void mb_half_close(struct grpc_call *call)
{
	struct merge *m = grpc_call_user(call);
	/* the stream ended before the apply: upstream's Recv() sees EOF, and nothing moves */
	if (m->state == MB_FIRST || m->state == MB_WAIT_APPLY) {
		m->state = MB_UPDATING;
		op_fail(&m->op, GRPC_INTERNAL, "EOF");
	}
}

static void mb_close(struct grpc_call *call, enum grpc_code code)
{
	struct merge *m = grpc_call_user(call);
	op_closed(&m->op);
}

static const struct grpc_call_ops mb_ops = {
	.on_message = mb_message,
	.on_half_close = mb_half_close,
	.on_close = mb_close,
};

static void user_merge_branch(struct grpc_call *call, void *data)
{
	struct merge *m = merge_new(call, data, MK_MERGE_BRANCH, 0);
	grpc_call_set_ops(call, &mb_ops, m);
}

/* ======================= UserMergeToRef ======================= */

static void mtr_updated(struct op *op, const struct op_update_result *r)
{
	struct merge *m = container_of(op, struct merge, op);
	Gitaly__UserMergeToRefResponse resp = GITALY__USER_MERGE_TO_REF_RESPONSE__INIT;
	if (r->fail != UPD_OK) {
		/* no trailing full stop: upstream's wording */
		op_fail(op, GRPC_FAILED_PRECONDITION, "Could not update %s. Please refresh and try again",
			m->target_ref.buf);
		return;
	}
	resp.commit_id = m->commit.buf;
	msg_reply(op->base.call, &resp);
}

static void mtr_merged(struct merge *m)
{
	/* upstream runs no hooks here (the Ruby code did not either) */
	op_update_ref_plain(&m->op, m->target_ref.buf, m->commit.buf, m->old.buf, mtr_updated);
}

/* for-each-ref lines "<refname>\0<objectname>\0<symref>\n": the target's current value */
static void mtr_target_listed(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct merge *m = container_of(op, struct merge, op);
	const char *p = out->buf, *end = out->buf + out->len;
	if (status != 0) {
		op_fail(op, GRPC_INTERNAL, "could not read target reference: exit status %d", status);
		return;
	}
	strbuf_reset(&m->old);
	strbuf_addstr(&m->old, op_zero_oid(op));
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		const char *z1 = memchr(p, '\0', (size_t)(le - p));
		const char *z2 = z1 ? memchr(z1 + 1, '\0', (size_t)(le - z1 - 1)) : NULL;
		if (z2 && (size_t)(z1 - p) == m->target_ref.len && !memcmp(p, m->target_ref.buf, m->target_ref.len)) {
			if (le > z2 + 1) {
				struct strbuf q = STRBUF_INIT;
				hooks_quote(&q, m->target_ref.buf, m->target_ref.len);
				op_fail(op, GRPC_FAILED_PRECONDITION, "target reference is symbolic: %s", q.buf);
				strbuf_release(&q);
				return;
			}
			strbuf_reset(&m->old);
			strbuf_add(&m->old, z1 + 1, (size_t)(z2 - z1 - 1));
			break;
		}
		p = le + 1;
	}
	merge_run(m, mtr_merged);
}

static void mtr_old_resolved(struct merge *m)
{
	merge_run(m, mtr_merged);
}

static void mtr_source_resolved(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct merge *m = container_of(op, struct merge, op);
	static const char *const flags[] = { "--format=%(refname)%00%(objectname)%00%(symref)", NULL };
	const char *args[] = { m->target_ref.buf, NULL };
	struct git_call gc;
	if (status != 0) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "Invalid merge source");
		return;
	}
	op_chomp(out);
	strbuf_reset(&m->theirs);
	strbuf_add(&m->theirs, out->buf, out->len);
	m->expected_old = m->mtr->expected_old_oid ? m->mtr->expected_old_oid : "";
	if (*m->expected_old) {
		merge_resolve_old(m, mtr_old_resolved);
		return;
	}
	op_git_call(op, &gc, "for-each-ref");
	gc.flags = flags;
	gc.args = args;
	op_git(op, &gc, NULL, 0, 1024 * 1024, mtr_target_listed);
}

static void mtr_first_parent_resolved(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct merge *m = container_of(op, struct merge, op);
	if (status != 0) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "Invalid merge source");
		return;
	}
	op_chomp(out);
	strbuf_reset(&m->ours);
	strbuf_add(&m->ours, out->buf, out->len);
	op_rev_parse(op, m->mtr->source_sha, mtr_source_resolved);
}

static void mtr_hash_known(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct merge *m = container_of(op, struct merge, op);
	op_rev_parse(op, m->ours.buf, mtr_first_parent_resolved);
}

/* The deprecated `branch` field still names the first parent when first_parent_ref is unset. */
static const ProtobufCBinaryData *mtr_legacy_branch(const Gitaly__UserMergeToRefRequest *req)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
	return &req->branch;
#pragma GCC diagnostic pop
}

static void user_merge_to_ref(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct merge *m = merge_new(call, data, MK_MERGE_TO_REF, 1);
	struct strbuf err = STRBUF_INIT;
	Gitaly__UserMergeToRefRequest *req = msg_unpack(call, &gitaly__user_merge_to_ref_request__descriptor, buf, len);
	const ProtobufCBinaryData *first;
	if (!req)
		return;
	m->req = &req->base;
	m->mtr = req;
	if (op_locate(&m->op, req->repository) != GRPC_OK)
		return;
	if (!req->first_parent_ref.len && !mtr_legacy_branch(req)->len) {
		op_fail(&m->op, GRPC_INVALID_ARGUMENT, "empty first parent ref and branch name");
		return;
	}
	if (!req->user) {
		op_fail(&m->op, GRPC_INVALID_ARGUMENT, "empty user");
		return;
	}
	if (!req->source_sha || !*req->source_sha) {
		op_fail(&m->op, GRPC_INVALID_ARGUMENT, "empty source SHA");
		return;
	}
	if (!req->target_ref.len) {
		op_fail(&m->op, GRPC_INVALID_ARGUMENT, "empty target ref");
		return;
	}
	if (req->target_ref.len < 19 || memcmp(req->target_ref.data, "refs/merge-requests", 19)) {
		op_fail(&m->op, GRPC_INVALID_ARGUMENT, "invalid target ref");
		return;
	}
	first = req->first_parent_ref.len ? &req->first_parent_ref : mtr_legacy_branch(req);
	if (merge_bytes_str(first, &m->ours) < 0 || merge_bad_rev(m->ours.buf) || merge_bad_rev(req->source_sha)) {
		op_fail(&m->op, GRPC_INVALID_ARGUMENT, "Invalid merge source");
		return;
	}
	if (merge_bytes_str(&req->target_ref, &m->target_ref) < 0 || strchr(m->target_ref.buf, '\n')) {
		op_fail(&m->op, GRPC_FAILED_PRECONDITION, "Could not update %s. Please refresh and try again",
			m->target_ref.buf);
		return;
	}
	if (op_signature(req->user, req->timestamp, &m->sig, &err) < 0) {
		m->have_sig = 1;
		op_fail(&m->op, GRPC_INVALID_ARGUMENT, "%s", err.buf);
		strbuf_release(&err);
		return;
	}
	m->have_sig = 1;
	op_detect_hash(&m->op, mtr_hash_known);
}

/* ======================= UserFFBranch ======================= */

static void ff_updated(struct op *op, const struct op_update_result *r)
{
	struct merge *m = container_of(op, struct merge, op);
	Gitaly__UserFFBranchResponse resp = GITALY__USER_FFBRANCH_RESPONSE__INIT;
	Gitaly__OperationBranchUpdate bu = GITALY__OPERATION_BRANCH_UPDATE__INIT;
	switch (r->fail) {
	case UPD_OK:
		bu.commit_id = m->ff->commit_id;
		resp.branch_update = &bu;
		break;
	case UPD_CUSTOM_HOOK:
		resp.pre_receive_error = r->hook_error.buf;
		break;
	case UPD_REF:
		break;   /* the old API's answer to a lost race: an empty response */
	default:
		op_fail(op, GRPC_INTERNAL, "updating ref with hooks: %s", r->msg.buf);
		return;
	}
	msg_reply(op->base.call, &resp);
}

static void ff_ancestry(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct merge *m = container_of(op, struct merge, op);
	static const char bad_commit[] = "fatal: Not a valid commit name";
	if (status == 1) {
		op_fail(op, GRPC_FAILED_PRECONDITION, "not fast forward");
		return;
	}
	if (status != 0) {
		struct strbuf q = STRBUF_INIT;
		if (!strncmp(err->buf, bad_commit, sizeof(bad_commit) - 1)) {
			const char *s = err->buf + sizeof(bad_commit) - 1;
			size_t n = strlen(s);
			while (*s == ' ' || *s == '\t' || *s == '\n')
				s++, n--;
			while (n && strchr(" \t\n\r", s[n - 1]))
				n--;
			hooks_quote(&q, s, n);
			op_fail(op, GRPC_INTERNAL, "checking for ancestry: invalid commit: %s", q.buf);
		} else {
			hooks_quote(&q, err->buf, err->len);
			op_fail(op, GRPC_INTERNAL, "checking for ancestry: determine ancestry: exit status %d, stderr: %s",
				status, q.buf);
		}
		strbuf_release(&q);
		return;
	}
	op_update_ref(op, m->user, m->ref.buf, m->ff->commit_id, m->old.buf, ff_updated);
}

static void ff_resolved(struct merge *m)
{
	static const char *const flags[] = { "--is-ancestor", NULL };
	const char *args[] = { m->old.buf, m->ff->commit_id, NULL };
	struct strbuf err = STRBUF_INIT;
	struct git_call gc;
	if (hooks_validate_hex(m->ff->commit_id, m->op.hexlen, &err) < 0) {
		op_fail(&m->op, GRPC_INVALID_ARGUMENT, "cannot parse commit ID: %s", err.buf);
		strbuf_release(&err);
		return;
	}
	op_git_call(&m->op, &gc, "merge-base");
	gc.flags = flags;
	gc.args = args;
	op_git(&m->op, &gc, NULL, 0, 4096, ff_ancestry);
}

static void ff_hash_known(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct merge *m = container_of(op, struct merge, op);
	merge_resolve_old(m, ff_resolved);
}

static void user_ff_branch(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct merge *m = merge_new(call, data, MK_FF_BRANCH, 1);
	Gitaly__UserFFBranchRequest *req = msg_unpack(call, &gitaly__user_ffbranch_request__descriptor, buf, len);
	if (!req)
		return;
	m->req = &req->base;
	m->ff = req;
	if (op_locate(&m->op, req->repository) != GRPC_OK)
		return;
	if (!req->branch.len) {
		op_fail(&m->op, GRPC_INVALID_ARGUMENT, "empty branch name");
		return;
	}
	if (!req->user) {
		op_fail(&m->op, GRPC_INVALID_ARGUMENT, "empty user");
		return;
	}
	if (!req->commit_id || !*req->commit_id) {
		op_fail(&m->op, GRPC_INVALID_ARGUMENT, "empty commit id");
		return;
	}
	if (merge_bytes_str(&req->branch, &m->branch) < 0) {
		op_fail(&m->op, GRPC_INVALID_ARGUMENT, "reference not found");
		return;
	}
	m->user = req->user;
	m->expected_old = req->expected_old_oid ? req->expected_old_oid : "";
	strbuf_addf(&m->ref, "refs/heads/%s", m->branch.buf);
	/* no new objects, but Rails computes what is new through the quarantine */
	if (op_quarantine(&m->op) < 0)
		return;
	op_detect_hash(&m->op, ff_hash_known);
}

/* ======================= UserUpdateBranch ======================= */

static void ub_updated(struct op *op, const struct op_update_result *r)
{
	struct merge *m = container_of(op, struct merge, op);
	Gitaly__UserUpdateBranchResponse resp = GITALY__USER_UPDATE_BRANCH_RESPONSE__INIT;
	if (r->fail == UPD_CUSTOM_HOOK) {
		resp.pre_receive_error = r->hook_error.buf;
	} else if (r->fail != UPD_OK) {
		/* the old API's words, with the branch name rather than the reference */
		op_fail(op, GRPC_FAILED_PRECONDITION, "Could not update %s. Please refresh and try again.", m->branch.buf);
		return;
	}
	msg_reply(op->base.call, &resp);
}

static void ub_hash_known(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct merge *m = container_of(op, struct merge, op);
	struct strbuf e = STRBUF_INIT;
	if (hooks_validate_hex(m->theirs.buf, op->hexlen, &e) < 0) {
		op_fail(op, GRPC_INTERNAL, "could not parse newrev: %s", e.buf);
	} else if (hooks_validate_hex(m->old.buf, op->hexlen, &e) < 0) {
		op_fail(op, GRPC_INTERNAL, "could not parse oldrev: %s", e.buf);
	} else if (op_quarantine(op) == 0) {
		op_update_ref(op, m->user, m->ref.buf, m->theirs.buf, m->old.buf, ub_updated);
	}
	strbuf_release(&e);
}

static void user_update_branch(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct merge *m = merge_new(call, data, MK_UPDATE_BRANCH, 1);
	Gitaly__UserUpdateBranchRequest *req = msg_unpack(call, &gitaly__user_update_branch_request__descriptor, buf,
							  len);
	if (!req)
		return;
	m->req = &req->base;
	m->ub = req;
	if (op_locate(&m->op, req->repository) != GRPC_OK)
		return;
	if (!req->user) {
		op_fail(&m->op, GRPC_INVALID_ARGUMENT, "empty user");
		return;
	}
	if (!req->branch_name.len) {
		op_fail(&m->op, GRPC_INVALID_ARGUMENT, "empty branch name");
		return;
	}
	if (!req->oldrev.len) {
		op_fail(&m->op, GRPC_INVALID_ARGUMENT, "empty oldrev");
		return;
	}
	if (!req->newrev.len) {
		op_fail(&m->op, GRPC_INVALID_ARGUMENT, "empty newrev");
		return;
	}
	m->user = req->user;
	/* a NUL in a revision fails the hex check; in the name, update-ref's format check */
	merge_bytes_str(&req->newrev, &m->theirs);
	merge_bytes_str(&req->oldrev, &m->old);
	if (merge_bytes_str(&req->branch_name, &m->branch) < 0) {
		op_fail(&m->op, GRPC_FAILED_PRECONDITION, "Could not update %s. Please refresh and try again.",
			m->branch.buf);
		return;
	}
	strbuf_addf(&m->ref, "refs/heads/%s", m->branch.buf);
	op_detect_hash(&m->op, ub_hash_known);
}

void op_register_merge(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_method(s, "/gitaly.OperationService/UserMergeBranch", user_merge_branch, g);
	gitaly_add_unary(s, "/gitaly.OperationService/UserMergeToRef", user_merge_to_ref, g);
	gitaly_add_unary(s, "/gitaly.OperationService/UserFFBranch", user_ff_branch, g);
	gitaly_add_unary(s, "/gitaly.OperationService/UserUpdateBranch", user_update_branch, g);
}
