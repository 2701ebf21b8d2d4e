/* Unit tests: the stream half shared by gRPC server and client calls (lib/grpc/stream.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <stdlib.h>
#include <cmocka.h>

#include "grpc/stream.h"
#include "grpc/server.h"
#include "grpc/client.h"
#include "base/util.h"

#include <signal.h>
#include <unistd.h>

struct seen {
	struct gstream s;
	int messages;
	struct strbuf last;
	int pause_after;           /* pause once this many messages arrived, 0 = never */
	int bad;
	enum grpc_code bad_code;
	struct strbuf bad_msg;
	int rounds;
	int deadlines;
};

static void on_message(struct gstream *s, const uint8_t *msg, size_t len)
{
	struct seen *t = (struct seen *)s;
	t->messages++;
	strbuf_reset(&t->last);
	strbuf_add(&t->last, msg, len);
	if (t->pause_after && t->messages == t->pause_after)
		gstream_pause(s);
}

static void on_bad_message(struct gstream *s, enum grpc_code code, const char *msg)
{
	struct seen *t = (struct seen *)s;
	t->bad++;
	t->bad_code = code;
	strbuf_addstr(&t->bad_msg, msg);
	s->notified = 1; /* as the owners do: the call ends */
}

static void after_deliver(struct gstream *s)
{
	((struct seen *)s)->rounds++;
}

static void on_deadline(struct gstream *s)
{
	((struct seen *)s)->deadlines++;
}

static const struct gstream_ops ops = {
	.on_message = on_message,
	.on_bad_message = on_bad_message,
	.after_deliver = after_deliver,
	.on_deadline = on_deadline,
};

static void seen_init(struct seen *t, size_t max_msg)
{
	memset(t, 0, sizeof(*t));
	gstream_init(&t->s, &ops, max_msg);
	t->s.id = 1;
	strbuf_init(&t->last, 0);
	strbuf_init(&t->bad_msg, 0);
}

static void seen_release(struct seen *t)
{
	gstream_release(&t->s);
	strbuf_release(&t->last);
	strbuf_release(&t->bad_msg);
}

static nghttp2_session *new_session(void)
{
	nghttp2_session_callbacks *cbs;
	nghttp2_session *session;
	nghttp2_settings_entry role = { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100 };
	nghttp2_session_callbacks_new(&cbs);
	session = gstream_session_new(1, cbs, NULL, role, 1024 * 1024);
	nghttp2_session_callbacks_del(cbs);
	return session;
}

static void frame(struct strbuf *wire, uint8_t flag, const char *m, size_t len)
{
	uint8_t h[GRPC_FRAME_HEADER];
	grpc_frame_header(h, len);
	h[0] = flag;
	strbuf_add(wire, h, sizeof(h));
	strbuf_add(wire, m, len);
}

/* Whole messages come out in order; a reader that pauses gets nothing more until it resumes. */
static void test_pause_holds_messages_until_resume(void **state)
{
	nghttp2_session *session = new_session();
	struct strbuf wire = STRBUF_INIT;
	struct seen t;

	seen_init(&t, 1024);
	t.pause_after = 1;
	frame(&wire, 0, "one", 3);
	frame(&wire, 0, "two", 3);
	gstream_recv_data(session, 1, &t.s, (const uint8_t *)wire.buf, wire.len);
	assert_int_equal(t.messages, 1);
	assert_string_equal(t.last.buf, "one");
	assert_int_equal(t.rounds, 1);

	/* while paused, window is held back for what arrives */
	strbuf_reset(&wire);
	frame(&wire, 0, "thr", 3);
	gstream_recv_data(session, 1, &t.s, (const uint8_t *)wire.buf, wire.len - 1);
	assert_int_equal(t.messages, 1);
	assert_int_equal(t.s.unconsumed, wire.len - 1);

	t.pause_after = 0;
	gstream_resume(&t.s);
	assert_int_equal(t.messages, 2);
	assert_string_equal(t.last.buf, "two");
	gstream_recv_data(session, 1, &t.s, (const uint8_t *)"r", 1);
	assert_int_equal(t.messages, 3);
	assert_string_equal(t.last.buf, "thr");
	assert_int_equal(grpc_framer_buffered(&t.s.in), 0);

	seen_release(&t);
	strbuf_release(&wire);
	nghttp2_session_del(session);
}

