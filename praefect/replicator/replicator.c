/*
 * Replication workers (docs/technical/praefect-replication.md): one worker per (virtual
 * storage, target storage) dequeues batches of jobs from the store, asks the
 * target gitaly to ReplicateRepository from the source named in
 * `gitaly-servers` metadata, records the replicated generation and
 * acknowledges. Idle workers back off 1 s → 5 s; a newly queued job or a node
 * turning healthy wakes its worker at once.
 */
#include "praefect.h"
#include "metrics/series.h"
#include "base/util.h"
#include "base/log.h"
#include "grpc/auth.h"
#include "repository.pb-c.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 5000
#define JOB_CALL_TIMEOUT_MS (60 * 60 * 1000)
#define CHECKSUM_TIMEOUT_MS 60000
#define RETRY_MIN_MS 1000          /* a failed job runs again after 1 s, 2 s, 4 s... */
#define RETRY_MAX_MS 30000
#define NO_SOURCE_RETRY_MS 1000    /* a job without a healthy source waits this long, attempt kept */
#define DUE_SLACK_MS 20            /* the store's clock and the loop's may differ by a little */
#define REJOIN_BARRIER_MS 1500     /* longest a write waits for a replica to rejoin */
#define SOURCE_SILENT_MS 2000      /* an unhealthy source silent this long is given up for another */

struct worker {
	struct praefect *p;
	struct vstorage *vs;
	struct node *node;
	struct cron_task task;     /* no period: runs when woken or after its back-off */
	uint64_t backoff_ms;
	int busy;                  /* a batch is being dequeued or processed */
	int kicked;                /* work arrived while busy */

	/* the batch in progress */
	struct repl_job *jobs;
	char **strs;               /* owned copies of the jobs' strings */
	size_t nr_strs;
	size_t nr_jobs, next;
	int64_t *completed, *dead;
	size_t nr_completed, nr_dead;
	uint64_t next_due_ms;      /* loop time a postponed job of ours is due, 0: none */

	/* the job in progress: its source, chosen when it runs, and a verification's checksums */
	const char *source;
	int64_t source_gen;
	struct strbuf sums[2];     /* source, target */
	enum grpc_code sum_code[2];
	int sums_pending;

	/* its ReplicateRepository call, watched while the source is unhealthy */
	struct grpc_client_call *call;
	struct cron_task watch;    /* no period: armed by replicator_node_unhealthy() */
	int abandoned;             /* the call was cancelled to try another source */
	uint64_t job_start_ns;     /* when the job in progress started, 0: not counted (metrics) */
};

struct replicator {
	struct worker *workers;
	size_t nr;
	int stopping;
	const struct rpc_method *checksum;
};

static void worker_run(struct worker *w);
static void process_next(struct worker *w);
static void run_update(struct worker *w, struct repl_job *j, struct repo *r);

static struct worker *find_worker(struct praefect *p, struct vstorage *vs, const char *target)
{
	struct replicator *rp = p->replicator;
	if (!rp)
		return NULL;
	for (size_t i = 0; i < rp->nr; i++)
		if (rp->workers[i].vs == vs && !strcmp(rp->workers[i].node->cfg->storage, target))
			return &rp->workers[i];
	return NULL;
}

void replicator_kick(struct praefect *p, struct vstorage *vs, const char *target)
{
	struct worker *w = find_worker(p, vs, target);
	if (!w || p->replicator->stopping)
		return;
	if (w->busy) {
		w->kicked = 1;
		return;
	}
	cron_cancel(&w->task);
	w->backoff_ms = 0;
	worker_run(w);
}

static void on_worker_task(struct cron_task *t)
{
	worker_run(t->data);
}

/* Run the worker `delay_ms` from now (replacing any run already planned). */
static void worker_wake_in(struct worker *w, uint64_t delay_ms)
{
	cron_cancel(&w->task);
	cron_soon(&w->task, delay_ms);
}

static void worker_sleep(struct worker *w, int did_work)
{
	w->busy = 0;
	if (w->p->replicator->stopping)
		return;
	if (did_work || w->kicked) {
		w->kicked = 0;
		w->backoff_ms = 0;
		worker_wake_in(w, 0);
		return;
	}
	w->backoff_ms = w->backoff_ms ? MIN(w->backoff_ms * 2, (uint64_t)BACKOFF_MAX_MS) : BACKOFF_MIN_MS;
	if (w->next_due_ms) {
		uint64_t now = uv_now(w->p->loop);
		uint64_t due = w->next_due_ms > now ? w->next_due_ms - now : 0;
		if (due <= w->backoff_ms) {
			w->next_due_ms = 0;
			worker_wake_in(w, due + DUE_SLACK_MS);
			return;
		}
	}
	worker_wake_in(w, w->backoff_ms);
}

/* --- batch bookkeeping --- */

