/*
 * praefect's metrics: the table of its series, the /metrics and /db_metrics
 * registries, and the sampling of what the in-memory model holds
 * (unavailable repositories, reads per node) once a second (task metrics,
 * schedule.c) and on each scrape, which also lists the replication queue by
 * state. Both numbers operators watched before the endpoint existed are
 * still logged on change.
 */
#include "praefect.h"
#include "series.h"
#include "metrics/grpc.h"
#include "base/log.h"
#include "base/util.h"
#include "upgrade/upgrade.h"
#include "status/page.h"
#include "base/strbuf.h"

#include <stdlib.h>
#include <string.h>

/* Go's DefBuckets: what a histogram gets when grpc_latency_buckets is empty */
static const double go_default_buckets[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };

/* The buckets upstream fixes in code; the others follow grpc_latency_buckets. */
static const double subtx_buckets[] = { 0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0 };
static double voter_buckets[METRIC_MAX_BUCKETS];   /* 1..max voters, set from the config */

static struct metric_desc families[PM_NR] = {
	[PM_TX_ACTIONS] = { "gitaly_praefect_transactions_total", "Total number of transaction actions",
			    METRIC_COUNTER, { "action" } },
	[PM_TX_DELAY] = { "gitaly_praefect_transactions_delay_seconds", "Delay between casting a vote and reaching quorum",
			  METRIC_HISTOGRAM, { "action" } },
	[PM_SUBTX] = { "gitaly_praefect_subtransactions_per_transaction_total",
		       "The number of subtransactions created for a single registered transaction",
		       METRIC_HISTOGRAM, { NULL }, subtx_buckets, ARRAY_SIZE(subtx_buckets) },
	[PM_VOTERS] = { "gitaly_praefect_voters_per_transaction_total",
			"The number of voters a given transaction was created with",
			METRIC_HISTOGRAM, { "virtual_storage" }, voter_buckets, 1 },
	[PM_REPL_LATENCY] = { "gitaly_praefect_replication_latency", "", METRIC_HISTOGRAM, { "type" } },
	[PM_REPL_DELAY] = { "gitaly_praefect_replication_delay", "", METRIC_HISTOGRAM, { "type" } },
	[PM_REPL_JOBS] = { "gitaly_praefect_replication_jobs", "Number of replication jobs in flight.",
			   METRIC_GAUGE, { "virtual_storage", "gitaly_storage", "change_type" } },
	[PM_NODE_LATENCY] = { "gitaly_praefect_node_latency", "", METRIC_HISTOGRAM, { "gitaly_storage" } },
	[PM_NODE_UP] = { "gitaly_praefect_node_last_healthcheck_up", "", METRIC_GAUGE, { "gitaly_storage" } },
	[PM_READ_DIST] = { "gitaly_praefect_read_distribution", "Counts read operations directed to the storages",
			   METRIC_COUNTER, { "virtual_storage", "storage" } },
	[PM_METHOD_TYPES] = { "gitaly_praefect_method_types", "", METRIC_COUNTER, { "method_type" } },
	/* upstream's [reconciliation] histogram_buckets defaults to Go's default buckets; the key is not read here */
	[PM_RECONCILE_SECONDS] = { "gitaly_praefect_reconciliation_scheduling_seconds",
				   "The time spent performing a single reconciliation scheduling run.",
				   METRIC_HISTOGRAM, { NULL }, go_default_buckets, 11 },
	/* the background verifier's (praefect/verifier), docs/technical/metrics.md */
	[PM_VERIFY_DEQUEUED] = { "gitaly_praefect_verification_jobs_dequeued_total", "Number of verification jobs dequeud.",
				 METRIC_COUNTER, { "virtual_storage", "storage" } },
	[PM_VERIFY_COMPLETED] = { "gitaly_praefect_verification_jobs_completed_total",
				  "Number of verification jobs completed and their result",
				  METRIC_COUNTER, { "virtual_storage", "storage", "result" } },
	[PM_VERIFY_RELEASED] = { "gitaly_praefect_stale_verification_leases_released_total",
				 "Number of stale verification leases released.", METRIC_COUNTER, { NULL } },
	[PM_NOTIFY_RECONNECTS] = { "gitaly_praefect_notifications_reconnects_total",
				   "Counts amount of reconnects to listen for notification from PostgreSQL",
				   METRIC_COUNTER, { "state" } },
	/* ours: docs/technical/replication-status.md */
	[PM_BACKLOG_JOBS] = { "gitaly_praefect_replication_backlog_jobs",
			      "Replication jobs targeting the storage that are not finished (ready, in progress, failed and to be retried).",
			      METRIC_GAUGE, { "virtual_storage", "storage" } },
	[PM_BACKLOG_OLDEST] = { "gitaly_praefect_replication_backlog_oldest_seconds",
				"Age of the oldest unfinished replication job targeting the storage, 0 when none.",
				METRIC_GAUGE, { "virtual_storage", "storage" } },
	[PM_THROUGHPUT] = { "gitaly_praefect_replication_throughput_jobs_per_second",
			    "Replication jobs completed on the storage per second, exponentially weighted over about a minute.",
			    METRIC_GAUGE, { "virtual_storage", "storage" } },
	[PM_OUTDATED] = { "gitaly_praefect_outdated_replicas",
			  "Replicas on the storage that are behind their repository's generation.",
			  METRIC_GAUGE, { "virtual_storage", "storage" } },
	[PM_OUTDATED_AGE] = { "gitaly_praefect_outdated_replica_age_seconds",
			      "How long the storage's longest outdated replica has been behind, 0 when none is.",
			      METRIC_GAUGE, { "virtual_storage", "storage" } },
	[PM_UNAVAILABLE] = { "gitaly_praefect_unavailable_repositories",
			     "Number of repositories that have no healthy, up to date replicas.",
			     METRIC_GAUGE, { "virtual_storage" } },
	[PM_QUEUE_DEPTH] = { "gitaly_praefect_replication_queue_depth", "Number of jobs in the replication queue",
			     METRIC_GAUGE, { "virtual_storage", "target_node", "state" } },
};

