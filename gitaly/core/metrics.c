/*
 * gitaly's metrics: one table of its series, counting hooks for the
 * concurrency limiters, and the sampling of running commands and the
 * cat-file cache, done on the loop when a scrape asks for it.
 */
#include "core/gitaly.h"
#include "core/limit.h"
#include "core/methods.h"
#include "core/metrics.h"
#include "hooks/pack_cache.h"
#include "metrics/grpc.h"
#include "git/catfile.h"
#include "git/cmd.h"
#include "base/log.h"
#include "base/util.h"
#include "upgrade/upgrade.h"

#include <stdlib.h>
#include <string.h>

enum {
	GM_COMMANDS_RUNNING,
	GM_CATFILE_CACHE,
	GM_CATFILE_PROCESSES,
	GM_CATFILE_PROCESSES_TOTAL,
	GM_CATFILE_LOOKUPS,
	GM_CATFILE_MEMBERS,
	GM_LIMIT_IN_PROGRESS,
	GM_LIMIT_QUEUED,
	GM_LIMIT_ACQUIRING,
	GM_REQUESTS_DROPPED,
	GM_HOUSEKEEPING_TASKS,
	GM_HOUSEKEEPING_PRUNED,
	GM_VOTE_DELAY,
	GM_PACK_CACHE_ENABLED,
	GM_PACK_CACHE_LOOKUPS,
	GM_PACK_GENERATED,
	GM_PACK_SERVED,
	GM_STREAMCACHE_DISK,
	GM_STREAMCACHE_ENTRIES,
	GM_NR
};

#define LIMIT_LABELS "system", "grpc_service", "grpc_method"
static const struct metric_desc families[GM_NR] = {
	[GM_HOUSEKEEPING_TASKS] = { "gitaly_housekeeping_tasks_total",
				    "Total number of housekeeping tasks performed in the repository", METRIC_COUNTER,
				    { "housekeeping_task", "status", NULL } },
	[GM_HOUSEKEEPING_PRUNED] = { "gitaly_housekeeping_pruned_files_total", "Total number of files pruned",
				     METRIC_COUNTER, { "filetype", NULL } },
	/* follows grpc_latency_buckets, as upstream */
	[GM_VOTE_DELAY] = { "gitaly_hook_transaction_voting_delay_seconds",
			    "Delay between calling out to transaction service and receiving a response", METRIC_HISTOGRAM },
	/* the pack-objects cache (docs/technical/pack-objects-cache.md) */
	[GM_PACK_CACHE_ENABLED] = { "gitaly_pack_objects_cache_enabled",
				    "If set to 1, indicates that the cache for PackObjectsHook has been enabled in this process",
				    METRIC_GAUGE, { "dir", "max_age" } },
	[GM_PACK_CACHE_LOOKUPS] = { "gitaly_pack_objects_cache_lookups_total",
				    "Number of lookups in the PackObjectsHook cache, divided by hit/miss", METRIC_COUNTER,
				    { "result" } },
	[GM_PACK_GENERATED] = { "gitaly_pack_objects_generated_bytes_total",
				"Number of bytes generated in PackObjectsHook by running git-pack-objects", METRIC_COUNTER },
	[GM_PACK_SERVED] = { "gitaly_pack_objects_served_bytes_total",
			     "Number of bytes of git-pack-objects data served to clients", METRIC_COUNTER },
	[GM_STREAMCACHE_DISK] = { "gitaly_streamcache_filestore_disk_usage_bytes", "Disk usage per filestore",
				  METRIC_GAUGE, { "dir" } },
	[GM_STREAMCACHE_ENTRIES] = { "gitaly_streamcache_index_entries", "Number of index entries in streamcache",
				     METRIC_GAUGE, { "dir" } },
	[GM_COMMANDS_RUNNING] = { "gitaly_commands_running", "Total number of processes currently being executed",
				  METRIC_GAUGE },
	[GM_CATFILE_CACHE] = { "gitaly_catfile_cache_total", "Counter of catfile cache hit/miss", METRIC_COUNTER,
			       { "type" } },
	[GM_CATFILE_PROCESSES] = { "gitaly_catfile_processes", "Gauge of active catfile processes", METRIC_GAUGE },
	[GM_CATFILE_PROCESSES_TOTAL] = { "gitaly_catfile_processes_total", "Counter of catfile processes",
					 METRIC_COUNTER },
	[GM_CATFILE_LOOKUPS] = { "gitaly_catfile_lookups_total", "Git catfile lookups by object type", METRIC_COUNTER,
				 { "type" } },
	[GM_CATFILE_MEMBERS] = { "gitaly_catfile_cache_members", "Gauge of catfile cache members by process type",
				 METRIC_GAUGE, { "type" } },
	[GM_LIMIT_IN_PROGRESS] = { "gitaly_concurrency_limiting_in_progress",
				   "Gauge of number of concurrent in-progress calls", METRIC_GAUGE, { LIMIT_LABELS } },
	[GM_LIMIT_QUEUED] = { "gitaly_concurrency_limiting_queued", "Gauge of number of queued calls", METRIC_GAUGE,
			      { LIMIT_LABELS } },
	[GM_LIMIT_ACQUIRING] = { "gitaly_concurrency_limiting_acquiring_seconds",
				 "Histogram of time calls are rate limited (in seconds)", METRIC_HISTOGRAM,
				 { LIMIT_LABELS } },
	[GM_REQUESTS_DROPPED] = { "gitaly_requests_dropped_total", "Number of requests dropped from the queue",
				  METRIC_COUNTER, { LIMIT_LABELS, "reason" } },
};