static char *keep(struct worker *w, const char *s)
{
	char *c = xstrdup(s ? s : "");
	w->strs = xrealloc(w->strs, (w->nr_strs + 1) * sizeof(*w->strs));
	w->strs[w->nr_strs++] = c;
	return c;
}

static void batch_clear(struct worker *w)
{
	for (size_t i = 0; i < w->nr_strs; i++)
		free(w->strs[i]);
	free(w->strs);
	free(w->jobs);
	free(w->completed);
	free(w->dead);
	w->strs = NULL;
	w->jobs = NULL;
	w->completed = w->dead = NULL;
	w->nr_strs = w->nr_jobs = w->next = 0;
	w->nr_completed = w->nr_dead = 0;
}

static void on_acked(void *arg, int status, const char *msg)
{
	if (status < 0)
		log_msgf(LOG_WARN, "acknowledging replication jobs: %s", msg ? msg : "store error");
}

/* Give the job back to the queue, due in `delay_ms`; this worker wakes up for it. */
static void postpone(struct worker *w, const struct repl_job *j, uint64_t delay_ms, int refund)
{
	uint64_t due = uv_now(w->p->loop) + delay_ms;
	store_postpone(w->p->store, &j->id, 1, (int64_t)delay_ms, refund, on_acked, NULL);
	if (!w->next_due_ms || due < w->next_due_ms)
		w->next_due_ms = due;
}

/* 1 s after the first failed attempt, then doubling, at most RETRY_MAX_MS. */
static uint64_t retry_delay(const struct repl_job *j)
{
	int spent = 3 - j->attempt;   /* attempts used, this one included (delete_replica keeps 3) */
	uint64_t d = RETRY_MIN_MS;
	for (int i = 1; i < spent && d < RETRY_MAX_MS; i++)
		d *= 2;
	return MIN(d, (uint64_t)RETRY_MAX_MS);
}

static void on_rejoin_queued(void *arg, int status)
{
	if (status < 0)
		log_msgf(LOG_WARN, "queueing the catch-up of a rejoining replica failed");
}

/* upstream's replication series: the delay (queued to started) and the job in flight at its start, */
static void job_metrics_start(struct worker *w, const struct repl_job *j)
{
	struct timespec ts;
	double now_unix_ms;

	clock_gettime(CLOCK_REALTIME, &ts);
	now_unix_ms = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
	if (j->created_at_ms > 0 && now_unix_ms > (double)j->created_at_ms)
		metric_observe(pm(w->p, PM_REPL_DELAY), METRIC_LV(j->change),
			       (now_unix_ms - (double)j->created_at_ms) / 1e3);
	else
		metric_observe(pm(w->p, PM_REPL_DELAY), METRIC_LV(j->change), 0);
	metric_add(pm(w->p, PM_REPL_JOBS), METRIC_LV(j->virtual_storage, j->target_storage, j->change), 1);
	w->job_start_ns = now_ns();
}

/* and the latency (started to succeeded) at its end */
static void job_metrics_end(struct worker *w, const struct repl_job *j, int ok)
{
	if (!w->job_start_ns)
		return;
	metric_add(pm(w->p, PM_REPL_JOBS), METRIC_LV(j->virtual_storage, j->target_storage, j->change), -1);
	if (ok)
		metric_observe(pm(w->p, PM_REPL_LATENCY), METRIC_LV(j->change),
			       (double)(now_ns() - w->job_start_ns) / 1e9);
	w->job_start_ns = 0;
}

static void job_done(struct worker *w, int ok, const char *why)
{
	struct repl_job *j = &w->jobs[w->next];
	struct repo *r = repo_by_id(w->p, j->repository_id);
	job_metrics_end(w, j, ok);
	if (ok) {
		struct replica *t = r ? repo_replica(r, j->target_storage) : NULL;
		w->node->repl.completed++;   /* the throughput of replication-status (metrics/status.c) */
		w->completed[w->nr_completed++] = j->id;
		if (r && !strcmp(j->change, "update") && t && t->generation >= r->generation &&
		    r->rejoining && !strcmp(r->rejoining, j->target_storage))
			coordinator_lower_barrier(w->p, r); /* caught up: the waiting writes include it */
		/*
		 * Done, yet the repository moved on meanwhile: the writes routed
		 * without it. Hold new writes until it catches up (the writes in
		 * flight queue its next job), and make sure a repair follows anyway.
		 */
		if (r && !strcmp(j->change, "update") && t && t->generation >= 0 && t->generation < r->generation) {
			struct node *n = w->node;
			if (n->healthy && coordinator_raise_barrier(w->p, r, n->cfg->storage, REJOIN_BARRIER_MS) &&
			    !r->writes_in_flight) {
				const char *target = n->cfg->storage;
				replicator_enqueue_jobs(w->p, r, w->source, &target, 1, 0, "rejoin", on_rejoin_queued, NULL);
			}
			reconciler_soon(w->p, r->id);
		} else if (r && !strcmp(j->change, "update") && (!t || t->generation < r->generation)) {
			reconciler_soon(w->p, r->id);
		}
	} else {
		log_msgf(LOG_WARN, "replication job %lld (%s %s -> %s, %s) failed: %s", (long long)j->id, j->change,
			 w->source ? w->source : j->source_storage, j->target_storage, j->relative_path, why);
		if (j->attempt > 0 || !strcmp(j->change, "delete_replica")) {
			postpone(w, j, retry_delay(j), 0);
		} else {
			w->dead[w->nr_dead++] = j->id;
			/* out of attempts: the reconciler queues a fresh job if the replica still needs one */
			reconciler_soon(w->p, j->repository_id);
		}
	}
	w->next++;
	process_next(w);
}

