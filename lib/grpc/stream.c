/* The side-independent half of a gRPC call: message delivery, send queue, deadline, header fields. */
#include "stream.h"
#include "../base/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct gstream_deadline {
	uv_timer_t timer;
	struct gstream *s;         /* NULL once the stream is released */
};

void gstream_init(struct gstream *s, const struct gstream_ops *ops, size_t max_recv_msg)
{
	memset(s, 0, sizeof(*s));
	s->ops = ops;
	grpc_framer_init(&s->in, max_recv_msg);
}

static void on_dl_close(uv_handle_t *h)
{
	free(container_of((uv_timer_t *)h, struct gstream_deadline, timer));
}

void gstream_release(struct gstream *s)
{
	if (s->dl) {
		/* the timer may already be due in this loop iteration: it finds no stream */
		s->dl->s = NULL;
		uv_close((uv_handle_t *)&s->dl->timer, on_dl_close);
		s->dl = NULL;
	}
	grpc_framer_release(&s->in);
	outq_clear(&s->out);
}

static void on_dl_fire(uv_timer_t *t)
{
	struct gstream *s = container_of(t, struct gstream_deadline, timer)->s;
	if (!s || s->notified)
		return;
	s->ops->on_deadline(s);
}

void gstream_deadline_start(struct gstream *s, uv_loop_t *loop, uint64_t ms)
{
	s->dl = xcalloc(1, sizeof(*s->dl));
	s->dl->s = s;
	uv_timer_init(loop, &s->dl->timer);
	uv_timer_start(&s->dl->timer, on_dl_fire, ms, 0);
}

/* --- connections --- */

nghttp2_session *gstream_session_new(int server, const nghttp2_session_callbacks *cbs, void *data,
				     nghttp2_settings_entry role, uint32_t stream_window)
{
	nghttp2_session *session;
	nghttp2_option *opt;
	nghttp2_settings_entry iv[3];

	nghttp2_option_new(&opt);
	/* we return stream windows ourselves, only as the application reads */
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_max_outbound_ack(opt, 10000);
	if (server)
		nghttp2_session_server_new2(&session, cbs, data, opt);
	else
		nghttp2_session_client_new2(&session, cbs, data, opt);
	nghttp2_option_del(opt);

	iv[0] = role;
	iv[1].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE;
	iv[1].value = stream_window;
	iv[2].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE;
	iv[2].value = GSTREAM_MAX_HEADER_BYTES;
	nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, iv, 3);
	nghttp2_session_set_local_window_size(session, NGHTTP2_FLAG_NONE, 0, GSTREAM_CONN_WINDOW);
	return session;
}

static void wlist_add(struct gstream *s)
{
	if (s->in_wlist)
		return;
	s->in_wlist = 1;
	s->wnext = s->conn->wlist;
	s->conn->wlist = s;
}

void gstream_wlist_remove(struct gstream *s)
{
	struct gstream **pp;
	if (!s->in_wlist)
		return;
	for (pp = &s->conn->wlist; *pp; pp = &(*pp)->wnext) {
		if (*pp == s) {
			*pp = s->wnext;
			break;
		}
	}
	s->in_wlist = 0;
}

void gstream_after_flush(struct h2_conn *h2)
{
	struct gstream_conn *c = container_of(h2, struct gstream_conn, h2);
	while (c->wlist) {
		struct gstream *s = c->wlist;
		c->wlist = s->wnext;
		s->in_wlist = 0;
		if (s->notified || !s->want_writable || s->out.bytes >= GRPC_SEND_LOW_WATER)
			continue;
		s->want_writable = 0;
		if (s->ops->on_writable)
			s->ops->on_writable(s);
	}
}

/* --- receiving --- */

void gstream_recv_data(nghttp2_session *session, int32_t stream_id, struct gstream *s,
		       const uint8_t *data, size_t len)
{
	/* The connection window is never held back: only streams are flow controlled. */
	nghttp2_session_consume_connection(session, len);
	if (!s || s->notified) {
		nghttp2_session_consume_stream(session, stream_id, len);
		return;
	}
	grpc_framer_push(&s->in, data, len);
	/*
	 * Window goes back at once unless the application paused: a message may
	 * be larger than the window, and the framer caps what one message
	 * buffers. While paused the peer can send at most one window more.
	 */
	if (s->paused)
		s->unconsumed += len;
	else
		nghttp2_session_consume_stream(session, stream_id, len);
	gstream_deliver(s);
}

void gstream_deliver(struct gstream *s)
{
	size_t consumed = 0;
	if (s->delivering)
		return;
	s->delivering = 1;
	while (!s->paused && !s->notified) {
		const uint8_t *msg;
		size_t len;
		int rc = grpc_framer_peek(&s->in, &msg, &len);
		if (rc == 0)
			break;
		if (rc < 0) {
			struct strbuf m = STRBUF_INIT;
			enum grpc_code code = GRPC_INTERNAL;
			if (rc == -EMSGSIZE) {
				code = GRPC_RESOURCE_EXHAUSTED;
				strbuf_addf(&m, "grpc: received message larger than max (%zu vs. %zu)",
					    len, s->in.max_msg);
			} else {
				strbuf_addstr(&m, "grpc: compressed message received but no compression was negotiated");
			}
			grpc_framer_release(&s->in);
			s->ops->on_bad_message(s, code, m.buf);
			strbuf_release(&m);
			break;
		}
		s->ops->on_message(s, msg, len);
		if (s->notified)
			break;
		consumed += grpc_framer_consume(&s->in);
	}
	/* window goes back for bytes that left the buffer; all of it once nothing is held back */
	if (s->unconsumed && !s->notified && !s->stream_closed && s->conn && s->conn->h2.session) {
		size_t n = s->paused ? MIN(consumed, s->unconsumed) : s->unconsumed;
		s->unconsumed -= n;
		if (n) {
			nghttp2_session_consume_stream(s->conn->h2.session, s->id, n);
			h2_conn_flush(&s->conn->h2);
		}
	}
	s->delivering = 0;
	if (s->ops->after_deliver)
		s->ops->after_deliver(s);
}

