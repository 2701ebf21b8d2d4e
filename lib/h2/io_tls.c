/*
 * TLS as an io over another io (docs/technical/tls.md): OpenSSL works on two
 * memory BIOs, ciphertext goes through the inner io, so backpressure and
 * memory bounds are the inner io's. A write's callback fires once the
 * ciphertext it produced is written by the inner io.
 */
#include "io.h"
#include "../base/util.h"
#include "../base/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define HANDSHAKE_TIMEOUT_MS 10000

static const unsigned char alpn_h2[] = { 2, 'h', '2' };

static __thread char last_error[640];

struct io_tls {
	struct io io;
	struct io *inner;
	SSL *ssl;
	BIO *rbio, *wbio;          /* network -> ssl, ssl -> network */
	uv_idle_t drain;           /* delivers plaintext already decrypted or buffered */
	uv_timer_t timer;          /* handshake deadline */
	int handles_open, inner_closed;
	int handshaking, reading, eof;
	void (*done)(void *arg, struct io *io, int status);
	void *done_arg;
	int hs_status;
	char host[256];
};

struct tls_write {
	struct io_tls *t;
	char *buf;
	io_write_cb cb;
	void *arg;
};

const char *io_tls_last_error(void)
{
	return last_error;
}

/* OpenSSL's reason for the last failure, with the verify result when there is one. */
static void ssl_reason(struct io_tls *t, char *out, size_t outsz)
{
	unsigned long e = ERR_peek_last_error();
	long v = t->ssl ? SSL_get_verify_result(t->ssl) : X509_V_OK;

	if (v != X509_V_OK && t->host[0])
		snprintf(out, outsz, "certificate verify failed: %s", X509_verify_cert_error_string(v));
	else if (e)
		ERR_error_string_n(e, out, outsz);
	else
		snprintf(out, outsz, "protocol error");
	ERR_clear_error();
}

static void maybe_free(struct io_tls *t)
{
	if (!t->inner_closed || t->handles_open)
		return;
	if (t->done) {
		void (*done)(void *, struct io *, int) = t->done;
		t->done = NULL;
		done(t->done_arg, NULL, t->hs_status ? t->hs_status : UV_ECONNABORTED);
	}
	if (t->io.on_close)
		t->io.on_close(&t->io);
	SSL_free(t->ssl);
	free(t);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct io_tls *t = h->data;
	t->handles_open--;
	maybe_free(t);
}

static void on_inner_close(struct io *inner)
{
	struct io_tls *t = inner->data;
	t->inner_closed = 1;
	maybe_free(t);
}

static void tls_close(struct io *io)
{
	struct io_tls *t = (struct io_tls *)io;
	uv_close((uv_handle_t *)&t->drain, on_handle_closed);
	uv_close((uv_handle_t *)&t->timer, on_handle_closed);
	io_close(t->inner);
}

static void handshake_fail(struct io_tls *t, int status, const char *why)
{
	struct log_entry e;

	snprintf(last_error, sizeof(last_error), "TLS handshake with %.256s failed: %.300s",
		 t->host[0] ? t->host : io_peer(t->inner), why);
	if (log_begin(&e, LOG_WARN, "TLS handshake failed")) {
		log_str(&e, "peer", io_peer(t->inner));
		if (t->host[0])
			log_str(&e, "server_name", t->host);
		log_str(&e, "error", why);
		log_end(&e);
	}
	t->hs_status = status;
	io_close(&t->io);
}

static void on_flushed(struct io *inner, int status, void *arg)
{
	struct tls_write *w = arg;
	io_write_cb cb = w->cb;
	void *cbarg = w->arg;
	struct io_tls *t = w->t;
	free(w->buf);
	free(w);
	if (cb)
		cb(&t->io, status, cbarg);
}

/* Write what OpenSSL produced; `cb` (may be NULL) fires when it is on the wire. */
static int flush_out(struct io_tls *t, io_write_cb cb, void *arg)
{
	size_t n = BIO_ctrl_pending(t->wbio);
	struct tls_write *w;
	int rc;

	if (!n && !cb)
		return 0;
	w = xcalloc(1, sizeof(*w));
	w->t = t;
	w->cb = cb;
	w->arg = arg;
	w->buf = xmalloc(n ? n : 1);
	if (n && BIO_read(t->wbio, w->buf, (int)n) != (int)n) {
		free(w->buf);
		free(w);
		return UV_EPROTO;
	}
	rc = io_write(t->inner, w->buf, n, on_flushed, w);
	if (rc < 0) {
		free(w->buf);
		free(w);
	}
	return rc;
}

