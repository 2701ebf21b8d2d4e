/* Unit tests: yamux sessions over a socketpair, against each other and against a raw peer. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "base/log.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "grpc/client.h"
#include "grpc/server.h"
#include "h2/io.h"
#include "yamux/yamux.h"

#define MAX_EPS 1024

/* --- one stream end as a test sees it --- */

struct ep {
	struct io *io;
	struct strbuf in;
	int eof;             /* UV_EOF delivered */
	int err;             /* another negative read */
	int closed;          /* on_close fired */
	int writes_done;
	int write_err;       /* first failed write's status */
	int echo;            /* write back what arrives, close at EOF */
	size_t pause_every;  /* stop reading after this many more bytes (0: never) */
	size_t until_pause;
	int paused;
};

enum accept_mode { ACCEPT_KEEP, ACCEPT_ECHO, ACCEPT_GRPC, ACCEPT_RESET };

struct ctx {
	uv_loop_t loop;
	uv_timer_t tick;
	struct yamux_session *cli, *srv;
	int cli_closed, srv_closed, cli_reason, srv_reason;
	enum accept_mode accept_mode;
	struct grpc_server *grpc;
	struct ep *eps[MAX_EPS];
	size_t neps;
	struct ep *accepted[MAX_EPS];
	size_t naccepted;
	int raw_fd;
	struct strbuf raw_in;
	int raw_eof;
};

static struct ctx C;

static void on_tick(uv_timer_t *t)
{
}

/* A timer keeps UV_RUN_ONCE from sleeping longer than a millisecond. */
static void loop_setup(void)
{
	memset(&C, 0, sizeof(C));
	assert_int_equal(uv_loop_init(&C.loop), 0);
	uv_timer_init(&C.loop, &C.tick);
	uv_timer_start(&C.tick, on_tick, 1, 1);
	uv_unref((uv_handle_t *)&C.tick);
	strbuf_init(&C.raw_in, 0);
	C.raw_fd = -1;
}

static struct io *wrap_fd(int fd)
{
	uv_pipe_t *p = io_uv_alloc_pipe();

	assert_int_equal(uv_pipe_init(&C.loop, p, 0), 0);
	assert_int_equal(uv_pipe_open(p, fd), 0);
	return io_uv_wrap((uv_stream_t *)p);
}

static void ep_on_write(struct io *io, int status, void *arg)
{
	struct ep *e = io->data;

	e->writes_done++;
	if (status < 0 && !e->write_err)
		e->write_err = status;
	free(arg);
}

static void ep_on_write_nofree(struct io *io, int status, void *arg)
{
	struct ep *e = io->data;

	e->writes_done++;
	if (status < 0 && !e->write_err)
		e->write_err = status;
}

static void ep_on_read(struct io *io, const char *buf, ssize_t n)
{
	struct ep *e = io->data;

	assert_false(e->eof || e->err);   /* nothing after the final read */
	if (n < 0) {
		if (n == UV_EOF)
			e->eof = 1;
		else
			e->err = (int)n;
		if (e->echo)
			io_close(io);
		return;
	}
	assert_false(e->paused);
	strbuf_add(&e->in, buf, (size_t)n);
	if (e->echo) {
		char *copy = xmemdup(buf, (size_t)n);
		assert_int_equal(io_write(io, copy, (size_t)n, ep_on_write, copy), 0);
	}
	if (e->pause_every) {
		if ((size_t)n >= e->until_pause) {
			e->paused = 1;
			io_read_stop(io);
			e->until_pause = e->pause_every;
		} else {
			e->until_pause -= (size_t)n;
		}
	}
}

static void ep_on_close(struct io *io)
{
	struct ep *e = io->data;

	assert_false(e->closed);
	e->closed = 1;
}

static struct ep *ep_new(struct io *io)
{
	struct ep *e = xcalloc(1, sizeof(*e));

	assert_true(C.neps < MAX_EPS);
	C.eps[C.neps++] = e;
	e->io = io;
	strbuf_init(&e->in, 0);
	io->data = e;
	io->on_read = ep_on_read;
	io->on_close = ep_on_close;
	return e;
}

static void ep_send(struct ep *e, const void *buf, size_t len)
{
	char *copy = xmemdup(buf, len);
	assert_int_equal(io_write(e->io, copy, len, ep_on_write, copy), 0);
}

/* --- sessions --- */

static void on_accept(struct yamux_session *s, struct io *stream, void *data)
{
	struct ep *e;

	switch (C.accept_mode) {
	case ACCEPT_GRPC:
		assert_int_equal(grpc_server_adopt(C.grpc, stream), 0);
		return;
	case ACCEPT_RESET:
		yamux_stream_reset(stream);
		return;
	case ACCEPT_ECHO:
	case ACCEPT_KEEP:
		break;
	}
	e = ep_new(stream);
	assert_true(C.naccepted < MAX_EPS);
	C.accepted[C.naccepted++] = e;
	if (C.accept_mode == ACCEPT_ECHO) {
		e->echo = 1;
		assert_int_equal(io_read_start(stream), 0);
	}
}

static void on_session_close(struct yamux_session *s, int reason, void *data)
{
	if (data == &C.cli) {
		assert_false(C.cli_closed);
		C.cli_closed = 1;
		C.cli_reason = reason;
	} else {
		assert_false(C.srv_closed);
		C.srv_closed = 1;
		C.srv_reason = reason;
	}
}

static void opts_init(struct yamux_opts *o, void *tag)
{
	yamux_opts_default(o);
	o->on_accept = on_accept;
	o->on_close = on_session_close;
	o->data = tag;
}

