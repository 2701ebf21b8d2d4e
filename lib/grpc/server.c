/* gRPC server: HTTP/2 connections, call dispatch, streaming with backpressure, shutdown. */
#include "server.h"
#include "stream.h"
#include "listen.h"
#include "methods.h"
#include "../h2/conn.h"
#include "../h2/io.h"
#include "../base/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct srv_conn;

struct grpc_call {
	struct gstream s;                  /* framing, flow control, send queue, deadline */
	struct grpc_call *prev, *next;     /* conn's call list */

	struct strbuf path;
	struct strbuf content_type;
	int method_post;
	struct grpc_metadata md;
	struct grpc_metadata tags;
	uint64_t timeout_ns;
	uint64_t deadline;                 /* now_ms() clock, 0 = none */
	uint64_t start_ns;

	const struct grpc_call_ops *ops;
	void *user;
	void (*close_cb)(struct grpc_call *, enum grpc_code, void *);
	void *close_arg;

	/* unary adapter */
	grpc_unary_fn unary;
	void *unary_data;
	struct strbuf unary_req;
	int unary_count;

	/* receiving */
	int remote_closed;        /* END_STREAM received */
	int half_close_fired;
	int started;              /* handler dispatched */

	/* sending */
	int headers_sent;
	int finished;             /* grpc_call_finish() called */
	int status_sent;          /* END_STREAM with status written */
	enum grpc_code code;
	struct strbuf message;
	struct grpc_metadata trailers;

	int deadline_hit;
	enum grpc_code close_code;
	int counted;              /* stats on_start fired */
	int fallback;             /* dispatched to the fallback handler */
};

struct srv_conn {
	struct gstream_conn gc;   /* the h2_conn and the streams waiting for on_writable */
	struct grpc_server *srv;
	struct srv_conn *prev, *next;
	struct grpc_call *calls;
	size_t ncalls;
	int goaway_notice;        /* first GOAWAY (no stream refused yet) and its PING sent */
	int goaway_sent;          /* the final GOAWAY */
};

struct grpc_server {
	uv_loop_t *loop;
	struct grpc_server_opts opts;
	struct gmethods methods;
	grpc_start_fn fallback;
	void *fallback_data;
	struct grpc_server_hooks hooks;
	int have_hooks;
	struct grpc_server_stats stats;
	void (*accept_fn)(struct grpc_server *s, struct io *io, void *data);
	void *accept_data;

	struct glisten listen;
	struct srv_conn *conns;
	size_t nconns;
	size_t active_calls;
	uint64_t accepted;

	int shutting_down;
	uv_timer_t *grace_timer;
	uv_timer_t *notice_timer;
	void (*shutdown_done)(struct grpc_server *, void *);
	void *shutdown_arg;
	int shutdown_reported;
};

static void call_notify_close(struct grpc_call *call, enum grpc_code code);
static void call_free(struct grpc_call *call);
static void server_check_shutdown_done(struct grpc_server *s);
static void on_accept(struct glisten *g, struct io *io);
static void on_listener_closed(struct glisten *g);
static void conn_final_goaway(struct srv_conn *c);

/* Opaque data of the PING that follows the shutdown notice. */
static const uint8_t goaway_ping[8] = { 'g', 'o', 'a', 'w', 'a', 'y', '0', '1' };
/* A peer that does not answer the PING gets the final GOAWAY after this. */
#define GOAWAY_NOTICE_MS 1000

void grpc_server_opts_default(struct grpc_server_opts *o)
{
	o->max_recv_msg = 4 * 1024 * 1024;
	o->max_concurrent_streams = 10000;
	o->stream_window = 1024 * 1024;
	o->keepalive_ms = 5 * 60 * 1000;
	o->keepalive_timeout_ms = 20 * 1000;
}

