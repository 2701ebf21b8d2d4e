/*
 * gRPC server on libuv + nghttp2.
 *
 * One server runs on one uv loop, with any number of listeners (Unix socket or
 * TCP) and any number of adopted byte streams (see grpc_server_adopt(): a yamux
 * stream, a TLS session, or a test transport). Handlers are event-driven: they
 * never block the loop.
 *
 * Call lifecycle (server side):
 *  1. Headers arrive. The server hook's on_call_start (auth, logging) may
 *     refuse the call. Then the method's start function runs; it installs
 *     callbacks with grpc_call_set_ops(). Unknown methods go to the fallback
 *     handler if one is set, else they get UNIMPLEMENTED.
 *  2. on_message fires for every whole request message (raw bytes: the
 *     handler decodes them, or forwards them untouched as a proxy does);
 *     on_half_close when the client is done sending.
 *  3. The handler sends with grpc_call_send() and ends with grpc_call_finish().
 *  4. on_close fires exactly once, last: after the status reached the wire, or
 *     when the call was cancelled (RST_STREAM from the client, deadline
 *     expired, connection lost, server shut down). The call is freed when
 *     on_close returns; handlers must drop their pointer to it there, and kill
 *     any child process they started for it.
 *
 * Backpressure: grpc_call_send() always queues (copying the bytes); a handler
 * that produces data from a pipe checks grpc_call_send_full() and stops reading
 * until on_writable fires. For requests, grpc_call_pause_recv() stops
 * delivering messages and withholds HTTP/2 WINDOW_UPDATEs, so the client is
 * slowed down and buffered input never exceeds the stream window plus one
 * message.
 */
#ifndef GRPC_SERVER_H
#define GRPC_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "status.h"
#include "metadata.h"

struct io;
struct grpc_server;
struct grpc_call;

struct grpc_server_opts {
	size_t max_recv_msg;              /* default 4 MiB, as gRPC */
	uint32_t max_concurrent_streams;  /* default 10000 */
	uint32_t stream_window;           /* per-stream receive window, default 1 MiB */
	uint64_t keepalive_ms;            /* ping an idle connection after this; default 5 min, 0 = never */
	uint64_t keepalive_timeout_ms;    /* close when the ping is not answered; default 20 s */
};
void grpc_server_opts_default(struct grpc_server_opts *o);

struct grpc_call_ops {
	void (*on_message)(struct grpc_call *call, const uint8_t *msg, size_t len);
	void (*on_half_close)(struct grpc_call *call);
	void (*on_writable)(struct grpc_call *call);
	void (*on_close)(struct grpc_call *call, enum grpc_code code);
};

typedef void (*grpc_start_fn)(struct grpc_call *call, void *data);
/* Unary: called once with the single request message, after half-close. */
typedef void (*grpc_unary_fn)(struct grpc_call *call, const uint8_t *req, size_t len, void *data);

/* Hooks around every call; used for authentication and request logging. */
struct grpc_server_hooks {
	/* Return GRPC_OK to let the call proceed, or a code (with *msg set) to refuse it. */
	enum grpc_code (*on_call_start)(struct grpc_call *call, struct strbuf *msg, void *data);
	/* After on_close: the final code and the call's duration. */
	void (*on_call_end)(struct grpc_call *call, enum grpc_code code, uint64_t duration_ns, void *data);
	void *data;
};

/*
 * Counting hooks for metrics (lib/metrics/grpc.c). on_start fires once for
 * every call that has a handler (registered or the fallback), before
 * authentication as in upstream's interceptor order, and on_end once for
 * each of those with the final code; on_msg_* for each of their whole
 * messages read or queued.
 */
struct grpc_server_stats {
	void (*on_start)(struct grpc_call *call, void *data);
	void (*on_msg_recv)(struct grpc_call *call, void *data);
	void (*on_msg_sent)(struct grpc_call *call, void *data);
	void (*on_end)(struct grpc_call *call, enum grpc_code code, uint64_t duration_ns, void *data);
	void *data;
};

struct grpc_server *grpc_server_new(uv_loop_t *loop, const struct grpc_server_opts *opts);
void grpc_server_set_stats(struct grpc_server *s, const struct grpc_server_stats *stats);
/*
 * Free a server that has no listeners or connections left: call it from the
 * shutdown callback, or on a server that never listened.
 */
void grpc_server_free(struct grpc_server *s);

int grpc_server_add_method(struct grpc_server *s, const char *path, grpc_start_fn start, void *data);
int grpc_server_add_unary(struct grpc_server *s, const char *path, grpc_unary_fn fn, void *data);
/* Handler for methods not registered (a proxy's "unknown service handler"). */
void grpc_server_set_fallback(struct grpc_server *s, grpc_start_fn start, void *data);
void grpc_server_set_hooks(struct grpc_server *s, const struct grpc_server_hooks *hooks);
/*
 * Log one line for a finished call: service, method, code, duration, the
 * call's tags and its correlation id (an on_call_end hook for servers).
 * Health checks are not logged: load balancers and praefect send them every
 * second.
 */
void grpc_log_call(struct grpc_call *call, enum grpc_code code, uint64_t duration_ns);
/* The same line with more fields, which `extra` adds (a node's limiter: limit.*). */
struct log_entry;
void grpc_log_call_extra(struct grpc_call *call, enum grpc_code code, uint64_t duration_ns,
			 void (*extra)(struct log_entry *e, void *arg), void *arg);
