/*
 * h2_conn: one nghttp2 session on one io, with the write pump, deferred
 * flushing and keepalive pings that the gRPC server and client share.
 *
 * The owner (grpc server or client) creates the nghttp2 session with its own
 * callbacks and user_data, then hands it to h2_conn_init(). The owner's
 * on_frame_recv callback must call h2_conn_on_frame() so keepalive can see
 * PING acknowledgements.
 *
 * Writing: nghttp2 output is pulled with nghttp2_session_mem_send() into a
 * bounded buffer (H2_OUT_CAP) and written with at most one io write in flight.
 * When the peer does not read, the buffer stays full, nghttp2 stops pulling
 * from data providers, and callers see their send queues grow: that is where
 * backpressure reaches the application.
 *
 * Never call nghttp2_session_mem_send() from inside an nghttp2 callback: use
 * h2_conn_flush(), which defers until it is safe.
 */
#ifndef H2_CONN_H
#define H2_CONN_H

#include <nghttp2/nghttp2.h>
#include <stdint.h>
#include <uv.h>
#include "io.h"
#include "../base/strbuf.h"

#define H2_OUT_CAP (256 * 1024)

struct h2_conn;

struct h2_conn_hooks {
	/* After every flush round, outside nghttp2 (fire deferred app callbacks here). */
	void (*after_flush)(struct h2_conn *c);
	/* The connection is closed (io gone or failed). Free owner state here. */
	void (*on_closed)(struct h2_conn *c, int reason);
};

struct h2_conn {
	uv_loop_t *loop;
	struct io *io;
	nghttp2_session *session;
	const struct h2_conn_hooks *hooks;
	void *data;                    /* owner's */

	struct strbuf out;             /* produced by nghttp2, not yet written */
	struct strbuf inflight;        /* handed to io_write */
	int writing;
	int in_recv;                   /* inside nghttp2_session_mem_recv */
	int in_flush;
	int flush_again;
	int draining;                  /* close once everything queued is written */
	int closing;                   /* teardown started: no more reads or writes */
	int close_reason;
	int pending_handles;           /* handles still closing */

	uv_idle_t flush_idle;          /* keeps the loop from blocking while a flush is due */
	uv_prepare_t flush_prepare;    /* runs it before this round's poll when asked from idle or timers */
	int flush_scheduled;

	uv_timer_t ka_timer;
	uint64_t keepalive_ms, keepalive_timeout_ms;
	uint64_t last_read_ms;
	uint64_t ping_sent_ms;         /* 0: no ping outstanding */

	uint64_t bytes_in, bytes_out;
	uint64_t bytes_written;        /* of bytes_out, those whose write succeeded */
};

/*
 * Take ownership of `io` and `session` (freed at close). Starts reading.
 * keepalive_ms 0 disables pings.
 */
void h2_conn_init(struct h2_conn *c, uv_loop_t *loop, struct io *io, nghttp2_session *session,
		  const struct h2_conn_hooks *hooks, void *data,
		  uint64_t keepalive_ms, uint64_t keepalive_timeout_ms);
/* Schedule sending whatever nghttp2 has queued (safe from anywhere). */
void h2_conn_flush(struct h2_conn *c);
/* Feed received bytes (what io's on_read does; exposed for tests and fuzzing). */
void h2_conn_recv(struct h2_conn *c, const char *buf, ssize_t n);
/* Tear down now: io closed, on_closed fires once all handles are closed. */
void h2_conn_close(struct h2_conn *c, int reason);
/* Flush what is queued (e.g. a GOAWAY), then close. */
void h2_conn_close_after_flush(struct h2_conn *c);
void h2_conn_on_frame(struct h2_conn *c, const nghttp2_frame *frame);

#endif
