/* grpc-testclient: runs the integration scenarios against grpc-testserver with our C client channel. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/strbuf.h"
#include "base/util.h"
#include "grpc/client.h"
#include "health.pb-c.h"
#include "testsvc.pb-c.h"

#define MIB (1024u * 1024u)

struct ctx {
	uv_loop_t *loop;
	struct grpc_channel *ch;
	struct strbuf err;
};

static int fail(struct ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct ctx *x, const char *fmt, ...)
{
	va_list ap;
	if (x->err.len)
		return -1;   /* keep the first reason */
	va_start(ap, fmt);
	strbuf_vaddf(&x->err, fmt, ap);
	va_end(ap);
	return -1;
}

/* --- one client call, recording everything that happens to it --- */

struct ccall {
	struct ctx *x;
	struct grpc_client_call *call;
	int done;
	enum grpc_code code;
	struct strbuf message;
	struct grpc_metadata headers, trailers;
	int got_headers;
	uint64_t nmsgs, bytes;
	int keep;                       /* store every message in msgs */
	struct strbuf *msgs;
	size_t msgs_nr, msgs_alloc;
	uint64_t start_ms, end_ms;
	void (*on_msg)(struct ccall *c, const uint8_t *msg, size_t len);
	void (*on_hdr)(struct ccall *c);
	void (*on_writable)(struct ccall *c);
	void *arg;
};

static void cc_init(struct ccall *c, struct ctx *x)
{
	memset(c, 0, sizeof(*c));
	c->x = x;
	c->keep = 1;
	strbuf_init(&c->message, 0);
	grpc_metadata_init(&c->headers);
	grpc_metadata_init(&c->trailers);
}

static void cc_release(struct ccall *c)
{
	strbuf_release(&c->message);
	grpc_metadata_release(&c->headers);
	grpc_metadata_release(&c->trailers);
	for (size_t i = 0; i < c->msgs_nr; i++)
		strbuf_release(&c->msgs[i]);
	free(c->msgs);
	c->msgs = NULL;
	c->msgs_nr = c->msgs_alloc = 0;
}

static void cc_on_headers(struct grpc_client_call *call, const struct grpc_metadata *md)
{
	struct ccall *c = grpc_client_call_user(call);
	c->got_headers++;
	grpc_metadata_copy(&c->headers, md);
	if (c->on_hdr)
		c->on_hdr(c);
}

static void cc_on_message(struct grpc_client_call *call, const uint8_t *msg, size_t len)
{
	struct ccall *c = grpc_client_call_user(call);
	c->nmsgs++;
	c->bytes += len;
	if (c->keep) {
		ALLOC_GROW(c->msgs, c->msgs_nr + 1, c->msgs_alloc);
		strbuf_init(&c->msgs[c->msgs_nr], len);
		strbuf_add(&c->msgs[c->msgs_nr], msg, len);
		c->msgs_nr++;
	}
	if (c->on_msg)
		c->on_msg(c, msg, len);
}

static void cc_on_writable(struct grpc_client_call *call)
{
	struct ccall *c = grpc_client_call_user(call);
	if (c->on_writable)
		c->on_writable(c);
}

static void cc_on_close(struct grpc_client_call *call, enum grpc_code code, const char *message,
			const struct grpc_metadata *trailers)
{
	struct ccall *c = grpc_client_call_user(call);
	if (c->done)
		fail(c->x, "on_close fired twice");
	c->done = 1;
	c->call = NULL;
	c->code = code;
	c->end_ms = now_ms();
	if (message)
		strbuf_addstr(&c->message, message);
	if (trailers)
		grpc_metadata_copy(&c->trailers, trailers);
}

static const struct grpc_client_ops cc_ops = {
	.on_headers = cc_on_headers,
	.on_message = cc_on_message,
	.on_writable = cc_on_writable,
	.on_close = cc_on_close,
};

static int cc_start(struct ccall *c, const char *path, const struct grpc_metadata *md,
		    uint64_t timeout_ms, unsigned flags)
{
	c->start_ms = now_ms();
	int r = grpc_channel_call(c->x->ch, path, md, timeout_ms, flags, &cc_ops, c, &c->call);
	if (r < 0)
		return fail(c->x, "grpc_channel_call(%s): %s", path, strerror(-r));
	return 0;
}

/* Run the loop until *flag is set; fail if the loop can no longer make progress. */
static int run_until(struct ctx *x, const int *flag)
{
	while (!*flag) {
		if (!uv_run(x->loop, UV_RUN_ONCE) && !*flag)
			return fail(x, "event loop went idle before the call ended");
	}
	return 0;
}

static void timer_noop(uv_timer_t *t)
{
}

static void sleep_loop(struct ctx *x, uint64_t ms)
{
	uv_timer_t t;
	uv_timer_init(x->loop, &t);
	uv_timer_start(&t, timer_noop, ms, 0);
	while (uv_is_active((uv_handle_t *)&t))
		uv_run(x->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(x->loop, UV_RUN_NOWAIT);
}

static void pack(const ProtobufCMessage *m, struct strbuf *out)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	strbuf_grow(out, n);
	protobuf_c_message_pack(m, (uint8_t *)out->buf + out->len);
	strbuf_setlen(out, out->len + n);
}