static void pair_new(const struct yamux_opts *co, const struct yamux_opts *so)
{
	struct yamux_opts c, s;
	int fds[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	if (co)
		c = *co;
	else
		opts_init(&c, &C.cli);
	if (so)
		s = *so;
	else
		opts_init(&s, &C.srv);
	C.cli = yamux_session_new(&C.loop, wrap_fd(fds[0]), 1, &c);
	C.srv = yamux_session_new(&C.loop, wrap_fd(fds[1]), 0, &s);
}

/* One session (client or server side) against a socket the test reads and writes by hand. */
static struct yamux_session *raw_new(int is_client, const struct yamux_opts *o)
{
	struct yamux_opts d;
	struct yamux_session *s;
	int fds[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	if (!o) {
		opts_init(&d, is_client ? (void *)&C.cli : (void *)&C.srv);
		o = &d;
	}
	s = yamux_session_new(&C.loop, wrap_fd(fds[0]), is_client, o);
	if (is_client)
		C.cli = s;
	else
		C.srv = s;
	C.raw_fd = fds[1];
	assert_int_equal(fcntl(C.raw_fd, F_SETFL, O_NONBLOCK), 0);
	return s;
}

static void raw_pump(void)
{
	char buf[65536];
	ssize_t n;

	if (C.raw_fd < 0)
		return;
	while ((n = read(C.raw_fd, buf, sizeof(buf))) > 0)
		strbuf_add(&C.raw_in, buf, (size_t)n);
	if (n == 0)
		C.raw_eof = 1;
}

static int run_until(int (*pred)(void *), void *arg, uint64_t timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;

	while (!pred(arg)) {
		if (now_ms() > end)
			return 0;
		uv_run(&C.loop, UV_RUN_ONCE);
		raw_pump();
	}
	return 1;
}

static int never(void *arg)
{
	return 0;
}

static void run_for(uint64_t ms)
{
	run_until(never, NULL, ms);
}

static int flag_set(void *arg)
{
	return *(int *)arg;
}

static int have_accepted(void *arg)
{
	return C.naccepted >= (size_t)(uintptr_t)arg;
}

static int sessions_empty(void *arg)
{
	struct yamux_session_stats a, b;

	yamux_session_stats(C.cli, &a);
	yamux_session_stats(C.srv, &b);
	return !a.streams && !b.streams;
}

/* Write everything, letting the session read while the socket buffer is full. */
static void raw_write(const void *p, size_t len)
{
	const char *c = p;

	while (len) {
		ssize_t n = write(C.raw_fd, c, len);

		if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
			return;   /* the session already gave up on us */
		if (n < 0) {
			assert_int_equal(errno, EAGAIN);
			uv_run(&C.loop, UV_RUN_NOWAIT);
			raw_pump();
			continue;
		}
		c += n;
		len -= (size_t)n;
	}
}

static void raw_write_frame(uint8_t type, uint16_t flags, uint32_t id, uint32_t length,
			    const void *payload, size_t plen)
{
	struct yamux_hdr h = { 0, type, flags, id, length };
	uint8_t buf[YAMUX_HDR_LEN];

	yamux_hdr_encode(buf, &h);
	raw_write(buf, sizeof(buf));
	raw_write(payload, plen);
}

static int raw_have_frame(void *arg)
{
	struct yamux_hdr h;

	if (C.raw_in.len < YAMUX_HDR_LEN)
		return 0;
	yamux_hdr_decode((const uint8_t *)C.raw_in.buf, &h);
	return h.type != YAMUX_DATA || C.raw_in.len >= YAMUX_HDR_LEN + h.length;
}

/* The next frame our session sent to the raw peer: header bytes checked exactly. */
static void raw_expect(const uint8_t want[YAMUX_HDR_LEN], struct strbuf *payload)
{
	struct yamux_hdr h;

	assert_true(run_until(raw_have_frame, NULL, 2000));
	if (memcmp(C.raw_in.buf, want, YAMUX_HDR_LEN)) {
		char got[64], exp[64];
		for (int i = 0; i < YAMUX_HDR_LEN; i++) {
			snprintf(got + 3 * i, 4, "%02x ", (uint8_t)C.raw_in.buf[i]);
			snprintf(exp + 3 * i, 4, "%02x ", want[i]);
		}
		fail_msg("frame bytes\n got: %s\nwant: %s", got, exp);
	}
	yamux_hdr_decode((const uint8_t *)C.raw_in.buf, &h);
	if (h.type == YAMUX_DATA) {
		if (payload)
			strbuf_add(payload, C.raw_in.buf + YAMUX_HDR_LEN, h.length);
		strbuf_remove_front(&C.raw_in, YAMUX_HDR_LEN + h.length);
	} else {
		strbuf_remove_front(&C.raw_in, YAMUX_HDR_LEN);
	}
}

static int raw_quiet(void)
{
	run_for(30);
	return C.raw_in.len == 0;
}

/* --- teardown: everything closed, every handle gone, nothing leaked --- */

static int all_closed(void *arg)
{
	if ((C.cli && !C.cli_closed) || (C.srv && !C.srv_closed))
		return 0;
	for (size_t i = 0; i < C.neps; i++)
		if (!C.eps[i]->closed)
			return 0;
	return 1;
}

static void grpc_shutdown_done(struct grpc_server *s, void *arg)
{
	grpc_server_free(s);
	*(int *)arg = 1;
}

static void teardown(void)
{
	int grpc_done = 0;

	if (C.grpc) {
		grpc_server_shutdown(C.grpc, 0, grpc_shutdown_done, &grpc_done);
		assert_true(run_until(flag_set, &grpc_done, 5000));
	}
	if (C.cli && !C.cli_closed)
		yamux_session_close(C.cli);
	if (C.srv && !C.srv_closed)
		yamux_session_close(C.srv);
	/* Owners close what they hold once their streams fail. */
	for (size_t i = 0; i < C.neps; i++)
		if (!C.eps[i]->closed)
			io_close(C.eps[i]->io);
	assert_true(run_until(all_closed, NULL, 5000));
	if (C.raw_fd >= 0)
		close(C.raw_fd);
	uv_close((uv_handle_t *)&C.tick, NULL);
	uv_run(&C.loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&C.loop), 0);
	for (size_t i = 0; i < C.neps; i++) {
		strbuf_release(&C.eps[i]->in);
		free(C.eps[i]);
	}
	strbuf_release(&C.raw_in);
}

static void fill_pattern(char *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)((i * 31 + seed + i / 4099) & 0xff);
}

/* ---------------------------------------------------------------------- */

