/*
 * Rerouting a write whose primary refused it (docs/technical/praefect-routing.md,
 * "A refused primary"). A mutator whose call to the primary ends UNAVAILABLE
 * before any byte of it reached the node (grpc_client_call_unsent(): no
 * stream, or the connection died before a write holding its bytes
 * succeeded), while nothing has reached the client, is routed again from
 * scratch: the node is marked unhealthy at once, the transaction is ended
 * (the secondaries' votes are aborted: nothing commits without the
 * primary's vote), the other destinations are cancelled, and once they have
 * closed the call goes through routing again (election, quorum, write
 * barrier, intent) with the request messages it had, kept in `px->replay`
 * up to REROUTE_BUFFER_MAX bytes.
 */
#include "coordinator/proxy.h"
#include "base/log.h"
#include "transactions/transactions.h"

#include <string.h>

/* Request bytes kept for a reroute beyond the first message; more and the call cannot be rerouted. */
#define REROUTE_BUFFER_MAX (1024 * 1024)

static int reroutable(const struct proxy *px)
{
	return px->kind == ROUTE_MUTATOR && !px->responded && !px->headers_sent && !px->replay_dropped &&
	       px->reroutes < REROUTE_MAX;
}

void reroute_keep(struct proxy *px, const uint8_t *msg, size_t len)
{
	uint32_t n = (uint32_t)len;
	if (px->kind != ROUTE_MUTATOR || px->replay_dropped)
		return;
	if ((!reroutable(px) && !resume_possible(px)) || px->replay.len + 4 + len > REROUTE_BUFFER_MAX) {
		px->replay_dropped = 1;
		strbuf_release(&px->replay);
		return;
	}
	strbuf_add(&px->replay, &n, 4);
	strbuf_add(&px->replay, msg, len);
}

void reroute_responded(struct proxy *px)
{
	if (px->replay.alloc && !resume_possible(px)) {
		px->replay_dropped = 1;
		strbuf_release(&px->replay);
	}
}

int reroute_begin(struct proxy *px, struct dest *d, enum grpc_code code, const char *message)
{
	if (!d->primary || code != GRPC_UNAVAILABLE || !d->unsent || !reroutable(px) || !px->call || px->finished)
		return 0;
	px->reroutes++;
	px->rerouting = 1;
	log_msgf(LOG_WARN, "%s: primary %s refused the call before receiving any of it, routing it again: %s",
		 px->m->method, d->node->cfg->storage, message ? message : grpc_code_name(code));
	if (px->txid) {
		/* undecided votes are aborted: no secondary applies anything without the primary's vote */
		struct tx_outcome o;
		tx_cleanup(px->p->txm, px->txid, &o);
		tx_outcome_release(&o);
		px->txid = 0;
	}
	/* what the client sent goes to the next destinations, in order, with what comes meanwhile */
	strbuf_release(&px->pending);
	px->pending = px->replay;
	strbuf_init(&px->replay, 0);
	px->routed = 0;
	px->routing = 1;
	grpc_call_pause_recv(px->call);
	px->refs++;
	for (size_t i = 0; i < px->nr_dests; i++)
		if (px->dests[i].cc && !px->dests[i].closed)
			grpc_client_call_cancel(px->dests[i].cc);
	node_mark_dead(px->p, d->node, message ? message : "connection refused");
	proxy_unref(px);
	return 1;
}

void reroute_go(struct proxy *px)
{
	px->rerouting = 0;
	px->election_held = 0; /* a new primary may have to be confirmed again */
	proxy_route_again(px);
}
