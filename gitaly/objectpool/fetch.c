/*
 * FetchIntoObjectPool: bring the pool up to date with its origin. Every
 * reference of the origin lands under refs/remotes/origin/ of the pool
 * (pruned when gone from the origin, in the same atomic, voted fetch), then
 * objects nothing references any more are kept alive under
 * refs/dangling/<oid>: a member may still need them. Last, as upstream, the
 * pool is optimized as OptimizeRepository would (housekeeping/, heuristics
 * for a pool; a pool being optimized already counts as done).
 */
#include "objectpool/pool.h"
#include "housekeeping/housekeeping.h"
#include "base/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "base/banned.h"

/* fsck prints one line per dangling object; beyond this we keep what we have */
#define DANGLING_OUTPUT_CAP (64 * 1024 * 1024)

static void fetched_end(struct objpool_call *c)
{
	Gitaly__FetchIntoObjectPoolResponse resp = GITALY__FETCH_INTO_OBJECT_POOL_RESPONSE__INIT;
	objpool_end(c, GRPC_OK, NULL, &resp);
}

static void pool_optimized(void *arg, int rc, const char *msg)
{
	struct objpool_call *c = arg;
	struct strbuf m = STRBUF_INIT;
	c->hk = NULL;
	if (rc == -ECANCELED || gitaly_call_gone(&c->op)) {
		objpool_end(c, GRPC_CANCELLED, "context canceled", NULL);
	} else if (rc < 0) {
		strbuf_addf(&m, "optimizing pool repo: %s", msg ? msg : "failed");
		objpool_end(c, GRPC_INTERNAL, m.buf, NULL);
	} else {
		fetched_end(c);
	}
	strbuf_release(&m);
}

static void optimize_pool(struct objpool_call *c)
{
	struct strbuf m = STRBUF_INIT, msg = STRBUF_INIT;
	int rc;

	if (gitaly_call_gone(&c->op)) {
		objpool_end(c, GRPC_CANCELLED, "context canceled", NULL);
		return;
	}
	rc = hk_optimize(c->op.g, c->pool_repo, c->pool_path, HK_HEURISTICAL, pool_optimized, c, &c->hk, &msg);
	if (rc == HK_BUSY) {
		fetched_end(c);
	} else if (rc < 0) {
		strbuf_addf(&m, "optimizing pool repo: %s", msg.buf);
		objpool_end(c, GRPC_INTERNAL, m.buf, NULL);
	}
	strbuf_release(&m);
	strbuf_release(&msg);
}

static void dangling_written(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct objpool_call *c = arg;
	struct strbuf m = STRBUF_INIT;
	c->cmd = NULL;
	if (status != 0) {
		strbuf_addstr(&m, "rescuing dangling objects: ");
		gitaly_describe_status(&m, status);
		strbuf_addf(&m, ", stderr: \"%.*s\"", (int)MIN(err->len, 4096), err->buf);
		objpool_end(c, GRPC_INTERNAL, m.buf, NULL);
	} else {
		optimize_pool(c);
	}
	strbuf_release(&m);
}

static void fsck_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	static const char *const flags[] = { "--stdin", NULL };
	struct objpool_call *c = arg;
	struct strbuf m = STRBUF_INIT;
	struct git_call gc = { 0 };
	const char *line, *end;

	c->cmd = NULL;
	if (gitaly_call_gone(&c->op)) {
		objpool_end(c, GRPC_CANCELLED, "context canceled", NULL);
		return;
	}
	if (status != 0) {
		strbuf_addstr(&m, "rescuing dangling objects: git fsck: ");
		gitaly_describe_status(&m, status);
		strbuf_addf(&m, ", stderr: \"%.*s\"", (int)MIN(err->len, 4096), err->buf);
		objpool_end(c, GRPC_INTERNAL, m.buf, NULL);
		strbuf_release(&m);
		return;
	}
	/* "dangling <type> <oid>" */
	strbuf_reset(&c->aux);
	for (line = out->buf; *line; line = *end ? end + 1 : end) {
		const char *sp1, *oid;
		size_t oid_len;
		end = strchrnul(line, '\n');
		if (strncmp(line, "dangling ", 9))
			continue;
		sp1 = memchr(line + 9, ' ', (size_t)(end - line - 9));
		if (!sp1)
			continue;
		oid = sp1 + 1;
		oid_len = (size_t)(end - oid);
		if (oid_len != 40 && oid_len != 64)
			continue;
		strbuf_addf(&c->aux, "create refs/dangling/%.*s %.*s\n", (int)oid_len, oid, (int)oid_len, oid);
	}
	if (!c->aux.len) {
		optimize_pool(c);
		return;
	}
	gc.git_dir = c->pool_path;
	gc.repo = c->pool_repo;
	gc.subcmd = "update-ref";
	gc.flags = flags;
	/* hooks disabled: keeping objects alive is local housekeeping, not voted (as upstream) */
	if (gitaly_git_capture(c->op.g, &gc, c->aux.buf, c->aux.len, 64 * 1024, dangling_written, c, &c->cmd,
			       &m) < 0)
		objpool_end(c, GRPC_INTERNAL, m.buf, NULL);
	strbuf_release(&m);
}

