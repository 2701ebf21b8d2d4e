/*
 * The proxy: every call praefect does not answer itself is classified by the
 * RPC registry, routed over the in-memory repository model, and forwarded as
 * raw messages to the chosen gitaly node(s) with backpressure both ways.
 * Only the first request message is decoded (as far as the registry says) and
 * rewritten per destination; everything else passes through untouched.
 * Mutators end with a finalizer that records generations and queues
 * replication jobs before the client sees the status.
 */
#include "coordinator/proxy.h"
#include "base/util.h"
#include "base/log.h"
#include "transactions/transactions.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void forward_message(struct proxy *px, const uint8_t *msg, size_t len);
static int retry_read(struct proxy *px, struct dest *d, enum grpc_code code, const char *message);

/* --- lifetime --- */

static void linger_end(struct proxy *px);

static void proxy_free(struct proxy *px)
{
	linger_end(px);
	scproxy_release(px);
	for (size_t i = 0; i < px->nr_dests; i++) {
		strbuf_release(&px->dests[i].msg);
		grpc_metadata_release(&px->dests[i].trailers);
		grpc_metadata_release(&px->dests[i].headers);
	}
	free(px->dests);
	strbuf_release(&px->first);
	strbuf_release(&px->pending);
	strbuf_release(&px->replay);
	resume_release(px);
	free(px->relative_path);
	free(px->replica_path);
	free(px->primary);
	strvec_clear(&px->outdated);
	strvec_clear(&px->secondaries);
	strvec_clear(&px->updated);
	strvec_clear(&px->tried);
	if (px->reserved_key) {
		hashmap_remove(&px->p->reserved_paths, px->reserved_key, strlen(px->reserved_key));
		free(px->reserved_key);
	}
	free(px);
}

void proxy_unref(struct proxy *px)
{
	if (--px->refs == 0)
		proxy_free(px);
}

/* End the client's call (once). */
void proxy_finish(struct proxy *px, enum grpc_code code, const char *msg,
			 const struct grpc_metadata *trailers)
{
	if (px->finished)
		return;
	px->finished = 1;
	if (px->call)
		grpc_call_finish(px->call, code, msg, trailers);
}

