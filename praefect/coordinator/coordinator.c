/*
 * The proxy: every call praefect does not answer itself is classified by the
 * RPC registry, routed over the in-memory repository model, and forwarded as
 * raw messages to the chosen gitaly node(s) with backpressure both ways.
 * Only the first request message is decoded (as far as the registry says) and
 * rewritten per destination; everything else passes through untouched.
 * Mutators end with a finalizer that records generations and queues
 * replication jobs before the client sees the status.
 */
#include "praefect.h"
#include "base/util.h"
#include "base/log.h"
#include "base/strvec.h"
#include "base/pb.h"
#include "rpc/registry.h"
#include "transactions/transactions.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum route_kind { ROUTE_ACCESSOR, ROUTE_MUTATOR, ROUTE_CREATE, ROUTE_MAINTENANCE, ROUTE_STORAGE };

struct proxy;

struct dest {
	struct proxy *px;
	struct node *node;
	struct grpc_client_call *cc;     /* NULL once closed */
	int primary;
	int paused;                      /* we paused its responses: the client is slow */
	int closed;
	enum grpc_code code;
	struct strbuf msg;
	struct grpc_metadata trailers;
};

struct proxy {
	struct praefect *p;
	struct grpc_call *call;          /* NULL once the client side closed */
	const struct rpc_method *m;
	int refs;
	int routed, routing, half_closed, finished;
	int client_paused;
	struct strbuf first;             /* the first request message, until routed */
	struct strbuf pending;           /* framed-free queue of messages received while routing */
	size_t pending_msgs;

	enum route_kind kind;
	struct vstorage *vs;
	int64_t repo_id;
	char *relative_path;
	char *replica_path;
	char *primary;
	struct strvec outdated;          /* assigned storages that do not get the call: replication targets */
	struct strvec secondaries;       /* voters besides the primary (transactional mutators) */
	struct strvec updated;           /* secondaries that committed like the primary (finalizer) */
	uint64_t txid;                   /* 0: not transactional */
	int store_assignments;
	int upsert;                      /* ReplicateRepository: create, or update when it exists */
	char *reserved_key;

	struct dest *dests;
	size_t nr_dests, open_dests;
	uint64_t start_ms;
};

static void proxy_unref(struct proxy *px);
static void proxy_finalize(struct proxy *px);
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

static void proxy_unref(struct proxy *px)
{
	if (--px->refs == 0)
		proxy_free(px);
}

/* End the client's call (once). */
static void proxy_finish(struct proxy *px, enum grpc_code code, const char *msg,
			 const struct grpc_metadata *trailers)
{
	if (px->finished)
		return;
	px->finished = 1;
	if (px->call)
		grpc_call_finish(px->call, code, msg, trailers);
}

