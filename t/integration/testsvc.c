/* The Test service of the integration tests: one handler per method of testsvc.proto. */
#include "testsvc.h"

#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/strbuf.h"
#include "base/util.h"
#include "grpc/server.h"
#include "h2/io.h"
#include "testsvc.pb-c.h"

/* Caps on what a request may ask for: a test server still has hard limits. */
#define MAX_CHUNK_SIZE (4u << 20)
#define MAX_RESPONSE_SIZE (64u << 20)
#define MAX_PEERS 4096

struct child;

/* Per-call state, shared by every method; freed when the call and its timer are gone. */
struct tcall {
	struct testsvc *svc;
	struct grpc_call *call;     /* NULL once closed */
	int finished;               /* we ended it with grpc_call_finish() */
	int have_request;
	int pumping;                /* ServerStream: inside ss_pump() */
	int recv_paused;            /* Bidi: reads paused until our replies drain */
	uv_timer_t timer;
	int timer_inited;

	/* ServerStream */
	uint64_t chunks, sent;
	struct strbuf chunk;
	/* ClientStream */
	uint64_t total, count;
	/* Unary with delay_ms */
	struct strbuf reply;
	struct grpc_metadata trailers;
	int has_trailers;
	/* Sleep */
	struct child *child;
};

struct child {
	uv_process_t proc;
	struct testsvc *svc;
	struct tcall *tc;           /* NULL once the call is gone */
};

static struct tcall *tcall_new(struct testsvc *svc, struct grpc_call *call)
{
	struct tcall *tc = xcalloc(1, sizeof(*tc));
	tc->svc = svc;
	tc->call = call;
	strbuf_init(&tc->chunk, 0);
	strbuf_init(&tc->reply, 0);
	grpc_metadata_init(&tc->trailers);
	return tc;
}

static void tcall_free(struct tcall *tc)
{
	strbuf_release(&tc->chunk);
	strbuf_release(&tc->reply);
	grpc_metadata_release(&tc->trailers);
	free(tc);
}

static void tcall_timer_closed(uv_handle_t *h)
{
	tcall_free(container_of((uv_timer_t *)h, struct tcall, timer));
}

static void tcall_finish(struct tcall *tc, enum grpc_code code, const char *msg,
			 const struct grpc_metadata *trailers)
{
	if (!tc->call || tc->finished)
		return;
	tc->finished = 1;
	grpc_call_finish(tc->call, code, msg, trailers);
}

/* The call is gone: count why, kill its child, free what we can. */
static void tcall_closed(struct tcall *tc, enum grpc_code code)
{
	if (!tc->finished) {
		if (code == GRPC_CANCELLED)
			tc->svc->cancelled_calls++;
		else if (code == GRPC_DEADLINE_EXCEEDED)
			tc->svc->deadline_calls++;
	}
	tc->call = NULL;
	if (tc->child) {
		/* The child reaps itself in child_exit(); the pid stays ours until then. */
		tc->child->tc = NULL;
		uv_process_kill(&tc->child->proc, SIGKILL);
		tc->child = NULL;
	}
	if (tc->timer_inited)
		uv_close((uv_handle_t *)&tc->timer, tcall_timer_closed);
	else
		tcall_free(tc);
}

static void tcall_start_timer(struct tcall *tc, uint64_t ms, uv_timer_cb cb)
{
	if (!tc->timer_inited) {
		uv_timer_init(tc->svc->loop, &tc->timer);
		tc->timer_inited = 1;
	}
	uv_timer_start(&tc->timer, cb, ms, 0);
}

static void pack(const ProtobufCMessage *m, struct strbuf *out)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	strbuf_grow(out, n);
	protobuf_c_message_pack(m, (uint8_t *)out->buf + out->len);
	strbuf_setlen(out, out->len + n);
}

static void fill_pattern(struct strbuf *sb, size_t n)
{
	strbuf_grow(sb, n);
	for (size_t i = 0; i < n; i++)
		sb->buf[sb->len + i] = (char)('a' + i % 26);
	strbuf_setlen(sb, sb->len + n);
}

