/* yamux sessions: the write pump (control frames, stream data gathered into one transport write). */
#include "internal.h"
#include "../base/util.h"
#include "../base/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Frames queued for sending, gathered into one transport write (one writev
 * where the transport can gather): headers and small payloads are copied
 * into `inl`, larger payloads are written from their owner's buffer, which
 * each `refs` entry keeps alive until the transport is done with it.
 */
struct yamux_tx_ref {
	struct yamux_stream *st;
	struct yamux_req *req;
};

struct yamux_tx {
	struct yamux_session *s;
	size_t bytes;
	int pending;                 /* transport writes not completed */
	int status;
	int close_after;             /* the final go-away: close the transport once out */
	unsigned nbufs, nrefs;
	size_t inl_len;
	uv_buf_t bufs[YAMUX_BATCH_BUFS];
	struct yamux_tx_ref refs[YAMUX_BATCH_BUFS];
	uint8_t inl[YAMUX_BATCH_INLINE];
};

int yamux__ctlq_push(struct yamux_session *s, uint8_t type, uint16_t flags, uint32_t id, uint32_t length)
{
	struct yamux_hdr h = { YAMUX_VERSION, type, flags, id, length };

	if (s->ctlq_nr >= YAMUX_CTLQ_CAP)
		return -ENOBUFS;
	yamux_hdr_encode(s->ctlq[(s->ctlq_head + s->ctlq_nr) % YAMUX_CTLQ_CAP], &h);
	s->ctlq_nr++;
	yamux__sched(s);
	return 0;
}

/* The transport is done with `tx` (status: the first failure): release what it held. */
static void tx_release(struct yamux_tx *tx)
{
	struct yamux_session *s = tx->s;

	s->tx_bytes -= tx->bytes;
	if (!tx->status)
		s->bytes_out += tx->bytes;
	for (unsigned i = 0; i < tx->nrefs; i++) {
		struct yamux_req *req = tx->refs[i].req;

		req->refs--;
		if (tx->status < 0 && !req->status)
			req->status = tx->status;
		yamux__stream_kick(tx->refs[i].st);
	}
	free(tx);
}

static void on_tx_done(struct io *io, int status, void *arg)
{
	struct yamux_tx *tx = arg;
	struct yamux_session *s = tx->s;
	int close_after;

	(void)io;
	if (status < 0 && !tx->status)
		tx->status = status;
	if (--tx->pending)
		return;
	close_after = tx->close_after;
	status = tx->status;
	tx_release(tx);
	if (close_after)
		yamux__close_transport(s);
	else if (status < 0)
		yamux__session_die(s, status, -1);
	else
		yamux__flush(s);
}

/* Hand the gathered frames to the transport. */
static int tx_submit(struct yamux_session *s)
{
	struct yamux_tx *tx = s->batch;
	int rc;

	if (!tx)
		return 0;
	s->batch = NULL;
	tx->pending = 1;
	rc = io_writev(s->transport, tx->bufs, tx->nbufs, on_tx_done, tx);
	if (rc != UV_ENOSYS) {
		if (rc < 0) {
			tx->status = rc;
			tx_release(tx);
		}
		return rc;
	}
	/* one write a buffer, in order */
	tx->pending = (int)tx->nbufs + 1;
	for (unsigned i = 0; i < tx->nbufs; i++) {
		rc = io_write(s->transport, tx->bufs[i].base, tx->bufs[i].len, on_tx_done, tx);
		if (rc < 0) {
			/* the writes already queued complete later and release tx */
			tx->pending -= (int)(tx->nbufs - i);
			tx->status = rc;
			break;
		}
	}
	if (!--tx->pending)
		tx_release(tx);
	return rc < 0 ? rc : 0;
}

/* Part of a frame's payload: bytes of one write request. */
struct yamux_piece {
	const char *p;
	size_t n;
	struct yamux_req *req;
};

/*
 * Queue one frame in the current batch (sent when the write pump stops, or
 * when the batch is full). Its payload may gather several write requests
 * of `st`: small pieces are copied next to the header, larger ones are
 * written from the owner's buffer, which a reference on the request keeps
 * alive until the transport is done with it.
 */
