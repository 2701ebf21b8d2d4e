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
 *  - Methods named in [[concurrency]] are registered behind the node's
 *    limiter (core/limit.h; docs/technical/gitaly-node.md, "Concurrency
 *    limits"): a unary call asks for its slot with its request, a streaming
 *    one with its first message, which the handler then receives as usual.
 *    A call waits, or is refused with RESOURCE_EXHAUSTED, before its handler
 *    starts; its slot frees when the call closes. Calls without a target
 *    repository are never limited.
 */
#ifndef GITALY_CORE_METHODS_H
#define GITALY_CORE_METHODS_H

#include <uv.h>
#include "grpc/server.h"

struct gitaly;
struct gitaly_config;
struct gitaly_limits;
struct limit;

void gitaly_add_unary(struct grpc_server *s, const char *path, grpc_unary_fn fn, struct gitaly *data);
void gitaly_add_method(struct grpc_server *s, const char *path, grpc_start_fn start, struct gitaly *data);

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
	OUT_FIND_COMMIT,
	OUT_METHODS_NR,
};
extern const char *const gitaly_out[OUT_METHODS_NR];

/*
 * The node's limiters: one per [[concurrency]] rpc whose limit is above 0
 * (the last entry of an rpc wins), plus upstream's default of one call per
 * repository for ReplicateRepository when no entry names it.
 */
struct gitaly_limits *gitaly_limits_new(uv_loop_t *loop, const struct gitaly_config *cfg);
void gitaly_limits_free(struct gitaly_limits *ls);

/*
 * The server's on_call_end hook: give back the call's slot (or leave the
 * queue), then write the call's log line, with upstream's limit.* fields
 * (and `acquire_ms`) when the call went through a limiter.
 */
/* Call `fn` for every limiter with its method ("/pkg.Service/Method"); for their metrics. */
void gitaly_limits_each(struct gitaly_limits *ls, void (*fn)(struct limit *l, const char *method, void *arg),
			void *arg);
void gitaly_limits_call_end(struct gitaly_limits *ls, struct grpc_call *call, enum grpc_code code,
			    uint64_t duration_ns);

/*
 * Register every service this node serves on `s`, the methods `limits`
 * names behind their limiter, then check gitaly_out[] against the registry
 * (die() on an unknown path).
 */
void gitaly_register_services(struct gitaly *g, struct grpc_server *s);

#endif