/* Hand decrypted bytes to the owner while it reads. */
static void drain(struct io_tls *t)
{
	static __thread char buf[16384];

	while (t->reading && !t->io.closing && !t->eof) {
		int n = SSL_read(t->ssl, buf, sizeof(buf));
		if (n > 0) {
			if (t->io.on_read)
				t->io.on_read(&t->io, buf, n);
			continue;
		}
		switch (SSL_get_error(t->ssl, n)) {
		case SSL_ERROR_WANT_READ:
			break;
		case SSL_ERROR_ZERO_RETURN:
			t->eof = 1;
			if (t->io.on_read)
				t->io.on_read(&t->io, NULL, UV_EOF);
			break;
		default: {
			char why[200];
			ssl_reason(t, why, sizeof(why));
			log_msgf(LOG_WARN, "TLS read from %s failed: %s", io_peer(t->inner), why);
			t->eof = 1;
			if (t->io.on_read)
				t->io.on_read(&t->io, NULL, UV_EPROTO);
			break;
		}
		}
		break;
	}
	if (!t->io.closing)
		flush_out(t, NULL, NULL); /* session tickets, key updates */
}

static void on_drain(uv_idle_t *h)
{
	struct io_tls *t = h->data;
	uv_idle_stop(h);
	drain(t);
}

static void handshake_step(struct io_tls *t)
{
	int rc = SSL_do_handshake(t->ssl);
	char why[200];

	if (flush_out(t, NULL, NULL) < 0 && rc != 1) {
		handshake_fail(t, UV_ECONNRESET, "cannot write to the connection");
		return;
	}
	if (rc == 1) {
		void (*done)(void *, struct io *, int) = t->done;
		t->handshaking = 0;
		t->done = NULL;
		uv_timer_stop(&t->timer);
		io_read_stop(t->inner);
		done(t->done_arg, &t->io, 0);
		return;
	}
	if (SSL_get_error(t->ssl, rc) == SSL_ERROR_WANT_READ)
		return;
	ssl_reason(t, why, sizeof(why));
	handshake_fail(t, UV_EPROTO, why);
}

static void on_inner_read(struct io *inner, const char *buf, ssize_t n)
{
	struct io_tls *t = inner->data;

	if (t->io.closing)
		return;
	if (n < 0) {
		if (t->handshaking) {
			handshake_fail(t, UV_ECONNRESET, n == UV_EOF ? "connection closed during the handshake"
								     : uv_strerror((int)n));
		} else if (!t->eof) {
			t->eof = 1;
			if (t->io.on_read)
				t->io.on_read(&t->io, NULL, n);
		}
		return;
	}
	if (BIO_write(t->rbio, buf, (int)n) != (int)n) {
		handshake_fail(t, UV_ENOMEM, "cannot buffer input");
		return;
	}
	if (t->handshaking)
		handshake_step(t);
	else
		drain(t);
}

static void on_handshake_timeout(uv_timer_t *h)
{
	struct io_tls *t = h->data;
	if (t->handshaking && !t->io.closing)
		handshake_fail(t, UV_ETIMEDOUT, "handshake timed out");
}

static int tls_read_start(struct io *io)
{
	struct io_tls *t = (struct io_tls *)io;
	if (io->closing)
		return UV_EPIPE;
	t->reading = 1;
	uv_idle_start(&t->drain, on_drain);
	return t->eof ? 0 : io_read_start(t->inner);
}

static int tls_read_stop(struct io *io)
{
	struct io_tls *t = (struct io_tls *)io;
	if (io->closing)
		return 0;
	t->reading = 0;
	uv_idle_stop(&t->drain);
	return io_read_stop(t->inner);
}

static int tls_write(struct io *io, const char *buf, size_t len, io_write_cb cb, void *arg)
{
	struct io_tls *t = (struct io_tls *)io;

	if (io->closing || t->handshaking)
		return UV_EPIPE;
	while (len) {
		int chunk = len > (1u << 30) ? 1 << 30 : (int)len;
		int n = SSL_write(t->ssl, buf, chunk);
		if (n <= 0) {
			ERR_clear_error();
			return UV_EPROTO;
		}
		buf += n;
		len -= (size_t)n;
	}
	return flush_out(t, cb, arg);
}

static const char *tls_peer(struct io *io)
{
	return io_peer(((struct io_tls *)io)->inner);
}

