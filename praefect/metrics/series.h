/*
 * praefect's Prometheus series (docs/technical/metrics.md, "praefect"): the
 * one table of their names, help, types, labels and buckets (metrics.c),
 * the registries behind /metrics and /db_metrics, and the once-a-second
 * sampling of the numbers the in-memory model and the store hold (task
 * metrics, schedule.c). Events (votes, replication jobs, health checks,
 * calls) are counted where they happen through pm().
 */
#ifndef PRAEFECT_SERIES_H
#define PRAEFECT_SERIES_H

#include "metrics/metrics.h"

struct praefect;
struct metrics_grpc;
struct metrics_http;

#define STATUS_BACKLOG_SAMPLES 60
#define STATUS_FAILOVERS 10

enum pm_family {
	/* /metrics */
	PM_TX_ACTIONS,        /* gitaly_praefect_transactions_total{action} */
	PM_TX_DELAY,          /* gitaly_praefect_transactions_delay_seconds{action} */
	PM_SUBTX,             /* gitaly_praefect_subtransactions_per_transaction_total */
	PM_VOTERS,            /* gitaly_praefect_voters_per_transaction_total{virtual_storage} */
	PM_REPL_LATENCY,      /* gitaly_praefect_replication_latency{type} */
	PM_REPL_DELAY,        /* gitaly_praefect_replication_delay{type} */
	PM_REPL_JOBS,         /* gitaly_praefect_replication_jobs{virtual_storage,gitaly_storage,change_type} */
	PM_NODE_LATENCY,      /* gitaly_praefect_node_latency{gitaly_storage} */
	PM_NODE_UP,           /* gitaly_praefect_node_last_healthcheck_up{gitaly_storage} */
	PM_READ_DIST,         /* gitaly_praefect_read_distribution{virtual_storage,storage} */
	PM_METHOD_TYPES,      /* gitaly_praefect_method_types{method_type} */
	PM_RECONCILE_SECONDS, /* gitaly_praefect_reconciliation_scheduling_seconds */
	PM_VERIFY_DEQUEUED,   /* gitaly_praefect_verification_jobs_dequeued_total{virtual_storage,storage} */
	PM_VERIFY_COMPLETED,  /* gitaly_praefect_verification_jobs_completed_total{virtual_storage,storage,result} */
	PM_VERIFY_RELEASED,   /* gitaly_praefect_stale_verification_leases_released_total */
	PM_NOTIFY_RECONNECTS, /* gitaly_praefect_notifications_reconnects_total{state} (listener/listener.c) */
	/* ours (status.c, docs/technical/replication-status.md), all {virtual_storage,storage} */
	PM_BACKLOG_JOBS,      /* gitaly_praefect_replication_backlog_jobs */
	PM_BACKLOG_OLDEST,    /* gitaly_praefect_replication_backlog_oldest_seconds */
	PM_THROUGHPUT,        /* gitaly_praefect_replication_throughput_jobs_per_second */
	PM_OUTDATED,          /* gitaly_praefect_outdated_replicas */
	PM_OUTDATED_AGE,      /* gitaly_praefect_outdated_replica_age_seconds (the oldest) */
	/* /db_metrics */
	PM_UNAVAILABLE,       /* gitaly_praefect_unavailable_repositories{virtual_storage} */
	PM_QUEUE_DEPTH,       /* gitaly_praefect_replication_queue_depth{virtual_storage,target_node,state} */
	PM_NR
};

struct praefect_metrics {
	struct metrics *reg;   /* /metrics */
	struct metrics *db;    /* /db_metrics: what upstream reads from its database */
	struct metric *f[PM_NR];
	struct metrics_grpc *grpc, *grpc_bc;   /* p->server's calls, and the backchannel's */
	struct metrics_http *http;
	int refreshing;        /* a scrape waits for the next queue listing */
	int listing;           /* the metrics task's queue listing is under way */
	uint64_t rstatus_at_ms; /* the last throughput sample (status.c), monotonic */
	size_t rstatus_writes;  /* outdated_since writes left in this sample (status.c) */
	/*
	 * The last walk of the records (metrics.c sample()): taken again only
	 * when a record changed (p->model_epoch), a node's health changed, or it
	 * left outdated_since writes for later; otherwise its counts stand.
	 */
	int walked;
	uint64_t walked_epoch, walked_health;
	int64_t *unavailable_vs; /* per virtual storage, from the last walk */
	/* the status page's backlog chart: unfinished jobs, one sample a minute, the last hour */
	int64_t backlog[STATUS_BACKLOG_SAMPLES];
	size_t nr_backlog, backlog_next;
	uint64_t backlog_at_ms;
	/* the status page's recent failovers (status/page.c), newest at failovers[(next - 1) % N] */
	struct status_failover {
		int64_t at;          /* wall clock, seconds */
		char *vs, *relative_path, *from, *to;
	} failovers[STATUS_FAILOVERS];
	size_t nr_failovers, failover_next;
};

/* Build the registries and count p->server's calls; die() on a bad [prometheus] setup. */
void praefect_metrics_init(struct praefect *p);
/* Count the backchannel server's calls (RefTransaction from the nodes) too, as upstream. */
void praefect_metrics_count_backchannel(struct praefect *p);
/* Serve them on prometheus_listen_addr, when set. */
void praefect_metrics_listen(struct praefect *p);
/* Stop the endpoint (before the loop's last run) and free everything (after grpc_server_free). */
void praefect_metrics_stop(struct praefect *p);
void praefect_metrics_free(struct praefect *p);

/* gitaly_praefect_method_types: the call's operation type, unless praefect answers it itself. */
struct grpc_call;
void praefect_count_method_type(struct praefect *p, struct grpc_call *call);

/*
 * Replication status (status.c), refreshed where the model is sampled: a
 * walk of the records is rstatus_begin(), rstatus_note_repo() per
 * repository (setting each replica's outdated_since_ms), rstatus_end()
 * (throughput, the series); a queue listing is rstatus_note_jobs(). Times
 * are wall clock, Unix ms (rstatus_wall_ms()).
 */
struct repo;
struct repl_job;
int64_t rstatus_wall_ms(void);
void rstatus_begin(struct praefect *p);
void rstatus_note_repo(struct praefect *p, struct repo *r, int64_t now);
void rstatus_end(struct praefect *p, int64_t now);
void rstatus_note_jobs(struct praefect *p, const struct repl_job *jobs, size_t n);

struct praefect_metrics *praefect_metrics_of(struct praefect *p);
static inline struct metric *pm(struct praefect *p, enum pm_family f)
{
	return praefect_metrics_of(p)->f[f];
}

#endif