/* --- Unary --- */

static void on_unary_close(struct grpc_call *call, enum grpc_code code, void *arg)
{
	tcall_closed(arg, code);
}

static void unary_send(struct tcall *tc)
{
	if (grpc_call_send(tc->call, tc->reply.buf, tc->reply.len) < 0)
		return;
	tcall_finish(tc, GRPC_OK, NULL, tc->has_trailers ? &tc->trailers : NULL);
}

static void unary_delay_done(uv_timer_t *t)
{
	struct tcall *tc = container_of(t, struct tcall, timer);
	if (tc->call)
		unary_send(tc);
}

static void unary(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct tcall *tc = tcall_new(data, call);
	grpc_call_on_close(call, on_unary_close, tc);

	Testsvc__UnaryRequest *r = testsvc__unary_request__unpack(NULL, len, req);
	if (!r) {
		tcall_finish(tc, GRPC_INVALID_ARGUMENT, "cannot decode UnaryRequest", NULL);
		return;
	}
	if (r->response_size > MAX_RESPONSE_SIZE) {
		testsvc__unary_request__free_unpacked(r, NULL);
		tcall_finish(tc, GRPC_INVALID_ARGUMENT, "response_size too large", NULL);
		return;
	}

	struct strbuf payload = STRBUF_INIT;
	Testsvc__UnaryResponse resp = TESTSVC__UNARY_RESPONSE__INIT;
	if (r->response_size) {
		fill_pattern(&payload, r->response_size);
		resp.payload.data = (uint8_t *)payload.buf;
		resp.payload.len = payload.len;
	} else {
		resp.payload = r->payload;
	}
	pack(&resp.base, &tc->reply);
	strbuf_release(&payload);

	if (r->echo_metadata) {
		const struct grpc_metadata *md = grpc_call_metadata(call);
		for (size_t i = 0; i < md->nr; i++)
			if (!strncmp(md->v[i].key, "x-", 2))
				grpc_metadata_add(&tc->trailers, md->v[i].key, strlen(md->v[i].key),
						  md->v[i].value, md->v[i].value_len);
		tc->has_trailers = 1;
		grpc_call_send_headers(call, &tc->trailers);
	}
	uint32_t delay = r->delay_ms;
	testsvc__unary_request__free_unpacked(r, NULL);

	if (delay)
		tcall_start_timer(tc, delay, unary_delay_done);
	else
		unary_send(tc);
}

/* --- Fail --- */

static void fail(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct tcall *tc = tcall_new(data, call);
	grpc_call_on_close(call, on_unary_close, tc);

	Testsvc__FailRequest *r = testsvc__fail_request__unpack(NULL, len, req);
	if (!r) {
		tcall_finish(tc, GRPC_INVALID_ARGUMENT, "cannot decode FailRequest", NULL);
		return;
	}
	if (r->code > GRPC_UNAUTHENTICATED || r->messages_first > 1000) {
		testsvc__fail_request__free_unpacked(r, NULL);
		tcall_finish(tc, GRPC_INVALID_ARGUMENT, "bad FailRequest", NULL);
		return;
	}
	for (size_t i = 0; i < r->n_trailers; i++)
		grpc_metadata_add(&tc->trailers, r->trailers[i]->key, strlen(r->trailers[i]->key),
				  (const char *)r->trailers[i]->value.data, r->trailers[i]->value.len);

	Testsvc__UnaryResponse resp = TESTSVC__UNARY_RESPONSE__INIT;
	resp.payload.data = (uint8_t *)"before the failure";
	resp.payload.len = strlen("before the failure");
	pack(&resp.base, &tc->reply);
	for (uint32_t i = 0; i < r->messages_first; i++)
		grpc_call_send(call, tc->reply.buf, tc->reply.len);

	tcall_finish(tc, (enum grpc_code)r->code, r->message[0] ? r->message : NULL,
		     r->n_trailers ? &tc->trailers : NULL);
	testsvc__fail_request__free_unpacked(r, NULL);
}

