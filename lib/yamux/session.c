/* yamux sessions: reading and checking frames, timers and teardown (the write pump is write.c). */
#include "internal.h"
#include "../base/util.h"
#include "../base/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_idle(uv_idle_t *h);

void yamux_opts_default(struct yamux_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->max_stream_window = YAMUX_INITIAL_WINDOW;
	o->accept_backlog = 256;
	o->max_streams = 4096;
	o->keepalive_timeout_ms = 10000;
	o->stream_close_timeout_ms = 5 * 60 * 1000;
}

static void opts_normalize(struct yamux_opts *o)
{
	struct yamux_opts d;

	yamux_opts_default(&d);
	if (o->max_stream_window < YAMUX_INITIAL_WINDOW)
		o->max_stream_window = YAMUX_INITIAL_WINDOW;
	if (o->max_stream_window > YAMUX_MAX_WINDOW)
		o->max_stream_window = YAMUX_MAX_WINDOW;
	if (!o->accept_backlog)
		o->accept_backlog = d.accept_backlog;
	if (!o->max_streams)
		o->max_streams = d.max_streams;
	if (!o->keepalive_timeout_ms)
		o->keepalive_timeout_ms = d.keepalive_timeout_ms;
	if (!o->stream_close_timeout_ms)
		o->stream_close_timeout_ms = d.stream_close_timeout_ms;
}

static int is_ours(const struct yamux_session *s, uint32_t id)
{
	return (id & 1) == (s->is_client ? 1u : 0u);
}

static struct yamux_stream *lookup(struct yamux_session *s, uint32_t id)
{
	uint8_t key[4];

	memcpy(key, &id, sizeof(key));
	return hashmap_get(&s->streams, key, sizeof(key));
}

/* --- deferred work --- */

void yamux__sched(struct yamux_session *s)
{
	if (s->idle_active || s->handles_closing)
		return;
	s->idle_active = 1;
	uv_idle_start(&s->idle, on_idle);
}

void yamux__close_transport(struct yamux_session *s)
{
	if (s->transport && !s->transport_closing) {
		s->transport_closing = 1;
		io_close(s->transport);
	}
	yamux__timer_update(s);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct yamux_session *s = h->data;

	if (--s->handles_open)
		return;
	hashmap_release(&s->streams);
	strbuf_release(&s->preread);
	free(s);
}

void yamux__maybe_free(struct yamux_session *s)
{
	if (s->transport || s->nstreams || s->dials || s->handles_closing)
		return;
	s->handles_closing = 1;
	s->idle_active = 0;
	uv_close((uv_handle_t *)&s->idle, on_handle_closed);
	uv_close((uv_handle_t *)&s->timer, on_handle_closed);
}

void yamux__slot_release(struct yamux_stream *st)
{
	struct yamux_session *s = st->s;

	if (!st->has_slot)
		return;
	st->has_slot = 0;
	s->slots_used--;
	while (!s->dying && s->slots_used < s->opts.accept_backlog && !yamux_link_empty(&s->syn_wait)) {
		struct yamux_stream *w = container_of(s->syn_wait.next, struct yamux_stream, wait);

		yamux_link_remove(&w->wait);
		w->syn_waiting = 0;
		w->has_slot = 1;
		s->slots_used++;
		yamux__stream_update(w);
	}
}

/* --- teardown --- */

void yamux__session_die(struct yamux_session *s, int reason, int goaway)
{
	struct yamux_link *l;

	if (s->dying)
		return;
	s->dying = 1;
	s->reason = reason;
	if (s->transport && !s->transport_closing)
		io_read_stop(s->transport);
	for (l = s->all.next; l != &s->all; l = l->next)
		yamux__stream_kill(container_of(l, struct yamux_stream, all));
	s->ctlq_nr = 0;
	s->payload_left = 0;
	s->payload_st = NULL;
	if (goaway >= 0 && !s->goaway_sent && s->transport && !s->transport_closing) {
		s->goaway_code = goaway;
		s->grace_deadline = now_ms() + YAMUX_GOAWAY_GRACE_MS;
		yamux__timer_update(s);
		yamux__flush(s);
	} else {
		s->goaway_code = -1;
		yamux__close_transport(s);
	}
	yamux__sched(s);
}