/* The job cannot run now (no healthy source): back in the queue with its attempt. */
static void job_wait(struct worker *w, const char *why)
{
	struct repl_job *j = &w->jobs[w->next];
	job_metrics_end(w, j, 0);
	log_msgf(LOG_INFO, "replication job %lld (%s -> %s, %s) waits: %s", (long long)j->id, j->change,
		 j->target_storage, j->relative_path, why);
	postpone(w, j, NO_SOURCE_RETRY_MS, 1);
	w->next++;
	process_next(w);
}

/* --- executing one job --- */

struct job_call {
	struct worker *w;
	int64_t repo_id;
};

static void on_generation_set(void *arg, int status, const char *msg)
{
	struct worker *w = arg;
	struct repl_job *j = &w->jobs[w->next];
	struct repo *r = repo_by_id(w->p, j->repository_id);
	if (status < 0) {
		job_done(w, 0, msg ? msg : "recording generation failed");
		return;
	}
	if (r) {
		struct replica *rep = repo_replica_add(r, j->target_storage);
		rep->generation = w->source_gen;
		if (w->source_gen > r->generation)
			r->generation = w->source_gen;
		replica_info_send(w->p, r, j->target_storage, w->source_gen); /* recovery.md */
		/* a pool member's new replica: its pool must be there too (object-pools.md) */
		coordinator_pool_follows(w->p, r, j->target_storage);
	}
	job_done(w, 1, NULL);
}

static void on_invalid_source_deleted(void *arg, int status, const char *msg)
{
	struct worker *w = arg;
	struct repl_job *j = &w->jobs[w->next];
	struct repo *r = repo_by_id(w->p, j->repository_id);
	if (r) {
		struct replica *rep = repo_replica(r, w->source);
		int others = 0;
		repo_changed(w->p);
		if (rep)
			rep->generation = GENERATION_UNKNOWN;
		for (size_t i = 0; i < r->nr_replicas; i++)
			others += r->replicas[i].generation >= 0;
		if (!others)
			repo_remove(w->p, r);
	}
	job_done(w, status == 0, msg);
}

static void on_replicated(struct grpc_client_call *cc, enum grpc_code code, const char *message,
			  const struct grpc_metadata *trailers)
{
	struct worker *w = grpc_client_call_user(cc);
	struct repl_job *j = &w->jobs[w->next];
	struct repo *r = repo_by_id(w->p, j->repository_id);
	w->call = NULL;
	cron_cancel(&w->watch);
	if (w->abandoned) {
		/* given up on a silent source: the same job, at once, from another one */
		w->abandoned = 0;
		if (r && !w->p->replicator->stopping) {
			run_update(w, j, r);
			return;
		}
	}
	if (code == GRPC_NOT_FOUND && message && strstr(message, "invalid source repository")) {
		store_delete_invalid_replica(w->p->store, j->repository_id, w->source,
					     on_invalid_source_deleted, w);
		return;
	}
	if (code != GRPC_OK) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "ReplicateRepository: %s: %s", grpc_code_name(code), message ? message : "");
		job_done(w, 0, m.buf);
		strbuf_release(&m);
		return;
	}
	if (w->source_gen == GENERATION_UNKNOWN) {
		job_done(w, 1, NULL);
		return;
	}
	store_set_generation(w->p->store, j->repository_id, j->target_storage, j->relative_path, w->source_gen,
			     on_generation_set, w);
}

static const struct grpc_client_ops replicate_ops = { .on_close = on_replicated };

static void servers_metadata(struct node *source, struct grpc_metadata *md)
{
	json_t *o = json_object(), *s = json_object();
	char *txt;
	struct strbuf b64 = STRBUF_INIT;
	json_object_set_new(s, "address", json_string(source->cfg->address));
	json_object_set_new(s, "token", json_string(source->cfg->token));
	json_object_set_new(o, source->cfg->storage, s);
	txt = json_dumps(o, JSON_COMPACT);
	grpc_base64_encode(&b64, txt, strlen(txt));
	while (b64.len % 4)
		strbuf_addch(&b64, '=');
	grpc_metadata_addstr(md, "gitaly-servers", b64.buf);
	strbuf_release(&b64);
	free(txt);
	json_decref(o);
}

