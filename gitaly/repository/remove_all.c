/*
 * RemoveAll: every repository of a storage goes, as GitLab's restore with
 * -remove-all-repositories asks (docs/technical/backups.md). Everything in
 * the storage directory is removed in the thread pool, except our own
 * +gitaly directory (temporary files of calls still running live there).
 */
#include "repository/repository.h"
#include "base/fs.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "base/banned.h"

struct remove_all {
	struct gitaly_call op;
	char *path;
	uv_work_t work;
	int err;
};

static void ra_release(struct gitaly_call *op)
{
	struct remove_all *x = container_of(op, struct remove_all, op);
	free(x->path);
	free(x);
}

static void ra_work(uv_work_t *w)
{
	struct remove_all *x = w->data;
	struct strbuf sub = STRBUF_INIT;
	char **names;
	size_t nr;
	int rc = reposvc_list_dir(x->path, &names, &nr);

	if (rc == -ENOENT)
		return;
	if (rc < 0) {
		x->err = rc;
		return;
	}
	for (size_t i = 0; i < nr && !x->err; i++) {
		if (!strcmp(names[i], "+gitaly"))
			continue;
		strbuf_reset(&sub);
		strbuf_addf(&sub, "%s/%s", x->path, names[i]);
		if ((rc = fs_remove_tree(sub.buf)) < 0 && rc != -ENOENT)
			x->err = rc;
	}
	reposvc_free_names(names, nr);
	strbuf_release(&sub);
}

static void ra_after(uv_work_t *w, int status)
{
	struct remove_all *x = w->data;
	if (x->err) {
		reposvc_finishf(&x->op, GRPC_INTERNAL, "remove all: %s", strerror(-x->err));
	} else {
		Gitaly__RemoveAllResponse resp = GITALY__REMOVE_ALL_RESPONSE__INIT;
		reposvc_reply(&x->op, &resp);
	}
}

void reposvc_remove_all(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__RemoveAllRequest *req = msg_unpack(call, &gitaly__remove_all_request__descriptor, buf, len);
	struct strbuf msg = STRBUF_INIT;
	const struct gitaly_storage *st;
	struct remove_all *x;

	if (!req)
		return;
	if (gitaly_storage(g, req->storage_name, &st, &msg) != GRPC_OK) {
		grpc_call_finishf(call, GRPC_INTERNAL, "remove all: %s", msg.buf);
		goto out;
	}
	x = xcalloc(1, sizeof(*x));
	reposvc_init(&x->op, g, call, ra_release);
	x->path = xstrdup(st->path);
	x->work.data = x;
	gitaly_call_watch(&x->op);
	if (uv_queue_work(g->loop, &x->work, ra_work, ra_after) < 0)
		reposvc_finish(&x->op, GRPC_INTERNAL, "remove all: cannot queue work");
out:
	strbuf_release(&msg);
	msg_free(req);
}
