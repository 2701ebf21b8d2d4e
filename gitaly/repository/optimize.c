/*
 * OptimizeRepository, PruneUnreachableObjects and RemoveAll: the RPC edge of
 * housekeeping (the work itself is in housekeeping/). Behaviour, codes and
 * messages: docs/technical/housekeeping.md.
 */
#include "repository/repository.h"
#include "housekeeping/housekeeping.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "base/banned.h"

struct hk_call {
	struct gitaly_call op;
	struct hk_run *run;
	bool prune;
	/* RemoveAll */
	char *storage_path, *storage_name;
	uv_work_t work;
	int rc;
	struct strbuf msg;
};

static void hkc_release(struct gitaly_call *op)
{
	struct hk_call *c = container_of(op, struct hk_call, op);
	free(c->storage_path);
	free(c->storage_name);
	strbuf_release(&c->msg);
	free(c);
}

static void hkc_cancel(struct gitaly_call *op)
{
	hk_cancel(container_of(op, struct hk_call, op)->run);
}

static void hkc_done(void *arg, int rc, const char *msg)
{
	struct hk_call *c = arg;
	c->run = NULL;
	if (rc == 0) {
		if (c->prune) {
			Gitaly__PruneUnreachableObjectsResponse resp = GITALY__PRUNE_UNREACHABLE_OBJECTS_RESPONSE__INIT;
			reposvc_reply(&c->op, &resp);
		} else {
			Gitaly__OptimizeRepositoryResponse resp = GITALY__OPTIMIZE_REPOSITORY_RESPONSE__INIT;
			reposvc_reply(&c->op, &resp);
		}
		return;
	}
	if (rc == -ECANCELED || gitaly_call_gone(&c->op)) {
		reposvc_finish(&c->op, GRPC_CANCELLED, "context canceled");
		return;
	}
	reposvc_finish(&c->op, GRPC_INTERNAL, msg);
}

static void optimize_repository(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__OptimizeRepositoryRequest *req =
		msg_unpack(call, &gitaly__optimize_repository_request__descriptor, buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	enum hk_strategy strategy;
	struct hk_call *c;
	enum grpc_code code;
	int rc;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto out;
	}
	switch (req->strategy) {
	case GITALY__OPTIMIZE_REPOSITORY_REQUEST__STRATEGY__STRATEGY_UNSPECIFIED:
	case GITALY__OPTIMIZE_REPOSITORY_REQUEST__STRATEGY__STRATEGY_HEURISTICAL:
		strategy = HK_HEURISTICAL;
		break;
	case GITALY__OPTIMIZE_REPOSITORY_REQUEST__STRATEGY__STRATEGY_EAGER:
		strategy = HK_EAGER;
		break;
	default:
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "unsupported optimization strategy %d", (int)req->strategy);
		goto out;
	}
	c = xcalloc(1, sizeof(*c));
	strbuf_init(&c->msg, 0);
	reposvc_init(&c->op, g, call, hkc_release);
	c->op.cancel = hkc_cancel;
	gitaly_call_watch(&c->op);
	rc = hk_optimize(g, req->repository, path.buf, strategy, hkc_done, c, &c->run, &msg);
	if (rc == HK_BUSY) {
		/* another optimization of this repository runs: upstream answers success */
		Gitaly__OptimizeRepositoryResponse resp = GITALY__OPTIMIZE_REPOSITORY_RESPONSE__INIT;
		c->run = NULL;
		reposvc_reply(&c->op, &resp);
		goto out;
	}
	if (rc < 0) {
		c->run = NULL;
		reposvc_finish(&c->op, GRPC_INTERNAL, msg.buf);
	}
out:
	msg_free(req);
	strbuf_release(&path);
	strbuf_release(&msg);
}

