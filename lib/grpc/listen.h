/*
 * Internal to lib/grpc: the server's listening sockets.
 *
 * A `struct glisten` is a set of listeners (Unix sockets and TCP) on one
 * loop. Every accepted connection is handed to on_accept as an io, which the
 * callee owns from then on. glisten_close() closes every listener;
 * on_closed fires each time one has finished closing, and glisten_busy()
 * tells whether any is still open or closing.
 */
#ifndef GRPC_LISTEN_H
#define GRPC_LISTEN_H

#include <stddef.h>
#include <uv.h>

struct io;
struct glisten_sock;

struct glisten {
	uv_loop_t *loop;
	void (*on_accept)(struct glisten *g, struct io *io);
	void (*on_closed)(struct glisten *g);
	struct glisten_sock *socks;
	int pending_closes;
	struct ssl_ctx_st *tls_ctx;   /* for "tls://" listeners; not owned */
};

/*
 * Listen on "unix:/path", "unix:///path", "tcp://host:port", "host:port" or
 * "tls://host:port" (needs tls_ctx),
 * as grpc_server_listen() (server.h) describes. 0 or a negative errno.
 */
int glisten_add(struct glisten *g, const char *addr, char *bound, size_t boundsz);
/* Listen on an already bound and listening socket; `tls`: serve TLS on it. */
int glisten_add_fd(struct glisten *g, int fd, int tls);
size_t glisten_fds(const struct glisten *g, int *fds, size_t max);
void glisten_close(struct glisten *g);
int glisten_busy(const struct glisten *g);

#endif
