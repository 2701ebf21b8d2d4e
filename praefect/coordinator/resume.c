/*
 * A push whose primary died before anything was applied is resumed on the
 * next primary (docs/technical/transactions.md, "A primary killed
 * mid-push"). reroute.c moves a write that reached no node; this moves
 * SSHReceivePack and PostReceivePack calls that already ran on the primary,
 * when the connection to the primary died (not a status it sent), as long as
 *
 *  - no vote other than a hook synchronisation was committed
 *    (tx_applied_nothing()): no node moved a ref, wrote a file, or ran its
 *    post-receive hook, so the call is an ordinary push not yet made;
 *  - every request message after the first is still kept (reroute.c's
 *    buffer, at most 1 MiB);
 *  - what reached the client can be produced again: for SSHReceivePack only
 *    stdout, and those bytes are pkt-lines whose first flush-pkt ends them
 *    (the reference advertisement, at most RESUME_SENT_MAX bytes); for
 *    PostReceivePack nothing at all.
 *
 * The resumed call gets the first message at once, then a gate holds the
 * client's other messages until the new primary's whole advertisement is in
 * (it ends with a flush-pkt, then the node waits). It is swallowed: the
 * client has one. It must be byte-identical to the client's, or differ in
 * refs only (gate_check() says why that is sound). Otherwise nothing but the
 * first message reached the new nodes: the call fails with the error the
 * dead primary caused, as it did before.
 */
#include "coordinator/proxy.h"
#include "coordinator/advert.h"
#include "base/log.h"
#include "transactions/transactions.h"
#include "ssh.pb-c.h"

#include <string.h>

/* Bytes of the primary's stdout kept to match against the next primary's. */
#define RESUME_SENT_MAX (1024 * 1024)

static int is_ssh(const struct proxy *px)
{
	return px->m == px->p->calls.ssh_receive_pack;
}

int resume_possible(const struct proxy *px)
{
	return (is_ssh(px) || px->m == px->p->calls.post_receive_pack) && !px->resume_off &&
	       !px->replay_dropped && px->reroutes < REROUTE_MAX;
}

static void resume_disable(struct proxy *px)
{
	px->resume_off = 1;
	strbuf_release(&px->resume_sent);
}

void resume_sent(struct proxy *px, const uint8_t *msg, size_t len)
{
	Gitaly__SSHReceivePackResponse *r;
	if (px->resume_off)
		return;
	if (!is_ssh(px)) {
		resume_disable(px);
		return;
	}
	r = gitaly__sshreceive_pack_response__unpack(NULL, len, msg);
	if (!r || r->stderr.len || r->exit_status || px->resume_sent.len + r->stdout.len > RESUME_SENT_MAX)
		resume_disable(px);
	else
		strbuf_add(&px->resume_sent, r->stdout.data, r->stdout.len);
	if (r)
		gitaly__sshreceive_pack_response__free_unpacked(r, NULL);
}

int resume_begin(struct proxy *px, struct dest *d, enum grpc_code code, const char *message)
{
	if (!d->primary || code != GRPC_UNAVAILABLE || !d->conn_lost || !px->txid || !resume_possible(px) ||
	    !px->call || px->finished || !advert_complete(px->resume_sent.buf, px->resume_sent.len) ||
	    !tx_applied_nothing(px->p->txm, px->txid))
		return 0;
	px->reroutes++;
	px->rerouting = 1;
	log_msgf(LOG_WARN, "%s: primary %s failed before any node applied anything, resuming the call on the "
		 "next primary (%zu bytes already sent to match): %s", px->m->method, d->node->cfg->storage,
		 px->resume_sent.len, message ? message : grpc_code_name(code));
	strbuf_reset(&px->resume_error);
	strbuf_addstr(&px->resume_error, message ? message : grpc_code_name(code));
	{
		/* undecided votes are aborted: nothing commits without the primary's vote */
		struct tx_outcome o;
		tx_cleanup(px->p->txm, px->txid, &o);
		tx_outcome_release(&o);
		px->txid = 0;
	}
	if (!px->gating) {
		/* the messages the nodes had, in order, then whatever comes meanwhile */
		strbuf_release(&px->pending);
		px->pending = px->replay;
		strbuf_init(&px->replay, 0);
	} /* else the gate never opened: px->pending still holds them all */
	px->gating = px->resume_sent.len > 0;
	strbuf_reset(&px->gate_buf);
	px->routed = 0;
	px->routing = 1;
	grpc_call_pause_recv(px->call);
	px->refs++;
	for (size_t i = 0; i < px->nr_dests; i++)
		if (px->dests[i].cc && !px->dests[i].closed)
			grpc_client_call_cancel(px->dests[i].cc);
	node_mark_dead(px->p, d->node, message ? message : "connection lost");
	proxy_unref(px);
	return 1;
}

