/* Session and stream state shared by the files of the yamux module (not an API). */
#ifndef YAMUX_INTERNAL_H
#define YAMUX_INTERNAL_H

#include "yamux.h"
#include "../h2/io.h"
#include "../base/hashmap.h"
#include "../base/strbuf.h"

#include <stdint.h>

/* Data frame payload at most: keeps streams interleaved fairly on the wire. */
#define YAMUX_MAX_FRAME (32 * 1024)
/* Payloads up to this size are copied next to their header: one transport write. */
#define YAMUX_INLINE_MAX 4096
/* Bytes handed to the transport and not yet written, at most (then we wait). */
#define YAMUX_TX_CAP (256 * 1024)
/* One transport write gathers at most this many buffers, and this many bytes of headers and small payloads. */
#define YAMUX_BATCH_BUFS 64
#define YAMUX_BATCH_INLINE (16 * 1024)
/* One data frame gathers at most this many queued writes of its stream. */
#define YAMUX_FRAME_PIECES 16
/* Session-level control frames (pongs, refusals, our pings) queued at most. */
#define YAMUX_CTLQ_CAP 256
/* How long a go-away may take to leave before the transport is closed anyway. */
#define YAMUX_GOAWAY_GRACE_MS 1000
/* Buffered data handed to on_read in pieces of at most this size. */
#define YAMUX_DELIVER_CHUNK (64 * 1024)

/* Intrusive circular list; an unlinked node points at itself. */
struct yamux_link {
	struct yamux_link *prev, *next;
};

static inline void yamux_link_init(struct yamux_link *l) { l->prev = l->next = l; }
static inline int yamux_link_empty(const struct yamux_link *l) { return l->next == l; }
static inline void yamux_link_remove(struct yamux_link *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	yamux_link_init(l);
}
/* Append `l` to `head` unless it is already on a list. */
static inline void yamux_link_append(struct yamux_link *head, struct yamux_link *l)
{
	if (!yamux_link_empty(l))
		return;
	l->prev = head->prev;
	l->next = head;
	head->prev->next = l;
	head->prev = l;
}

/* One write() on a stream, kept until its callback has fired. */
struct yamux_req {
	struct yamux_req *next;
	const char *buf;
	size_t len;
	size_t off;          /* bytes framed so far; == len when nothing is left */
	unsigned refs;       /* transport writes still pointing into buf */
	int status;
	io_write_cb cb;
	void *arg;
};

struct yamux_stream {
	struct io io;                  /* what the owner sees; first member */
	struct yamux_session *s;
	uint32_t id;
	uint32_t send_window;
	uint32_t recv_window;
	uint32_t max_window;           /* what recv_window grows to: the session's, or more (grow_window) */

	struct strbuf rbuf;            /* received while the owner was not reading */
	size_t roff;                   /* delivered part of rbuf */

	struct yamux_req *reqs;        /* FIFO, oldest first */
	struct yamux_req **reqs_tail;
	struct yamux_req *emit;        /* first request with bytes left to frame */

	uint64_t close_deadline;       /* owner closed, waiting for the peer's FIN */

	/* opening */
	unsigned need_syn : 1;         /* SYN not sent yet */
	unsigned has_slot : 1;         /* counts against the accept backlog */
	unsigned syn_waiting : 1;      /* on s->syn_wait */
	unsigned off_wire : 1;         /* closed before its SYN was ever sent */
	unsigned need_ack : 1;         /* peer-opened, ACK not sent yet */
	unsigned in_map : 1;
	/* closing */
	unsigned fin_wanted : 1;       /* owner closed or shut down writing */
	unsigned fin_sent : 1;
	unsigned fin_recv : 1;
	unsigned rst_wanted : 1;
	unsigned rst_sent : 1;
	unsigned rst_recv : 1;
	unsigned dead : 1;             /* the session died under it */
	/* owner */
	unsigned reading : 1;
	unsigned eof_delivered : 1;    /* the final on_read (EOF or error) happened */
	unsigned user_closed : 1;
	unsigned closed_notified : 1;  /* on_close fired: the owner is gone */

	struct yamux_link all;         /* s->all */
	struct yamux_link ctl;         /* s->ctl: a window update / flags frame is due */
	struct yamux_link data;        /* s->data: data can be framed */
	struct yamux_link svc;         /* s->svc: deliveries or callbacks are due */
	struct yamux_link wait;        /* s->syn_wait */
	struct yamux_link closing;     /* s->closing: close_deadline is set */
};

