/*
 * The background verifier: every replica, every verification_interval, is
 * checked on its node for existence (as upstream's), for its references
 * (CalculateChecksum against its up-to-date peers) and for its objects
 * (Fsck); a wrong one is repaired. See docs/technical/praefect-health.md,
 * "The background verifier".
 *
 * Each run of task verify-background leases the replicas due, at most
 * `max_verifications_per_node` in flight per healthy node, from the store
 * (store_lease_verifications(): the lease keeps another praefect off them),
 * and walks each through its steps:
 *
 *   exists --no--> invalid (replica row deleted, the reconciler re-creates it)
 *          --yes--> refs: checksums of the up-to-date replicas
 *                     --differs from its peers--> forced update job from a peer (held)
 *                     --same, or nothing to compare--> objects: Fsck
 *                          --error--> suspect_found_corrupt(): deleted and rebuilt (held)
 *                          --clean--> valid (verified_at = now)
 *
 * A call that fails ends the verification as an error: the lease goes and
 * the replica is due again at once. A replica found wrong keeps its lease
 * while it is repaired: it is verified again once the lease has run out
 * and been released (2 x VERIFY_LEASE_MS).
 */
#include "praefect.h"
#include "base/log.h"
#include "base/util.h"
#include "grpc/auth.h"
#include "metrics/series.h"
#include "repository.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VERIFY_BATCH 25                 /* replicas leased per run at most (upstream's batch) */
#define VERIFY_LEASE_MS 30000           /* upstream's lease duration */
#define RELEASE_EVERY_MS 10000          /* expired leases released (upstream's ticker) */
#define EXISTS_TIMEOUT_MS 30000
#define CHECKSUM_TIMEOUT_MS (5 * 60 * 1000)
#define FSCK_TIMEOUT_MS (10 * 60 * 1000)

enum step { STEP_EXISTS, STEP_SUMS, STEP_FSCK };
enum outcome { OUT_VALID, OUT_INVALID, OUT_ERROR, OUT_HELD };

struct peer_sum {
	struct node *node;
	enum grpc_code code;
	char *sum;
};

struct check {
	struct check *next;
	struct verifier *v;
	struct node *node;
	int64_t repo_id;
	char *relative_path, *replica_path;
	enum step step;
	enum outcome outcome;
	int pending;                    /* calls in flight (sums: one per replica asked) */
	int64_t generation;             /* the repository's when the checksums were asked */
	struct peer_sum *sums;          /* sums[0] is this replica's */
	size_t nr_sums;
};

struct verifier {
	struct praefect *p;
	const struct rpc_method *exists, *checksum, *fsck;
	struct check *checks;           /* in flight */
	int leasing, releasing, stopping;
	uint64_t released_ms;
	int told_unimplemented;
};

struct sum_call {
	struct check *c;
	size_t which;
};

static void step_on(struct check *c);

/* --- the list of verifications in flight --- */

static size_t in_flight(const struct verifier *v, const struct node *n)
{
	size_t nr = 0;
	for (const struct check *c = v->checks; c; c = c->next)
		nr += c->node == n;
	return nr;
}

static int running(const struct verifier *v, int64_t repo_id, const struct node *n)
{
	for (const struct check *c = v->checks; c; c = c->next)
		if (c->repo_id == repo_id && c->node == n)
			return 1;
	return 0;
}

static void check_free(struct check *c)
{
	struct check **pp = &c->v->checks;
	while (*pp && *pp != c)
		pp = &(*pp)->next;
	if (*pp)
		*pp = c->next;
	for (size_t i = 0; i < c->nr_sums; i++)
		free(c->sums[i].sum);
	free(c->sums);
	free(c->relative_path);
	free(c->replica_path);
	free(c);
}

/* --- ending a verification --- */

static void on_ended(void *arg, int status, const char *msg, int64_t changed)
{
	struct check *c = arg;
	struct verifier *v = c->v;
	struct repo *r;

	if (status < 0)
		log_msgf(LOG_WARN, "recording the verification of repository %lld on %s failed: %s",
			 (long long)c->repo_id, c->node->cfg->storage, msg ? msg : "store error");
	else if (c->outcome == OUT_INVALID && changed && v->p->cfg.delete_invalid_records &&
		 (r = repo_by_id(v->p, c->repo_id))) {
		struct replica *rep = repo_replica(r, c->node->cfg->storage);
		repo_changed(v->p);
		if (rep)
			rep->generation = GENERATION_UNKNOWN;
		reconciler_soon(v->p, c->repo_id); /* an assigned replica is created again */
	}
	check_free(c);
	if (!v->stopping)
		schedule_kick(v->p, TASK_VERIFY_BACKGROUND); /* a slot on its node is free */
}

