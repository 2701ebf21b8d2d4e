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

/* PraefectInfoService SetReplicationFactor, MarkUnverified, RepositoryReplicas (info_admin.c). */
void info_admin_register(struct praefect *p);
/* Our PraefectAdminService, for the subcommands that upstream runs against its database (admin.c). */
void admin_register(struct praefect *p);

#endif