/* upstream's change types, each pre-registered on the replication histograms */
static const char *const change_types[] = { "update", "create", "delete", "delete_replica" };


struct praefect_metrics *praefect_metrics_of(struct praefect *p)
{
	return p->metrics;
}

void praefect_metrics_init(struct praefect *p)
{
	struct praefect_metrics *pm = xcalloc(1, sizeof(*pm));
	const struct metrics_config *c = &p->cfg.prometheus;
	size_t max_voters = 1;

	if (c->nr_buckets)
		pm->reg = metrics_new(c->buckets, c->nr_buckets);
	else
		pm->reg = metrics_new(go_default_buckets, ARRAY_SIZE(go_default_buckets));
	pm->db = metrics_new(NULL, 0);
	/* upstream: linear buckets 1, 2, ... up to the largest virtual storage's node count */
	for (size_t i = 0; i < p->nr_vs; i++)
		max_voters = MAX(max_voters, p->vs[i].nr_nodes);
	max_voters = MIN(max_voters, (size_t)METRIC_MAX_BUCKETS);
	for (size_t i = 0; i < max_voters; i++)
		voter_buckets[i] = (double)(i + 1);
	families[PM_VOTERS].nr_buckets = max_voters;
	for (size_t i = 0; i < PM_NR; i++)
		pm->f[i] = metrics_register(i >= PM_UNAVAILABLE ? pm->db : pm->reg, &families[i]);
	for (size_t i = 0; i < ARRAY_SIZE(change_types); i++) {
		metric_touch(pm->f[PM_REPL_LATENCY], METRIC_LV(change_types[i]));
		metric_touch(pm->f[PM_REPL_DELAY], METRIC_LV(change_types[i]));
	}
	metrics_register_process(pm->reg);
	pm->grpc = metrics_grpc_attach(pm->reg, p->server, c->nr_buckets > 0);
	p->metrics = pm;
}

static void sample(struct praefect *p);
static void on_jobs_listed(void *arg, int status, const char *msg, const struct repl_job *jobs, size_t n);

/*
 * A scrape: sample the model now and list the queue (upstream queries its
 * database per scrape too); the scrape is answered when the listing is in.
 */