static void proxy_fail(struct proxy *px, enum grpc_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void proxy_fail(struct proxy *px, enum grpc_code code, const char *fmt, ...)
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

static void add_dest(struct proxy *px, struct node *n, int primary)
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
static void start_forwarding(struct proxy *px)
{
	struct strbuf nodes = STRBUF_INIT;
	int rc;

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

/* --- routing (spec praefect-core §2) --- */

static struct node *random_node(struct node **cands, size_t n)
{
	return n ? cands[(size_t)rand() % n] : NULL;
}

static int vs_healthy_count(struct vstorage *vs)
{
	int n = 0;
	for (size_t i = 0; i < vs->nr_nodes; i++)
		n += vs->nodes[i].healthy;
	return n;
}

/*
 * The primary for a request that needs one: the stored primary while it is
 * healthy, assigned and up to date, else a random valid one (elected lazily,
 * as upstream's per-repository elector). NULL: none is valid.
 */
static void on_primary_stored(void *arg, int status, const char *msg)
{
	if (status < 0)
		log_msgf(LOG_WARN, "storing elected primary: %s", msg ? msg : "store error");
}

static struct node *repo_primary(struct praefect *p, struct repo *r)
{
	struct node *cur = r->primary ? vs_node(r->vs, r->primary) : NULL;
	struct node **valid;
	size_t nv = 0;
	struct node *chosen;

	if (cur && cur->healthy && repo_up_to_date(r, r->primary) && repo_assigned(r, r->primary))
		return cur;
	valid = xcalloc(r->vs->nr_nodes, sizeof(*valid));
	for (size_t i = 0; i < r->vs->nr_nodes; i++) {
		struct node *n = &r->vs->nodes[i];
		if (n->healthy && repo_up_to_date(r, n->cfg->storage) && repo_assigned(r, n->cfg->storage))
			valid[nv++] = n;
	}
	chosen = random_node(valid, nv);
	free(valid);
	if (!chosen)
		return cur; /* no valid primary: keep the stored one (the caller reports why) */
	log_msgf(LOG_INFO, "primary node changed: repository %lld from %s to %s", (long long)r->id,
		 r->primary ? r->primary : "(none)", chosen->cfg->storage);
	free(r->primary);
	r->primary = xstrdup(chosen->cfg->storage);
	store_set_primary(p->store, r->id, r->primary, on_primary_stored, NULL);
	return chosen;
}

static int force_primary(struct proxy *px)
{
	const char *policy = grpc_metadata_value(grpc_call_metadata(px->call),
						 "gitaly-route-repository-accessor-policy");
	if (policy && !strcmp(policy, "primary-only"))
		return 1;
	return !strcmp(px->m->name, "/gitaly.RepositoryService/RepositorySize") ||
	       !strcmp(px->m->name, "/gitaly.RepositoryService/GetObjectDirectorySize");
}

static void route_accessor(struct proxy *px, struct repo *r)
{
	struct node **cands;
	size_t nc = 0;
	struct node *n;

	if (!vs_healthy_count(px->vs)) {
		proxy_fail(px, GRPC_UNAVAILABLE, "no healthy nodes");
		return;
	}
	if (force_primary(px)) {
		n = repo_primary(px->p, r);
		if (!n || !n->healthy) {
			proxy_fail(px, GRPC_UNAVAILABLE, "primary gitaly is not healthy");
			return;
		}
	} else {
		cands = xcalloc(px->vs->nr_nodes, sizeof(*cands));
		for (size_t i = 0; i < px->vs->nr_nodes; i++) {
			struct node *c = &px->vs->nodes[i];
			if (c->healthy && repo_up_to_date(r, c->cfg->storage))
				cands[nc++] = c;
		}
		n = random_node(cands, nc);
		free(cands);
		if (!n) {
			proxy_fail(px, GRPC_UNAVAILABLE, "no suitable node to serve the request");
			return;
		}
	}
	add_dest(px, n, 1);
	start_forwarding(px);
}

/*
 * Transactional: every repository-scoped mutator except the object pool
 * creation and deletion (spec §7.1), when the nodes can vote (backchannel).
 */
static int is_transactional(struct proxy *px)
{
	return px->p->transactions && px->m->op == RPC_OP_MUTATOR && px->m->scope == RPC_SCOPE_REPOSITORY &&
	       strcmp(px->m->name, "/gitaly.ObjectPoolService/CreateObjectPool") &&
	       strcmp(px->m->name, "/gitaly.ObjectPoolService/DeleteObjectPool");
}

/*
 * Ours, stricter than upstream: a write must be committed by a majority of
 * the repository's assigned replicas, not only by whoever is healthy, so no
 * acknowledged write ever lives on a minority that a failover could lose.
 * Returns 0, or -1 after refusing the call (nothing was sent to any node).
 */
static int register_tx(struct proxy *px)
{
	size_t assigned = 1 + px->secondaries.nr + px->outdated.nr;
	size_t voters = 1 + px->secondaries.nr;
	size_t quorum = assigned / 2 + 1;
	if (voters < quorum) {
		proxy_fail(px, GRPC_UNAVAILABLE,
			   "not enough healthy up-to-date replicas for a write quorum: %zu of %zu assigned, %zu needed",
			   voters, assigned, quorum);
		return -1;
	}
	px->txid = tx_register(px->p->txm, px->primary, px->secondaries.v, px->secondaries.nr, (unsigned)quorum);
	return 0;
}

static void route_mutator(struct proxy *px, struct repo *r)
{
	struct node *primary;

	if (!vs_healthy_count(px->vs)) {
		proxy_fail(px, GRPC_UNAVAILABLE, "no healthy nodes");
		return;
	}
	primary = repo_primary(px->p, r);
	if (!primary || !primary->healthy) {
		proxy_fail(px, GRPC_UNAVAILABLE, "primary gitaly is not healthy");
		return;
	}
	if (!repo_up_to_date(r, primary->cfg->storage)) {
		proxy_fail(px, GRPC_FAILED_PRECONDITION, "repository is in read-only mode");
		return;
	}
	if (!repo_assigned(r, primary->cfg->storage)) {
		proxy_fail(px, GRPC_UNKNOWN, "primary node is not assigned");
		return;
	}
	px->primary = xstrdup(primary->cfg->storage);
	add_dest(px, primary, 1);
	/*
	 * Transactional: healthy up-to-date assigned secondaries apply the change
	 * too and vote with the primary. Without a transaction the primary alone
	 * applies it. Every other assigned storage gets a replication job.
	 */
	for (size_t i = 0; i < px->vs->nr_nodes; i++) {
		struct node *n = &px->vs->nodes[i];
		const char *s = n->cfg->storage;
		if (!strcmp(s, px->primary) || !repo_assigned(r, s))
			continue;
		if (is_transactional(px) && n->healthy && repo_up_to_date(r, s)) {
			strvec_push(&px->secondaries, s);
			add_dest(px, n, 0);
		} else {
			strvec_push(&px->outdated, s);
		}
	}
	if (is_transactional(px) && register_tx(px) < 0)
		return;
	start_forwarding(px);
}

static void route_maintenance(struct proxy *px, struct repo *r)
{
	for (size_t i = 0; i < r->nr_replicas; i++) {
		struct node *n = vs_node(r->vs, r->replicas[i].storage);
		if (n && n->healthy && repo_assigned(r, n->cfg->storage) && r->replicas[i].generation >= 0)
			add_dest(px, n, px->nr_dests == 0);
	}
	if (!px->nr_dests) {
		proxy_fail(px, GRPC_UNAVAILABLE, "no healthy nodes");
		return;
	}
	start_forwarding(px);
}

struct reserve_ctx {
	struct proxy *px;
};

static void shuffle(struct node **v, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)rand() % i;
		struct node *t = v[i - 1];
		v[i - 1] = v[j];
		v[j] = t;
	}
}