static void replicate(struct worker *w, struct repl_job *j, struct repo *r)
{
	struct node *source = vs_node(w->vs, w->source);
	Gitaly__ReplicateRepositoryRequest req = GITALY__REPLICATE_REPOSITORY_REQUEST__INIT;
	Gitaly__Repository target = GITALY__REPOSITORY__INIT, from = GITALY__REPOSITORY__INIT;
	struct grpc_metadata md = GRPC_METADATA_INIT;
	struct grpc_client_call *cc;
	uint8_t *buf;
	size_t len;

	target.storage_name = (char *)j->target_storage;
	target.relative_path = r->replica_path;
	from.storage_name = (char *)w->source;
	from.relative_path = r->replica_path;
	req.repository = &target;
	req.source = &from;
	/*
	 * Ours, beyond upstream's replicator: a repaired replica of a pool member
	 * links to the pool's replica on its node instead of copying the pool's
	 * objects (docs/technical/object-pools.md, "Replication").
	 */
	req.replicate_object_deduplication_network_membership = 1;
	len = gitaly__replicate_repository_request__get_packed_size(&req);
	buf = xmalloc(len ? len : 1);
	gitaly__replicate_repository_request__pack(&req, buf);

	servers_metadata(source, &md);
	auth_v2_add(&md, w->node->cfg->token);
	if (j->correlation_id && *j->correlation_id)
		grpc_metadata_addstr(&md, "x-gitlab-correlation-id", j->correlation_id);
	if (grpc_channel_call(w->node->ch, w->p->calls.replicate_repository->name, &md,
			      JOB_CALL_TIMEOUT_MS, 0, &replicate_ops, w, &cc) < 0) {
		free(buf);
		grpc_metadata_release(&md);
		job_done(w, 0, "cannot start ReplicateRepository");
		return;
	}
	w->call = cc;
	w->abandoned = 0;
	if (!source->healthy && !j->force)
		cron_soon(&w->watch, SOURCE_SILENT_MS / 4);
	grpc_client_call_send(cc, buf, len);
	grpc_client_call_close_send(cc);
	free(buf);
	grpc_metadata_release(&md);
}

/* --- a source that goes silent while it is read from --- */

/* A healthy replica at the repository's generation other than the target and `skip`. */
static int other_source(struct worker *w, const struct repl_job *j, struct repo *r, const char *skip)
{
	for (size_t i = 0; i < r->nr_replicas; i++) {
		struct replica *rep = &r->replicas[i];
		struct node *n;
		if (rep->generation >= 0 && rep->generation == r->generation &&
		    strcmp(rep->storage, j->target_storage) && strcmp(rep->storage, skip) &&
		    (n = vs_node(w->vs, rep->storage)) && n->healthy && !suspect_avoided(n, r->id))
			return 1;
	}
	return 0;
}

/*
 * Task replication-source-watch of a worker (one-shot): the source of its
 * ReplicateRepository is unhealthy. Slow is not dead, so the call is left
 * alone until praefect has heard nothing from that node for
 * SOURCE_SILENT_MS (or has no connection to it left); then, if another healthy replica is at the generation,
 * the call is cancelled (the target kills its fetch) and the job runs again
 * at once from another source, its attempt kept. A verification keeps to its
 * own source and is never moved.
 */
static void on_watch(struct cron_task *t)
{
	struct worker *w = t->data;
	struct repl_job *j;
	struct repo *r;
	struct node *src;
	uint64_t silent, last;

	if (!w->call || w->abandoned || w->next >= w->nr_jobs || !w->source)
		return;
	j = &w->jobs[w->next];
	src = vs_node(w->vs, w->source);
	if (!src || src->healthy || j->force)
		return;
	last = grpc_channel_last_read_ms(src->ch); /* 0: no open connection to the node */
	silent = last ? now_ms() - last : SOURCE_SILENT_MS;
	if (last && silent < SOURCE_SILENT_MS) {
		cron_soon(&w->watch, SOURCE_SILENT_MS - silent + DUE_SLACK_MS);
		return;
	}
	r = repo_by_id(w->p, j->repository_id);
	if (!r || !other_source(w, j, r, w->source)) {
		cron_soon(&w->watch, SOURCE_SILENT_MS / 4); /* no other source yet: look again soon */
		return;
	}
	if (last)
		log_msgf(LOG_WARN, "replication job %lld (%s -> %s, %s): source silent for %llu ms, replicating from "
			 "another replica", (long long)j->id, w->source, j->target_storage, j->relative_path,
			 (unsigned long long)silent);
	else
		log_msgf(LOG_WARN, "replication job %lld (%s -> %s, %s): connection to the source lost, replicating "
			 "from another replica", (long long)j->id, w->source, j->target_storage, j->relative_path);
	w->abandoned = 1;
	grpc_client_call_cancel(w->call); /* on_replicated() comes later, from the loop */
}

