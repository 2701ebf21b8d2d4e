/* Casting transactional votes; without a transaction every vote passes. */
#include "tx.h"
#include "base/util.h"

#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

struct pending_vote {
	uv_timer_t timer;
	tx_done_fn done;
	void *arg;
	enum grpc_code code;
	const char *msg;
};

int gitaly_tx_present(struct grpc_call *call)
{
	return call && grpc_metadata_value(grpc_call_metadata(call), "gitaly-reference-transaction") != NULL;
}

void gitaly_sha1(const void *data, size_t len, uint8_t out[20])
{
	SHA1(data, len, out);
}

static void on_vote_closed(uv_handle_t *h)
{
	free(h->data);
}

static void on_vote_timer(uv_timer_t *t)
{
	struct pending_vote *v = t->data;
	v->done(v->arg, v->code, v->msg);
	uv_close((uv_handle_t *)&v->timer, on_vote_closed);
}

void gitaly_tx_vote(struct gitaly *g, struct grpc_call *call, enum tx_phase phase,
		    const uint8_t hash[20], tx_done_fn done, void *arg)
{
	struct pending_vote *v = xcalloc(1, sizeof(*v));
	v->done = done;
	v->arg = arg;
	v->code = GRPC_OK;
	if (gitaly_tx_present(call)) {
		/* Votes travel over the praefect backchannel, which this node does not speak yet. */
		v->code = GRPC_UNAVAILABLE;
		v->msg = "transaction voting needs a backchannel connection to praefect (not supported by this node yet)";
	}
	uv_timer_init(g->loop, &v->timer);
	v->timer.data = v;
	uv_timer_start(&v->timer, on_vote_timer, 0, 0);
}
