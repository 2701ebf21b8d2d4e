/*
 * Casting transactional votes: to the praefect that sent the call, over the
 * backchannel of the connection the call arrived on (docs/technical/transactions.md). Without a
 * transaction every vote passes.
 */
#include "core/vote.h"
#include "core/metrics.h"
#include "backchannel/backchannel.h"
#include "base/util.h"
#include "grpc/metadata.h"
#include "transaction.pb-c.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#define VOTE_TIMEOUT_MS (5 * 60 * 1000)

struct pending_vote {
	uv_timer_t timer;
	vote_done_fn done;
	void *arg;
	enum grpc_code code;
	char msg[160];
	struct strbuf resp;
	int stop;
	struct gitaly *g;
	uint64_t voted_ns;           /* a VoteTransaction sent at this time (0: none), for its delay metric */
};

int vote_present(struct grpc_call *call)
{
	return call && grpc_metadata_value(grpc_call_metadata(call), TXID_METADATA_KEY) != NULL;
}

void gitaly_sha1(const void *data, size_t len, uint8_t out[20])
{
	SHA1(data, len, out);
}

int vote_txid_from_call(struct gitaly *g, struct grpc_call *call, struct txid *out)
{
	const char *v = call ? grpc_metadata_value(grpc_call_metadata(call), TXID_METADATA_KEY) : NULL;

	memset(out, 0, sizeof(*out));
	if (!v)
		return -ENOENT;
	if (txid_decode(v, strlen(v), out) < 0)
		return -EINVAL;
	out->backchannel_id = bc_call_id(g->bc, call);
	return 0;
}

/* --- completion, always from the loop --- */

static void on_vote_closed(uv_handle_t *h)
{
	struct pending_vote *v = h->data;
	strbuf_release(&v->resp);
	free(v);
}

static void on_vote_timer(uv_timer_t *t)
{
	struct pending_vote *v = t->data;
	if (v->voted_ns)
		gitaly_metrics_vote_delay(v->g, (double)(now_ns() - v->voted_ns) / 1e9);
	v->done(v->arg, v->code, v->code == GRPC_OK ? NULL : v->msg);
	uv_close((uv_handle_t *)&v->timer, on_vote_closed);
}

static void complete(struct pending_vote *v, enum grpc_code code, const char *msg)
{
	v->code = code;
	snprintf(v->msg, sizeof(v->msg), "%s", msg ? msg : "");
	uv_timer_start(&v->timer, on_vote_timer, 0, 0);
}

static struct pending_vote *pending(struct gitaly *g, vote_done_fn done, void *arg)
{
	struct pending_vote *v = xcalloc(1, sizeof(*v));
	v->done = done;
	v->arg = arg;
	v->g = g;
	strbuf_init(&v->resp, 0);
	uv_timer_init(g->loop, &v->timer);
	v->timer.data = v;
	return v;
}

static void on_vote_message(struct grpc_client_call *call, const uint8_t *msg, size_t len)
{
	struct pending_vote *v = grpc_client_call_user(call);
	strbuf_reset(&v->resp);
	strbuf_add(&v->resp, msg, len);
}

static void on_vote_close(struct grpc_client_call *call, enum grpc_code code, const char *message,
			  const struct grpc_metadata *trailers)
{
	struct pending_vote *v = grpc_client_call_user(call);
	Gitaly__VoteTransactionResponse *r;

	if (code != GRPC_OK) {
		complete(v, code, message);
		return;
	}
	if (v->stop) {
		complete(v, GRPC_OK, NULL);
		return;
	}
	r = gitaly__vote_transaction_response__unpack(NULL, v->resp.len, (const uint8_t *)v->resp.buf);
	if (!r) {
		complete(v, GRPC_INTERNAL, "cannot decode vote response");
		return;
	}
	switch (r->state) {
	case GITALY__VOTE_TRANSACTION_RESPONSE__TRANSACTION_STATE__COMMIT:
		complete(v, GRPC_OK, NULL);
		break;
	case GITALY__VOTE_TRANSACTION_RESPONSE__TRANSACTION_STATE__ABORT:
		complete(v, GRPC_ABORTED, "transaction was aborted");
		break;
	case GITALY__VOTE_TRANSACTION_RESPONSE__TRANSACTION_STATE__STOP:
		complete(v, GRPC_FAILED_PRECONDITION, "transaction was stopped");
		break;
	default:
		complete(v, GRPC_INTERNAL, "invalid transaction state");
	}
	gitaly__vote_transaction_response__free_unpacked(r, NULL);
}