static void on_refresh(struct metrics_http *h, void *arg)
{
	struct praefect *p = arg;
	sample(p);
	if (!p->metrics->refreshing) {
		p->metrics->refreshing = 1;
		store_list_jobs(p->store, on_jobs_listed, p);
	}
}

void praefect_metrics_listen(struct praefect *p)
{
	struct metrics_http_opts o = { p->cfg.prometheus_listen_addr, { "/metrics", "/db_metrics" },
				       { p->metrics->reg, p->metrics->db }, 2, p->cfg.prometheus.scrape_timeout_ms,
				       upgrade_inherited(p->upgrade), p->loop, on_refresh, p, "/" };
	struct strbuf err = STRBUF_INIT;
	char bound[256] = "";

	if (!p->cfg.prometheus_listen_addr || !*p->cfg.prometheus_listen_addr)
		return;
	p->metrics->http = metrics_http_start(&o, bound, sizeof(bound), &err);
	if (!p->metrics->http)
		die("%s", err.buf);
	log_msgf(LOG_INFO, "Starting prometheus listener on %s", bound);
	strbuf_release(&err);
}

void praefect_metrics_count_backchannel(struct praefect *p)
{
	p->metrics->grpc_bc = metrics_grpc_attach(p->metrics->reg, p->bc_server, p->cfg.prometheus.nr_buckets > 0);
}

void praefect_metrics_stop(struct praefect *p)
{
	if (p->metrics) {
		metrics_http_stop(p->metrics->http);
		p->metrics->http = NULL;
		p->metrics->refreshing = 0;
	}
}

void praefect_metrics_free(struct praefect *p)
{
	struct praefect_metrics *pm = p->metrics;
	if (!pm)
		return;
	metrics_http_stop(pm->http);
	metrics_grpc_free(pm->grpc);
	metrics_grpc_free(pm->grpc_bc);
	metrics_free(pm->reg);
	metrics_free(pm->db);
	for (size_t i = 0; i < STATUS_FAILOVERS; i++)
		status_failover_release(&pm->failovers[i]);
	free(pm->unavailable_vs);
	free(pm);
	p->metrics = NULL;
}

void praefect_count_method_type(struct praefect *p, struct grpc_call *call)
{
	const char *path = grpc_call_method(call);
	const struct rpc_method *m = rpc_lookup(path, strlen(path));

	static const char *const names[] = {
		[RPC_OP_MUTATOR] = "mutator", [RPC_OP_ACCESSOR] = "accessor", [RPC_OP_MAINTENANCE] = "maintenance",
	};

	if (!m || m->intercepted || m->op == RPC_OP_UNKNOWN || (size_t)m->op >= ARRAY_SIZE(names))
		return;
	metric_inc(pm(p, PM_METHOD_TYPES), METRIC_LV(names[m->op]));
}

/* --- sampled once a second --- */

static int repo_available(struct repo *r)
{
	for (size_t i = 0; i < r->vs->nr_nodes; i++) {
		struct node *n = &r->vs->nodes[i];
		if (n->healthy && repo_up_to_date(r, n->cfg->storage) && repo_assigned(r, n->cfg->storage))
			return 1;
	}
	return 0;
}

static const char *job_state_name(enum job_state s)
{
	static const char *const names[] = { "ready", "in_progress", "completed", "failed", "dead", "cancelled" };
	return (size_t)s < ARRAY_SIZE(names) ? names[s] : "unknown";
}

static void on_jobs_listed(void *arg, int status, const char *msg, const struct repl_job *jobs, size_t n)
{
	struct praefect *p = arg;
	struct metric *f;
	if (!p->metrics)
		return;
	if (status < 0) {
		log_msgf(LOG_WARN, "listing the replication queue for metrics: %s", msg ? msg : "store error");
		n = 0;
		jobs = NULL;
	}
	f = pm(p, PM_QUEUE_DEPTH);
	/* the family is rebuilt as a whole: a (storage, state) with no jobs left disappears, as upstream's GROUP BY */
	rstatus_note_jobs(p, jobs, n);
	metrics_lock(p->metrics->db);
	metric_clear(f);
	for (size_t i = 0; i < n; i++)
		metric_inc(f, METRIC_LV(jobs[i].virtual_storage, jobs[i].target_storage, job_state_name(jobs[i].state)));
	metrics_unlock(p->metrics->db);
	p->metrics->refreshing = 0;
	if (p->metrics->http) {
		struct strbuf page = STRBUF_INIT;
		status_page_render(p, &page);
		metrics_http_set_page(p->metrics->http, page.buf, page.len);
		strbuf_release(&page);
		metrics_http_refreshed(p->metrics->http);
	}
}

