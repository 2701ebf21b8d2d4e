/*
 * The backchannel (docs/technical/yamux.md): a client that wants the server to
 * call it back writes the 11 ASCII bytes "backchannel" after connecting and
 * runs a yamux client session on the socket. Its gRPC calls go over the first
 * stream it opens; the server opens streams of its own to call services the
 * client hosts (praefect's RefTransaction, for votes).
 *
 * Server side (gitaly): bc_server_new() sniffs every accepted connection:
 * "backchannel" starts a yamux server session whose first client stream is
 * served as ordinary gRPC, anything else is served as plain HTTP/2 gRPC with
 * the sniffed bytes replayed. Every multiplexed connection gets an id
 * (1, 2, ...); a handler finds the id of the connection its call arrived on
 * with bc_call_id() and calls back over it with bc_channel().
 *
 * Client side (praefect): bc_dial() is a grpc_channel_opts.dial function
 * that makes such a connection and serves the streams the peer opens on
 * `serve` (a grpc_server without listeners).
 */
#ifndef BACKCHANNEL_BACKCHANNEL_H
#define BACKCHANNEL_BACKCHANNEL_H

#include <stdint.h>
#include <uv.h>
#include "grpc/server.h"
#include "grpc/client.h"

#define BACKCHANNEL_MAGIC "backchannel"
#define BACKCHANNEL_MAGIC_LEN 11

/*
 * Sidechannels (docs/technical/sidechannel.md): the server opens a stream
 * towards the client and writes this magic and the call's id as 8 big-endian
 * bytes; the client answers "ok".
 */
#define SIDECHANNEL_MAGIC "sidechannel"
#define SIDECHANNEL_MAGIC_LEN 11
#define SIDECHANNEL_HELLO_LEN (SIDECHANNEL_MAGIC_LEN + 8)
#define SIDECHANNEL_METADATA_KEY "gitaly-sidechannel-id"
/*
 * The id a call carries in SIDECHANNEL_METADATA_KEY, parsed as upstream's
 * strconv.ParseInt(s, 10, 64): junk reads as 0, an out-of-range number as
 * the nearest limit.
 */
int64_t bc_sidechannel_id(const char *s);
/* Write the magic and `id` into `out`. */
void bc_sidechannel_hello(char out[SIDECHANNEL_HELLO_LEN], int64_t id);

struct bc_server;

/* Sniff connections accepted by `srv`; `max_window` 0 means 16 MiB (gitaly's setting). */
struct bc_server *bc_server_new(struct grpc_server *srv, uint32_t max_window);
void bc_server_free(struct bc_server *b);
/* The backchannel id of the connection `call` arrived on; 0 for a plain connection. */
uint64_t bc_call_id(struct bc_server *b, struct grpc_call *call);
/*
 * A client channel to the peer of backchannel `id` (made on first use, closed
 * with the connection). NULL when the connection is gone or unknown.
 */
struct grpc_channel *bc_channel(struct bc_server *b, uint64_t id);
/* Multiplexed connections open right now. */
size_t bc_server_sessions(const struct bc_server *b);

struct bc_client {
	uv_loop_t *loop;
	struct grpc_server *serve;   /* serves the streams the peer opens */
	uint32_t max_window;         /* 0: 256 KiB (praefect's default) */
	/*
	 * Optional: streams the peer opens go here instead of `serve` (the
	 * callee owns them), e.g. a sidechannel client (docs/technical/sidechannel.md).
	 */
	void (*on_stream)(struct io *stream, void *data);
	void *stream_data;
};

/* grpc_channel_opts.dial: `target` is the node address, `dial_data` a struct bc_client. */
int bc_dial(uv_loop_t *loop, const char *target, void *dial_data,
	    void (*done)(void *arg, struct io *io, int status), void *arg);

#endif