/* Go's DefBuckets: what a histogram gets when grpc_latency_buckets is empty */
static const double go_default_buckets[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };

/* The labels of one limiter: system "gitaly", its service and method. */
struct limit_labels {
	struct gitaly_metrics *gm;
	char *service, *method;
};

struct gitaly_metrics {
	struct metrics *reg;
	struct metric *f[GM_NR];
	struct metrics_grpc *grpc;
	struct metrics_http *http;
	struct limit_labels *limits;
	size_t nr_limits, alloc_limits;
	struct gitaly *g;
};

#define LIMIT_LV(ll) METRIC_LV("gitaly", (ll)->service, (ll)->method)

static void mon_queued(void *arg)
{
	struct limit_labels *ll = arg;
	metric_add(ll->gm->f[GM_LIMIT_QUEUED], LIMIT_LV(ll), 1);
}

static void mon_dequeued(void *arg)
{
	struct limit_labels *ll = arg;
	metric_add(ll->gm->f[GM_LIMIT_QUEUED], LIMIT_LV(ll), -1);
}

static void mon_enter(void *arg, uint64_t waited_ns)
{
	struct limit_labels *ll = arg;
	metric_add(ll->gm->f[GM_LIMIT_IN_PROGRESS], LIMIT_LV(ll), 1);
	metric_observe(ll->gm->f[GM_LIMIT_ACQUIRING], LIMIT_LV(ll), (double)waited_ns / 1e9);
}

static void mon_exit(void *arg)
{
	struct limit_labels *ll = arg;
	metric_add(ll->gm->f[GM_LIMIT_IN_PROGRESS], LIMIT_LV(ll), -1);
}

static void mon_dropped(void *arg, const char *reason)
{
	struct limit_labels *ll = arg;
	metric_inc(ll->gm->f[GM_REQUESTS_DROPPED], METRIC_LV("gitaly", ll->service, ll->method, reason));
}

static void collect_limit(struct limit *l, const char *method, void *arg)
{
	struct gitaly_metrics *gm = arg;
	const char *slash = method[0] == '/' ? strchr(method + 1, '/') : NULL;
	struct limit_labels *ll;

	ALLOC_GROW(gm->limits, gm->nr_limits + 1, gm->alloc_limits);
	ll = &gm->limits[gm->nr_limits++];
	ll->gm = gm;
	/* upstream's splitMethodName: "unknown" for both parts of a malformed name */
	ll->service = slash ? xstrndup(method + 1, (size_t)(slash - method - 1)) : xstrdup("unknown");
	ll->method = xstrdup(slash ? slash + 1 : "unknown");
}

static void attach_limit(struct limit *l, const char *method, void *arg)
{
	struct gitaly_metrics *gm = arg;
	struct limit_monitor mon = { mon_queued, mon_dequeued, mon_enter, mon_exit, mon_dropped,
				     &gm->limits[gm->nr_limits++] };
	limit_set_monitor(l, &mon);
}

void gitaly_metrics_init(struct gitaly *g)
{
	struct gitaly_metrics *gm = xcalloc(1, sizeof(*gm));
	const struct metrics_config *c = &g->cfg.prometheus;
	size_t n;

	gm->g = g;
	gm->reg = c->nr_buckets ? metrics_new(c->buckets, c->nr_buckets)
				: metrics_new(go_default_buckets, ARRAY_SIZE(go_default_buckets));
	metrics_register_all(gm->reg, families, GM_NR, gm->f);
	metrics_register_process(gm->reg);
	gm->grpc = metrics_grpc_attach(gm->reg, g->server, c->nr_buckets > 0);
	/* the label sets first: the array does not move once monitors point into it */
	gitaly_limits_each(g->limits, collect_limit, gm);
	n = gm->nr_limits;
	gm->nr_limits = 0;
	gitaly_limits_each(g->limits, attach_limit, gm);
	gm->nr_limits = n;
	g->metrics = gm;
}

void gitaly_metrics_housekeeping_task(struct gitaly *g, const char *task, const char *status)
{
	if (g->metrics)
		metric_inc(g->metrics->f[GM_HOUSEKEEPING_TASKS], METRIC_LV(task, status));
}

void gitaly_metrics_vote_delay(struct gitaly *g, double seconds)
{
	if (g->metrics)
		metric_observe(g->metrics->f[GM_VOTE_DELAY], NULL, seconds);
}