static void test_header_codec(void **state)
{
	static const uint8_t want[YAMUX_HDR_LEN] = { 0x00, 0x01, 0x00, 0x05, 0x80, 0x00, 0x00, 0x03,
						     0x00, 0xfc, 0x00, 0x00 };
	struct yamux_hdr h = { 0, YAMUX_WINDOW_UPDATE, YAMUX_SYN | YAMUX_FIN, 0x80000003u, 0x00fc0000u };
	struct yamux_hdr back;
	uint8_t buf[YAMUX_HDR_LEN];

	yamux_hdr_encode(buf, &h);
	assert_memory_equal(buf, want, sizeof(want));
	yamux_hdr_decode(buf, &back);
	assert_int_equal(back.version, 0);
	assert_int_equal(back.type, YAMUX_WINDOW_UPDATE);
	assert_int_equal(back.flags, YAMUX_SYN | YAMUX_FIN);
	assert_int_equal(back.stream_id, 0x80000003u);
	assert_int_equal(back.length, 0x00fc0000u);
}

static int ep_done(void *arg)
{
	struct ep *e = arg;
	return e->eof || e->err;
}

static int got_300k(void *arg)
{
	return ((struct ep *)arg)->in.len >= 300 * 1024;
}

static int has_four(void *arg)
{
	return ((struct ep *)arg)->in.len >= 4;
}

static int has_bytes(void *arg)
{
	return ((struct ep *)arg)->in.len > 0;
}

static void test_echo_both_directions(void **state)
{
	struct io *io;
	struct ep *a, *b;

	loop_setup();
	C.accept_mode = ACCEPT_ECHO;
	pair_new(NULL, NULL);

	/* client-opened: odd id */
	assert_int_equal(yamux_open_stream(C.cli, &io), 0);
	assert_int_equal(yamux_stream_id(io), 1);
	assert_ptr_equal(yamux_stream_session(io), C.cli);
	a = ep_new(io);
	assert_int_equal(io_read_start(io), 0);
	ep_send(a, "hello", 5);
	assert_int_equal(yamux_stream_shutdown(io), 0);
	/* writing after the half close is refused at once */
	assert_int_equal(io_write(io, "x", 1, ep_on_write_nofree, NULL), UV_EPIPE);

	/* server-opened (the backchannel direction): even id */
	assert_int_equal(yamux_open_stream(C.srv, &io), 0);
	assert_int_equal(yamux_stream_id(io), 2);
	b = ep_new(io);
	assert_int_equal(io_read_start(io), 0);
	ep_send(b, "back", 4);
	ep_send(b, "channel", 7);
	assert_int_equal(yamux_stream_shutdown(io), 0);

	assert_true(run_until(ep_done, a, 2000));
	assert_true(run_until(ep_done, b, 2000));
	assert_int_equal(a->eof, 1);
	assert_int_equal(a->in.len, 5);
	assert_memory_equal(a->in.buf, "hello", 5);
	assert_int_equal(a->writes_done, 1);
	assert_int_equal(b->eof, 1);
	assert_string_equal(b->in.buf, "backchannel");
	assert_int_equal(C.naccepted, 2);
	assert_null(yamux_stream_session(NULL));

	/* both sides closed: the streams are forgotten on both ends */
	io_close(a->io);
	io_close(b->io);
	assert_true(run_until(sessions_empty, NULL, 2000));
	assert_true(a->closed && b->closed);
	teardown();
}

#define NSTREAMS 200
#define PER_STREAM 20000

static int all_eps_done(void *arg)
{
	size_t n = *(size_t *)arg;
	for (size_t i = 0; i < n; i++)
		if (!ep_done(C.eps[i]))
			return 0;
	return 1;
}

static void test_many_streams(void **state)
{
	static char data[PER_STREAM];
	size_t n = NSTREAMS;

	loop_setup();
	C.accept_mode = ACCEPT_ECHO;
	pair_new(NULL, NULL);
	for (unsigned i = 0; i < NSTREAMS; i++) {
		struct io *io;
		struct ep *e;

		assert_int_equal(yamux_open_stream(C.cli, &io), 0);
		e = ep_new(io);
		assert_int_equal(io_read_start(io), 0);
		fill_pattern(data, sizeof(data), i);
		ep_send(e, data, 1000);
		ep_send(e, data + 1000, sizeof(data) - 1000);
		assert_int_equal(yamux_stream_shutdown(io), 0);
	}
	assert_true(run_until(all_eps_done, &n, 10000));
	for (unsigned i = 0; i < NSTREAMS; i++) {
		struct ep *e = C.eps[i];

		fill_pattern(data, sizeof(data), i);
		assert_int_equal(e->eof, 1);
		assert_int_equal(e->in.len, sizeof(data));
		assert_memory_equal(e->in.buf, data, sizeof(data));
		io_close(e->io);
	}
	assert_int_equal(C.naccepted, NSTREAMS);
	teardown();
}

/* --- flow control --- */

struct bulk {
	struct ep *tx, *rx;
	char *data;
	size_t len;
	uint32_t window;
};

static int rx_has(void *arg)
{
	struct bulk *b = arg;
	return b->rx->in.len == b->len && b->rx->eof;
}

static int rx_full(void *arg)
{
	struct bulk *b = arg;
	struct yamux_stream_stats st;

	if (!C.naccepted)
		return 0;
	yamux_stream_stats(C.accepted[0]->io, &st);
	return st.buffered == b->window;
}

static int rx_paused(void *arg)
{
	struct bulk *b = arg;
	return b->rx->paused;
}

