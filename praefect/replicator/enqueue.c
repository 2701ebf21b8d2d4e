/*
 * Queueing replication jobs (docs/technical/praefect-replication.md): the
 * request finalizer queues one "update" job per outdated target and wakes
 * the targets' workers once every job is in the store.
 */
#include "praefect.h"
#include "base/util.h"
#include "base/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct enqueue_batch {
	struct praefect *p;
	struct repo *r;
	size_t pending;
	int status;
	void (*done)(void *arg, int status);
	void *arg;
	struct vstorage *vs;
	char **targets;
	size_t nr;
};

static void on_enqueued(void *arg, int status, const char *msg, int64_t id)
{
	struct enqueue_batch *b = arg;
	if (status < 0 && status != -EEXIST) {
		log_msgf(LOG_WARN, "queueing replication job: %s", msg ? msg : "store error");
		b->status = status;
	}
	if (--b->pending)
		return;
	for (size_t i = 0; i < b->nr; i++) {
		replicator_kick(b->p, b->vs, b->targets[i]);
		free(b->targets[i]);
	}
	free(b->targets);
	b->done(b->arg, b->status);
	free(b);
}

void replicator_enqueue_jobs(struct praefect *p, struct repo *r, const char *source,
			     const char *const *targets, size_t n, int force, const char *correlation_id,
			     void (*done)(void *arg, int status), void *arg)
{
	struct enqueue_batch *b = xcalloc(1, sizeof(*b));
	b->p = p;
	b->r = r;
	b->pending = n;
	b->done = done;
	b->arg = arg;
	b->vs = r->vs;
	b->targets = xcalloc(n ? n : 1, sizeof(char *));
	b->nr = n;
	for (size_t i = 0; i < n; i++) {
		struct repl_job j;
		b->targets[i] = xstrdup(targets[i]);
		replicator_job_for(&j, r, "update", source, targets[i], correlation_id);
		j.force = force;
		store_enqueue(p->store, &j, on_enqueued, b);
	}
	if (n == 0) {
		done(arg, 0);
		free(b->targets);
		free(b);
	}
}

void replicator_job_for(struct repl_job *j, const struct repo *r, const char *change, const char *source,
			const char *target, const char *correlation_id)
{
	memset(j, 0, sizeof(*j));
	j->change = change;
	j->repository_id = r->id;
	j->virtual_storage = r->vs->cfg->name;
	j->relative_path = r->relative_path;
	j->replica_path = "";          /* the worker resolves it */
	j->source_storage = source ? source : "";
	j->target_storage = target;
	j->correlation_id = correlation_id ? correlation_id : "";
}
