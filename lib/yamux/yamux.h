/*
 * yamux: stream multiplexing over one byte stream, wire compatible with
 * hashicorp/yamux protocol version 0 (what Gitaly's "backchannel" runs).
 *
 * A session takes ownership of a transport `struct io` (a socket, a TLS
 * session) and carries any number of streams, each of which is itself a
 * `struct io` (see h2/io.h), so HTTP/2 and gRPC run over a stream unchanged:
 * grpc_server_adopt(server, stream) on the accepting side, and
 * grpc_channel_opts.dial = yamux_dial on the opening side.
 *
 * Wire format: every frame starts with a 12-byte big-endian header
 *   version(1) = 0 | type(1) | flags(2) | stream id(4) | length(4)
 * Data frames carry `length` payload bytes; for window updates `length` is
 * the window delta, for pings an opaque value echoed back, for go-away an
 * error code. The client side opens odd stream ids, the server even ones;
 * id 0 is the session (pings, go-away). See docs/technical/yamux.md.
 *
 * Threading and callbacks: everything runs on the session's loop. Like
 * libuv, no callback ever fires from inside the call that caused it (open,
 * write, close, ping...). Peer-driven callbacks (on_accept, a stream's
 * on_read) fire from the loop while the session is reading its transport.
 *
 * Streams as io (the contract of h2/io.h, plus):
 *  - Flow control: a stream buffers at most its receive window (256 KiB
 *    initially, grown to opts.max_stream_window). Window updates are sent
 *    as the owner consumes data, i.e. once on_read has been called with it;
 *    while the owner has stopped reading, nothing is consumed and the peer
 *    stalls. Data that arrives before read_start waits in that buffer.
 *  - Writes never copy large buffers: the buffer passed to write() must
 *    stay valid until the write callback, which fires once all of it has
 *    been handed to the transport (framed payloads over 4 KiB: written by
 *    it) with status 0, or the stream failed (negative). While the peer's
 *    window is exhausted writes just wait, so an owner that waits for its
 *    callbacks (as h2_conn does) is slowed down and memory stays bounded.
 *  - close() is graceful: queued writes are still sent, then FIN. on_close
 *    fires once the FIN is on its way (or the stream was reset or the
 *    session died); the stream's protocol state then lingers, without the
 *    owner, until the peer's FIN (data still arriving is discarded), for at
 *    most opts.stream_close_timeout_ms, after which the stream is reset.
 *  - The peer's FIN is end of file: on_read(UV_EOF) after the buffered data.
 *    A reset (RST from the peer) is on_read(UV_ECONNRESET) at once, the
 *    buffered data dropped; pending and later writes fail with
 *    UV_ECONNRESET.
 *  - When the session dies, a stream that has not had the peer's FIN
 *    delivers what it buffered and then UV_ECONNRESET; its pending writes
 *    fail with UV_ECANCELED. Its owner then closes it (an h2_conn does so on
 *    the read error), and on_close fires as usual. The session itself is
 *    freed only once every stream has been closed by its owner.
 *
 * Protocol errors: we never reuse a stream id; a peer breaking the protocol
 * (bad version or type, data beyond the window, a frame for a stream never
 * opened, a SYN for a stream still open or for an id of our parity) gets a
 * go-away with the protocol error code and the session closes. Frames for streams that existed but are finished are
 * ignored, as hashicorp/yamux does (they cross our FIN or RST on the wire).
 */
#ifndef YAMUX_YAMUX_H
#define YAMUX_YAMUX_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct io;
struct yamux_session;

/* --- wire constants and the frame header --- */

#define YAMUX_VERSION 0
#define YAMUX_HDR_LEN 12
/* Every stream starts with this window in both directions (the protocol's). */
#define YAMUX_INITIAL_WINDOW (256 * 1024)
/* Largest max_stream_window we accept: it bounds one stream's buffer. */
#define YAMUX_MAX_WINDOW (16 * 1024 * 1024)

enum yamux_type {
	YAMUX_DATA = 0,
	YAMUX_WINDOW_UPDATE = 1,
	YAMUX_PING = 2,
	YAMUX_GO_AWAY = 3,
};

enum yamux_flag {
	YAMUX_SYN = 0x1,
	YAMUX_ACK = 0x2,
	YAMUX_FIN = 0x4,
	YAMUX_RST = 0x8,
};

enum yamux_goaway {
	YAMUX_GOAWAY_NORMAL = 0,
	YAMUX_GOAWAY_PROTOCOL = 1,
	YAMUX_GOAWAY_INTERNAL = 2,
};

struct yamux_hdr {
	uint8_t version;
	uint8_t type;
	uint16_t flags;
	uint32_t stream_id;
	uint32_t length;
};

/* Big-endian encoding of the 12-byte header (no validation). */
void yamux_hdr_encode(uint8_t out[YAMUX_HDR_LEN], const struct yamux_hdr *h);
void yamux_hdr_decode(const uint8_t in[YAMUX_HDR_LEN], struct yamux_hdr *h);

/* --- sessions --- */

struct yamux_opts {
	/*
	 * Receive window each stream grows to: 256 KiB (the default) up to
	 * YAMUX_MAX_WINDOW; values outside are clamped. Gitaly uses 16 MiB on the
	 * node side, 256 KiB on Praefect's.
	 */
	uint32_t max_stream_window;
	/*
	 * Streams we opened whose SYN the peer has not acknowledged yet, at
	 * most (default 256, Gitaly's node uses 1). Streams opened beyond that
	 * wait, data included, before their SYN is sent. Peer-opened streams are
	 * handed to on_accept at once, so there is no accept queue to bound.
	 */
	uint32_t accept_backlog;
	/* Live streams at most, either side (default 4096); beyond, SYNs get RST. */
	uint32_t max_streams;
	/* Ping the peer this often; 0 (the default) disables keepalive. */
	uint64_t keepalive_ms;
	/* With keepalive, close the session when a ping is unanswered this long (default 10 s). */
	uint64_t keepalive_timeout_ms;
	/* A closed stream waits this long for the peer's FIN before RST (default 5 min). */
	uint64_t stream_close_timeout_ms;
	/*
	 * Bytes already read from the transport that belong to the session (a
	 * handshake read ahead): copied, and parsed before the transport is read.
	 */
	const void *preread;
	size_t preread_len;

