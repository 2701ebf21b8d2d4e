/* The HTTP/2 write pump, deferred flush and keepalive shared by server and client. */
#include "conn.h"
#include "../base/util.h"
#include "../base/log.h"

#include <errno.h>
#include <string.h>

static void conn_maybe_finish_close(struct h2_conn *c);
static void do_flush(struct h2_conn *c);

static void on_io_read(struct io *io, const char *buf, ssize_t n)
{
	h2_conn_recv(io->data, buf, n);
}

static void on_io_close(struct io *io)
{
	struct h2_conn *c = io->data;
	c->io = NULL;
	c->pending_handles--;
	conn_maybe_finish_close(c);
}

static void on_handle_close(uv_handle_t *h)
{
	struct h2_conn *c = h->data;
	c->pending_handles--;
	conn_maybe_finish_close(c);
}

static void conn_maybe_finish_close(struct h2_conn *c)
{
	if (c->pending_handles > 0)
		return;
	nghttp2_session_del(c->session);
	c->session = NULL;
	strbuf_release(&c->out);
	strbuf_release(&c->inflight);
	if (c->hooks->on_closed)
		c->hooks->on_closed(c, c->close_reason); /* may free c */
}

/*
 * A deferred flush runs from whichever of its two handles comes first: the
 * idle one in the next loop round (it also makes that round's poll not
 * block), or the prepare one still in this round when the flush was asked
 * for from a timer, a write callback or another idle handle (a yamux
 * session delivering a node's answer): then the bytes leave before the loop
 * polls, with no extra round.
 */
static void flush_due(struct h2_conn *c)
{
	uv_idle_stop(&c->flush_idle);
	uv_prepare_stop(&c->flush_prepare);
	c->flush_scheduled = 0;
	do_flush(c);
}

static void on_flush_idle(uv_idle_t *h)
{
	flush_due(h->data);
}

static void on_flush_prepare(uv_prepare_t *h)
{
	flush_due(h->data);
}

static void on_ka_timer(uv_timer_t *t)
{
	struct h2_conn *c = t->data;
	uint64_t now = now_ms();

	if (c->closing)
		return;
	if (c->ping_sent_ms) {
		if (now - c->ping_sent_ms >= c->keepalive_timeout_ms) {
			log_msgf(LOG_WARN, "closing connection to %s: keepalive ping not answered",
				 c->io ? io_peer(c->io) : "");
			h2_conn_close(c, -ETIMEDOUT);
			return;
		}
		uv_timer_start(&c->ka_timer, on_ka_timer, c->ping_sent_ms + c->keepalive_timeout_ms - now, 0);
		return;
	}
	if (now - c->last_read_ms >= c->keepalive_ms) {
		if (nghttp2_submit_ping(c->session, NGHTTP2_FLAG_NONE, NULL) == 0) {
			c->ping_sent_ms = now ? now : 1;
			h2_conn_flush(c);
		}
		uv_timer_start(&c->ka_timer, on_ka_timer, c->keepalive_timeout_ms, 0);
		return;
	}
	uv_timer_start(&c->ka_timer, on_ka_timer, c->last_read_ms + c->keepalive_ms - now, 0);
}

void h2_conn_init(struct h2_conn *c, uv_loop_t *loop, struct io *io, nghttp2_session *session,
		  const struct h2_conn_hooks *hooks, void *data,
		  uint64_t keepalive_ms, uint64_t keepalive_timeout_ms)
{
	memset(c, 0, sizeof(*c));
	c->loop = loop;
	c->io = io;
	c->session = session;
	c->hooks = hooks;
	c->data = data;
	strbuf_init(&c->out, 0);
	strbuf_init(&c->inflight, 0);
	c->keepalive_ms = keepalive_ms;
	c->keepalive_timeout_ms = keepalive_timeout_ms ? keepalive_timeout_ms : 20000;
	c->last_read_ms = now_ms();

	uv_idle_init(loop, &c->flush_idle);
	c->flush_idle.data = c;
	uv_prepare_init(loop, &c->flush_prepare);
	c->flush_prepare.data = c;
	uv_timer_init(loop, &c->ka_timer);
	c->ka_timer.data = c;
	if (keepalive_ms)
		uv_timer_start(&c->ka_timer, on_ka_timer, keepalive_ms, 0);

	io->data = c;
	io->on_read = on_io_read;
	io->on_close = on_io_close;
	if (io_read_start(io) < 0) {
		h2_conn_close(c, -EPIPE);
		return;
	}
	h2_conn_flush(c); /* our SETTINGS (and preface, for clients) */
}

void h2_conn_on_frame(struct h2_conn *c, const nghttp2_frame *frame)
{
	if (frame->hd.type == NGHTTP2_PING && (frame->hd.flags & NGHTTP2_FLAG_ACK))
		c->ping_sent_ms = 0;
}