static const struct io_ops tls_ops = {
	.read_start = tls_read_start,
	.read_stop = tls_read_stop,
	.write = tls_write,
	.close = tls_close,
	.peer = tls_peer,
};

static void on_start(uv_idle_t *h)
{
	struct io_tls *t = h->data;
	uv_idle_stop(h);
	if (t->io.closing)
		return;
	if (io_read_start(t->inner) < 0) {
		handshake_fail(t, UV_ECONNRESET, "cannot read from the connection");
		return;
	}
	handshake_step(t);
}

void io_tls_handshake(uv_loop_t *loop, struct io *inner, struct ssl_ctx_st *ctx, const char *host,
		      void (*done)(void *arg, struct io *io, int status), void *arg)
{
	struct io_tls *t = xcalloc(1, sizeof(*t));
	unsigned char ip[16];

	t->io.ops = &tls_ops;
	t->inner = inner;
	t->done = done;
	t->done_arg = arg;
	t->handshaking = 1;
	inner->data = t;
	inner->on_read = on_inner_read;
	inner->on_close = on_inner_close;
	uv_idle_init(loop, &t->drain);
	uv_timer_init(loop, &t->timer);
	t->drain.data = t->timer.data = t;
	t->handles_open = 2;
	uv_timer_start(&t->timer, on_handshake_timeout, HANDSHAKE_TIMEOUT_MS, 0);

	t->ssl = ctx ? SSL_new(ctx) : NULL;
	t->rbio = BIO_new(BIO_s_mem());
	t->wbio = BIO_new(BIO_s_mem());
	if (!t->ssl || !t->rbio || !t->wbio) {
		BIO_free(t->rbio);
		BIO_free(t->wbio);
		handshake_fail(t, UV_ENOMEM, "cannot create a TLS session");
		return;
	}
	BIO_set_mem_eof_return(t->rbio, -1);
	BIO_set_mem_eof_return(t->wbio, -1);
	SSL_set_bio(t->ssl, t->rbio, t->wbio);
	if (host) {
		snprintf(t->host, sizeof(t->host), "%s", host);
		SSL_set_connect_state(t->ssl);
		SSL_set_alpn_protos(t->ssl, alpn_h2, sizeof(alpn_h2));
		SSL_set_verify(t->ssl, SSL_VERIFY_PEER, NULL);
		if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1) {
			X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host);
		} else {
			SSL_set_tlsext_host_name(t->ssl, host);
			SSL_set1_host(t->ssl, host);
		}
	} else {
		SSL_set_accept_state(t->ssl);
	}
	/* start from the loop, so `done` never fires from inside this call */
	uv_idle_start(&t->drain, on_start);
}

/* --- contexts --- */

static int select_h2(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
		     unsigned int inlen, void *arg)
{
	unsigned char *sel;
	if (SSL_select_next_proto(&sel, outlen, alpn_h2, sizeof(alpn_h2), in, inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL; /* the client offered ALPN without h2 */
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

static void ctx_error(char *err, size_t errsz, const char *what, const char *path)
{
	unsigned long e = ERR_peek_last_error();
	char reason[200] = "";
	if (e)
		ERR_error_string_n(e, reason, sizeof(reason));
	ERR_clear_error();
	snprintf(err, errsz, "%s \"%s\": %s", what, path, reason[0] ? reason : "unknown error");
}

struct ssl_ctx_st *tls_server_ctx_new(const char *cert_path, const char *key_path, char *err, size_t errsz)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (!ctx) {
		snprintf(err, errsz, "cannot create a TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_alpn_select_cb(ctx, select_h2, NULL);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
		ctx_error(err, errsz, "loading certificate", cert_path);
	} else if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
		ctx_error(err, errsz, "loading key", key_path);
	} else if (SSL_CTX_check_private_key(ctx) != 1) {
		ctx_error(err, errsz, "key does not match certificate", key_path);
	} else {
		return ctx;
	}
	SSL_CTX_free(ctx);
	return NULL;
}

static SSL_CTX *client_ctx;

static void make_client_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		return;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	/* OpenSSL reads SSL_CERT_FILE / SSL_CERT_DIR here, in place of its defaults */
	SSL_CTX_set_default_verify_paths(ctx);
	ERR_clear_error();
	client_ctx = ctx;
}

struct ssl_ctx_st *tls_client_ctx(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, make_client_ctx); /* channels live on several loops' threads */
	return client_ctx;
}

void tls_ctx_free(struct ssl_ctx_st *ctx)
{
	SSL_CTX_free(ctx);
}
