/* Backchannel connections: the "backchannel" handshake and yamux sessions on both sides. */
#include "backchannel.h"
#include "base/hashmap.h"
#include "base/log.h"
#include "base/util.h"
#include "h2/io.h"
#include "yamux/yamux.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SNIFF_TIMEOUT_MS 10000

/* --- server side --- */

struct bc_entry {
	struct bc_server *b;
	uint64_t id;
	struct yamux_session *session;
	int got_first_stream;
	struct grpc_channel *ch;      /* calls back to the peer, made on first use */
};

struct bc_server {
	struct grpc_server *srv;
	uv_loop_t *loop;
	uint32_t max_window;
	struct hashmap sessions;      /* decimal id -> entry */
	uint64_t next_id;
};

/* A connection whose first bytes are still being read. */
struct sniff {
	struct bc_server *b;
	struct io *io;
	char buf[BACKCHANNEL_MAGIC_LEN];
	size_t len;
	uv_timer_t timer;
	int decided;
};

static void id_key(uint64_t id, char out[24])
{
	snprintf(out, 24, "%llu", (unsigned long long)id);
}

static void on_first_stream(struct yamux_session *s, struct io *stream, void *data)
{
	struct bc_entry *e = data;
	/* the client's gRPC channel is its first stream; no further ones are served */
	if (e->got_first_stream) {
		yamux_stream_reset(stream);
		return;
	}
	e->got_first_stream = 1;
	grpc_server_adopt(e->b->srv, stream);
}

static void on_session_closed(struct yamux_session *s, int reason, void *data)
{
	struct bc_entry *e = data;
	char k[24];
	id_key(e->id, k);
	hashmap_remove(&e->b->sessions, k, strlen(k));
	if (e->ch)
		grpc_channel_close(e->ch);
	free(e);
}

static void on_sniff_timer_closed(uv_handle_t *h)
{
	free(h->data);
}

static void sniff_done(struct sniff *sn)
{
	sn->decided = 1;
	uv_timer_stop(&sn->timer);
	uv_close((uv_handle_t *)&sn->timer, on_sniff_timer_closed);
}

static void start_session(struct bc_server *b, struct io *io, const char *rest, size_t len)
{
	struct bc_entry *e = xcalloc(1, sizeof(*e));
	struct yamux_opts o;
	char k[24];

	e->b = b;
	e->id = ++b->next_id;
	yamux_opts_default(&o);
	o.max_stream_window = b->max_window;
	o.accept_backlog = 1;
	o.on_accept = on_first_stream;
	o.on_close = on_session_closed;
	o.data = e;
	id_key(e->id, k);
	hashmap_put(&b->sessions, k, strlen(k), e);
	e->session = yamux_session_new(b->loop, io_wrap(b->loop, io, rest, len, NULL, NULL), 0, &o);
	yamux_session_set_data(e->session, e);
}

static void on_sniff_read(struct io *io, const char *buf, ssize_t n)
{
	struct sniff *sn = io->data;
	size_t take;

	if (sn->decided)
		return;
	if (n < 0) {
		sniff_done(sn);
		io_close(io);
		return;
	}
	take = MIN((size_t)n, BACKCHANNEL_MAGIC_LEN - sn->len);
	memcpy(sn->buf + sn->len, buf, take);
	sn->len += take;
	if (sn->len < BACKCHANNEL_MAGIC_LEN && memcmp(sn->buf, BACKCHANNEL_MAGIC, sn->len) == 0)
		return; /* could still be the handshake: wait for more */
	io_read_stop(io);
	sniff_done(sn);
	if (sn->len == BACKCHANNEL_MAGIC_LEN && !memcmp(sn->buf, BACKCHANNEL_MAGIC, BACKCHANNEL_MAGIC_LEN)) {
		start_session(sn->b, io, buf + take, (size_t)n - take);
	} else {
		/* plain HTTP/2 (its preface "PRI * HTTP/2.0" never looks like the magic) */
		struct strbuf all = STRBUF_INIT;
		strbuf_add(&all, sn->buf, sn->len);
		strbuf_add(&all, buf + take, (size_t)n - take);
		grpc_server_adopt(sn->b->srv, io_wrap(sn->b->loop, io, all.buf, all.len, NULL, NULL));
		strbuf_release(&all);
	}
}

static void on_sniff_timeout(uv_timer_t *t)
{
	struct sniff *sn = t->data;
	if (sn->decided)
		return;
	sniff_done(sn);
	io_close(sn->io); /* said nothing useful for too long */
}

static void on_accept(struct grpc_server *srv, struct io *io, void *data)
{
	struct bc_server *b = data;
	struct sniff *sn = xcalloc(1, sizeof(*sn));
	sn->b = b;
	sn->io = io;
	io->data = sn;
	io->on_read = on_sniff_read;
	io->on_close = NULL;
	uv_timer_init(b->loop, &sn->timer);
	sn->timer.data = sn;
	uv_timer_start(&sn->timer, on_sniff_timeout, SNIFF_TIMEOUT_MS, 0);
	if (io_read_start(io) < 0) {
		sniff_done(sn);
		io_close(io);
	}
}

struct bc_server *bc_server_new(struct grpc_server *srv, uint32_t max_window)
{
	struct bc_server *b = xcalloc(1, sizeof(*b));
	b->srv = srv;
	b->loop = grpc_server_loop(srv);
	b->max_window = max_window ? max_window : YAMUX_MAX_WINDOW;
	hashmap_init(&b->sessions);
	grpc_server_set_accept(srv, on_accept, b);
	return b;
}