struct grpc_server *grpc_server_new(uv_loop_t *loop, const struct grpc_server_opts *opts)
{
	struct grpc_server *s = xcalloc(1, sizeof(*s));
	s->loop = loop;
	s->listen.loop = loop;
	s->listen.on_accept = on_accept;
	s->listen.on_closed = on_listener_closed;
	grpc_server_opts_default(&s->opts);
	if (opts) {
		if (opts->max_recv_msg)
			s->opts.max_recv_msg = opts->max_recv_msg;
		if (opts->max_concurrent_streams)
			s->opts.max_concurrent_streams = opts->max_concurrent_streams;
		if (opts->stream_window)
			s->opts.stream_window = opts->stream_window;
		s->opts.keepalive_ms = opts->keepalive_ms;
		if (opts->keepalive_timeout_ms)
			s->opts.keepalive_timeout_ms = opts->keepalive_timeout_ms;
	}
	return s;
}

void grpc_server_free(struct grpc_server *s)
{
	if (!s)
		return;
	gmethods_release(&s->methods);
	free(s);
}

/* --- method table --- */

int grpc_server_add_method(struct grpc_server *s, const char *path, grpc_start_fn start, void *data)
{
	return gmethods_add(&s->methods, path, start, NULL, data);
}

int grpc_server_add_unary(struct grpc_server *s, const char *path, grpc_unary_fn fn, void *data)
{
	return gmethods_add(&s->methods, path, NULL, fn, data);
}

void grpc_server_set_fallback(struct grpc_server *s, grpc_start_fn start, void *data)
{
	s->fallback = start;
	s->fallback_data = data;
}

void grpc_server_set_hooks(struct grpc_server *s, const struct grpc_server_hooks *hooks)
{
	s->hooks = *hooks;
	s->have_hooks = 1;
}

void grpc_server_set_stats(struct grpc_server *s, const struct grpc_server_stats *stats)
{
	s->stats = *stats;
}

int grpc_call_is_fallback(const struct grpc_call *call)
{
	return call->fallback;
}

int grpc_server_has_service(const struct grpc_server *s, const char *name)
{
	return gmethods_has_service(&s->methods, name);
}

/* --- call accessors --- */

static struct srv_conn *call_conn(const struct grpc_call *call)
{
	return container_of(call->s.conn, struct srv_conn, gc);
}

void grpc_call_set_ops(struct grpc_call *call, const struct grpc_call_ops *ops, void *user)
{
	call->ops = ops;
	call->user = user;
}

const struct grpc_call_ops *grpc_call_ops(const struct grpc_call *call) { return call->ops; }
void *grpc_call_user(const struct grpc_call *call) { return call->user; }
void grpc_call_set_user(struct grpc_call *call, void *user) { call->user = user; }
const char *grpc_call_method(const struct grpc_call *call) { return call->path.buf; }
const struct grpc_metadata *grpc_call_metadata(const struct grpc_call *call) { return &call->md; }
uint64_t grpc_call_deadline(const struct grpc_call *call) { return call->deadline; }
uint64_t grpc_call_start_ns(const struct grpc_call *call) { return call->start_ns; }
struct grpc_server *grpc_call_server(const struct grpc_call *call) { return call_conn(call)->srv; }
struct io *grpc_call_io(const struct grpc_call *call) { return call->s.conn->h2.io; }
int grpc_call_is_closed(const struct grpc_call *call) { return call->s.notified; }
const struct grpc_metadata *grpc_call_tags(const struct grpc_call *call) { return &call->tags; }

void grpc_call_set_tag(struct grpc_call *call, const char *key, const char *value)
{
	grpc_metadata_remove(&call->tags, key);
	grpc_metadata_addstr(&call->tags, key, value ? value : "");
	/* log field names keep their case ("grpc.request.repoStorage") */
	free(call->tags.v[call->tags.nr - 1].key);
	call->tags.v[call->tags.nr - 1].key = xstrdup(key);
}
size_t grpc_call_send_queued(const struct grpc_call *call) { return call->s.out.bytes; }
int grpc_call_send_full(const struct grpc_call *call) { return gstream_send_full(&call->s); }