/* Register grpc.health.v1.Health (Check and Watch), always SERVING. */
/* The health service's methods (t/unit/test_rpc_registry.c checks them against the registry). */
#define GRPC_HEALTH_CHECK "/grpc.health.v1.Health/Check"
#define GRPC_HEALTH_WATCH "/grpc.health.v1.Health/Watch"
void grpc_server_add_health(struct grpc_server *s);

/*
 * Listen on "unix:/path", "unix:///path", "tcp://host:port", "host:port" or,
 * with grpc_server_set_tls(), "tls://host:port" (port 0 picks a free port). A stale Unix socket file is replaced. The
 * address actually bound is written to `bound` when it is not NULL, as
 * "unix:/path" or "host:port". Returns 0 or a negative errno.
 */
int grpc_server_listen(struct grpc_server *s, const char *addr, char *bound, size_t boundsz);
/* Listen on an already bound and listening socket (inherited across upgrades). */
int grpc_server_listen_fd(struct grpc_server *s, int fd);
/*
 * TLS (docs/technical/tls.md): the context "tls://host:port" listeners
 * serve with (set it before listening; the caller keeps it alive), and
 * listening with it on an inherited socket.
 */
struct ssl_ctx_st;
void grpc_server_set_tls(struct grpc_server *s, struct ssl_ctx_st *ctx);
int grpc_server_listen_fd_tls(struct grpc_server *s, int fd);
/* The file descriptors of all listeners, for handing to a new process. */
size_t grpc_server_listen_fds(struct grpc_server *s, int *fds, size_t max);
/*
 * Hand every accepted connection to `fn` instead of serving it directly
 * (connection multiplexing: sniff a handshake, then call grpc_server_adopt()
 * or hand the io elsewhere).
 */
void grpc_server_set_accept(struct grpc_server *s, void (*fn)(struct grpc_server *s, struct io *io, void *data),
			    void *data);
uv_loop_t *grpc_server_loop(const struct grpc_server *s);
/* Serve HTTP/2 gRPC on a connected byte stream; the server owns it from now on. */
int grpc_server_adopt(struct grpc_server *s, struct io *io);

/*
 * Stop accepting, send GOAWAY to every connection, let in-flight calls finish
 * for up to `grace_ms`, then cancel what remains and close. `done` runs once
 * everything is closed.
 */
void grpc_server_shutdown(struct grpc_server *s, uint64_t grace_ms,
			  void (*done)(struct grpc_server *s, void *arg), void *arg);
/* Stop accepting new connections but keep serving existing ones. */
void grpc_server_stop_listening(struct grpc_server *s);
size_t grpc_server_active_calls(const struct grpc_server *s);
/* 1 when a method of service `name` ("pkg.Service") is registered. */
int grpc_server_has_service(const struct grpc_server *s, const char *name);
/* Connections accepted or adopted so far. */
uint64_t grpc_server_connections_accepted(const struct grpc_server *s);

/* --- one call --- */

void grpc_call_set_ops(struct grpc_call *call, const struct grpc_call_ops *ops, void *user);
/* The ops installed last (a wrapper that starts the real handler late hands it the first message). */
const struct grpc_call_ops *grpc_call_ops(const struct grpc_call *call);
void *grpc_call_user(const struct grpc_call *call);
void grpc_call_set_user(struct grpc_call *call, void *user);
/* Extra close notification, independent of the ops (for unary handlers). */
void grpc_call_on_close(struct grpc_call *call, void (*cb)(struct grpc_call *, enum grpc_code, void *), void *arg);

const char *grpc_call_method(const struct grpc_call *call);   /* "/pkg.Service/Method" */
const struct grpc_metadata *grpc_call_metadata(const struct grpc_call *call);
/* Absolute deadline on the now_ms() clock, or 0 when the client set none. */
uint64_t grpc_call_deadline(const struct grpc_call *call);
uint64_t grpc_call_start_ns(const struct grpc_call *call);
struct grpc_server *grpc_call_server(const struct grpc_call *call);
/* The transport the call arrived on (a yamux session lets handlers call back). */
struct io *grpc_call_io(const struct grpc_call *call);
int grpc_call_is_closed(const struct grpc_call *call);
/* 1 when the call went to the fallback (unknown-method) handler. */
int grpc_call_is_fallback(const struct grpc_call *call);
/* Key/value pairs a handler attaches for the request log (not sent anywhere). */
void grpc_call_set_tag(struct grpc_call *call, const char *key, const char *value);
const struct grpc_metadata *grpc_call_tags(const struct grpc_call *call);

/* Response headers; optional: sent implicitly before the first message. */
int grpc_call_send_headers(struct grpc_call *call, const struct grpc_metadata *md);
/* Queue one message (copied). 0, or -EPIPE once the call is finished or closed. */
int grpc_call_send(struct grpc_call *call, const void *msg, size_t len);
size_t grpc_call_send_queued(const struct grpc_call *call);
int grpc_call_send_full(const struct grpc_call *call);
/*
 * End the call with a status (message may be NULL) and optional trailing
 * metadata. Queued messages are sent first. Calling it twice is a no-op.
 */
int grpc_call_finish(struct grpc_call *call, enum grpc_code code, const char *msg,
		     const struct grpc_metadata *trailers);
int grpc_call_finishf(struct grpc_call *call, enum grpc_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Unary convenience: send one message and finish with OK. */
int grpc_call_reply(struct grpc_call *call, const void *msg, size_t len);

void grpc_call_pause_recv(struct grpc_call *call);
void grpc_call_resume_recv(struct grpc_call *call);

#endif
