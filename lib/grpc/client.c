/* gRPC client: one multiplexed HTTP/2 connection per channel, reconnecting with backoff. */
#include "client.h"
#include "stream.h"
#include "../h2/conn.h"
#include "../h2/io.h"
#include "../base/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cli_conn;

struct grpc_client_call {
	struct gstream s;                /* framing, flow control, send queue, deadline */
	struct grpc_channel *ch;
	struct grpc_client_call *prev, *next;   /* pending list or conn list */
	struct grpc_client_call *dead_next;     /* channel's deferred-close list */
	int in_dead;

	char *path;
	struct grpc_metadata req_md;
	uint64_t deadline;               /* now_ms() clock, 0 = none */
	unsigned flags;

	const struct grpc_client_ops *ops;
	void *user;

	int close_send;
	int submitted;                   /* given a stream on a connection */
	uint64_t wire_mark;              /* its bytes start after this many of the connection's */
	int unsent;                      /* its connection died before any of its bytes was written */
	int conn_lost;                   /* it ended because its connection died, not by a status */

	struct grpc_metadata headers;
	struct grpc_metadata trailers;
	int headers_fired;
	int http_status;
	int grpc_status;                 /* -1 until received */
	struct strbuf grpc_message;
	uint32_t rst_code;

	enum grpc_code final_code;
	struct strbuf final_msg;
};

struct cli_conn {
	struct gstream_conn gc;          /* the h2_conn and the streams waiting for on_writable */
	struct grpc_channel *ch;
	struct cli_conn *prev, *next;
	struct grpc_client_call *calls;
	size_t ncalls;
	int goaway;
};

struct grpc_channel {
	uv_loop_t *loop;
	char *target;
	struct addr addr;
	char authority[300];
	struct grpc_channel_opts opts;
	enum grpc_channel_state state;

	struct cli_conn *conn;           /* the connection new calls go to */
	struct cli_conn *conns;          /* every live connection, incl. draining ones */
	struct grpc_client_call *pending;
	size_t ncalls;

	int dialing;                     /* a dial is outstanding */
	uint64_t dial_gen;
	uv_timer_t timer;                /* connect timeout or backoff */
	uint64_t backoff_ms;
	uint64_t connects;
	struct strbuf last_error;

	uv_idle_t idle;                  /* deferred on_close notifications */
	struct grpc_client_call *dead;
	int closing;
	int handles_open;
};

static void call_notify(struct grpc_client_call *call, enum grpc_code code, const char *msg);
static void call_maybe_done(struct grpc_client_call *call);
static void channel_connect(struct grpc_channel *ch);
static void channel_maybe_free(struct grpc_channel *ch);

void grpc_channel_opts_default(struct grpc_channel_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->max_recv_msg = 4 * 1024 * 1024;
	o->stream_window = 1024 * 1024;
	o->connect_timeout_ms = 20000;
	o->backoff_initial_ms = 1000;
	o->backoff_max_ms = 120000;
	o->keepalive_ms = 20000;
	o->keepalive_timeout_ms = 20000;
}

static void set_state(struct grpc_channel *ch, enum grpc_channel_state st)
{
	if (ch->state == st)
		return;
	ch->state = st;
	if (ch->opts.on_state)
		ch->opts.on_state(ch, st, ch->opts.state_data);
}

/* --- lists --- */

static void list_add(struct grpc_client_call **head, struct grpc_client_call *call)
{
	call->prev = NULL;
	call->next = *head;
	if (*head)
		(*head)->prev = call;
	*head = call;
}

static void list_del(struct grpc_client_call **head, struct grpc_client_call *call)
{
	if (call->prev)
		call->prev->next = call->next;
	else if (*head == call)
		*head = call->next;
	if (call->next)
		call->next->prev = call->prev;
	call->prev = call->next = NULL;
}

/* --- call memory --- */

