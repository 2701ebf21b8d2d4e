/*
 * The merge machinery shared by merge.c (UserMergeBranch, UserMergeToRef,
 * UserFFBranch, UserUpdateBranch) and squash.c (UserSquash): one per-call
 * struct, the merge itself (merge-tree, then commit-tree with the request's
 * signatures) and the branch's old value.
 */
#ifndef GITALY_OPERATIONS_MERGE_H
#define GITALY_OPERATIONS_MERGE_H

#include "operations/operations.h"

enum merge_kind { MK_MERGE_BRANCH, MK_MERGE_TO_REF, MK_FF_BRANCH, MK_UPDATE_BRANCH, MK_SQUASH };

/* UserMergeBranch's two-message protocol (docs/technical/operations-merge.md) */
enum mb_state { MB_FIRST, MB_MERGING, MB_WAIT_APPLY, MB_UPDATING };

struct merge {
	struct op op;
	enum merge_kind kind;
	enum mb_state state;
	ProtobufCMessage *req;
	Gitaly__UserMergeBranchRequest *mb;
	Gitaly__UserMergeToRefRequest *mtr;
	Gitaly__UserFFBranchRequest *ff;
	Gitaly__UserUpdateBranchRequest *ub;
	Gitaly__UserSquashRequest *sq;
	const Gitaly__User *user;
	const char *expected_old;
	struct strbuf branch, ref;       /* the branch name and the reference it is */
	struct strbuf old;               /* the reference's value the update expects */
	struct strbuf ours, theirs;      /* first and second parent of the merge */
	struct strbuf tree, commit;
	struct strbuf target_ref;        /* UserMergeToRef */
	struct strvec conflicts;         /* conflicting paths, as merge-tree names them */
	struct op_signature sig;
	int have_sig;
	struct op_signature author;      /* UserSquash: the request's author at the committer's time */
	int have_author;
	struct strbuf message;           /* UserSquash: the message with its final newline */
	void (*merged)(struct merge *m);  /* the merge commit was written */
	void (*resolved)(struct merge *m); /* m->old is known */
};

struct merge *merge_new(struct grpc_call *call, void *data, enum merge_kind kind, int unary);

/* A bytes field as a C string; -1 when it holds a NUL, which no reference may contain. */
int merge_bytes_str(const ProtobufCBinaryData *b, struct strbuf *out);

/* A string that goes onto a git command line or into cat-file's stdin is refused when this is true. */
int merge_bad_rev(const char *s);

/* Merge m->theirs into m->ours; m->merged() follows with m->commit set. */
void merge_run(struct merge *m, void (*merged)(struct merge *m));

/* expected_old_oid when given (it must exist), else the branch's current value; then m->resolved(). */
void merge_resolve_old(struct merge *m, void (*resolved)(struct merge *m));

#endif
