/*
 * Routing: where the first request message of a call goes. Accessors go to
 * one healthy up-to-date replica, mutators to the primary (and, when voted
 * on, to every healthy up-to-date assigned secondary), maintenance calls to
 * every healthy assigned replica, creations to freshly chosen nodes, and
 * storage-scoped accessors to any healthy node. See
 * docs/technical/praefect-routing.md.
 */
#include "coordinator/proxy.h"
#include "base/util.h"
#include "base/log.h"
#include "base/pb.h"
#include "transactions/transactions.h"
#include "metrics/series.h"
#include "git/relpath.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * How long a read waits for the Fsck of a corrupt replica's siblings when
 * none of its replicas is verified clean yet (suspect_trust()).
 */
#define READ_HOLD_MS 5000
/* How long a write lacking its quorum waits for a healthy replica to catch up (register_tx()). */
#define QUORUM_WAIT_MS 10000

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

static int force_primary(struct proxy *px)
{
	const char *policy = grpc_metadata_value(grpc_call_metadata(px->call),
						 "gitaly-route-repository-accessor-policy");
	if (policy && !strcmp(policy, "primary-only"))
		return 1;
	return px->m->primary_only; /* (router) = { primary_only } in proto/ */
}

static int tried(const struct proxy *px, const struct node *n)
{
	for (size_t i = 0; i < px->tried.nr; i++)
		if (!strcmp(px->tried.v[i], n->cfg->storage))
			return 1;
	return 0;
}

/*
 * A random healthy up-to-date replica not tried yet by this call, preferring
 * trusted ones, then unverified siblings of an avoided one, then avoided ones
 * (router/suspect.c): a suspect replica still beats refusing the read.
 * `*trust` says which kind it is.
 */
static struct node *accessor_candidate(struct proxy *px, struct repo *r, enum suspect_trust *trust)
{
	struct node **cands = xcalloc(px->vs->nr_nodes, sizeof(*cands));
	struct node *n = NULL;
	enum suspect_trust t;
	for (t = READ_TRUSTED; !n && t <= READ_AVOIDED; t++) {
		size_t nc = 0;
		for (size_t i = 0; i < px->vs->nr_nodes; i++) {
			struct node *c = &px->vs->nodes[i];
			if (c->healthy && repo_up_to_date(r, c->cfg->storage) && !tried(px, c) &&
			    suspect_trust(r, c) == t)
				cands[nc++] = c;
		}
		n = random_node(cands, nc);
	}
	free(cands);
	*trust = t - 1;
	return n;
}

/*
 * No replica to read from is trusted, but some are only unverified: a
 * sibling of this repository's replica turned out corrupt and theirs may be
 * too. Hold the read (never the loop) until a verification step ends or
 * READ_HOLD_MS passes: route_release_held_reads() routes it again. Returns 1
 * when it was held.
 */
static int hold_read(struct proxy *px)
{
	uint64_t now = now_ms();
	if (!px->call || px->finished)
		return 0;
	if (!px->hold_until_ms)
		px->hold_until_ms = now + READ_HOLD_MS;
	if (now >= px->hold_until_ms)
		return 0;
	schedule_kick_in(px->p, TASK_VERIFY_REPLICAS, px->hold_until_ms - now); /* the bound */
	px->routing = 1; /* client messages meanwhile are kept for the replay */
	grpc_call_pause_recv(px->call);
	px->refs++;
	px->next_held_read = px->p->held_reads;
	px->p->held_reads = px;
	return 1;
}

/*
 * Shared store: a primary this praefect just elected is not used before the
 * database agrees (election/election.c): the call waits for the
 * compare-and-set, then is routed again, to the winner's choice if another
 * praefect's won. Held once at most; a call whose second routing elects
 * again fails UNAVAILABLE (the client retries) rather than using an
 * unconfirmed primary (docs/technical/multi-praefect.md).
 */
static int hold_election(struct proxy *px, struct repo *r)
{
	if (!r->electing)
		return 0;
	if (px->election_held || !px->call || px->finished) {
		proxy_fail(px, GRPC_UNAVAILABLE, "primary is being elected: retry");
		return 1;
	}
	px->election_held = 1;
	px->routing = 1;
	grpc_call_pause_recv(px->call);
	px->refs++;
	px->next_held_election = px->p->held_elections;
	px->p->held_elections = px;
	return 1;
}

struct node *route_accessor_retry(struct proxy *px)
{
	struct repo *r = repo_by_id(px->p, px->repo_id);
	enum suspect_trust trust;
	struct node *n;
	if (!r || px->kind != ROUTE_ACCESSOR || force_primary(px))
		return NULL;
	n = accessor_candidate(px, r, &trust);
	if (n)
		strvec_push(&px->tried, n->cfg->storage);
	return n;
}