void grpc_call_on_close(struct grpc_call *call, void (*cb)(struct grpc_call *, enum grpc_code, void *), void *arg)
{
	call->close_cb = cb;
	call->close_arg = arg;
}

/* --- sending --- */

static ssize_t data_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
			    uint32_t *data_flags, nghttp2_data_source *source, void *user_data);

static int submit_headers(struct grpc_call *call, const struct grpc_metadata *md)
{
	struct gstream_hdrs h = GSTREAM_HDRS_INIT;
	nghttp2_data_provider prd;
	int rc;

	gstream_hdrs_add(&h, ":status", "200");
	gstream_hdrs_add(&h, "content-type", "application/grpc");
	gstream_hdrs_add_md(&h, md);
	prd.source.ptr = call;
	prd.read_callback = data_read_cb;
	rc = nghttp2_submit_response(call->s.conn->h2.session, call->s.id, h.nv, h.nr, &prd);
	gstream_hdrs_release(&h);
	if (rc == 0)
		call->headers_sent = 1;
	return rc;
}

/* Build status trailers (or Trailers-Only headers when `trailers_only`). */
static int submit_status(struct grpc_call *call, int trailers_only)
{
	struct gstream_hdrs h = GSTREAM_HDRS_INIT;
	struct strbuf msg = STRBUF_INIT;
	char code[12];
	int rc;

	snprintf(code, sizeof(code), "%d", (int)call->code);
	grpc_percent_encode(&msg, call->message.buf, call->message.len);
	if (trailers_only) {
		gstream_hdrs_add(&h, ":status", "200");
		gstream_hdrs_add(&h, "content-type", "application/grpc");
	}
	gstream_hdrs_add(&h, "grpc-status", code);
	if (msg.len)
		gstream_hdrs_add_owned(&h, "grpc-message", &msg);
	gstream_hdrs_add_md(&h, &call->trailers);
	if (trailers_only)
		rc = nghttp2_submit_response(call->s.conn->h2.session, call->s.id, h.nv, h.nr, NULL);
	else
		rc = nghttp2_submit_trailer(call->s.conn->h2.session, call->s.id, h.nv, h.nr);
	gstream_hdrs_release(&h);
	strbuf_release(&msg);
	if (rc == 0)
		call->headers_sent = 1;
	return rc;
}

static ssize_t data_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
			    uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	struct grpc_call *call = source->ptr;
	ssize_t n = gstream_data_read(&call->s, buf, length, data_flags, call->finished);

	if (*data_flags & NGHTTP2_DATA_FLAG_EOF) {
		/* the status goes in trailers, which end the stream */
		*data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		if (submit_status(call, 0) != 0)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	return n;
}

int grpc_call_send_headers(struct grpc_call *call, const struct grpc_metadata *md)
{
	if (call->s.notified || call->finished)
		return -EPIPE;
	if (call->headers_sent)
		return -EALREADY;
	if (submit_headers(call, md) != 0)
		return -EPIPE;
	h2_conn_flush(&call->s.conn->h2);
	return 0;
}

int grpc_call_send(struct grpc_call *call, const void *msg, size_t len)
{
	if (call->s.notified || call->finished)
		return -EPIPE;
	if (call->counted && call_conn(call)->srv->stats.on_msg_sent)
		call_conn(call)->srv->stats.on_msg_sent(call, call_conn(call)->srv->stats.data);
	gstream_queue(&call->s, msg, len);
	if (!call->headers_sent) {
		if (submit_headers(call, NULL) != 0)
			return -EPIPE;
		h2_conn_flush(&call->s.conn->h2);
		return 0;
	}
	gstream_kick(&call->s);
	return 0;
}