/* One request message, half-close, wait for the end. */
static int unary_call(struct ccall *c, const char *path, const struct grpc_metadata *md,
		      const ProtobufCMessage *req, uint64_t timeout_ms, unsigned flags)
{
	struct strbuf buf = STRBUF_INIT;
	pack(req, &buf);
	if (cc_start(c, path, md, timeout_ms, flags) < 0) {
		strbuf_release(&buf);
		return -1;
	}
	int r = grpc_client_call_send(c->call, buf.buf, buf.len);
	strbuf_release(&buf);
	if (r < 0)
		return fail(c->x, "grpc_client_call_send: %s", strerror(-r));
	if ((r = grpc_client_call_close_send(c->call)) < 0)
		return fail(c->x, "grpc_client_call_close_send: %s", strerror(-r));
	return run_until(c->x, &c->done);
}

static int expect_code(struct ccall *c, enum grpc_code want, const char *what)
{
	if (c->code != want)
		return fail(c->x, "%s: got %s (%d) \"%s\", want %s", what, grpc_code_name(c->code),
			    c->code, c->message.buf, grpc_code_name(want));
	return 0;
}

static int check_pattern(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (uint8_t)('a' + i % 26))
			return -1;
	return 0;
}

/* --- scenarios --- */

static int sc_unary(struct ctx *x)
{
	struct ccall c;
	Testsvc__UnaryRequest req = TESTSVC__UNARY_REQUEST__INIT;
	static const char hello[] = "hello, \0world";
	int ret = 0;

	req.payload.data = (uint8_t *)hello;
	req.payload.len = sizeof(hello);
	cc_init(&c, x);
	if (unary_call(&c, "/testsvc.Test/Unary", NULL, &req.base, 5000, 0) < 0 ||
	    expect_code(&c, GRPC_OK, "echo") < 0) {
		ret = -1;
	} else if (c.msgs_nr != 1) {
		ret = fail(x, "echo: %zu messages, want 1", c.msgs_nr);
	} else {
		Testsvc__UnaryResponse *r = testsvc__unary_response__unpack(NULL, c.msgs[0].len,
									   (uint8_t *)c.msgs[0].buf);
		if (!r || r->payload.len != sizeof(hello) || memcmp(r->payload.data, hello, sizeof(hello)))
			ret = fail(x, "echo: payload differs");
		if (r)
			testsvc__unary_response__free_unpacked(r, NULL);
	}
	cc_release(&c);
	if (ret)
		return ret;

	/* A 1 MiB reply through the blocking helper. */
	struct strbuf resp = STRBUF_INIT, errmsg = STRBUF_INIT, reqbuf = STRBUF_INIT;
	req.payload.len = 0;
	req.response_size = MIB;
	pack(&req.base, &reqbuf);
	enum grpc_code code = grpc_unary_sync(x->loop, x->ch, "/testsvc.Test/Unary", NULL, reqbuf.buf,
					      reqbuf.len, 5000, &resp, &errmsg);
	if (code != GRPC_OK) {
		ret = fail(x, "grpc_unary_sync: %s \"%s\"", grpc_code_name(code), errmsg.buf);
	} else {
		Testsvc__UnaryResponse *r = testsvc__unary_response__unpack(NULL, resp.len, (uint8_t *)resp.buf);
		if (!r || r->payload.len != MIB || check_pattern(r->payload.data, MIB))
			ret = fail(x, "grpc_unary_sync: 1 MiB reply differs (%zu bytes)", r ? r->payload.len : 0);
		if (r)
			testsvc__unary_response__free_unpacked(r, NULL);
	}
	strbuf_release(&resp);
	strbuf_release(&errmsg);
	strbuf_release(&reqbuf);
	return ret;
}

static int md_has(const struct grpc_metadata *md, const char *key, const void *val, size_t len)
{
	const struct grpc_md *e = grpc_metadata_get(md, key);
	return e && e->value_len == len && !memcmp(e->value, val, len);
}