static void finish(struct check *c, enum outcome out)
{
	struct verifier *v = c->v;
	static const enum store_verify_result results[] = {
		[OUT_VALID] = STORE_VERIFY_VALID, [OUT_INVALID] = STORE_VERIFY_INVALID, [OUT_ERROR] = STORE_VERIFY_ERROR,
	};

	static const char *const result_names[] = {
		[OUT_VALID] = "valid", [OUT_INVALID] = "invalid", [OUT_ERROR] = "error", [OUT_HELD] = "invalid",
	};

	c->outcome = out;
	/* a replica held for repair was found wrong: upstream's "invalid" (docs/technical/metrics.md) */
	metric_inc(pm(v->p, PM_VERIFY_COMPLETED),
		   METRIC_LV(c->node->vs->cfg->name, c->node->cfg->storage, result_names[out]));
	if (out == OUT_INVALID)
		log_msgf(LOG_INFO, "%s metadata record of non-existent replica: repository %lld (\"%s\") on %s",
			 v->p->cfg.delete_invalid_records ? "removing" : "keeping (delete_invalid_records off) the",
			 (long long)c->repo_id, c->relative_path, c->node->cfg->storage);
	if (out == OUT_HELD || v->stopping) {
		/* held while repaired, or shutting down: the lease runs out and is released */
		check_free(c);
		if (!v->stopping)
			schedule_kick(v->p, TASK_VERIFY_BACKGROUND);
		return;
	}
	store_end_verification(v->p->store, c->repo_id, c->node->cfg->storage, results[out],
			       v->p->cfg.delete_invalid_records, on_ended, c);
}

/* --- calls to the node --- */

/* --- step 1: does the replica exist? --- */

static void on_exists(void *arg, enum grpc_code code, const char *message, const uint8_t *msg, size_t len)
{
	struct check *c = arg;
	Gitaly__RepositoryExistsResponse *resp = NULL;
	int exists;

	c->pending = 0;
	if (code == GRPC_OK)
		resp = gitaly__repository_exists_response__unpack(NULL, len, msg);
	if (code != GRPC_OK || !resp) {
		if (!c->v->stopping)
			log_msgf(LOG_WARN, "failed to verify replica's existence: repository %lld on %s: %s",
				 (long long)c->repo_id, c->node->cfg->storage,
				 code != GRPC_OK ? (message && *message ? message : grpc_code_name(code)) : "bad response");
		finish(c, OUT_ERROR);
		return;
	}
	exists = resp->exists;
	gitaly__repository_exists_response__free_unpacked(resp, NULL);
	if (!exists) {
		finish(c, OUT_INVALID);
		return;
	}
	c->step = STEP_SUMS;
	step_on(c);
}

static void ask_exists(struct check *c)
{
	c->pending = 1;
	if (node_unary_repo(c->node, c->v->exists->name, &gitaly__repository_exists_request__descriptor, c->replica_path,
			    EXISTS_TIMEOUT_MS, on_exists, c) < 0) {
		c->pending = 0;
		finish(c, OUT_ERROR);
	}
}

/* --- step 2: are its references those of its up-to-date peers? --- */

/*
 * Does this replica's checksum (sums[0]) differ from its peers'? Only when
 * it differs from every peer that answered and the peers outvote it: two
 * of them agree, or the repository's primary is one of them (with a single
 * peer, the primary's word wins; the primary itself is never outvoted by a
 * single peer). Returns the peer to repair from, or NULL.
 */
static struct node *outvoted(struct check *c, struct repo *r)
{
	struct node *best = NULL, *primary_peer = NULL;
	size_t best_votes = 0;

	for (size_t i = 1; i < c->nr_sums; i++)
		if (c->sums[i].code == GRPC_OK && !strcmp(c->sums[i].sum, c->sums[0].sum))
			return NULL;
	for (size_t i = 1; i < c->nr_sums; i++) {
		size_t votes = 0;
		if (c->sums[i].code != GRPC_OK)
			continue;
		for (size_t k = 1; k < c->nr_sums; k++)
			votes += c->sums[k].code == GRPC_OK && !strcmp(c->sums[k].sum, c->sums[i].sum);
		if (r->primary && !strcmp(r->primary, c->sums[i].node->cfg->storage))
			primary_peer = c->sums[i].node;
		if (votes > best_votes || (votes == best_votes && c->sums[i].node == primary_peer)) {
			best_votes = votes;
			best = c->sums[i].node;
		}
	}
	if (best_votes >= 2)
		return best;
	return primary_peer;
}

