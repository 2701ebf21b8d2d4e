/*
 * io: a connected, ordered byte stream that HTTP/2 runs on. The plain
 * implementation wraps a libuv TCP or Unix socket (io_uv.c); TLS, yamux
 * streams and test transports implement the same operations, so the HTTP/2
 * and gRPC layers never touch a socket directly.
 *
 * Rules: one owner per io. The owner sets on_read/on_close/data. read_start
 * delivers data through on_read until read_stop; nread < 0 is an error or
 * UV_EOF and no more reads follow. write() takes one buffer that must stay
 * valid until its callback, which fires exactly once (with a negative status
 * on failure or after close). Like libuv's, write and close callbacks always
 * fire later from the loop, never from inside write() or close() themselves. close() is idempotent; on_close fires once
 * when the io is gone, and the owner may free its own state there (the io
 * frees itself after on_close returns).
 */
#ifndef H2_IO_H
#define H2_IO_H

#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

struct io;
typedef void (*io_write_cb)(struct io *io, int status, void *arg);

struct io_ops {
	int (*read_start)(struct io *io);
	int (*read_stop)(struct io *io);
	int (*write)(struct io *io, const char *buf, size_t len, io_write_cb cb, void *arg);
	void (*close)(struct io *io);
	/* Peer address for logs, e.g. "127.0.0.1:5000" or "unix" ("" if unknown). */
	const char *(*peer)(struct io *io);
	/*
	 * Optional: write several buffers as one write (one callback; every
	 * buffer stays valid until it). NULL where the io cannot gather.
	 */
	int (*writev)(struct io *io, const uv_buf_t *bufs, unsigned nbufs, io_write_cb cb, void *arg);
	/*
	 * Optional: write what can go out now without blocking or queuing
	 * (libuv's uv_try_write): the number of bytes written (0 when none could
	 * be, including while an earlier write is still queued, so order holds)
	 * or a negative error. No callback. Writing this way skips the write
	 * request, its completion on the next loop round and, for libuv, the
	 * epoll_ctl that re-arms the socket after every completed uv_write.
	 */
	ssize_t (*try_write)(struct io *io, const char *buf, size_t len);
};

struct io {
	const struct io_ops *ops;
	void *data;                                               /* owner's */
	void (*on_read)(struct io *io, const char *buf, ssize_t nread);
	void (*on_close)(struct io *io);
	int closing;
};

static inline int io_read_start(struct io *io) { return io->ops->read_start(io); }
static inline int io_read_stop(struct io *io) { return io->ops->read_stop(io); }
static inline int io_write(struct io *io, const char *buf, size_t len, io_write_cb cb, void *arg)
{
	return io->ops->write(io, buf, len, cb, arg);
}
/* io_write of several buffers at once; UV_ENOSYS (and no callback) where the io has no writev. */
static inline int io_writev(struct io *io, const uv_buf_t *bufs, unsigned nbufs, io_write_cb cb, void *arg)
{
	return io->ops->writev ? io->ops->writev(io, bufs, nbufs, cb, arg) : UV_ENOSYS;
}
/* io_try_write: 0 (nothing written) where the io cannot write without a request. */
static inline ssize_t io_try_write(struct io *io, const char *buf, size_t len)
{
	return io->ops->try_write && !io->closing ? io->ops->try_write(io, buf, len) : 0;
}
void io_close(struct io *io);
static inline const char *io_peer(struct io *io) { return io->ops->peer ? io->ops->peer(io) : ""; }

/* --- libuv sockets (io_uv.c) --- */

/*
 * Wrap an accepted or connected uv stream (uv_tcp_t or uv_pipe_t) that was
 * allocated with io_uv_alloc(); returns the io that now owns it.
 */
struct io *io_uv_wrap(uv_stream_t *stream);
/* Allocate an uninitialised uv_tcp_t / uv_pipe_t inside a new io_uv. */
uv_tcp_t *io_uv_alloc_tcp(void);
uv_pipe_t *io_uv_alloc_pipe(void);
/* Release a stream from io_uv_alloc_*() that failed before being wrapped. */
void io_uv_discard(uv_stream_t *stream);

/* --- wrapping (io_wrap.c) --- */

/*
 * Take over `inner` and return an io that first delivers `prefix` (bytes
 * already read from `inner`, e.g. while sniffing a handshake) and then
 * everything `inner` reads; writes and close pass through. `on_close_hook`
 * (may be NULL) runs after the wrapper's own on_close, to tie the lifetime
 * of something else (a yamux session) to this stream.
 */
struct io *io_wrap(uv_loop_t *loop, struct io *inner, const char *prefix, size_t len,
		   void (*on_close_hook)(void *arg), void *hook_arg);
/* The io an io_wrap() wraps, or NULL when `io` is not a wrapper. */
struct io *io_wrap_inner(struct io *io);

/* --- addresses in the forms upstream accepts --- */

enum addr_kind { ADDR_UNIX, ADDR_TCP, ADDR_TLS };

struct addr {
	enum addr_kind kind;
	char path[108];   /* ADDR_UNIX */
	char host[256];   /* ADDR_TCP/TLS, without brackets */
	int port;
};

/*
 * Parse "unix:/path" and "unix:///path" (the path after "unix:" or
 * "unix://"), "tcp://host:port", "tls://host:port", "host:port" and
 * "[v6addr]:port". Returns 0 or -EINVAL.
 */
int addr_parse(const char *s, struct addr *out);

/*
 * Connect to a parsed address (resolving names with uv_getaddrinfo); `done`
 * fires once with an io or a negative error. Returns 0 or a negative error
 * (then `done` never fires).
 */
int io_connect(uv_loop_t *loop, const struct addr *a, void (*done)(void *arg, struct io *io, int status),
	       void *arg);

/* --- TLS over another io (io_tls.c; docs/technical/tls.md) --- */

struct ssl_ctx_st;

/*
 * A server context from a PEM certificate chain and a PEM private key:
 * TLS 1.2 or newer, ALPN "h2". NULL with a message in `err` on failure.
 */
struct ssl_ctx_st *tls_server_ctx_new(const char *cert_path, const char *key_path, char *err, size_t errsz);
/*
 * The process's client context, made on first use: TLS 1.2 or newer, ALPN
 * "h2", peers verified against the system store, or SSL_CERT_FILE and
 * SSL_CERT_DIR when set. NULL when it cannot be made.
 */
struct ssl_ctx_st *tls_client_ctx(void);
void tls_ctx_free(struct ssl_ctx_st *ctx);

/*
 * Take over `inner` and run a TLS handshake on it: as a client verifying the
 * certificate for `host` (SNI and name or IP checks) when host is not NULL,
 * else as a server. `done` fires once, from the loop, with the TLS io (now
 * owned by the callee, not yet reading) or with NULL and a negative error
 * once `inner` is closed. A handshake that takes longer than 10 s fails.
 * Failures are logged with the peer and OpenSSL's reason.
 */
void io_tls_handshake(uv_loop_t *loop, struct io *inner, struct ssl_ctx_st *ctx, const char *host,
		      void (*done)(void *arg, struct io *io, int status), void *arg);
/* The reason of this thread's last failed handshake ("" if none). */
const char *io_tls_last_error(void);

#endif