static int sc_metadata(struct ctx *x)
{
	static const char bin[] = { 0, 1, 2, (char)0xff, (char)0xfe, '\n', 0 };
	struct grpc_metadata md = GRPC_METADATA_INIT;
	Testsvc__UnaryRequest req = TESTSVC__UNARY_REQUEST__INIT;
	struct ccall c;
	int ret = 0;

	grpc_metadata_addstr(&md, "x-plain", "some value");
	grpc_metadata_add(&md, "x-data-bin", 10, bin, sizeof(bin));
	req.echo_metadata = 1;
	cc_init(&c, x);
	if (unary_call(&c, "/testsvc.Test/Unary", &md, &req.base, 5000, 0) < 0 ||
	    expect_code(&c, GRPC_OK, "echo_metadata") < 0)
		ret = -1;
	else if (!md_has(&c.headers, "x-plain", "some value", 10))
		ret = fail(x, "x-plain missing from response headers");
	else if (!md_has(&c.headers, "x-data-bin", bin, sizeof(bin)))
		ret = fail(x, "x-data-bin missing or altered in response headers");
	else if (!md_has(&c.trailers, "x-plain", "some value", 10))
		ret = fail(x, "x-plain missing from trailers");
	else if (!md_has(&c.trailers, "x-data-bin", bin, sizeof(bin)))
		ret = fail(x, "x-data-bin missing or altered in trailers");
	else if (grpc_metadata_get(&c.headers, "grpc-status") || grpc_metadata_get(&c.trailers, "grpc-status"))
		ret = fail(x, "reserved key grpc-status visible to the application");
	cc_release(&c);
	grpc_metadata_release(&md);
	return ret;
}

struct ss_state {
	uint64_t data_bytes, chunks;
	int bad;
};

static void ss_on_msg(struct ccall *c, const uint8_t *msg, size_t len)
{
	struct ss_state *st = c->arg;
	Testsvc__Chunk *ch = testsvc__chunk__unpack(NULL, len, msg);
	if (!ch) {
		st->bad = 1;
		return;
	}
	if (st->chunks == 0 && check_pattern(ch->data.data, ch->data.len))
		st->bad = 1;
	st->data_bytes += ch->data.len;
	st->chunks++;
	testsvc__chunk__free_unpacked(ch, NULL);
}

static int sc_serverstream(struct ctx *x)
{
	Testsvc__StreamRequest req = TESTSVC__STREAM_REQUEST__INIT;
	struct ss_state st = { 0 };
	struct ccall c;
	int ret = 0;

	req.chunks = 256;
	req.chunk_size = MIB;
	cc_init(&c, x);
	c.keep = 0;
	c.on_msg = ss_on_msg;
	c.arg = &st;
	if (unary_call(&c, "/testsvc.Test/ServerStream", NULL, &req.base, 60000, 0) < 0 ||
	    expect_code(&c, GRPC_OK, "256 MiB stream") < 0)
		ret = -1;
	else if (st.bad)
		ret = fail(x, "undecodable or altered chunk");
	else if (st.chunks != 256 || st.data_bytes != 256ull * MIB)
		ret = fail(x, "got %" PRIu64 " chunks, %" PRIu64 " bytes; want 256, 256 MiB", st.chunks,
			   st.data_bytes);
	cc_release(&c);
	return ret;
}

/* Client stream: send `total` messages respecting send_full(), then half-close. */
struct cs_state {
	uint64_t sent, total;
	struct strbuf msg, paused_msg;
	int closed;
};

static void cs_pump(struct ccall *c)
{
	struct cs_state *st = c->arg;
	while (c->call && st->sent < st->total && !grpc_client_call_send_full(c->call)) {
		/* The third message asks the server to stop reading for a while. */
		const struct strbuf *m = st->sent == 2 ? &st->paused_msg : &st->msg;
		if (grpc_client_call_send(c->call, m->buf, m->len) < 0)
			return;
		st->sent++;
	}
	if (c->call && st->sent == st->total && !st->closed) {
		st->closed = 1;
		grpc_client_call_close_send(c->call);
	}
}

static int sc_clientstream(struct ctx *x)
{
	struct cs_state st = { .total = 64 };
	struct strbuf data = STRBUF_INIT;
	Testsvc__Chunk chunk = TESTSVC__CHUNK__INIT;
	struct ccall c;
	int ret = 0;

	strbuf_init(&st.msg, 0);
	strbuf_init(&st.paused_msg, 0);
	strbuf_grow(&data, MIB);
	memset(data.buf, 'z', MIB);
	strbuf_setlen(&data, MIB);
	chunk.data.data = (uint8_t *)data.buf;
	chunk.data.len = data.len;
	pack(&chunk.base, &st.msg);
	chunk.pause_ms = 100;
	pack(&chunk.base, &st.paused_msg);

	cc_init(&c, x);
	c.arg = &st;
	c.on_writable = cs_pump;
	if (cc_start(&c, "/testsvc.Test/ClientStream", NULL, 60000, 0) < 0) {
		ret = -1;
		goto out;
	}
	cs_pump(&c);
	if (run_until(x, &c.done) < 0 || expect_code(&c, GRPC_OK, "64 MiB client stream") < 0) {
		ret = -1;
	} else if (c.msgs_nr != 1) {
		ret = fail(x, "%zu responses, want 1", c.msgs_nr);
	} else {
		Testsvc__ClientStreamResponse *r = testsvc__client_stream_response__unpack(
			NULL, c.msgs[0].len, (uint8_t *)c.msgs[0].buf);
		if (!r)
			ret = fail(x, "undecodable response");
		else if (r->messages != 64 || r->total_bytes != 64ull * MIB)
			ret = fail(x, "server counted %" PRIu64 " messages, %" PRIu64 " bytes; sent 64, 64 MiB",
				   r->messages, r->total_bytes);
		if (r)
			testsvc__client_stream_response__free_unpacked(r, NULL);
	}
out:
	cc_release(&c);
	strbuf_release(&data);
	strbuf_release(&st.msg);
	strbuf_release(&st.paused_msg);
	return ret;
}

