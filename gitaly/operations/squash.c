/*
 * OperationService/UserSquash: the merge of end into start, written as one
 * commit whose only parent is start. No reference moves, so the vote is on
 * the commit id (docs/technical/operations-merge.md).
 */
#include "operations/merge.h"
#include "base/util.h"
#include "core/vote.h"

#include <stdlib.h>
#include <string.h>

static void sq_vote(struct merge *m, enum vote_phase phase, vote_done_fn fn);

static void sq_committed(void *arg, enum grpc_code code, const char *msg)
{
	struct merge *m = arg;
	Gitaly__UserSquashResponse resp = GITALY__USER_SQUASH_RESPONSE__INIT;
	if (op_step_end(&m->op))
		return;
	if (code != GRPC_OK) {
		op_fail(&m->op, GRPC_ABORTED, "committing vote on squashed commit: %s", msg ? msg : "");
		return;
	}
	resp.squash_sha = m->commit.buf;
	msg_reply(m->op.base.call, &resp);
}

static void sq_prepared(void *arg, enum grpc_code code, const char *msg)
{
	struct merge *m = arg;
	struct strbuf err = STRBUF_INIT;
	if (op_step_end(&m->op))
		return;
	if (code != GRPC_OK) {
		op_fail(&m->op, GRPC_ABORTED, "preparatory vote on squashed commit: %s", msg ? msg : "");
		return;
	}
	/* the replicas agree on the commit: only now do its objects join the repository */
	if (op_quarantine_migrate(&m->op, &err) < 0) {
		op_fail(&m->op, GRPC_INTERNAL, "migrating quarantine directory: %s", err.buf);
		strbuf_release(&err);
		return;
	}
	strbuf_release(&err);
	sq_vote(m, VOTE_PHASE_COMMITTED, sq_committed);
}

/* No reference moves: the vote is on the commit id itself. */
static void sq_vote(struct merge *m, enum vote_phase phase, vote_done_fn fn)
{
	uint8_t hash[20];
	gitaly_sha1(m->commit.buf, m->commit.len, hash);
	gitaly_call_hold(&m->op.base);
	vote_cast(m->op.base.g, m->op.base.call, phase, hash, fn, m);
}

static void sq_merged(struct merge *m)
{
	sq_vote(m, VOTE_PHASE_PREPARED, sq_prepared);
}

static void sq_fail_resolve(struct merge *m, const char *which, const char *rev)
{
	Gitaly__UserSquashError e = GITALY__USER_SQUASH_ERROR__INIT;
	Gitaly__ResolveRevisionError rr = GITALY__RESOLVE_REVISION_ERROR__INIT;
	struct strbuf msg = STRBUF_INIT;
	rr.revision.data = (uint8_t *)rev;
	rr.revision.len = strlen(rev);
	e.error_case = GITALY__USER_SQUASH_ERROR__ERROR_RESOLVE_REVISION;
	e.resolve_revision = &rr;
	strbuf_addf(&msg, "resolving %s revision: reference not found", which);
	op_fail_detail(&m->op, GRPC_INVALID_ARGUMENT, msg.buf, &e.base);
	strbuf_release(&msg);
}

static void sq_end_resolved(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct merge *m = container_of(op, struct merge, op);
	if (status != 0) {
		sq_fail_resolve(m, "end", m->sq->end_sha);
		return;
	}
	op_chomp(out);
	strbuf_reset(&m->theirs);
	strbuf_add(&m->theirs, out->buf, out->len);
	merge_run(m, sq_merged);
}

static void sq_start_resolved(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct merge *m = container_of(op, struct merge, op);
	struct strbuf rev = STRBUF_INIT;
	if (status != 0) {
		sq_fail_resolve(m, "start", m->sq->start_sha);
		return;
	}
	op_chomp(out);
	strbuf_reset(&m->ours);
	strbuf_add(&m->ours, out->buf, out->len);
	strbuf_addf(&rev, "%s^{commit}", m->sq->end_sha);
	op_rev_parse(op, rev.buf, sq_end_resolved);
	strbuf_release(&rev);
}

static void sq_hash_known(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct merge *m = container_of(op, struct merge, op);
	struct strbuf rev = STRBUF_INIT;
	strbuf_addf(&rev, "%s^{commit}", m->sq->start_sha);
	op_rev_parse(op, rev.buf, sq_start_resolved);
	strbuf_release(&rev);
}

static void user_squash(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct merge *m = merge_new(call, data, MK_SQUASH, 1);
	struct strbuf err = STRBUF_INIT;
	Google__Protobuf__Timestamp when = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	Gitaly__UserSquashRequest *req = msg_unpack(call, &gitaly__user_squash_request__descriptor, buf, len);
	struct op *op = &m->op;
	if (!req)
		return;
	m->req = &req->base;
	m->sq = req;
	if (op_locate(op, req->repository) != GRPC_OK)
		return;
	if (!req->user) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty User");
		return;
	}
	if (!req->user->name.len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty user name");
		return;
	}
	if (!req->user->email.len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty user email");
		return;
	}
	if (!req->start_sha || !*req->start_sha) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty StartSha");
		return;
	}
	if (!req->end_sha || !*req->end_sha) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty EndSha");
		return;
	}
	if (!req->commit_message.len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty CommitMessage");
		return;
	}
	if (!req->author) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty Author");
		return;
	}
	if (!req->author->name.len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty author name");
		return;
	}
	if (!req->author->email.len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty author email");
		return;
	}
	if (op_quarantine(op) < 0)
		return;
	if (merge_bad_rev(req->start_sha)) {
		sq_fail_resolve(m, "start", req->start_sha);
		return;
	}
	if (merge_bad_rev(req->end_sha)) {
		sq_fail_resolve(m, "end", req->end_sha);
		return;
	}
	m->have_sig = 1;
	if (op_signature(req->user, req->timestamp, &m->sig, &err) < 0) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "%s", err.buf);
		strbuf_release(&err);
		return;
	}
	/* the author signs at the committer's moment, in the author's own zone */
	when.seconds = m->sig.when;
	m->have_author = 1;
	if (op_signature(req->author, &when, &m->author, &err) < 0) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "%s", err.buf);
		strbuf_release(&err);
		return;
	}
	/* git commit-tree used to add the final newline; upstream keeps that */
	strbuf_add(&m->message, req->commit_message.data, req->commit_message.len);
	if (m->message.buf[m->message.len - 1] != '\n')
		strbuf_addch(&m->message, '\n');
	op_detect_hash(op, sq_hash_known);
}

void op_register_squash(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.OperationService/UserSquash", user_squash, g);
}
