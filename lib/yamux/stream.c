/* yamux streams: the io operations their owners call, and the state changes frames cause. */
#include "internal.h"
#include "../base/util.h"
#include "../base/hashmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct io_ops stream_ops;

static struct yamux_stream *to_stream(const struct io *io)
{
	return (struct yamux_stream *)io;
}

size_t yamux__stream_buffered(const struct yamux_stream *st)
{
	return st->rbuf.len - st->roff;
}

/* Nothing more will cross the wire for this stream in either direction. */
static int protocol_done(const struct yamux_stream *st)
{
	return st->off_wire || st->dead || st->rst_sent || st->rst_recv || (st->fin_sent && st->fin_recv);
}

/*
 * What a window update may grant now: the window minus what the peer may
 * still send, what we hold, and the rest of a data frame whose header has
 * been charged but whose payload is still arriving.
 */
uint32_t yamux__stream_window_delta(const struct yamux_stream *st)
{
	uint64_t max = st->max_window;
	uint64_t have = (uint64_t)st->recv_window + yamux__stream_buffered(st);

	if (st->s->payload_st == st)
		have += st->s->payload_left;

	return have >= max ? 0 : (uint32_t)(max - have);
}

int yamux__stream_ctl_due(const struct yamux_stream *st)
{
	if (st->dead || st->s->dying || st->syn_waiting || st->off_wire || st->rst_recv)
		return 0;
	if (st->rst_wanted)
		return !st->rst_sent;
	if (st->need_syn || st->need_ack)
		return 1;
	if (st->fin_wanted && !st->fin_sent && !st->emit)
		return 1;
	/* As hashicorp/yamux: update once half the window has been consumed. */
	return !st->fin_recv && yamux__stream_window_delta(st) >= st->max_window / 2;
}

int yamux__stream_data_due(const struct yamux_stream *st)
{
	return st->emit && st->send_window > 0 && !st->need_syn && !st->need_ack && !st->syn_waiting &&
	       !st->rst_wanted && !st->rst_recv && !st->dead && !st->off_wire && !st->s->dying;
}

void yamux__stream_kick(struct yamux_stream *st)
{
	yamux_link_append(&st->s->svc, &st->svc);
	yamux__sched(st->s);
}

/* Bring the session's ctl and data lists in line with the stream's state. */
void yamux__stream_update(struct yamux_stream *st)
{
	struct yamux_session *s = st->s;
	struct yamux_req *r;
	int framed = 0;

	while ((r = st->emit) && r->off == r->len) {
		st->emit = r->next;
		framed = 1;
	}
	if (framed)
		yamux__stream_kick(st);
	if (yamux__stream_data_due(st)) {
		yamux_link_append(&s->data, &st->data);
		yamux__sched(s);
	} else {
		yamux_link_remove(&st->data);
	}
	if (yamux__stream_ctl_due(st)) {
		yamux_link_append(&s->ctl, &st->ctl);
		yamux__sched(s);
	} else {
		yamux_link_remove(&st->ctl);
	}
}

struct yamux_stream *yamux__stream_new(struct yamux_session *s, uint32_t id)
{
	struct yamux_stream *st = xcalloc(1, sizeof(*st));
	uint8_t key[4];

	st->io.ops = &stream_ops;
	st->s = s;
	st->id = id;
	st->send_window = YAMUX_INITIAL_WINDOW;
	st->recv_window = YAMUX_INITIAL_WINDOW;
	st->max_window = s->opts.max_stream_window;
	strbuf_init(&st->rbuf, 0);
	st->reqs_tail = &st->reqs;
	yamux_link_init(&st->all);
	yamux_link_init(&st->ctl);
	yamux_link_init(&st->data);
	yamux_link_init(&st->svc);
	yamux_link_init(&st->wait);
	yamux_link_init(&st->closing);
	yamux_link_append(&s->all, &st->all);
	s->nstreams++;
	memcpy(key, &id, sizeof(key));
	hashmap_put(&s->streams, key, sizeof(key), st);
	st->in_map = 1;
	return st;
}

