/*
 * Primary election, per repository and lazily, as upstream's per-repository
 * elector: the stored primary keeps its role while it is healthy, assigned
 * and up to date; otherwise a random valid replica takes over and the choice
 * is written to the store.
 *
 * Several praefects on one database (docs/technical/multi-praefect.md):
 * "healthy" is the majority's view (node_consensus_healthy()), so a node
 * only one praefect cannot reach keeps its role; the choice is stored with a
 * compare-and-set on the primary this praefect saw, and a praefect that lost
 * the race adopts the winner's choice.
 */
#include "praefect.h"
#include "base/util.h"
#include "base/log.h"
#include "status/page.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct swap {
	struct praefect *p;
	int64_t id;
	char *mine;
};

static void swap_free(struct swap *w)
{
	free(w->mine);
	free(w);
}

/* After a lost race: the database's view of the repository, then the held calls go on. */
static void on_refreshed(void *arg, int status, const char *msg, const struct store_repo *repos, size_t n)
{
	struct swap *w = arg;
	struct repo *r = repo_by_id(w->p, w->id);

	if (r && status == 0 && n == 1 && repos[0].id == r->id)
		repo_refresh(r, &repos[0]);
	else if (status < 0 && status != -ENOENT)
		log_msgf(LOG_WARN, "reading repository %lld after a lost election: %s", (long long)w->id,
			 msg ? msg : "store error");
	if (r)
		r->electing = 0;
	route_release_held_elections(w->p, w->id);
	swap_free(w);
}

static void on_primary_stored(void *arg, int status, const char *msg, const char *current)
{
	struct swap *w = arg;
	struct repo *r = repo_by_id(w->p, w->id);

	if (status == -EAGAIN && r) {
		log_msgf(LOG_INFO, "primary node changed by another praefect: repository %lld is on %s, not %s",
			 (long long)r->id, current ? current : "(none)", w->mine);
		repo_set_primary(r, current);
		if (r->electing) {
			store_get_repository(w->p->store, r->vs->cfg->name, r->relative_path, on_refreshed, w);
			return;
		}
	} else if (status < 0 && status != -EAGAIN) {
		log_msgf(LOG_WARN, "storing elected primary: %s", msg ? msg : "store error");
	} else if (status == 0 && r && r->primary && !strcmp(r->primary, w->mine)) {
		/* the up-to-date replicas' records name the new primary (docs/technical/recovery.md) */
		for (size_t i = 0; i < r->nr_replicas; i++)
			if (r->replicas[i].generation == r->generation)
				replica_info_send(w->p, r, r->replicas[i].storage, r->generation);
	}
	if (r)
		r->electing = 0;
	route_release_held_elections(w->p, w->id);
	swap_free(w);
}

struct node *elect_primary(struct praefect *p, struct repo *r)
{
	struct node *cur = r->primary ? vs_node(r->vs, r->primary) : NULL;
	struct node **valid;
	size_t nv = 0;
	struct node *chosen;
	struct swap *w;

	if (cur && node_consensus_healthy(cur) && repo_up_to_date(r, r->primary) && repo_assigned(r, r->primary))
		return cur;
	valid = xcalloc(r->vs->nr_nodes, sizeof(*valid));
	for (size_t i = 0; i < r->vs->nr_nodes; i++) {
		struct node *n = &r->vs->nodes[i];
		/* one this praefect can reach, and the majority too */
		if (n->healthy && node_consensus_healthy(n) && repo_up_to_date(r, n->cfg->storage) && repo_assigned(r, n->cfg->storage))
			valid[nv++] = n;
	}
	chosen = nv ? valid[(size_t)rand() % nv] : NULL;
	free(valid);
	if (!chosen)
		return cur; /* no valid primary: keep the stored one (the caller reports why) */
	log_msgf(LOG_INFO, "primary node changed: repository %lld from %s to %s", (long long)r->id,
		 r->primary ? r->primary : "(none)", chosen->cfg->storage);
	if (r->primary)
		status_record_failover(p, r, r->primary, chosen->cfg->storage);
	w = xcalloc(1, sizeof(*w));
	w->p = p;
	w->id = r->id;
	w->mine = xstrdup(chosen->cfg->storage);
	/* shared store: calls wait for the database's agreement (router/route.c hold_election()) */
	r->electing = store_is_shared(p->store);
	store_swap_primary(p->store, r->id, r->primary, w->mine, on_primary_stored, w);
	repo_set_primary(r, chosen->cfg->storage);
	return chosen;
}
