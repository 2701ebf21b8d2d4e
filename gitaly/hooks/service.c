/* HookService: the RPCs gitaly-hooks calls on the internal socket while git runs hooks; see docs/technical/hooks.md. */
#include "core/gitaly.h"
#include "hooks/hooks.h"
#include "base/pb.h"
#include "base/util.h"
#include "hook.pb-c.h"

#include <stdlib.h>
#include <string.h>

/* git's hook input is one line per updated reference; pushes of 100k refs stay far below this */
#define HOOK_STDIN_MAX (64 * 1024 * 1024)

enum hook_method { M_PRE_RECEIVE, M_POST_RECEIVE, M_REFTX, M_UPDATE };

struct hook_call {
	struct gitaly_call base;        /* holds: the reference-transaction vote */
	enum hook_method method;
	ProtobufCMessage *first;        /* the first request: repository, environment */
	struct strbuf in;               /* stdin from the following requests */
	struct hook_run *run;
	struct hook_payload payload;    /* reference-transaction */
	int have_payload;
	struct strbuf out;              /* scratch for encoding responses */
};

static void hc_release(struct gitaly_call *c)
{
	struct hook_call *h = container_of(c, struct hook_call, base);
	if (h->first)
		protobuf_c_message_free_unpacked(h->first, NULL);
	if (h->have_payload)
		hook_payload_release(&h->payload);
	strbuf_release(&h->in);
	strbuf_release(&h->out);
	free(h);
}

static void send_output(struct hook_call *h, uint32_t field, const char *buf, size_t len)
{
	while (len && h->base.call) {
		size_t n = MIN(len, (size_t)MSG_CHUNK);
		strbuf_reset(&h->out);
		pb_put_bytes(&h->out, field, buf, n);
		grpc_call_send(h->base.call, h->out.buf, h->out.len);
		buf += n;
		len -= n;
	}
}

/* The last response: {exit_status: {value}, stderr} and OK. */
static void finish_with_exit(struct hook_call *h, int code, const char *stderr_text)
{
	struct strbuf st = STRBUF_INIT;
	if (!h->base.call) {
		h->base.finished = 1;
		return;
	}
	strbuf_reset(&h->out);
	if (stderr_text && *stderr_text)
		pb_put_bytes(&h->out, 2, stderr_text, strlen(stderr_text));
	if (code)
		pb_put_uint(&st, 1, (uint64_t)(int64_t)code);
	pb_put_bytes(&h->out, 3, st.buf, st.len);
	strbuf_release(&st);
	grpc_call_send(h->base.call, h->out.buf, h->out.len);
	gitaly_call_finish(&h->base, GRPC_OK, NULL, NULL);
}

static void finish_error(struct hook_call *h, enum grpc_code code, const char *msg)
{
	gitaly_call_finish(&h->base, code, msg, NULL);
}

static void on_output(void *arg, int fd, const char *buf, size_t len)
{
	struct hook_call *h = arg;
	send_output(h, fd == 1 ? 1 : 2, buf, len);
	/* a chatty hook waits for the client rather than filling our memory */
	if (h->base.call && h->run && grpc_call_send_full(h->base.call))
		hook_run_pause_output(h->run);
}

static void hc_writable(struct grpc_call *call)
{
	struct hook_call *h = grpc_call_user(call);
	if (h->run)
		hook_run_resume_output(h->run);
}

static void on_run_done(void *arg, const struct hook_result *res)
{
	struct hook_call *h = arg;
	h->run = NULL;
	if (h->method == M_UPDATE) {
		/* only a custom hook's own failure is an exit status; the rest is an RPC error */
		if (res->fail == HOOK_FAIL_NONE)
			finish_with_exit(h, 0, NULL);
		else if (res->fail == HOOK_FAIL_CUSTOM)
			finish_with_exit(h, res->exit_code, NULL);
		else
			finish_error(h, GRPC_INTERNAL, res->msg.buf);
		return;
	}
	if (res->fail == HOOK_FAIL_NONE)
		finish_with_exit(h, 0, NULL);
	else if (res->fail == HOOK_FAIL_CUSTOM)
		finish_with_exit(h, res->exit_code, NULL);
	else
		finish_with_exit(h, 1, res->msg.buf);
}