static void test_oversized_and_compressed_messages_are_refused(void **state)
{
	nghttp2_session *session = new_session();
	struct strbuf wire = STRBUF_INIT;
	struct seen t;

	seen_init(&t, 16);
	frame(&wire, 0, "0123456789abcdefg", 17);
	gstream_recv_data(session, 1, &t.s, (const uint8_t *)wire.buf, 5); /* the header is enough */
	assert_int_equal(t.bad, 1);
	assert_int_equal(t.bad_code, GRPC_RESOURCE_EXHAUSTED);
	assert_string_equal(t.bad_msg.buf, "grpc: received message larger than max (17 vs. 16)");
	assert_int_equal(t.messages, 0);
	/* the call ended: what follows is discarded */
	gstream_recv_data(session, 1, &t.s, (const uint8_t *)wire.buf + 5, wire.len - 5);
	assert_int_equal(t.messages, 0);
	assert_int_equal(t.bad, 1);
	seen_release(&t);

	seen_init(&t, 16);
	strbuf_reset(&wire);
	frame(&wire, 1, "zz", 2);
	gstream_recv_data(session, 1, &t.s, (const uint8_t *)wire.buf, wire.len);
	assert_int_equal(t.bad, 1);
	assert_int_equal(t.bad_code, GRPC_INTERNAL);
	assert_string_equal(t.bad_msg.buf, "grpc: compressed message received but no compression was negotiated");
	assert_int_equal(t.messages, 0);
	seen_release(&t);

	strbuf_release(&wire);
	nghttp2_session_del(session);
}

/* The send queue: full at the high water mark, drained by the data provider, deferred when empty. */
static void test_send_queue(void **state)
{
	struct seen t;
	static uint8_t buf[64 * 1024];
	char *big = xcalloc(1, GRPC_SEND_HIGH_WATER);
	uint32_t flags = 0;
	size_t total = 0;
	ssize_t n;

	seen_init(&t, 1024);
	gstream_queue(&t.s, "hi", 2);
	assert_false(gstream_send_full(&t.s));
	gstream_queue(&t.s, big, GRPC_SEND_HIGH_WATER);
	assert_true(gstream_send_full(&t.s));
	assert_true(t.s.want_writable);
	while ((n = gstream_data_read(&t.s, buf, sizeof(buf), &flags, 0)) > 0)
		total += (size_t)n;
	assert_int_equal(n, NGHTTP2_ERR_DEFERRED);
	assert_true(t.s.deferred);
	assert_int_equal(total, 2 * GRPC_FRAME_HEADER + 2 + GRPC_SEND_HIGH_WATER);
	assert_int_equal(flags, 0);
	assert_false(gstream_send_full(&t.s));

	/* nothing more will come: the empty queue ends the data */
	assert_int_equal(gstream_data_read(&t.s, buf, sizeof(buf), &flags, 1), 0);
	assert_true(flags & NGHTTP2_DATA_FLAG_EOF);
	seen_release(&t);
	free(big);
}