static struct cli_conn *call_conn(const struct grpc_client_call *call)
{
	return call->s.conn ? container_of(call->s.conn, struct cli_conn, gc) : NULL;
}

static void call_free(struct grpc_client_call *call)
{
	struct grpc_channel *ch = call->ch;
	gstream_release(&call->s);
	free(call->path);
	grpc_metadata_release(&call->req_md);
	grpc_metadata_release(&call->headers);
	grpc_metadata_release(&call->trailers);
	strbuf_release(&call->grpc_message);
	strbuf_release(&call->final_msg);
	free(call);
	ch->ncalls--;
	channel_maybe_free(ch);
}

/* Detach from whatever list holds the call. */
static void call_unlink(struct grpc_client_call *call)
{
	struct cli_conn *conn = call_conn(call);
	if (conn) {
		list_del(&conn->calls, call);
		conn->ncalls--;
		gstream_wlist_remove(&call->s);
		if (call->s.id && conn->gc.h2.session)
			nghttp2_session_set_stream_user_data(conn->gc.h2.session, call->s.id, NULL);
		call->s.conn = NULL;
	} else {
		list_del(&call->ch->pending, call);
	}
}

/* Fire on_close now. The call stays allocated until its stream is gone. */
static void call_notify(struct grpc_client_call *call, enum grpc_code code, const char *msg)
{
	if (call->s.notified)
		return;
	call->s.notified = 1;
	call->final_code = code;
	if (msg != call->final_msg.buf) { /* the deferred path passes the stored message itself */
		strbuf_reset(&call->final_msg);
		if (msg)
			strbuf_addstr(&call->final_msg, msg);
	}
	if (call->ops->on_close)
		call->ops->on_close(call, code, call->final_msg.buf, &call->trailers);
}

static void on_channel_idle(uv_idle_t *h)
{
	struct grpc_channel *ch = h->data;
	uv_idle_stop(&ch->idle);
	while (ch->dead) {
		struct grpc_client_call *call = ch->dead;
		ch->dead = call->dead_next;
		call->in_dead = 0;
		call->s.notified = 0; /* was reserved by fail_later() */
		call_notify(call, call->final_code, call->final_msg.buf);
		call_free(call);
	}
}

/*
 * End a call that never reached (or no longer has) a stream, telling the
 * caller from the loop rather than from inside the API call that caused it.
 */
static void fail_later(struct grpc_client_call *call, enum grpc_code code, const char *msg)
{
	struct grpc_channel *ch = call->ch;
	if (call->s.notified)
		return;
	call_unlink(call);
	call->s.notified = 1; /* no further events; the real notification is queued */
	call->final_code = code;
	strbuf_reset(&call->final_msg);
	strbuf_addstr(&call->final_msg, msg);
	call->in_dead = 1;
	call->dead_next = ch->dead;
	ch->dead = call;
	uv_idle_start(&ch->idle, on_channel_idle);
}

/* --- sending --- */

static ssize_t data_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
			    uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	struct grpc_client_call *call = source->ptr;

	if (!call || call->s.notified) {
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
		return 0;
	}
	return gstream_data_read(&call->s, buf, length, data_flags, call->close_send);
}

