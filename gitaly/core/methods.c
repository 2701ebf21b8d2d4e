/* Every registration and outbound method path, checked against the generated RPC registry. */
#include "core/methods.h"
#include "core/gitaly.h"
#include "base/util.h"
#include "rpc/registry.h"

#include <string.h>

const char *const gitaly_out[OUT_METHODS_NR] = {
	[OUT_VOTE_TRANSACTION] = "/gitaly.RefTransaction/VoteTransaction",
	[OUT_STOP_TRANSACTION] = "/gitaly.RefTransaction/StopTransaction",
	[OUT_REPOSITORY_EXISTS] = "/gitaly.RepositoryService/RepositoryExists",
	[OUT_GET_SNAPSHOT] = "/gitaly.RepositoryService/GetSnapshot",
	[OUT_GET_CONFIG] = "/gitaly.RepositoryService/GetConfig",
	[OUT_GET_INFO_ATTRIBUTES] = "/gitaly.RepositoryService/GetInfoAttributes",
	[OUT_GET_OBJECT_POOL] = "/gitaly.ObjectPoolService/GetObjectPool",
	[OUT_FIND_DEFAULT_BRANCH_NAME] = "/gitaly.RefService/FindDefaultBranchName",
	[OUT_GET_CUSTOM_HOOKS] = "/gitaly.RepositoryService/GetCustomHooks",
};

static const struct rpc_method *known(const char *path, const char *what)
{
	const struct rpc_method *m = path ? rpc_lookup(path, strlen(path)) : NULL;
	if (!m)
		die("%s \"%s\": the RPC registry (proto/) has no such method", what, path ? path : "(null)");
	return m;
}

void gitaly_add_unary(struct grpc_server *s, const char *path, grpc_unary_fn fn, void *data)
{
	const struct rpc_method *m = known(path, "handler for");
	if (m->client_streaming)
		die("handler for \"%s\": a client-streaming method cannot take a unary handler", path);
	if (grpc_server_add_unary(s, path, fn, data) < 0)
		die("cannot register \"%s\"", path);
}

void gitaly_add_method(struct grpc_server *s, const char *path, grpc_start_fn start, void *data)
{
	known(path, "handler for");
	if (grpc_server_add_method(s, path, start, data) < 0)
		die("cannot register \"%s\"", path);
}

void gitaly_register_services(struct gitaly *g, struct grpc_server *s)
{
	for (size_t i = 0; i < OUT_METHODS_NR; i++)
		known(gitaly_out[i], "outbound call to");
	gitaly_register_server(g, s);
	gitaly_register_repository(g, s);
	gitaly_register_ssh(g, s);
	gitaly_register_smarthttp(g, s);
	gitaly_register_ref(g, s);
	gitaly_register_commit(g, s);
	gitaly_register_blob(g, s);
	gitaly_register_operations(g, s);
	gitaly_register_hook(g, s);
	gitaly_register_objectpool(g, s);
}
