/*
 * A tree built through a temporary index (docs/technical/operations-write.md,
 * "Editing a tree"): `git read-tree <base>` into an index file inside the
 * object quarantine, `git update-index -z --index-info` with the edits, then
 * `git write-tree`. No worktree is involved and the result depends only on
 * the base tree and the edits, so every replica writes the same tree.
 *
 * The caller embeds a struct index_tree in its context, sets it->base, adds
 * edits, then calls index_tree_run() with a step function `fn` of its own
 * that finds the struct and hands every git answer to index_tree_step():
 * that returns 1 once it->tree is written, 0 while it is still working, -1
 * when it failed and finished the call (INTERNAL "writing tree: ..."). The
 * index file is removed once the tree is written, so it never reaches the
 * repository when the quarantine is migrated.
 */
#ifndef GITALY_OPERATIONS_INDEX_TREE_H
#define GITALY_OPERATIONS_INDEX_TREE_H

#include "operations/operations.h"

struct index_tree {
	struct strbuf index;      /* the temporary index file */
	struct strbuf info;       /* update-index -z --index-info input */
	struct strbuf base;       /* the tree to start from */
	struct strbuf tree;       /* the result */
	int step;
	op_git_fn fn;
};

void index_tree_init(struct index_tree *it);
void index_tree_release(struct index_tree *it);
/* Set `path` to (mode, oid); mode "0" removes it. */
void index_tree_set(struct index_tree *it, const char *mode, const char *oid, const char *path, size_t pathlen);
/* Needs op->qdir (op_quarantine()). */
void index_tree_run(struct op *op, struct index_tree *it, op_git_fn fn);
int index_tree_step(struct op *op, struct index_tree *it, int status, struct strbuf *out, struct strbuf *err);

#endif