static void protocol_error(struct yamux_session *s, const char *why, uint32_t id)
{
	log_msgf(LOG_WARN, "yamux: protocol error from \"%s\": %s (stream %u)", s->peer, why, id);
	yamux__session_die(s, -EPROTO, YAMUX_GOAWAY_PROTOCOL);
}

static void fail_pings(struct yamux_session *s)
{
	while (s->pings) {
		struct yamux_ping *p = s->pings;

		s->pings = p->next;
		if (p->cb)
			p->cb(s, -ECANCELED, 0, p->arg);
		free(p);
	}
}

static void on_transport_close(struct io *io)
{
	struct yamux_session *s = io->data;

	s->transport = NULL;
	fail_pings(s);
	yamux__timer_update(s);
	if (!s->notified) {
		s->notified = 1;
		if (s->opts.on_close)
			s->opts.on_close(s, s->reason, s->opts.data);
	}
	yamux__sched(s);     /* streams still owned finish from the idle handle */
	yamux__maybe_free(s);
}

/* --- reading --- */

static void handle_ping(struct yamux_session *s, const struct yamux_hdr *h)
{
	struct yamux_ping **pp, *p;

	if (h->flags & YAMUX_SYN) {
		/* When we cannot keep up with the peer's pings, their answers are dropped. */
		yamux__ctlq_push(s, YAMUX_PING, YAMUX_ACK, 0, h->length);
		return;
	}
	if (!(h->flags & YAMUX_ACK))
		return;
	for (pp = &s->pings; (p = *pp); pp = &p->next) {
		if (p->id == h->length) {
			*pp = p->next;
			if (p->cb)
				p->cb(s, 0, now_ms() - p->sent_ms, p->arg);
			free(p);
			return;
		}
	}
}

static void handle_goaway(struct yamux_session *s, const struct yamux_hdr *h)
{
	switch (h->length) {
	case YAMUX_GOAWAY_NORMAL:
		s->remote_goaway = 1;
		break;
	case YAMUX_GOAWAY_PROTOCOL:
		log_msgf(LOG_WARN, "yamux: \"%s\" went away reporting a protocol error", s->peer);
		yamux__session_die(s, -EPROTO, -1);
		break;
	default:
		log_msgf(LOG_WARN, "yamux: \"%s\" went away with error code %u", s->peer, h->length);
		yamux__session_die(s, -ECONNABORTED, -1);
		break;
	}
}

/* A SYN from the peer: a new stream, refused, or a protocol error (NULL, check s->dying). */
static struct yamux_stream *incoming_stream(struct yamux_session *s, const struct yamux_hdr *h)
{
	struct yamux_stream *st;
	uint32_t id = h->stream_id;

	if (!id || is_ours(s, id)) {
		protocol_error(s, "SYN for a stream id of ours", id);
		return NULL;
	}
	if (lookup(s, id)) {
		protocol_error(s, "SYN for a stream already open", id);
		return NULL;
	}
	if (id > s->last_peer_id)
		s->last_peer_id = id;
	if (h->flags & YAMUX_RST)
		return NULL;
	if (s->local_goaway || s->dying || !s->opts.on_accept || s->nstreams >= s->opts.max_streams) {
		if (yamux__ctlq_push(s, YAMUX_WINDOW_UPDATE, YAMUX_RST, id, 0) < 0)
			protocol_error(s, "too many refused streams", id);
		return NULL;
	}
	st = yamux__stream_new(s, id);
	st->need_ack = 1;
	yamux__stream_update(st);
	s->opts.on_accept(s, &st->io, s->opts.data);
	return st;
}

/* No SYN and no such stream: finished (ignore) or never opened (error). */
static int stale_id(const struct yamux_session *s, uint32_t id)
{
	if (!id)
		return 0;
	if (is_ours(s, id))
		return id < s->next_id;
	return id <= s->last_peer_id;
}

