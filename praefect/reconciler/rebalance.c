/*
 * Rebalancing (ours; docs/technical/praefect-replication.md, "Rebalancing"):
 * with a replication factor, a virtual storage whose storages hold very
 * different numbers of assigned replicas (a node was added) moves
 * assignments from the fullest healthy storage to the emptiest, a few
 * repositories at a time ([reconciliation] rebalance_moves).
 *
 * A move never drops a repository below its factor: the new storage is
 * assigned first (the reconciler creates its replica), and only once that
 * replica is up to date is the old storage's assignment removed (the
 * reconciler then deletes the old replica). Storages count as balanced when
 * they differ by at most one replica per hundred repositories (at least one).
 */
#include "praefect.h"
#include "base/util.h"
#include "base/log.h"
#include "base/strvec.h"

#include <stdlib.h>
#include <string.h>

enum move_phase {
	MOVE_ASSIGNING,    /* the store is adding the target's assignment */
	MOVE_CATCHING_UP,  /* the target's replica is being created */
	MOVE_RELEASING,    /* the store is removing the source's assignment */
};

struct move {
	struct rebalancer *rb;
	int64_t repo_id;
	const struct vstorage *vs;
	const char *from, *to;     /* configuration strings */
	enum move_phase phase;
	int done;
};

struct rebalancer {
	struct praefect *p;
	struct move **moves;
	size_t nr, alloc;
};

static struct rebalancer *rebalancer_get(struct praefect *p)
{
	if (!p->rebalancer) {
		p->rebalancer = xcalloc(1, sizeof(*p->rebalancer));
		p->rebalancer->p = p;
	}
	return p->rebalancer;
}

static struct move *moving(const struct rebalancer *rb, int64_t id)
{
	for (size_t i = 0; i < rb->nr; i++)
		if (rb->moves[i]->repo_id == id)
			return rb->moves[i];
	return NULL;
}

static void drop_done(struct rebalancer *rb)
{
	size_t k = 0;
	for (size_t i = 0; i < rb->nr; i++) {
		if (rb->moves[i]->done)
			free(rb->moves[i]);
		else
			rb->moves[k++] = rb->moves[i];
	}
	rb->nr = k;
}

/* The repository's assigned storages, with `add` and without `drop` (either may be NULL). */
static void assigned_set(const struct repo *r, const char *add, const char *drop, struct strvec *out)
{
	for (size_t i = 0; i < r->vs->nr_nodes; i++) {
		const char *s = r->vs->nodes[i].cfg->storage;
		if ((repo_assigned(r, s) || (add && !strcmp(s, add))) && !(drop && !strcmp(s, drop)))
			strvec_push(out, s);
	}
}

static void on_released(void *arg, int status, const char *msg)
{
	struct move *m = arg;
	struct praefect *p = m->rb->p;
	struct repo *r = repo_by_id(p, m->repo_id);

	if (status < 0) {
		log_msgf(LOG_WARN, "rebalancing repository %lld: removing the assignment of %s: %s", (long long)m->repo_id,
			 m->from, msg ? msg : "store error");
		m->phase = MOVE_CATCHING_UP;   /* tried again at the next run */
		return;
	}
	if (r) {
		struct replica *rep = repo_replica(r, m->from);
		repo_changed(p);
		if (rep)
			rep->assigned = 0;
		log_msgf(LOG_INFO, "rebalanced repository %lld (\"%s\"): its replica on %s moved to %s", (long long)r->id,
			 r->relative_path, m->from, m->to);
		/* a primary on the old storage hands over now rather than at the next call (election.c) */
		if (r->primary && !strcmp(r->primary, m->from))
			elect_primary(p, r);
		reconciler_soon(p, r->id);     /* deletes the replica on the old storage */
	}
	m->done = 1;
}

static void on_assigned(void *arg, int status, const char *msg)
{
	struct move *m = arg;
	struct praefect *p = m->rb->p;
	struct repo *r = repo_by_id(p, m->repo_id);

	if (status < 0 || !r) {
		if (status < 0)
			log_msgf(LOG_WARN, "rebalancing repository %lld: assigning %s: %s", (long long)m->repo_id, m->to,
				 msg ? msg : "store error");
		m->done = 1;
		return;
	}
	repo_replica_add(r, m->to)->assigned = 1;
	m->phase = MOVE_CATCHING_UP;
	reconciler_soon(p, r->id);         /* queues the new replica's creation */
}

/* Moves whose new replica caught up give up their old storage. */
static void advance(struct rebalancer *rb)
{
	for (size_t i = 0; i < rb->nr; i++) {
		struct move *m = rb->moves[i];
		struct repo *r;
		struct strvec set = STRVEC_INIT;

		if (m->phase != MOVE_CATCHING_UP || m->done)
			continue;
		r = repo_by_id(rb->p, m->repo_id);
		if (!r || !repo_assigned(r, m->to) || !repo_assigned(r, m->from)) {
			m->done = 1;   /* deleted, or its assignments were changed by an admin meanwhile */
			continue;
		}
		if (!repo_up_to_date(r, m->to) || r->writes_in_flight)
			continue;
		strvec_init(&set);
		assigned_set(r, NULL, m->from, &set);
		m->phase = MOVE_RELEASING;
		store_set_assignments(rb->p->store, r->id, (const char *const *)set.v, set.nr, on_released, m);
		strvec_clear(&set);
	}
}