static void stream_unmap(struct yamux_stream *st)
{
	uint8_t key[4];

	if (!st->in_map)
		return;
	memcpy(key, &st->id, sizeof(key));
	hashmap_remove(&st->s->streams, key, sizeof(key));
	st->in_map = 0;
}

static void stream_free(struct yamux_stream *st)
{
	struct yamux_session *s = st->s;

	if (s->payload_st == st)
		s->payload_st = NULL;   /* a payload split across reads: drop its rest */
	stream_unmap(st);
	yamux__slot_release(st);
	yamux_link_remove(&st->all);
	yamux_link_remove(&st->ctl);
	yamux_link_remove(&st->data);
	yamux_link_remove(&st->svc);
	yamux_link_remove(&st->wait);
	yamux_link_remove(&st->closing);
	strbuf_release(&st->rbuf);
	free(st);
	s->nstreams--;
	yamux__maybe_free(s);
}

/* Requests with bytes not yet framed will never be sent: fail them. */
void yamux__stream_fail_reqs(struct yamux_stream *st, int status)
{
	struct yamux_req *r;

	if (!st->emit)
		return;
	for (r = st->emit; r; r = r->next) {
		r->status = status;
		r->off = r->len;
	}
	st->emit = NULL;
	yamux_link_remove(&st->data);
	yamux__stream_kick(st);
}

/* A stream closed before its SYN left needs nothing on the wire at all. */
static void drop_unsent_syn(struct yamux_stream *st)
{
	st->need_syn = 0;
	st->off_wire = 1;
	if (st->syn_waiting) {
		st->syn_waiting = 0;
		yamux_link_remove(&st->wait);
	}
	yamux__slot_release(st);
}

void yamux__stream_abort(struct yamux_stream *st)
{
	if (st->need_syn)
		drop_unsent_syn(st);
	else if (!protocol_done(st))
		st->rst_wanted = 1;
	yamux__stream_fail_reqs(st, UV_ECANCELED);
	yamux_link_remove(&st->closing);
	yamux__stream_update(st);
	yamux__stream_kick(st);
}

void yamux__stream_kill(struct yamux_stream *st)
{
	st->dead = 1;
	st->has_slot = 0;   /* the session is going: nothing to hand the slot to */
	st->syn_waiting = 0;
	yamux_link_remove(&st->wait);
	yamux_link_remove(&st->ctl);
	yamux_link_remove(&st->data);
	yamux_link_remove(&st->closing);
	yamux__stream_fail_reqs(st, UV_ECANCELED);
	yamux__stream_kick(st);
}

void yamux__stream_on_fin(struct yamux_stream *st)
{
	if (st->fin_recv)
		return;
	st->fin_recv = 1;
	yamux__stream_update(st);
	yamux__stream_kick(st);
}

void yamux__stream_on_rst(struct yamux_stream *st)
{
	st->rst_recv = 1;
	yamux__slot_release(st);
	yamux__stream_fail_reqs(st, UV_ECONNRESET);
	/* Not inside a delivery from rbuf: the parser never runs from one. */
	strbuf_release(&st->rbuf);
	st->roff = 0;
	yamux__stream_update(st);
	yamux__stream_kick(st);
}

/* Payload bytes for this stream; the receive window was already charged. */
void yamux__stream_on_data(struct yamux_stream *st, const char *p, size_t n)
{
	if (st->fin_recv || st->rst_recv || st->rst_wanted || st->rst_sent || st->dead)
		return;
	if (st->user_closed) {
		/* Nobody will read it: dropping counts as consumed, so the peer can finish. */
		yamux__stream_update(st);
		return;
	}
	if (st->reading && !yamux__stream_buffered(st) && !st->eof_delivered) {
		st->io.on_read(&st->io, p, (ssize_t)n);
		yamux__stream_update(st);
		return;
	}
	/*
	 * Drop what was delivered before appending: a reader that keeps pausing
	 * before the buffer drains must not make it grow beyond the window.
	 */
	if (st->roff) {
		strbuf_remove_front(&st->rbuf, st->roff);
		st->roff = 0;
	}
	strbuf_add(&st->rbuf, p, n);
	if (st->reading)
		yamux__stream_kick(st);
}