void replicator_node_unhealthy(struct praefect *p, struct node *n)
{
	struct replicator *rp = p->replicator;
	if (!rp || rp->stopping)
		return;
	for (size_t i = 0; i < rp->nr; i++) {
		struct worker *w = &rp->workers[i];
		if (w->call && w->source && w->vs == n->vs && !strcmp(w->source, n->cfg->storage))
			cron_soon(&w->watch, 0);
	}
}

/* --- verification: a forced job whose target claims the source's generation --- */

static void on_lowered(void *arg, int status, const char *msg)
{
	struct worker *w = arg;
	struct repl_job *j = &w->jobs[w->next];
	struct repo *r = repo_by_id(w->p, j->repository_id);
	if (status < 0) {
		job_done(w, 0, msg ? msg : "recording generation failed");
		return;
	}
	if (!r) {
		job_done(w, 0, "repository not found");
		return;
	}
	{
		struct replica *rep = repo_replica_add(r, j->target_storage);
		if (rep->generation > w->source_gen - 1)
			rep->generation = w->source_gen - 1;
	}
	replicate(w, j, r);
}

static void sums_compared(struct worker *w)
{
	struct repl_job *j = &w->jobs[w->next];
	if (w->sum_code[0] != GRPC_OK) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "CalculateChecksum on source %s: %s", w->source, grpc_code_name(w->sum_code[0]));
		job_done(w, 0, m.buf);
		strbuf_release(&m);
		return;
	}
	if (w->sum_code[1] == GRPC_OK && w->sums[1].len && !strcmp(w->sums[0].buf, w->sums[1].buf)) {
		job_done(w, 1, NULL); /* same refs: nothing to repair */
		return;
	}
	if (w->sum_code[1] != GRPC_OK && w->sum_code[1] != GRPC_NOT_FOUND) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "CalculateChecksum on target: %s", grpc_code_name(w->sum_code[1]));
		job_done(w, 0, m.buf);
		strbuf_release(&m);
		return;
	}
	/*
	 * Different content at an equal generation: the record is wrong. Mark
	 * the target behind first, so no write is routed to it and no read
	 * served from it while it is repaired, then replicate as for any
	 * outdated replica. In memory at once: two writes cut off together can
	 * leave two verifications of the same pair in opposite directions
	 * (each took a different reference), and the second must see that its
	 * source is itself being repaired from its target. Repairing both
	 * crosswise would swap their contents and leave them different again
	 * (docs/technical/transactions.md, "The finalizer").
	 */
	{
		struct repo *r = repo_by_id(w->p, j->repository_id);
		struct replica *src = r ? repo_replica(r, w->source) : NULL;
		struct replica *tgt;
		if (!r || !src || src->generation < w->source_gen) {
			log_msgf(LOG_INFO, "replica %s of %s differs from %s, which is being repaired from it: "
				 "nothing to repair here", j->target_storage, j->relative_path, w->source);
			job_done(w, 1, NULL);
			return;
		}
		tgt = repo_replica_add(r, j->target_storage);
		if (tgt->generation > w->source_gen - 1)
			tgt->generation = w->source_gen - 1;
	}
	log_msgf(LOG_WARN, "replica %s of %s differs from %s at generation %lld: repairing it", j->target_storage,
		 j->relative_path, w->source, (long long)w->source_gen);
	store_set_generation(w->p->store, j->repository_id, j->target_storage, NULL, w->source_gen - 1,
			     on_lowered, w);
}

struct sum_call {
	struct worker *w;
	int which;
};

static void on_sum_message(struct grpc_client_call *cc, const uint8_t *msg, size_t len)
{
	struct sum_call *c = grpc_client_call_user(cc);
	Gitaly__CalculateChecksumResponse *resp = gitaly__calculate_checksum_response__unpack(NULL, len, msg);
	if (resp) {
		strbuf_reset(&c->w->sums[c->which]);
		strbuf_addstr(&c->w->sums[c->which], resp->checksum ? resp->checksum : "");
		gitaly__calculate_checksum_response__free_unpacked(resp, NULL);
	}
}

static void on_sum_close(struct grpc_client_call *cc, enum grpc_code code, const char *message,
			 const struct grpc_metadata *trailers)
{
	struct sum_call *c = grpc_client_call_user(cc);
	struct worker *w = c->w;
	w->sum_code[c->which] = code;
	free(c);
	if (--w->sums_pending == 0)
		sums_compared(w);
}

static const struct grpc_client_ops sum_ops = { .on_message = on_sum_message, .on_close = on_sum_close };