static void handle_stream_frame(struct yamux_session *s, const struct yamux_hdr *h)
{
	struct yamux_stream *st;

	s->payload_st = NULL;
	s->payload_fin = 0;
	s->payload_left = h->type == YAMUX_DATA ? h->length : 0;

	if (h->flags & YAMUX_SYN) {
		st = incoming_stream(s, h);
		if (s->dying)
			return;
	} else {
		st = lookup(s, h->stream_id);
		if (!st && !stale_id(s, h->stream_id)) {
			protocol_error(s, "frame for a stream never opened", h->stream_id);
			return;
		}
	}
	if (!st)
		return;   /* the payload, if any, is skipped */
	if ((h->flags & YAMUX_ACK) && !st->need_syn)
		yamux__slot_release(st);
	if (h->flags & YAMUX_RST) {
		yamux__stream_on_rst(st);
		return;
	}
	if (h->type == YAMUX_WINDOW_UPDATE) {
		if ((uint64_t)st->send_window + h->length > UINT32_MAX) {
			protocol_error(s, "send window overflow", h->stream_id);
			return;
		}
		st->send_window += h->length;
		yamux__stream_update(st);
		if (h->flags & YAMUX_FIN)
			yamux__stream_on_fin(st);
		return;
	}
	if (h->length > st->recv_window) {
		protocol_error(s, "receive window exceeded", h->stream_id);
		return;
	}
	st->recv_window -= h->length;
	s->payload_st = st;
	s->payload_fin = !!(h->flags & YAMUX_FIN);
}

static void payload_end(struct yamux_session *s)
{
	if (s->payload_st && s->payload_fin)
		yamux__stream_on_fin(s->payload_st);
	s->payload_st = NULL;
	s->payload_fin = 0;
}

static void handle_header(struct yamux_session *s)
{
	struct yamux_hdr h;

	yamux_hdr_decode(s->hdr, &h);
	if (h.version != YAMUX_VERSION) {
		protocol_error(s, "unknown version", h.stream_id);
		return;
	}
	switch (h.type) {
	case YAMUX_DATA:
	case YAMUX_WINDOW_UPDATE:
		handle_stream_frame(s, &h);
		if (!s->dying && !s->payload_left)
			payload_end(s);
		break;
	case YAMUX_PING:
		handle_ping(s, &h);
		break;
	case YAMUX_GO_AWAY:
		handle_goaway(s, &h);
		break;
	default:
		protocol_error(s, "unknown frame type", h.stream_id);
		break;
	}
}

/* Parse transport bytes. Payloads stream through without being reassembled. */
static void parse(struct yamux_session *s, const char *p, size_t n)
{
	while (n && !s->dying) {
		size_t k;

		if (s->payload_left) {
			k = MIN(n, (size_t)s->payload_left);
			s->payload_left -= (uint32_t)k;
			if (s->payload_st)
				yamux__stream_on_data(s->payload_st, p, k);
			p += k;
			n -= k;
			if (!s->dying && !s->payload_left)
				payload_end(s);
			continue;
		}
		k = MIN(n, YAMUX_HDR_LEN - s->hdr_len);
		memcpy(s->hdr + s->hdr_len, p, k);
		s->hdr_len += k;
		p += k;
		n -= k;
		if (s->hdr_len < YAMUX_HDR_LEN)
			break;
		s->hdr_len = 0;
		handle_header(s);
	}
}

static void on_transport_read(struct io *io, const char *buf, ssize_t n)
{
	struct yamux_session *s = io->data;

	if (s->dying)
		return;
	if (n < 0) {
		yamux__session_die(s, (int)n, -1);
		return;
	}
	s->bytes_in += (uint64_t)n;
	parse(s, buf, (size_t)n);
}

static void start_reading(struct yamux_session *s)
{
	int rc = io_read_start(s->transport);

	if (rc < 0)
		yamux__session_die(s, rc, -1);
}

/* --- idle handle and timer --- */