static void route_accessor(struct proxy *px, struct repo *r)
{
	enum suspect_trust trust;
	struct node *n;

	if (!vs_healthy_count(px->vs)) {
		proxy_fail(px, GRPC_UNAVAILABLE, "no healthy nodes");
		return;
	}
	if (force_primary(px)) {
		n = elect_primary(px->p, r);
		if (hold_election(px, r))
			return;
		if (!n || !n->healthy) {
			proxy_fail(px, GRPC_UNAVAILABLE, "primary gitaly is not healthy");
			return;
		}
	} else {
		n = accessor_candidate(px, r, &trust);
		if (!n) {
			proxy_fail(px, GRPC_UNAVAILABLE, "no suitable node to serve the request");
			return;
		}
		if (trust == READ_UNVERIFIED && hold_read(px))
			return;
	}
	strvec_push(&px->tried, n->cfg->storage);
	proxy_add_dest(px, n, 1);
	proxy_forward(px);
}

void route_release_held_reads(struct praefect *p, int all)
{
	struct proxy *held = p->held_reads;
	uint64_t now = now_ms();

	p->held_reads = NULL; /* those that must wait on are held again */
	while (held) {
		struct proxy *px = held;
		struct repo *r = repo_by_id(p, px->repo_id);
		held = px->next_held_read;
		px->next_held_read = NULL;
		px->routing = 0;
		if (all)
			px->hold_until_ms = now;
		if (!px->call || px->finished)
			px->finished = 1;
		else if (!r)
			proxy_fail(px, GRPC_NOT_FOUND, "repository not found");
		else
			route_accessor(px, r);
		proxy_unref(px);
	}
}

/*
 * Voted on: every repository-scoped mutator not marked (router) = {
 * not_voted } in proto/ (the object pool creation and deletion), when the
 * nodes can vote (backchannel).
 */
static int is_transactional(struct proxy *px)
{
	return px->p->transactions && px->m->op == RPC_OP_MUTATOR && px->m->scope == RPC_SCOPE_REPOSITORY &&
	       !px->m->not_voted;
}

/*
 * Ours, stricter than upstream: a write must be committed by a majority of
 * the repository's assigned replicas, not only by whoever is healthy, so no
 * acknowledged write ever lives on a minority that a failover could lose.
 * Returns 0 (registered, or the write waits at the barrier), or -1 after
 * refusing the call (nothing was sent to any node). `r` is NULL for a
 * repository being created.
 */
static int register_tx(struct proxy *px, struct repo *r)
{
	size_t assigned = 1 + px->secondaries.nr + px->outdated.nr;
	size_t voters = 1 + px->secondaries.nr;
	size_t quorum = assigned / 2 + 1;
	if (voters < quorum) {
		/*
		 * Healthy outdated replicas being caught up would make the
		 * quorum: the write waits for the closest one rather than fail
		 * (coordinator_wait_for_quorum()), bounded by QUORUM_WAIT_MS.
		 */
		const char *closest = NULL;
		int64_t best = -1;
		size_t healthy = 0;
		for (size_t i = 0; r && i < px->outdated.nr; i++) {
			struct node *n = vs_node(px->vs, px->outdated.v[i]);
			struct replica *rep = repo_replica(r, px->outdated.v[i]);
			int64_t g = rep ? rep->generation : -1;
			if (!n || !n->healthy)
				continue;
			healthy++;
			if (!closest || g > best) {
				closest = n->cfg->storage;
				best = g;
			}
		}
		if (closest && voters + healthy >= quorum &&
		    coordinator_wait_for_quorum(px->p, r, closest, QUORUM_WAIT_MS))
			return 0; /* proxy_forward() holds it at the barrier; routed again when released */
		proxy_fail(px, GRPC_UNAVAILABLE,
			   "not enough healthy up-to-date replicas for a write quorum: %zu of %zu assigned, %zu needed",
			   voters, assigned, quorum);
		return -1;
	}
	px->txid = tx_register(px->p->txm, px->primary, px->secondaries.v, px->secondaries.nr, (unsigned)quorum);
	metric_observe(pm(px->p, PM_VOTERS), METRIC_LV(px->vs->cfg->name), (double)voters);
	return 0;
}

static void route_mutator(struct proxy *px, struct repo *r)
{
	struct node *primary;

	if (!vs_healthy_count(px->vs)) {
		proxy_fail(px, GRPC_UNAVAILABLE, "no healthy nodes");
		return;
	}
	primary = elect_primary(px->p, r);
	if (hold_election(px, r))
		return;
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
	proxy_add_dest(px, primary, 1);
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
			proxy_add_dest(px, n, 0);
		} else {
			strvec_push(&px->outdated, s);
		}
	}
	if (is_transactional(px) && register_tx(px, r) < 0)
		return;
	proxy_forward(px);
}

