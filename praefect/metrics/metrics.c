/*
 * Numbers operators watch, logged when they change (the /metrics endpoint
 * comes later): repositories with no valid primary ("unavailable") and the
 * replication queue depth. Checked once a second (task metrics, schedule.c)
 * from the in-memory model and the store.
 */
#include "praefect.h"
#include "base/log.h"

static int repo_available(struct repo *r)
{
	for (size_t i = 0; i < r->vs->nr_nodes; i++) {
		struct node *n = &r->vs->nodes[i];
		if (n->healthy && repo_up_to_date(r, n->cfg->storage) && repo_assigned(r, n->cfg->storage))
			return 1;
	}
	return 0;
}

static void on_queue_depth(void *arg, int status, const char *msg, int64_t depth)
{
	struct praefect *p = arg;
	if (status == 0 && depth != p->metric_queue_depth) {
		log_msgf(LOG_INFO, "replication queue depth: %lld", (long long)depth);
		p->metric_queue_depth = depth;
	}
}

void metrics_tick(struct praefect *p)
{
	const struct hashmap_entry *e;
	int64_t unavailable = 0;
	for (size_t i = 0; hashmap_next(&p->repos_by_id, &i, &e);)
		unavailable += !repo_available(e->value);
	if (unavailable != p->metric_unavailable) {
		log_msgf(unavailable ? LOG_WARN : LOG_INFO, "unavailable repositories: %lld", (long long)unavailable);
		p->metric_unavailable = unavailable;
	}
	store_count_jobs(p->store, on_queue_depth, p);
}
