/* OperationService: UserCherryPick and UserRevert (docs/technical/operations-merge.md, "Cherry-pick and revert"). */
#include "operations/operations.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

#define MERGE_TREE_OUT_CAP (4 * 1024 * 1024)
#define STRUCTURED_REVERT_FLAG "gitaly-feature-return-structured-errors-in-revert"

/* The identity of the helper commits that give merge-tree its base, as upstream's empty-tree commit. */
#define HELPER_IDENT "GitLab Bot"
#define HELPER_EMAIL "gitlab-bot@gitlab.com"
#define HELPER_DATE "694540800 +0000"

/* The steps, in order; each git call's answer comes back to pick_step() with the step it ran for. */
enum pick_step {
	P_START,          /* rev-parse <start branch>^{commit} */
	P_HAS_BRANCHES,   /* for-each-ref --count=1 refs/heads/ */
	P_COMMIT,         /* cat-file the commit to pick or revert */
	P_OURS_TREE,      /* rev-parse <start>^{tree} */
	P_THEIRS_TREE,    /* revert: rev-parse <parent>^{tree}, or mktree for a root commit */
	P_HELPER_OURS,    /* commit-tree <ours tree> -p <base> */
	P_HELPER_THEIRS,  /* commit-tree <theirs tree> -p <base> */
	P_MERGE,          /* merge-tree --write-tree of the two helpers */
	P_WRITE,          /* commit-tree of the result */
	P_OLD,            /* the branch's current value */
	P_ANCESTRY,       /* merge-base --is-ancestor <old> <new> */
};

struct pick {
	struct op op;
	int revert;
	int structured;               /* UserRevert with structured errors (feature flag) */
	enum pick_step step;
	ProtobufCMessage *req;
	Gitaly__Repository *repo;
	const Gitaly__User *user;
	const Gitaly__GitCommit *commit;
	const ProtobufCBinaryData *branch_name, *start_branch_name, *message;
	const char *expected_old;
	int dry_run;
	const Google__Protobuf__Timestamp *timestamp;
	struct strbuf branch, ref, start, ours_tree, theirs_tree, base, helper_ours, helper_theirs, tree, newrev, old;
	Gitaly__GitCommit *picked;    /* the commit read back */
	struct strvec conflicts;
	struct op_signature sig;
	int have_sig;
	int had_branches, branch_created;
};

static void pick_release(struct op *op)
{
	struct pick *p = container_of(op, struct pick, op);
	msg_free(p->req);
	strbuf_release(&p->branch);
	strbuf_release(&p->ref);
	strbuf_release(&p->start);
	strbuf_release(&p->ours_tree);
	strbuf_release(&p->theirs_tree);
	strbuf_release(&p->base);
	strbuf_release(&p->helper_ours);
	strbuf_release(&p->helper_theirs);
	strbuf_release(&p->tree);
	strbuf_release(&p->newrev);
	strbuf_release(&p->old);
	strvec_clear(&p->conflicts);
	if (p->picked)
		protobuf_c_message_free_unpacked(&p->picked->base, NULL);
	if (p->have_sig)
		op_signature_release(&p->sig);
	free(p);
}

static void pick_step(struct op *op, int status, struct strbuf *out, struct strbuf *err);

static void run(struct pick *p, enum pick_step step, const char *subcmd, const char *const *flags,
		const char *const *args, const char *const *env, const char *in, size_t inlen, size_t cap)
{
	struct git_call gc;
	p->step = step;
	op_git_call(&p->op, &gc, subcmd);
	gc.flags = flags;
	gc.args = args;
	gc.env = env;
	op_git(&p->op, &gc, in, inlen, cap, pick_step);
}

static void rev_parse(struct pick *p, enum pick_step step, const char *rev)
{
	static const char *const flags[] = { "--verify", NULL };
	const char *args[] = { rev, NULL };
	run(p, step, "rev-parse", flags, args, NULL, NULL, 0, 4096);
}