static int call_submit(struct grpc_client_call *call, struct cli_conn *conn)
{
	struct grpc_channel *ch = call->ch;
	struct gstream_hdrs h = GSTREAM_HDRS_INIT;
	nghttp2_data_provider prd;
	char timeout[16];
	int32_t id;

	gstream_hdrs_add(&h, ":method", "POST");
	gstream_hdrs_add(&h, ":scheme", "http");
	gstream_hdrs_add(&h, ":path", call->path);
	gstream_hdrs_add(&h, ":authority", ch->authority);
	gstream_hdrs_add(&h, "content-type", "application/grpc");
	gstream_hdrs_add(&h, "te", "trailers");
	gstream_hdrs_add(&h, "user-agent", "grpc-c-gitaly/0.1");
	if (call->deadline) {
		uint64_t now = now_ms();
		uint64_t left = call->deadline > now ? call->deadline - now : 1;
		grpc_timeout_format(left * 1000000ull, timeout);
		gstream_hdrs_add(&h, "grpc-timeout", timeout);
	}
	gstream_hdrs_add_md(&h, &call->req_md);
	prd.source.ptr = call;
	prd.read_callback = data_read_cb;
	id = nghttp2_submit_request(conn->gc.h2.session, NULL, h.nv, h.nr, &prd, call);
	gstream_hdrs_release(&h);
	if (id < 0)
		return id;
	call->s.id = id;
	call->s.conn = &conn->gc;
	call->submitted = 1;
	call->wire_mark = conn->gc.h2.bytes_written + conn->gc.h2.inflight.len + conn->gc.h2.out.len;
	list_add(&conn->calls, call);
	conn->ncalls++;
	h2_conn_flush(&conn->gc.h2);
	return 0;
}

int grpc_client_call_send(struct grpc_client_call *call, const void *msg, size_t len)
{
	if (call->s.notified || call->close_send)
		return -EPIPE;
	gstream_queue(&call->s, msg, len);
	gstream_kick(&call->s);
	return 0;
}

int grpc_client_call_close_send(struct grpc_client_call *call)
{
	if (call->s.notified)
		return -EPIPE;
	if (call->close_send)
		return 0;
	call->close_send = 1;
	gstream_kick(&call->s);
	return 0;
}

size_t grpc_client_call_send_queued(const struct grpc_client_call *call) { return call->s.out.bytes; }
int grpc_client_call_send_full(const struct grpc_client_call *call) { return gstream_send_full(&call->s); }
void *grpc_client_call_user(const struct grpc_client_call *call) { return call->user; }
int grpc_client_call_unsent(const struct grpc_client_call *call) { return !call->submitted || call->unsent; }
int grpc_client_call_conn_lost(const struct grpc_client_call *call) { return call->conn_lost; }

static void rst_and_notify(struct grpc_client_call *call, enum grpc_code code, const char *msg)
{
	if (call->s.notified)
		return;
	if (!call->s.conn) {
		fail_later(call, code, msg);
		return;
	}
	if (!call->s.stream_closed) {
		nghttp2_submit_rst_stream(call->s.conn->h2.session, NGHTTP2_FLAG_NONE, call->s.id,
					  NGHTTP2_CANCEL);
		h2_conn_flush(&call->s.conn->h2);
	}
	call_notify(call, code, msg);
	call_maybe_done(call);
}

void grpc_client_call_cancel(struct grpc_client_call *call)
{
	if (call->s.notified)
		return;
	if (!call->s.conn) {
		fail_later(call, GRPC_CANCELLED, "context canceled");
		return;
	}
	/* Defer on_close so a caller cancelling from its own callbacks is not re-entered. */
	if (!call->s.stream_closed) {
		nghttp2_submit_rst_stream(call->s.conn->h2.session, NGHTTP2_FLAG_NONE, call->s.id,
					  NGHTTP2_CANCEL);
		h2_conn_flush(&call->s.conn->h2);
	}
	fail_later(call, GRPC_CANCELLED, "context canceled");
}

void grpc_client_call_pause_recv(struct grpc_client_call *call)
{
	gstream_pause(&call->s);
}

void grpc_client_call_resume_recv(struct grpc_client_call *call)
{
	gstream_resume(&call->s);
}

/* --- what the stream tells the call --- */

static void stream_on_message(struct gstream *s, const uint8_t *msg, size_t len)
{
	struct grpc_client_call *call = container_of(s, struct grpc_client_call, s);
	if (call->ops->on_message)
		call->ops->on_message(call, msg, len);
}

static void stream_on_bad_message(struct gstream *s, enum grpc_code code, const char *msg)
{
	rst_and_notify(container_of(s, struct grpc_client_call, s), code, msg);
}

