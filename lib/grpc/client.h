/*
 * gRPC client channel on libuv + nghttp2.
 *
 * A channel is one HTTP/2 connection to one target ("unix:/path",
 * "unix:///path", "tcp://host:port", "host:port"), shared by every call on it
 * and re-established with exponential backoff when it breaks. Calls started
 * while the channel is connecting wait for it; calls started while it is in
 * backoff after a failure fail at once with UNAVAILABLE (gRPC's fail-fast),
 * unless the call asks to wait for ready.
 *
 * Call lifecycle (client side): grpc_channel_call() starts the call and sends
 * the headers; the caller sends messages with grpc_client_call_send() and
 * half-closes with grpc_client_call_close_send(); on_headers, on_message and
 * on_writable fire as data comes; on_close fires exactly once, last, with the
 * status from the trailers (or a locally made one: DEADLINE_EXCEEDED,
 * CANCELLED, UNAVAILABLE, RESOURCE_EXHAUSTED...). The call is freed when
 * on_close returns. Backpressure works as on the server (see server.h).
 */
#ifndef GRPC_CLIENT_H
#define GRPC_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "status.h"
#include "metadata.h"

struct io;
struct grpc_channel;
struct grpc_client_call;

enum grpc_channel_state {
	GRPC_CHANNEL_IDLE,
	GRPC_CHANNEL_CONNECTING,
	GRPC_CHANNEL_READY,
	GRPC_CHANNEL_TRANSIENT_FAILURE,
	GRPC_CHANNEL_SHUTDOWN,
};

struct grpc_channel_opts {
	size_t max_recv_msg;            /* default 4 MiB */
	uint32_t stream_window;         /* default 1 MiB */
	uint64_t connect_timeout_ms;    /* default 20 s */
	uint64_t backoff_initial_ms;    /* default 1 s */
	uint64_t backoff_max_ms;        /* default 120 s */
	uint64_t keepalive_ms;          /* default 20 s */
	uint64_t keepalive_timeout_ms;  /* default 20 s */
	/*
	 * Make the transport for a new connection. NULL: a plain TCP or Unix
	 * socket connection to the target. Set it to dial through TLS, a yamux
	 * session and the like. It calls `done` exactly once with a connected
	 * io or a negative error.
	 */
	int (*dial)(uv_loop_t *loop, const char *target, void *dial_data,
		    void (*done)(void *arg, struct io *io, int status), void *arg);
	void *dial_data;
	/* Told on every state change (health checking watches this). */
	void (*on_state)(struct grpc_channel *ch, enum grpc_channel_state st, void *data);
	void *state_data;
};
void grpc_channel_opts_default(struct grpc_channel_opts *o);

struct grpc_client_ops {
	void (*on_headers)(struct grpc_client_call *call, const struct grpc_metadata *md);
	void (*on_message)(struct grpc_client_call *call, const uint8_t *msg, size_t len);
	void (*on_writable)(struct grpc_client_call *call);
	void (*on_close)(struct grpc_client_call *call, enum grpc_code code,
			 const char *message, const struct grpc_metadata *trailers);
};

/* Returns 0, or -EINVAL for an address it cannot parse. Connects lazily. */
int grpc_channel_new(uv_loop_t *loop, const char *target, const struct grpc_channel_opts *opts,
		     struct grpc_channel **out);
/* Cancel every call (CANCELLED), close the connection, free when closed. */
void grpc_channel_close(struct grpc_channel *ch);
enum grpc_channel_state grpc_channel_state(const struct grpc_channel *ch);
const char *grpc_channel_target(const struct grpc_channel *ch);
/*
 * Drop the current connection (its calls end with UNAVAILABLE) and dial
 * again: for peers judged dead by health checks while TCP still looks fine.
 */
void grpc_channel_disconnect(struct grpc_channel *ch);
/* Start connecting now rather than on the first call. */
void grpc_channel_connect(struct grpc_channel *ch);
size_t grpc_channel_active_calls(const struct grpc_channel *ch);
/* now_ms() of the last byte received on the current connection, 0 without one. */
uint64_t grpc_channel_last_read_ms(const struct grpc_channel *ch);
/* Number of connections made so far (for tests of reconnection). */
uint64_t grpc_channel_connects(const struct grpc_channel *ch);

#define GRPC_CALL_WAIT_FOR_READY 0x1

/*
 * Start a call. `timeout_ms` 0 means no deadline. On success *out is set and
 * on_close will fire exactly once; on failure (-EINVAL, -ESHUTDOWN) nothing
 * fires.
 */
int grpc_channel_call(struct grpc_channel *ch, const char *path, const struct grpc_metadata *md,
		      uint64_t timeout_ms, unsigned flags, const struct grpc_client_ops *ops,
		      void *user, struct grpc_client_call **out);

void *grpc_client_call_user(const struct grpc_client_call *call);
/*
 * From on_close: 1 when no byte of the call can have reached the server:
 * it never got a stream (the connection was refused, or never there), or
 * its connection broke before any write holding its bytes succeeded.
 */
int grpc_client_call_unsent(const struct grpc_client_call *call);
/* From on_close: 1 when the call ended because its connection died (UNAVAILABLE), not by the server's status. */
int grpc_client_call_conn_lost(const struct grpc_client_call *call);
int grpc_client_call_send(struct grpc_client_call *call, const void *msg, size_t len);
int grpc_client_call_close_send(struct grpc_client_call *call);
size_t grpc_client_call_send_queued(const struct grpc_client_call *call);
int grpc_client_call_send_full(const struct grpc_client_call *call);
/* Cancel (RST_STREAM CANCEL); on_close fires with GRPC_CANCELLED. */
void grpc_client_call_cancel(struct grpc_client_call *call);
void grpc_client_call_pause_recv(struct grpc_client_call *call);
void grpc_client_call_resume_recv(struct grpc_client_call *call);

/*
 * Blocking unary call for command-line tools and tests: runs `loop` until the
 * call ends. The response message goes to `resp`, the status message to
 * `errmsg` (either may be NULL). Returns the gRPC code.
 */
enum grpc_code grpc_unary_sync(uv_loop_t *loop, struct grpc_channel *ch, const char *path,
			       const struct grpc_metadata *md, const void *req, size_t len,
			       uint64_t timeout_ms, struct strbuf *resp, struct strbuf *errmsg);

#endif
