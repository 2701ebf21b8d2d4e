/* io over a libuv TCP or Unix socket stream. */
#include "io.h"
#include "../base/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct io_uv {
	struct io io;
	union {
		uv_handle_t handle;
		uv_stream_t stream;
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} h;
	char peer[64];
};

struct io_uv_write {
	uv_write_t req;
	io_write_cb cb;
	void *arg;
};

/* One read buffer per thread: on_read consumes the bytes before returning. */
static __thread char read_buf[256 * 1024];

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	buf->base = read_buf;
	buf->len = sizeof(read_buf);
}

static void on_uv_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct io_uv *u = container_of(s, struct io_uv, h.stream);
	if (nread == 0)
		return; /* EAGAIN */
	if (u->io.on_read)
		u->io.on_read(&u->io, buf->base, nread);
}

static int uv_read_start_(struct io *io)
{
	struct io_uv *u = (struct io_uv *)io;
	if (io->closing)
		return UV_EPIPE;
	return uv_read_start(&u->h.stream, on_alloc, on_uv_read);
}

static int uv_read_stop_(struct io *io)
{
	struct io_uv *u = (struct io_uv *)io;
	if (io->closing)
		return 0;
	return uv_read_stop(&u->h.stream);
}

static void on_uv_write(uv_write_t *req, int status)
{
	struct io_uv_write *w = container_of(req, struct io_uv_write, req);
	struct io_uv *u = req->handle->data;
	io_write_cb cb = w->cb;
	void *arg = w->arg;
	free(w);
	if (cb)
		cb(&u->io, status, arg);
}

static int uv_write_(struct io *io, const char *buf, size_t len, io_write_cb cb, void *arg)
{
	struct io_uv *u = (struct io_uv *)io;
	struct io_uv_write *w;
	uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
	int rc;

	if (io->closing)
		return UV_EPIPE;
	w = xmalloc(sizeof(*w));
	w->cb = cb;
	w->arg = arg;
	rc = uv_write(&w->req, &u->h.stream, &b, 1, on_uv_write);
	if (rc < 0)
		free(w);
	return rc;
}

static int uv_writev_(struct io *io, const uv_buf_t *bufs, unsigned nbufs, io_write_cb cb, void *arg)
{
	struct io_uv *u = (struct io_uv *)io;
	struct io_uv_write *w;
	int rc;

	if (io->closing)
		return UV_EPIPE;
	w = xmalloc(sizeof(*w));
	w->cb = cb;
	w->arg = arg;
	rc = uv_write(&w->req, &u->h.stream, bufs, nbufs, on_uv_write);
	if (rc < 0)
		free(w);
	return rc;
}

static ssize_t uv_try_write_(struct io *io, const char *buf, size_t len)
{
	struct io_uv *u = (struct io_uv *)io;
	uv_buf_t b = uv_buf_init((char *)buf, (unsigned)MIN(len, (size_t)INT32_MAX));
	int rc = uv_try_write(&u->h.stream, &b, 1);

	if (rc == UV_EAGAIN || rc == UV_ENOSYS)
		return 0; /* a uv_write is queued, or the socket is full: queue behind it */
	return rc;
}

static void on_uv_close(uv_handle_t *h)
{
	struct io_uv *u = container_of(h, struct io_uv, h.handle);
	if (u->io.on_close)
		u->io.on_close(&u->io);
	free(u);
}

static void uv_close_(struct io *io)
{
	struct io_uv *u = (struct io_uv *)io;
	uv_close(&u->h.handle, on_uv_close);
}

static const char *uv_peer_(struct io *io)
{
	return ((struct io_uv *)io)->peer;
}

static const struct io_ops io_uv_ops = {
	.read_start = uv_read_start_,
	.read_stop = uv_read_stop_,
	.write = uv_write_,
	.close = uv_close_,
	.peer = uv_peer_,
	.writev = uv_writev_,
	.try_write = uv_try_write_,
};

uv_tcp_t *io_uv_alloc_tcp(void)
{
	struct io_uv *u = xcalloc(1, sizeof(*u));
	return &u->h.tcp;
}

uv_pipe_t *io_uv_alloc_pipe(void)
{
	struct io_uv *u = xcalloc(1, sizeof(*u));
	return &u->h.pipe;
}

static void on_discard_close(uv_handle_t *h)
{
	free(container_of(h, struct io_uv, h.handle));
}