static void on_idle(uv_idle_t *h)
{
	struct yamux_session *s = h->data;
	struct yamux_link local;

	if (s->preread.len) {
		struct strbuf pre = s->preread;

		strbuf_init(&s->preread, 0);
		parse(s, pre.buf, pre.len);
		strbuf_release(&pre);
		if (!s->dying)
			start_reading(s);
	}
	while (s->dials) {
		struct yamux_dial *d = s->dials;
		struct io *io = NULL;
		int rc;

		s->dials = d->next;
		if (!s->dials)
			s->dials_tail = &s->dials;
		rc = yamux_open_stream(s, &io);
		d->done(d->arg, rc < 0 ? NULL : io, rc);
		free(d);
	}
	yamux__flush(s);

	yamux_link_init(&local);
	if (!yamux_link_empty(&s->svc)) {
		local.next = s->svc.next;
		local.prev = s->svc.prev;
		local.next->prev = &local;
		local.prev->next = &local;
		yamux_link_init(&s->svc);
	}
	while (!yamux_link_empty(&local)) {
		struct yamux_stream *st = container_of(local.next, struct yamux_stream, svc);

		yamux_link_remove(&st->svc);
		yamux__stream_service(st);
	}
	yamux__flush(s);

	if (yamux_link_empty(&s->svc) && !s->dials && !s->preread.len && !s->handles_closing) {
		uv_idle_stop(&s->idle);
		s->idle_active = 0;
	}
	yamux__maybe_free(s);
}

static void keepalive_pong(struct yamux_session *s, int status, uint64_t rtt_ms, void *arg)
{
	s->ka_sent_ms = 0;
	s->ka_next_ms = now_ms() + s->opts.keepalive_ms;
	yamux__timer_update(s);
}

static void on_timer(uv_timer_t *t)
{
	struct yamux_session *s = t->data;
	uint64_t now = now_ms();

	if (s->dying) {
		if (s->grace_deadline && now >= s->grace_deadline)
			yamux__close_transport(s);
		yamux__timer_update(s);
		return;
	}
	if (s->opts.keepalive_ms) {
		if (s->ka_sent_ms && now >= s->ka_sent_ms + s->opts.keepalive_timeout_ms) {
			log_msgf(LOG_WARN, "yamux: keepalive ping to \"%s\" not answered", s->peer);
			yamux__session_die(s, -ETIMEDOUT, -1);
			return;
		}
		if (!s->ka_sent_ms && now >= s->ka_next_ms) {
			if (yamux_session_ping(s, keepalive_pong, NULL) == 0)
				s->ka_sent_ms = now ? now : 1;
			else
				s->ka_next_ms = now + s->opts.keepalive_ms;
		}
	}
	while (!yamux_link_empty(&s->closing)) {
		struct yamux_stream *st = container_of(s->closing.next, struct yamux_stream, closing);

		if (st->close_deadline > now)
			break;
		yamux_link_remove(&st->closing);
		yamux__stream_abort(st);
	}
	yamux__timer_update(s);
}

/* One timer for keepalive, closing streams' deadlines and the go-away grace. */
void yamux__timer_update(struct yamux_session *s)
{
	uint64_t next = UINT64_MAX, now;

	if (s->handles_closing)
		return;
	if (s->dying) {
		if (s->transport && !s->transport_closing && s->grace_deadline)
			next = s->grace_deadline;
	} else {
		if (s->opts.keepalive_ms)
			next = s->ka_sent_ms ? s->ka_sent_ms + s->opts.keepalive_timeout_ms : s->ka_next_ms;
		if (!yamux_link_empty(&s->closing)) {
			struct yamux_stream *st = container_of(s->closing.next, struct yamux_stream, closing);
			next = MIN(next, st->close_deadline);
		}
	}
	if (next == UINT64_MAX) {
		uv_timer_stop(&s->timer);
		return;
	}
	now = now_ms();
	uv_timer_start(&s->timer, on_timer, next > now ? next - now : 0, 0);
}

/* --- public --- */