/* Every assigned replica up to date and no write in flight: safe to move. */
static int movable(const struct repo *r, const char *from, const char *to)
{
	if (r->writes_in_flight || !repo_assigned(r, from) || repo_assigned(r, to))
		return 0;
	/* a pool stays where its members link to it; it follows them instead (object-pools.md) */
	if (!strncmp(r->replica_path, "@cluster/pools/", 15))
		return 0;
	for (size_t i = 0; i < r->vs->nr_nodes; i++) {
		const char *s = r->vs->nodes[i].cfg->storage;
		if (repo_assigned(r, s) && !repo_up_to_date(r, s))
			return 0;
	}
	return 1;
}

static void balance_vs(struct rebalancer *rb, struct vstorage *vs)
{
	struct praefect *p = rb->p;
	size_t n = vs->nr_nodes, nrepos = 0, in_flight = 0, allowed;
	int64_t *count = xcalloc(n, sizeof(*count));

	for (size_t i = 0; i < p->repos.cap; i++) {
		const struct repo *r = p->repos.by_id[i];
		if (!r)
			continue;
		if (r->vs != vs)
			continue;
		nrepos++;
		for (size_t k = 0; k < n; k++)
			count[k] += repo_assigned(r, vs->nodes[k].cfg->storage);
	}
	/* a move in progress already counts for its target; count it gone from its source */
	for (size_t i = 0; i < rb->nr; i++) {
		const struct move *m = rb->moves[i];
		if (m->vs != vs || m->done)
			continue;
		in_flight++;
		for (size_t k = 0; k < n; k++)
			if (!strcmp(vs->nodes[k].cfg->storage, m->from) && m->phase != MOVE_ASSIGNING)
				count[k]--;
	}
	allowed = nrepos / 100 > 1 ? nrepos / 100 : 1;
	while ((int64_t)in_flight < p->cfg.rebalance_moves) {
		size_t hi = n, lo = n;
		struct repo *pick = NULL;
		for (size_t k = 0; k < n; k++) {
			if (!vs->nodes[k].healthy)
				continue;
			if (hi == n || count[k] > count[hi])
				hi = k;
			if (lo == n || count[k] < count[lo])
				lo = k;
		}
		if (hi == n || count[hi] - count[lo] <= (int64_t)allowed)
			break;
		for (size_t i = 0; !pick && i < p->repos.cap; i++) {
			struct repo *r = p->repos.by_id[i];
			if (!r)
				continue;
			if (r->vs == vs && !moving(rb, r->id) &&
			    movable(r, vs->nodes[hi].cfg->storage, vs->nodes[lo].cfg->storage))
				pick = r;
		}
		if (!pick)
			break;
		{
			struct move *m = xcalloc(1, sizeof(*m));
			struct strvec set = STRVEC_INIT;
			m->rb = rb;
			m->repo_id = pick->id;
			m->vs = vs;
			m->from = vs->nodes[hi].cfg->storage;
			m->to = vs->nodes[lo].cfg->storage;
			m->phase = MOVE_ASSIGNING;
			ALLOC_GROW(rb->moves, rb->nr + 1, rb->alloc);
			rb->moves[rb->nr++] = m;
			log_msgf(LOG_INFO, "rebalancing %s: moving the replica of repository %lld from %s (%lld assigned) to %s (%lld)",
				 vs->cfg->name, (long long)pick->id, m->from, (long long)count[hi], m->to, (long long)count[lo]);
			strvec_init(&set);
			assigned_set(pick, m->to, NULL, &set);
			store_set_assignments(p->store, pick->id, (const char *const *)set.v, set.nr, on_assigned, m);
			strvec_clear(&set);
		}
		count[hi]--;
		count[lo]++;
		in_flight++;
	}
	free(count);
}

void rebalancer_run(struct praefect *p)
{
	struct rebalancer *rb = rebalancer_get(p);

	drop_done(rb);
	advance(rb);
	for (size_t i = 0; i < p->nr_vs; i++) {
		struct vstorage *vs = &p->vs[i];
		if (vs->cfg->default_replication_factor > 0 && (size_t)vs->cfg->default_replication_factor < vs->nr_nodes)
			balance_vs(rb, vs);
	}
}

void rebalancer_free(struct praefect *p)
{
	struct rebalancer *rb = p->rebalancer;
	if (!rb)
		return;
	/* store callbacks have all run by now: the loop ended */
	for (size_t i = 0; i < rb->nr; i++)
		free(rb->moves[i]);
	free(rb->moves);
	free(rb);
	p->rebalancer = NULL;
}
