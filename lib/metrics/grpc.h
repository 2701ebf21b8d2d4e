/*
 * The go-grpc-prometheus server series, counted on every call of a
 * grpc_server (docs/technical/metrics.md, "gRPC server"):
 * grpc_server_started_total, grpc_server_handled_total,
 * grpc_server_msg_received_total, grpc_server_msg_sent_total and, when
 * grpc_latency_buckets is not empty, grpc_server_handling_seconds.
 * grpc_type comes from the RPC registry; a call the fallback handler took
 * (praefect's proxy) is "bidi_stream", as upstream's unknown-service handler.
 */
#ifndef METRICS_GRPC_H
#define METRICS_GRPC_H

#include "metrics.h"

struct grpc_server;
struct metrics_grpc;

/*
 * Count `s`'s calls into `m`; `handling_histogram` 0 leaves
 * grpc_server_handling_seconds out. Free after grpc_server_free(s).
 */
struct metrics_grpc *metrics_grpc_attach(struct metrics *m, struct grpc_server *s, int handling_histogram);
void metrics_grpc_free(struct metrics_grpc *g);

#endif