void h2_conn_recv(struct h2_conn *c, const char *buf, ssize_t n)
{
	ssize_t rv;

	if (c->closing || c->draining)
		return;
	if (n < 0) {
		h2_conn_close(c, (int)n);
		return;
	}
	c->last_read_ms = now_ms();
	c->bytes_in += (uint64_t)n;
	c->in_recv = 1;
	rv = nghttp2_session_mem_recv(c->session, (const uint8_t *)buf, (size_t)n);
	c->in_recv = 0;
	if (c->closing)
		return;
	if (rv < 0) {
		/* nghttp2 queued a GOAWAY for protocol errors; try to send it */
		if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC && c->bytes_in == (uint64_t)n && buf[0] == 0x16)
			log_msgf(LOG_WARN, "TLS handshake from %s on a plaintext listener (docs/technical/tls.md)",
				 io_peer(c->io));
		log_msgf(LOG_DEBUG, "http/2 error from %s: %s", io_peer(c->io), nghttp2_strerror((int)rv));
		h2_conn_close_after_flush(c);
	}
	do_flush(c);
}

void h2_conn_flush(struct h2_conn *c)
{
	if (c->closing)
		return;
	if (c->in_recv || c->in_flush) {
		c->flush_again = 1;
		return;
	}
	if (!c->flush_scheduled) {
		c->flush_scheduled = 1;
		uv_idle_start(&c->flush_idle, on_flush_idle);
		uv_prepare_start(&c->flush_prepare, on_flush_prepare);
	}
}

static void on_write_done(struct io *io, int status, void *arg)
{
	struct h2_conn *c = arg;
	c->writing = 0;
	c->bytes_out += c->inflight.len;
	if (status >= 0)
		c->bytes_written += c->inflight.len;
	strbuf_reset(&c->inflight);
	if (c->closing)
		return;
	if (status < 0) {
		h2_conn_close(c, status);
		return;
	}
	do_flush(c);
}

/*
 * Hand c->out to the io: first what goes out at once (io_try_write, no
 * request and no callback), then the rest as the one write in flight.
 * Returns 1 when everything went out at once, 0 when a write is in flight,
 * or a negative error.
 */
static int write_out(struct h2_conn *c)
{
	struct strbuf tmp;
	ssize_t n = io_try_write(c->io, c->out.buf, c->out.len);
	int rc;

	if (n < 0)
		return (int)n;
	c->bytes_out += (uint64_t)n;
	c->bytes_written += (uint64_t)n; /* accepted at once: as written as an asynchronous write that completed */
	if ((size_t)n == c->out.len) {
		strbuf_reset(&c->out);
		return 1;
	}
	if (n > 0)
		strbuf_remove_front(&c->out, (size_t)n);
	tmp = c->inflight;
	c->inflight = c->out;
	c->out = tmp;
	strbuf_reset(&c->out);
	c->writing = 1;
	rc = io_write(c->io, c->inflight.buf, c->inflight.len, on_write_done, c);
	if (rc < 0) {
		c->writing = 0;
		return rc;
	}
	return 0;
}

/*
 * Pull frames from nghttp2 and write them: everything one round produces
 * (all the frames of a call, often) goes out in one system call, and a
 * write that completes at once needs no callback or loop round. At most one
 * write in flight. Never inside nghttp2.
 */
static void do_flush(struct h2_conn *c)
{
	if (c->closing || c->in_flush || c->in_recv)
		return;
	c->in_flush = 1;
	do {
		int rc = 1;
		c->flush_again = 0;
		while (rc == 1) {
			while (c->out.len < H2_OUT_CAP) {
				const uint8_t *data;
				ssize_t n = nghttp2_session_mem_send(c->session, &data);
				if (n < 0) {
					c->in_flush = 0;
					h2_conn_close(c, (int)n);
					return;
				}
				if (n == 0)
					break;
				strbuf_add(&c->out, data, (size_t)n);
			}
			if (c->writing || !c->out.len)
				break;
			rc = write_out(c);
			if (rc < 0) {
				c->in_flush = 0;
				h2_conn_close(c, rc);
				return;
			}
			/* all written at once: nghttp2 may have more (the buffer was full) */
		}
		if (c->hooks->after_flush) {
			c->in_flush = 0;
			c->hooks->after_flush(c);
			if (c->closing)
				return;
			c->in_flush = 1;
		}
	} while (c->flush_again && !c->closing);
	c->in_flush = 0;

	if (c->writing || c->out.len)
		return;
	if (c->draining ||
	    (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session)))
		h2_conn_close(c, 0);
}

void h2_conn_close_after_flush(struct h2_conn *c)
{
	if (c->closing || c->draining)
		return;
	c->draining = 1;
	io_read_stop(c->io);
	h2_conn_flush(c);
}

void h2_conn_close(struct h2_conn *c, int reason)
{
	if (c->closing)
		return;
	c->closing = 1;
	c->close_reason = reason;
	c->pending_handles = 4;
	uv_close((uv_handle_t *)&c->flush_idle, on_handle_close);
	uv_close((uv_handle_t *)&c->flush_prepare, on_handle_close);
	uv_close((uv_handle_t *)&c->ka_timer, on_handle_close);
	io_close(c->io);
}