static void fetch_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	static const char *const flags[] = { "--connectivity-only", "--dangling", NULL };
	struct objpool_call *c = arg;
	struct strbuf m = STRBUF_INIT;
	struct git_call gc = { 0 };

	c->cmd = NULL;
	if (gitaly_call_gone(&c->op)) {
		objpool_end(c, GRPC_CANCELLED, "context canceled", NULL);
		return;
	}
	if (status != 0) {
		strbuf_addstr(&m, "fetch into object pool: ");
		gitaly_describe_status(&m, status);
		strbuf_addf(&m, ", stderr: \"%.*s\"", (int)MIN(err->len, 4096), err->buf);
		objpool_end(c, GRPC_INTERNAL, m.buf, NULL);
		strbuf_release(&m);
		return;
	}
	gc.git_dir = c->pool_path;
	gc.repo = c->pool_repo;
	gc.subcmd = "fsck";
	gc.flags = flags;
	if (gitaly_git_capture(c->op.g, &gc, NULL, 0, DANGLING_OUTPUT_CAP, fsck_done, c, &c->cmd, &m) < 0)
		objpool_end(c, GRPC_INTERNAL, m.buf, NULL);
	strbuf_release(&m);
}

void objpool_fetch(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	static const char *const flags[] = {
		"--quiet", "--atomic", "--no-tags", "--no-write-fetch-head", "--no-show-forced-updates", "--prune", NULL,
	};
	static const char *const config[] = { "advice.fetchShowForcedUpdates=false" };
	struct gitaly *g = data;
	Gitaly__FetchIntoObjectPoolRequest *req =
		msg_unpack(call, &gitaly__fetch_into_object_pool_request__descriptor, buf, len);
	struct strbuf path = STRBUF_INIT, pool = STRBUF_INIT, msg = STRBUF_INIT, m = STRBUF_INIT;
	struct git_call gc = { 0 };
	struct objpool_call *c;
	enum grpc_code code;
	const char *args[3];

	if (!req)
		return;
	c = objpool_call_new(g, call, req);
	if (!req->origin) {
		objpool_call_abort(c, GRPC_INVALID_ARGUMENT, "origin is empty");
		goto out;
	}
	if (!req->object_pool) {
		objpool_call_abort(c, GRPC_INVALID_ARGUMENT, "object pool is empty");
		goto out;
	}
	if (strcmp(req->origin->storage_name ? req->origin->storage_name : "",
		   req->object_pool->repository && req->object_pool->repository->storage_name ?
		   req->object_pool->repository->storage_name : "")) {
		objpool_call_abort(c, GRPC_INVALID_ARGUMENT, "origin has different storage than object pool");
		goto out;
	}
	code = objpool_locate(g, req->object_pool, 0, &pool, &msg);
	if (code != GRPC_OK) {
		strbuf_addf(&m, "object pool invalid: %s", msg.buf);
		objpool_call_abort(c, code == GRPC_FAILED_PRECONDITION ? GRPC_INVALID_ARGUMENT : code, m.buf);
		goto out;
	}
	code = gitaly_locate(g, req->origin, 0, &path, &msg);
	if (code != GRPC_OK) {
		strbuf_addf(&m, "computing origin repo's path: %s", msg.buf);
		objpool_call_abort(c, code, m.buf);
		goto out;
	}
	c->pool_path = strbuf_detach(&pool, NULL);
	c->repo_path = strbuf_detach(&path, NULL);
	c->pool_repo = req->object_pool->repository;
	args[0] = c->repo_path;
	args[1] = "+refs/*:refs/remotes/origin/*";
	args[2] = NULL;
	gc.git_dir = c->pool_path;
	gc.repo = c->pool_repo;
	gc.subcmd = "fetch";
	gc.flags = flags;
	gc.args = args;
	gc.config = config;
	gc.nr_config = ARRAY_SIZE(config);
	gc.hooks = HOOK_REFERENCE_TRANSACTION;   /* the pool's ref updates are voted on */
	gc.rpc = call;
	objpool_call_watch(c);
	if (gitaly_git_capture(g, &gc, NULL, 0, 64 * 1024, fetch_done, c, &c->cmd, &m) < 0)
		objpool_end(c, GRPC_INTERNAL, m.buf, NULL);
out:
	strbuf_release(&path);
	strbuf_release(&pool);
	strbuf_release(&msg);
	strbuf_release(&m);
}