static void reftx_done(void *arg, enum grpc_code code, const char *msg)
{
	struct hook_call *h = arg;
	struct strbuf m = STRBUF_INIT;
	if (gitaly_call_drop(&h->base))
		return;
	if (code == GRPC_OK) {
		finish_with_exit(h, 0, NULL);
		return;
	}
	strbuf_addf(&m, "reference-transaction hook: error voting on transaction: %s", msg ? msg : "");
	if (code != GRPC_ABORTED && code != GRPC_FAILED_PRECONDITION && code != GRPC_UNAVAILABLE)
		code = GRPC_INTERNAL;
	finish_error(h, code, m.buf);
	strbuf_release(&m);
}

static void start_reftx(struct hook_call *h)
{
	Gitaly__ReferenceTransactionHookRequest *req = (void *)h->first;
	struct strbuf err = STRBUF_INIT;
	if (hook_payload_from_env((const char *const *)req->environment_variables, req->n_environment_variables,
				  &h->payload, &err) < 0) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "reference-transaction hook: extracting hooks payload: %s", err.buf);
		finish_error(h, GRPC_INTERNAL, m.buf);
		strbuf_release(&m);
		strbuf_release(&err);
		return;
	}
	h->have_payload = 1;
	gitaly_call_hold(&h->base);
	hook_reftx_vote(h->base.g, &h->payload, (enum hook_reftx_state)req->state, h->in.buf, h->in.len,
			reftx_done, h);
}

static void start_run(struct hook_call *h)
{
	struct hook_run_opts o = { 0 };
	if (h->method == M_PRE_RECEIVE) {
		Gitaly__PreReceiveHookRequest *req = (void *)h->first;
		o.kind = HOOK_KIND_PRE_RECEIVE;
		o.repo = req->repository;
		o.env = (const char *const *)req->environment_variables;
		o.nr_env = req->n_environment_variables;
		o.push_options = (const char *const *)req->git_push_options;
		o.nr_push_options = req->n_git_push_options;
	} else if (h->method == M_POST_RECEIVE) {
		Gitaly__PostReceiveHookRequest *req = (void *)h->first;
		o.kind = HOOK_KIND_POST_RECEIVE;
		o.repo = req->repository;
		o.env = (const char *const *)req->environment_variables;
		o.nr_env = req->n_environment_variables;
		o.push_options = (const char *const *)req->git_push_options;
		o.nr_push_options = req->n_git_push_options;
	} else {
		Gitaly__UpdateHookRequest *req = (void *)h->first;
		struct strbuf ref = STRBUF_INIT;
		o.kind = HOOK_KIND_UPDATE;
		o.repo = req->repository;
		o.env = (const char *const *)req->environment_variables;
		o.nr_env = req->n_environment_variables;
		strbuf_add(&ref, req->ref.data, req->ref.len);
		/* a NUL cannot reach a hook's argv; the ref is cut there as exec would refuse it */
		o.ref = ref.buf;
		o.old_value = req->old_value;
		o.new_value = req->new_value;
		o.on_output = on_output;
		o.done = on_run_done;
		o.arg = h;
		h->run = hook_run_start(h->base.g, &o);
		strbuf_release(&ref);
		return;
	}
	o.changes = h->in.buf;
	o.changes_len = h->in.len;
	o.on_output = on_output;
	o.done = on_run_done;
	o.arg = h;
	h->run = hook_run_start(h->base.g, &o);
}

/* --- call plumbing --- */

static const ProtobufCMessageDescriptor *method_desc(enum hook_method m)
{
	switch (m) {
	case M_PRE_RECEIVE: return &gitaly__pre_receive_hook_request__descriptor;
	case M_POST_RECEIVE: return &gitaly__post_receive_hook_request__descriptor;
	case M_REFTX: return &gitaly__reference_transaction_hook_request__descriptor;
	default: return &gitaly__update_hook_request__descriptor;
	}
}

static uint32_t stdin_field(enum hook_method m)
{
	return m == M_PRE_RECEIVE ? 4 : 3;
}

static const Gitaly__Repository *first_repo(struct hook_call *h)
{
	switch (h->method) {
	case M_PRE_RECEIVE: return ((Gitaly__PreReceiveHookRequest *)h->first)->repository;
	case M_POST_RECEIVE: return ((Gitaly__PostReceiveHookRequest *)h->first)->repository;
	case M_REFTX: return ((Gitaly__ReferenceTransactionHookRequest *)h->first)->repository;
	default: return ((Gitaly__UpdateHookRequest *)h->first)->repository;
	}
}