void proxy_fail(struct proxy *px, enum grpc_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void proxy_fail(struct proxy *px, enum grpc_code code, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	proxy_finish(px, code, sb.buf, NULL);
	strbuf_release(&sb);
}

static void cancel_dests(struct proxy *px)
{
	for (size_t i = 0; i < px->nr_dests; i++)
		if (px->dests[i].cc && !px->dests[i].closed)
			grpc_client_call_cancel(px->dests[i].cc);
}

/*
 * A stalled secondary must not hold up the answer. Once the primary of a
 * transactional mutator has finished OK, its last vote was committed, so a
 * quorum applied the change without whoever is still running. Those still
 * running on a node that is unhealthy (silent, see nodes/nodes.c) are
 * cancelled then; the others are given the time they need, unless their node
 * turns unhealthy meanwhile (coordinator_node_unhealthy()), and the proxy
 * waits on the list `p->lingering` until then. A cancelled secondary is
 * outdated by the finalizer and repaired by replication: nothing is lost.
 */
static void linger_end(struct proxy *px)
{
	struct praefect *p = px->p;
	if (!px->lingering)
		return;
	px->lingering = 0;
	if (px->linger_prev)
		px->linger_prev->linger_next = px->linger_next;
	else
		p->lingering = px->linger_next;
	if (px->linger_next)
		px->linger_next->linger_prev = px->linger_prev;
	px->linger_prev = px->linger_next = NULL;
}

/* Cancel the open secondaries on `only` (NULL: on any unhealthy node). */
static void cancel_stalled_secondaries(struct proxy *px, const struct node *only)
{
	px->refs++;
	for (size_t i = 0; i < px->nr_dests; i++) {
		struct dest *d = &px->dests[i];
		if (d->primary || !d->cc || d->closed || (only ? d->node != only : d->node->healthy))
			continue;
		log_msgf(LOG_WARN, "secondary %s is not answering and %s committed without it: cancelling it",
			 d->node->cfg->storage, px->m->method);
		grpc_client_call_cancel(d->cc);
	}
	proxy_unref(px);
}

static void linger_start(struct proxy *px)
{
	struct praefect *p = px->p;
	if (px->lingering || !px->open_dests)
		return;
	px->lingering = 1;
	px->linger_prev = NULL;
	px->linger_next = p->lingering;
	if (p->lingering)
		p->lingering->linger_prev = px;
	p->lingering = px;
}

void coordinator_node_unhealthy(struct praefect *p, struct node *n)
{
	struct proxy *px = p->lingering, *next;
	for (; px; px = next) {
		next = px->linger_next;
		cancel_stalled_secondaries(px, n);
	}
}

/* --- destination (client calls to gitaly) --- */

static int any_dest_full(struct proxy *px)
{
	for (size_t i = 0; i < px->nr_dests; i++)
		if (px->dests[i].cc && !px->dests[i].closed && grpc_client_call_send_full(px->dests[i].cc))
			return 1;
	return 0;
}

static void dest_headers(struct grpc_client_call *cc, const struct grpc_metadata *md)
{
	struct dest *d = grpc_client_call_user(cc);
	if (!d->primary || !d->px->call || d->px->finished)
		return;
	if (d->px->kind == ROUTE_ACCESSOR) {
		/* nothing reaches the client before a message: the read can still move to another replica */
		grpc_metadata_copy(&d->headers, md);
		d->headers_held = 1;
		return;
	}
	if (d->px->headers_sent)
		return; /* a resumed call (resume.c): the client has the first primary's */
	d->px->headers_sent = 1;
	reroute_responded(d->px);
	grpc_call_send_headers(d->px->call, md);
}

static void send_held_headers(struct dest *d)
{
	if (!d->headers_held)
		return;
	d->headers_held = 0;
	if (d->px->call && !d->px->finished)
		grpc_call_send_headers(d->px->call, &d->headers);
}

static void dest_message(struct grpc_client_call *cc, const uint8_t *msg, size_t len)
{
	struct dest *d = grpc_client_call_user(cc);
	struct proxy *px = d->px;
	if (!d->primary || !px->call || px->finished)
		return; /* secondaries' responses are drained and dropped */
	if (resume_gate(px, msg, len))
		return;
	send_held_headers(d);
	px->responded = 1;
	reroute_responded(px);
	if (px->m == px->p->calls.get_object_pool) {
		struct strbuf out = STRBUF_INIT, err = STRBUF_INIT;
		if (proxy_rewrite_pool_response(px, msg, len, &out, &err) < 0)
			proxy_fail(px, GRPC_INTERNAL, "%s", err.buf);
		else
			grpc_call_send(px->call, out.buf, out.len);
		strbuf_release(&out);
		strbuf_release(&err);
	} else {
		resume_sent(px, msg, len);
		grpc_call_send(px->call, msg, len);
	}
	if (!px->call || px->finished)
		return;
	if (grpc_call_send_full(px->call) && !d->paused) {
		d->paused = 1;
		grpc_client_call_pause_recv(cc);
	}
}

static void dest_writable(struct grpc_client_call *cc)
{
	struct dest *d = grpc_client_call_user(cc);
	struct proxy *px = d->px;
	if (px->client_paused && px->call && !px->gating && !any_dest_full(px)) {
		px->client_paused = 0;
		grpc_call_resume_recv(px->call);
	}
}

static void dest_close(struct grpc_client_call *cc, enum grpc_code code, const char *message,
		       const struct grpc_metadata *trailers)
{
	struct dest *d = grpc_client_call_user(cc);

	d->cc = NULL;
	d->unsent = grpc_client_call_unsent(cc);
	d->conn_lost = grpc_client_call_conn_lost(cc);
	if (scproxy_hold_close(d->px, d, code, message, trailers))
		return; /* the sidechannel is still copying: the client gets the status after its last byte */
	proxy_dest_close(d, code, message, trailers);
}

void proxy_dest_close(struct dest *d, enum grpc_code code, const char *message,
		      const struct grpc_metadata *trailers)
{
	struct proxy *px = d->px;

	d->closed = 1;
	px->open_dests--;
	if (px->kind == ROUTE_ACCESSOR && code != GRPC_OK) {
		struct repo *r = repo_by_id(px->p, px->repo_id);
		if (r && suspect_read_error(code, message))
			suspect_mark(px->p, r, d->node, message);
		if (retry_read(px, d, code, message)) {
			proxy_unref(px);
			return;
		}
	}
	if (px->kind == ROUTE_ACCESSOR)
		send_held_headers(d);
	d->code = code;
	strbuf_addstr(&d->msg, message ? message : "");
	grpc_metadata_copy(&d->trailers, trailers);
	if (px->rerouting || reroute_begin(px, d, code, message) || resume_begin(px, d, code, message)) {
		/* nothing reached the primary: the call is routed again once every destination closed */
		if (px->open_dests == 0)
			reroute_go(px);
		proxy_unref(px);
		return;
	}
	if (d->primary && code != GRPC_OK && px->kind != ROUTE_MAINTENANCE)
		cancel_dests(px);
	if (d->primary && code == GRPC_OK && px->txid && px->open_dests) {
		px->refs++;
		cancel_stalled_secondaries(px, NULL);
		linger_start(px);
		proxy_unref(px);
	}
	if (!d->primary && code != GRPC_OK && px->txid) {
		/* a failed secondary no longer counts; the quorum of the others decides */
		log_msgf(LOG_WARN, "secondary %s failed during %s: %s", d->node->cfg->storage, px->m->method,
			 message ? message : grpc_code_name(code));
		tx_cancel_voter(px->p->txm, px->txid, d->node->cfg->storage);
	}
	if (px->open_dests == 0)
		proxy_finalize(px);
	proxy_unref(px);
}

static const struct grpc_client_ops dest_ops = {
	.on_headers = dest_headers,
	.on_message = dest_message,
	.on_writable = dest_writable,
	.on_close = dest_close,
};

/* Open the call to `d` and send it its rewritten first message. */
static int open_dest(struct proxy *px, struct dest *d)
{
	const struct grpc_metadata *in = grpc_call_metadata(px->call);
	uint64_t deadline = grpc_call_deadline(px->call), timeout = 0;
	struct strbuf rewritten = STRBUF_INIT;
	struct grpc_metadata md = GRPC_METADATA_INIT;
	const char *storage = d->node->cfg->storage;
	struct rpc_repo add;
	int rc;

	if (deadline) {
		uint64_t now = now_ms();
		timeout = deadline > now ? deadline - now : 1;
	}
	if (px->kind == ROUTE_STORAGE) {
		rc = rpc_rewrite_storage(px->m, (const uint8_t *)px->first.buf, px->first.len, storage,
					 strlen(storage), &rewritten);
	} else {
		rc = rpc_rewrite_repo(px->m, RPC_REPO_TARGET, (const uint8_t *)px->first.buf, px->first.len,
				      storage, strlen(storage), px->replica_path, strlen(px->replica_path),
				      &rewritten);
		if (rc == 0 && px->kind != ROUTE_ACCESSOR &&
		    rpc_find_additional(px->m, (const uint8_t *)px->first.buf, px->first.len, &add) == 0) {
			/* the additional repository lives on the same node, at its own replica path */
			struct repo *ar = repo_by_path(px->p, px->vs->cfg->name, strlen(px->vs->cfg->name),
						       add.relative_path, add.relative_path_len);
			struct strbuf again = STRBUF_INIT;
			rc = rpc_rewrite_repo(px->m, RPC_REPO_ADDITIONAL, (const uint8_t *)rewritten.buf,
					      rewritten.len, storage, strlen(storage),
					      ar ? ar->replica_path : add.relative_path,
					      ar ? strlen(ar->replica_path) : add.relative_path_len, &again);
			strbuf_release(&rewritten);
			rewritten = again;
		}
	}
	if (rc < 0) {
		strbuf_release(&rewritten);
		return rc;
	}
	node_call_metadata(d->node, in, &md);
	scproxy_metadata(px, &md);
	if (px->txid) {
		struct strbuf tx = STRBUF_INIT;
		tx_metadata_value(px->txid, storage, d->primary, &tx);
		grpc_metadata_remove(&md, "gitaly-reference-transaction");
		grpc_metadata_addstr(&md, "gitaly-reference-transaction", tx.buf);
		strbuf_release(&tx);
	}
	rc = grpc_channel_call(d->node->ch, px->m->name, &md, timeout, 0, &dest_ops, d, &d->cc);
	grpc_metadata_release(&md);
	if (rc < 0) {
		strbuf_release(&rewritten);
		return rc;
	}
	px->open_dests++;
	px->refs++;
	grpc_client_call_send(d->cc, rewritten.buf, rewritten.len);
	strbuf_release(&rewritten);
	if (px->kind == ROUTE_ACCESSOR)
		d->node->routed_reads++;
	else
		d->node->routed_writes++;
	return 0;
}

/* Open the calls to every destination and send each its rewritten first message. */
static int open_dests(struct proxy *px)
{
	for (size_t i = 0; i < px->nr_dests; i++) {
		int rc = open_dest(px, &px->dests[i]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/*
 * A read failed on its replica before any response message reached the
 * client, and the client sent nothing after the first message (still in
 * px->first): send it to another up-to-date replica instead. Returns 1 when
 * `d` is open again on the new node.
 */
static int retry_read(struct proxy *px, struct dest *d, enum grpc_code code, const char *message)
{
	struct node *failed = d->node, *n;
	if (px->kind != ROUTE_ACCESSOR || px->responded || px->forwarded || !px->call || px->finished)
		return 0;
	if (code != GRPC_UNAVAILABLE && !suspect_read_error(code, message))
		return 0;
	if (!(n = route_accessor_retry(px)))
		return 0;
	log_msgf(LOG_WARN, "%s failed on %s, retrying on %s: %s", px->m->method, failed->cfg->storage,
		 n->cfg->storage, message ? message : grpc_code_name(code));
	d->node = n;
	d->closed = 0;
	d->paused = 0;
	d->headers_held = 0;
	grpc_metadata_release(&d->headers);
	if (open_dest(px, d) < 0) {
		d->node = failed;
		d->closed = 1;
		return 0;
	}
	if (px->half_closed)
		grpc_client_call_close_send(d->cc);
	return 1;
}

void proxy_add_dest(struct proxy *px, struct node *n, int primary)
{
	struct dest *d;
	px->dests = xrealloc(px->dests, (px->nr_dests + 1) * sizeof(*px->dests));
	d = &px->dests[px->nr_dests++];
	memset(d, 0, sizeof(*d));
	d->px = px;
	d->node = n;
	d->primary = primary;
	strbuf_init(&d->msg, 0);
}

/* Routing is decided: open the destinations and replay what the client sent meanwhile. */
void proxy_forward(struct proxy *px)
{
	struct strbuf nodes = STRBUF_INIT;
	int rc;

	if (proxy_record_intent(px))
		return;
	px->routing = 0;
	px->routed = 1;
	if (!px->call) {
		proxy_finalize(px);
		return;
	}
	for (size_t i = 0; i < px->nr_dests; i++) {
		if (i)
			strbuf_addch(&nodes, ',');
		strbuf_addstr(&nodes, px->dests[i].node->cfg->storage);
	}
	grpc_call_set_tag(px->call, "praefect.nodes", nodes.buf);
	strbuf_release(&nodes);

	if (scproxy_prepare(px) < 0) {
		if (px->open_dests == 0)
			proxy_finalize(px);
		return;
	}
	rc = open_dests(px);
	if (rc < 0) {
		cancel_dests(px);
		proxy_fail(px, GRPC_INTERNAL, "cannot start proxied call: %s", strerror(-rc));
		if (px->open_dests == 0)
			proxy_finalize(px);
		return;
	}
	if (px->gating)
		return; /* resume.c: the client's messages wait until the new primary repeated what it has */
	proxy_send_pending(px);
}

void proxy_send_pending(struct proxy *px)
{
	/* messages that arrived while routing (stored with a 4-byte length prefix) */
	for (size_t off = 0; off < px->pending.len;) {
		uint32_t n;
		memcpy(&n, px->pending.buf + off, 4);
		forward_message(px, (const uint8_t *)px->pending.buf + off + 4, n);
		off += 4 + n;
	}
	strbuf_release(&px->pending);
	if (px->half_closed)
		for (size_t i = 0; i < px->nr_dests; i++)
			if (px->dests[i].cc)
				grpc_client_call_close_send(px->dests[i].cc);
	grpc_call_resume_recv(px->call);
}

/* --- the client side --- */

static void forward_message(struct proxy *px, const uint8_t *msg, size_t len)
{
	px->forwarded++;
	reroute_keep(px, msg, len);
	for (size_t i = 0; i < px->nr_dests; i++)
		if (px->dests[i].cc && !px->dests[i].closed)
			grpc_client_call_send(px->dests[i].cc, msg, len);
	if (px->call && !px->client_paused && any_dest_full(px)) {
		px->client_paused = 1;
		grpc_call_pause_recv(px->call);
	}
}

static void client_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct proxy *px = grpc_call_user(call);
	if (px->finished)
		return;
	if (!px->routed && !px->routing) {
		strbuf_add(&px->first, msg, len);
		proxy_route(px);
		return;
	}
	if (px->routing || px->gating) {
		/* cannot happen while paused, but keep the bytes if it does */
		uint32_t n = (uint32_t)len;
		strbuf_add(&px->pending, &n, 4);
		strbuf_add(&px->pending, msg, len);
		return;
	}
	forward_message(px, msg, len);
}

static void client_half_close(struct grpc_call *call)
{
	struct proxy *px = grpc_call_user(call);
	px->half_closed = 1;
	if (px->finished)
		return;
	if (!px->routed && !px->routing) {
		proxy_fail(px, GRPC_INVALID_ARGUMENT, "repository not set");
		return;
	}
	if (px->routed && !px->gating)
		for (size_t i = 0; i < px->nr_dests; i++)
			if (px->dests[i].cc)
				grpc_client_call_close_send(px->dests[i].cc);
}

static void client_writable(struct grpc_call *call)
{
	struct proxy *px = grpc_call_user(call);
	for (size_t i = 0; i < px->nr_dests; i++) {
		struct dest *d = &px->dests[i];
		if (d->paused && d->cc) {
			d->paused = 0;
			grpc_client_call_resume_recv(d->cc);
		}
	}
}

static void client_close(struct grpc_call *call, enum grpc_code code)
{
	struct proxy *px = grpc_call_user(call);
	px->call = NULL;
	scproxy_client_gone(px);
	if (!px->finished)
		cancel_dests(px); /* the client went away: stop the nodes' work */
	proxy_unref(px);
}

static const struct grpc_call_ops client_ops = {
	.on_message = client_message,
	.on_half_close = client_half_close,
	.on_writable = client_writable,
	.on_close = client_close,
};

static void proxy_start(struct grpc_call *call, void *data)
{
	struct praefect *p = data;
	const char *path = grpc_call_method(call);
	const struct rpc_method *m = rpc_lookup(path, strlen(path));
	struct proxy *px;

	if (!m || m->intercepted) {
		grpc_call_finishf(call, GRPC_UNIMPLEMENTED, "unknown method %s", path);
		return;
	}
	px = xcalloc(1, sizeof(*px));
	px->p = p;
	px->call = call;
	px->m = m;
	px->refs = 1; /* the client call */
	px->start_ms = now_ms();
	strbuf_init(&px->first, 0);
	strbuf_init(&px->pending, 0);
	strbuf_init(&px->replay, 0);
	strbuf_init(&px->resume_sent, 0);
	strbuf_init(&px->resume_error, 0);
	strbuf_init(&px->gate_buf, 0);
	strvec_init(&px->outdated);
	strvec_init(&px->secondaries);
	strvec_init(&px->updated);
	strvec_init(&px->tried);
	grpc_call_set_ops(call, &client_ops, px);
}

void coordinator_register(struct praefect *p)
{
	grpc_server_set_fallback(p->server, proxy_start, p);
}