static void on_reserved(void *arg, int status, const char *msg, int64_t id)
{
	struct proxy *px = arg;
	struct strbuf rp = STRBUF_INIT;
	struct node *primary;
	struct node **others;
	size_t no = 0;
	int64_t rf = px->vs->cfg->default_replication_factor;

	if (status < 0 || !px->call) {
		if (status == -EEXIST)
			proxy_fail(px, GRPC_ALREADY_EXISTS, "repository already exists");
		else if (status < 0)
			proxy_fail(px, GRPC_INTERNAL, "reserving repository id: %s", msg ? msg : "store error");
		px->routing = 0;
		proxy_unref(px);
		return;
	}
	px->repo_id = id;
	replica_path_for(id, px->relative_path, &rp);
	px->replica_path = strbuf_detach(&rp, NULL);

	/* choose nodes (§2.4.1): a random healthy primary, replicas by replication factor */
	others = xcalloc(px->vs->nr_nodes, sizeof(*others));
	for (size_t i = 0; i < px->vs->nr_nodes; i++)
		if (px->vs->nodes[i].healthy)
			others[no++] = &px->vs->nodes[i];
	primary = random_node(others, no);
	no = 0;
	for (size_t i = 0; i < px->vs->nr_nodes; i++)
		if (&px->vs->nodes[i] != primary)
			others[no++] = &px->vs->nodes[i];
	if (!primary) {
		free(others);
		proxy_fail(px, GRPC_UNAVAILABLE, "no healthy nodes");
		px->routing = 0;
		proxy_unref(px);
		return;
	}
	if (rf > 0) {
		shuffle(others, no);
		if ((size_t)(rf - 1) < no)
			no = (size_t)(rf - 1);
		px->store_assignments = 1;
	}
	px->primary = xstrdup(primary->cfg->storage);
	add_dest(px, primary, 1);
	for (size_t i = 0; i < no; i++) {
		if (is_transactional(px) && others[i]->healthy) {
			strvec_push(&px->secondaries, others[i]->cfg->storage);
			add_dest(px, others[i], 0);
		} else {
			strvec_push(&px->outdated, others[i]->cfg->storage);
		}
	}
	free(others);
	if (is_transactional(px) && register_tx(px) < 0) {
		px->routing = 0;
		proxy_unref(px);
		return;
	}
	start_forwarding(px);
	proxy_unref(px);
}