/* --- Stats --- */

/* A "Key:   123 kB" line of /proc/self/status, in bytes; 0 if absent. */
static uint64_t proc_status_kb(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	uint64_t v = 0;
	size_t klen = strlen(key);

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, key, klen) && line[klen] == ':') {
			v = strtoull(line + klen + 1, NULL, 10) * 1024;
			break;
		}
	}
	fclose(f);
	return v;
}

static uint64_t open_sockets(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	uint64_t n = 0;
	char target[64];

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		ssize_t len = readlinkat(dirfd(d), de->d_name, target, sizeof(target) - 1);
		if (len > 0) {
			target[len] = '\0';
			if (!strncmp(target, "socket:", 7))
				n++;
		}
	}
	closedir(d);
	return n;
}

static void stats(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct testsvc *svc = data;
	struct tcall *tc = tcall_new(svc, call);
	grpc_call_on_close(call, on_unary_close, tc);

	Testsvc__StatsResponse resp = TESTSVC__STATS_RESPONSE__INIT;
	uint64_t socks = open_sockets();
	resp.rss_bytes = proc_status_kb("VmRSS");
	resp.peak_rss_bytes = proc_status_kb("VmHWM");
	resp.active_calls = grpc_server_active_calls(svc->server);
	resp.cancelled_calls = svc->cancelled_calls;
	resp.deadline_calls = svc->deadline_calls;
	resp.connections = socks > svc->nlisteners ? socks - svc->nlisteners : 0;
	resp.tcp_peers_seen = svc->peers_nr;
	resp.children = svc->children;
	pack(&resp.base, &tc->reply);
	unary_send(tc);
}

/* --- ServerStream: produce only while the send queue has room --- */

static void ss_pump(struct tcall *tc)
{
	if (tc->pumping)
		return;
	tc->pumping = 1;
	while (tc->call && tc->sent < tc->chunks) {
		if (grpc_call_send_full(tc->call))
			break;
		if (grpc_call_send(tc->call, tc->chunk.buf, tc->chunk.len) < 0)
			break;
		tc->sent++;
	}
	tc->pumping = 0;
	if (tc->call && tc->sent == tc->chunks)
		tcall_finish(tc, GRPC_OK, NULL, NULL);
}

static void ss_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct tcall *tc = grpc_call_user(call);
	if (tc->have_request)
		return;
	tc->have_request = 1;

	Testsvc__StreamRequest *r = testsvc__stream_request__unpack(NULL, len, msg);
	if (!r) {
		tcall_finish(tc, GRPC_INVALID_ARGUMENT, "cannot decode StreamRequest", NULL);
		return;
	}
	if (r->chunk_size > MAX_CHUNK_SIZE) {
		testsvc__stream_request__free_unpacked(r, NULL);
		tcall_finish(tc, GRPC_INVALID_ARGUMENT, "chunk_size too large", NULL);
		return;
	}
	struct strbuf data = STRBUF_INIT;
	Testsvc__Chunk c = TESTSVC__CHUNK__INIT;
	fill_pattern(&data, r->chunk_size);
	c.data.data = (uint8_t *)data.buf;
	c.data.len = data.len;
	pack(&c.base, &tc->chunk);
	strbuf_release(&data);
	tc->chunks = r->chunks;
	testsvc__stream_request__free_unpacked(r, NULL);
	ss_pump(tc);
}

static void ss_half_close(struct grpc_call *call)
{
	struct tcall *tc = grpc_call_user(call);
	if (!tc->have_request)
		tcall_finish(tc, GRPC_INVALID_ARGUMENT, "missing StreamRequest", NULL);
}

static void ss_writable(struct grpc_call *call)
{
	struct tcall *tc = grpc_call_user(call);
	if (tc->have_request)
		ss_pump(tc);
}