static void bulk_transfer(uint32_t window, size_t len, size_t pause_every)
{
	struct yamux_opts co, so;
	struct yamux_stream_stats txs, rxs;
	struct yamux_session_stats ss;
	struct bulk b = { 0 };
	struct io *io;
	size_t chunk = 64 * 1024, max_done;
	int pauses = 0;

	loop_setup();
	C.accept_mode = ACCEPT_KEEP;
	opts_init(&co, &C.cli);
	opts_init(&so, &C.srv);
	co.max_stream_window = window;
	so.max_stream_window = window;
	pair_new(&co, &so);

	b.len = len;
	b.data = xmalloc(len);
	fill_pattern(b.data, len, 7);
	assert_int_equal(yamux_open_stream(C.cli, &io), 0);
	b.tx = ep_new(io);
	/* Everything queued at once, zero copy: only the windows decide what moves. */
	for (size_t off = 0; off < len; off += chunk)
		assert_int_equal(io_write(io, b.data + off, MIN(chunk, len - off), ep_on_write_nofree, NULL), 0);
	assert_int_equal(yamux_stream_shutdown(io), 0);

	/* The receiver has not started reading: the sender stalls at the window. */
	b.window = window;
	assert_true(run_until(rx_full, &b, 5000));
	run_for(50);
	assert_int_equal(C.naccepted, 1);
	b.rx = C.accepted[0];
	yamux_stream_stats(b.rx->io, &rxs);
	yamux_stream_stats(b.tx->io, &txs);
	assert_int_equal(rxs.buffered, window);
	assert_int_equal(rxs.recv_window, 0);
	assert_int_equal(txs.send_window, 0);
	assert_int_equal(txs.queued, len - window);
	/* write callbacks only for what actually left */
	max_done = window / chunk;
	assert_true((size_t)b.tx->writes_done <= max_done);
	yamux_session_stats(C.cli, &ss);
	assert_true(ss.tx_inflight <= 256 * 1024 + YAMUX_HDR_LEN * 64);

	/* Read, pausing every `pause_every` bytes: while paused nothing more is buffered. */
	b.rx->pause_every = pause_every;
	b.rx->until_pause = pause_every;
	assert_int_equal(io_read_start(b.rx->io), 0);
	while (!rx_has(&b)) {
		if (pause_every && run_until(rx_paused, &b, 5000) && !rx_has(&b)) {
			size_t got = b.rx->in.len;

			run_for(10);
			yamux_stream_stats(b.rx->io, &rxs);
			assert_int_equal(b.rx->in.len, got);
			assert_true(rxs.buffered <= window);
			pauses++;
			b.rx->paused = 0;
			assert_int_equal(io_read_start(b.rx->io), 0);
			continue;
		}
		assert_true(run_until(rx_has, &b, 10000));
	}
	assert_int_equal(b.rx->in.len, len);
	assert_memory_equal(b.rx->in.buf, b.data, len);
	assert_int_equal(b.tx->writes_done, (int)((len + chunk - 1) / chunk));
	assert_int_equal(b.tx->write_err, 0);
	if (pause_every)
		assert_true(pauses >= 2);
	io_close(b.tx->io);
	io_close(b.rx->io);
	teardown();
	free(b.data);
}

static void test_backpressure_small_window(void **state)
{
	bulk_transfer(YAMUX_INITIAL_WINDOW, 4 * 1024 * 1024 + 123, 100 * 1000);
}

static void test_large_window(void **state)
{
	bulk_transfer(4 * 1024 * 1024, 12 * 1024 * 1024, 0);
}

/* --- half close, reset --- */

static void test_half_close(void **state)
{
	struct io *io;
	struct ep *c, *s;

	loop_setup();
	C.accept_mode = ACCEPT_KEEP;
	pair_new(NULL, NULL);
	assert_int_equal(yamux_open_stream(C.cli, &io), 0);
	c = ep_new(io);
	assert_int_equal(io_read_start(io), 0);
	ep_send(c, "request", 7);
	assert_int_equal(yamux_stream_shutdown(io), 0);
	assert_int_equal(yamux_stream_shutdown(io), 0);   /* twice is fine */

	assert_true(run_until(have_accepted, (void *)1, 2000));
	s = C.accepted[0];
	assert_int_equal(io_read_start(s->io), 0);
	assert_true(run_until(ep_done, s, 2000));
	assert_int_equal(s->eof, 1);
	assert_string_equal(s->in.buf, "request");

	/* The other direction is still open after the peer's FIN. */
	ep_send(s, "response", 8);
	assert_true(run_until(has_bytes, c, 2000));
	assert_string_equal(c->in.buf, "response");
	assert_false(c->eof);
	io_close(s->io);
	assert_true(run_until(ep_done, c, 2000));
	assert_int_equal(c->eof, 1);
	assert_true(run_until(flag_set, &s->closed, 2000));
	io_close(c->io);
	teardown();
}

static void test_reset(void **state)
{
	static char big[1024 * 1024];
	struct io *io;
	struct ep *c, *s;

	loop_setup();
	C.accept_mode = ACCEPT_KEEP;
	pair_new(NULL, NULL);
	assert_int_equal(yamux_open_stream(C.cli, &io), 0);
	c = ep_new(io);
	assert_int_equal(io_read_start(io), 0);
	/* More than the window: part of it is still queued when the RST comes. */
	assert_int_equal(io_write(io, big, sizeof(big), ep_on_write_nofree, NULL), 0);
	assert_true(run_until(have_accepted, (void *)1, 2000));
	run_for(20);
	s = C.accepted[0];
	yamux_stream_reset(s->io);
	assert_true(run_until(flag_set, &s->closed, 2000));

	assert_true(run_until(ep_done, c, 2000));
	assert_int_equal(c->err, UV_ECONNRESET);
	assert_int_equal(c->writes_done, 1);
	assert_int_equal(c->write_err, UV_ECONNRESET);
	assert_int_equal(io_write(io, "x", 1, ep_on_write_nofree, NULL), UV_ECONNRESET);
	assert_int_equal(yamux_stream_shutdown(io), UV_ENOTCONN);
	io_close(io);

	/* A peer that refuses streams: the opener sees a reset. */
	C.accept_mode = ACCEPT_RESET;
	assert_int_equal(yamux_open_stream(C.cli, &io), 0);
	c = ep_new(io);
	assert_int_equal(io_read_start(io), 0);
	assert_true(run_until(ep_done, c, 2000));
	assert_int_equal(c->err, UV_ECONNRESET);
	io_close(io);
	teardown();
}

/* --- session level --- */

struct ping_res {
	int fired, status;
};

static void on_ping(struct yamux_session *s, int status, uint64_t rtt_ms, void *arg)
{
	struct ping_res *r = arg;
	r->fired++;
	r->status = status;
}