/* Bidi: first ping-pong (proves replies come before half-close), then a burst. */
static void make_chunk(struct strbuf *out, unsigned i, size_t size)
{
	struct strbuf data = STRBUF_INIT;
	Testsvc__Chunk chunk = TESTSVC__CHUNK__INIT;
	strbuf_addf(&data, "message %u:", i);
	while (data.len < size)
		strbuf_addch(&data, (char)('A' + (data.len + i) % 26));
	chunk.data.data = (uint8_t *)data.buf;
	chunk.data.len = data.len;
	pack(&chunk.base, out);
	strbuf_release(&data);
}

static int sc_bidi(struct ctx *x)
{
	enum { PINGS = 10, BURST = 300 };
	struct strbuf sent[PINGS + BURST];
	struct ccall c;
	int ret = 0;
	size_t i;

	for (i = 0; i < PINGS + BURST; i++) {
		strbuf_init(&sent[i], 0);
		make_chunk(&sent[i], (unsigned)i, 16 + i * 331);
	}
	cc_init(&c, x);
	if (cc_start(&c, "/testsvc.Test/Bidi", NULL, 60000, 0) < 0) {
		ret = -1;
		goto out;
	}
	for (i = 0; i < PINGS && !ret; i++) {
		uint64_t want = c.nmsgs + 1;
		grpc_client_call_send(c.call, sent[i].buf, sent[i].len);
		while (c.nmsgs < want && !c.done)
			uv_run(x->loop, UV_RUN_ONCE);
		if (c.done)
			ret = fail(x, "call ended during ping-pong: %s \"%s\"", grpc_code_name(c.code),
				   c.message.buf);
	}
	for (; i < PINGS + BURST && !ret && !c.done; i++) {
		while (c.call && grpc_client_call_send_full(c.call))
			uv_run(x->loop, UV_RUN_ONCE);
		if (c.call)
			grpc_client_call_send(c.call, sent[i].buf, sent[i].len);
	}
	if (!ret && c.call)
		grpc_client_call_close_send(c.call);
	if (ret || run_until(x, &c.done) < 0 || expect_code(&c, GRPC_OK, "bidi") < 0) {
		ret = -1;
	} else if (c.msgs_nr != PINGS + BURST) {
		ret = fail(x, "%zu echoes, want %d", c.msgs_nr, PINGS + BURST);
	} else {
		for (i = 0; i < c.msgs_nr; i++)
			if (c.msgs[i].len != sent[i].len || memcmp(c.msgs[i].buf, sent[i].buf, sent[i].len)) {
				ret = fail(x, "echo %zu differs from what was sent", i);
				break;
			}
	}
out:
	if (c.call) {
		grpc_client_call_cancel(c.call);
		run_until(x, &c.done);
	}
	cc_release(&c);
	for (i = 0; i < PINGS + BURST; i++)
		strbuf_release(&sent[i]);
	return ret;
}

static int sc_errors(struct ctx *x)
{
	static const char msg[] = "pr\xc3\xa9" "condition failed: 100% \xe2\x9c\x93 \"quoted\"\r\nnext line";
	static const char bin[] = { (char)0x80, 0, (char)0xff };
	Testsvc__Header h1 = TESTSVC__HEADER__INIT, h2 = TESTSVC__HEADER__INIT;
	Testsvc__Header *hs[] = { &h1, &h2 };
	Testsvc__FailRequest req = TESTSVC__FAIL_REQUEST__INIT;
	struct ccall c;
	int ret = 0;

	h1.key = (char *)"x-error-detail";
	h1.value.data = (uint8_t *)"detail value";
	h1.value.len = 12;
	h2.key = (char *)"x-error-bin";
	h2.value.data = (uint8_t *)bin;
	h2.value.len = sizeof(bin);
	req.code = GRPC_FAILED_PRECONDITION;
	req.message = (char *)msg;
	req.n_trailers = 2;
	req.trailers = hs;

	/* Trailers-Only, then the same after two messages. */
	for (int round = 0; round < 2 && !ret; round++) {
		req.messages_first = round ? 2 : 0;
		cc_init(&c, x);
		if (unary_call(&c, "/testsvc.Test/Fail", NULL, &req.base, 5000, 0) < 0 ||
		    expect_code(&c, GRPC_FAILED_PRECONDITION, round ? "error after messages" : "trailers-only error") < 0)
			ret = -1;
		else if (strcmp(c.message.buf, msg))
			ret = fail(x, "status message \"%s\", want \"%s\"", c.message.buf, msg);
		else if (!md_has(&c.trailers, "x-error-detail", "detail value", 12) ||
			 !md_has(&c.trailers, "x-error-bin", bin, sizeof(bin)))
			ret = fail(x, "trailing metadata missing or altered (round %d)", round);
		else if (c.nmsgs != req.messages_first)
			ret = fail(x, "%" PRIu64 " messages before the error, want %u", c.nmsgs, req.messages_first);
		cc_release(&c);
	}
	if (ret)
		return ret;

	/* Every code survives the trip, with no message at all. */
	req.message = (char *)"";
	req.n_trailers = 0;
	req.messages_first = 0;
	for (unsigned code = 1; code <= 16 && !ret; code++) {
		req.code = code;
		cc_init(&c, x);
		if (unary_call(&c, "/testsvc.Test/Fail", NULL, &req.base, 5000, 0) < 0 ||
		    expect_code(&c, (enum grpc_code)code, "bare code") < 0)
			ret = -1;
		cc_release(&c);
	}
	return ret;
}

