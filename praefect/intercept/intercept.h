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

/* PraefectInfoService SetReplicationFactor, MarkUnverified, RepositoryReplicas (info_admin.c). */
void info_admin_register(struct praefect *p);
/* Our PraefectAdminService, for the subcommands that upstream runs against its database (admin.c). */
void admin_register(struct praefect *p);

#endif