static void route_create(struct proxy *px)
{
	struct strbuf key = STRBUF_INIT;
	if (!vs_healthy_count(px->vs)) {
		proxy_fail(px, GRPC_UNAVAILABLE, "no healthy nodes");
		return;
	}
	strbuf_addf(&key, "%s\x1f%s", px->vs->cfg->name, px->relative_path);
	if (hashmap_get(&px->p->reserved_paths, key.buf, key.len)) {
		strbuf_release(&key);
		proxy_fail(px, GRPC_ALREADY_EXISTS, "repository already exists");
		return;
	}
	hashmap_put(&px->p->reserved_paths, key.buf, key.len, px);
	px->reserved_key = strbuf_detach(&key, NULL);
	px->kind = ROUTE_CREATE;
	px->routing = 1;
	px->refs++;
	grpc_call_pause_recv(px->call); /* later messages wait until the destination is known */
	store_reserve_id(px->p->store, px->vs->cfg->name, px->relative_path, on_reserved, px);
}

static int is_creation(const char *name)
{
	static const char *const creators[] = {
		"/gitaly.RepositoryService/CreateRepository",
		"/gitaly.RepositoryService/CreateRepositoryFromURL",
		"/gitaly.RepositoryService/CreateRepositoryFromBundle",
		"/gitaly.RepositoryService/CreateRepositoryFromSnapshot",
		"/gitaly.RepositoryService/CreateFork",
		"/gitaly.RepositoryService/RestoreRepository",
		"/gitaly.RepositoryService/ReplicateRepository",
		"/gitaly.ObjectPoolService/CreateObjectPool",
	};
	for (size_t i = 0; i < ARRAY_SIZE(creators); i++)
		if (!strcmp(name, creators[i]))
			return 1;
	return 0;
}

/*
 * ReplicateRepository through praefect never replicates object-pool
 * membership (upstream's interceptor forces field 3 to false): drop the field.
 */
static void clear_replicate_pool_flag(struct proxy *px)
{
	const uint8_t *p = (const uint8_t *)px->first.buf, *end = p + px->first.len, *start;
	struct strbuf out = STRBUF_INIT;
	struct pb_field f;
	int rc;

	if (strcmp(px->m->name, "/gitaly.RepositoryService/ReplicateRepository"))
		return;
	for (start = p; (rc = pb_next_field(&p, end, &f)) == 1; start = p)
		if (!(f.num == 3 && f.wire == PB_VARINT))
			strbuf_add(&out, start, (size_t)(p - start));
	if (rc == 0) {
		strbuf_release(&px->first);
		px->first = out;
	} else {
		strbuf_release(&out); /* malformed: routing reports it */
	}
}