void gitaly_metrics_pruned_files(struct gitaly *g, const char *filetype, double n)
{
	if (g->metrics)
		metric_add(g->metrics->f[GM_HOUSEKEEPING_PRUNED], METRIC_LV(filetype), n);
}

/* Sample what lib/git counts, on the loop, for the scrape waiting (metrics.h, "refresh"). */
static void on_refresh(struct metrics_http *h, void *arg)
{
	struct gitaly_metrics *gm = arg;
	struct catfile_cache *cc = gm->g->catfile;

	metrics_lock(gm->reg);
	metric_set(gm->f[GM_COMMANDS_RUNNING], NULL, (double)git_cmd_live_count());
	if (cc) {
		metric_set(gm->f[GM_CATFILE_CACHE], METRIC_LV("hit"), (double)catfile_cache_hits(cc));
		metric_set(gm->f[GM_CATFILE_CACHE], METRIC_LV("miss"), (double)catfile_cache_misses(cc));
		metric_set(gm->f[GM_CATFILE_PROCESSES], NULL, (double)catfile_cache_live(cc));
		metric_set(gm->f[GM_CATFILE_PROCESSES_TOTAL], NULL, (double)catfile_cache_spawned(cc));
		/* our processes run --batch-command: upstream's "object_reader"; it has no others here */
		metric_set(gm->f[GM_CATFILE_MEMBERS], METRIC_LV("object_reader"), (double)catfile_cache_idle(cc));
		metric_set(gm->f[GM_CATFILE_MEMBERS], METRIC_LV("object_content_reader"), 0);
		metric_set(gm->f[GM_CATFILE_MEMBERS], METRIC_LV("object_info_reader"), 0);
		for (int t = CATFILE_COMMIT; t <= CATFILE_TAG; t++)
			if (catfile_cache_lookups(cc, t))
				metric_set(gm->f[GM_CATFILE_LOOKUPS], METRIC_LV(catfile_type_name((enum catfile_type)t)),
					   (double)catfile_cache_lookups(cc, t));
		if (catfile_cache_lookups(cc, -1))
			metric_set(gm->f[GM_CATFILE_LOOKUPS], METRIC_LV("info"), (double)catfile_cache_lookups(cc, -1));
	}
	metric_set(gm->f[GM_PACK_GENERATED], NULL, (double)pack_objects_generated_bytes());
	metric_set(gm->f[GM_PACK_SERVED], NULL, (double)pack_objects_served_bytes());
	if (gm->g->pack_cache) {
		const char *dir = gm->g->cfg.pack_objects_cache.dir;
		struct pack_cache_stats st;
		char age[32];
		pack_cache_stats(gm->g->pack_cache, &st);
		/* upstream's label: whole seconds */
		snprintf(age, sizeof(age), "%llu", (unsigned long long)(gm->g->cfg.pack_objects_cache.max_age_ms / 1000));
		metric_set(gm->f[GM_PACK_CACHE_ENABLED], METRIC_LV(dir, age), 1);
		metric_set(gm->f[GM_PACK_CACHE_LOOKUPS], METRIC_LV("hit"), (double)st.hits);
		metric_set(gm->f[GM_PACK_CACHE_LOOKUPS], METRIC_LV("miss"), (double)st.misses);
		metric_set(gm->f[GM_STREAMCACHE_DISK], METRIC_LV(dir), (double)st.disk_bytes);
		metric_set(gm->f[GM_STREAMCACHE_ENTRIES], METRIC_LV(dir), (double)st.entries);
	}
	metrics_unlock(gm->reg);
	metrics_http_refreshed(h);
}

void gitaly_metrics_listen(struct gitaly *g)
{
	struct gitaly_metrics *gm = g->metrics;
	struct metrics_http_opts o = { g->cfg.prometheus_listen_addr, { "/metrics" }, { gm->reg }, 1,
				       g->cfg.prometheus.scrape_timeout_ms, upgrade_inherited(g->upgrade),
				       g->loop, on_refresh, gm };
	struct strbuf err = STRBUF_INIT;
	char bound[256] = "";

	if (!g->cfg.prometheus_listen_addr || !*g->cfg.prometheus_listen_addr)
		return;
	gm->http = metrics_http_start(&o, bound, sizeof(bound), &err);
	if (!gm->http)
		die("%s", err.buf);
	log_msgf(LOG_INFO, "starting prometheus listener on %s", bound);
	strbuf_release(&err);
}

void gitaly_metrics_stop(struct gitaly *g)
{
	if (g->metrics) {
		metrics_http_stop(g->metrics->http);
		g->metrics->http = NULL;
	}
}

void gitaly_metrics_free(struct gitaly *g)
{
	struct gitaly_metrics *gm = g->metrics;
	if (!gm)
		return;
	metrics_http_stop(gm->http);
	metrics_grpc_free(gm->grpc);
	for (size_t i = 0; i < gm->nr_limits; i++) {
		free(gm->limits[i].service);
		free(gm->limits[i].method);
	}
	free(gm->limits);
	metrics_free(gm->reg);
	free(gm);
	g->metrics = NULL;
}
