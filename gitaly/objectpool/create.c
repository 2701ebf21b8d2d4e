/*
 * CreateObjectPool: a new pool cloned (--local: hard links) from its origin
 * through the shared creation routine, so it appears whole or not at all.
 * Never voted: praefect creates a pool on every node without a transaction.
 */
#include "objectpool/pool.h"
#include "base/log.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>
#include "base/banned.h"

static void remove_origin_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct objpool_call *c = arg;
	struct strbuf m = STRBUF_INIT;

	c->cmd = NULL;
	if (status != 0) {
		strbuf_addstr(&m, "removing origin remote config: ");
		gitaly_describe_status(&m, status);
		reposvc_create_seeded(c->rc, GRPC_INTERNAL, m.buf);
	} else {
		reposvc_create_seeded(c->rc, GRPC_OK, NULL);
	}
	strbuf_release(&m);
}

static void clone_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct objpool_call *c = arg;
	static const char *const flags[] = { "--remove-section", NULL };
	static const char *const args[] = { "remote.origin", NULL };
	struct git_call gc = { 0 };
	struct strbuf m = STRBUF_INIT;

	c->cmd = NULL;
	if (gitaly_call_gone(&c->op)) {
		reposvc_create_seeded(c->rc, GRPC_CANCELLED, "context canceled");
		return;
	}
	if (status != 0) {
		strbuf_addstr(&m, "cloning to pool: ");
		gitaly_describe_status(&m, status);
		strbuf_addf(&m, ", stderr: \"%.*s\"", (int)MIN(err->len, 4096), err->buf);
		reposvc_create_seeded(c->rc, GRPC_INTERNAL, m.buf);
		strbuf_release(&m);
		return;
	}
	gc.git_dir = c->tmp_path;
	gc.repo = c->tmp_repo;
	gc.subcmd = "config";
	gc.flags = flags;
	gc.args = args;
	if (gitaly_git_capture(c->op.g, &gc, NULL, 0, 64 * 1024, remove_origin_done, c, &c->cmd, &m) < 0)
		reposvc_create_seeded(c->rc, GRPC_INTERNAL, m.buf);
	strbuf_release(&m);
}

static void pool_seed(struct reposvc_create *rc, const char *tmp_path, const Gitaly__Repository *tmp_repo)
{
	struct objpool_call *c = reposvc_create_data(rc);
	Gitaly__CreateObjectPoolRequest *req = c->req;
	static const char *const flags[] = { "--quiet", "--bare", "--local", NULL };
	struct strbuf path = STRBUF_INIT, m = STRBUF_INIT, err = STRBUF_INIT;
	struct git_call gc = { 0 };
	const char *args[3];
	enum grpc_code code;

	c->rc = rc;
	c->tmp_path = xstrdup(tmp_path);
	c->tmp_repo = tmp_repo;
	code = gitaly_locate(c->op.g, req->origin, 0, &path, &err);
	if (code != GRPC_OK) {
		strbuf_addf(&m, "getting source repository path: %s", err.buf);
		reposvc_create_seeded(rc, code, m.buf);
		goto out;
	}
	args[0] = path.buf;
	args[1] = tmp_path;
	args[2] = NULL;
	gc.subcmd = "clone";
	gc.flags = flags;
	gc.args = args;
	/* hooks disabled: nothing to vote on, and nobody sees the pool yet */
	if (gitaly_git_capture(c->op.g, &gc, NULL, 0, 64 * 1024, clone_done, c, &c->cmd, &m) < 0)
		reposvc_create_seeded(rc, GRPC_INTERNAL, m.buf);
out:
	strbuf_release(&path);
	strbuf_release(&m);
	strbuf_release(&err);
}

static void pool_created(struct reposvc_create *rc, enum grpc_code code, const char *msg)
{
	struct objpool_call *c = reposvc_create_data(rc);
	Gitaly__CreateObjectPoolResponse resp = GITALY__CREATE_OBJECT_POOL_RESPONSE__INIT;
	struct strbuf m = STRBUF_INIT;

	c->rc = NULL;
	if (code == GRPC_ALREADY_EXISTS)
		code = GRPC_FAILED_PRECONDITION;
	if (code != GRPC_OK)
		strbuf_addf(&m, "creating object pool: %s", msg);
	objpool_end(c, code, m.buf, &resp);
	strbuf_release(&m);
}

void objpool_create(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__CreateObjectPoolRequest *req = msg_unpack(call, &gitaly__create_object_pool_request__descriptor, buf, len);
	struct reposvc_create_opts opts = { 0 };
	struct strbuf msg = STRBUF_INIT, m = STRBUF_INIT;
	struct objpool_call *c;
	enum grpc_code code;

	if (!req)
		return;
	c = objpool_call_new(g, call, req);
	if (!req->origin) {
		objpool_call_abort(c, GRPC_INVALID_ARGUMENT, "no origin repository");
		goto out;
	}
	if (!req->object_pool || !req->object_pool->repository) {
		objpool_call_abort(c, GRPC_INVALID_ARGUMENT, "no object pool repository");
		goto out;
	}
	if (!objpool_is_pool_path(req->object_pool->repository->relative_path)) {
		objpool_call_abort(c, GRPC_INVALID_ARGUMENT, "invalid object pool directory");
		goto out;
	}
	opts.skip_init = 1;
	opts.seed = pool_seed;
	opts.done = pool_created;
	opts.data = c;
	code = reposvc_create_start(&c->op, req->object_pool->repository, &opts, &c->rc, &msg);
	if (code != GRPC_OK) {
		strbuf_addf(&m, "creating object pool: %s", msg.buf);
		objpool_call_abort(c, code == GRPC_ALREADY_EXISTS ? GRPC_FAILED_PRECONDITION : code, m.buf);
		goto out;
	}
	objpool_call_watch(c);
out:
	strbuf_release(&msg);
	strbuf_release(&m);
}