/* commit-tree with the fixed helper identity: the same bytes on every replica */
static void helper_commit(struct pick *p, enum pick_step step, const char *tree)
{
	static const char *const env[] = { "GIT_AUTHOR_NAME=" HELPER_IDENT, "GIT_AUTHOR_EMAIL=" HELPER_EMAIL,
					   "GIT_AUTHOR_DATE=" HELPER_DATE, "GIT_COMMITTER_NAME=" HELPER_IDENT,
					   "GIT_COMMITTER_EMAIL=" HELPER_EMAIL, "GIT_COMMITTER_DATE=" HELPER_DATE,
					   NULL };
	const char *flags[] = { "-p", p->base.buf, "-F", "-", NULL };
	const char *args[] = { tree, NULL };
	if (!p->base.len) {
		const char *rootflags[] = { "-F", "-", NULL };
		run(p, step, "commit-tree", rootflags, args, env, "", 0, 4096);
		return;
	}
	run(p, step, "commit-tree", flags, args, env, "", 0, 4096);
}

static void set_line(struct strbuf *sb, struct strbuf *out)
{
	op_chomp(out);
	strbuf_reset(sb);
	strbuf_add(sb, out->buf, out->len);
}

/* --- answers --- */

static void reply_update(struct pick *p)
{
	Gitaly__OperationBranchUpdate bu = GITALY__OPERATION_BRANCH_UPDATE__INIT;
	bu.commit_id = p->newrev.buf;
	bu.branch_created = p->branch_created;
	bu.repo_created = !p->had_branches;
	if (p->revert) {
		Gitaly__UserRevertResponse resp = GITALY__USER_REVERT_RESPONSE__INIT;
		resp.branch_update = &bu;
		msg_reply(p->op.base.call, &resp);
	} else {
		Gitaly__UserCherryPickResponse resp = GITALY__USER_CHERRY_PICK_RESPONSE__INIT;
		resp.branch_update = &bu;
		msg_reply(p->op.base.call, &resp);
	}
}

/* UserRevert without the feature flag answers its refusals inside a successful response */
static void revert_inline(struct pick *p, const char *create_tree_error, Gitaly__UserRevertResponse__CreateTreeError code,
			  const char *commit_error, const char *pre_receive_error)
{
	Gitaly__UserRevertResponse resp = GITALY__USER_REVERT_RESPONSE__INIT;
	resp.create_tree_error = (char *)(create_tree_error ? create_tree_error : "");
	resp.create_tree_error_code = code;
	resp.commit_error = (char *)(commit_error ? commit_error : "");
	resp.pre_receive_error = (char *)(pre_receive_error ? pre_receive_error : "");
	msg_reply(p->op.base.call, &resp);
}

static void fail_conflict(struct pick *p)
{
	Gitaly__MergeConflictError mc = GITALY__MERGE_CONFLICT_ERROR__INIT;
	ProtobufCBinaryData *files = xcalloc(p->conflicts.nr ? p->conflicts.nr : 1, sizeof(*files));
	for (size_t i = 0; i < p->conflicts.nr; i++) {
		files[i].data = (uint8_t *)p->conflicts.v[i];
		files[i].len = strlen(p->conflicts.v[i]);
	}
	mc.n_conflicting_files = p->conflicts.nr;
	mc.conflicting_files = files;
	if (!p->revert) {
		Gitaly__UserCherryPickError e = GITALY__USER_CHERRY_PICK_ERROR__INIT;
		e.error_case = GITALY__USER_CHERRY_PICK_ERROR__ERROR_CHERRY_PICK_CONFLICT;
		e.cherry_pick_conflict = &mc;
		op_fail_detail(&p->op, GRPC_FAILED_PRECONDITION, "cherry pick: merge: there are conflicting files", &e.base);
	} else if (p->structured) {
		Gitaly__UserRevertError e = GITALY__USER_REVERT_ERROR__INIT;
		e.error_case = GITALY__USER_REVERT_ERROR__ERROR_MERGE_CONFLICT;
		e.merge_conflict = &mc;
		op_fail_detail(&p->op, GRPC_FAILED_PRECONDITION, "revert: there are conflicting files", &e.base);
	} else {
		revert_inline(p, "revert: could not apply due to conflicts",
			      GITALY__USER_REVERT_RESPONSE__CREATE_TREE_ERROR__CONFLICT, NULL, NULL);
	}
	free(files);
}