static void test_header_list_from_metadata(void **state)
{
	struct grpc_metadata md = GRPC_METADATA_INIT;
	struct gstream_hdrs h = GSTREAM_HDRS_INIT;
	struct strbuf msg = STRBUF_INIT;

	grpc_metadata_addstr(&md, "x-plain", "value");
	grpc_metadata_add(&md, "x-raw-bin", 9, "\x00\x01\xff", 3);
	grpc_metadata_addstr(&md, "grpc-status", "0"); /* reserved: never sent from metadata */
	gstream_hdrs_add(&h, ":status", "200");
	strbuf_addstr(&msg, "a%20b");
	gstream_hdrs_add_owned(&h, "grpc-message", &msg);
	assert_int_equal(msg.len, 0);
	gstream_hdrs_add_md(&h, &md);

	assert_int_equal(h.nr, 4);
	assert_memory_equal(h.nv[0].name, ":status", 7);
	assert_memory_equal(h.nv[1].value, "a%20b", 5);
	assert_int_equal(h.nv[1].valuelen, 5);
	assert_memory_equal(h.nv[3].name, "x-raw-bin", 9);
	assert_int_equal(h.nv[3].valuelen, 4);
	assert_memory_equal(h.nv[3].value, "AAH/", 4);
	assert_memory_equal(h.nv[2].value, "value", 5); /* not copied: points into the metadata */
	gstream_hdrs_release(&h);
	grpc_metadata_release(&md);
	strbuf_release(&msg);
}

static void test_received_fields_to_metadata(void **state)
{
	struct grpc_metadata md = GRPC_METADATA_INIT;
	const struct grpc_md *e;
	struct seen t;
	int rc = 0;

	gstream_header_md(&md, "x-raw-bin", 9, "AAH/", 4);
	gstream_header_md(&md, "x-bad-bin", 9, "!!", 2);
	gstream_header_md(&md, "content-type", 12, "application/grpc", 16);
	gstream_header_md(&md, "X-Case", 6, "v", 1);
	assert_int_equal(md.nr, 2);
	e = grpc_metadata_get(&md, "x-raw-bin");
	assert_non_null(e);
	assert_int_equal(e->value_len, 3);
	assert_memory_equal(e->value, "\x00\x01\xff", 3);
	assert_string_equal(grpc_metadata_value(&md, "x-case"), "v");
	grpc_metadata_release(&md);

	seen_init(&t, 16);
	for (int i = 0; i < 10000 && rc == 0; i++)
		rc = gstream_header_count(&t.s, 10, 90);
	assert_int_equal(rc, -1);
	assert_true(t.s.header_bytes > GSTREAM_MAX_HEADER_BYTES);
	assert_true(t.s.header_bytes <= GSTREAM_MAX_HEADER_BYTES + 132);
	seen_release(&t);
}

