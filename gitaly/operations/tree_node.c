/* The in-memory tree of UserCommitFiles: lookups, edits and tree object bodies. */
#include "operations/tree_node.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tree_node *tree_node_new(const char *name, size_t len, const char *mode, enum tree_node_type type, const char *oid)
{
	struct tree_node *n = xcalloc(1, sizeof(*n));
	n->name = xstrndup(name, len);
	snprintf(n->mode, sizeof(n->mode), "%s", mode);
	n->type = type;
	snprintf(n->oid, sizeof(n->oid), "%s", oid ? oid : "");
	return n;
}

void tree_node_free(struct tree_node *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->nr; i++)
		tree_node_free(n->kids[i]);
	free(n->kids);
	free(n->name);
	free(n);
}

void tree_node_append(struct tree_node *parent, struct tree_node *kid)
{
	ALLOC_GROW(parent->kids, parent->nr + 1, parent->alloc);
	parent->kids[parent->nr++] = kid;
}

static struct tree_node *tree_node_find(struct tree_node *t, const char *name, size_t len, size_t *idx)
{
	for (size_t i = 0; i < t->nr; i++)
		if (strlen(t->kids[i]->name) == len && !memcmp(t->kids[i]->name, name, len)) {
			if (idx)
				*idx = i;
			return t->kids[i];
		}
	return NULL;
}

/* Upstream's validateFileCreationPath() on an already clean relative path. */
static enum tree_node_err check_creation_path(const char *path)
{
	size_t first = strcspn(path, "/");
	if (path[0] == '/')
		return TE_ABSOLUTE;
	if (!strncmp(path, "..", 2))
		return TE_TRAVERSAL;
	if (!strcmp(path, ".") || !*path)
		return TE_EMPTY_PATH;
	if (first == 4 && !strncmp(path, ".git", 4))
		return TE_DISALLOWED;
	return TE_OK;
}

/*
 * Walk to the entry at `path`; parents on the way are marked for rewriting
 * when `dirty`. Returns the entry and its parent tree, or NULL.
 */
static struct tree_node *walk(struct tree_node *root, const char *path, int dirty, struct tree_node **parent, size_t *idx)
{
	struct tree_node *cur = root;
	const char *p = path;
	for (;;) {
		size_t n = strcspn(p, "/");
		struct tree_node *e = tree_node_find(cur, p, n, idx);
		if (!e)
			return NULL;
		if (!p[n]) {
			cur->oid[0] = '\0';   /* upstream marks the containing tree, even for lookups */
			*parent = cur;
			return e;
		}
		if (dirty)
			cur->oid[0] = '\0';
		cur = e;
		p += n + 1;
	}
}

enum tree_node_err tree_node_get(struct tree_node *root, const char *path, struct tree_node **out)
{
	struct tree_node *parent;
	size_t idx;
	if (!*path || !strcmp(path, ".")) {
		*out = root;
		return TE_OK;
	}
	*out = walk(root, path, 0, &parent, &idx);
	return *out ? TE_OK : TE_NOT_FOUND;
}

/* Add `e` at `path`, creating directories; an existing entry is replaced only as allowed. */
enum tree_node_err tree_node_add(struct tree_node *root, const char *path, struct tree_node *e, int overwrite_file,
				 int overwrite_dir)
{
	enum tree_node_err err = check_creation_path(path);
	struct tree_node *cur = root;
	const char *p = path;
	if (err)
		return err;
	for (;;) {
		size_t n = strcspn(p, "/"), idx;
		struct tree_node *k = tree_node_find(cur, p, n, &idx);
		cur->oid[0] = '\0';
		if (k && !p[n]) {
			if ((k->type == TN_TREE && !overwrite_dir) || (k->type == TN_BLOB && !overwrite_file))
				return TE_EXISTS;
			tree_node_free(k);
			cur->kids[idx] = e;
			return TE_OK;
		}
		if (k) {
			/* a file where a directory should be: nothing can be added below it */
			if (k->type != TN_TREE)
				return TE_EXISTS;
			cur = k;
			p += n + 1;
			continue;
		}
		if (!p[n]) {
			tree_node_append(cur, e);
			return TE_OK;
		}
		k = tree_node_new(p, n, "040000", TN_TREE, "");
		tree_node_append(cur, k);
		cur = k;
		p += n + 1;
	}
}

static void dirname_of(const char *path, struct strbuf *out)
{
	const char *slash = strrchr(path, '/');
	strbuf_reset(out);
	if (slash)
		strbuf_add(out, path, (size_t)(slash - path));
	else
		strbuf_addch(out, '.');
}

/* Delete `path`; a directory left empty goes too (never the root). */
enum tree_node_err tree_node_delete(struct tree_node *root, const char *path)
{
	enum tree_node_err err = check_creation_path(path);
	struct tree_node *parent, *e;
	struct strbuf dir = STRBUF_INIT;
	size_t idx;
	if (err)
		return err;
	e = walk(root, path, 1, &parent, &idx);
	if (!e)
		return TE_NOT_FOUND;
	tree_node_free(e);
	memmove(parent->kids + idx, parent->kids + idx + 1, (parent->nr - idx - 1) * sizeof(*parent->kids));
	parent->nr--;
	dirname_of(path, &dir);
	if (!parent->nr && strcmp(dir.buf, "."))
		err = tree_node_delete(root, dir.buf);
	strbuf_release(&dir);
	return err;
}