static void fail_empty(struct pick *p)
{
	Gitaly__ChangesAlreadyAppliedError ca = GITALY__CHANGES_ALREADY_APPLIED_ERROR__INIT;
	if (!p->revert) {
		Gitaly__UserCherryPickError e = GITALY__USER_CHERRY_PICK_ERROR__INIT;
		e.error_case = GITALY__USER_CHERRY_PICK_ERROR__ERROR_CHANGES_ALREADY_APPLIED;
		e.changes_already_applied = &ca;
		op_fail_detail(&p->op, GRPC_FAILED_PRECONDITION,
			       "cherry-pick: could not apply because the result was empty", &e.base);
	} else if (p->structured) {
		Gitaly__UserRevertError e = GITALY__USER_REVERT_ERROR__INIT;
		e.error_case = GITALY__USER_REVERT_ERROR__ERROR_CHANGES_ALREADY_APPLIED;
		e.changes_already_applied = &ca;
		op_fail_detail(&p->op, GRPC_FAILED_PRECONDITION, "revert: could not apply because the result was empty",
			       &e.base);
	} else {
		revert_inline(p, "revert: could not apply because the result was empty",
			      GITALY__USER_REVERT_RESPONSE__CREATE_TREE_ERROR__EMPTY, NULL, NULL);
	}
}

static void fail_diverged(struct pick *p)
{
	Gitaly__NotAncestorError na = GITALY__NOT_ANCESTOR_ERROR__INIT;
	na.parent_revision.data = (uint8_t *)p->old.buf;
	na.parent_revision.len = p->old.len;
	na.child_revision.data = (uint8_t *)p->newrev.buf;
	na.child_revision.len = p->newrev.len;
	if (!p->revert) {
		Gitaly__UserCherryPickError e = GITALY__USER_CHERRY_PICK_ERROR__INIT;
		e.error_case = GITALY__USER_CHERRY_PICK_ERROR__ERROR_TARGET_BRANCH_DIVERGED;
		e.target_branch_diverged = &na;
		op_fail_detail(&p->op, GRPC_FAILED_PRECONDITION, "cherry-pick: branch diverged", &e.base);
	} else if (p->structured) {
		Gitaly__UserRevertError e = GITALY__USER_REVERT_ERROR__INIT;
		e.error_case = GITALY__USER_REVERT_ERROR__ERROR_NOT_ANCESTOR;
		e.not_ancestor = &na;
		op_fail_detail(&p->op, GRPC_FAILED_PRECONDITION, "revert: branch diverged", &e.base);
	} else {
		revert_inline(p, NULL, GITALY__USER_REVERT_RESPONSE__CREATE_TREE_ERROR__NONE, "Branch diverged", NULL);
	}
}

static void updated(struct op *op, const struct op_update_result *r)
{
	struct pick *p = container_of(op, struct pick, op);
	if (r->fail == UPD_OK) {
		reply_update(p);
	} else if (r->fail == UPD_CUSTOM_HOOK && !p->revert) {
		Gitaly__UserCherryPickError e = GITALY__USER_CHERRY_PICK_ERROR__INIT;
		Gitaly__AccessCheckError ac = GITALY__ACCESS_CHECK_ERROR__INIT;
		struct strbuf m = STRBUF_INIT;
		strbuf_add(&m, r->hook_error.buf, r->hook_error.len);
		if (m.len && m.buf[m.len - 1] == '\n')
			strbuf_setlen(&m, m.len - 1);
		ac.error_message = m.buf;
		e.error_case = GITALY__USER_CHERRY_PICK_ERROR__ERROR_ACCESS_CHECK;
		e.access_check = &ac;
		op_fail_detail(op, GRPC_FAILED_PRECONDITION, "access check failed", &e.base);
		strbuf_release(&m);
	} else if (r->fail == UPD_CUSTOM_HOOK && p->structured) {
		op_fail_update(op, r, &gitaly__user_revert_error__descriptor, "revert: custom hook error");
	} else if (r->fail == UPD_CUSTOM_HOOK) {
		revert_inline(p, NULL, GITALY__USER_REVERT_RESPONSE__CREATE_TREE_ERROR__NONE, NULL, r->hook_error.buf);
	} else {
		enum grpc_code code = r->fail == UPD_REF ? GRPC_INTERNAL
				      : r->code && r->code != GRPC_PERMISSION_DENIED ? r->code : GRPC_INTERNAL;
		op_fail(op, code, "update reference with hooks: %s", r->msg.buf);
	}
}