void bc_server_free(struct bc_server *b)
{
	hashmap_release(&b->sessions);
	free(b);
}

size_t bc_server_sessions(const struct bc_server *b)
{
	return b->sessions.nr;
}

uint64_t bc_call_id(struct bc_server *b, struct grpc_call *call)
{
	struct yamux_session *s = yamux_stream_session(grpc_call_io(call));
	struct bc_entry *e = s ? yamux_session_data(s) : NULL;
	return e ? e->id : 0;
}

struct grpc_channel *bc_channel(struct bc_server *b, uint64_t id)
{
	char k[24];
	struct bc_entry *e;
	struct grpc_channel_opts o;

	id_key(id, k);
	e = hashmap_get(&b->sessions, k, strlen(k));
	if (!e || yamux_session_is_closing(e->session))
		return NULL;
	if (e->ch)
		return e->ch;
	grpc_channel_opts_default(&o);
	o.dial = yamux_dial;
	o.dial_data = e->session;
	o.keepalive_ms = 0; /* the praefect side keeps the connection alive */
	if (grpc_channel_new(b->loop, "backchannel", &o, &e->ch) < 0)
		return NULL;
	return e->ch;
}

/* --- sidechannel ids --- */

int64_t bc_sidechannel_id(const char *s)
{
	int neg = 0;
	uint64_t v = 0;
	int over = 0;

	if (*s == '+' || *s == '-')
		neg = *s++ == '-';
	if (!*s)
		return 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return 0;
		if (v > (UINT64_MAX - 9) / 10)
			over = 1;
		else
			v = v * 10 + (uint64_t)(*s - '0');
	}
	if (neg)
		return over || v > (uint64_t)INT64_MAX + 1 ? INT64_MIN : (int64_t)(0 - v);
	return over || v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
}

void bc_sidechannel_hello(char out[SIDECHANNEL_HELLO_LEN], int64_t id)
{
	uint64_t u = (uint64_t)id;
	memcpy(out, SIDECHANNEL_MAGIC, SIDECHANNEL_MAGIC_LEN);
	for (int i = 0; i < 8; i++)
		out[SIDECHANNEL_MAGIC_LEN + i] = (char)(u >> (56 - 8 * i));
}

/* --- client side --- */

struct bc_conn {
	struct bc_client *c;
	struct yamux_session *session;
	int session_closed;
	int stream_closed;
	struct addr addr;
	void (*done)(void *arg, struct io *io, int status);
	void *arg;
};

static void conn_maybe_free(struct bc_conn *bc)
{
	if (bc->session_closed && bc->stream_closed)
		free(bc);
}

static void on_client_session_closed(struct yamux_session *s, int reason, void *data)
{
	struct bc_conn *bc = data;
	bc->session_closed = 1;
	conn_maybe_free(bc);
}

static void on_peer_stream(struct yamux_session *s, struct io *stream, void *data)
{
	struct bc_conn *bc = data;
	if (bc->c->on_stream)
		bc->c->on_stream(stream, bc->c->stream_data);
	else
		grpc_server_adopt(bc->c->serve, stream);
}

/* The gRPC connection over the first stream is gone: so is the whole session. */
static void on_stream_gone(void *arg)
{
	struct bc_conn *bc = arg;
	bc->stream_closed = 1;
	if (!bc->session_closed)
		yamux_session_close(bc->session);
	conn_maybe_free(bc);
}

static void on_magic_written(struct io *io, int status, void *arg)
{
	/* failures show up as the session's transport error */
}

static void on_connected(void *arg, struct io *io, int status)
{
	struct bc_conn *bc = arg;
	struct yamux_opts o;
	struct io *stream;
	int rc;

	if (status < 0) {
		bc->done(bc->arg, NULL, status);
		free(bc);
		return;
	}
	rc = io_write(io, BACKCHANNEL_MAGIC, BACKCHANNEL_MAGIC_LEN, on_magic_written, bc);
	if (rc < 0) {
		io_close(io);
		bc->done(bc->arg, NULL, rc);
		free(bc);
		return;
	}
	yamux_opts_default(&o);
	if (bc->c->max_window)
		o.max_stream_window = bc->c->max_window;
	o.on_accept = on_peer_stream;
	o.on_close = on_client_session_closed;
	o.data = bc;
	bc->session = yamux_session_new(bc->c->loop, io, 1, &o);
	rc = yamux_open_stream(bc->session, &stream);
	if (rc < 0) {
		bc->stream_closed = 1;
		yamux_session_close(bc->session);
		bc->done(bc->arg, NULL, rc);
		return;
	}
	bc->done(bc->arg, io_wrap(bc->c->loop, stream, NULL, 0, on_stream_gone, bc), 0);
}

int bc_dial(uv_loop_t *loop, const char *target, void *dial_data,
	    void (*done)(void *arg, struct io *io, int status), void *arg)
{
	struct bc_conn *bc = xcalloc(1, sizeof(*bc));
	int rc;
	bc->c = dial_data;
	bc->done = done;
	bc->arg = arg;
	if (addr_parse(target, &bc->addr) < 0) {
		free(bc);
		return -EINVAL;
	}
	rc = io_connect(loop, &bc->addr, on_connected, bc);
	if (rc < 0)
		free(bc);
	return rc;
}