static void prune_unreachable_objects(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__PruneUnreachableObjectsRequest *req =
		msg_unpack(call, &gitaly__prune_unreachable_objects_request__descriptor, buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	struct hk_call *c;
	enum grpc_code code;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto out;
	}
	/* pruning a pool could corrupt every member that still needs its objects */
	if (hk_is_pool_path(req->repository->relative_path)) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "pruning objects for object pool", NULL);
		goto out;
	}
	c = xcalloc(1, sizeof(*c));
	strbuf_init(&c->msg, 0);
	c->prune = true;
	reposvc_init(&c->op, g, call, hkc_release);
	c->op.cancel = hkc_cancel;
	gitaly_call_watch(&c->op);
	if (hk_prune_unreachable(g, req->repository, path.buf, hkc_done, c, &c->run, &msg) < 0) {
		c->run = NULL;
		reposvc_finish(&c->op, GRPC_INTERNAL, msg.buf);
	}
out:
	msg_free(req);
	strbuf_release(&path);
	strbuf_release(&msg);
}

/* --- RemoveAll: everything inside the storage goes, the storage directory stays --- */

static void remove_all_work(uv_work_t *w)
{
	struct hk_call *c = w->data;
	char **names = NULL;
	size_t nr = 0;
	int rc = reposvc_list_dir(c->storage_path, &names, &nr);

	if (rc == -ENOENT)
		return;
	if (rc < 0) {
		c->rc = rc;
		strbuf_addf(&c->msg, "remove all: open %s: %s", c->storage_path, strerror(-rc));
		return;
	}
	for (size_t i = 0; i < nr && !c->rc; i++) {
		struct strbuf p = STRBUF_INIT;
		strbuf_addf(&p, "%s/%s", c->storage_path, names[i]);
		/* a job still writing into the tree can refill a directory between the walk and its
		 * rmdir: walk it again, a few times */
		for (int tries = 0; (rc = fs_remove_tree(p.buf)) == -ENOTEMPTY && tries < 5; tries++)
			;
		if (rc < 0 && rc != -ENOENT) {
			c->rc = rc;
			strbuf_addf(&c->msg, "remove all: unlinkat %s: %s", p.buf, strerror(-rc));
		}
		strbuf_release(&p);
	}
	reposvc_free_names(names, nr);
}

static void remove_all_after(uv_work_t *w, int status)
{
	struct hk_call *c = w->data;
	(void)status;
	if (c->rc < 0) {
		reposvc_finish(&c->op, GRPC_INTERNAL, c->msg.buf);
		return;
	}
	log_msgf(LOG_INFO, "removed every repository of storage \"%s\"", c->storage_name);
	{
		Gitaly__RemoveAllResponse resp = GITALY__REMOVE_ALL_RESPONSE__INIT;
		reposvc_reply(&c->op, &resp);
	}
}

static void remove_all(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__RemoveAllRequest *req = msg_unpack(call, &gitaly__remove_all_request__descriptor, buf, len);
	struct strbuf msg = STRBUF_INIT;
	const struct gitaly_storage *s;
	struct hk_call *c;
	enum grpc_code code;

	if (!req)
		return;
	code = gitaly_storage(g, req->storage_name, &s, &msg);
	if (code != GRPC_OK) {
		grpc_call_finishf(call, code, "remove all: %s", msg.buf);
		goto out;
	}
	c = xcalloc(1, sizeof(*c));
	strbuf_init(&c->msg, 0);
	reposvc_init(&c->op, g, call, hkc_release);
	c->storage_path = xstrdup(s->path);
	c->storage_name = xstrdup(s->name);
	c->work.data = c;
	gitaly_call_watch(&c->op);
	if (uv_queue_work(g->loop, &c->work, remove_all_work, remove_all_after) < 0)
		reposvc_finish(&c->op, GRPC_INTERNAL, "remove all: cannot queue work");
out:
	msg_free(req);
	strbuf_release(&msg);
}

void reposvc_register_housekeeping(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.RepositoryService/OptimizeRepository", optimize_repository, g);
	gitaly_add_unary(s, "/gitaly.RepositoryService/PruneUnreachableObjects", prune_unreachable_objects, g);
	gitaly_add_unary(s, "/gitaly.RepositoryService/RemoveAll", remove_all, g);
}