int grpc_call_finish(struct grpc_call *call, enum grpc_code code, const char *msg,
		     const struct grpc_metadata *trailers)
{
	if (call->s.notified || call->finished)
		return 0;
	call->finished = 1;
	call->code = code;
	strbuf_reset(&call->message);
	if (msg)
		strbuf_addstr(&call->message, msg);
	grpc_metadata_copy(&call->trailers, trailers);
	if (!call->headers_sent && call->s.out.bytes == 0) {
		if (submit_status(call, 1) != 0)
			return -EPIPE;
		h2_conn_flush(&call->s.conn->h2);
		return 0;
	}
	if (!call->headers_sent && submit_headers(call, NULL) != 0)
		return -EPIPE;
	gstream_kick(&call->s);
	return 0;
}

int grpc_call_finishf(struct grpc_call *call, enum grpc_code code, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;
	int rc;
	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	rc = grpc_call_finish(call, code, sb.buf, NULL);
	strbuf_release(&sb);
	return rc;
}

int grpc_call_reply(struct grpc_call *call, const void *msg, size_t len)
{
	int rc = grpc_call_send(call, msg, len);
	if (rc < 0)
		return rc;
	return grpc_call_finish(call, GRPC_OK, NULL, NULL);
}

void grpc_call_pause_recv(struct grpc_call *call)
{
	gstream_pause(&call->s);
}

void grpc_call_resume_recv(struct grpc_call *call)
{
	gstream_resume(&call->s);
}

/* --- what the stream tells the call --- */

static void stream_on_message(struct gstream *s, const uint8_t *msg, size_t len)
{
	struct grpc_call *call = container_of(s, struct grpc_call, s);
	struct grpc_server *srv = call_conn(call)->srv;
	if (call->counted && srv->stats.on_msg_recv)
		srv->stats.on_msg_recv(call, srv->stats.data);
	if (call->ops && call->ops->on_message)
		call->ops->on_message(call, msg, len);
}

static void stream_on_bad_message(struct gstream *s, enum grpc_code code, const char *msg)
{
	/* the status goes out first; on_frame_send then resets the stream */
	grpc_call_finish(container_of(s, struct grpc_call, s), code, msg, NULL);
}

/* After the buffered messages: a pending half-close, unless paused. */
static void stream_after_deliver(struct gstream *s)
{
	struct grpc_call *call = container_of(s, struct grpc_call, s);
	if (s->paused || s->notified || !call->remote_closed || call->half_close_fired)
		return;
	if (grpc_framer_buffered(&s->in) == 0) {
		call->half_close_fired = 1;
		if (call->ops && call->ops->on_half_close)
			call->ops->on_half_close(call);
	} else if (!call->finished) {
		/* a partial message followed by END_STREAM */
		grpc_call_finish(call, GRPC_INTERNAL, "grpc: stream ended inside a message", NULL);
	}
}

static void stream_on_writable(struct gstream *s)
{
	struct grpc_call *call = container_of(s, struct grpc_call, s);
	if (call->ops && call->ops->on_writable)
		call->ops->on_writable(call);
}

static void stream_on_deadline(struct gstream *s)
{
	struct grpc_call *call = container_of(s, struct grpc_call, s);
	call->deadline_hit = 1;
	if (!call->finished) {
		outq_clear(&s->out);
		grpc_call_finish(call, GRPC_DEADLINE_EXCEEDED, "context deadline exceeded", NULL);
	}
	/* Tell the handler now, even if the status cannot reach a stalled peer. */
	call_notify_close(call, GRPC_DEADLINE_EXCEEDED);
}

static const struct gstream_ops call_stream_ops = {
	.on_message = stream_on_message,
	.on_bad_message = stream_on_bad_message,
	.after_deliver = stream_after_deliver,
	.on_writable = stream_on_writable,
	.on_deadline = stream_on_deadline,
};

/* --- call lifecycle --- */