static void ask_sum(struct worker *w, struct node *n, const char *replica_path, int which)
{
	Gitaly__CalculateChecksumRequest req = GITALY__CALCULATE_CHECKSUM_REQUEST__INIT;
	Gitaly__Repository repo = GITALY__REPOSITORY__INIT;
	struct grpc_metadata md = GRPC_METADATA_INIT;
	struct grpc_client_call *cc;
	struct sum_call *c = xcalloc(1, sizeof(*c));
	uint8_t buf[1024 + 256];
	size_t len;

	c->w = w;
	c->which = which;
	strbuf_reset(&w->sums[which]);
	repo.storage_name = (char *)n->cfg->storage;
	repo.relative_path = (char *)replica_path;
	req.repository = &repo;
	len = gitaly__calculate_checksum_request__get_packed_size(&req);
	if (len > sizeof(buf) || (auth_v2_add(&md, n->cfg->token),
				  grpc_channel_call(n->ch, w->p->replicator->checksum->name, &md, CHECKSUM_TIMEOUT_MS,
						    0, &sum_ops, c, &cc)) < 0) {
		grpc_metadata_release(&md);
		w->sum_code[which] = GRPC_UNAVAILABLE;
		free(c);
		if (--w->sums_pending == 0)
			sums_compared(w);
		return;
	}
	gitaly__calculate_checksum_request__pack(&req, buf);
	grpc_client_call_send(cc, buf, len);
	grpc_client_call_close_send(cc);
	grpc_metadata_release(&md);
}

static void verify(struct worker *w, struct repl_job *j, struct repo *r)
{
	w->sums_pending = 3; /* two calls, and this function until both are started */
	ask_sum(w, vs_node(w->vs, w->source), r->replica_path, 0);
	ask_sum(w, w->node, r->replica_path, 1);
	if (--w->sums_pending == 0)
		sums_compared(w);
}

/*
 * The source is chosen when the job runs, not when it was queued: a healthy
 * replica at the repository's current generation, the job's own source if it
 * is one, else the primary, else any. A verification keeps to its own
 * reference while that one is current (another could differ from it). A
 * replica reads avoid (suspected or found corrupt, router/suspect.c) is no
 * source: copying it would spread the corruption (a missing target is
 * created from the source's snapshot, packs and all). NULL with *wait set:
 * such replicas exist but none is healthy and trusted now.
 */
static struct node *pick_source(struct worker *w, const struct repl_job *j, struct repo *r, int *wait)
{
	struct replica *pref = repo_replica(r, j->source_storage);
	struct node *best = NULL;

	*wait = 0;
	if (pref && pref->generation >= 0 && pref->generation == r->generation &&
	    strcmp(j->source_storage, j->target_storage)) {
		struct node *n = vs_node(w->vs, j->source_storage);
		if (n && n->healthy && !suspect_avoided(n, r->id))
			return n;
		if (n && j->force) {
			*wait = 1;
			return NULL;
		}
	}
	for (size_t i = 0; i < r->nr_replicas; i++) {
		struct replica *rep = &r->replicas[i];
		struct node *n;
		if (rep->generation < 0 || rep->generation != r->generation ||
		    !strcmp(rep->storage, j->target_storage) || !(n = vs_node(w->vs, rep->storage)))
			continue;
		if (!n->healthy || suspect_avoided(n, r->id)) {
			*wait = 1;
			continue;
		}
		if (!best || (r->primary && !strcmp(rep->storage, r->primary)))
			best = n;
	}
	if (best)
		*wait = 0;
	return best;
}

static void run_update(struct worker *w, struct repl_job *j, struct repo *r)
{
	struct replica *tgt = repo_replica(r, j->target_storage);
	int wait;
	struct node *source = pick_source(w, j, r, &wait);

	if (!source) {
		if (wait) {
			job_wait(w, "no healthy replica at the repository's generation");
			return;
		}
		if (tgt && tgt->generation >= 0 && tgt->generation >= r->generation)
			job_done(w, 1, NULL); /* the target is the newest there is */
		else
			job_done(w, 0, "no replica at the repository's generation to replicate from");
		return;
	}
	w->source = source->cfg->storage;
	w->source_gen = r->generation;
	if (tgt && tgt->generation >= 0 && tgt->generation >= w->source_gen) {
		if (j->force)
			verify(w, j, r);
		else
			job_done(w, 1, NULL); /* already there (or newer): nothing to copy */
		return;
	}
	replicate(w, j, r);
}

static void on_replica_deleted(void *arg, int status, const char *msg)
{
	struct worker *w = arg;
	struct repl_job *j = &w->jobs[w->next];
	struct repo *r = repo_by_id(w->p, j->repository_id);
	if (status == 0 && r) {
		struct replica *rep = repo_replica(r, j->target_storage);
		repo_changed(w->p);
		if (rep)
			rep->generation = GENERATION_UNKNOWN;
		suspect_replica_deleted(w->node, j->repository_id);
	}
	job_done(w, status == 0, msg);
}