static void route_maintenance(struct proxy *px, struct repo *r)
{
	for (size_t i = 0; i < r->nr_replicas; i++) {
		struct node *n = vs_node(r->vs, r->replicas[i].storage);
		if (n && n->healthy && repo_assigned(r, n->cfg->storage) && r->replicas[i].generation >= 0)
			proxy_add_dest(px, n, px->nr_dests == 0);
	}
	if (!px->nr_dests) {
		proxy_fail(px, GRPC_UNAVAILABLE, "no healthy nodes");
		return;
	}
	proxy_forward(px);
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

/*
 * A creation with a tracked additional repository (CreateObjectPool's origin)
 * is routed as upstream does: the new repository goes to the nodes of the
 * additional one, since the call reads it on each node; its primary becomes
 * the new primary, its healthy up-to-date replicas the secondaries, its other
 * replicas replication targets. So a pool starts on its origin's nodes, and
 * linking the origin right away finds it there (object-pools.md). Ours: a
 * creation that is not voted goes to the secondaries too, each node making
 * the pool from its own replica of the origin, so that the link finds the
 * pool on every replica at once, not only after replication. Returns 1
 * when `px` was routed or failed, 0 when there is no such repository.
 */
static int assign_like_additional(struct proxy *px)
{
	struct rpc_repo add;
	struct repo *ar;
	struct node *primary;
	const char *vs = px->vs->cfg->name;

	if (rpc_find_additional(px->m, (const uint8_t *)px->first.buf, px->first.len, &add) < 0 ||
	    add.storage_len != strlen(vs) || memcmp(add.storage, vs, add.storage_len) ||
	    !(ar = repo_by_path(px->p, vs, strlen(vs), add.relative_path, add.relative_path_len)) || !ar->primary)
		return 0;
	primary = vs_node(px->vs, ar->primary);
	if (!primary || !primary->healthy) {
		proxy_fail(px, GRPC_UNAVAILABLE, "primary gitaly is not healthy");
		px->routing = 0;
		return 1;
	}
	px->store_assignments = px->vs->cfg->default_replication_factor > 0;
	px->primary = xstrdup(primary->cfg->storage);
	proxy_add_dest(px, primary, 1);
	for (size_t i = 0; i < ar->nr_replicas; i++) {
		const char *s = ar->replicas[i].storage;
		struct node *n = vs_node(px->vs, s);
		if (!n || n == primary || ar->replicas[i].generation == GENERATION_UNKNOWN || !repo_assigned(ar, s))
			continue;
		/* a creation that is not voted (CreateObjectPool) runs on each from its own copy */
		if ((is_transactional(px) || px->m->not_voted) && n->healthy && repo_up_to_date(ar, s)) {
			strvec_push(&px->secondaries, s);
			proxy_add_dest(px, n, 0);
		} else {
			strvec_push(&px->outdated, s);
		}
	}
	if (is_transactional(px) && register_tx(px, NULL) < 0) {
		px->routing = 0;
		return 1;
	}
	proxy_forward(px);
	return 1;
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
			proxy_fail(px, praefect_store_code(status), "reserving repository id: %s", msg ? msg : "store error");
		px->routing = 0;
		proxy_unref(px);
		return;
	}
	px->repo_id = id;
	replica_path_for(id, px->relative_path, &rp);
	px->replica_path = strbuf_detach(&rp, NULL);
	if (assign_like_additional(px)) {
		proxy_unref(px);
		return;
	}

	/* choose nodes: a random healthy primary, replicas by replication factor (praefect-routing.md) */
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
	proxy_add_dest(px, primary, 1);
	for (size_t i = 0; i < no; i++) {
		if (is_transactional(px) && others[i]->healthy) {
			strvec_push(&px->secondaries, others[i]->cfg->storage);
			proxy_add_dest(px, others[i], 0);
		} else {
			strvec_push(&px->outdated, others[i]->cfg->storage);
		}
	}
	free(others);
	if (is_transactional(px) && register_tx(px, NULL) < 0) {
		px->routing = 0;
		proxy_unref(px);
		return;
	}
	proxy_forward(px);
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

static int is_dropped(const struct rpc_method *m, const struct pb_field *f)
{
	for (size_t i = 0; i < m->drops_nr; i++)
		if (f->num == m->drops[i].field && (unsigned)f->wire == m->drops[i].wire)
			return 1;
	return 0;
}

/*
 * Remove the fields marked (router_drops) in proto/ from the first message:
 * ReplicateRepository through praefect never replicates object-pool
 * membership, as upstream's router forces that flag to false.
 */
static void drop_fields(struct proxy *px)
{
	const uint8_t *p = (const uint8_t *)px->first.buf, *end = p + px->first.len, *start;
	struct strbuf out = STRBUF_INIT;
	struct pb_field f;
	int rc;

	if (!px->m->drops_nr)
		return;
	for (start = p; (rc = pb_next_field(&p, end, &f)) == 1; start = p)
		if (!is_dropped(px->m, &f))
			strbuf_add(&out, start, (size_t)(p - start));
	if (rc == 0) {
		strbuf_release(&px->first);
		px->first = out;
	} else {
		strbuf_release(&out); /* malformed: routing reports it */
	}
}

static void route_target(struct proxy *px);
static void read_from_db(struct proxy *px);

void proxy_route(struct proxy *px)
{
	const uint8_t *msg;
	size_t len;

	drop_fields(px);
	msg = (const uint8_t *)px->first.buf;
	len = px->first.len;
	struct rpc_repo t;
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
			proxy_add_dest(px, random_node(cands, nc), 1);
		free(cands);
		if (!px->nr_dests) {
			proxy_fail(px, GRPC_INTERNAL, "no healthy nodes");
			return;
		}
		proxy_forward(px);
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
	/* the node's rule, checked before any routing decision (lib/git/relpath.h) */
	if (git_relpath_check(t.relative_path, t.relative_path_len) < 0) {
		proxy_fail(px, GRPC_INVALID_ARGUMENT, GIT_RELPATH_ESCAPES);
		return;
	}
	px->relative_path = xstrndup(t.relative_path, t.relative_path_len);
	grpc_call_set_tag(px->call, "virtual_storage", px->vs->cfg->name);
	grpc_call_set_tag(px->call, "relative_path", px->relative_path);
	if (store_is_shared(px->p->store)) {
		read_from_db(px);
		return;
	}
	route_target(px);
}

/*
 * Shared store: other praefects change repositories too, so each call reads
 * its repository from the database before it is routed (as upstream's router
 * asks the database for consistent storages on every call). A write
 * acknowledged through another praefect has committed its generation bump
 * before its acknowledgement, so this read sees it and routing sends the call
 * only to replicas at that generation (docs/technical/multi-praefect.md).
 */
static void on_db_repo(void *arg, int status, const char *msg, const struct store_repo *repos, size_t n)
{
	struct proxy *px = arg;

	if (status == 0 && n == 1)
		repo_adopt(px->p, px->vs->cfg->name, px->relative_path, &repos[0]);
	else if (status == -ENOENT)
		repo_adopt(px->p, px->vs->cfg->name, px->relative_path, NULL);
	else
		log_msgf(LOG_WARN, "reading repository \"%s\" from the database: %s (routing with the cached view)",
			 px->relative_path, msg ? msg : "store error");
	px->routing = 0;
	if (!px->call || px->finished)
		px->finished = 1;
	else
		route_target(px);
	proxy_unref(px);
}

static void read_from_db(struct proxy *px)
{
	px->db_read = 1;
	px->routing = 1; /* client messages meanwhile are kept for the replay */
	grpc_call_pause_recv(px->call);
	px->refs++;
	store_get_repository(px->p->store, px->vs->cfg->name, px->relative_path, on_db_repo, px);
}

static void route_target(struct proxy *px)
{
	struct repo *r = repo_by_path(px->p, px->vs->cfg->name, strlen(px->vs->cfg->name), px->relative_path,
				      strlen(px->relative_path));

	/* (router) = { creates_repository [updates_existing] } in proto/ */
	if (px->m->op == RPC_OP_MUTATOR && px->m->creates_repository && !(r && px->m->updates_existing)) {
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


void route_release_held_elections(struct praefect *p, int64_t id)
{
	struct proxy **link = &p->held_elections;

	while (*link) {
		struct proxy *px = *link;
		struct repo *r;
		if (id && px->repo_id != id) {
			link = &px->next_held_election;
			continue;
		}
		*link = px->next_held_election;
		px->next_held_election = NULL;
		px->routing = 0;
		r = repo_by_id(p, px->repo_id);
		if (!px->call || px->finished)
			px->finished = 1;
		else if (!r)
			proxy_fail(px, GRPC_NOT_FOUND, "repository not found");
		else if (px->kind == ROUTE_MUTATOR)
			route_mutator(px, r);
		else
			route_accessor(px, r);
		proxy_unref(px);
		link = &p->held_elections; /* routing may have held or released others */
	}
}