static void call_notify_close(struct grpc_call *call, enum grpc_code code)
{
	struct grpc_server *srv = call_conn(call)->srv;
	if (call->s.notified)
		return;
	call->s.notified = 1;
	call->close_code = code;
	gstream_wlist_remove(&call->s);
	if (call->started) {
		if (call->ops && call->ops->on_close)
			call->ops->on_close(call, code);
		if (call->close_cb)
			call->close_cb(call, code, call->close_arg);
	}
	if (srv->have_hooks && srv->hooks.on_call_end)
		srv->hooks.on_call_end(call, code, now_ns() - call->start_ns, srv->hooks.data);
	if (call->counted && srv->stats.on_end)
		srv->stats.on_end(call, code, now_ns() - call->start_ns, srv->stats.data);
}

static void call_free(struct grpc_call *call)
{
	struct srv_conn *c = call_conn(call);
	if (!call->s.notified)
		call_notify_close(call, call->status_sent ? call->code : GRPC_CANCELLED);
	gstream_wlist_remove(&call->s);
	if (call->prev)
		call->prev->next = call->next;
	else
		c->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	c->ncalls--;
	c->srv->active_calls--;
	gstream_release(&call->s);
	strbuf_release(&call->path);
	strbuf_release(&call->content_type);
	grpc_metadata_release(&call->md);
	grpc_metadata_release(&call->tags);
	strbuf_release(&call->unary_req);
	strbuf_release(&call->message);
	grpc_metadata_release(&call->trailers);
	free(call);
}

/* unary adapter */

static void unary_on_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	if (call->unary_count++ == 0) {
		strbuf_add(&call->unary_req, msg, len);
		return;
	}
	grpc_call_finish(call, GRPC_INTERNAL, "grpc: unary method received more than one request message", NULL);
}

static void unary_on_half_close(struct grpc_call *call)
{
	if (call->finished)
		return;
	if (call->unary_count != 1) {
		grpc_call_finish(call, GRPC_INTERNAL, "grpc: unary method received no request message", NULL);
		return;
	}
	call->unary(call, (const uint8_t *)call->unary_req.buf, call->unary_req.len, call->unary_data);
}

static const struct grpc_call_ops unary_ops = {
	.on_message = unary_on_message,
	.on_half_close = unary_on_half_close,
};

static void dispatch(struct grpc_call *call)
{
	struct grpc_server *s = call_conn(call)->srv;
	const struct gmethod *m;

	call->started = 1;
	if (!call->method_post) {
		grpc_call_finish(call, GRPC_INTERNAL, "grpc: only POST is supported", NULL);
		return;
	}
	if (strncmp(call->content_type.buf, "application/grpc", 16) ||
	    (call->content_type.buf[16] && call->content_type.buf[16] != '+' &&
	     call->content_type.buf[16] != ';')) {
		grpc_call_finishf(call, GRPC_INTERNAL, "grpc: invalid content-type \"%s\"", call->content_type.buf);
		return;
	}
	if (call->timeout_ns) {
		uint64_t ms = call->timeout_ns / 1000000 + (call->timeout_ns % 1000000 ? 1 : 0);
		call->deadline = now_ms() + ms;
		gstream_deadline_start(&call->s, s->loop, ms);
	}
	/* counted like upstream's interceptors: calls that have a handler, before authentication */
	m = gmethods_find(&s->methods, call->path.buf);
	call->fallback = !m && s->fallback;
	if (s->stats.on_start && (m || s->fallback)) {
		call->counted = 1;
		s->stats.on_start(call, s->stats.data);
	}
	if (s->have_hooks && s->hooks.on_call_start) {
		struct strbuf msg = STRBUF_INIT;
		enum grpc_code code = s->hooks.on_call_start(call, &msg, s->hooks.data);
		if (code != GRPC_OK) {
			grpc_call_finish(call, code, msg.buf, NULL);
			strbuf_release(&msg);
			return;
		}
		strbuf_release(&msg);
	}
	if (m && m->unary) {
		call->unary = m->unary;
		call->unary_data = m->data;
		call->ops = &unary_ops;
	} else if (m) {
		m->start(call, m->data);
	} else if (s->fallback) {
		s->fallback(call, s->fallback_data);
	} else {
		grpc_call_finishf(call, GRPC_UNIMPLEMENTED, "unknown method %s", call->path.buf);
		return;
	}
	if (!call->s.notified && !call->ops && !call->finished)
		grpc_call_finish(call, GRPC_INTERNAL, "grpc: handler installed no callbacks", NULL);
}