/* Decode and validate the first request; 0, or -1 with the call finished. */
static int take_first(struct hook_call *h, const uint8_t *msg, size_t len)
{
	struct strbuf path = STRBUF_INIT, err = STRBUF_INIT;
	enum grpc_code code;

	h->first = msg_unpack(h->base.call, method_desc(h->method), msg, len);
	if (!h->first) {
		h->base.finished = 1;   /* msg_unpack() answered */
		return -1;
	}
	code = gitaly_locate(h->base.g, first_repo(h), 0, &path, &err);
	strbuf_release(&path);
	if (code != GRPC_OK) {
		finish_error(h, code, err.buf);
		strbuf_release(&err);
		return -1;
	}
	strbuf_release(&err);
	if (h->method == M_REFTX) {
		Gitaly__ReferenceTransactionHookRequest *req = (void *)h->first;
		if ((unsigned)req->state > HOOK_REFTX_ABORTED) {
			finish_error(h, GRPC_INVALID_ARGUMENT, "invalid hook state");
			return -1;
		}
	}
	return 0;
}

static void hc_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct hook_call *h = grpc_call_user(call);
	const uint8_t *data;
	size_t dlen;
	int rc;

	if (h->base.finished)
		return;
	if (!h->first) {
		/* the first request's stdin is not hook input (upstream reads it from later requests) */
		take_first(h, msg, len);
		return;
	}
	rc = pb_find_bytes(msg, len, stdin_field(h->method), &data, &dlen);
	if (rc < 0) {
		finish_error(h, GRPC_INVALID_ARGUMENT, "cannot decode request");
		return;
	}
	if (rc == 1 && dlen) {
		if (h->in.len + dlen > HOOK_STDIN_MAX) {
			finish_error(h, GRPC_RESOURCE_EXHAUSTED, "hook input too large");
			return;
		}
		strbuf_add(&h->in, data, dlen);
	}
}

static void hc_half_close(struct grpc_call *call)
{
	struct hook_call *h = grpc_call_user(call);
	if (h->base.finished)
		return;
	if (!h->first) {
		finish_error(h, GRPC_INTERNAL, h->method == M_POST_RECEIVE ? "EOF" : "receiving first request: EOF");
		return;
	}
	if (h->method == M_REFTX)
		start_reftx(h);
	else
		start_run(h);
}

static void hc_close(struct grpc_call *call, enum grpc_code code)
{
	struct hook_call *h = grpc_call_user(call);
	if (h->run) {
		hook_run_cancel(h->run);
		h->run = NULL;
	}
	gitaly_call_closed(&h->base);
}

static const struct grpc_call_ops hook_call_ops = {
	.on_message = hc_message,
	.on_half_close = hc_half_close,
	.on_writable = hc_writable,
	.on_close = hc_close,
};

static struct hook_call *hc_new(struct gitaly *g, struct grpc_call *call, enum hook_method m)
{
	struct hook_call *h = xcalloc(1, sizeof(*h));
	gitaly_call_init(&h->base, g, call, hc_release);
	h->method = m;
	strbuf_init(&h->in, 0);
	strbuf_init(&h->out, 0);
	grpc_call_set_ops(call, &hook_call_ops, h);
	return h;
}

static void start_pre_receive(struct grpc_call *call, void *data)
{
	hc_new(data, call, M_PRE_RECEIVE);
}

static void start_post_receive(struct grpc_call *call, void *data)
{
	hc_new(data, call, M_POST_RECEIVE);
}

static void start_reference_transaction(struct grpc_call *call, void *data)
{
	hc_new(data, call, M_REFTX);
}

/* UpdateHook is server-streaming: one request, then the same machinery. */
static void update_hook(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct hook_call *h = hc_new(data, call, M_UPDATE);
	if (take_first(h, req, len) < 0)
		return;
	start_run(h);
}

void gitaly_register_hook(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_method(s, "/gitaly.HookService/PreReceiveHook", start_pre_receive, g);
	gitaly_add_method(s, "/gitaly.HookService/PostReceiveHook", start_post_receive, g);
	gitaly_add_method(s, "/gitaly.HookService/ReferenceTransactionHook", start_reference_transaction, g);
	gitaly_add_unary(s, "/gitaly.HookService/UpdateHook", update_hook, g);
	gitaly_register_pack_objects_hook(g, s);
}
