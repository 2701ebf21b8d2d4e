/* Listening sockets of a gRPC server: bind Unix and TCP addresses, inherit fds, accept into an io. */
#include "listen.h"
#include "../h2/io.h"
#include "../base/util.h"
#include "../base/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct glisten_sock {
	struct glisten *g;
	union {
		uv_handle_t handle;
		uv_stream_t stream;
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} h;
	char *unix_path;    /* removed at close */
	int tls;            /* handshake with g->tls_ctx before on_accept */
	struct glisten_sock *next;
};

/* A failed handshake is logged by io_tls.c; the listener keeps accepting. */
static void on_handshake(void *arg, struct io *io, int status)
{
	struct glisten *g = arg;
	if (io)
		g->on_accept(g, io);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct glisten_sock *l = server->data;
	uv_stream_t *client;

	if (status < 0) {
		log_msgf(LOG_WARN, "accept failed: %s", uv_strerror(status));
		return;
	}
	if (server->type == UV_TCP) {
		client = (uv_stream_t *)io_uv_alloc_tcp();
		uv_tcp_init(l->g->loop, (uv_tcp_t *)client);
	} else {
		client = (uv_stream_t *)io_uv_alloc_pipe();
		uv_pipe_init(l->g->loop, (uv_pipe_t *)client, 0);
	}
	if (uv_accept(server, client) < 0) {
		io_uv_discard(client);
		return;
	}
	if (l->tls)
		io_tls_handshake(l->g->loop, io_uv_wrap(client), l->g->tls_ctx, NULL, on_handshake, l->g);
	else
		l->g->on_accept(l->g, io_uv_wrap(client));
}

static void sock_link(struct glisten *g, struct glisten_sock *l)
{
	l->g = g;
	l->h.handle.data = l;
	l->next = g->socks;
	g->socks = l;
}

static void on_sock_free(uv_handle_t *h)
{
	struct glisten_sock *l = h->data;
	free(l->unix_path);
	free(l);
}

int glisten_add(struct glisten *g, const char *addrstr, char *bound, size_t boundsz)
{
	struct addr a;
	struct glisten_sock *l;
	int rc;

	if (addr_parse(addrstr, &a) < 0)
		return -EINVAL;
	if (a.kind == ADDR_TLS && !g->tls_ctx)
		return -ENOTSUP;
	l = xcalloc(1, sizeof(*l));
	l->tls = a.kind == ADDR_TLS;
	if (a.kind == ADDR_UNIX) {
		struct stat st;
		uv_pipe_init(g->loop, &l->h.pipe, 0);
		l->h.handle.data = l;
		/* replace a stale socket left by a crashed process, never a regular file */
		if (lstat(a.path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(a.path);
		rc = uv_pipe_bind(&l->h.pipe, a.path);
		if (rc == 0)
			l->unix_path = xstrdup(a.path);
		if (bound)
			snprintf(bound, boundsz, "unix:%s", a.path);
	} else {
		struct sockaddr_storage ss;
		uv_tcp_init(g->loop, &l->h.tcp);
		l->h.handle.data = l;
		if (uv_ip4_addr(a.host, a.port, (struct sockaddr_in *)&ss) &&
		    uv_ip6_addr(a.host, a.port, (struct sockaddr_in6 *)&ss)) {
			if (!strcmp(a.host, "localhost")) {
				uv_ip4_addr("127.0.0.1", a.port, (struct sockaddr_in *)&ss);
			} else {
				uv_close(&l->h.handle, on_sock_free);
				return -EINVAL; /* listeners take literal addresses, as upstream */
			}
		}
		rc = uv_tcp_bind(&l->h.tcp, (struct sockaddr *)&ss, 0);
		if (rc == 0 && bound) {
			int len = sizeof(ss);
			char host[INET6_ADDRSTRLEN] = "";
			uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&ss, &len);
			if (ss.ss_family == AF_INET6) {
				uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof(host));
				snprintf(bound, boundsz, "[%s]:%d", host,
					 ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
			} else {
				uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof(host));
				snprintf(bound, boundsz, "%s:%d", host,
					 ntohs(((struct sockaddr_in *)&ss)->sin_port));
			}
		}
	}
	if (rc == 0)
		rc = uv_listen(&l->h.stream, 1024, on_connection);
	if (rc < 0) {
		free(l->unix_path);
		l->unix_path = NULL;
		uv_close(&l->h.handle, on_sock_free);
		return rc;
	}
	sock_link(g, l);
	return 0;
}

int glisten_add_fd(struct glisten *g, int fd, int tls)
{
	struct glisten_sock *l;

	if (tls && !g->tls_ctx)
		return -ENOTSUP;
	l = xcalloc(1, sizeof(*l));
	l->tls = tls;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int rc;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
		free(l);
		return -errno;
	}
	if (ss.ss_family == AF_UNIX) {
		uv_pipe_init(g->loop, &l->h.pipe, 0);
		rc = uv_pipe_open(&l->h.pipe, fd);
	} else {
		uv_tcp_init(g->loop, &l->h.tcp);
		rc = uv_tcp_open(&l->h.tcp, fd);
	}
	l->h.handle.data = l;
	if (rc == 0)
		rc = uv_listen(&l->h.stream, 1024, on_connection);
	if (rc < 0) {
		uv_close(&l->h.handle, on_sock_free);
		return rc;
	}
	sock_link(g, l);
	return 0;
}

size_t glisten_fds(const struct glisten *g, int *fds, size_t max)
{
	size_t n = 0;
	for (struct glisten_sock *l = g->socks; l && n < max; l = l->next) {
		uv_os_fd_t fd;
		if (uv_fileno(&l->h.handle, &fd) == 0)
			fds[n++] = fd;
	}
	return n;
}

static void on_sock_closed(uv_handle_t *h)
{
	struct glisten_sock *l = h->data;
	struct glisten *g = l->g;
	g->pending_closes--;
	free(l->unix_path);
	free(l);
	g->on_closed(g);
}

void glisten_close(struct glisten *g)
{
	while (g->socks) {
		struct glisten_sock *l = g->socks;
		g->socks = l->next;
		g->pending_closes++;
		/* libuv removes the file of a pipe it bound; lib/upgrade binds its own. */
		uv_close(&l->h.handle, on_sock_closed);
	}
}

int glisten_busy(const struct glisten *g)
{
	return g->socks || g->pending_closes;
}