static void on_removed(struct grpc_client_call *cc, enum grpc_code code, const char *message,
		       const struct grpc_metadata *trailers)
{
	struct worker *w = grpc_client_call_user(cc);
	struct repl_job *j = &w->jobs[w->next];
	if (code != GRPC_OK && code != GRPC_NOT_FOUND) {
		job_done(w, 0, message ? message : "RemoveRepository failed");
		return;
	}
	store_delete_replica(w->p->store, j->repository_id, j->target_storage, on_replica_deleted, w);
}

static const struct grpc_client_ops remove_ops = { .on_close = on_removed };

static void run_delete(struct worker *w, struct repl_job *j, const char *replica_path)
{
	Gitaly__RemoveRepositoryRequest req = GITALY__REMOVE_REPOSITORY_REQUEST__INIT;
	Gitaly__Repository target = GITALY__REPOSITORY__INIT;
	struct grpc_metadata md = GRPC_METADATA_INIT;
	struct grpc_client_call *cc;
	uint8_t buf[1024 + 256];
	size_t len;

	target.storage_name = (char *)j->target_storage;
	target.relative_path = (char *)replica_path;
	req.repository = &target;
	len = gitaly__remove_repository_request__get_packed_size(&req);
	if (len > sizeof(buf)) {
		job_done(w, 0, "replica path too long");
		return;
	}
	gitaly__remove_repository_request__pack(&req, buf);
	auth_v2_add(&md, w->node->cfg->token);
	if (grpc_channel_call(w->node->ch, w->p->calls.remove_repository->name, &md, 60000, 0,
			      &remove_ops, w, &cc) < 0) {
		grpc_metadata_release(&md);
		job_done(w, 0, "cannot start RemoveRepository");
		return;
	}
	grpc_client_call_send(cc, buf, len);
	grpc_client_call_close_send(cc);
	grpc_metadata_release(&md);
}

static void process_next(struct worker *w)
{
	struct repl_job *j;
	struct repo *r;

	/*
	 * Stopping: the node channels go away with nodes_stop(), so no job of
	 * the batch starts any more. Those done are acknowledged; the rest keep
	 * their lease, which runs out for the next praefect to take them over.
	 */
	if (w->p->replicator->stopping)
		w->next = w->nr_jobs;
	if (w->next == w->nr_jobs) {
		size_t did = w->nr_jobs;
		if (w->nr_completed)
			store_acknowledge(w->p->store, JOB_COMPLETED, w->completed, w->nr_completed, on_acked, NULL);
		if (w->nr_dead)
			store_acknowledge(w->p->store, JOB_DEAD, w->dead, w->nr_dead, on_acked, NULL);
		batch_clear(w);
		worker_sleep(w, did > 0);
		return;
	}
	j = &w->jobs[w->next];
	r = repo_by_id(w->p, j->repository_id);
	w->source = NULL;
	if (!strcmp(j->change, "update")) {
		if (!r) {
			job_done(w, 0, "repository not found");
			return;
		}
		job_metrics_start(w, j);
		run_update(w, j, r);
	} else if (!strcmp(j->change, "delete_replica") || !strcmp(j->change, "delete")) {
		const char *rp = r ? r->replica_path : (j->replica_path && *j->replica_path ? j->replica_path : NULL);
		if (!rp) {
			job_done(w, 0, "repository not found");
			return;
		}
		job_metrics_start(w, j);
		run_delete(w, j, rp);
	} else {
		job_done(w, 0, "unknown replication change type");
	}
}

static void on_dequeued(void *arg, int status, const char *msg, const struct repl_job *jobs, size_t n)
{
	struct worker *w = arg;
	if (status < 0 || n == 0) {
		if (status < 0)
			log_msgf(LOG_WARN, "dequeueing replication jobs for %s: %s", w->node->cfg->storage,
				 msg ? msg : "store error");
		worker_sleep(w, 0);
		return;
	}
	w->jobs = xcalloc(n, sizeof(*w->jobs));
	w->completed = xcalloc(n, sizeof(int64_t));
	w->dead = xcalloc(n, sizeof(int64_t));
	for (size_t i = 0; i < n; i++) {
		w->jobs[i] = jobs[i];
		w->jobs[i].change = keep(w, jobs[i].change);
		w->jobs[i].virtual_storage = keep(w, jobs[i].virtual_storage);
		w->jobs[i].relative_path = keep(w, jobs[i].relative_path);
		w->jobs[i].replica_path = keep(w, jobs[i].replica_path);
		w->jobs[i].source_storage = keep(w, jobs[i].source_storage);
		w->jobs[i].target_storage = keep(w, jobs[i].target_storage);
		w->jobs[i].correlation_id = keep(w, jobs[i].correlation_id);
	}
	w->nr_jobs = n;
	w->next = 0;
	process_next(w);
}

