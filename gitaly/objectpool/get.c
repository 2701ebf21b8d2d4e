/*
 * ObjectPoolService: GetObjectPool, and the service's registration. A
 * repository belongs to a pool when the first line of objects/info/alternates
 * leads to a valid repository in the same storage whose path is a pool path
 * (Rails "@pools/xx/yy/<64 hex>.git" or praefect "@cluster/pools/xx/yy/<id>").
 * Anything else, a broken alternates file included, is "no pool".
 */
#include "objectpool/pool.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>
#include "base/banned.h"

static void get_object_pool(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__GetObjectPoolRequest *req = msg_unpack(call, &gitaly__get_object_pool_request__descriptor, buf, len);
	Gitaly__GetObjectPoolResponse resp = GITALY__GET_OBJECT_POOL_RESPONSE__INIT;
	Gitaly__ObjectPool pool = GITALY__OBJECT_POOL__INIT;
	Gitaly__Repository repo = GITALY__REPOSITORY__INIT;
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	enum grpc_code code;
	char *rel;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto out;
	}
	rel = objpool_of(g, req->repository, path.buf);
	if (rel) {
		repo.storage_name = req->repository->storage_name;
		repo.relative_path = rel;
		pool.repository = &repo;
		resp.object_pool = &pool;
	}
	msg_reply(call, &resp);
	free(rel);
out:
	strbuf_release(&path);
	strbuf_release(&msg);
	msg_free(req);
}

void gitaly_register_objectpool(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.ObjectPoolService/GetObjectPool", get_object_pool, g);
	gitaly_add_unary(s, "/gitaly.ObjectPoolService/CreateObjectPool", objpool_create, g);
	gitaly_add_unary(s, "/gitaly.ObjectPoolService/DeleteObjectPool", objpool_delete, g);
	gitaly_add_unary(s, "/gitaly.ObjectPoolService/LinkRepositoryToObjectPool", objpool_link, g);
	gitaly_add_unary(s, "/gitaly.ObjectPoolService/DisconnectGitAlternates", objpool_disconnect, g);
	gitaly_add_unary(s, "/gitaly.ObjectPoolService/FetchIntoObjectPool", objpool_fetch, g);
}