static void test_ping_and_keepalive(void **state)
{
	struct ping_res r1 = { 0 }, r2 = { 0 };
	struct yamux_opts co;

	loop_setup();
	opts_init(&co, &C.cli);
	co.keepalive_ms = 10;
	co.keepalive_timeout_ms = 2000;
	pair_new(&co, NULL);
	assert_int_equal(yamux_session_ping(C.cli, on_ping, &r1), 0);
	assert_int_equal(yamux_session_ping(C.srv, on_ping, &r2), 0);
	assert_int_equal(r1.fired, 0);   /* never from inside the call */
	assert_true(run_until(flag_set, &r1.fired, 2000));
	assert_true(run_until(flag_set, &r2.fired, 2000));
	assert_int_equal(r1.status, 0);
	assert_int_equal(r2.status, 0);
	/* keepalive pings are answered: the session stays up */
	run_for(300);
	assert_false(C.cli_closed);
	assert_false(C.srv_closed);

	/* a ping outstanding when the session closes is cancelled */
	r1.fired = 0;
	assert_int_equal(yamux_session_ping(C.cli, on_ping, &r1), 0);
	yamux_session_close(C.cli);
	assert_int_equal(yamux_session_ping(C.cli, on_ping, &r2), -ECONNRESET);
	assert_true(run_until(flag_set, &r1.fired, 2000));
	assert_int_equal(r1.status, -ECANCELED);
	teardown();
}

static void test_close_fails_streams(void **state)
{
	struct io *io;
	struct ep *c, *s;

	loop_setup();
	C.accept_mode = ACCEPT_KEEP;
	pair_new(NULL, NULL);
	assert_int_equal(yamux_open_stream(C.cli, &io), 0);
	c = ep_new(io);
	assert_int_equal(io_read_start(io), 0);
	ep_send(c, "partial", 7);
	assert_true(run_until(have_accepted, (void *)1, 2000));
	s = C.accepted[0];
	assert_int_equal(io_read_start(s->io), 0);
	assert_true(run_until(has_bytes, s, 2000));

	yamux_session_close(C.cli);
	assert_int_equal(yamux_open_stream(C.cli, &io), -ECONNRESET);
	assert_true(yamux_session_is_closing(C.cli));
	assert_true(run_until(flag_set, &C.cli_closed, 2000));
	assert_true(run_until(flag_set, &C.srv_closed, 2000));
	assert_int_equal(C.cli_reason, 0);
	/* the server saw the go-away, then the connection end */
	assert_int_equal(C.srv_reason, UV_EOF);
	/* streams learn through their reads; they close, and only then are they freed */
	assert_true(run_until(ep_done, c, 2000));
	assert_true(run_until(ep_done, s, 2000));
	assert_int_equal(c->err, UV_ECONNRESET);
	assert_int_equal(s->err, UV_ECONNRESET);
	assert_string_equal(s->in.buf, "partial");
	assert_int_equal(io_write(s->io, "x", 1, ep_on_write_nofree, NULL), UV_ECONNRESET);
	io_close(c->io);
	io_close(s->io);
	teardown();
}

/* --- against a raw peer: exact bytes and protocol errors --- */

static const uint8_t *hdr(uint8_t type, uint16_t flags, uint32_t id, uint32_t len)
{
	static uint8_t buf[YAMUX_HDR_LEN];
	struct yamux_hdr h = { 0, type, flags, id, len };

	yamux_hdr_encode(buf, &h);
	return buf;
}

static int has_n_writes(void *arg)
{
	return ((struct ep *)arg)->writes_done == 6;
}

static int got_3m(void *arg)
{
	return ((struct ep *)arg)->in.len >= 3 * 1024 * 1024;
}