static void stream_after_deliver(struct gstream *s)
{
	call_maybe_done(container_of(s, struct grpc_client_call, s));
}

static void stream_on_writable(struct gstream *s)
{
	struct grpc_client_call *call = container_of(s, struct grpc_client_call, s);
	if (call->ops->on_writable)
		call->ops->on_writable(call);
}

static void stream_on_deadline(struct gstream *s)
{
	rst_and_notify(container_of(s, struct grpc_client_call, s), GRPC_DEADLINE_EXCEEDED,
		       "context deadline exceeded");
}

static const struct gstream_ops call_stream_ops = {
	.on_message = stream_on_message,
	.on_bad_message = stream_on_bad_message,
	.after_deliver = stream_after_deliver,
	.on_writable = stream_on_writable,
	.on_deadline = stream_on_deadline,
};

/* --- receiving --- */

static enum grpc_code http_to_grpc(int status)
{
	switch (status) {
	case 400: return GRPC_INTERNAL;
	case 401: return GRPC_UNAUTHENTICATED;
	case 403: return GRPC_PERMISSION_DENIED;
	case 404: return GRPC_UNIMPLEMENTED;
	case 429: case 502: case 503: case 504: return GRPC_UNAVAILABLE;
	default: return GRPC_UNKNOWN;
	}
}

/* The stream is closed: once every message is delivered, report the status and free. */
static void call_maybe_done(struct grpc_client_call *call)
{
	if (!call->s.stream_closed || call->s.delivering || call->in_dead)
		return;
	if (!call->s.notified) {
		struct strbuf m = STRBUF_INIT;
		enum grpc_code code;
		if (call->s.paused && grpc_framer_buffered(&call->s.in))
			return; /* the caller still has messages to take */
		if (call->grpc_status >= 0) {
			code = (enum grpc_code)call->grpc_status;
			strbuf_add(&m, call->grpc_message.buf, call->grpc_message.len);
		} else if (call->http_status && call->http_status != 200) {
			code = http_to_grpc(call->http_status);
			strbuf_addf(&m, "unexpected HTTP status code received from server: %d", call->http_status);
		} else if (call->rst_code == NGHTTP2_REFUSED_STREAM) {
			code = GRPC_UNAVAILABLE;
			strbuf_addstr(&m, "the server refused the stream (it is going away)");
		} else if (call->rst_code == NGHTTP2_CANCEL) {
			code = GRPC_CANCELLED;
			strbuf_addstr(&m, "stream cancelled by the server");
		} else if (call->rst_code) {
			code = GRPC_INTERNAL;
			strbuf_addf(&m, "stream terminated by RST_STREAM with error code: %u", call->rst_code);
		} else {
			code = GRPC_INTERNAL;
			strbuf_addstr(&m, "server closed the stream without sending trailers");
		}
		call_notify(call, code, m.buf);
		strbuf_release(&m);
	}
	call_unlink(call);
	call_free(call);
}