static void log_differs(struct check *c, struct repo *r, struct node *src)
{
	struct strbuf sb = STRBUF_INIT;
	for (size_t i = 1; i < c->nr_sums; i++) {
		if (c->sums[i].code == GRPC_OK)
			strbuf_addf(&sb, "%s%s has %s", sb.len ? ", " : "", c->sums[i].node->cfg->storage, c->sums[i].sum);
		else
			strbuf_addf(&sb, "%s%s did not answer (%s)", sb.len ? ", " : "", c->sums[i].node->cfg->storage,
				    grpc_code_name(c->sums[i].code));
	}
	log_msgf(LOG_WARN, "replica of repository %lld (\"%s\") on %s differs from its up-to-date peers at "
		 "generation %lld: its references' checksum is %s, %s; repairing it from %s", (long long)c->repo_id,
		 c->relative_path, c->node->cfg->storage, (long long)c->generation, c->sums[0].sum, sb.buf,
		 src->cfg->storage);
	strbuf_release(&sb);
}

static void on_repair_queued(void *arg, int status)
{
	struct check *c = arg;
	if (status < 0 && !c->v->stopping)
		log_msgf(LOG_WARN, "queueing the repair of repository %lld on %s failed", (long long)c->repo_id,
			 c->node->cfg->storage);
	finish(c, status < 0 ? OUT_ERROR : OUT_HELD);
}

static void sums_done(struct check *c)
{
	struct praefect *p = c->v->p;
	struct repo *r = repo_by_id(p, c->repo_id);
	struct node *src;
	const char *target;

	if (c->v->stopping) {
		finish(c, OUT_ERROR);
		return;
	}
	/* a write landed meanwhile (or is landing): the sums say nothing, the objects still can */
	if (!r || r->generation != c->generation || r->writes_in_flight || c->sums[0].code != GRPC_OK ||
	    !repo_up_to_date(r, c->node->cfg->storage) || !(src = outvoted(c, r))) {
		c->step = STEP_FSCK;
		step_on(c);
		return;
	}
	log_differs(c, r, src);
	target = c->node->cfg->storage;
	/* a forced update compares the two again and, if they differ, marks the target outdated and replicates */
	replicator_enqueue_jobs(p, r, src->cfg->storage, &target, 1, 1, "background-verification", on_repair_queued, c);
}

static void on_sum(void *arg, enum grpc_code code, const char *message, const uint8_t *msg, size_t len)
{
	struct sum_call *sc = arg;
	struct check *c = sc->c;
	struct peer_sum *ps = &c->sums[sc->which];
	Gitaly__CalculateChecksumResponse *resp = NULL;

	if (code == GRPC_OK && (resp = gitaly__calculate_checksum_response__unpack(NULL, len, msg))) {
		ps->sum = xstrdup(resp->checksum ? resp->checksum : "");
		gitaly__calculate_checksum_response__free_unpacked(resp, NULL);
	} else if (code == GRPC_OK) {
		code = GRPC_INTERNAL;
	}
	ps->code = code;
	free(sc);
	if (--c->pending == 0)
		sums_done(c);
}

static void ask_sums(struct check *c)
{
	struct repo *r = repo_by_id(c->v->p, c->repo_id);
	const char *storage = c->node->cfg->storage;

	/* only a replica claimed up to date has peers to agree with, and only while no write is moving them */
	if (!r || !repo_up_to_date(r, storage) || r->writes_in_flight) {
		c->step = STEP_FSCK;
		step_on(c);
		return;
	}
	c->generation = r->generation;
	c->sums = xcalloc(r->vs->nr_nodes, sizeof(*c->sums));
	c->sums[c->nr_sums++].node = c->node;
	for (size_t i = 0; i < r->vs->nr_nodes; i++) {
		struct node *o = &r->vs->nodes[i];
		if (o != c->node && o->healthy && repo_up_to_date(r, o->cfg->storage) && !suspect_avoided(o, r->id))
			c->sums[c->nr_sums++].node = o;
	}
	if (c->nr_sums < 2) {
		c->step = STEP_FSCK;
		step_on(c);
		return;
	}
	c->pending = (int)c->nr_sums + 1; /* and this function until every call is started */
	for (size_t i = 0; i < c->nr_sums; i++) {
		struct sum_call *sc = xcalloc(1, sizeof(*sc));

		sc->c = c;
		sc->which = i;
		if (node_unary_repo(c->sums[i].node, c->v->checksum->name, &gitaly__calculate_checksum_request__descriptor,
				    r->replica_path, CHECKSUM_TIMEOUT_MS, on_sum, sc) < 0) {
			c->sums[i].code = GRPC_UNAVAILABLE;
			free(sc);
			c->pending--;
		}
	}
	if (--c->pending == 0)
		sums_done(c);
}