void io_uv_discard(uv_stream_t *stream)
{
	struct io_uv *u = container_of(stream, struct io_uv, h.stream);
	if (stream->loop)
		uv_close(&u->h.handle, on_discard_close);
	else
		free(u);
}

struct io *io_uv_wrap(uv_stream_t *stream)
{
	struct io_uv *u = container_of(stream, struct io_uv, h.stream);
	u->io.ops = &io_uv_ops;
	u->h.handle.data = u;
	if (stream->type == UV_TCP) {
		struct sockaddr_storage ss;
		int len = sizeof(ss);
		uv_tcp_nodelay(&u->h.tcp, 1);
		if (!uv_tcp_getpeername(&u->h.tcp, (struct sockaddr *)&ss, &len)) {
			char host[INET6_ADDRSTRLEN] = "";
			int port;
			if (ss.ss_family == AF_INET6) {
				struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
				uv_ip6_name(a, host, sizeof(host));
				port = ntohs(a->sin6_port);
				snprintf(u->peer, sizeof(u->peer), "[%s]:%d", host, port);
			} else {
				struct sockaddr_in *a = (struct sockaddr_in *)&ss;
				uv_ip4_name(a, host, sizeof(host));
				port = ntohs(a->sin_port);
				snprintf(u->peer, sizeof(u->peer), "%s:%d", host, port);
			}
		}
	} else {
		snprintf(u->peer, sizeof(u->peer), "unix");
	}
	return &u->io;
}

/* --- connecting --- */

struct connect_req {
	uv_loop_t *loop;
	uv_connect_t req;
	uv_getaddrinfo_t gai;
	uv_stream_t *stream;
	int port;
	int tls;
	char host[256];
	void (*done)(void *arg, struct io *io, int status);
	void *arg;
};

static void on_connected(uv_connect_t *req, int status)
{
	struct connect_req *c = container_of(req, struct connect_req, req);
	if (status < 0) {
		io_uv_discard(c->stream);
		c->done(c->arg, NULL, status);
	} else if (c->tls) {
		struct ssl_ctx_st *ctx = tls_client_ctx();
		io_tls_handshake(c->loop, io_uv_wrap(c->stream), ctx, c->host, c->done, c->arg);
	} else {
		c->done(c->arg, io_uv_wrap(c->stream), 0);
	}
	free(c);
}

static void on_resolved(uv_getaddrinfo_t *gai, int status, struct addrinfo *res)
{
	struct connect_req *c = container_of(gai, struct connect_req, gai);
	uv_tcp_t *tcp;
	int rc;

	if (status < 0 || !res) {
		uv_freeaddrinfo(res);
		c->done(c->arg, NULL, status < 0 ? status : UV_EAI_NONAME);
		free(c);
		return;
	}
	tcp = io_uv_alloc_tcp();
	uv_tcp_init(c->loop, tcp);
	c->stream = (uv_stream_t *)tcp;
	rc = uv_tcp_connect(&c->req, tcp, res->ai_addr, on_connected);
	uv_freeaddrinfo(res);
	if (rc < 0) {
		io_uv_discard(c->stream);
		c->done(c->arg, NULL, rc);
		free(c);
	}
}

int io_connect(uv_loop_t *loop, const struct addr *a, void (*done)(void *arg, struct io *io, int status),
	       void *arg)
{
	struct connect_req *c;
	int rc;

	c = xcalloc(1, sizeof(*c));
	c->loop = loop;
	if (a->kind == ADDR_TLS) { /* TCP, then a handshake (io_tls.c) */
		c->tls = 1;
		snprintf(c->host, sizeof(c->host), "%s", a->host);
	}
	c->done = done;
	c->arg = arg;
	if (a->kind == ADDR_UNIX) {
		uv_pipe_t *p = io_uv_alloc_pipe();
		uv_pipe_init(loop, p, 0);
		c->stream = (uv_stream_t *)p;
		uv_pipe_connect(&c->req, p, a->path, on_connected);
		return 0;
	} else {
		char port[16];
		struct addrinfo hints;
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		snprintf(port, sizeof(port), "%d", a->port);
		rc = uv_getaddrinfo(loop, &c->gai, on_resolved, a->host, port, &hints);
		if (rc < 0)
			free(c);
		return rc;
	}
}
