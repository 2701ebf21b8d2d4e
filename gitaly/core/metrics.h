/*
 * gitaly's Prometheus series (docs/technical/metrics.md, "gitaly"): the
 * go-grpc-prometheus server series, running commands, the cat-file cache
 * and the [[concurrency]] limiters, served on prometheus_listen_addr.
 */
#ifndef GITALY_CORE_METRICS_H
#define GITALY_CORE_METRICS_H

struct gitaly;
struct gitaly_metrics;

/* Count g->server's calls and g->limits' limiters (both must exist). */
void gitaly_metrics_init(struct gitaly *g);
/* Serve /metrics on prometheus_listen_addr, when set; die() when it cannot. */
void gitaly_metrics_listen(struct gitaly *g);
/* Stop serving (on the loop, before it ends), then free (after grpc_server_free). */
void gitaly_metrics_stop(struct gitaly *g);
void gitaly_metrics_free(struct gitaly *g);

/* Housekeeping (docs/technical/housekeeping.md, "Metrics"); on the loop, g->metrics may be NULL. */
/* gitaly_housekeeping_tasks_total{housekeeping_task, status} + 1 */
void gitaly_metrics_housekeeping_task(struct gitaly *g, const char *task, const char *status);
/* gitaly_housekeeping_pruned_files_total{filetype} + n */
void gitaly_metrics_pruned_files(struct gitaly *g, const char *filetype, double n);

/* gitaly_hook_transaction_voting_delay_seconds: one VoteTransaction's round trip to praefect */
void gitaly_metrics_vote_delay(struct gitaly *g, double seconds);

#endif