static void test_wire_bytes_client(void **state)
{
	static const uint8_t syn[] = { 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0 };
	static const uint8_t data_hi[] = { 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2 };
	static const uint8_t fin[] = { 0, 1, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0 };
	static const uint8_t ping[] = { 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0 };
	static const uint8_t pong[] = { 0, 2, 0, 2, 0, 0, 0, 0, 0, 0, 0x12, 0x34 };
	static const uint8_t goaway[] = { 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
	struct strbuf payload = STRBUF_INIT;
	struct ping_res r = { 0 };
	struct io *io, *io2;
	struct ep *e;

	loop_setup();
	raw_new(1, NULL);
	/* Open: a window update with SYN and delta 0 (default window), as hashicorp's Open(). */
	assert_int_equal(yamux_open_stream(C.cli, &io), 0);
	e = ep_new(io);
	assert_int_equal(io_read_start(io), 0);
	ep_send(e, "hi", 2);
	raw_expect(syn, NULL);
	raw_expect(data_hi, &payload);
	assert_int_equal(payload.len, 2);
	assert_memory_equal(payload.buf, "hi", 2);
	/* Half close: window update with FIN. */
	assert_int_equal(yamux_stream_shutdown(io), 0);
	raw_expect(fin, NULL);

	/* Our ping carries SYN and an opaque 0; the answer is ACK with the same value. */
	assert_int_equal(yamux_session_ping(C.cli, on_ping, &r), 0);
	raw_expect(ping, NULL);
	raw_write_frame(YAMUX_PING, YAMUX_ACK, 0, 0, NULL, 0);
	assert_true(run_until(flag_set, &r.fired, 2000));
	assert_int_equal(r.status, 0);
	/* The peer's ping is echoed. */
	raw_write_frame(YAMUX_PING, YAMUX_SYN, 0, 0x1234, NULL, 0);
	raw_expect(pong, NULL);

	/* Peer data with ACK, then its FIN: read, then EOF. */
	raw_write_frame(YAMUX_DATA, YAMUX_ACK, 1, 3, "abc", 3);
	raw_write_frame(YAMUX_WINDOW_UPDATE, YAMUX_FIN, 1, 0, NULL, 0);
	assert_true(run_until(ep_done, e, 2000));
	assert_int_equal(e->eof, 1);
	assert_string_equal(e->in.buf, "abc");
	io_close(io);
	assert_true(run_until(flag_set, &e->closed, 2000));
	/* Late frames for the finished stream are ignored, as hashicorp's are. */
	raw_write_frame(YAMUX_WINDOW_UPDATE, 0, 1, 100, NULL, 0);
	assert_true(raw_quiet());

	/* The peer's normal go-away: no new streams, the session stays. */
	raw_write_frame(YAMUX_GO_AWAY, 0, 0, YAMUX_GOAWAY_NORMAL, NULL, 0);
	raw_write_frame(YAMUX_PING, YAMUX_SYN, 0, 7, NULL, 0);
	raw_expect(hdr(YAMUX_PING, YAMUX_ACK, 0, 7), NULL);   /* so the go-away was read */
	assert_int_equal(yamux_open_stream(C.cli, &io2), -ECONNREFUSED);
	assert_false(C.cli_closed);

	/* Our close: a normal go-away, then the connection ends. */
	yamux_session_close(C.cli);
	raw_expect(goaway, NULL);
	assert_true(run_until(flag_set, &C.raw_eof, 2000));
	assert_true(run_until(flag_set, &C.cli_closed, 2000));
	assert_int_equal(C.cli_reason, 0);
	strbuf_release(&payload);
	teardown();
}

static void test_wire_bytes_server(void **state)
{
	/* 16 MiB window: the ACK says 16 MiB - 256 KiB = 0xfc0000 more. */
	static const uint8_t ack[] = { 0, 1, 0, 2, 0, 0, 0, 1, 0, 0xfc, 0, 0 };
	static const uint8_t syn2[] = { 0, 1, 0, 1, 0, 0, 0, 2, 0, 0xfc, 0, 0 };
	/* what hashicorp sends to refuse a stream: RST alone */
	static const uint8_t rst3[] = { 0, 1, 0, 8, 0, 0, 0, 3, 0, 0, 0, 0 };
	struct yamux_opts so;
	struct io *io;
	struct ep *e;

	loop_setup();
	opts_init(&so, &C.srv);
	so.max_stream_window = 16 * 1024 * 1024;
	C.accept_mode = ACCEPT_KEEP;
	raw_new(0, &so);
	raw_write_frame(YAMUX_WINDOW_UPDATE, YAMUX_SYN, 1, 0, NULL, 0);
	raw_expect(ack, NULL);
	assert_int_equal(C.naccepted, 1);
	e = C.accepted[0];
	/* More than the initial window is fine once the ACK granted it. */
	{
		size_t n = 300 * 1024;
		char *buf = xcalloc(1, n);

		raw_write_frame(YAMUX_DATA, 0, 1, (uint32_t)n, buf, n);
		free(buf);
		assert_int_equal(io_read_start(e->io), 0);
		e->pause_every = 0;
		assert_true(run_until(got_300k, e, 2000));
		assert_int_equal(e->in.len, n);
	}
	/* Server-opened streams are even. */
	assert_int_equal(yamux_open_stream(C.srv, &io), 0);
	raw_expect(syn2, NULL);
	ep_new(io);
	/* A stream refused by the owner is reset. */
	C.accept_mode = ACCEPT_RESET;
	raw_write_frame(YAMUX_WINDOW_UPDATE, YAMUX_SYN, 3, 0, NULL, 0);
	raw_expect(rst3, NULL);
	teardown();
}

/* Small writes queued together share data frames (a header apart from its payload), up to the frame size. */
static void test_wire_small_writes_share_frames(void **state)
{
	static const uint8_t syn[] = { 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0 };
	struct strbuf payload = STRBUF_INIT, want = STRBUF_INIT;
	char *big = xmalloc(40000);
	struct io *io;
	struct ep *e;

	loop_setup();
	raw_new(1, NULL);
	assert_int_equal(yamux_open_stream(C.cli, &io), 0);
	e = ep_new(io);
	fill_pattern(big, 40000, 7);
	ep_send(e, "0009\001", 5);
	ep_send(e, "abcd", 4);
	ep_send(e, "", 0);
	ep_send(e, big, 6000);          /* referenced, not copied */
	ep_send(e, "0005\001", 5);
	ep_send(e, big, 40000);         /* crosses the frame size */
	strbuf_add(&want, "0009\001abcd", 9);
	strbuf_add(&want, big, 6000);
	strbuf_add(&want, "0005\001", 5);
	strbuf_add(&want, big, 40000);
	raw_expect(syn, NULL);
	raw_expect(hdr(YAMUX_DATA, 0, 1, 32 * 1024), &payload);
	raw_expect(hdr(YAMUX_DATA, 0, 1, (uint32_t)(want.len - 32 * 1024)), &payload);
	assert_int_equal(payload.len, want.len);
	assert_memory_equal(payload.buf, want.buf, want.len);
	assert_true(run_until(has_n_writes, e, 2000));
	assert_int_equal(e->write_err, 0);
	assert_true(raw_quiet());
	free(big);
	strbuf_release(&payload);
	strbuf_release(&want);
	teardown();
}

/* A stream's window grown beyond the session's: one update for the difference, then updates in half-window steps. */
static void test_grow_window(void **state)
{
	static const uint8_t ack[] = { 0, 1, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0 };
	size_t n = 3 * 1024 * 1024;
	char *buf = xcalloc(1, n);
	struct ep *e;

	loop_setup();
	C.accept_mode = ACCEPT_KEEP;
	raw_new(0, NULL);
	raw_write_frame(YAMUX_WINDOW_UPDATE, YAMUX_SYN, 1, 0, NULL, 0);
	raw_expect(ack, NULL);
	e = C.accepted[0];
	yamux_stream_grow_window(e->io, 4 * 1024 * 1024);
	raw_expect(hdr(YAMUX_WINDOW_UPDATE, 0, 1, 4 * 1024 * 1024 - YAMUX_INITIAL_WINDOW), NULL);
	yamux_stream_grow_window(e->io, 1024 * 1024);   /* only grows */
	assert_true(raw_quiet());
	/* 3 MiB fit the window without reading; once read, 2 MiB were consumed: one update */
	raw_write_frame(YAMUX_DATA, 0, 1, (uint32_t)n, buf, n);
	assert_true(raw_quiet());
	assert_int_equal(io_read_start(e->io), 0);
	assert_true(run_until(got_3m, e, 5000));
	raw_expect(hdr(YAMUX_WINDOW_UPDATE, 0, 1, (uint32_t)n), NULL);
	assert_true(raw_quiet());
	free(buf);
	teardown();
}

static void test_accept_backlog(void **state)
{
	struct yamux_opts co;
	struct io *a, *b;

	loop_setup();
	opts_init(&co, &C.cli);
	co.accept_backlog = 1;
	raw_new(1, &co);
	assert_int_equal(yamux_open_stream(C.cli, &a), 0);
	assert_int_equal(yamux_open_stream(C.cli, &b), 0);
	ep_new(a);
	ep_new(b);
	assert_int_equal(io_write(b, "queued", 6, ep_on_write_nofree, NULL), 0);
	raw_expect(hdr(YAMUX_WINDOW_UPDATE, YAMUX_SYN, 1, 0), NULL);
	assert_true(raw_quiet());       /* stream 3 waits for the ACK of 1 */
	raw_write_frame(YAMUX_WINDOW_UPDATE, YAMUX_ACK, 1, 0, NULL, 0);
	raw_expect(hdr(YAMUX_WINDOW_UPDATE, YAMUX_SYN, 3, 0), NULL);
	raw_expect(hdr(YAMUX_DATA, 0, 3, 6), NULL);
	teardown();
}

static void test_close_timeout(void **state)
{
	struct yamux_opts co;
	struct io *io;
	struct ep *e;

	loop_setup();
	opts_init(&co, &C.cli);
	co.stream_close_timeout_ms = 300;
	raw_new(1, &co);
	/* closed before its SYN left: nothing at all goes out */
	assert_int_equal(yamux_open_stream(C.cli, &io), 0);
	e = ep_new(io);
	io_close(io);
	assert_true(run_until(flag_set, &e->closed, 2000));
	assert_true(raw_quiet());

	assert_int_equal(yamux_open_stream(C.cli, &io), 0);
	assert_int_equal(yamux_stream_id(io), 3);
	e = ep_new(io);
	raw_expect(hdr(YAMUX_WINDOW_UPDATE, YAMUX_SYN, 3, 0), NULL);
	io_close(io);
	raw_expect(hdr(YAMUX_WINDOW_UPDATE, YAMUX_FIN, 3, 0), NULL);
	assert_true(run_until(flag_set, &e->closed, 2000));
	/* Data still arriving after our close is dropped but credited. */
	{
		size_t n = 200 * 1024;
		char *buf = xcalloc(1, n);

		raw_write_frame(YAMUX_DATA, YAMUX_ACK, 3, (uint32_t)n, buf, n);
		free(buf);
		raw_expect(hdr(YAMUX_WINDOW_UPDATE, 0, 3, (uint32_t)n), NULL);
	}
	/* The peer never sends its FIN: the stream is reset. */
	raw_expect(hdr(YAMUX_WINDOW_UPDATE, YAMUX_RST, 3, 0), NULL);
	teardown();
}

static void test_keepalive_timeout(void **state)
{
	struct yamux_opts co;

	loop_setup();
	opts_init(&co, &C.cli);
	co.keepalive_ms = 20;
	co.keepalive_timeout_ms = 50;
	raw_new(1, &co);
	raw_expect(hdr(YAMUX_PING, YAMUX_SYN, 0, 0), NULL);
	assert_true(run_until(flag_set, &C.cli_closed, 2000));
	assert_int_equal(C.cli_reason, -ETIMEDOUT);
	teardown();
}

/* Each case: bytes from the peer that must end the session with a protocol error go-away. */
struct bad_case {
	const char *name;
	void (*send)(void);
};

static void bad_version(void)
{
	static const uint8_t b[] = { 1, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0 };
	raw_write(b, sizeof(b));
}

static void bad_type(void)
{
	raw_write_frame(4, 0, 0, 0, NULL, 0);
}

static void beyond_window(void)
{
	size_t n = YAMUX_INITIAL_WINDOW + 1;
	char *buf = xcalloc(1, n);

	raw_write_frame(YAMUX_WINDOW_UPDATE, YAMUX_SYN, 2, 0, NULL, 0);
	raw_write_frame(YAMUX_DATA, 0, 2, (uint32_t)n, buf, n);
	free(buf);
}

static void unknown_stream(void)
{
	raw_write_frame(YAMUX_DATA, 0, 8, 1, "x", 1);
}

static void unopened_own_stream(void)
{
	raw_write_frame(YAMUX_WINDOW_UPDATE, 0, 5, 10, NULL, 0);
}

static void syn_own_parity(void)
{
	raw_write_frame(YAMUX_WINDOW_UPDATE, YAMUX_SYN, 3, 0, NULL, 0);
}

static void duplicate_syn(void)
{
	raw_write_frame(YAMUX_WINDOW_UPDATE, YAMUX_SYN, 2, 0, NULL, 0);
	raw_write_frame(YAMUX_WINDOW_UPDATE, YAMUX_SYN, 2, 0, NULL, 0);
}

static void window_overflow(void)
{
	raw_write_frame(YAMUX_WINDOW_UPDATE, YAMUX_SYN, 2, 0xffffffffu, NULL, 0);
}

static void test_protocol_errors(void **state)
{
	static const struct bad_case cases[] = {
		{ "bad version", bad_version },
		{ "unknown type", bad_type },
		{ "data beyond window", beyond_window },
		{ "unknown peer stream", unknown_stream },
		{ "unopened own stream", unopened_own_stream },
		{ "SYN with our parity", syn_own_parity },
		{ "duplicate SYN", duplicate_syn },
		{ "window overflow", window_overflow },
	};
	static const uint8_t goaway_proto[] = { 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct io *io;
		struct ep *e;

		loop_setup();
		C.accept_mode = ACCEPT_KEEP;
		raw_new(1, NULL);
		/* a stream of ours is open and reading: it must learn too */
		assert_int_equal(yamux_open_stream(C.cli, &io), 0);
		e = ep_new(io);
		assert_int_equal(io_read_start(io), 0);
		raw_expect(hdr(YAMUX_WINDOW_UPDATE, YAMUX_SYN, 1, 0), NULL);
		cases[i].send();
		/* skip ACKs of accepted streams before the go-away */
		for (;;) {
			struct yamux_hdr h;

			assert_true(run_until(raw_have_frame, NULL, 2000));
			yamux_hdr_decode((const uint8_t *)C.raw_in.buf, &h);
			if (h.type != YAMUX_WINDOW_UPDATE)
				break;
			strbuf_remove_front(&C.raw_in, YAMUX_HDR_LEN);
		}
		if (memcmp(C.raw_in.buf, goaway_proto, sizeof(goaway_proto)))
			fail_msg("case \"%s\": no protocol error go-away", cases[i].name);
		strbuf_remove_front(&C.raw_in, YAMUX_HDR_LEN);
		assert_true(run_until(flag_set, &C.raw_eof, 2000));
		assert_true(run_until(flag_set, &C.cli_closed, 2000));
		assert_int_equal(C.cli_reason, -EPROTO);
		assert_true(run_until(ep_done, e, 2000));
		assert_int_equal(e->err, UV_ECONNRESET);
		teardown();
	}
}

static void test_peer_goaway_error(void **state)
{
	loop_setup();
	raw_new(1, NULL);
	raw_write_frame(YAMUX_GO_AWAY, 0, 0, YAMUX_GOAWAY_INTERNAL, NULL, 0);
	assert_true(run_until(flag_set, &C.cli_closed, 2000));
	assert_int_equal(C.cli_reason, -ECONNABORTED);
	teardown();
}

static void test_preread(void **state)
{
	struct yamux_opts so;
	struct io *io;
	uint8_t pre[YAMUX_HDR_LEN * 2 + 2];
	struct ep *e;
	int fds[2];

	/* A handshake read the SYN and some data already: they must come first, in order. */
	loop_setup();
	C.accept_mode = ACCEPT_KEEP;
	memcpy(pre, hdr(YAMUX_WINDOW_UPDATE, YAMUX_SYN, 1, 0), YAMUX_HDR_LEN);
	memcpy(pre + YAMUX_HDR_LEN, hdr(YAMUX_DATA, 0, 1, 4), YAMUX_HDR_LEN);
	memcpy(pre + 2 * YAMUX_HDR_LEN, "ab", 2);
	opts_init(&so, &C.srv);
	so.preread = pre;
	so.preread_len = sizeof(pre);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	assert_int_equal(write(fds[1], "cd", 2), 2);
	C.srv = yamux_session_new(&C.loop, wrap_fd(fds[0]), 0, &so);
	C.raw_fd = fds[1];
	assert_int_equal(fcntl(C.raw_fd, F_SETFL, O_NONBLOCK), 0);
	assert_true(run_until(have_accepted, (void *)1, 2000));
	e = C.accepted[0];
	assert_int_equal(io_read_start(e->io), 0);
	assert_true(run_until(has_four, e, 2000));
	assert_string_equal(e->in.buf, "abcd");
	(void)io;
	teardown();
}

/* --- gRPC over yamux, both directions, as the backchannel does --- */

static void test_grpc_health_over_yamux(void **state)
{
	struct grpc_channel_opts copts;
	struct grpc_channel *ch;
	struct strbuf resp = STRBUF_INIT, err = STRBUF_INIT;
	enum grpc_code code;
	struct grpc_server_opts gopts;

	loop_setup();
	C.accept_mode = ACCEPT_GRPC;
	pair_new(NULL, NULL);
	grpc_server_opts_default(&gopts);
	C.grpc = grpc_server_new(&C.loop, &gopts);
	grpc_server_add_health(C.grpc);

	/* client -> server: the RPC stream Praefect opens */
	grpc_channel_opts_default(&copts);
	copts.dial = yamux_dial;
	copts.dial_data = C.cli;
	assert_int_equal(grpc_channel_new(&C.loop, "unix:/yamux/forward", &copts, &ch), 0);
	code = grpc_unary_sync(&C.loop, ch, "/grpc.health.v1.Health/Check", NULL, "", 0, 5000, &resp, &err);
	assert_int_equal(code, GRPC_OK);
	assert_int_equal(resp.len, 2);
	assert_memory_equal(resp.buf, "\x08\x01", 2);   /* status: SERVING */
	/* a second call reuses the same stream */
	strbuf_reset(&resp);
	code = grpc_unary_sync(&C.loop, ch, "/grpc.health.v1.Health/Check", NULL, "", 0, 5000, &resp, &err);
	assert_int_equal(code, GRPC_OK);
	assert_int_equal(grpc_channel_connects(ch), 1);
	grpc_channel_close(ch);

	/* server -> client: the backchannel, the node dialing back over the same session */
	copts.dial_data = C.srv;
	assert_int_equal(grpc_channel_new(&C.loop, "unix:/yamux/back", &copts, &ch), 0);
	strbuf_reset(&resp);
	code = grpc_unary_sync(&C.loop, ch, "/grpc.health.v1.Health/Check", NULL, "", 0, 5000, &resp, &err);
	assert_int_equal(code, GRPC_OK);
	assert_memory_equal(resp.buf, "\x08\x01", 2);
	grpc_channel_close(ch);

	strbuf_release(&resp);
	strbuf_release(&err);
	teardown();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_codec),
		cmocka_unit_test(test_echo_both_directions),
		cmocka_unit_test(test_many_streams),
		cmocka_unit_test(test_backpressure_small_window),
		cmocka_unit_test(test_large_window),
		cmocka_unit_test(test_half_close),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_ping_and_keepalive),
		cmocka_unit_test(test_close_fails_streams),
		cmocka_unit_test(test_wire_bytes_client),
		cmocka_unit_test(test_wire_bytes_server),
		cmocka_unit_test(test_wire_small_writes_share_frames),
		cmocka_unit_test(test_grow_window),
		cmocka_unit_test(test_accept_backlog),
		cmocka_unit_test(test_close_timeout),
		cmocka_unit_test(test_keepalive_timeout),
		cmocka_unit_test(test_protocol_errors),
		cmocka_unit_test(test_peer_goaway_error),
		cmocka_unit_test(test_preread),
		cmocka_unit_test(test_grpc_health_over_yamux),
	};

	signal(SIGPIPE, SIG_IGN);
	log_configure(LOG_FORMAT_TEXT, LOG_FATAL, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