static int pid_gone(pid_t pid, uint64_t wait_ms)
{
	uint64_t end = now_ms() + wait_ms;
	do {
		if (kill(pid, 0) < 0 && errno == ESRCH)
			return 1;
		usleep(20000);
	} while (now_ms() < end);
	return 0;
}

static pid_t header_pid(struct ccall *c)
{
	const char *v = grpc_metadata_value(&c->headers, "x-child-pid");
	char *end;
	long pid = v ? strtol(v, &end, 10) : 0;
	return (v && *v && !*end && pid > 1) ? (pid_t)pid : 0;
}

static int sc_deadline(struct ctx *x)
{
	Testsvc__SleepRequest req = TESTSVC__SLEEP_REQUEST__INIT;
	struct ccall c;
	int ret = 0;

	cc_init(&c, x);
	if (unary_call(&c, "/testsvc.Test/Sleep", NULL, &req.base, 200, 0) < 0 ||
	    expect_code(&c, GRPC_DEADLINE_EXCEEDED, "Sleep with 200 ms timeout") < 0) {
		ret = -1;
	} else {
		uint64_t took = c.end_ms - c.start_ms;
		pid_t pid = header_pid(&c);
		if (took < 150 || took > 2000)
			ret = fail(x, "deadline fired after %" PRIu64 " ms, want about 200", took);
		else if (!pid)
			ret = fail(x, "no x-child-pid header before the deadline");
		else if (!pid_gone(pid, 5000))
			ret = fail(x, "child %d still exists 5 s after the deadline", (int)pid);
	}
	cc_release(&c);
	return ret;
}

static void cancel_later(uv_timer_t *t)
{
	struct ccall *c = t->data;
	if (c->call)
		grpc_client_call_cancel(c->call);
	uv_close((uv_handle_t *)t, NULL);
}

static void sleep_on_hdr(struct ccall *c)
{
	uv_timer_t *t = c->arg;
	t->data = c;
	uv_timer_start(t, cancel_later, 100, 0);
}

static int sc_cancel(struct ctx *x)
{
	Testsvc__SleepRequest req = TESTSVC__SLEEP_REQUEST__INIT;
	uv_timer_t timer;
	struct ccall c;
	int ret = 0;

	uv_timer_init(x->loop, &timer);
	cc_init(&c, x);
	c.arg = &timer;
	c.on_hdr = sleep_on_hdr;
	if (unary_call(&c, "/testsvc.Test/Sleep", NULL, &req.base, 10000, 0) < 0 ||
	    expect_code(&c, GRPC_CANCELLED, "cancelled Sleep") < 0) {
		ret = -1;
	} else {
		pid_t pid = header_pid(&c);
		if (!pid)
			ret = fail(x, "no x-child-pid header");
		else if (!pid_gone(pid, 5000))
			ret = fail(x, "child %d still exists 5 s after the cancellation", (int)pid);
	}
	if (!uv_is_closing((uv_handle_t *)&timer))
		uv_close((uv_handle_t *)&timer, NULL);
	uv_run(x->loop, UV_RUN_NOWAIT);
	cc_release(&c);
	return ret;
}