/* --- the steps --- */

static void write_result(struct pick *p)
{
	struct strbuf adate = STRBUF_INIT, cdate = STRBUF_INIT;
	struct strvec env = STRVEC_INIT;
	const char *flags[] = { "-p", p->start.buf, "-F", "-", NULL };
	const char *args[] = { p->tree.buf, NULL };
	op_signature_date(&p->sig, &cdate);
	if (p->revert) {
		strvec_pushf(&env, "GIT_AUTHOR_NAME=%s", p->sig.name.buf);
		strvec_pushf(&env, "GIT_AUTHOR_EMAIL=%s", p->sig.email.buf);
		strvec_pushf(&env, "GIT_AUTHOR_DATE=%s", cdate.buf);
	} else {
		/* the picked commit keeps its author, date and zone */
		const Gitaly__CommitAuthor *a = p->picked->author;
		strbuf_addf(&adate, "%lld %.*s", (long long)(a && a->date ? a->date->seconds : 0),
			    a && a->timezone.len ? (int)a->timezone.len : 5,
			    a && a->timezone.len ? (const char *)a->timezone.data : "+0000");
		strvec_pushf(&env, "GIT_AUTHOR_NAME=%.*s", a ? (int)a->name.len : 0, a ? (const char *)a->name.data : "");
		strvec_pushf(&env, "GIT_AUTHOR_EMAIL=%.*s", a ? (int)a->email.len : 0,
			     a ? (const char *)a->email.data : "");
		strvec_pushf(&env, "GIT_AUTHOR_DATE=%s", adate.buf);
	}
	strvec_pushf(&env, "GIT_COMMITTER_NAME=%s", p->sig.name.buf);
	strvec_pushf(&env, "GIT_COMMITTER_EMAIL=%s", p->sig.email.buf);
	strvec_pushf(&env, "GIT_COMMITTER_DATE=%s", cdate.buf);
	run(p, P_WRITE, "commit-tree", flags, args, (const char *const *)env.v, (const char *)p->message->data,
	    p->message->len, 4096);
	strbuf_release(&adate);
	strbuf_release(&cdate);
	strvec_clear(&env);
}

static void resolve_old(struct pick *p)
{
	struct strbuf rev = STRBUF_INIT;
	if (*p->expected_old) {
		if (op_check_expected_old(&p->op, p->expected_old) < 0)
			return;
		strbuf_addf(&rev, "%s^{object}", p->expected_old);
	} else {
		strbuf_addf(&rev, "%s^{commit}", p->ref.buf);
	}
	rev_parse(p, P_OLD, rev.buf);
	strbuf_release(&rev);
}

static void check_ancestry(struct pick *p)
{
	static const char *const flags[] = { "--is-ancestor", NULL };
	const char *args[] = { p->old.buf, p->newrev.buf, NULL };
	if (p->dry_run) {
		strbuf_reset(&p->newrev);
		strbuf_add(&p->newrev, p->start.buf, p->start.len);
	}
	if (p->branch_created) {
		op_update_ref(&p->op, p->user, p->ref.buf, p->newrev.buf, p->old.buf, updated);
		return;
	}
	args[1] = p->newrev.buf;
	run(p, P_ANCESTRY, "merge-base", flags, args, NULL, NULL, 0, 4096);
}

