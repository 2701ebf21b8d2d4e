/*
 * ObjectPoolService/DeleteObjectPool through praefect (docs/technical/object-pools.md): a
 * pool is a repository with its own records and replicas, removed the way
 * RemoveRepository removes one (records first, then every replica), except
 * that a pool without records is already deleted: OK, as upstream.
 */
#include "intercept/intercept.h"
#include "base/util.h"
#include "objectpool.pb-c.h"

#include <stdlib.h>

void intercept_delete_object_pool(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct praefect *p = data;
	Gitaly__DeleteObjectPoolRequest *r = gitaly__delete_object_pool_request__unpack(NULL, len, req);
	Gitaly__Repository *repo;

	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		return;
	}
	repo = r->object_pool ? r->object_pool->repository : NULL;
	if (!repo) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "no object pool repository", NULL);
		gitaly__delete_object_pool_request__free_unpacked(r, NULL);
		return;
	}
	/* only pools Rails names: praefect's own replica paths are no client's business */
	if (!repo->relative_path || !repos_is_rails_pool(repo->relative_path)) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "invalid object pool directory", NULL);
		gitaly__delete_object_pool_request__free_unpacked(r, NULL);
		return;
	}
	intercept_remove(p, call, &r->base, repo, p->calls.delete_object_pool, 0);
}