static int emit(struct yamux_session *s, const uint8_t hdr[YAMUX_HDR_LEN], struct yamux_piece *pc,
		unsigned npc, struct yamux_stream *st, int close_after)
{
	struct yamux_tx *tx = s->batch;
	size_t plen = 0;
	int rc;

	if (tx && (tx->nbufs + 1 + 2 * npc > YAMUX_BATCH_BUFS || tx->inl_len + YAMUX_HDR_LEN > sizeof(tx->inl))) {
		rc = tx_submit(s);
		if (rc < 0)
			return rc;
		tx = NULL;
	}
	if (!tx) {
		tx = xmalloc(sizeof(*tx));
		tx->s = s;
		tx->bytes = 0;
		tx->pending = 0;
		tx->status = 0;
		tx->close_after = 0;
		tx->nbufs = tx->nrefs = 0;
		tx->inl_len = 0;
		s->batch = tx;
	}
	for (unsigned i = 0; i <= npc; i++) {
		const char *p = i ? pc[i - 1].p : (const char *)hdr;
		size_t n = i ? pc[i - 1].n : YAMUX_HDR_LEN;
		uv_buf_t *last = tx->nbufs ? &tx->bufs[tx->nbufs - 1] : NULL;

		if (!i || (n <= YAMUX_INLINE_MAX && tx->inl_len + n <= sizeof(tx->inl))) {
			uint8_t *at = tx->inl + tx->inl_len;

			memcpy(at, p, n);
			tx->inl_len += n;
			if (last && last->base + last->len == (char *)at)
				last->len += n;   /* right after the previous inline bytes: one buffer */
			else
				tx->bufs[tx->nbufs++] = uv_buf_init((char *)at, (unsigned)n);
		} else {
			tx->bufs[tx->nbufs++] = uv_buf_init((char *)p, (unsigned)n);
			tx->refs[tx->nrefs++] = (struct yamux_tx_ref){ st, pc[i - 1].req };
			pc[i - 1].req->refs++;
		}
		plen += n;
	}
	tx->bytes += plen;
	s->tx_bytes += plen;
	if (close_after) {
		tx->close_after = 1;
		return tx_submit(s);
	}
	return 0;
}

/*
 * One small data frame of `st` out now, outside the write pump, when the
 * transport has nothing of ours in flight and no batch is open: a unary
 * call's message then leaves in the same loop round instead of waiting for
 * the pump's idle round. 1: handed to the transport; 0: the caller queues
 * it as usual; negative: the session died.
 */
int yamux__emit_data_now(struct yamux_stream *st, const char *payload, size_t plen)
{
	struct yamux_session *s = st->s;
	struct yamux_hdr h = { YAMUX_VERSION, YAMUX_DATA, 0, st->id, (uint32_t)plen };
	struct yamux_piece pc = { payload, plen, NULL };
	uint8_t hdr[YAMUX_HDR_LEN];
	int rc;

	if (s->dying || s->in_flush || s->batch || s->tx_bytes || s->goaway_code >= 0 || !s->transport ||
	    s->transport_closing || plen > YAMUX_INLINE_MAX)
		return 0;   /* inline only: pc.req is NULL, so emit() must copy the payload */
	yamux_hdr_encode(hdr, &h);
	if ((rc = emit(s, hdr, &pc, 1, st, 0)) >= 0)
		rc = tx_submit(s);
	if (rc < 0) {
		yamux__session_die(s, rc, -1);
		return rc;
	}
	return 1;
}

/* SYN, ACK, FIN, RST and window updates of one stream, in one frame. */
static int emit_stream_ctl(struct yamux_session *s, struct yamux_stream *st)
{
	struct yamux_hdr h = { YAMUX_VERSION, YAMUX_WINDOW_UPDATE, 0, st->id, 0 };
	uint8_t buf[YAMUX_HDR_LEN];
	int rc;

	if (!yamux__stream_ctl_due(st))
		return 0;
	if (st->rst_wanted) {
		/* RST alone, also to refuse a stream (as hashicorp does): never with SYN */
		h.flags = YAMUX_RST;
		st->need_ack = 0;
		st->rst_sent = 1;
	} else {
		if (st->need_syn) {
			h.flags |= YAMUX_SYN;
			st->need_syn = 0;
		}
		if (st->need_ack) {
			h.flags |= YAMUX_ACK;
			st->need_ack = 0;
		}
		if (st->fin_wanted && !st->fin_sent && !st->emit) {
			h.flags |= YAMUX_FIN;
			st->fin_sent = 1;
		}
		if (!st->fin_recv) {
			uint32_t delta = yamux__stream_window_delta(st);
			/* SYN and ACK always say how far our window goes beyond the initial one. */
			if ((h.flags & (YAMUX_SYN | YAMUX_ACK)) || delta >= st->max_window / 2) {
				h.length = delta;
				st->recv_window += delta;
			}
		}
	}
	yamux__stream_update(st);
	if (h.flags & (YAMUX_FIN | YAMUX_RST))
		yamux__stream_kick(st);
	if (!h.flags && !h.length)
		return 0;
	yamux_hdr_encode(buf, &h);
	rc = emit(s, buf, NULL, 0, NULL, 0);
	return rc;
}