static void parse_conflicts(struct pick *p, const struct strbuf *out)
{
	const char *s = out->buf, *end = out->buf + out->len;
	const char *nul = memchr(s, '\0', (size_t)(end - s));
	if (!nul)
		return;
	s = nul + 1;
	while (s < end && *s && (nul = memchr(s, '\0', (size_t)(end - s)))) {
		strvec_push(&p->conflicts, s);
		s = nul + 1;
	}
}

static void pick_step(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct pick *p = container_of(op, struct pick, op);
	switch (p->step) {
	case P_START: {
		static const char *const flags[] = { "--count=1", "--format=%(refname)", NULL };
		static const char *const args[] = { "refs/heads/", NULL };
		if (status != 0) {
			op_fail(op, GRPC_INVALID_ARGUMENT, "resolve start ref: reference not found");
			return;
		}
		set_line(&p->start, out);
		run(p, P_HAS_BRANCHES, "for-each-ref", flags, args, NULL, NULL, 0, 4096);
		return;
	}
	case P_HAS_BRANCHES: {
		struct strbuf e = STRBUF_INIT, rev = STRBUF_INIT;
		if (status != 0) {
			op_fail(op, GRPC_INTERNAL, "has branches: exit status %d", status);
			return;
		}
		p->had_branches = out->len > 0;
		p->have_sig = 1;   /* op_signature() sets its buffers up even when it fails */
		if (op_signature(p->user, p->timestamp, &p->sig, &e) < 0) {
			op_fail(op, GRPC_INVALID_ARGUMENT, "%s", e.buf);
			strbuf_release(&e);
			return;
		}
		strbuf_release(&e);
		if (!p->commit->id || !*p->commit->id || strchr(p->commit->id, '\n')) {
			status = 1;
			goto commit_missing;
		}
		strbuf_addf(&rev, "%s^{commit}", p->commit->id);
		p->step = P_COMMIT;
		op_read_object(op, rev.buf, pick_step);
		strbuf_release(&rev);
		return;
	}
	case P_COMMIT: {
		const char *oid, *type, *data;
		size_t oidlen, typelen, len;
		if (status != 0 || op_parse_batch(out, &oid, &oidlen, &type, &typelen, &data, &len) < 0) {
			status = 1;
			goto commit_missing;
		}
		p->picked = op_parse_commit(oid, oidlen, data, len);
		if (p->revert) {
			/* merge the change from the commit back to its first parent (mainline 1) */
			strbuf_addstr(&p->base, p->picked->id);
		} else {
			if (!p->picked->n_parent_ids) {
				/* upstream asks merge-tree for "<commit>^", which a root commit has not */
				op_fail(op, GRPC_INTERNAL, "cherry-pick command: merge-tree: commit has no parent: %s",
					p->picked->id);
				return;
			}
			strbuf_addstr(&p->base, p->picked->parent_ids[0]);
			strbuf_addstr(&p->theirs_tree, p->picked->tree_id);
		}
		{
			struct strbuf rev = STRBUF_INIT;
			strbuf_addf(&rev, "%s^{tree}", p->start.buf);
			rev_parse(p, P_OURS_TREE, rev.buf);
			strbuf_release(&rev);
		}
		return;
	}
	case P_OURS_TREE:
		if (status != 0) {
			op_fail(op, GRPC_INTERNAL, "resolve old tree: %s", err->buf);
			return;
		}
		set_line(&p->ours_tree, out);
		if (p->revert && p->picked->n_parent_ids) {
			struct strbuf rev = STRBUF_INIT;
			strbuf_addf(&rev, "%s^{tree}", p->picked->parent_ids[0]);
			rev_parse(p, P_THEIRS_TREE, rev.buf);
			strbuf_release(&rev);
		} else if (p->revert) {
			/* a root commit reverts to the empty tree */
			run(p, P_THEIRS_TREE, "mktree", NULL, NULL, NULL, "", 0, 4096);
		} else {
			helper_commit(p, P_HELPER_OURS, p->ours_tree.buf);
		}
		return;
	case P_THEIRS_TREE:
		if (status != 0) {
			op_fail(op, GRPC_INTERNAL, "write temporary commit: %s", err->buf);
			return;
		}
		set_line(&p->theirs_tree, out);
		helper_commit(p, P_HELPER_OURS, p->ours_tree.buf);
		return;
	case P_HELPER_OURS:
	case P_HELPER_THEIRS:
		if (status != 0) {
			op_fail(op, GRPC_INTERNAL, "write temporary commit: %s", err->buf);
			return;
		}
		if (p->step == P_HELPER_OURS) {
			set_line(&p->helper_ours, out);
			helper_commit(p, P_HELPER_THEIRS, p->theirs_tree.buf);
		} else {
			/*
			 * Both helpers have the base as their only parent, so
			 * merge-tree merges against it: git 2.39 has no --merge-base.
			 */
			static const char *const flags[] = { "-z", "--write-tree", "--name-only",
							     "--allow-unrelated-histories", NULL };
			const char *args[] = { p->helper_ours.buf, NULL, NULL };
			set_line(&p->helper_theirs, out);
			args[1] = p->helper_theirs.buf;
			run(p, P_MERGE, "merge-tree", flags, args, NULL, NULL, 0, MERGE_TREE_OUT_CAP);
		}
		return;
	case P_MERGE: {
		const char *nul = memchr(out->buf, '\0', out->len);
		size_t hexlen = nul ? (size_t)(nul - out->buf) : 0;
		if (status == 1 && hexlen == op->hexlen) {
			parse_conflicts(p, out);
			fail_conflict(p);
			return;
		}
		if (status != 0 || hexlen != op->hexlen) {
			if (p->revert)
				op_fail(op, GRPC_INTERNAL, "merge-tree: exit status %d", status);
			else
				op_fail(op, GRPC_INTERNAL, "cherry-pick command: merge-tree: exit status %d", status);
			return;
		}
		strbuf_reset(&p->tree);
		strbuf_add(&p->tree, out->buf, hexlen);
		if (!strcmp(p->tree.buf, p->ours_tree.buf)) {
			fail_empty(p);
			return;
		}
		write_result(p);
		return;
	}
	case P_WRITE:
		if (status != 0) {
			op_fail(op, GRPC_INTERNAL, "write commit: commit-tree: exit status %d: %s", status, err->buf);
			return;
		}
		set_line(&p->newrev, out);
		resolve_old(p);
		return;
	case P_OLD:
		if (status != 0) {
			if (*p->expected_old) {
				op_fail(op, GRPC_INVALID_ARGUMENT, "cannot resolve expected old object ID: reference not found");
				return;
			}
			p->branch_created = 1;
			strbuf_reset(&p->old);
			strbuf_addstr(&p->old, op_zero_oid(op));
		} else {
			set_line(&p->old, out);
		}
		check_ancestry(p);
		return;
	case P_ANCESTRY:
		if (status == 1) {
			fail_diverged(p);
			return;
		}
		if (status != 0) {
			struct strbuf q = STRBUF_INIT;
			hooks_quote(&q, err->buf, err->len);
			op_fail(op, GRPC_INTERNAL, "checking for ancestry: determine ancestry: exit status %d, stderr: %s",
				status, q.buf);
			strbuf_release(&q);
			return;
		}
		op_update_ref(op, p->user, p->ref.buf, p->newrev.buf, p->old.buf, updated);
		return;
	}
	return;
commit_missing:
	if (p->revert) {
		op_fail(op, GRPC_NOT_FOUND, "revert commit lookup: commit not found");
	} else {
		struct strbuf q = STRBUF_INIT;
		const char *id = p->commit->id ? p->commit->id : "";
		hooks_quote(&q, id, strlen(id));
		op_fail(op, GRPC_NOT_FOUND, "cherry-pick: commit lookup: commit not found: %s", q.buf);
		strbuf_release(&q);
	}
}