static void route(struct proxy *px)
{
	const uint8_t *msg;
	size_t len;

	clear_replicate_pool_flag(px);
	msg = (const uint8_t *)px->first.buf;
	len = px->first.len;
	struct rpc_repo t;
	struct repo *r;
	int rc;

	if (px->m->scope == RPC_SCOPE_STORAGE) {
		const char *st;
		size_t sl;
		struct node **cands;
		size_t nc = 0;
		rc = rpc_find_storage(px->m, msg, len, &st, &sl);
		if (rc == -ENOENT) {
			proxy_fail(px, GRPC_INVALID_ARGUMENT, "storage scoped: target storage is invalid");
			return;
		}
		if (rc < 0) {
			proxy_fail(px, GRPC_INVALID_ARGUMENT, "cannot decode request");
			return;
		}
		px->vs = praefect_vs(px->p, st, sl);
		if (!px->vs) {
			proxy_fail(px, GRPC_INVALID_ARGUMENT, "virtual storage \"%.*s\" does not exist", (int)sl, st);
			return;
		}
		if (px->m->op != RPC_OP_ACCESSOR) {
			proxy_fail(px, GRPC_UNIMPLEMENTED, "storage scoped mutators are not supported");
			return;
		}
		px->kind = ROUTE_STORAGE;
		cands = xcalloc(px->vs->nr_nodes, sizeof(*cands));
		for (size_t i = 0; i < px->vs->nr_nodes; i++)
			if (px->vs->nodes[i].healthy)
				cands[nc++] = &px->vs->nodes[i];
		if (nc)
			add_dest(px, random_node(cands, nc), 1);
		free(cands);
		if (!px->nr_dests) {
			proxy_fail(px, GRPC_INTERNAL, "no healthy nodes");
			return;
		}
		start_forwarding(px);
		return;
	}

	rc = rpc_find_target(px->m, msg, len, &t);
	if (rc == -ENOENT || (rc == 0 && !t.storage_len && !t.relative_path_len)) {
		proxy_fail(px, GRPC_INVALID_ARGUMENT, "repository not set");
		return;
	}
	if (rc < 0) {
		proxy_fail(px, GRPC_INVALID_ARGUMENT, "cannot decode request: %s",
			   rc == -ENOTUNIQ ? "target repository is ambiguous" : "malformed message");
		return;
	}
	if (!t.storage_len) {
		proxy_fail(px, GRPC_INVALID_ARGUMENT, "storage name not set");
		return;
	}
	if (!t.relative_path_len) {
		proxy_fail(px, GRPC_INVALID_ARGUMENT, "repository path not set");
		return;
	}
	px->vs = praefect_vs(px->p, t.storage, t.storage_len);
	if (!px->vs) {
		proxy_fail(px, GRPC_INVALID_ARGUMENT, "storage name not found: \"%.*s\"", (int)t.storage_len, t.storage);
		return;
	}
	px->relative_path = xstrndup(t.relative_path, t.relative_path_len);
	grpc_call_set_tag(px->call, "virtual_storage", px->vs->cfg->name);
	grpc_call_set_tag(px->call, "relative_path", px->relative_path);
	r = repo_by_path(px->p, t.storage, t.storage_len, t.relative_path, t.relative_path_len);

	if (px->m->op == RPC_OP_MUTATOR && is_creation(px->m->name) &&
	    !(r && !strcmp(px->m->name, "/gitaly.RepositoryService/ReplicateRepository")) &&
	    !(r && !strcmp(px->m->name, "/gitaly.RepositoryService/RestoreRepository"))) {
		if (r) {
			proxy_fail(px, GRPC_ALREADY_EXISTS, "repository already exists");
			return;
		}
		route_create(px);
		return;
	}
	if (!r) {
		proxy_fail(px, GRPC_NOT_FOUND, "repository not found");
		return;
	}
	px->repo_id = r->id;
	px->replica_path = xstrdup(r->replica_path);
	switch (px->m->op) {
	case RPC_OP_ACCESSOR:
		px->kind = ROUTE_ACCESSOR;
		route_accessor(px, r);
		break;
	case RPC_OP_MUTATOR:
		px->kind = ROUTE_MUTATOR;
		route_mutator(px, r);
		break;
	case RPC_OP_MAINTENANCE:
		px->kind = ROUTE_MAINTENANCE;
		route_maintenance(px, r);
		break;
	default:
		proxy_fail(px, GRPC_INTERNAL, "unknown operation type of %s", px->m->name);
	}
}

/* --- the finalizer (spec §6.3) --- */

