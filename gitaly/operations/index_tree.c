/* Trees edited through a temporary index in the quarantine (index_tree.h). */
#include "operations/index_tree.h"
#include "base/util.h"

#include <string.h>
#include <unistd.h>

enum { IT_READ, IT_UPDATE, IT_WRITE };

void index_tree_init(struct index_tree *it)
{
	memset(it, 0, sizeof(*it));
	strbuf_init(&it->index, 0);
	strbuf_init(&it->info, 0);
	strbuf_init(&it->base, 0);
	strbuf_init(&it->tree, 0);
}

void index_tree_release(struct index_tree *it)
{
	if (it->index.len) {
		unlink(it->index.buf);
		strbuf_addstr(&it->index, ".lock");
		unlink(it->index.buf);
	}
	strbuf_release(&it->index);
	strbuf_release(&it->info);
	strbuf_release(&it->base);
	strbuf_release(&it->tree);
}

void index_tree_set(struct index_tree *it, const char *mode, const char *oid, const char *path, size_t pathlen)
{
	/* update-index removes a path given mode 0 */
	strbuf_addf(&it->info, "%s %s\t", mode, oid);
	strbuf_add(&it->info, path, pathlen);
	strbuf_addch(&it->info, '\0');
}

static void it_git(struct op *op, struct index_tree *it, int step, const char *subcmd, const char *const *flags,
		   const char *const *args, const char *in, size_t inlen)
{
	struct git_call gc;
	struct strbuf env = STRBUF_INIT;
	const char *envv[] = { NULL, NULL };
	strbuf_addf(&env, "GIT_INDEX_FILE=%s", it->index.buf);
	envv[0] = env.buf;
	it->step = step;
	op_git_call(op, &gc, subcmd);
	gc.flags = flags;
	gc.args = args;
	gc.env = envv;
	op_git(op, &gc, in, inlen, 4096, it->fn);
	strbuf_release(&env);
}

void index_tree_run(struct op *op, struct index_tree *it, op_git_fn fn)
{
	const char *args[] = { it->base.buf, NULL };
	it->fn = fn;
	strbuf_reset(&it->index);
	/* a name no object or pack file has; removed before the quarantine migrates */
	strbuf_addf(&it->index, "%s/tmp_index_gitaly", op->qdir.buf);
	it_git(op, it, IT_READ, "read-tree", NULL, args, NULL, 0);
}

int index_tree_step(struct op *op, struct index_tree *it, int status, struct strbuf *out, struct strbuf *err)
{
	static const char *const update_flags[] = { "-z", "--index-info", NULL };
	if (status != 0) {
		op_chomp(err);
		op_fail(op, GRPC_INTERNAL, "writing tree: %s: %s",
			it->step == IT_READ ? "read-tree" : it->step == IT_UPDATE ? "update-index" : "write-tree",
			err->len ? err->buf : "failed");
		return -1;
	}
	switch (it->step) {
	case IT_READ:
		it_git(op, it, IT_UPDATE, "update-index", update_flags, NULL, it->info.buf, it->info.len);
		return 0;
	case IT_UPDATE:
		it_git(op, it, IT_WRITE, "write-tree", NULL, NULL, NULL, 0);
		return 0;
	default:
		op_chomp(out);
		strbuf_reset(&it->tree);
		strbuf_add(&it->tree, out->buf, out->len);
		unlink(it->index.buf);
		strbuf_reset(&it->index);
		return 1;
	}
}