static void pick_hash_known(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct pick *p = container_of(op, struct pick, op);
	struct strbuf rev = STRBUF_INIT;
	const ProtobufCBinaryData *start = p->start_branch_name->len ? p->start_branch_name : p->branch_name;
	strbuf_add(&rev, start->data, start->len);
	if (memchr(rev.buf, '\0', rev.len) || strchr(rev.buf, '\n')) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "resolve start ref: reference not found");
		strbuf_release(&rev);
		return;
	}
	strbuf_addstr(&rev, "^{commit}");
	rev_parse(p, P_START, rev.buf);
	strbuf_release(&rev);
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

static void pick_start(struct pick *p, const Gitaly__Repository *start_repo)
{
	struct op *op = &p->op;
	if (op_locate(op, p->repo) != GRPC_OK)
		return;
	if (!p->user) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty User");
		return;
	}
	if (!p->commit) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty Commit");
		return;
	}
	if (!p->branch_name->len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty BranchName");
		return;
	}
	if (!p->message->len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty Message");
		return;
	}
	if (start_repo && !same_repo(start_repo, p->repo)) {
		/* upstream fetches the start revision from there; we do not reach other repositories yet */
		op_fail(op, GRPC_UNIMPLEMENTED, "start repository other than the target repository is not supported");
		return;
	}
	strbuf_add(&p->branch, p->branch_name->data, p->branch_name->len);
	if (memchr(p->branch.buf, '\0', p->branch.len)) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "resolve start ref: reference not found");
		return;
	}
	strbuf_addf(&p->ref, "refs/heads/%s", p->branch.buf);
	if (op_quarantine(op) < 0)
		return;
	op_detect_hash(op, pick_hash_known);
}