static int sc_concurrent(struct ctx *x)
{
	enum { N = 1000 };
	struct ccall *cs = xcalloc(N, sizeof(*cs));
	struct strbuf buf = STRBUF_INIT;
	Testsvc__UnaryRequest req = TESTSVC__UNARY_REQUEST__INIT;
	uint64_t connects = grpc_channel_connects(x->ch);
	uint64_t start = now_ms();
	int ret = 0, i, ndone;

	req.delay_ms = 300;
	for (i = 0; i < N && !ret; i++) {
		char payload[32];
		int len = snprintf(payload, sizeof(payload), "call %d", i);
		req.payload.data = (uint8_t *)payload;
		req.payload.len = (size_t)len;
		strbuf_reset(&buf);
		pack(&req.base, &buf);
		cc_init(&cs[i], x);
		if (cc_start(&cs[i], "/testsvc.Test/Unary", NULL, 30000, 0) < 0) {
			ret = -1;
			break;
		}
		grpc_client_call_send(cs[i].call, buf.buf, buf.len);
		grpc_client_call_close_send(cs[i].call);
	}
	int started = i;
	if (!ret && grpc_channel_active_calls(x->ch) < (size_t)N / 2)
		ret = fail(x, "only %zu calls active on the channel right after starting %d",
			   grpc_channel_active_calls(x->ch), N);
	do {
		ndone = 0;
		for (i = 0; i < started; i++)
			ndone += cs[i].done;
		if (ndone < started && !uv_run(x->loop, UV_RUN_ONCE))
			break;
	} while (ndone < started);
	uint64_t took = now_ms() - start;

	for (i = 0; i < started && !ret; i++) {
		char want[32];
		int len = snprintf(want, sizeof(want), "call %d", i);
		Testsvc__UnaryResponse *r = NULL;
		if (!cs[i].done) {
			ret = fail(x, "call %d never ended", i);
			break;
		}
		if ((ret = expect_code(&cs[i], GRPC_OK, "concurrent call")) < 0)
			break;
		if (cs[i].msgs_nr == 1)
			r = testsvc__unary_response__unpack(NULL, cs[i].msgs[0].len, (uint8_t *)cs[i].msgs[0].buf);
		if (!r || r->payload.len != (size_t)len || memcmp(r->payload.data, want, (size_t)len))
			ret = fail(x, "call %d got someone else's reply", i);
		if (r)
			testsvc__unary_response__free_unpacked(r, NULL);
	}
	if (!ret && took > 10000)
		ret = fail(x, "%d calls of 300 ms took %" PRIu64 " ms: not concurrent", N, took);
	if (!ret && grpc_channel_connects(x->ch) != (connects ? connects : 1))
		ret = fail(x, "channel connected %" PRIu64 " times, want one connection",
			   grpc_channel_connects(x->ch));
	for (i = 0; i < started; i++)
		cc_release(&cs[i]);
	free(cs);
	strbuf_release(&buf);
	return ret;
}

static void flag_headers(struct ccall *c)
{
	*(int *)c->arg = 1;
}

/*
 * Orchestrated by pytest: once a Sleep call is in flight we print
 * "restart-server"; the server is killed (the call must end UNAVAILABLE) and a
 * new one started on the same address; then a line on stdin says go on, and
 * the channel must reconnect by itself.
 */
static int sc_reconnect(struct ctx *x)
{
	Testsvc__UnaryRequest req = TESTSVC__UNARY_REQUEST__INIT;
	Testsvc__SleepRequest sleep_req = TESTSVC__SLEEP_REQUEST__INIT;
	struct ccall c;
	char line[64];
	int ret = 0, headers = 0;

	req.payload.data = (uint8_t *)"before";
	req.payload.len = 6;
	cc_init(&c, x);
	if (unary_call(&c, "/testsvc.Test/Unary", NULL, &req.base, 5000, 0) < 0 ||
	    expect_code(&c, GRPC_OK, "call before the restart") < 0)
		ret = -1;
	cc_release(&c);
	if (ret)
		return ret;
	uint64_t connects = grpc_channel_connects(x->ch);

	struct strbuf buf = STRBUF_INIT;
	pack(&sleep_req.base, &buf);
	cc_init(&c, x);
	c.arg = &headers;
	c.on_hdr = flag_headers;
	if (cc_start(&c, "/testsvc.Test/Sleep", NULL, 30000, 0) < 0) {
		strbuf_release(&buf);
		return -1;
	}
	grpc_client_call_send(c.call, buf.buf, buf.len);
	grpc_client_call_close_send(c.call);
	strbuf_release(&buf);
	while (!headers && !c.done)
		uv_run(x->loop, UV_RUN_ONCE);
	printf("restart-server\n");
	fflush(stdout);
	if (run_until(x, &c.done) < 0 || expect_code(&c, GRPC_UNAVAILABLE, "call in flight when the server died") < 0)
		ret = -1;
	else if (c.end_ms - c.start_ms > 20000)
		ret = fail(x, "the call took %" PRIu64 " ms to notice the dead server", c.end_ms - c.start_ms);
	cc_release(&c);
	if (ret)
		return ret;

	if (!fgets(line, sizeof(line), stdin))
		return fail(x, "stdin closed while waiting for the server restart");

	/* Calls may fail fast while the channel is in backoff: retry for a while. */
	uint64_t end = now_ms() + 15000;
	enum grpc_code last = GRPC_UNKNOWN;
	struct strbuf lastmsg = STRBUF_INIT;
	while (now_ms() < end) {
		req.payload.data = (uint8_t *)"after";
		req.payload.len = 5;
		cc_init(&c, x);
		ret = unary_call(&c, "/testsvc.Test/Unary", NULL, &req.base, 3000, GRPC_CALL_WAIT_FOR_READY);
		last = c.code;
		strbuf_reset(&lastmsg);
		strbuf_addstr(&lastmsg, c.message.buf);
		cc_release(&c);
		if (ret < 0 || last == GRPC_OK)
			break;
		sleep_loop(x, 100);
	}
	if (!ret && last != GRPC_OK)
		ret = fail(x, "no successful call within 15 s of the restart; last: %s \"%s\"",
			   grpc_code_name(last), lastmsg.buf);
	else if (!ret && grpc_channel_connects(x->ch) <= connects)
		ret = fail(x, "channel reports %" PRIu64 " connections, want more than %" PRIu64,
			   grpc_channel_connects(x->ch), connects);
	strbuf_release(&lastmsg);
	return ret;
}