/* --- nghttp2 callbacks --- */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct srv_conn *c = user_data;
	struct grpc_call *call;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	call = xcalloc(1, sizeof(*call));
	gstream_init(&call->s, &call_stream_ops, c->srv->opts.max_recv_msg);
	call->s.conn = &c->gc;
	call->s.id = frame->hd.stream_id;
	call->start_ns = now_ns();
	strbuf_init(&call->path, 0);
	strbuf_init(&call->content_type, 0);
	strbuf_init(&call->unary_req, 0);
	strbuf_init(&call->message, 0);
	call->next = c->calls;
	if (c->calls)
		c->calls->prev = call;
	c->calls = call;
	c->ncalls++;
	c->srv->active_calls++;
	nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, call);
	return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data)
{
	struct grpc_call *call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	const char *k = (const char *)name, *v = (const char *)value;

	if (!call || call->started)
		return 0; /* trailers from a client carry nothing we use */
	if (gstream_header_count(&call->s, namelen, valuelen) < 0)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	if (namelen == 5 && !memcmp(k, ":path", 5)) {
		strbuf_reset(&call->path);
		strbuf_add(&call->path, v, valuelen);
	} else if (namelen == 7 && !memcmp(k, ":method", 7)) {
		call->method_post = valuelen == 4 && !memcmp(v, "POST", 4);
	} else if (namelen == 12 && !memcmp(k, "content-type", 12)) {
		strbuf_reset(&call->content_type);
		strbuf_add(&call->content_type, v, valuelen);
	} else if (namelen == 12 && !memcmp(k, "grpc-timeout", 12)) {
		if (grpc_timeout_parse(v, valuelen, &call->timeout_ns) < 0)
			call->timeout_ns = 0;
	} else {
		gstream_header_md(&call->md, k, namelen, v, valuelen);
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct srv_conn *c = user_data;
	struct grpc_call *call;

	h2_conn_on_frame(&c->gc.h2, frame);
	/* the peer saw the shutdown notice: every stream it opened before is known now */
	if (frame->hd.type == NGHTTP2_PING && (frame->hd.flags & NGHTTP2_FLAG_ACK) && c->goaway_notice &&
	    !memcmp(frame->ping.opaque_data, goaway_ping, sizeof(goaway_ping)))
		conn_final_goaway(c);
	if (frame->hd.stream_id == 0)
		return 0;
	call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (!call)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS && !call->started &&
	    (frame->hd.flags & NGHTTP2_FLAG_END_HEADERS))
		dispatch(call);
	if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
	    (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !call->remote_closed) {
		call->remote_closed = 1;
		if (!call->s.notified)
			gstream_deliver(&call->s);
	}
	return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
			 size_t len, void *user_data)
{
	struct grpc_call *call = nghttp2_session_get_stream_user_data(session, stream_id);

	/* a finished call discards what the client still sends */
	gstream_recv_data(session, stream_id, call && !call->finished ? &call->s : NULL, data, len);
	return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct grpc_call *call;
	if (frame->hd.type != NGHTTP2_HEADERS || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (!call)
		return 0;
	call->status_sent = 1;
	/* The status is out; a client still sending gets RST_STREAM(NO_ERROR), as gRPC servers do. */
	if (!call->remote_closed)
		nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
	return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data)
{
	struct grpc_call *call = nghttp2_session_get_stream_user_data(session, stream_id);
	struct srv_conn *c = user_data;
	if (!call)
		return 0;
	nghttp2_session_set_stream_user_data(session, stream_id, NULL);
	if (!call->s.notified)
		call_notify_close(call, call->status_sent ? call->code
				  : call->deadline_hit ? GRPC_DEADLINE_EXCEEDED : GRPC_CANCELLED);
	call_free(call);
	if (c->goaway_sent && c->ncalls == 0 && !c->gc.h2.closing)
		h2_conn_close_after_flush(&c->gc.h2);
	return 0;
}

/* --- connections --- */

static void conn_on_closed(struct h2_conn *h2, int reason)
{
	struct srv_conn *c = h2->data;
	struct grpc_server *s = c->srv;
	/* nghttp2_session_del() ran without stream callbacks: end what is left */
	while (c->calls)
		call_free(c->calls);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	free(c);
	server_check_shutdown_done(s);
}

static const struct h2_conn_hooks srv_conn_hooks = {
	.after_flush = gstream_after_flush,
	.on_closed = conn_on_closed,
};

static nghttp2_session_callbacks *server_callbacks(void)
{
	static nghttp2_session_callbacks *cbs;
	if (!cbs) {
		nghttp2_session_callbacks_new(&cbs);
		nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
		nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
		nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
		nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
		nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
		nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	}
	return cbs;
}

int grpc_server_adopt(struct grpc_server *s, struct io *io)
{
	struct srv_conn *c;
	nghttp2_session *session;
	nghttp2_settings_entry iv;

	if (s->shutdown_reported) {
		io_close(io);
		return -ESHUTDOWN;
	}
	c = xcalloc(1, sizeof(*c));
	c->srv = s;
	iv.settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS;
	iv.value = s->opts.max_concurrent_streams;
	session = gstream_session_new(1, server_callbacks(), c, iv, s->opts.stream_window);

	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	s->accepted++;
	h2_conn_init(&c->gc.h2, s->loop, io, session, &srv_conn_hooks, c,
		     s->opts.keepalive_ms, s->opts.keepalive_timeout_ms);
	if (s->shutting_down && !c->gc.h2.closing) {
		/*
		 * Accepted just before the listeners closed (or still sniffing a
		 * handshake then): serve what the client already sent, and let it
		 * move on through the same two GOAWAYs as everyone else.
		 */
		nghttp2_submit_shutdown_notice(c->gc.h2.session);
		nghttp2_submit_ping(c->gc.h2.session, NGHTTP2_FLAG_NONE, goaway_ping);
		c->goaway_notice = 1;
		h2_conn_flush(&c->gc.h2);
	}
	return 0;
}

/* --- listeners --- */

static void on_accept(struct glisten *g, struct io *io)
{
	struct grpc_server *s = container_of(g, struct grpc_server, listen);
	if (s->accept_fn)
		s->accept_fn(s, io, s->accept_data);
	else
		grpc_server_adopt(s, io);
}

static void on_listener_closed(struct glisten *g)
{
	server_check_shutdown_done(container_of(g, struct grpc_server, listen));
}

void grpc_server_set_accept(struct grpc_server *s, void (*fn)(struct grpc_server *s, struct io *io, void *data),
			    void *data)
{
	s->accept_fn = fn;
	s->accept_data = data;
}

uv_loop_t *grpc_server_loop(const struct grpc_server *s)
{
	return s->loop;
}

int grpc_server_listen(struct grpc_server *s, const char *addr, char *bound, size_t boundsz)
{
	return glisten_add(&s->listen, addr, bound, boundsz);
}

int grpc_server_listen_fd(struct grpc_server *s, int fd)
{
	return glisten_add_fd(&s->listen, fd, 0);
}

int grpc_server_listen_fd_tls(struct grpc_server *s, int fd)
{
	return glisten_add_fd(&s->listen, fd, 1);
}

void grpc_server_set_tls(struct grpc_server *s, struct ssl_ctx_st *ctx)
{
	s->listen.tls_ctx = ctx;
}

size_t grpc_server_listen_fds(struct grpc_server *s, int *fds, size_t max)
{
	return glisten_fds(&s->listen, fds, max);
}

void grpc_server_stop_listening(struct grpc_server *s)
{
	glisten_close(&s->listen);
}

size_t grpc_server_active_calls(const struct grpc_server *s)
{
	return s->active_calls;
}

uint64_t grpc_server_connections_accepted(const struct grpc_server *s)
{
	return s->accepted;
}

/* --- shutdown --- */

static void on_grace_closed(uv_handle_t *h)
{
	free(h);
}

static void server_check_shutdown_done(struct grpc_server *s)
{
	if (!s->shutting_down || s->shutdown_reported)
		return;
	if (s->conns || glisten_busy(&s->listen))
		return;
	s->shutdown_reported = 1;
	if (s->grace_timer) {
		uv_close((uv_handle_t *)s->grace_timer, on_grace_closed);
		s->grace_timer = NULL;
	}
	if (s->notice_timer) {
		uv_close((uv_handle_t *)s->notice_timer, on_grace_closed);
		s->notice_timer = NULL;
	}
	if (s->shutdown_done)
		s->shutdown_done(s, s->shutdown_arg);
}

static void conn_final_goaway(struct srv_conn *c)
{
	if (c->goaway_sent || c->gc.h2.closing)
		return;
	nghttp2_submit_goaway(c->gc.h2.session, NGHTTP2_FLAG_NONE,
			      nghttp2_session_get_last_proc_stream_id(c->gc.h2.session),
			      NGHTTP2_NO_ERROR, NULL, 0);
	c->goaway_sent = 1;
	if (c->ncalls == 0)
		h2_conn_close_after_flush(&c->gc.h2);
	else
		h2_conn_flush(&c->gc.h2);
}

static void on_notice_expired(uv_timer_t *t)
{
	struct grpc_server *s = t->data;
	for (struct srv_conn *c = s->conns; c; c = c->next)
		conn_final_goaway(c);
}

static void on_grace_expired(uv_timer_t *t)
{
	struct grpc_server *s = t->data;
	for (struct srv_conn *c = s->conns; c; c = c->next) {
		for (struct grpc_call *call = c->calls; call; call = call->next)
			call_notify_close(call, GRPC_UNAVAILABLE);
		h2_conn_close(&c->gc.h2, -ECANCELED);
	}
}

void grpc_server_shutdown(struct grpc_server *s, uint64_t grace_ms,
			  void (*done)(struct grpc_server *s, void *arg), void *arg)
{
	if (s->shutting_down)
		return;
	s->shutting_down = 1;
	s->shutdown_done = done;
	s->shutdown_arg = arg;
	grpc_server_stop_listening(s);
	/*
	 * Two GOAWAYs (docs/technical/grpc-core.md, "Shutdown"): a notice
	 * that refuses nothing, then, once the peer answered a PING sent
	 * after it (so it has stopped opening streams here), the final one. A
	 * single GOAWAY followed by a close races with requests the client is
	 * sending at that moment: they would fail instead of going to the new
	 * connection.
	 */
	for (struct srv_conn *c = s->conns; c; c = c->next) {
		if (c->gc.h2.closing)
			continue;
		nghttp2_submit_shutdown_notice(c->gc.h2.session);
		nghttp2_submit_ping(c->gc.h2.session, NGHTTP2_FLAG_NONE, goaway_ping);
		c->goaway_notice = 1;
		h2_conn_flush(&c->gc.h2);
	}
	s->notice_timer = xcalloc(1, sizeof(*s->notice_timer));
	uv_timer_init(s->loop, s->notice_timer);
	s->notice_timer->data = s;
	uv_timer_start(s->notice_timer, on_notice_expired, MIN(grace_ms, GOAWAY_NOTICE_MS), 0);
	s->grace_timer = xcalloc(1, sizeof(*s->grace_timer));
	uv_timer_init(s->loop, s->grace_timer);
	s->grace_timer->data = s;
	uv_timer_start(s->grace_timer, on_grace_expired, grace_ms, 0);
	server_check_shutdown_done(s);
}
