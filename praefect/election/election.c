/*
 * Primary election, per repository and lazily, as upstream's per-repository
 * elector: the stored primary keeps its role while it is healthy, assigned
 * and up to date; otherwise a random valid replica takes over and the choice
 * is written to the store.
 */
#include "praefect.h"
#include "base/util.h"
#include "base/log.h"
#include "status/page.h"

#include <stdlib.h>
#include <string.h>

static void on_primary_stored(void *arg, int status, const char *msg)
{
	if (status < 0)
		log_msgf(LOG_WARN, "storing elected primary: %s", msg ? msg : "store error");
}

struct node *elect_primary(struct praefect *p, struct repo *r)
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
	chosen = nv ? valid[(size_t)rand() % nv] : NULL;
	free(valid);
	if (!chosen)
		return cur; /* no valid primary: keep the stored one (the caller reports why) */
	log_msgf(LOG_INFO, "primary node changed: repository %lld from %s to %s", (long long)r->id,
		 r->primary ? r->primary : "(none)", chosen->cfg->storage);
	if (r->primary)
		status_record_failover(p, r, r->primary, chosen->cfg->storage);
	free(r->primary);
	r->primary = xstrdup(chosen->cfg->storage);
	store_set_primary(p->store, r->id, r->primary, on_primary_stored, NULL);
	return chosen;
}