static void any_close(struct grpc_call *call, enum grpc_code code)
{
	tcall_closed(grpc_call_user(call), code);
}

static const struct grpc_call_ops ss_ops = {
	.on_message = ss_message,
	.on_half_close = ss_half_close,
	.on_writable = ss_writable,
	.on_close = any_close,
};

static void server_stream(struct grpc_call *call, void *data)
{
	grpc_call_set_ops(call, &ss_ops, tcall_new(data, call));
}

/* --- ClientStream: count, optionally pausing the reads --- */

static void cs_resume(uv_timer_t *t)
{
	struct tcall *tc = container_of(t, struct tcall, timer);
	if (tc->call)
		grpc_call_resume_recv(tc->call);
}

static void cs_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct tcall *tc = grpc_call_user(call);
	Testsvc__Chunk *c = testsvc__chunk__unpack(NULL, len, msg);
	if (!c) {
		tcall_finish(tc, GRPC_INVALID_ARGUMENT, "cannot decode Chunk", NULL);
		return;
	}
	tc->total += c->data.len;
	tc->count++;
	uint32_t pause = c->pause_ms;
	testsvc__chunk__free_unpacked(c, NULL);

	if (!pause && tc->svc->pause_recv)
		pause = 1;
	if (pause && !tc->finished) {
		grpc_call_pause_recv(call);
		tcall_start_timer(tc, pause, cs_resume);
	}
}

static void cs_half_close(struct grpc_call *call)
{
	struct tcall *tc = grpc_call_user(call);
	Testsvc__ClientStreamResponse resp = TESTSVC__CLIENT_STREAM_RESPONSE__INIT;
	resp.total_bytes = tc->total;
	resp.messages = tc->count;
	pack(&resp.base, &tc->reply);
	unary_send(tc);
}

static const struct grpc_call_ops cs_ops = {
	.on_message = cs_message,
	.on_half_close = cs_half_close,
	.on_close = any_close,
};

static void client_stream(struct grpc_call *call, void *data)
{
	grpc_call_set_ops(call, &cs_ops, tcall_new(data, call));
}

/* --- Bidi: echo; stop reading while our replies are not drained --- */

static void bidi_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct tcall *tc = grpc_call_user(call);
	if (tc->finished)
		return;
	grpc_call_send(call, msg, len);
	if (grpc_call_send_full(call) && !tc->recv_paused) {
		tc->recv_paused = 1;
		grpc_call_pause_recv(call);
	}
}

static void bidi_writable(struct grpc_call *call)
{
	struct tcall *tc = grpc_call_user(call);
	if (tc->recv_paused) {
		tc->recv_paused = 0;
		grpc_call_resume_recv(call);
	}
}

static void bidi_half_close(struct grpc_call *call)
{
	tcall_finish(grpc_call_user(call), GRPC_OK, NULL, NULL);
}

static const struct grpc_call_ops bidi_ops = {
	.on_message = bidi_message,
	.on_half_close = bidi_half_close,
	.on_writable = bidi_writable,
	.on_close = any_close,
};

static void bidi(struct grpc_call *call, void *data)
{
	grpc_call_set_ops(call, &bidi_ops, tcall_new(data, call));
}

/* --- Sleep: a real child process that must not outlive the call --- */

static void child_closed(uv_handle_t *h)
{
	free(container_of((uv_process_t *)h, struct child, proc));
}

static void child_exit(uv_process_t *p, int64_t status, int sig)
{
	struct child *ch = container_of(p, struct child, proc);
	ch->svc->children--;
	if (ch->tc) {
		/* It died on its own while the call still runs. */
		ch->tc->child = NULL;
		tcall_finish(ch->tc, GRPC_INTERNAL, "sleep exited early", NULL);
	}
	uv_close((uv_handle_t *)p, child_closed);
}