static void finish_with_primary(struct proxy *px)
{
	struct dest *first_err = NULL, *primary = NULL;
	for (size_t i = 0; i < px->nr_dests; i++) {
		if (px->dests[i].primary)
			primary = &px->dests[i];
		if (!first_err && px->dests[i].code != GRPC_OK)
			first_err = &px->dests[i];
	}
	if (px->kind == ROUTE_MAINTENANCE && first_err)
		primary = first_err;
	if (primary)
		proxy_finish(px, primary->code, primary->msg.buf, &primary->trailers);
	else
		proxy_finish(px, GRPC_INTERNAL, "no destination", NULL);
}

static struct dest *primary_dest(struct proxy *px)
{
	for (size_t i = 0; i < px->nr_dests; i++)
		if (px->dests[i].primary)
			return &px->dests[i];
	return NULL;
}

/*
 * Should the primary's generation move on? Success: yes. A clean refusal
 * (bad argument, not found, precondition...) changed nothing. A call cut off
 * (the primary became unreachable, the client cancelled, the deadline passed)
 * was not acknowledged: whatever the primary may have applied is not promised
 * to anyone, and outdating every other replica for it would leave the
 * repository without a valid primary exactly when failover needs one. Such a
 * write is overwritten if the old primary is later repaired from a new one.
 * Any other error (the node ran the call and failed inside) may have left
 * changes, so replicas are brought in line.
 */
static int primary_maybe_modified(enum grpc_code code)
{
	switch (code) {
	case GRPC_INVALID_ARGUMENT: case GRPC_NOT_FOUND: case GRPC_ALREADY_EXISTS:
	case GRPC_FAILED_PRECONDITION: case GRPC_PERMISSION_DENIED: case GRPC_UNAUTHENTICATED:
	case GRPC_UNIMPLEMENTED: case GRPC_OUT_OF_RANGE:
	case GRPC_UNAVAILABLE: case GRPC_CANCELLED: case GRPC_DEADLINE_EXCEEDED:
		return 0;
	default:
		return 1;
	}
}

static void on_jobs_queued(void *arg, int status)
{
	struct proxy *px = arg;
	if (status < 0)
		proxy_fail(px, GRPC_INTERNAL, "queueing replication jobs failed");
	else
		finish_with_primary(px);
	proxy_unref(px);
}

static void queue_jobs(struct proxy *px)
{
	struct repo *r = repo_by_id(px->p, px->repo_id);
	const char *corr = px->call ? grpc_metadata_value(grpc_call_metadata(px->call), "x-gitlab-correlation-id") : NULL;
	if (!r || !px->outdated.nr) {
		finish_with_primary(px);
		return;
	}
	px->refs++;
	replicator_enqueue_updates(px->p, r, px->primary, px->outdated.v, px->outdated.nr, corr, on_jobs_queued, px);
}

static void on_generation_bumped(void *arg, int status, const char *msg, int64_t gen)
{
	struct proxy *px = arg;
	struct repo *r = repo_by_id(px->p, px->repo_id);
	if (status < 0) {
		proxy_fail(px, status == -ESTALE ? GRPC_UNKNOWN : GRPC_INTERNAL, "%s",
			   msg ? msg : "updating generation failed");
		proxy_unref(px);
		return;
	}
	if (r) {
		/* the store bumped exactly the replicas that were at the old generation */
		int64_t old = r->generation;
		struct replica *rep = repo_replica_add(r, px->primary);
		if (rep->generation == old)
			rep->generation = gen;
		for (size_t i = 0; i < px->updated.nr; i++) {
			rep = repo_replica_add(r, px->updated.v[i]);
			if (rep->generation == old)
				rep->generation = gen;
		}
		r->generation = gen;
	}
	queue_jobs(px);
	proxy_unref(px);
}