/*
 * Deferred work for one stream, from the session's idle handle: buffered
 * data and the final read event, write callbacks in order, on_close, and
 * freeing the stream once neither the owner nor the protocol needs it.
 */
void yamux__stream_service(struct yamux_stream *st)
{
	struct yamux_req *r;

	while (st->reading && !st->user_closed && !st->eof_delivered) {
		size_t pending = yamux__stream_buffered(st);

		if (st->rst_recv) {
			st->eof_delivered = 1;
			st->io.on_read(&st->io, NULL, UV_ECONNRESET);
			break;
		}
		if (pending) {
			size_t n = MIN(pending, YAMUX_DELIVER_CHUNK);
			const char *p = st->rbuf.buf + st->roff;

			st->roff += n;
			st->io.on_read(&st->io, p, (ssize_t)n);
			if (st->roff == st->rbuf.len) {
				strbuf_reset(&st->rbuf);
				st->roff = 0;
			}
			yamux__stream_update(st);
			continue;
		}
		if (st->fin_recv || st->dead) {
			st->eof_delivered = 1;
			st->io.on_read(&st->io, NULL, st->fin_recv ? UV_EOF : UV_ECONNRESET);
		}
		break;
	}
	if (st->user_closed && st->rbuf.alloc) {
		strbuf_release(&st->rbuf);
		st->roff = 0;
		yamux__stream_update(st);
	}

	while ((r = st->reqs) && r->off == r->len && r->refs == 0) {
		if (st->emit == r)
			st->emit = r->next;
		st->reqs = r->next;
		if (!st->reqs)
			st->reqs_tail = &st->reqs;
		if (r->cb)
			r->cb(&st->io, r->status, r->arg);
		free(r);
	}

	if (st->user_closed && !st->closed_notified && !st->reqs &&
	    (st->fin_sent || st->rst_wanted || st->rst_recv || st->dead || st->off_wire)) {
		st->closed_notified = 1;
		if (st->io.on_close)
			st->io.on_close(&st->io);
	}
	if (protocol_done(st)) {
		/* Later frames with this id are stale and ignored. */
		stream_unmap(st);
		yamux_link_remove(&st->closing);
		yamux__slot_release(st);
	}
	if (st->closed_notified && protocol_done(st) && !st->reqs && yamux_link_empty(&st->ctl))
		stream_free(st);
}

/* --- io operations --- */

static int st_read_start(struct io *io)
{
	struct yamux_stream *st = to_stream(io);

	if (io->closing || st->user_closed)
		return UV_EPIPE;
	st->reading = 1;
	if (!st->eof_delivered &&
	    (yamux__stream_buffered(st) || st->fin_recv || st->rst_recv || st->dead))
		yamux__stream_kick(st);
	return 0;
}

static int st_read_stop(struct io *io)
{
	to_stream(io)->reading = 0;
	return 0;
}

static int st_write(struct io *io, const char *buf, size_t len, io_write_cb cb, void *arg)
{
	struct yamux_stream *st = to_stream(io);
	struct yamux_req *r;

	if (io->closing || st->user_closed || st->fin_wanted)
		return UV_EPIPE;
	if (st->rst_wanted || st->rst_recv || st->dead || st->off_wire)
		return UV_ECONNRESET;
	r = xcalloc(1, sizeof(*r));
	r->buf = buf;
	r->len = len;
	r->cb = cb;
	r->arg = arg;
	*st->reqs_tail = r;
	st->reqs_tail = &r->next;
	if (!st->emit)
		st->emit = r;
	yamux__stream_update(st);
	return 0;
}