/* --- nghttp2 callbacks --- */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data)
{
	struct grpc_client_call *call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	const char *k = (const char *)name, *v = (const char *)value;
	int trailers;

	if (!call || frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (gstream_header_count(&call->s, namelen, valuelen) < 0)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	trailers = frame->headers.cat == NGHTTP2_HCAT_HEADERS ||
		   (frame->hd.flags & NGHTTP2_FLAG_END_STREAM);
	if (namelen == 7 && !memcmp(k, ":status", 7)) {
		call->http_status = 0;
		for (size_t i = 0; i < valuelen && v[i] >= '0' && v[i] <= '9'; i++)
			call->http_status = call->http_status * 10 + (v[i] - '0');
	} else if (namelen == 11 && !memcmp(k, "grpc-status", 11)) {
		int st = 0;
		for (size_t i = 0; i < valuelen && i < 4; i++) {
			if (v[i] < '0' || v[i] > '9') {
				st = GRPC_UNKNOWN;
				break;
			}
			st = st * 10 + (v[i] - '0');
		}
		call->grpc_status = st;
	} else if (namelen == 12 && !memcmp(k, "grpc-message", 12)) {
		strbuf_reset(&call->grpc_message);
		grpc_percent_decode(&call->grpc_message, v, valuelen);
	} else {
		gstream_header_md(trailers ? &call->trailers : &call->headers, k, namelen, v, valuelen);
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct cli_conn *conn = user_data;
	struct grpc_client_call *call;

	h2_conn_on_frame(&conn->gc.h2, frame);
	if (frame->hd.type == NGHTTP2_GOAWAY) {
		struct grpc_channel *ch = conn->ch;
		conn->goaway = 1;
		if (ch->conn == conn) {
			ch->conn = NULL;
			set_state(ch, GRPC_CHANNEL_IDLE);
			if (ch->pending)
				channel_connect(ch);
		}
		return 0;
	}
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (!call || call->s.notified)
		return 0;
	if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE && !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    !call->headers_fired) {
		call->headers_fired = 1;
		if (call->ops->on_headers)
			call->ops->on_headers(call, &call->headers);
	}
	return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
			 size_t len, void *user_data)
{
	struct grpc_client_call *call = nghttp2_session_get_stream_user_data(session, stream_id);

	gstream_recv_data(session, stream_id, call ? &call->s : NULL, data, len);
	return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data)
{
	struct grpc_client_call *call = nghttp2_session_get_stream_user_data(session, stream_id);
	if (!call)
		return 0;
	call->s.stream_closed = 1;
	call->rst_code = error_code;
	call_maybe_done(call);
	return 0;
}

static nghttp2_session_callbacks *client_callbacks(void)
{
	static nghttp2_session_callbacks *cbs;
	if (!cbs) {
		nghttp2_session_callbacks_new(&cbs);
		nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
		nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
		nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
		nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
		nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	}
	return cbs;
}

/* --- connections --- */

static void schedule_backoff(struct grpc_channel *ch);

static void conn_on_closed(struct h2_conn *h2, int reason)
{
	struct cli_conn *conn = h2->data;
	struct grpc_channel *ch = conn->ch;
	struct strbuf m = STRBUF_INIT;

	strbuf_addf(&m, "connection to %s lost: %s", ch->target,
		    reason ? uv_strerror(reason) : "closed by peer");
	while (conn->calls) {
		struct grpc_client_call *call = conn->calls;
		/*
		 * A stream that ended before the connection (a server closes
		 * it once its last call is done, e.g. when it shuts down) is
		 * complete: a paused caller still takes the buffered
		 * messages, then the status the server sent.
		 */
		int ended = call->s.stream_closed;
		call->s.stream_closed = 1;
		if (ended && !call->s.notified) {
			call_unlink(call);
			continue;
		}
		if (!call->s.notified) {
			call->unsent = h2->bytes_written <= call->wire_mark;
			call->conn_lost = 1;
			call_notify(call, GRPC_UNAVAILABLE, m.buf);
		}
		call_unlink(call);
		if (!call->in_dead)
			call_free(call);
	}
	if (conn->prev)
		conn->prev->next = conn->next;
	else
		ch->conns = conn->next;
	if (conn->next)
		conn->next->prev = conn->prev;
	if (ch->conn == conn) {
		ch->conn = NULL;
		strbuf_reset(&ch->last_error);
		strbuf_add(&ch->last_error, m.buf, m.len);
		if (!ch->closing) {
			/* Reconnect at once; back off only if that fails. */
			set_state(ch, GRPC_CHANNEL_IDLE);
			channel_connect(ch);
		}
	}
	strbuf_release(&m);
	free(conn);
	channel_maybe_free(ch);
}

static const struct h2_conn_hooks cli_conn_hooks = {
	.after_flush = gstream_after_flush,
	.on_closed = conn_on_closed,
};

static void conn_start(struct grpc_channel *ch, struct io *io)
{
	struct cli_conn *conn = xcalloc(1, sizeof(*conn));
	nghttp2_session *session;
	nghttp2_settings_entry iv;

	conn->ch = ch;
	iv.settings_id = NGHTTP2_SETTINGS_ENABLE_PUSH;
	iv.value = 0;
	session = gstream_session_new(0, client_callbacks(), conn, iv, ch->opts.stream_window);

	conn->next = ch->conns;
	if (ch->conns)
		ch->conns->prev = conn;
	ch->conns = conn;
	ch->conn = conn;
	ch->connects++;
	ch->backoff_ms = 0;
	h2_conn_init(&conn->gc.h2, ch->loop, io, session, &cli_conn_hooks, conn,
		     ch->opts.keepalive_ms, ch->opts.keepalive_timeout_ms);
	if (conn->gc.h2.closing)
		return;
	set_state(ch, GRPC_CHANNEL_READY);
	while (ch->pending && ch->conn == conn) {
		struct grpc_client_call *call = ch->pending;
		list_del(&ch->pending, call);
		if (call_submit(call, conn) < 0)
			fail_later(call, GRPC_UNAVAILABLE, "cannot start stream");
	}
}

/* --- connecting and backoff --- */

static void on_backoff(uv_timer_t *t)
{
	struct grpc_channel *ch = t->data;
	if (ch->closing)
		return;
	set_state(ch, GRPC_CHANNEL_IDLE);
	channel_connect(ch);
}

static void schedule_backoff(struct grpc_channel *ch)
{
	uint64_t jitter;
	if (!ch->backoff_ms)
		ch->backoff_ms = ch->opts.backoff_initial_ms;
	else
		ch->backoff_ms = MIN(ch->opts.backoff_max_ms, ch->backoff_ms * 8 / 5);
	/* +-20% jitter so a fleet does not reconnect in lockstep */
	jitter = ch->backoff_ms / 5;
	uv_timer_start(&ch->timer, on_backoff,
		       ch->backoff_ms - jitter + (jitter ? (uint64_t)rand() % (2 * jitter + 1) : 0), 0);
}

static void connect_failed(struct grpc_channel *ch, const char *why)
{
	struct grpc_client_call *keep = NULL;

	strbuf_reset(&ch->last_error);
	strbuf_addf(&ch->last_error, "failed to connect to %s: %s", ch->target, why);
	set_state(ch, GRPC_CHANNEL_TRANSIENT_FAILURE);
	while (ch->pending) {
		struct grpc_client_call *call = ch->pending;
		if (call->flags & GRPC_CALL_WAIT_FOR_READY) {
			list_del(&ch->pending, call);
			list_add(&keep, call);
			continue;
		}
		fail_later(call, GRPC_UNAVAILABLE, ch->last_error.buf);
	}
	ch->pending = keep;
	schedule_backoff(ch);
}

struct dial_ctx {
	struct grpc_channel *ch;
	uint64_t gen;
};

static void on_dialed(void *arg, struct io *io, int status)
{
	struct dial_ctx *d = arg;
	struct grpc_channel *ch = d->ch;
	int stale = d->gen != ch->dial_gen;

	free(d);
	ch->dialing--;
	if (stale || ch->closing) {
		if (io)
			io_close(io);
		channel_maybe_free(ch);
		return;
	}
	uv_timer_stop(&ch->timer);
	if (status < 0 || !io) {
		if (ch->addr.kind == ADDR_TLS && (status == UV_EPROTO || status == UV_ETIMEDOUT) &&
		    *io_tls_last_error())
			connect_failed(ch, io_tls_last_error());
		else
			connect_failed(ch, uv_strerror(status < 0 ? status : UV_ECONNREFUSED));
		return;
	}
	conn_start(ch, io);
}

static void on_connect_timeout(uv_timer_t *t)
{
	struct grpc_channel *ch = t->data;
	ch->dial_gen++; /* the outstanding dial is now stale */
	connect_failed(ch, "connection timed out");
}

static void channel_connect(struct grpc_channel *ch)
{
	struct dial_ctx *d;
	int rc;

	if (ch->closing || ch->conn || ch->state == GRPC_CHANNEL_CONNECTING ||
	    ch->state == GRPC_CHANNEL_TRANSIENT_FAILURE)
		return;
	set_state(ch, GRPC_CHANNEL_CONNECTING);
	d = xmalloc(sizeof(*d));
	d->ch = ch;
	d->gen = ++ch->dial_gen;
	ch->dialing++;
	if (ch->opts.dial)
		rc = ch->opts.dial(ch->loop, ch->target, ch->opts.dial_data, on_dialed, d);
	else
		rc = io_connect(ch->loop, &ch->addr, on_dialed, d);
	if (rc < 0) {
		ch->dialing--;
		free(d);
		connect_failed(ch, uv_strerror(rc));
		return;
	}
	if (ch->opts.connect_timeout_ms)
		uv_timer_start(&ch->timer, on_connect_timeout, ch->opts.connect_timeout_ms, 0);
}

void grpc_channel_disconnect(struct grpc_channel *ch)
{
	if (ch->conn && !ch->conn->gc.h2.closing)
		h2_conn_close(&ch->conn->gc.h2, UV_ECONNRESET);
}

void grpc_channel_connect(struct grpc_channel *ch)
{
	channel_connect(ch);
}

/* --- channel --- */

int grpc_channel_new(uv_loop_t *loop, const char *target, const struct grpc_channel_opts *opts,
		     struct grpc_channel **out)
{
	struct grpc_channel *ch;
	struct addr a;

	/* with a dial function the target is only a name (a backchannel, say) */
	if (addr_parse(target, &a) < 0) {
		if (!(opts && opts->dial))
			return -EINVAL;
		memset(&a, 0, sizeof(a));
		a.kind = ADDR_UNIX;
	}
	ch = xcalloc(1, sizeof(*ch));
	ch->loop = loop;
	ch->target = xstrdup(target);
	ch->addr = a;
	if (a.kind == ADDR_UNIX)
		snprintf(ch->authority, sizeof(ch->authority), "localhost");
	else if (strchr(a.host, ':'))
		snprintf(ch->authority, sizeof(ch->authority), "[%s]:%d", a.host, a.port);
	else
		snprintf(ch->authority, sizeof(ch->authority), "%s:%d", a.host, a.port);
	if (opts)
		ch->opts = *opts;
	else
		grpc_channel_opts_default(&ch->opts);
	{
		struct grpc_channel_opts d;
		grpc_channel_opts_default(&d);
		if (!ch->opts.max_recv_msg) ch->opts.max_recv_msg = d.max_recv_msg;
		if (!ch->opts.stream_window) ch->opts.stream_window = d.stream_window;
		if (!ch->opts.backoff_initial_ms) ch->opts.backoff_initial_ms = d.backoff_initial_ms;
		if (!ch->opts.backoff_max_ms) ch->opts.backoff_max_ms = d.backoff_max_ms;
		if (!ch->opts.keepalive_timeout_ms) ch->opts.keepalive_timeout_ms = d.keepalive_timeout_ms;
	}
	strbuf_init(&ch->last_error, 0);
	ch->state = GRPC_CHANNEL_IDLE;
	uv_timer_init(loop, &ch->timer);
	ch->timer.data = ch;
	uv_idle_init(loop, &ch->idle);
	ch->idle.data = ch;
	ch->handles_open = 2;
	*out = ch;
	return 0;
}

enum grpc_channel_state grpc_channel_state(const struct grpc_channel *ch) { return ch->state; }
const char *grpc_channel_target(const struct grpc_channel *ch) { return ch->target; }
size_t grpc_channel_active_calls(const struct grpc_channel *ch) { return ch->ncalls; }
uint64_t grpc_channel_connects(const struct grpc_channel *ch) { return ch->connects; }

uint64_t grpc_channel_last_read_ms(const struct grpc_channel *ch)
{
	return ch->conn && !ch->conn->gc.h2.closing ? ch->conn->gc.h2.last_read_ms : 0;
}

static void on_channel_handle_closed(uv_handle_t *h)
{
	struct grpc_channel *ch = h->data;
	ch->handles_open--;
	channel_maybe_free(ch);
}

/* Free a closed channel once no call, connection, dial or handle refers to it. */
static void channel_maybe_free(struct grpc_channel *ch)
{
	if (!ch->closing || ch->ncalls || ch->conns || ch->dialing)
		return;
	if (ch->closing == 1) {
		ch->closing = 2; /* handles are closing */
		uv_close((uv_handle_t *)&ch->timer, on_channel_handle_closed);
		uv_close((uv_handle_t *)&ch->idle, on_channel_handle_closed);
		return;
	}
	if (ch->handles_open == 0) {
		strbuf_release(&ch->last_error);
		free(ch->target);
		free(ch);
	}
}

void grpc_channel_close(struct grpc_channel *ch)
{
	if (ch->closing)
		return;
	ch->closing = 1;
	set_state(ch, GRPC_CHANNEL_SHUTDOWN);
	uv_timer_stop(&ch->timer);
	ch->dial_gen++;
	/* Pending and dead calls: tell their owners now, synchronously, then free. */
	while (ch->pending) {
		struct grpc_client_call *call = ch->pending;
		list_del(&ch->pending, call);
		call_notify(call, GRPC_CANCELLED, "channel closed");
		call_free(call);
	}
	ch->conn = NULL;
	for (struct cli_conn *c = ch->conns; c; c = c->next) {
		for (struct grpc_client_call *call = c->calls; call; call = call->next)
			if (!call->s.notified)
				call_notify(call, GRPC_CANCELLED, "channel closed");
		h2_conn_close(&c->gc.h2, -ECANCELED);
	}
	channel_maybe_free(ch);
}

/* --- calls --- */

int grpc_channel_call(struct grpc_channel *ch, const char *path, const struct grpc_metadata *md,
		      uint64_t timeout_ms, unsigned flags, const struct grpc_client_ops *ops,
		      void *user, struct grpc_client_call **out)
{
	struct grpc_client_call *call;

	if (ch->closing)
		return -ESHUTDOWN;
	if (!path || path[0] != '/' || !ops || !ops->on_close)
		return -EINVAL;
	call = xcalloc(1, sizeof(*call));
	gstream_init(&call->s, &call_stream_ops, ch->opts.max_recv_msg);
	call->ch = ch;
	call->path = xstrdup(path);
	grpc_metadata_copy(&call->req_md, md);
	call->flags = flags;
	call->ops = ops;
	call->user = user;
	call->grpc_status = -1;
	strbuf_init(&call->grpc_message, 0);
	strbuf_init(&call->final_msg, 0);
	ch->ncalls++;
	*out = call;

	if (timeout_ms) {
		call->deadline = now_ms() + timeout_ms;
		gstream_deadline_start(&call->s, ch->loop, timeout_ms);
	}

	if (ch->conn && !ch->conn->goaway && !ch->conn->gc.h2.closing && !ch->conn->gc.h2.draining) {
		if (call_submit(call, ch->conn) < 0)
			fail_later(call, GRPC_UNAVAILABLE, "cannot start stream");
		return 0;
	}
	if (ch->state == GRPC_CHANNEL_TRANSIENT_FAILURE && !(flags & GRPC_CALL_WAIT_FOR_READY)) {
		list_add(&ch->pending, call);
		fail_later(call, GRPC_UNAVAILABLE, ch->last_error.len ? ch->last_error.buf : "connection failed");
		return 0;
	}
	list_add(&ch->pending, call);
	channel_connect(ch);
	return 0;
}