struct yamux_ping {
	struct yamux_ping *next;
	uint32_t id;
	uint64_t sent_ms;
	yamux_ping_cb cb;
	void *arg;
};

struct yamux_dial {
	struct yamux_dial *next;
	void (*done)(void *arg, struct io *io, int status);
	void *arg;
};

struct yamux_session {
	uv_loop_t *loop;
	struct io *transport;          /* NULL once its on_close has fired */
	struct yamux_opts opts;
	int is_client;
	char peer[64];

	/* parsing */
	uint8_t hdr[YAMUX_HDR_LEN];
	size_t hdr_len;
	uint32_t payload_left;         /* of the current data frame */
	struct yamux_stream *payload_st;   /* NULL: the payload is discarded */
	int payload_fin;               /* apply FIN once the payload is in */
	struct strbuf preread;

	/* streams */
	struct hashmap streams;        /* 4-byte id -> struct yamux_stream */
	struct yamux_link all;
	size_t nstreams;
	uint64_t next_id;
	uint32_t last_peer_id;
	uint32_t slots_used;           /* SYNs queued or unacknowledged */
	struct yamux_link syn_wait;
	struct yamux_link ctl, data, svc, closing;

	/* writing */
	uint8_t ctlq[YAMUX_CTLQ_CAP][YAMUX_HDR_LEN];
	unsigned ctlq_head, ctlq_nr;
	size_t tx_bytes;
	struct yamux_tx *batch;        /* frames gathered by the write pump, not yet handed to the transport */
	int in_flush;

	/* lifecycle */
	int local_goaway;              /* refusing new SYNs */
	int remote_goaway;             /* the peer refuses ours */
	int goaway_code;               /* -1: none to send */
	int goaway_sent;
	int dying;
	int reason;
	int transport_closing;
	int notified;                  /* on_close fired */
	uint64_t grace_deadline;
	int handles_open;              /* idle + timer until both are closed */
	int handles_closing;

	struct yamux_ping *pings;
	uint32_t next_ping_id;
	uint64_t ka_next_ms;           /* keepalive: next ping due */
	uint64_t ka_sent_ms;           /* keepalive ping outstanding since (0: none) */

	struct yamux_dial *dials, **dials_tail;

	uv_idle_t idle;
	int idle_active;
	uv_timer_t timer;

	uint64_t bytes_in, bytes_out;
};

/* session.c */
void yamux__sched(struct yamux_session *s);
void yamux__close_transport(struct yamux_session *s);
void yamux__session_die(struct yamux_session *s, int reason, int goaway);
void yamux__timer_update(struct yamux_session *s);
void yamux__maybe_free(struct yamux_session *s);
void yamux__slot_release(struct yamux_stream *st);

/* write.c */
int yamux__ctlq_push(struct yamux_session *s, uint8_t type, uint16_t flags, uint32_t id, uint32_t length);
void yamux__flush(struct yamux_session *s);
/*
 * One data frame for `st` straight to the transport when that can be done
 * now (see try_emit): 1 when it is out (or its rest queued), 0 when the
 * caller must queue it, or a negative error (the session is dying).
 */
int yamux__emit_data_now(struct yamux_stream *st, const char *payload, size_t plen);

/* stream.c */
struct yamux_stream *yamux__stream_new(struct yamux_session *s, uint32_t id);
void yamux__stream_update(struct yamux_stream *st);
void yamux__stream_kick(struct yamux_stream *st);
void yamux__stream_service(struct yamux_stream *st);
int yamux__stream_ctl_due(const struct yamux_stream *st);
int yamux__stream_data_due(const struct yamux_stream *st);
uint32_t yamux__stream_window_delta(const struct yamux_stream *st);
void yamux__stream_fail_reqs(struct yamux_stream *st, int status);
void yamux__stream_abort(struct yamux_stream *st);
void yamux__stream_kill(struct yamux_stream *st);
void yamux__stream_on_fin(struct yamux_stream *st);
void yamux__stream_on_rst(struct yamux_stream *st);
void yamux__stream_on_data(struct yamux_stream *st, const char *p, size_t n);
size_t yamux__stream_buffered(const struct yamux_stream *st);

#endif