enum tree_node_err tree_node_modify(struct tree_node *root, const char *path, struct tree_node **out)
{
	enum tree_node_err err = check_creation_path(path);
	struct tree_node *parent;
	size_t idx;
	if (err)
		return err;
	*out = walk(root, path, 1, &parent, &idx);
	return *out ? TE_OK : TE_NOT_FOUND;
}

/* git's tree order: names compare as if trees ended in '/'. */
static int entry_cmp(const void *a, const void *b)
{
	const struct tree_node *x = *(const struct tree_node *const *)a, *y = *(const struct tree_node *const *)b;
	size_t xl = strlen(x->name), yl = strlen(y->name), n = MIN(xl, yl);
	int c = memcmp(x->name, y->name, n);
	unsigned char xc, yc;
	if (c)
		return c;
	xc = xl > n ? (unsigned char)x->name[n] : (x->type == TN_TREE ? '/' : 0);
	yc = yl > n ? (unsigned char)y->name[n] : (y->type == TN_TREE ? '/' : 0);
	if (xl == yl && xc == yc)
		return 0;
	if (xl == n && x->type != TN_TREE && yl == n && y->type != TN_TREE)
		return 0;
	return (int)xc - (int)yc;
}

/* The binary tree object for `t`'s entries; -1 when an entry has no valid object id. */
int tree_node_body(struct tree_node *t, struct strbuf *out)
{
	/* a stable sort keeps equal names in insertion order, as Go's sort.Stable */
	for (size_t i = 1; i < t->nr; i++)
		for (size_t j = i; j > 0 && entry_cmp(&t->kids[j - 1], &t->kids[j]) > 0; j--) {
			struct tree_node *tmp = t->kids[j];
			t->kids[j] = t->kids[j - 1];
			t->kids[j - 1] = tmp;
		}
	for (size_t i = 0; i < t->nr; i++) {
		struct tree_node *e = t->kids[i];
		const char *mode = e->mode;
		size_t ol = strlen(e->oid);
		while (*mode == '0')
			mode++;
		if (!ol || ol % 2)
			return -1;
		strbuf_addf(out, "%s %s", mode, e->name);
		strbuf_addch(out, '\0');
		for (size_t k = 0; k < ol; k += 2) {
			int hi = hex_digit(e->oid[k]), lo = hex_digit(e->oid[k + 1]);
			if (hi < 0 || lo < 0)
				return -1;
			strbuf_addch(out, hi << 4 | lo);
		}
	}
	return 0;
}

/* The deepest tree still to be written (its subtrees are all written), or NULL. */
struct tree_node *tree_node_next_dirty(struct tree_node *t)
{
	if (t->oid[0])
		return NULL;
	for (size_t i = 0; i < t->nr; i++)
		if (t->kids[i]->type == TN_TREE) {
			struct tree_node *d = tree_node_next_dirty(t->kids[i]);
			if (d)
				return d;
		}
	return t;
}

enum tree_node_type tree_node_type_of(const char *t, size_t n)
{
	if (n == 4 && !memcmp(t, "tree", 4))
		return TN_TREE;
	if (n == 4 && !memcmp(t, "blob", 4))
		return TN_BLOB;
	if (n == 6 && !memcmp(t, "commit", 6))
		return TN_COMMIT;
	return TN_UNKNOWN;
}

/* "git ls-tree -z -r -t" output into the tree under `root` (upstream's populate()). */
int tree_node_populate(struct tree_node *root, const struct strbuf *out)
{
	struct tree_node **stack = NULL;
	size_t depth = 1, alloc = 0;
	const char *p = out->buf, *end = out->buf + out->len;
	ALLOC_GROW(stack, 1, alloc);
	stack[0] = root;
	while (p < end) {
		const char *z = memchr(p, '\0', (size_t)(end - p));
		const char *sp1, *sp2, *tab, *path, *base;
		size_t d = 1;
		struct tree_node *n;
		if (!z)
			break;
		sp1 = memchr(p, ' ', (size_t)(z - p));
		sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(z - sp1 - 1)) : NULL;
		tab = sp2 ? memchr(sp2 + 1, '\t', (size_t)(z - sp2 - 1)) : NULL;
		if (!tab || (size_t)(sp1 - p) >= 8 || (size_t)(tab - sp2 - 1) > 64) {
			free(stack);
			return -1;
		}
		path = tab + 1;
		for (const char *q = path; q < z; q++)
			d += *q == '/';
		base = path;
		for (const char *q = path; q < z; q++)
			if (*q == '/')
				base = q + 1;
		while (depth > d)
			depth--;
		{
			char mode[8], oid[65];
			memcpy(mode, p, (size_t)(sp1 - p));
			mode[sp1 - p] = '\0';
			memcpy(oid, sp2 + 1, (size_t)(tab - sp2 - 1));
			oid[tab - sp2 - 1] = '\0';
			n = tree_node_new(base, (size_t)(z - base), mode, tree_node_type_of(sp1 + 1, (size_t)(sp2 - sp1 - 1)), oid);
		}
		tree_node_append(stack[depth - 1], n);
		if (n->type == TN_TREE) {
			ALLOC_GROW(stack, depth + 1, alloc);
			stack[depth++] = n;
		}
		p = z + 1;
	}
	free(stack);
	return 0;
}