/*
 * Orchestrated by pytest: a call is in flight when we print "shutdown-server"
 * and the server gets SIGTERM. Its GOAWAY must let the call finish; afterwards,
 * with nothing listening, a new call must fail fast with UNAVAILABLE.
 */
static int sc_goaway(struct ctx *x)
{
	Testsvc__UnaryRequest req = TESTSVC__UNARY_REQUEST__INIT;
	struct strbuf buf = STRBUF_INIT;
	struct ccall c;
	int ret = 0;

	req.payload.data = (uint8_t *)"in flight";
	req.payload.len = 9;
	req.delay_ms = 1500;
	pack(&req.base, &buf);
	cc_init(&c, x);
	if (cc_start(&c, "/testsvc.Test/Unary", NULL, 10000, 0) < 0) {
		strbuf_release(&buf);
		return -1;
	}
	grpc_client_call_send(c.call, buf.buf, buf.len);
	grpc_client_call_close_send(c.call);
	strbuf_release(&buf);
	sleep_loop(x, 300);   /* the request reaches the server */
	printf("shutdown-server\n");
	fflush(stdout);
	if (run_until(x, &c.done) < 0 || expect_code(&c, GRPC_OK, "call in flight during GOAWAY") < 0) {
		ret = -1;
	} else {
		Testsvc__UnaryResponse *r = c.msgs_nr != 1 ? NULL :
			testsvc__unary_response__unpack(NULL, c.msgs[0].len, (uint8_t *)c.msgs[0].buf);
		if (!r || r->payload.len != 9 || memcmp(r->payload.data, "in flight", 9))
			ret = fail(x, "wrong reply to the call in flight");
		if (r)
			testsvc__unary_response__free_unpacked(r, NULL);
	}
	cc_release(&c);
	if (ret)
		return ret;

	/* The server is going away: give it time to close, then expect fail-fast. */
	sleep_loop(x, 500);
	req.delay_ms = 0;
	cc_init(&c, x);
	if (unary_call(&c, "/testsvc.Test/Unary", NULL, &req.base, 10000, 0) < 0 ||
	    expect_code(&c, GRPC_UNAVAILABLE, "call after the server left") < 0)
		ret = -1;
	else if (c.end_ms - c.start_ms > 5000)
		ret = fail(x, "UNAVAILABLE took %" PRIu64 " ms, want fail-fast", c.end_ms - c.start_ms);
	cc_release(&c);
	return ret;
}

static int sc_unimplemented(struct ctx *x)
{
	static const char *const paths[] = { "/testsvc.Test/NoSuchMethod", "/no.Such/Service" };
	Testsvc__UnaryRequest req = TESTSVC__UNARY_REQUEST__INIT;
	int ret = 0;

	for (size_t i = 0; i < ARRAY_SIZE(paths) && !ret; i++) {
		struct ccall c;
		cc_init(&c, x);
		if (unary_call(&c, paths[i], NULL, &req.base, 5000, 0) < 0 ||
		    expect_code(&c, GRPC_UNIMPLEMENTED, paths[i]) < 0)
			ret = -1;
		cc_release(&c);
	}
	return ret;
}

static int sc_toolarge(struct ctx *x)
{
	Testsvc__UnaryRequest req = TESTSVC__UNARY_REQUEST__INIT;
	struct strbuf big = STRBUF_INIT;
	struct ccall c;
	int ret = 0;

	/* Request over the server's default 4 MiB limit. */
	strbuf_grow(&big, 5 * MIB);
	memset(big.buf, 'q', 5 * MIB);
	strbuf_setlen(&big, 5 * MIB);
	req.payload.data = (uint8_t *)big.buf;
	req.payload.len = big.len;
	cc_init(&c, x);
	if (unary_call(&c, "/testsvc.Test/Unary", NULL, &req.base, 10000, 0) < 0 ||
	    expect_code(&c, GRPC_RESOURCE_EXHAUSTED, "5 MiB request") < 0)
		ret = -1;
	cc_release(&c);
	strbuf_release(&big);
	if (ret)
		return ret;

	/* Reply over our own default 4 MiB limit. */
	req.payload.len = 0;
	req.response_size = 5 * MIB;
	cc_init(&c, x);
	if (unary_call(&c, "/testsvc.Test/Unary", NULL, &req.base, 10000, 0) < 0 ||
	    expect_code(&c, GRPC_RESOURCE_EXHAUSTED, "5 MiB reply") < 0)
		ret = -1;
	cc_release(&c);
	if (ret)
		return ret;

	/* The channel still works afterwards. */
	req.response_size = 4 * MIB - 64;
	cc_init(&c, x);
	if (unary_call(&c, "/testsvc.Test/Unary", NULL, &req.base, 10000, 0) < 0 ||
	    expect_code(&c, GRPC_OK, "call after the oversized ones") < 0)
		ret = -1;
	cc_release(&c);
	return ret;
}