void gstream_pause(struct gstream *s)
{
	s->paused = 1;
}

void gstream_resume(struct gstream *s)
{
	if (!s->paused)
		return;
	s->paused = 0;
	if (!s->delivering)
		gstream_deliver(s);
}

/* --- sending --- */

void gstream_queue(struct gstream *s, const void *msg, size_t len)
{
	outq_push_msg(&s->out, msg, len);
	if (s->out.bytes >= GRPC_SEND_HIGH_WATER)
		s->want_writable = 1;
}

int gstream_send_full(const struct gstream *s)
{
	return s->out.bytes >= GRPC_SEND_HIGH_WATER;
}

void gstream_kick(struct gstream *s)
{
	if (!s->conn)
		return; /* client call still pending: sent once submitted */
	if (s->deferred) {
		s->deferred = 0;
		nghttp2_session_resume_data(s->conn->h2.session, s->id);
	}
	h2_conn_flush(&s->conn->h2);
}

ssize_t gstream_data_read(struct gstream *s, uint8_t *buf, size_t length, uint32_t *data_flags, int last)
{
	size_t n = outq_read(&s->out, buf, length);

	if (s->want_writable && s->out.bytes < GRPC_SEND_LOW_WATER && s->conn)
		wlist_add(s);
	if (s->out.bytes == 0 && last) {
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
		return (ssize_t)n;
	}
	if (n == 0) {
		s->deferred = 1;
		return NGHTTP2_ERR_DEFERRED;
	}
	return (ssize_t)n;
}

/* --- header fields --- */

static void hdrs_push(struct gstream_hdrs *h, const char *name, size_t nlen, const char *value, size_t vlen)
{
	ALLOC_GROW(h->nv, h->nr + 1, h->alloc);
	h->nv[h->nr].name = (uint8_t *)name;
	h->nv[h->nr].value = (uint8_t *)value;
	h->nv[h->nr].namelen = nlen;
	h->nv[h->nr].valuelen = vlen;
	h->nv[h->nr].flags = NGHTTP2_NV_FLAG_NONE;
	h->nr++;
}

static const char *hdrs_own(struct gstream_hdrs *h, struct strbuf *value, size_t *len)
{
	ALLOC_GROW(h->owned, h->nr_owned + 1, h->alloc_owned);
	h->owned[h->nr_owned] = strbuf_detach(value, len);
	return h->owned[h->nr_owned++];
}

void gstream_hdrs_add(struct gstream_hdrs *h, const char *name, const char *value)
{
	hdrs_push(h, name, strlen(name), value, strlen(value));
}

void gstream_hdrs_add_owned(struct gstream_hdrs *h, const char *name, struct strbuf *value)
{
	size_t len;
	const char *v = hdrs_own(h, value, &len);
	hdrs_push(h, name, strlen(name), v, len);
}

void gstream_hdrs_add_md(struct gstream_hdrs *h, const struct grpc_metadata *md)
{
	if (!md)
		return;
	for (size_t i = 0; i < md->nr; i++) {
		const struct grpc_md *e = &md->v[i];
		size_t klen = strlen(e->key);
		if (grpc_metadata_is_reserved(e->key, klen))
			continue;
		if (grpc_metadata_is_binary(e->key, klen)) {
			struct strbuf enc = STRBUF_INIT;
			size_t len;
			const char *v;
			grpc_base64_encode(&enc, e->value, e->value_len);
			v = hdrs_own(h, &enc, &len);
			hdrs_push(h, e->key, klen, v, len);
		} else {
			hdrs_push(h, e->key, klen, e->value, e->value_len);
		}
	}
}

void gstream_hdrs_release(struct gstream_hdrs *h)
{
	for (size_t i = 0; i < h->nr_owned; i++)
		free(h->owned[i]);
	free(h->owned);
	free(h->nv);
	memset(h, 0, sizeof(*h));
}

int gstream_header_count(struct gstream *s, size_t namelen, size_t valuelen)
{
	s->header_bytes += namelen + valuelen + 32;
	return s->header_bytes > GSTREAM_MAX_HEADER_BYTES ? -1 : 0;
}

void gstream_header_md(struct grpc_metadata *md, const char *k, size_t klen, const char *v, size_t vlen)
{
	if (grpc_metadata_is_reserved(k, klen))
		return;
	if (grpc_metadata_is_binary(k, klen)) {
		struct strbuf dec = STRBUF_INIT;
		if (grpc_base64_decode(&dec, v, vlen) == 0)
			grpc_metadata_add(md, k, klen, dec.buf, dec.len);
		strbuf_release(&dec);
	} else {
		grpc_metadata_add(md, k, klen, v, vlen);
	}
}