static void test_deadline_fires_unless_released(void **state)
{
	uv_loop_t loop;
	struct seen a, b;

	uv_loop_init(&loop);
	seen_init(&a, 16);
	seen_init(&b, 16);
	gstream_deadline_start(&a.s, &loop, 1);
	gstream_deadline_start(&b.s, &loop, 1);
	gstream_release(&b.s);
	uv_run(&loop, UV_RUN_DEFAULT); /* returns once a's timer fired and b's handle closed */
	assert_int_equal(a.deadlines, 1);
	assert_int_equal(b.deadlines, 0);
	seen_release(&a);
	seen_release(&b);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* --- one server and one client through the stream module --- */

struct e2e {
	uv_loop_t loop;
	struct grpc_server *srv;
	struct grpc_channel *ch;
	struct grpc_client_call *call;
	uv_timer_t tick;
	int idle_ticks;            /* ticks since the server finished the call */
	int ticks;
	int closed;
	enum grpc_code code;
	struct strbuf msg;
	int server_down;
};

static void big_reply(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	static const char big[100];
	grpc_call_reply(call, big, sizeof(big));
}

static void e2e_on_close(struct grpc_client_call *call, enum grpc_code code, const char *message,
			 const struct grpc_metadata *trailers)
{
	struct e2e *e = grpc_client_call_user(call);
	e->closed++;
	e->code = code;
	strbuf_addstr(&e->msg, message ? message : "");
}

static const struct grpc_client_ops e2e_ops = { .on_close = e2e_on_close };

/*
 * Resume a few ticks after the server has finished the call, so that its
 * reply and status are in (in the worst case, resuming earlier, the test
 * still passes but checks less). Stop ticking after 5 s either way.
 */
static void on_tick(uv_timer_t *t)
{
	struct e2e *e = t->data;
	if (++e->ticks > 500) {
		uv_timer_stop(t);
		return;
	}
	if (e->closed || grpc_server_active_calls(e->srv))
		return;
	if (++e->idle_ticks == 5)
		grpc_client_call_resume_recv(e->call);
}

static void on_server_down(struct grpc_server *s, void *arg)
{
	((struct e2e *)arg)->server_down = 1;
}

/*
 * A paused client whose stream already ended (message and status in) takes
 * the buffered message on resume; one too large ends the call with
 * RESOURCE_EXHAUSTED, once, and the channel no longer counts it.
 */
static void test_paused_client_refuses_a_buffered_message_and_frees_the_call(void **state)
{
	struct e2e e;
	struct grpc_channel_opts co;
	char dir[] = "/tmp/test_grpc_stream.XXXXXX", addr[128], bound[160];

	signal(SIGPIPE, SIG_IGN); /* as the daemons do: a peer gone is an error return */
	memset(&e, 0, sizeof(e));
	strbuf_init(&e.msg, 0);
	assert_non_null(mkdtemp(dir));
	snprintf(addr, sizeof(addr), "unix:%s/s.sock", dir);
	uv_loop_init(&e.loop);
	e.srv = grpc_server_new(&e.loop, NULL);
	assert_int_equal(grpc_server_add_unary(e.srv, "/t.T/Big", big_reply, NULL), 0);
	assert_int_equal(grpc_server_listen(e.srv, addr, bound, sizeof(bound)), 0);

	grpc_channel_opts_default(&co);
	co.max_recv_msg = 16;
	assert_int_equal(grpc_channel_new(&e.loop, addr, &co, &e.ch), 0);
	assert_int_equal(grpc_channel_call(e.ch, "/t.T/Big", NULL, 0, 0, &e2e_ops, &e, &e.call), 0);
	grpc_client_call_pause_recv(e.call);
	grpc_client_call_send(e.call, "x", 1);
	grpc_client_call_close_send(e.call);
	uv_timer_init(&e.loop, &e.tick);
	e.tick.data = &e;
	uv_timer_start(&e.tick, on_tick, 10, 10);
	while (!e.closed && e.ticks <= 500)
		uv_run(&e.loop, UV_RUN_ONCE);
	assert_int_equal(e.closed, 1);
	assert_int_equal(e.code, GRPC_RESOURCE_EXHAUSTED);
	assert_string_equal(e.msg.buf, "grpc: received message larger than max (100 vs. 16)");
	while (grpc_channel_active_calls(e.ch) && e.ticks <= 500)
		uv_run(&e.loop, UV_RUN_ONCE);
	assert_int_equal(grpc_channel_active_calls(e.ch), 0);
	assert_int_equal(e.closed, 1);
	uv_timer_stop(&e.tick);

	grpc_channel_close(e.ch);
	uv_close((uv_handle_t *)&e.tick, NULL);
	grpc_server_shutdown(e.srv, 1000, on_server_down, &e);
	uv_run(&e.loop, UV_RUN_DEFAULT);
	assert_true(e.server_down);
	grpc_server_free(e.srv);
	assert_int_equal(uv_loop_close(&e.loop), 0);
	strbuf_release(&e.msg);
	snprintf(addr, sizeof(addr), "%s/s.sock", dir);
	unlink(addr);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pause_holds_messages_until_resume),
		cmocka_unit_test(test_oversized_and_compressed_messages_are_refused),
		cmocka_unit_test(test_send_queue),
		cmocka_unit_test(test_header_list_from_metadata),
		cmocka_unit_test(test_received_fields_to_metadata),
		cmocka_unit_test(test_deadline_fires_unless_released),
		cmocka_unit_test(test_paused_client_refuses_a_buffered_message_and_frees_the_call),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