static void on_created(void *arg, int status, const char *msg)
{
	struct proxy *px = arg;
	if (status < 0) {
		proxy_fail(px, status == -EEXIST ? GRPC_ALREADY_EXISTS : GRPC_INTERNAL, "%s",
			   msg ? msg : "recording repository failed");
		proxy_unref(px);
		return;
	}
	{
		struct store_replica *reps = xcalloc(1 + px->updated.nr + px->outdated.nr, sizeof(*reps));
		struct store_repo sr = { 0 };
		size_t n = 0;
		reps[n].storage = px->primary;
		reps[n].generation = 0;
		reps[n++].assigned = px->store_assignments;
		for (size_t i = 0; i < px->updated.nr; i++) {
			reps[n].storage = px->updated.v[i];
			reps[n].generation = 0;
			reps[n++].assigned = px->store_assignments;
		}
		for (size_t i = 0; i < px->outdated.nr; i++) {
			reps[n].storage = px->outdated.v[i];
			reps[n].generation = GENERATION_UNKNOWN;
			reps[n++].assigned = px->store_assignments;
		}
		sr.id = px->repo_id;
		sr.virtual_storage = px->vs->cfg->name;
		sr.relative_path = px->relative_path;
		sr.replica_path = px->replica_path;
		sr.primary = px->primary;
		sr.generation = 0;
		sr.replicas = reps;
		sr.nr_replicas = n;
		repo_insert(px->p, &sr);
		free(reps);
	}
	queue_jobs(px);
	proxy_unref(px);
}

static struct dest *dest_for(struct proxy *px, const char *storage)
{
	for (size_t i = 0; i < px->nr_dests; i++)
		if (!strcmp(px->dests[i].node->cfg->storage, storage))
			return &px->dests[i];
	return NULL;
}

/*
 * Who applied the change like the primary (spec §7.7)? Returns 0 when the
 * primary was not dirtied at all (nothing to record), 1 otherwise, with
 * px->updated and px->outdated filled.
 */
static int sort_out_voters(struct proxy *px, struct dest *pd)
{
	struct tx_outcome o;
	int all_outdated;

	tx_cleanup(px->p->txm, px->txid, &o);
	if ((o.subtransactions == 0 && pd->code != GRPC_OK) ||
	    (o.subtransactions == 1 && !o.primary_voted_first)) {
		tx_outcome_release(&o);
		return 0;
	}
	all_outdated = o.subtransactions == 0 || !o.state_known ||
		       tx_outcome_result(&o, px->primary) != VOTE_COMMITTED;
	for (size_t i = 0; i < px->secondaries.nr; i++) {
		const char *s = px->secondaries.v[i];
		struct dest *d = dest_for(px, s);
		int same_status = d && d->code == pd->code && !strcmp(d->msg.buf, pd->msg.buf);
		if (!all_outdated && same_status && tx_outcome_result(&o, s) == VOTE_COMMITTED)
			strvec_push(&px->updated, s);
		else
			strvec_push(&px->outdated, s);
	}
	tx_outcome_release(&o);
	return 1;
}

static void proxy_finalize(struct proxy *px)
{
	struct dest *pd = primary_dest(px);
	int dirtied;

	if (px->finished || !pd) {
		proxy_finish(px, GRPC_INTERNAL, "call ended", NULL);
		if (px->txid) {
			struct tx_outcome o;
			tx_cleanup(px->p->txm, px->txid, &o);
			tx_outcome_release(&o);
		}
		return;
	}
	if (px->txid)
		dirtied = sort_out_voters(px, pd);
	else if (px->kind == ROUTE_CREATE)
		dirtied = pd->code == GRPC_OK;
	else
		dirtied = px->kind == ROUTE_MUTATOR && primary_maybe_modified(pd->code);
	if (!dirtied || (px->kind != ROUTE_CREATE && px->kind != ROUTE_MUTATOR)) {
		finish_with_primary(px);
		return;
	}
	if (px->kind == ROUTE_CREATE) {
		px->refs++;
		store_create_repository(px->p->store, px->repo_id, px->vs->cfg->name, px->relative_path,
					px->replica_path, px->primary, px->updated.v, px->updated.nr,
					px->outdated.v, px->outdated.nr, 1, px->store_assignments, on_created, px);
		return;
	}
	{
		const char **storages = xcalloc(1 + px->updated.nr, sizeof(*storages));
		storages[0] = px->primary;
		for (size_t i = 0; i < px->updated.nr; i++)
			storages[1 + i] = px->updated.v[i];
		px->refs++;
		store_increment_generation(px->p->store, px->repo_id, storages, 1 + px->updated.nr,
					   on_generation_bumped, px);
		free(storages);
	}
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
		route(px);
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
