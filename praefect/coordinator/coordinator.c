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

/* --- lifetime --- */

static void proxy_free(struct proxy *px)
{
	for (size_t i = 0; i < px->nr_dests; i++) {
		strbuf_release(&px->dests[i].msg);
		grpc_metadata_release(&px->dests[i].trailers);
	}
	free(px->dests);
	strbuf_release(&px->first);
	strbuf_release(&px->pending);
	free(px->relative_path);
	free(px->replica_path);
	free(px->primary);
	strvec_clear(&px->outdated);
	strvec_clear(&px->secondaries);
	strvec_clear(&px->updated);
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
	if (d->primary && d->px->call && !d->px->finished)
		grpc_call_send_headers(d->px->call, md);
}

static void dest_message(struct grpc_client_call *cc, const uint8_t *msg, size_t len)
{
	struct dest *d = grpc_client_call_user(cc);
	struct proxy *px = d->px;
	if (!d->primary || !px->call || px->finished)
		return; /* secondaries' responses are drained and dropped */
	grpc_call_send(px->call, msg, len);
	if (grpc_call_send_full(px->call) && !d->paused) {
		d->paused = 1;
		grpc_client_call_pause_recv(cc);
	}
}

static void dest_writable(struct grpc_client_call *cc)
{
	struct dest *d = grpc_client_call_user(cc);
	struct proxy *px = d->px;
	if (px->client_paused && px->call && !any_dest_full(px)) {
		px->client_paused = 0;
		grpc_call_resume_recv(px->call);
	}
}

static void dest_close(struct grpc_client_call *cc, enum grpc_code code, const char *message,
		       const struct grpc_metadata *trailers)
{
	struct dest *d = grpc_client_call_user(cc);
	struct proxy *px = d->px;

	d->cc = NULL;
	d->closed = 1;
	d->code = code;
	strbuf_addstr(&d->msg, message ? message : "");
	grpc_metadata_copy(&d->trailers, trailers);
	px->open_dests--;
	if (d->primary && code != GRPC_OK && px->kind != ROUTE_MAINTENANCE)
		cancel_dests(px);
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

/* Open the calls to every destination and send each its rewritten first message. */
static int open_dests(struct proxy *px)
{
	const struct grpc_metadata *in = grpc_call_metadata(px->call);
	uint64_t deadline = grpc_call_deadline(px->call), timeout = 0;
	struct strbuf rewritten = STRBUF_INIT;
	struct rpc_repo add;
	int have_add = 0;

	if (deadline) {
		uint64_t now = now_ms();
		timeout = deadline > now ? deadline - now : 1;
	}
	if (px->kind != ROUTE_STORAGE && px->kind != ROUTE_ACCESSOR &&
	    rpc_find_additional(px->m, (const uint8_t *)px->first.buf, px->first.len, &add) == 0)
		have_add = 1;

	for (size_t i = 0; i < px->nr_dests; i++) {
		struct dest *d = &px->dests[i];
		struct grpc_metadata md = GRPC_METADATA_INIT;
		const char *storage = d->node->cfg->storage;
		int rc;

		strbuf_reset(&rewritten);
		if (px->kind == ROUTE_STORAGE) {
			rc = rpc_rewrite_storage(px->m, (const uint8_t *)px->first.buf, px->first.len, storage,
						 strlen(storage), &rewritten);
		} else {
			rc = rpc_rewrite_repo(px->m, RPC_REPO_TARGET, (const uint8_t *)px->first.buf, px->first.len,
					      storage, strlen(storage), px->replica_path, strlen(px->replica_path),
					      &rewritten);
			if (rc == 0 && have_add) {
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
		if (px->kind == ROUTE_ACCESSOR)
			d->node->routed_reads++;
		else
			d->node->routed_writes++;
	}
	strbuf_release(&rewritten);
	return 0;
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

	rc = open_dests(px);
	if (rc < 0) {
		cancel_dests(px);
		proxy_fail(px, GRPC_INTERNAL, "cannot start proxied call: %s", strerror(-rc));
		if (px->open_dests == 0)
			proxy_finalize(px);
		return;
	}
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
	if (px->routing) {
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
	if (px->routed)
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
	strvec_init(&px->outdated);
	strvec_init(&px->secondaries);
	strvec_init(&px->updated);
	grpc_call_set_ops(call, &client_ops, px);
}

void coordinator_register(struct praefect *p)
{
	grpc_server_set_fallback(p->server, proxy_start, p);
}