static int sc_health(struct ctx *x)
{
	static const char *const services[] = { "", "nope.Unknown" };
	static const enum grpc_code want[] = { GRPC_OK, GRPC_NOT_FOUND };
	int ret = 0;

	for (size_t i = 0; i < ARRAY_SIZE(services) && !ret; i++) {
		Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
		struct ccall c;
		req.service = (char *)services[i];
		cc_init(&c, x);
		if (unary_call(&c, "/grpc.health.v1.Health/Check", NULL, &req.base, 5000, 0) < 0 ||
		    expect_code(&c, want[i], services[i][0] ? services[i] : "overall health") < 0) {
			ret = -1;
		} else if (want[i] == GRPC_OK) {
			Grpc__Health__V1__HealthCheckResponse *r = c.msgs_nr != 1 ? NULL :
				grpc__health__v1__health_check_response__unpack(NULL, c.msgs[0].len,
										 (uint8_t *)c.msgs[0].buf);
			if (!r || r->status != GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING)
				ret = fail(x, "health status is not SERVING");
			if (r)
				grpc__health__v1__health_check_response__free_unpacked(r, NULL);
		}
		cc_release(&c);
	}
	return ret;
}

static const struct scenario {
	const char *name;
	int (*fn)(struct ctx *x);
	int in_all;
} scenarios[] = {
	{ "unary", sc_unary, 1 },
	{ "metadata", sc_metadata, 1 },
	{ "serverstream", sc_serverstream, 1 },
	{ "clientstream", sc_clientstream, 1 },
	{ "bidi", sc_bidi, 1 },
	{ "errors", sc_errors, 1 },
	{ "deadline", sc_deadline, 1 },
	{ "cancel", sc_cancel, 1 },
	{ "concurrent", sc_concurrent, 1 },
	{ "unimplemented", sc_unimplemented, 1 },
	{ "toolarge", sc_toolarge, 1 },
	{ "health", sc_health, 1 },
	{ "reconnect", sc_reconnect, 0 },
	{ "goaway", sc_goaway, 0 },
};

static int run_one(struct ctx *x, const struct scenario *sc)
{
	strbuf_reset(&x->err);
	int r = sc->fn(x);
	if (r < 0 || x->err.len) {
		printf("FAIL %s: %s\n", sc->name, x->err.len ? x->err.buf : "(no reason given)");
		r = -1;
	} else {
		printf("ok %s\n", sc->name);
	}
	fflush(stdout);
	return r;
}

static void usage(void)
{
	fputs("usage: grpc-testclient ADDR SCENARIO...\n"
	      "scenarios: all (everything but reconnect and goaway, which need a\n"
	      "test driver to restart or stop the server)", stderr);
	for (size_t i = 0; i < ARRAY_SIZE(scenarios); i++)
		fprintf(stderr, " %s", scenarios[i].name);
	fputc('\n', stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	struct grpc_channel_opts opts;
	struct ctx x = { .err = STRBUF_INIT };
	int failed = 0;

	if (argc < 3)
		usage();
	for (int i = 2; i < argc; i++) {
		size_t j;
		for (j = 0; j < ARRAY_SIZE(scenarios); j++)
			if (!strcmp(argv[i], scenarios[j].name))
				break;
		if (j == ARRAY_SIZE(scenarios) && strcmp(argv[i], "all"))
			usage();
	}
	signal(SIGPIPE, SIG_IGN);
	/* A hung call must not hang the test suite. */
	alarm(300);

	x.loop = uv_default_loop();
	grpc_channel_opts_default(&opts);
	opts.backoff_initial_ms = 100;
	opts.backoff_max_ms = 1000;
	opts.connect_timeout_ms = 5000;
	if (grpc_channel_new(x.loop, argv[1], &opts, &x.ch) < 0) {
		fprintf(stderr, "grpc-testclient: bad address \"%s\"\n", argv[1]);
		return 2;
	}

	for (int i = 2; i < argc; i++)
		for (size_t j = 0; j < ARRAY_SIZE(scenarios); j++)
			if (!strcmp(argv[i], scenarios[j].name) ||
			    (!strcmp(argv[i], "all") && scenarios[j].in_all))
				failed |= run_one(&x, &scenarios[j]) < 0;

	grpc_channel_close(x.ch);
	uv_run(x.loop, UV_RUN_DEFAULT);
	if (uv_loop_close(x.loop) < 0) {
		printf("FAIL close: handles still open after grpc_channel_close()\n");
		failed = 1;
	}
	strbuf_release(&x.err);
	return failed ? 1 : 0;
}