	/*
	 * A stream the peer opened, already acknowledged. The callee owns
	 * `stream` (sets its callbacks, starts reading, closes it). NULL: every
	 * peer-opened stream is refused with RST.
	 */
	void (*on_accept)(struct yamux_session *s, struct io *stream, void *data);
	/*
	 * Fires once, when the transport has been closed: `reason` 0 after
	 * yamux_session_close(), else negative: the transport's read or write
	 * error (UV_EOF when the peer hung up), -EPROTO when either side broke
	 * the protocol, -ECONNABORTED for a go-away with another error code,
	 * -ETIMEDOUT for a failed keepalive. Do not use the session afterwards;
	 * streams not yet closed stay valid until their owners close them.
	 */
	void (*on_close)(struct yamux_session *s, int reason, void *data);
	void *data;
};

void yamux_opts_default(struct yamux_opts *o);

/*
 * Start a session on `transport`, which the session owns from now on (it
 * sets the transport's data and callbacks and starts reading). `is_client`
 * picks odd stream ids (the side that dialed) or even ones. `opts` may be
 * NULL for defaults; it is copied. Never fails: transport errors come
 * through on_close.
 */
struct yamux_session *yamux_session_new(uv_loop_t *loop, struct io *transport, int is_client,
					const struct yamux_opts *opts);

/*
 * Open a stream; its SYN goes out from the loop (after earlier SYNs within
 * the accept backlog) and data may be written at once. Returns 0 with *out
 * set, -ECONNRESET once the session is closing, -ECONNREFUSED after the
 * peer's go-away, -EMFILE at max_streams, -ENOSPC when ids are exhausted.
 */
int yamux_open_stream(struct yamux_session *s, struct io **out);

/*
 * A grpc_channel_opts.dial function: `dial_data` is the session. `done`
 * fires from the loop with a new stream (or an error as from
 * yamux_open_stream); `loop` and `target` are not used. A channel keeps
 * redialling after failures, so close it in the session's on_close at the
 * latest: the session pointer is not valid afterwards.
 */
int yamux_dial(uv_loop_t *loop, const char *target, void *dial_data,
	       void (*done)(void *arg, struct io *io, int status), void *arg);

/*
 * Send a normal go-away: the peer should open no more streams (new SYNs are
 * refused with RST from now on); existing streams go on.
 */
void yamux_session_goaway(struct yamux_session *s);

/*
 * Close the session: a normal go-away is sent (best effort, for at most a
 * second), then the transport is closed; every stream fails as described
 * above and on_close fires with reason 0. Calling it again is a no-op.
 */
void yamux_session_close(struct yamux_session *s);

/*
 * Measure the round trip: `cb` fires once with status 0 and the time in
 * milliseconds, or -ECANCELED when the session closes first. Returns 0, or
 * -ECONNRESET / -ENOBUFS (too many control frames queued; `cb` never fires).
 */
typedef void (*yamux_ping_cb)(struct yamux_session *s, int status, uint64_t rtt_ms, void *arg);
int yamux_session_ping(struct yamux_session *s, yamux_ping_cb cb, void *arg);

void *yamux_session_data(const struct yamux_session *s);
void yamux_session_set_data(struct yamux_session *s, void *data);
int yamux_session_is_client(const struct yamux_session *s);
/* 1 once the session is closing or closed. */
int yamux_session_is_closing(const struct yamux_session *s);

struct yamux_session_stats {
	size_t streams;         /* live streams, including ones lingering after close */
	size_t tx_inflight;     /* bytes handed to the transport, not yet written */
	uint64_t bytes_in, bytes_out;
};
void yamux_session_stats(const struct yamux_session *s, struct yamux_session_stats *out);

/* --- streams (each is a struct io) --- */

/* The session of a yamux stream, or NULL when `io` is not one. */
struct yamux_session *yamux_stream_session(const struct io *io);
uint32_t yamux_stream_id(const struct io *io);

/*
 * Half close: FIN after the queued writes; reading goes on until the
 * peer's FIN. Later writes fail with UV_EPIPE. Returns 0, or UV_ENOTCONN
 * when the stream is already reset or finished.
 */
int yamux_stream_shutdown(struct io *io);

/*
 * Let the peer send up to `max` bytes ahead on this stream (at most
 * YAMUX_MAX_WINDOW) instead of the session's max_stream_window, for a
 * stream that carries bulk data (a sidechannel): fewer, larger window
 * updates and reads. Only grows; the update leaves once half of the new
 * window is due, as every update does.
 */
void yamux_stream_grow_window(struct io *io, uint32_t max);

/*
 * Abort: RST to the peer, pending writes fail with UV_ECANCELED, and the io
 * is closed (on_close fires from the loop).
 */
void yamux_stream_reset(struct io *io);

struct yamux_stream_stats {
	uint32_t id;
	uint32_t send_window;   /* bytes the peer still lets us send */
	uint32_t recv_window;   /* bytes we still let the peer send */
	size_t buffered;        /* received, not yet delivered to on_read */
	size_t queued;          /* written by the owner, not yet framed */
};
void yamux_stream_stats(const struct io *io, struct yamux_stream_stats *out);

#endif
