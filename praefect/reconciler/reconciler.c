/*
 * The reconciler (docs/technical/praefect-replication.md): finds outdated replicas on healthy
 * assigned storages and queues `update` jobs from a healthy up-to-date
 * source, and queues `delete_replica` jobs for replicas on storages no longer
 * assigned. It runs every [reconciliation] scheduling_interval (0 disables the
 * timer) and, ours, shortly after any node turns healthy, so a returning
 * node catches up in seconds rather than minutes. It reads the in-memory
 * model; the store's enqueue deduplication keeps repeated runs harmless.
 */
#include "praefect.h"
#include "metrics/series.h"
#include "base/util.h"
#include "base/log.h"
#include "base/strvec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct recon_run {
	struct praefect *p;
	size_t pending;
	size_t scheduled;
	size_t queued;         /* jobs it asked for (queued or already there) */
	uint64_t start_ns;     /* a periodic run, timed for its metric; 0: a targeted one */
};

static void on_job_queued(void *arg, int status, const char *msg, int64_t id)
{
	struct recon_run *run = arg;
	if (status == 0)
		run->scheduled++;
	else if (status != -EEXIST)
		log_msgf(LOG_WARN, "reconciler: queueing job: %s", msg ? msg : "store error");
	if (--run->pending)
		return;
	if (run->start_ns)
		metric_observe(pm(run->p, PM_RECONCILE_SECONDS), NULL, (double)(now_ns() - run->start_ns) / 1e9);
	if (run->scheduled) {
		log_msgf(LOG_INFO, "reconciler scheduled %zu replication jobs", run->scheduled);
		for (size_t i = 0; i < run->p->nr_vs; i++)
			for (size_t j = 0; j < run->p->vs[i].nr_nodes; j++)
				replicator_kick(run->p, &run->p->vs[i], run->p->vs[i].nodes[j].cfg->storage);
	}
	free(run);
}

static void queue(struct recon_run *run, struct repo *r, const char *change, const char *source,
		  const char *target)
{
	struct repl_job j;
	replicator_job_for(&j, r, change, source, target, "reconciler");
	run->pending++;
	run->queued++;
	store_enqueue(run->p->store, &j, on_job_queued, run);
}

static int has_assignments(const struct repo *r)
{
	for (size_t i = 0; i < r->nr_replicas; i++)
		if (r->replicas[i].assigned && vs_node(r->vs, r->replicas[i].storage))
			return 1;
	return 0;
}

static void reconcile_repo(struct recon_run *run, struct repo *r)
{
	struct node **sources = xcalloc(r->vs->nr_nodes, sizeof(*sources));
	size_t ns = 0;
	int64_t min_gen = INT64_MAX;

	for (size_t i = 0; i < r->vs->nr_nodes; i++) {
		struct node *n = &r->vs->nodes[i];
		/* never a replica reads avoid: its corruption would be copied (router/suspect.c) */
		if (n->healthy && repo_up_to_date(r, n->cfg->storage) && !suspect_avoided(n, r->id))
			sources[ns++] = n;
	}
	/* update jobs for outdated or missing replicas on healthy assigned storages */
	for (size_t i = 0; ns && i < r->vs->nr_nodes; i++) {
		struct node *t = &r->vs->nodes[i];
		const char *ts = t->cfg->storage;
		if (!t->healthy || repo_up_to_date(r, ts) || !repo_assigned(r, ts))
			continue;
		queue(run, r, "update", sources[(size_t)rand() % ns]->cfg->storage, ts);
	}
	/* one delete_replica job for a replica on an unassigned storage, once every assigned one is caught up */
	if (has_assignments(r)) {
		for (size_t i = 0; i < r->vs->nr_nodes; i++) {
			const char *s = r->vs->nodes[i].cfg->storage;
			struct replica *rep = repo_replica(r, s);
			int64_t g = rep ? rep->generation : GENERATION_UNKNOWN;
			if (repo_assigned(r, s) && g < min_gen)
				min_gen = g;
		}
		for (size_t i = 0; i < r->nr_replicas; i++) {
			struct replica *rep = &r->replicas[i];
			struct node *u = vs_node(r->vs, rep->storage);
			if (!u || !u->healthy || rep->generation < 0 || repo_assigned(r, rep->storage))
				continue;
			if (rep->generation <= min_gen) {
				queue(run, r, "delete_replica", NULL, rep->storage);
				break;
			}
		}
	}
	free(sources);
}

static void key_of(int64_t id, char out[24])
{
	snprintf(out, 24, "%lld", (long long)id);
}

void reconciler_soon(struct praefect *p, int64_t id)
{
	char k[24];
	key_of(id, k);
	if (!hashmap_get(&p->reconcile_marked, k, strlen(k)))
		hashmap_put(&p->reconcile_marked, k, strlen(k), p);
	schedule_kick(p, TASK_RECONCILE_SOON);
}

void reconciler_run_marked(struct praefect *p)
{
	struct recon_run *run = xcalloc(1, sizeof(*run));
	const struct hashmap_entry *e;
	struct strvec keys = STRVEC_INIT;

	strvec_init(&keys);
	for (size_t i = 0; hashmap_next(&p->reconcile_marked, &i, &e);)
		strvec_pushf(&keys, "%.*s", (int)e->klen, e->key);
	hashmap_release(&p->reconcile_marked);
	hashmap_init(&p->reconcile_marked);
	run->p = p;
	run->pending = 1;
	for (size_t i = 0; i < keys.nr; i++) {
		struct repo *r = repo_by_id(p, strtoll(keys.v[i], NULL, 10));
		if (r)
			reconcile_repo(run, r);
	}
	strvec_clear(&keys);
	on_job_queued(run, -EEXIST, NULL, 0);
}

void reconciler_run(struct praefect *p)
{
	struct recon_run *run;
	uint64_t health = praefect_health_signature(p);
	uint64_t start_ns = now_ns();

	/*
	 * What a run queues follows from the records and the nodes' health alone
	 * when it queues nothing (suspects only narrow the sources of jobs): a
	 * run that found nothing, over the same records and health, is not repeated.
	 */
	if (p->reconciled.idle && p->reconciled.epoch == p->model_epoch && p->reconciled.health == health) {
		metric_observe(pm(p, PM_RECONCILE_SECONDS), NULL, (double)(now_ns() - start_ns) / 1e9);
		return;
	}
	run = xcalloc(1, sizeof(*run));
	run->p = p;
	run->start_ns = start_ns;
	run->pending = 1; /* held until the walk is over */
	for (size_t i = 0; i < p->repos.cap; i++) {
		struct repo *r = p->repos.by_id[i];
		int healthy = 0;
		if (!r)
			continue;
		for (size_t k = 0; k < r->vs->nr_nodes; k++)
			healthy += r->vs->nodes[k].healthy;
		if (healthy >= 2)
			reconcile_repo(run, r);
	}
	p->reconciled.idle = !run->queued;
	p->reconciled.epoch = p->model_epoch;
	p->reconciled.health = health;
	on_job_queued(run, -EEXIST, NULL, 0);
}


void praefect_node_health_changed(struct praefect *p, struct node *n)
{
	if (!n->healthy)
		return;
	/* its own jobs, and jobs elsewhere that waited for it as their source */
	for (size_t i = 0; i < n->vs->nr_nodes; i++)
		replicator_kick(p, n->vs, n->vs->nodes[i].cfg->storage);
	/* a node came back: repair what it missed now, not at the next period
	 * (no-op until the reconcile task is scheduled, once praefect serves) */
	schedule_kick(p, TASK_RECONCILE);
}