struct yamux_session *yamux_session_new(uv_loop_t *loop, struct io *transport, int is_client,
					const struct yamux_opts *opts)
{
	struct yamux_session *s = xcalloc(1, sizeof(*s));

	s->loop = loop;
	s->transport = transport;
	if (opts)
		s->opts = *opts;
	else
		yamux_opts_default(&s->opts);
	opts_normalize(&s->opts);
	s->opts.preread = NULL;
	s->opts.preread_len = 0;
	s->is_client = !!is_client;
	snprintf(s->peer, sizeof(s->peer), "%s", io_peer(transport));

	hashmap_init(&s->streams);
	yamux_link_init(&s->all);
	yamux_link_init(&s->syn_wait);
	yamux_link_init(&s->ctl);
	yamux_link_init(&s->data);
	yamux_link_init(&s->svc);
	yamux_link_init(&s->closing);
	s->next_id = is_client ? 1 : 2;
	s->goaway_code = -1;
	s->dials_tail = &s->dials;
	strbuf_init(&s->preread, 0);
	if (opts && opts->preread_len)
		strbuf_add(&s->preread, opts->preread, opts->preread_len);

	uv_idle_init(loop, &s->idle);
	s->idle.data = s;
	uv_timer_init(loop, &s->timer);
	s->timer.data = s;
	s->handles_open = 2;

	transport->data = s;
	transport->on_read = on_transport_read;
	transport->on_close = on_transport_close;

	if (s->opts.keepalive_ms) {
		s->ka_next_ms = now_ms() + s->opts.keepalive_ms;
		yamux__timer_update(s);
	}
	if (s->preread.len)
		yamux__sched(s);   /* parsed before the transport is read, in order */
	else
		start_reading(s);
	return s;
}

int yamux_open_stream(struct yamux_session *s, struct io **out)
{
	struct yamux_stream *st;

	if (s->dying)
		return -ECONNRESET;
	if (s->remote_goaway)
		return -ECONNREFUSED;
	if (s->nstreams >= s->opts.max_streams)
		return -EMFILE;
	if (s->next_id > UINT32_MAX)
		return -ENOSPC;
	st = yamux__stream_new(s, (uint32_t)s->next_id);
	s->next_id += 2;
	st->need_syn = 1;
	if (s->slots_used < s->opts.accept_backlog) {
		st->has_slot = 1;
		s->slots_used++;
	} else {
		st->syn_waiting = 1;
		yamux_link_append(&s->syn_wait, &st->wait);
	}
	yamux__stream_update(st);
	*out = &st->io;
	return 0;
}

int yamux_dial(uv_loop_t *loop, const char *target, void *dial_data,
	       void (*done)(void *arg, struct io *io, int status), void *arg)
{
	struct yamux_session *s = dial_data;
	struct yamux_dial *d;

	if (!s)
		return -EINVAL;
	if (s->dying)
		return -ECONNRESET;
	if (s->remote_goaway)
		return -ECONNREFUSED;
	d = xcalloc(1, sizeof(*d));
	d->done = done;
	d->arg = arg;
	*s->dials_tail = d;
	s->dials_tail = &d->next;
	yamux__sched(s);
	return 0;
}

void yamux_session_goaway(struct yamux_session *s)
{
	if (s->dying || s->local_goaway)
		return;
	s->local_goaway = 1;   /* refuse SYNs from now on, even before the frame is out */
	s->goaway_code = YAMUX_GOAWAY_NORMAL;
	yamux__sched(s);
}

void yamux_session_close(struct yamux_session *s)
{
	yamux__session_die(s, 0, YAMUX_GOAWAY_NORMAL);
}

int yamux_session_ping(struct yamux_session *s, yamux_ping_cb cb, void *arg)
{
	struct yamux_ping *p;
	uint32_t id;
	int rc;

	if (s->dying)
		return -ECONNRESET;
	id = s->next_ping_id++;
	rc = yamux__ctlq_push(s, YAMUX_PING, YAMUX_SYN, 0, id);
	if (rc < 0)
		return rc;
	p = xcalloc(1, sizeof(*p));
	p->id = id;
	p->sent_ms = now_ms();
	p->cb = cb;
	p->arg = arg;
	p->next = s->pings;
	s->pings = p;
	return 0;
}

void *yamux_session_data(const struct yamux_session *s) { return s->opts.data; }
void yamux_session_set_data(struct yamux_session *s, void *data) { s->opts.data = data; }
int yamux_session_is_client(const struct yamux_session *s) { return s->is_client; }
int yamux_session_is_closing(const struct yamux_session *s) { return s->dying; }

void yamux_session_stats(const struct yamux_session *s, struct yamux_session_stats *out)
{
	out->streams = s->nstreams;
	out->tx_inflight = s->tx_bytes;
	out->bytes_in = s->bytes_in;
	out->bytes_out = s->bytes_out;
}