static void sleep_half_close(struct grpc_call *call)
{
	struct tcall *tc = grpc_call_user(call);
	if (tc->child || tc->finished)
		return;

	struct child *ch = xcalloc(1, sizeof(*ch));
	char *args[] = { (char *)"sleep", (char *)"1000", NULL };
	uv_stdio_container_t stdio[3] = {
		{ .flags = UV_IGNORE }, { .flags = UV_IGNORE }, { .flags = UV_INHERIT_FD, .data.fd = 2 },
	};
	uv_process_options_t opts = {
		.exit_cb = child_exit,
		.file = "sleep",
		.args = args,
		.stdio_count = 3,
		.stdio = stdio,
	};
	ch->svc = tc->svc;
	int r = uv_spawn(tc->svc->loop, &ch->proc, &opts);
	if (r < 0) {
		uv_close((uv_handle_t *)&ch->proc, child_closed);
		grpc_call_finishf(call, GRPC_INTERNAL, "cannot spawn sleep: %s", uv_strerror(r));
		tc->finished = 1;
		return;
	}
	ch->tc = tc;
	tc->child = ch;
	tc->svc->children++;

	char pid[32];
	struct grpc_metadata md = GRPC_METADATA_INIT;
	snprintf(pid, sizeof(pid), "%d", ch->proc.pid);
	grpc_metadata_addstr(&md, "x-child-pid", pid);
	grpc_call_send_headers(call, &md);
	grpc_metadata_release(&md);
}

static void ignore_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
}

static const struct grpc_call_ops sleep_ops = {
	.on_message = ignore_message,
	.on_half_close = sleep_half_close,
	.on_close = any_close,
};

static void sleep_start(struct grpc_call *call, void *data)
{
	grpc_call_set_ops(call, &sleep_ops, tcall_new(data, call));
}

/* --- hooks: remember TCP peers, to tell how many connections a client made --- */

static enum grpc_code on_call_start(struct grpc_call *call, struct strbuf *msg, void *data)
{
	struct testsvc *svc = data;
	struct io *io = grpc_call_io(call);
	const char *peer = io ? io_peer(io) : "";

	if (!*peer || !strchr(peer, ':') || !strncmp(peer, "unix", 4))
		return GRPC_OK;
	for (size_t i = 0; i < svc->peers_nr; i++)
		if (!strcmp(svc->peers[i], peer))
			return GRPC_OK;
	if (svc->peers_nr < MAX_PEERS) {
		ALLOC_GROW(svc->peers, svc->peers_nr + 1, svc->peers_alloc);
		svc->peers[svc->peers_nr++] = xstrdup(peer);
	}
	return GRPC_OK;
}

void testsvc_init(struct testsvc *t, uv_loop_t *loop, struct grpc_server *s)
{
	memset(t, 0, sizeof(*t));
	t->loop = loop;
	t->server = s;
}

void testsvc_register(struct testsvc *t)
{
	t->hooks.on_call_start = on_call_start;
	t->hooks.data = t;
	grpc_server_set_hooks(t->server, &t->hooks);

	if (grpc_server_add_unary(t->server, "/testsvc.Test/Unary", unary, t) < 0 ||
	    grpc_server_add_method(t->server, "/testsvc.Test/ServerStream", server_stream, t) < 0 ||
	    grpc_server_add_method(t->server, "/testsvc.Test/ClientStream", client_stream, t) < 0 ||
	    grpc_server_add_method(t->server, "/testsvc.Test/Bidi", bidi, t) < 0 ||
	    grpc_server_add_unary(t->server, "/testsvc.Test/Fail", fail, t) < 0 ||
	    grpc_server_add_method(t->server, "/testsvc.Test/Sleep", sleep_start, t) < 0 ||
	    grpc_server_add_unary(t->server, "/testsvc.Test/Stats", stats, t) < 0)
		die("cannot register the Test service");
}

void testsvc_release(struct testsvc *t)
{
	for (size_t i = 0; i < t->peers_nr; i++)
		free(t->peers[i]);
	free(t->peers);
	t->peers = NULL;
	t->peers_nr = t->peers_alloc = 0;
}