/* The depth operators have watched in the log: jobs not yet finished (ready, in_progress, failed). */
static void on_queue_depth(void *arg, int status, const char *msg, int64_t depth)
{
	struct praefect *p = arg;
	struct praefect_metrics *m = p->metrics;
	uint64_t now = now_ms();

	if (status == 0 && m && (!m->nr_backlog || now - m->backlog_at_ms >= 60000)) {
		m->backlog[m->backlog_next] = depth;
		m->backlog_next = (m->backlog_next + 1) % STATUS_BACKLOG_SAMPLES;
		m->nr_backlog = MIN(m->nr_backlog + 1, (size_t)STATUS_BACKLOG_SAMPLES);
		m->backlog_at_ms = now;
	}
	if (status == 0 && depth != p->metric_queue_depth) {
		log_msgf(LOG_INFO, "replication queue depth: %lld", (long long)depth);
		p->metric_queue_depth = depth;
	}
}

/* The task's listing: the depth above, and the backlog per storage (status.c). */
static void on_tick_jobs(void *arg, int status, const char *msg, const struct repl_job *jobs, size_t n)
{
	struct praefect *p = arg;
	int64_t depth = 0;

	if (!p->metrics)
		return;
	p->metrics->listing = 0;
	if (status < 0) {
		on_queue_depth(p, status, msg, 0);
		return;
	}
	for (size_t i = 0; i < n; i++)
		depth += jobs[i].state == JOB_READY || jobs[i].state == JOB_IN_PROGRESS || jobs[i].state == JOB_FAILED;
	rstatus_note_jobs(p, jobs, n);
	on_queue_depth(p, 0, NULL, depth);
}

void metrics_tick(struct praefect *p)
{
	sample(p);
	if (!p->metrics->listing) {
		p->metrics->listing = 1;
		store_list_jobs(p->store, on_tick_jobs, p);
	}
}

static void sample(struct praefect *p)
{
	struct praefect_metrics *m = p->metrics;
	uint64_t health = praefect_health_signature(p);
	int64_t unavailable = 0;
	int64_t now = rstatus_wall_ms();

	if (!m->unavailable_vs)
		m->unavailable_vs = xcalloc(p->nr_vs + 1, sizeof(*m->unavailable_vs));
	/* idle: the records and health are as the last walk saw them, so are its counts */
	if (!m->walked || m->walked_epoch != p->model_epoch || m->walked_health != health || !m->rstatus_writes) {
		struct repo *r;
		memset(m->unavailable_vs, 0, p->nr_vs * sizeof(*m->unavailable_vs));
		rstatus_begin(p);
		for (size_t i = 0; (r = repos_next(p, &i));) {
			rstatus_note_repo(p, r, now);
			if (!repo_available(r))
				m->unavailable_vs[r->vs - p->vs]++;
		}
		m->walked = 1;
		m->walked_epoch = p->model_epoch;
		m->walked_health = health;
	}
	for (size_t i = 0; i < p->nr_vs; i++) {
		struct vstorage *vs = &p->vs[i];
		unavailable += m->unavailable_vs[i];
		metric_set(pm(p, PM_UNAVAILABLE), METRIC_LV(vs->cfg->name), (double)m->unavailable_vs[i]);
		for (size_t j = 0; j < vs->nr_nodes; j++)
			if (vs->nodes[j].routed_reads)
				metric_set(pm(p, PM_READ_DIST), METRIC_LV(vs->cfg->name, vs->nodes[j].cfg->storage),
					   (double)vs->nodes[j].routed_reads);
	}
	rstatus_end(p, now);
	if (unavailable != p->metric_unavailable) {
		log_msgf(unavailable ? LOG_WARN : LOG_INFO, "unavailable repositories: %lld", (long long)unavailable);
		p->metric_unavailable = unavailable;
	}
}
