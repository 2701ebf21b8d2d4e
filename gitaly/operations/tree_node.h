/*
 * The tree UserCommitFiles edits in memory, modelled on upstream's localrepo
 * tree: nodes read from "git ls-tree", edited by path, then written back
 * bottom-up with "git mktree"-compatible bodies. A node whose oid is "" must
 * be (re)written.
 */
#ifndef GITALY_OPERATIONS_TREE_NODE_H
#define GITALY_OPERATIONS_TREE_NODE_H

#include <stddef.h>
#include "base/strbuf.h"

/* Errors of the tree model (upstream's localrepo tree errors). */
enum tree_node_err {
	TE_OK = 0,
	TE_NOT_FOUND = -1,
	TE_EXISTS = -2,
	TE_EMPTY_PATH = -3,
	TE_TRAVERSAL = -4,
	TE_ABSOLUTE = -5,
	TE_DISALLOWED = -6,
};

enum tree_node_type { TN_UNKNOWN, TN_TREE, TN_BLOB, TN_COMMIT };

struct tree_node {
	char *name;
	char mode[8];
	enum tree_node_type type;
	char oid[65];           /* "" while the tree must be (re)written */
	struct tree_node **kids;
	size_t nr, alloc;
};


struct tree_node *tree_node_new(const char *name, size_t len, const char *mode, enum tree_node_type type, const char *oid);
void tree_node_free(struct tree_node *n);
void tree_node_append(struct tree_node *parent, struct tree_node *kid);
enum tree_node_err tree_node_get(struct tree_node *root, const char *path, struct tree_node **out);
enum tree_node_err tree_node_add(struct tree_node *root, const char *path, struct tree_node *e, int overwrite_file,
				 int overwrite_dir);
enum tree_node_err tree_node_delete(struct tree_node *root, const char *path);
enum tree_node_err tree_node_modify(struct tree_node *root, const char *path, struct tree_node **out);
int tree_node_body(struct tree_node *t, struct strbuf *out);
struct tree_node *tree_node_next_dirty(struct tree_node *t);
enum tree_node_type tree_node_type_of(const char *t, size_t n);
int tree_node_populate(struct tree_node *root, const struct strbuf *out);

#endif
