/*
 * Internal to lib/grpc: the half of a gRPC call that does not depend on
 * which side of the connection we are, shared by server calls (server.c)
 * and client calls (client.c).
 *
 * A `struct gstream` is embedded in each call. It holds what moves messages
 * between the application and one HTTP/2 stream:
 *
 *  - receiving: DATA chunks go into a framer; whole messages are handed to
 *    ops->on_message one at a time unless the application paused; stream
 *    window is returned to the peer as bytes leave the buffer (all at once
 *    when nothing is held back), so a paused reader holds at most one window
 *    plus one message;
 *  - sending: messages are copied into a queue that the owner's nghttp2 data
 *    provider drains through gstream_data_read(); above GRPC_SEND_HIGH_WATER
 *    the stream wants on_writable, which fires from the connection's
 *    after-flush hook once the queue is below GRPC_SEND_LOW_WATER;
 *  - the deadline timer;
 *  - the header-field plumbing: building nghttp2 header lists from metadata
 *    and decoding received fields into metadata, with the size cap.
 *
 * What stays with the owner: call lifecycle and status (the server sends
 * it, the client reads it), method dispatch, channel and reconnection.
 *
 * A `struct gstream_conn` is embedded in each connection: the h2_conn plus
 * the list of streams waiting for on_writable. Its after_flush hook is
 * gstream_after_flush.
 *
 * Invariant: once `notified` is set (the owner told the application the call
 * ended), no gstream function calls on_message, on_writable or on_deadline
 * again; after_deliver still runs at the end of a delivery round so the
 * owner can finish the call off.
 */
#ifndef GRPC_STREAM_H
#define GRPC_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <nghttp2/nghttp2.h>
#include <uv.h>
#include "frame.h"
#include "outq.h"
#include "status.h"
#include "metadata.h"
#include "../h2/conn.h"

/* Cap on the header list of one stream (names + values + 32 per field, as HTTP/2 counts). */
#define GSTREAM_MAX_HEADER_BYTES (64 * 1024)
/* Receive window of a connection; it is always returned at once. */
#define GSTREAM_CONN_WINDOW (16 * 1024 * 1024)

struct gstream;

struct gstream_ops {
	void (*on_message)(struct gstream *s, const uint8_t *msg, size_t len);
	/* The framer refused a message: end the call with `code` and `msg`. */
	void (*on_bad_message)(struct gstream *s, enum grpc_code code, const char *msg);
	/*
	 * After each delivery round (not a nested one), with `delivering`
	 * already cleared: the owner may free the call here.
	 */
	void (*after_deliver)(struct gstream *s);
	void (*on_writable)(struct gstream *s);
	void (*on_deadline)(struct gstream *s);
};

struct gstream_conn {
	struct h2_conn h2;
	struct gstream *wlist;     /* streams to offer on_writable after the next flush */
};

struct gstream_deadline;

struct gstream {
	struct gstream_conn *conn; /* NULL while the call has no stream (client: pending or unlinked) */
	int32_t id;                /* HTTP/2 stream id, 0 until submitted */
	const struct gstream_ops *ops;
	int notified;              /* the application was told the call ended */
	int stream_closed;         /* the HTTP/2 stream is gone but the call lives on (client) */
	size_t header_bytes;
	struct gstream_deadline *dl;

	/* receiving */
	struct grpc_framer in;
	size_t unconsumed;         /* bytes received, not yet given back to the stream window */
	int paused, delivering;

	/* sending */
	struct grpc_outq out;
	int want_writable;         /* crossed the high water mark; on_writable is due below the low one */
	int deferred;              /* the data provider returned NGHTTP2_ERR_DEFERRED */
	int in_wlist;
	struct gstream *wnext;
};

/* --- lifecycle --- */

void gstream_init(struct gstream *s, const struct gstream_ops *ops, size_t max_recv_msg);
/* Frees buffers and stops the deadline timer; the owner unlinks the stream first. */
void gstream_release(struct gstream *s);

/* Start the deadline timer: ops->on_deadline fires after `ms` unless released first. */
void gstream_deadline_start(struct gstream *s, uv_loop_t *loop, uint64_t ms);

/* --- connections --- */

/*
 * A session with the settings both sides send: the role's own first entry
 * (MAX_CONCURRENT_STREAMS for a server, ENABLE_PUSH off for a client), then
 * the per-stream window and the header-list cap. WINDOW_UPDATEs are ours to
 * send (no automatic ones) and the connection window is opened to
 * GSTREAM_CONN_WINDOW.
 */
nghttp2_session *gstream_session_new(int server, const nghttp2_session_callbacks *cbs, void *data,
				     nghttp2_settings_entry role, uint32_t stream_window);
/* h2_conn after_flush hook of both sides: offer on_writable to the waiting streams. */
void gstream_after_flush(struct h2_conn *h2);
void gstream_wlist_remove(struct gstream *s);

/* --- receiving --- */

/*
 * A DATA chunk for `stream_id`. The connection window goes back at once; the
 * stream's too unless `s` is paused. `s` NULL (or notified) discards.
 */
void gstream_recv_data(nghttp2_session *session, int32_t stream_id, struct gstream *s,
		       const uint8_t *data, size_t len);
/* Deliver buffered whole messages unless paused, then call ops->after_deliver. */
void gstream_deliver(struct gstream *s);
void gstream_pause(struct gstream *s);
void gstream_resume(struct gstream *s);

/* --- sending --- */

/* Queue one message (copied). */
void gstream_queue(struct gstream *s, const void *msg, size_t len);
int gstream_send_full(const struct gstream *s);
/* Wake a deferred data provider and flush. */
void gstream_kick(struct gstream *s);
/*
 * Body of the owner's nghttp2 data provider: copy queued bytes. When the
 * queue is empty and `last` (nothing more will be queued), sets
 * NGHTTP2_DATA_FLAG_EOF; when it is empty otherwise, defers.
 */
ssize_t gstream_data_read(struct gstream *s, uint8_t *buf, size_t length, uint32_t *data_flags, int last);

/* --- header fields --- */

/* A header list for one nghttp2_submit_*() call; what it points to must outlive the call. */
struct gstream_hdrs {
	nghttp2_nv *nv;
	size_t nr, alloc;
	char **owned;              /* values encoded here (base64, percent), freed at release */
	size_t nr_owned, alloc_owned;
};
#define GSTREAM_HDRS_INIT { NULL, 0, 0, NULL, 0, 0 }

/* Name and value are NUL-terminated and not copied. */
void gstream_hdrs_add(struct gstream_hdrs *h, const char *name, const char *value);
/* Takes `value`'s buffer (the strbuf is left empty). */
void gstream_hdrs_add_owned(struct gstream_hdrs *h, const char *name, struct strbuf *value);
/* Application metadata, minus reserved keys; -bin values base64-encoded. */
void gstream_hdrs_add_md(struct gstream_hdrs *h, const struct grpc_metadata *md);
void gstream_hdrs_release(struct gstream_hdrs *h);

/* Count a received field against the cap: 0, or -1 when the list is too large. */
int gstream_header_count(struct gstream *s, size_t namelen, size_t valuelen);
/*
 * Add a received application field to `md`: reserved keys are skipped, -bin
 * values base64-decoded (and dropped when they do not decode).
 */
void gstream_header_md(struct grpc_metadata *md, const char *k, size_t klen, const char *v, size_t vlen);

#endif
