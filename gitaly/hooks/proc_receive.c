/*
 * HookService/ProcReceiveHook: git's proc-receive hook, relayed by
 * gitaly-hooks as a bidirectional stream (docs/technical/hooks.md,
 * "proc-receive"). The first request carries the environment (the hooks
 * payload must name a storage transaction); the following ones carry the
 * hook's stdin, read incrementally: the version is answered on stdout as
 * soon as it is negotiated, then the commands are read up to their flush.
 * The parsed handler then goes to the RPC waiting for that transaction;
 * as in upstream 16.8 nothing ever registers as a waiter (no storage
 * transactions), so a well-formed exchange ends with exit status 1 and
 * "transmitting handler: no waiters for id: N". Protocol errors end the
 * call INTERNAL with upstream's "creating handler: ..." messages.
 */
#include "core/gitaly.h"
#include "hooks/hooks.h"
#include "hooks/proc_receive_parse.h"
#include "base/pb.h"
#include "base/util.h"
#include "hook.pb-c.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

struct prc_call {
	struct gitaly_call base;
	Gitaly__ProcReceiveHookRequest *first;
	uint64_t txid;
	int answered;                  /* the version reply went out */
	struct prc_parser parser;
	struct strbuf out;
};

static void prc_call_release(struct gitaly_call *c)
{
	struct prc_call *h = container_of(c, struct prc_call, base);
	if (h->first)
		protobuf_c_message_free_unpacked(&h->first->base, NULL);
	prc_release(&h->parser);
	strbuf_release(&h->out);
	free(h);
}

static void send_stdout(struct prc_call *h, const char *buf, size_t len)
{
	strbuf_reset(&h->out);
	pb_put_bytes(&h->out, 1, buf, len);
	grpc_call_send(h->base.call, h->out.buf, h->out.len);
}

static void finish_exit(struct prc_call *h, int code, const char *stderr_text)
{
	struct strbuf st = STRBUF_INIT;
	strbuf_reset(&h->out);
	pb_put_bytes(&h->out, 2, stderr_text, strlen(stderr_text));
	pb_put_uint(&st, 1, (uint64_t)(int64_t)code);
	pb_put_bytes(&h->out, 3, st.buf, st.len);
	strbuf_release(&st);
	grpc_call_send(h->base.call, h->out.buf, h->out.len);
	gitaly_call_finish(&h->base, GRPC_OK, NULL, NULL);
}

static void advance(struct prc_call *h, const void *data, size_t len, int eof)
{
	struct strbuf reply = STRBUF_INIT;
	enum prc_state st = prc_feed(&h->parser, data, len, eof);
	if (st == PRC_COMMANDS && !h->answered) {
		h->answered = 1;
		/* just negotiated: answer the version, then read what is buffered */
		prc_version_reply(&h->parser, &reply);
		send_stdout(h, reply.buf, reply.len);
		strbuf_release(&reply);
		st = prc_feed(&h->parser, NULL, 0, eof);
	}
	if (st == PRC_FAILED) {
		gitaly_call_finishf(&h->base, GRPC_INTERNAL, "creating handler: %s", h->parser.err.buf);
	} else if (st == PRC_DONE) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "transmitting handler: no waiters for id: %" PRIu64, h->txid);
		finish_exit(h, 1, m.buf);
		strbuf_release(&m);
	}
}

static void take_first(struct prc_call *h, const uint8_t *msg, size_t len)
{
	struct hook_payload pl;
	struct strbuf err = STRBUF_INIT;
	h->first = msg_unpack(h->base.call, &gitaly__proc_receive_hook_request__descriptor, msg, len);
	if (!h->first) {
		h->base.finished = 1;   /* msg_unpack() answered */
		return;
	}
	if (hook_payload_from_env((const char *const *)h->first->environment_variables,
				  h->first->n_environment_variables, &pl, &err) < 0) {
		gitaly_call_finishf(&h->base, GRPC_INTERNAL, "creating handler: extracting hooks payload: %s", err.buf);
		strbuf_release(&err);
		return;
	}
	h->txid = pl.transaction_id;
	hook_payload_release(&pl);
	strbuf_release(&err);
	if (!h->txid)
		gitaly_call_finish(&h->base, GRPC_INTERNAL, "creating handler: no transaction found in payload", NULL);
}

static void prc_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct prc_call *h = grpc_call_user(call);
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
	rc = pb_find_bytes(msg, len, 3, &data, &dlen);
	if (rc < 0) {
		gitaly_call_finish(&h->base, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		return;
	}
	if (rc == 1 && dlen)
		advance(h, data, dlen, 0);
}

static void prc_half_close(struct grpc_call *call)
{
	struct prc_call *h = grpc_call_user(call);
	if (h->base.finished)
		return;
	if (!h->first) {
		gitaly_call_finish(&h->base, GRPC_INTERNAL, "receiving first request: EOF", NULL);
		return;
	}
	advance(h, NULL, 0, 1);
}

static void prc_close(struct grpc_call *call, enum grpc_code code)
{
	struct prc_call *h = grpc_call_user(call);
	(void)code;
	gitaly_call_closed(&h->base);
}

static const struct grpc_call_ops prc_ops = {
	.on_message = prc_message,
	.on_half_close = prc_half_close,
	.on_close = prc_close,
};

static void start_proc_receive(struct grpc_call *call, void *data)
{
	struct prc_call *h = xcalloc(1, sizeof(*h));
	gitaly_call_init(&h->base, data, call, prc_call_release);
	prc_init(&h->parser);
	strbuf_init(&h->out, 0);
	grpc_call_set_ops(call, &prc_ops, h);
}

void gitaly_register_proc_receive(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_method(s, "/gitaly.HookService/ProcReceiveHook", start_proc_receive, g);
}
