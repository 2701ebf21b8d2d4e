/*
 * DeleteObjectPool: remove a pool. A pool that is not there (or not a valid
 * repository) is already deleted: OK, as upstream. The directory is first
 * moved into the storage's temporary directory, then removed in the thread
 * pool, so a process killed halfway leaves no half pool in place (the
 * start-up cleanup removes what is left in +gitaly/tmp).
 */
#include "objectpool/pool.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "base/banned.h"

static void staged_remove(uv_work_t *w)
{
	struct objpool_call *c = w->data;
	if (fs_remove_tree(c->aux.buf) < 0)
		log_msgf(LOG_ERROR, "failed removing object pool from temporary directory \"%s\"", c->aux.buf);
}

static void staged_removed(uv_work_t *w, int status)
{
	struct objpool_call *c = w->data;
	Gitaly__DeleteObjectPoolResponse resp = GITALY__DELETE_OBJECT_POOL_RESPONSE__INIT;
	objpool_end(c, GRPC_OK, NULL, &resp);
}

void objpool_delete(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__DeleteObjectPoolRequest *req = msg_unpack(call, &gitaly__delete_object_pool_request__descriptor, buf, len);
	Gitaly__DeleteObjectPoolResponse resp = GITALY__DELETE_OBJECT_POOL_RESPONSE__INIT;
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT, tmp = STRBUF_INIT, dest = STRBUF_INIT;
	const struct gitaly_storage *st;
	struct objpool_call *c;
	enum grpc_code code;
	char *slash;

	if (!req)
		return;
	c = objpool_call_new(g, call, req);
	code = objpool_locate(g, req->object_pool, OBJPOOL_MISSING_OK, &path, &msg);
	if (code == GRPC_NOT_FOUND) {
		objpool_call_watch(c);
		objpool_end(c, GRPC_OK, NULL, &resp);
		goto out;
	}
	if (code == GRPC_OK && gitaly_storage(g, req->object_pool->repository->storage_name, &st, &msg) == GRPC_OK &&
	    gitaly_tmp_dir(g, st, &tmp) < 0) {
		strbuf_addf(&msg, "temporary directory: %s", strerror(errno));
		code = GRPC_INTERNAL;
	}
	if (code != GRPC_OK) {
		objpool_call_abort(c, code, msg.buf);
		goto out;
	}
	strbuf_addstr(&tmp, "/pool+removed-XXXXXX");
	if (!mkdtemp(tmp.buf)) {
		strbuf_addf(&msg, "remove all: %s", strerror(errno));
		objpool_call_abort(c, GRPC_INTERNAL, msg.buf);
		goto out;
	}
	strbuf_addf(&dest, "%s/pool", tmp.buf);
	if (rename(path.buf, dest.buf) < 0) {
		strbuf_addf(&msg, "remove all: %s", strerror(errno));
		fs_remove_tree(tmp.buf);
		objpool_call_abort(c, GRPC_INTERNAL, msg.buf);
		goto out;
	}
	slash = strrchr(path.buf, '/');
	if (slash && slash != path.buf) {
		*slash = '\0';
		fs_fsync_dir(path.buf);
	}
	strbuf_add(&c->aux, tmp.buf, tmp.len);
	objpool_call_watch(c);
	if (uv_queue_work(g->loop, &c->work, staged_remove, staged_removed) < 0) {
		staged_remove(&c->work);
		objpool_end(c, GRPC_OK, NULL, &resp);
	}
out:
	strbuf_release(&path);
	strbuf_release(&msg);
	strbuf_release(&tmp);
	strbuf_release(&dest);
}
