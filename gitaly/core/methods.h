/*
 * Method paths, checked against the RPC registry (lib/rpc/registry.h, which
 * is generated from our .proto files) instead of trusted as literals.
 *
 *  - Handlers register with gitaly_add_unary() / gitaly_add_method(): a path
 *    the registry does not know, or a unary adapter on a client-streaming
 *    method, dies at start-up with the path quoted.
 *  - Calls this node makes to other processes (votes to praefect, reads from
 *    another node during replication) name their method through
 *    gitaly_out[]: one table, checked once at start-up by
 *    gitaly_register_services(), so a typo never waits for the first call.
 */
#ifndef GITALY_CORE_METHODS_H
#define GITALY_CORE_METHODS_H

#include "grpc/server.h"

struct gitaly;

void gitaly_add_unary(struct grpc_server *s, const char *path, grpc_unary_fn fn, void *data);
void gitaly_add_method(struct grpc_server *s, const char *path, grpc_start_fn start, void *data);

/* Outbound methods: gitaly_out[OUT_GET_CONFIG] is "/gitaly.RepositoryService/GetConfig". */
enum gitaly_out_method {
	OUT_VOTE_TRANSACTION,
	OUT_STOP_TRANSACTION,
	OUT_REPOSITORY_EXISTS,
	OUT_GET_SNAPSHOT,
	OUT_GET_CONFIG,
	OUT_GET_INFO_ATTRIBUTES,
	OUT_GET_OBJECT_POOL,
	OUT_FIND_DEFAULT_BRANCH_NAME,
	OUT_GET_CUSTOM_HOOKS,
	OUT_METHODS_NR,
};
extern const char *const gitaly_out[OUT_METHODS_NR];

/*
 * Register every service this node serves on `s`, then check gitaly_out[]
 * against the registry (die() on an unknown path).
 */
void gitaly_register_services(struct gitaly *g, struct grpc_server *s);

#endif
