/*
 * Sidechannels (docs/technical/sidechannel.md): SSHUploadPackWithSidechannel
 * and PostUploadPackWithSidechannel carry git's protocol on a yamux stream
 * the node opens back to the client, beside the unary gRPC call.
 *
 * The parsers of client bytes are in sidechannel_parse.h.
 */
#ifndef GITALY_TRANSPORT_SIDECHANNEL_H
#define GITALY_TRANSPORT_SIDECHANNEL_H

#include <stddef.h>
#include <stdint.h>
#include "grpc/server.h"

#include "transport/sidechannel_parse.h"

struct gitaly;
void sidechannel_ssh_upload_pack(struct grpc_call *call, const uint8_t *buf, size_t len, void *data);
void sidechannel_post_upload_pack(struct grpc_call *call, const uint8_t *buf, size_t len, void *data);

#endif
