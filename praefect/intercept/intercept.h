/*
 * What the files of intercept/ share: the calls praefect answers itself
 * (docs/technical/praefect-routing.md, docs/technical/praefect-cli.md).
 * praefect.c registers intercept.c's and info.c's; info_register() registers
 * the rest.
 */
#ifndef PRAEFECT_INTERCEPT_H
#define PRAEFECT_INTERCEPT_H

#include <protobuf-c/protobuf-c.h>

#include "praefect.h"
#include "shared.pb-c.h"

/* Pack `msg` and answer the call with it (status OK). */
int intercept_reply(struct grpc_call *call, const ProtobufCMessage *msg);

/*
 * A call answered later, from a store or node callback: `call` is NULL once
 * the client went away. intercept_pending_start() watches the call's close;
 * intercept_pending_take() detaches and returns the call if the client still
 * waits (the caller answers it next), else NULL.
 */
struct intercept_pending {
	struct praefect *p;
	struct grpc_call *call;
};

void intercept_pending_start(struct intercept_pending *pc, struct praefect *p, struct grpc_call *call);
struct grpc_call *intercept_pending_take(struct intercept_pending *pc);

/*
 * Delete the records of `repo` (of the virtual storage it names), then the
 * replica on every storage that had one by calling `m` there with `req`
 * rewritten to that storage and the replica path (10 s; a failure queues a
 * `delete` job). A repository without records answers NOT_FOUND
 * "repository does not exist" when `error_on_not_found`, else OK. Takes
 * `req` (`repo` points into it) and answers `call`.
 */
void intercept_remove(struct praefect *p, struct grpc_call *call, ProtobufCMessage *req, Gitaly__Repository *repo,
		      const struct rpc_method *m, int error_on_not_found);
/* ObjectPoolService/DeleteObjectPool (pools.c). */
void intercept_delete_object_pool(struct grpc_call *call, const uint8_t *req, size_t len, void *data);

/* PraefectInfoService SetReplicationFactor, MarkUnverified, RepositoryReplicas (info_admin.c). */
void info_admin_register(struct praefect *p);
/* Our PraefectAdminService, for the subcommands that upstream runs against its database (admin.c). */
void admin_register(struct praefect *p);
/* Its ReplicationStatus (repl_status.c). */
void rstatus_register(struct praefect *p);

#endif