/* --- step 3: are its objects sound? --- */

static void on_fsck(void *arg, enum grpc_code code, const char *message, const uint8_t *msg, size_t len)
{
	struct check *c = arg;
	struct verifier *v = c->v;
	Gitaly__FsckResponse *resp = NULL;
	struct repo *r;

	c->pending = 0;
	if (code == GRPC_NOT_FOUND) {
		finish(c, OUT_INVALID);
		return;
	}
	if (code == GRPC_UNIMPLEMENTED) {
		if (!v->told_unimplemented)
			log_msgf(LOG_WARN, "the background verifier cannot check objects on %s: its node has no Fsck",
				 c->node->cfg->storage);
		v->told_unimplemented = 1;
		finish(c, OUT_VALID); /* existence and references checked: as much as the node allows */
		return;
	}
	if (code == GRPC_OK)
		resp = gitaly__fsck_response__unpack(NULL, len, msg);
	if (!resp) {
		if (!v->stopping)
			log_msgf(LOG_WARN, "Fsck of repository %lld on %s failed: %s", (long long)c->repo_id,
				 c->node->cfg->storage, message && *message ? message : grpc_code_name(code));
		finish(c, OUT_ERROR);
		return;
	}
	if (!resp->error.len) {
		gitaly__fsck_response__free_unpacked(resp, NULL);
		finish(c, OUT_VALID);
		return;
	}
	r = repo_by_id(v->p, c->repo_id);
	if (r && !v->stopping) {
		struct strbuf why = STRBUF_INIT;
		strbuf_addstr(&why, "background verification, git fsck: ");
		strbuf_add(&why, resp->error.data, resp->error.len);
		while (why.len && (why.buf[why.len - 1] == '\n' || why.buf[why.len - 1] == ' '))
			strbuf_setlen(&why, why.len - 1);
		suspect_found_corrupt(v->p, r, c->node, why.buf);
		strbuf_release(&why);
	}
	gitaly__fsck_response__free_unpacked(resp, NULL);
	finish(c, r ? OUT_HELD : OUT_ERROR);
}

static void ask_fsck(struct check *c)
{
	c->pending = 1;
	if (node_unary_repo(c->node, c->v->fsck->name, &gitaly__fsck_request__descriptor, c->replica_path,
			    FSCK_TIMEOUT_MS, on_fsck, c) < 0) {
		c->pending = 0;
		finish(c, OUT_ERROR);
	}
}

static void step_on(struct check *c)
{
	if (c->v->stopping || !c->node->healthy) {
		finish(c, OUT_ERROR);
		return;
	}
	switch (c->step) {
	case STEP_EXISTS:
		ask_exists(c);
		break;
	case STEP_SUMS:
		ask_sums(c);
		break;
	case STEP_FSCK:
		ask_fsck(c);
		break;
	}
}

/* --- the task --- */

static void on_unleased(void *arg, int status, const char *msg, int64_t changed)
{
}

static void on_leased(void *arg, int status, const char *msg, const struct repl_job *jobs, size_t n)
{
	struct verifier *v = arg;
	struct praefect *p = v->p;

	v->leasing = 0;
	if (status < 0) {
		log_msgf(LOG_WARN, "failed a background verification run: %s", msg ? msg : "store error");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const struct repl_job *j = &jobs[i];
		struct vstorage *vs = praefect_vs(p, j->virtual_storage, strlen(j->virtual_storage));
		struct node *node = vs ? vs_node(vs, j->target_storage) : NULL;
		struct check *c;

		if (!node || v->stopping) {
			if (!v->stopping)
				store_end_verification(p->store, j->repository_id, j->target_storage, STORE_VERIFY_ERROR, 0,
						       on_unleased, NULL);
			continue;
		}
		metric_inc(pm(p, PM_VERIFY_DEQUEUED), METRIC_LV(vs->cfg->name, node->cfg->storage));
		if (running(v, j->repository_id, node))
			continue; /* a verification that outlived its lease: it ends this one too */
		c = xcalloc(1, sizeof(*c));
		c->v = v;
		c->node = node;
		c->repo_id = j->repository_id;
		c->relative_path = xstrdup(j->relative_path ? j->relative_path : "");
		c->replica_path = xstrdup(j->replica_path ? j->replica_path : "");
		c->next = v->checks;
		v->checks = c;
		c->step = STEP_EXISTS;
		step_on(c);
	}
}