static void worker_run(struct worker *w)
{
	if (w->busy || w->p->replicator->stopping)
		return;
	if (!w->node->healthy) {
		w->busy = 1;
		worker_sleep(w, 0);
		return;
	}
	w->busy = 1;
	store_dequeue(w->p->store, w->vs->cfg->name, w->node->cfg->storage,
		      (size_t)w->p->cfg.replication_batch_size, on_dequeued, w);
}

/* --- housekeeping (tasks replication-heartbeat and replication-stale, schedule.c) --- */

void replicator_heartbeat(struct praefect *p)
{
	if (!p->replicator)
		return;
	for (size_t i = 0; i < p->replicator->nr; i++) {
		struct worker *w = &p->replicator->workers[i];
		if (w->nr_jobs) {
			int64_t *ids = xcalloc(w->nr_jobs, sizeof(*ids));
			for (size_t k = 0; k < w->nr_jobs; k++)
				ids[k] = w->jobs[k].id;
			store_heartbeat(p->store, ids, w->nr_jobs, on_acked, NULL);
			free(ids);
		}
	}
}

static void on_stale_released(void *arg, int status, const char *msg, int64_t n)
{
	struct praefect *p = arg;
	if (status < 0) {
		log_msgf(LOG_WARN, "releasing stale replication jobs: %s", msg ? msg : "store error");
		return;
	}
	if (n > 0) {
		log_msgf(LOG_INFO, "released %lld stale replication jobs", (long long)n);
		for (size_t i = 0; i < p->replicator->nr; i++)
			replicator_kick(p, p->replicator->workers[i].vs, p->replicator->workers[i].node->cfg->storage);
	}
}

void replicator_release_stale(struct praefect *p)
{
	store_acknowledge_stale(p->store, p->cfg.replication_stale_ms, on_stale_released, p);
}

static void on_writes_recovered(void *arg, int status, const char *msg, int64_t n)
{
	if (status < 0)
		log_msgf(LOG_WARN, "verifying the writes a previous run left unfinished: %s", msg ? msg : "store error");
	else if (n > 0)
		log_msgf(LOG_WARN, "a previous run died with writes in flight: %lld replicas queued for verification",
			 (long long)n);
}

int replicator_start(struct praefect *p)
{
	struct replicator *rp = xcalloc(1, sizeof(*rp));
	size_t n = 0;
	for (size_t i = 0; i < p->nr_vs; i++)
		n += p->vs[i].nr_nodes;
	rp->workers = xcalloc(n ? n : 1, sizeof(*rp->workers));
	rp->checksum = praefect_method("/gitaly.RepositoryService/CalculateChecksum");
	p->replicator = rp;
	for (size_t i = 0; i < p->nr_vs; i++) {
		for (size_t j = 0; j < p->vs[i].nr_nodes; j++) {
			struct worker *w = &rp->workers[rp->nr++];
			w->p = p;
			w->vs = &p->vs[i];
			w->node = &p->vs[i].nodes[j];
			w->task.name = "replication-worker";
			w->task.run = on_worker_task;
			w->task.data = w;
			strbuf_init(&w->sums[0], 0);
			strbuf_init(&w->sums[1], 0);
			cron_add(&p->cron, &w->task, 0);
			w->watch.name = "replication-source-watch";
			w->watch.run = on_watch;
			w->watch.data = w;
			cron_add(&p->cron, &w->watch, 0);
		}
	}
	/*
	 * With the embedded store this praefect is the only one: jobs left in
	 * progress belong to a previous run of ours that died, and so do write
	 * intents: the replicas of those writes may differ at equal
	 * generations, so each becomes verification jobs. Both before the
	 * workers' first dequeue (the store keeps the order). On a shared
	 * store the intents are only our own (by praefect name) and the jobs in
	 * progress may be other praefects' live ones: only those whose lock
	 * went unrefreshed for the stale period are released.
	 */
	store_recover_writes(p->store, store_is_shared(p->store) ? p->name : NULL, on_writes_recovered, p);
	store_acknowledge_stale(p->store, store_is_shared(p->store) ? p->cfg.replication_stale_ms : 0,
				on_stale_released, p);
	for (size_t i = 0; i < rp->nr; i++)
		worker_wake_in(&rp->workers[i], 0);
	return 0;
}

void replicator_stop(struct praefect *p)
{
	struct replicator *rp = p->replicator;
	if (!rp)
		return;
	rp->stopping = 1;
	for (size_t i = 0; i < rp->nr; i++) {
		cron_remove(&rp->workers[i].task);
		cron_remove(&rp->workers[i].watch);
	}
}

void replicator_free(struct praefect *p)
{
	struct replicator *rp = p->replicator;
	if (!rp)
		return;
	for (size_t i = 0; i < rp->nr; i++) {
		batch_clear(&rp->workers[i]);
		strbuf_release(&rp->workers[i].sums[0]);
		strbuf_release(&rp->workers[i].sums[1]);
	}
	free(rp->workers);
	free(rp);
	p->replicator = NULL;
}
