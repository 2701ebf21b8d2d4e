/*
 * Replication status per storage (docs/technical/replication-status.md): the
 * backlog from the queue listing, the outdated replicas and since when from
 * the in-memory records, the throughput from the jobs the replicator
 * completed; sampled with the other series by the metrics task (once a
 * second and on each scrape) and read by ReplicationStatus and the status page.
 */
#include "praefect.h"
#include "series.h"
#include "base/util.h"
#include "base/log.h"

#include <math.h>
#include <string.h>
#include <time.h>

/* the EWMA's time constant: "jobs per second over the last minute" */
#define THROUGHPUT_TAU_S 60.0
/* samples closer than this (a scrape right after a tick) do not move the throughput */
#define THROUGHPUT_MIN_DT_MS 500
/*
 * outdated_since changes written to the store per sample: a node that goes
 * away outdates all its replicas at once, and the store should not get one
 * write per repository in one second; the rest follow in the next samples.
 */
#define OUTDATED_WRITES_PER_SAMPLE 256

int64_t rstatus_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_outdated_since_stored(void *arg, int status, const char *msg)
{
	(void)arg;
	if (status < 0)
		log_msgf(LOG_WARN, "recording when a replica fell behind: %s", msg ? msg : "store error");
}

/* Keep the store's outdated_since in step with the record (replica rows only; budgeted). */
static void store_outdated_since(struct praefect *p, struct repo *r, struct replica *rep)
{
	if (!rep->outdated_unsaved || rep->generation == GENERATION_UNKNOWN || !p->metrics->rstatus_writes)
		return;
	p->metrics->rstatus_writes--;
	rep->outdated_unsaved = 0;
	store_set_outdated_since(p->store, r->id, rep->storage, rep->outdated_since_ms, on_outdated_since_stored, NULL);
}

void rstatus_begin(struct praefect *p)
{
	p->metrics->rstatus_writes = OUTDATED_WRITES_PER_SAMPLE;
	for (size_t i = 0; i < p->nr_vs; i++)
		for (size_t j = 0; j < p->vs[i].nr_nodes; j++) {
			struct node_repl_status *s = &p->vs[i].nodes[j].repl;
			s->outdated = 0;
			s->oldest_outdated_ms = 0;
			s->oldest_outdated_repo = 0;
		}
}

void rstatus_note_repo(struct praefect *p, struct repo *r, int64_t now)
{
	for (size_t i = 0; i < r->nr_replicas; i++) {
		struct replica *rep = &r->replicas[i];
		struct node *n;
		/* a replica row behind, or an assigned storage with no replica yet */
		int behind = rep->generation < r->generation &&
			     (rep->generation != GENERATION_UNKNOWN || repo_assigned(r, rep->storage));

		if (!behind) {
			rep->outdated_unsaved |= rep->outdated_since_ms != 0;
			rep->outdated_since_ms = 0;
			store_outdated_since(p, r, rep);
			continue;
		}
		if (!rep->outdated_since_ms) {
			rep->outdated_since_ms = now;
			rep->outdated_unsaved = 1;
		}
		store_outdated_since(p, r, rep);
		n = vs_node(r->vs, rep->storage);
		if (!n)
			continue;
		n->repl.outdated++;
		if (!n->repl.oldest_outdated_ms || rep->outdated_since_ms < n->repl.oldest_outdated_ms ||
		    (rep->outdated_since_ms == n->repl.oldest_outdated_ms && r->id < n->repl.oldest_outdated_repo)) {
			n->repl.oldest_outdated_ms = rep->outdated_since_ms;
			n->repl.oldest_outdated_repo = r->id;
		}
	}
}

void rstatus_end(struct praefect *p, int64_t now)
{
	uint64_t mono = now_ms();
	uint64_t dt = mono - p->metrics->rstatus_at_ms;
	int step = !p->metrics->rstatus_at_ms || dt >= THROUGHPUT_MIN_DT_MS;

	for (size_t i = 0; i < p->nr_vs; i++) {
		struct vstorage *vs = &p->vs[i];
		for (size_t j = 0; j < vs->nr_nodes; j++) {
			struct node *n = &vs->nodes[j];
			struct node_repl_status *s = &n->repl;
			const char *name = n->cfg->storage;

			if (step && p->metrics->rstatus_at_ms) {
				double rate = (double)(s->completed - s->completed_seen) * 1000.0 / (double)dt;
				double alpha = 1.0 - exp(-(double)dt / 1000.0 / THROUGHPUT_TAU_S);
				s->throughput += alpha * (rate - s->throughput);
				s->sampled = 1;
			}
			if (step)
				s->completed_seen = s->completed;
			metric_set(pm(p, PM_BACKLOG_JOBS), METRIC_LV(vs->cfg->name, name),
				   (double)(s->ready + s->in_progress + s->failed));
			metric_set(pm(p, PM_BACKLOG_OLDEST), METRIC_LV(vs->cfg->name, name),
				   s->oldest_job_ms ? (double)MAX(now - s->oldest_job_ms, 0) / 1000.0 : 0.0);
			metric_set(pm(p, PM_THROUGHPUT), METRIC_LV(vs->cfg->name, name), s->throughput);
			metric_set(pm(p, PM_OUTDATED), METRIC_LV(vs->cfg->name, name), (double)s->outdated);
			metric_set(pm(p, PM_OUTDATED_AGE), METRIC_LV(vs->cfg->name, name),
				   s->oldest_outdated_ms ? (double)MAX(now - s->oldest_outdated_ms, 0) / 1000.0 : 0.0);
		}
	}
	if (step)
		p->metrics->rstatus_at_ms = mono;
}

void rstatus_note_jobs(struct praefect *p, const struct repl_job *jobs, size_t n)
{
	for (size_t i = 0; i < p->nr_vs; i++)
		for (size_t j = 0; j < p->vs[i].nr_nodes; j++) {
			struct node_repl_status *s = &p->vs[i].nodes[j].repl;
			s->ready = s->in_progress = s->failed = 0;
			s->oldest_job_ms = 0;
		}
	for (size_t i = 0; i < n; i++) {
		const struct repl_job *job = &jobs[i];
		struct vstorage *vs;
		struct node *node;

		if (job->state != JOB_READY && job->state != JOB_IN_PROGRESS && job->state != JOB_FAILED)
			continue;
		vs = praefect_vs(p, job->virtual_storage, strlen(job->virtual_storage));
		node = vs ? vs_node(vs, job->target_storage) : NULL;
		if (!node)
			continue;
		if (job->state == JOB_READY)
			node->repl.ready++;
		else if (job->state == JOB_IN_PROGRESS)
			node->repl.in_progress++;
		else
			node->repl.failed++;
		if (job->created_at_ms > 0 && (!node->repl.oldest_job_ms || job->created_at_ms < node->repl.oldest_job_ms))
			node->repl.oldest_job_ms = job->created_at_ms;
	}
}