static const struct grpc_client_ops vote_ops = { .on_message = on_vote_message, .on_close = on_vote_close };

static void send_to_praefect(struct gitaly *g, const struct txid *tx, const char *method,
			     const ProtobufCMessage *req, struct pending_vote *v)
{
	struct grpc_channel *ch = bc_channel(g->bc, tx->backchannel_id);
	struct grpc_client_call *call;
	size_t len;
	uint8_t *buf;
	char msg[64];

	if (!ch) {
		snprintf(msg, sizeof(msg), "no backchannel for peer %llu", (unsigned long long)tx->backchannel_id);
		complete(v, GRPC_UNAVAILABLE, msg);
		return;
	}
	len = protobuf_c_message_get_packed_size(req);
	buf = xmalloc(len ? len : 1);
	protobuf_c_message_pack(req, buf);
	if (grpc_channel_call(ch, method, NULL, VOTE_TIMEOUT_MS, 0, &vote_ops, v, &call) < 0) {
		free(buf);
		complete(v, GRPC_UNAVAILABLE, "cannot reach praefect");
		return;
	}
	grpc_client_call_send(call, buf, len);
	grpc_client_call_close_send(call);
	free(buf);
}

void vote_cast_info(struct gitaly *g, const struct txid *tx, enum vote_phase phase,
		    const uint8_t hash[20], vote_done_fn done, void *arg)
{
	struct pending_vote *v = pending(g, done, arg);
	Gitaly__VoteTransactionRequest req = GITALY__VOTE_TRANSACTION_REQUEST__INIT;
	req.transaction_id = tx->id;
	req.node = (char *)tx->node;
	req.reference_updates_hash.data = (uint8_t *)hash;
	req.reference_updates_hash.len = 20;
	req.phase = (Gitaly__VoteTransactionRequest__Phase)phase;
	v->voted_ns = now_ns();   /* timed whatever the outcome, as upstream */
	send_to_praefect(g, tx, gitaly_out[OUT_VOTE_TRANSACTION], &req.base, v);
}

void vote_stop_info(struct gitaly *g, const struct txid *tx, vote_done_fn done, void *arg)
{
	struct pending_vote *v = pending(g, done, arg);
	Gitaly__StopTransactionRequest req = GITALY__STOP_TRANSACTION_REQUEST__INIT;
	v->stop = 1;
	req.transaction_id = tx->id;
	send_to_praefect(g, tx, gitaly_out[OUT_STOP_TRANSACTION], &req.base, v);
}

void vote_cast(struct gitaly *g, struct grpc_call *call, enum vote_phase phase,
	       const uint8_t hash[20], vote_done_fn done, void *arg)
{
	struct txid tx;
	int rc = vote_txid_from_call(g, call, &tx);
	if (rc == 0) {
		vote_cast_info(g, &tx, phase, hash, done, arg);
		return;
	}
	/* no transaction: the vote passes (still answered from the loop) */
	complete(pending(g, done, arg), rc == -ENOENT ? GRPC_OK : GRPC_INVALID_ARGUMENT,
		 rc == -ENOENT ? NULL : "invalid gitaly-reference-transaction metadata");
}

void vote_push_end(struct gitaly *g, struct grpc_call *call, vote_done_fn done, void *arg)
{
	static const uint8_t zero[20];
	vote_cast(g, call, VOTE_PHASE_COMMITTED, zero, done, arg);
}

void vote_finish_push(struct grpc_call *call, enum grpc_code code, const char *msg)
{
	/* STOP means a primary-only hook failed and already told the user */
	if (code == GRPC_OK || code == GRPC_FAILED_PRECONDITION)
		grpc_call_finish(call, GRPC_OK, NULL, NULL);
	else
		grpc_call_finishf(call, GRPC_ABORTED, "final transactional vote: %s", msg ? msg : "");
}