static void gate_fail(struct proxy *px, const char *why)
{
	log_msgf(LOG_WARN, "%s: not resumed on the next primary: %s", px->m->method, why);
	px->gating = 0;
	strbuf_release(&px->gate_buf);
	for (size_t i = 0; i < px->nr_dests; i++)
		if (px->dests[i].cc && !px->dests[i].closed)
			grpc_client_call_cancel(px->dests[i].cc);
	proxy_fail(px, GRPC_UNAVAILABLE, "%s", px->resume_error.buf);
}

/*
 * The whole advertisement of the next primary is in: resume if it is the
 * client's, or if only refs differ (a concurrent push moved one) with the
 * same capabilities. The client's commands then meet a server state that
 * moved on, exactly as when another push lands between a client's
 * advertisement and its commands on one server: git on the new primary
 * checks each command's old object id under the ref's lock and index-pack
 * checks the pack's bases exist, so a command made stale is refused by git,
 * never applied wrongly. The capabilities must match: the client chose its
 * protocol (report-status, side-band, atomic, push options, object format)
 * from them.
 */
static void gate_check(struct proxy *px)
{
	const char *a, *b;
	size_t alen, blen;
	if (px->gate_buf.len == px->resume_sent.len && !memcmp(px->gate_buf.buf, px->resume_sent.buf, px->gate_buf.len)) {
		log_msgf(LOG_INFO, "%s: the next primary's advertisement is the one the client has: resuming", px->m->method);
	} else if (advert_capabilities(px->gate_buf.buf, px->gate_buf.len, &a, &alen) == 0 &&
		   advert_capabilities(px->resume_sent.buf, px->resume_sent.len, &b, &blen) == 0 &&
		   alen == blen && !memcmp(a, b, alen)) {
		log_msgf(LOG_INFO, "%s: the next primary advertises other refs with the same capabilities: resuming "
			 "(git checks every command against its refs)", px->m->method);
	} else {
		gate_fail(px, "its capabilities differ from the ones the client has");
		return;
	}
	px->gating = 0;
	strbuf_release(&px->gate_buf);
	proxy_send_pending(px);
}

int resume_gate(struct proxy *px, const uint8_t *msg, size_t len)
{
	Gitaly__SSHReceivePackResponse *r;
	if (!px->gating)
		return 0;
	r = gitaly__sshreceive_pack_response__unpack(NULL, len, msg);
	if (!r || r->stderr.len || r->exit_status || px->gate_buf.len + r->stdout.len > RESUME_SENT_MAX) {
		if (r)
			gitaly__sshreceive_pack_response__free_unpacked(r, NULL);
		gate_fail(px, "it answered something other than a reference advertisement");
		return 1;
	}
	strbuf_add(&px->gate_buf, r->stdout.data, r->stdout.len);
	gitaly__sshreceive_pack_response__free_unpacked(r, NULL);
	/* the node waits for the client's commands after its flush-pkt: this is all of it */
	if (advert_complete(px->gate_buf.buf, px->gate_buf.len))
		gate_check(px);
	return 1;
}

void resume_release(struct proxy *px)
{
	strbuf_release(&px->resume_sent);
	strbuf_release(&px->resume_error);
	strbuf_release(&px->gate_buf);
}