static struct pick *pick_new(struct grpc_call *call, void *data, int revert)
{
	struct pick *p = xcalloc(1, sizeof(*p));
	p->revert = revert;
	strbuf_init(&p->branch, 0);
	strbuf_init(&p->ref, 0);
	strbuf_init(&p->start, 0);
	strbuf_init(&p->ours_tree, 0);
	strbuf_init(&p->theirs_tree, 0);
	strbuf_init(&p->base, 0);
	strbuf_init(&p->helper_ours, 0);
	strbuf_init(&p->helper_theirs, 0);
	strbuf_init(&p->tree, 0);
	strbuf_init(&p->newrev, 0);
	strbuf_init(&p->old, 0);
	strvec_init(&p->conflicts);
	op_init(&p->op, data, call, pick_release, 1);
	return p;
}

static void user_cherry_pick(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct pick *p = pick_new(call, data, 0);
	Gitaly__UserCherryPickRequest *req = msg_unpack(call, &gitaly__user_cherry_pick_request__descriptor, buf, len);
	if (!req)
		return;
	p->req = &req->base;
	p->repo = req->repository;
	p->user = req->user;
	p->commit = req->commit;
	p->branch_name = &req->branch_name;
	p->start_branch_name = &req->start_branch_name;
	p->message = &req->message;
	p->expected_old = req->expected_old_oid ? req->expected_old_oid : "";
	p->dry_run = req->dry_run;
	p->timestamp = req->timestamp;
	pick_start(p, req->start_repository);
}

static void user_revert(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct pick *p = pick_new(call, data, 1);
	Gitaly__UserRevertRequest *req = msg_unpack(call, &gitaly__user_revert_request__descriptor, buf, len);
	const char *flag;
	if (!req)
		return;
	flag = grpc_metadata_value(grpc_call_metadata(call), STRUCTURED_REVERT_FLAG);
	p->structured = flag && !strcmp(flag, "true");
	p->req = &req->base;
	p->repo = req->repository;
	p->user = req->user;
	p->commit = req->commit;
	p->branch_name = &req->branch_name;
	p->start_branch_name = &req->start_branch_name;
	p->message = &req->message;
	p->expected_old = req->expected_old_oid ? req->expected_old_oid : "";
	p->dry_run = req->dry_run;
	p->timestamp = req->timestamp;
	pick_start(p, req->start_repository);
}

void op_register_cherry_pick(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.OperationService/UserCherryPick", user_cherry_pick, g);
	gitaly_add_unary(s, "/gitaly.OperationService/UserRevert", user_revert, g);
}