/*
 * A write that is one small data frame and can leave at once: nothing of
 * this stream queued or due before it (SYN, ACK, earlier writes), the send
 * window open for all of it, the transport idle. Returns the bytes taken
 * (all of `len`) or 0 to queue the write as usual.
 */
static ssize_t st_try_write(struct io *io, const char *buf, size_t len)
{
	struct yamux_stream *st = to_stream(io);
	int rc;

	if (io->closing || st->user_closed || st->fin_wanted || st->reqs || !len || len > YAMUX_INLINE_MAX ||
	    len > st->send_window || st->need_syn || st->need_ack || st->syn_waiting || st->rst_wanted ||
	    st->rst_recv || st->dead || st->off_wire || yamux__stream_ctl_due(st))
		return 0;
	rc = yamux__emit_data_now(st, buf, len);
	if (rc <= 0)
		return rc;
	st->send_window -= (uint32_t)len;
	return (ssize_t)len;
}

static void st_close(struct io *io)
{
	struct yamux_stream *st = to_stream(io);
	struct yamux_session *s = st->s;

	if (st->user_closed)
		return;
	st->user_closed = 1;
	st->reading = 0;
	if (!protocol_done(st) && !st->rst_wanted) {
		if (st->need_syn && !st->reqs)
			drop_unsent_syn(st);
		else
			st->fin_wanted = 1;
	}
	if (!protocol_done(st)) {
		st->close_deadline = now_ms() + s->opts.stream_close_timeout_ms;
		yamux_link_append(&s->closing, &st->closing);
		yamux__timer_update(s);
	}
	yamux__stream_update(st);
	yamux__stream_kick(st);
}

static const char *st_peer(struct io *io)
{
	return to_stream(io)->s->peer;
}

static const struct io_ops stream_ops = {
	.read_start = st_read_start,
	.read_stop = st_read_stop,
	.write = st_write,
	.try_write = st_try_write,
	.close = st_close,
	.peer = st_peer,
};

/* --- public stream functions --- */

struct yamux_session *yamux_stream_session(const struct io *io)
{
	return io && io->ops == &stream_ops ? to_stream(io)->s : NULL;
}

uint32_t yamux_stream_id(const struct io *io)
{
	return yamux_stream_session(io) ? to_stream(io)->id : 0;
}

int yamux_stream_shutdown(struct io *io)
{
	struct yamux_stream *st;

	if (!yamux_stream_session(io))
		return UV_EINVAL;
	st = to_stream(io);
	if (io->closing || st->user_closed)
		return UV_EPIPE;
	if (protocol_done(st) || st->rst_wanted)
		return UV_ENOTCONN;
	if (!st->fin_wanted) {
		st->fin_wanted = 1;
		yamux__stream_update(st);
	}
	return 0;
}

void yamux_stream_grow_window(struct io *io, uint32_t max)
{
	struct yamux_stream *st;

	if (!yamux_stream_session(io))
		return;
	st = to_stream(io);
	max = MIN(max, (uint32_t)YAMUX_MAX_WINDOW);
	if (max <= st->max_window)
		return;
	st->max_window = max;
	yamux__stream_update(st);   /* the update goes out once half of it is due, as always */
}

void yamux_stream_reset(struct io *io)
{
	struct yamux_stream *st;

	if (!yamux_stream_session(io))
		return;
	st = to_stream(io);
	if (!st->user_closed && !io->closing)
		yamux__stream_abort(st);
	io_close(io);
}

void yamux_stream_stats(const struct io *io, struct yamux_stream_stats *out)
{
	const struct yamux_stream *st;
	const struct yamux_req *r;

	memset(out, 0, sizeof(*out));
	if (!yamux_stream_session(io))
		return;
	st = to_stream(io);
	out->id = st->id;
	out->send_window = st->send_window;
	out->recv_window = st->recv_window;
	out->buffered = yamux__stream_buffered(st);
	for (r = st->emit; r; r = r->next)
		out->queued += r->len - r->off;
}