static void on_released(void *arg, int status, const char *msg, int64_t count)
{
	struct verifier *v = arg;
	v->releasing = 0;
	if (status < 0)
		log_msgf(LOG_WARN, "failed releasing expired leases: %s", msg ? msg : "store error");
	else if (count > 0) {
		metric_add(pm(v->p, PM_VERIFY_RELEASED), NULL, (double)count);
		log_msgf(LOG_INFO, "released %lld stale verification leases", (long long)count);
	}
}

void verifier_run(struct praefect *p)
{
	struct verifier *v = p->verifier;
	struct store_verify_slot *slots;
	size_t nr = 0, all = 0;
	uint64_t now = now_ms();

	if (!v || v->stopping || !p->cfg.verification_interval_ms)
		return;
	if (!v->releasing && now - v->released_ms >= RELEASE_EVERY_MS) {
		v->releasing = 1;
		v->released_ms = now;
		store_release_verification_leases(p->store, VERIFY_LEASE_MS, on_released, v);
	}
	if (v->leasing)
		return;
	for (size_t i = 0; i < p->nr_vs; i++)
		all += p->vs[i].nr_nodes;
	slots = xcalloc(all + 1, sizeof(*slots));
	for (size_t i = 0; i < p->nr_vs; i++) {
		for (size_t j = 0; j < p->vs[i].nr_nodes; j++) {
			struct node *n = &p->vs[i].nodes[j];
			size_t busy = in_flight(v, n);
			if (!n->healthy || busy >= (size_t)p->cfg.verifications_per_node)
				continue;
			slots[nr].virtual_storage = p->vs[i].cfg->name;
			slots[nr].storage = n->cfg->storage;
			slots[nr++].max = (size_t)p->cfg.verifications_per_node - busy;
		}
	}
	if (nr) {
		v->leasing = 1;
		store_lease_verifications(p->store, slots, nr, VERIFY_BATCH, (int64_t)p->cfg.verification_interval_ms,
					  VERIFY_LEASE_MS, on_leased, v);
	}
	free(slots);
}

void verifier_init(struct praefect *p)
{
	struct verifier *v = xcalloc(1, sizeof(*v));
	v->p = p;
	v->exists = praefect_method("/gitaly.RepositoryService/RepositoryExists");
	v->checksum = praefect_method("/gitaly.RepositoryService/CalculateChecksum");
	v->fsck = praefect_method("/gitaly.RepositoryService/Fsck");
	v->released_ms = now_ms();
	p->verifier = v;
	/* upstream's series exist from the start for every storage (and result) */
	for (size_t i = 0; p->metrics && i < p->nr_vs; i++)
		for (size_t j = 0; j < p->vs[i].nr_nodes; j++) {
			static const char *const results[] = { "error", "invalid", "valid" };
			const char *vsn = p->vs[i].cfg->name, *st = p->vs[i].nodes[j].cfg->storage;
			metric_touch(pm(p, PM_VERIFY_DEQUEUED), METRIC_LV(vsn, st));
			for (size_t k = 0; k < ARRAY_SIZE(results); k++)
				metric_touch(pm(p, PM_VERIFY_COMPLETED), METRIC_LV(vsn, st, results[k]));
		}
	if (p->cfg.verification_interval_ms)
		log_msgf(LOG_INFO, "background verifier started: verification_interval %llums, delete_invalid_records %s, "
			 "%lld verifications per node", (unsigned long long)p->cfg.verification_interval_ms,
			 p->cfg.delete_invalid_records ? "true" : "false", (long long)p->cfg.verifications_per_node);
	else
		log_msgf(LOG_INFO, "background verifier is disabled");
}

void verifier_stop(struct praefect *p)
{
	if (p->verifier)
		p->verifier->stopping = 1;
}

void verifier_free(struct praefect *p)
{
	struct verifier *v = p->verifier;
	if (!v)
		return;
	while (v->checks)
		check_free(v->checks);
	free(v);
	p->verifier = NULL;
}