/*
 * One data frame of up to YAMUX_MAX_FRAME (and the send window) from the
 * stream's queued writes: small writes queued one after another (a header
 * apart from its payload) share a frame instead of one frame each.
 */
static int emit_stream_data(struct yamux_session *s, struct yamux_stream *st)
{
	struct yamux_piece pc[YAMUX_FRAME_PIECES];
	struct yamux_req *r;
	struct yamux_hdr h;
	uint8_t buf[YAMUX_HDR_LEN];
	size_t budget, n = 0;
	unsigned npc = 0;
	int rc;

	if (!yamux__stream_data_due(st))
		return 0;
	budget = MIN((size_t)st->send_window, (size_t)YAMUX_MAX_FRAME);
	for (r = st->emit; r && n < budget && npc < YAMUX_FRAME_PIECES; r = r->next) {
		size_t k = MIN(r->len - r->off, budget - n);

		if (!k)
			continue;   /* an empty write: completes once framed */
		pc[npc++] = (struct yamux_piece){ r->buf + r->off, k, r };
		n += k;
		if (r->off + k < r->len)
			break;
	}
	h = (struct yamux_hdr){ YAMUX_VERSION, YAMUX_DATA, 0, st->id, (uint32_t)n };
	yamux_hdr_encode(buf, &h);
	rc = emit(s, buf, pc, npc, st, 0);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < npc; i++)
		pc[i].req->off += pc[i].n;
	st->send_window -= (uint32_t)n;
	yamux__stream_update(st);   /* back to the end of the data list: round robin */
	return 0;
}

/*
 * The write pump: go-away first, then session control frames, then stream
 * control frames, then data round robin, while the transport holds less
 * than YAMUX_TX_CAP. Never calls an owner's callback.
 */
void yamux__flush(struct yamux_session *s)
{
	int rc = 0;

	if (s->in_flush)
		return;
	s->in_flush = 1;
	while (rc >= 0 && s->transport && !s->transport_closing && s->tx_bytes < YAMUX_TX_CAP) {
		uint8_t buf[YAMUX_HDR_LEN];

		if (s->goaway_code >= 0) {
			struct yamux_hdr h = { YAMUX_VERSION, YAMUX_GO_AWAY, 0, 0, (uint32_t)s->goaway_code };

			yamux_hdr_encode(buf, &h);
			s->goaway_code = -1;
			s->goaway_sent = 1;
			rc = emit(s, buf, NULL, 0, NULL, s->dying);
			if (rc < 0 && s->dying)
				yamux__close_transport(s);
			continue;
		}
		if (s->dying)
			break;
		if (s->ctlq_nr) {
			memcpy(buf, s->ctlq[s->ctlq_head], YAMUX_HDR_LEN);
			s->ctlq_head = (s->ctlq_head + 1) % YAMUX_CTLQ_CAP;
			s->ctlq_nr--;
			rc = emit(s, buf, NULL, 0, NULL, 0);
			continue;
		}
		if (!yamux_link_empty(&s->ctl)) {
			struct yamux_stream *st = container_of(s->ctl.next, struct yamux_stream, ctl);

			yamux_link_remove(&st->ctl);
			rc = emit_stream_ctl(s, st);
			continue;
		}
		if (!yamux_link_empty(&s->data)) {
			struct yamux_stream *st = container_of(s->data.next, struct yamux_stream, data);

			yamux_link_remove(&st->data);
			rc = emit_stream_data(s, st);
			continue;
		}
		break;
	}
	if (rc >= 0) {
		rc = tx_submit(s);
	} else if (s->batch) {
		/* the session dies: what was gathered is never written */
		s->batch->status = rc;
		tx_release(s->batch);
		s->batch = NULL;
	}
	s->in_flush = 0;
	if (rc < 0)
		yamux__session_die(s, rc, -1);
}
