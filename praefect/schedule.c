/*
 * praefect's periodic work: every task, its period and when it starts, in
 * one table. All of them run off one cron (lib/loop/cron.h); the table is
 * mirrored in docs/technical/praefect-scheduler.md.
 */
#include "praefect.h"

#include <stddef.h>

#define REPL_HEARTBEAT_MS 5000      /* keep in-progress jobs' leases alive */
#define REPL_STALE_CHECK_MS 30000   /* release jobs whose lease ran out */
#define METRICS_INTERVAL_MS 1000
#define RECONCILE_SOON_MS 100       /* after a node turns healthy */
#define VERIFY_INTERVAL_MS 1000     /* suspect replicas: Fsck, then repair */
#define VERIFY_SOON_MS 10           /* after a replica turned suspect or a step ended */
#define RECONCILE_MARKED_MS 1000    /* after a job died or ended behind its repository */
#define VERIFIER_TICK_MS 2000       /* background verifier: upstream's 2 s ticker; 0 when disabled */
#define VERIFIER_SOON_MS 10         /* after a verification ended (a node's slot is free) */
#define REBALANCE_MS 2000           /* moves advance and start at this pace */

static uint64_t health_every(const struct praefect *p) { return p->health_interval_ms; }
static uint64_t reconcile_every(const struct praefect *p) { return p->cfg.reconciliation_interval_ms; }
/* a lease is refreshed several times and checked twice within the stale period, however short it is */
static uint64_t heartbeat_every(const struct praefect *p)
{
	return p->cfg.replication_stale_ms / 4 < REPL_HEARTBEAT_MS ? p->cfg.replication_stale_ms / 4 : REPL_HEARTBEAT_MS;
}
static uint64_t stale_every(const struct praefect *p)
{
	return p->cfg.replication_stale_ms / 2 < REPL_STALE_CHECK_MS ? p->cfg.replication_stale_ms / 2 : REPL_STALE_CHECK_MS;
}
static uint64_t metrics_every(const struct praefect *p) { return METRICS_INTERVAL_MS; }
static uint64_t verify_every(const struct praefect *p) { return VERIFY_INTERVAL_MS; }
static uint64_t verifier_every(const struct praefect *p) { return p->cfg.verification_interval_ms ? VERIFIER_TICK_MS : 0; }
static uint64_t cleanup_every(const struct praefect *p) { return p->cfg.cleanup_run_interval_ms ? p->cfg.cleanup_check_interval_ms : 0; }
static uint64_t rebalance_every(const struct praefect *p)
{
	/* only a virtual storage with a replication factor below its node count has anything to balance */
	for (size_t i = 0; p->cfg.rebalance_moves > 0 && i < p->nr_vs; i++)
		if (p->vs[i].cfg->default_replication_factor > 0 &&
		    (size_t)p->vs[i].cfg->default_replication_factor < p->vs[i].nr_nodes)
			return REBALANCE_MS;
	return 0;
}
static uint64_t never(const struct praefect *p) { return 0; }

/*
 * The task list. `every` is the period (0: only one-shot runs); `at_once`
 * runs the task when it is scheduled, before its first period; `soon_ms` is
 * the delay of a schedule_kick(). Tasks start in two phases: with the node
 * connections (health must run before praefect serves) and once praefect
 * serves. Not in the table: one replication worker per (virtual storage,
 * storage), which has no period; it runs when woken (a job queued, its node
 * healthy again, a stale job released) or after its idle back-off of 1 s
 * doubling to 5 s (replicator/replicator.c).
 */
static const struct task_def {
	const char *name;
	uint64_t (*every)(const struct praefect *p);
	int at_once;
	uint64_t soon_ms;
	enum schedule_phase phase;
	void (*run)(struct praefect *p);
} tasks[PRAEFECT_NR_TASKS] = {
	/*                          name                     every            at_once soon_ms            phase */
	[TASK_HEALTH_CHECK]     = { "health-check",          health_every,    1,      0,                 SCHEDULE_WITH_NODES, nodes_check_all },
	[TASK_REPL_HEARTBEAT]   = { "replication-heartbeat", heartbeat_every, 0,      0,                 SCHEDULE_WITH_SERVING, replicator_heartbeat },
	[TASK_REPL_STALE]       = { "replication-stale",     stale_every,     0,      0,                 SCHEDULE_WITH_SERVING, replicator_release_stale },
	[TASK_RECONCILE]        = { "reconcile",             reconcile_every, 0,      RECONCILE_SOON_MS, SCHEDULE_WITH_SERVING, reconciler_run },
	[TASK_METRICS]          = { "metrics",               metrics_every,   0,      0,                 SCHEDULE_WITH_SERVING, metrics_tick },
	[TASK_VERIFY_REPLICAS]  = { "verify-replicas",       verify_every,    0,      VERIFY_SOON_MS,    SCHEDULE_WITH_SERVING, suspects_verify },
	[TASK_RECONCILE_SOON]   = { "reconcile-soon",        never,           0,      RECONCILE_MARKED_MS, SCHEDULE_WITH_SERVING, reconciler_run_marked },
	[TASK_WRITE_BARRIER]    = { "write-barrier",         never,           0,      0,                 SCHEDULE_WITH_SERVING, coordinator_release_held },
	[TASK_VERIFY_BACKGROUND] = { "verify-background",    verifier_every,  0,      VERIFIER_SOON_MS,  SCHEDULE_WITH_SERVING, verifier_run },
	[TASK_REPOSITORIES_CLEANUP] = { "repositories-cleanup", cleanup_every, 1,     0,                 SCHEDULE_WITH_SERVING, cleaner_run },
	[TASK_REBALANCE]        = { "rebalance",             rebalance_every, 0,      0,                 SCHEDULE_WITH_SERVING, rebalancer_run },
};

static void run_task(struct cron_task *t)
{
	struct praefect *p = t->data;
	tasks[t - p->tasks].run(p);
}

void schedule_init(struct praefect *p)
{
	cron_init(&p->cron, p->loop);
}

void schedule_start(struct praefect *p, enum schedule_phase phase)
{
	for (size_t i = 0; i < PRAEFECT_NR_TASKS; i++) {
		const struct task_def *d = &tasks[i];
		struct cron_task *t = &p->tasks[i];
		if (d->phase != phase)
			continue;
		t->name = d->name;
		t->every_ms = d->every(p);
		t->run = run_task;
		t->data = p;
		if (d->at_once)
			d->run(p);
		cron_add(&p->cron, t, t->every_ms);
	}
}

void schedule_kick(struct praefect *p, enum praefect_task task)
{
	cron_soon(&p->tasks[task], tasks[task].soon_ms);
}

void schedule_kick_in(struct praefect *p, enum praefect_task task, uint64_t delay_ms)
{
	cron_soon(&p->tasks[task], delay_ms);
}

void schedule_stop(struct praefect *p)
{
	cron_close(&p->cron);
}
