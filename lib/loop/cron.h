/*
 * loop/cron: one timer per process that runs all of its periodic work, from
 * a task list the process declares in one place (Redis's serverCron, except
 * that every task keeps its own period instead of one common frequency).
 *
 * Contract:
 *
 *  - A `struct cron` owns one uv_timer_t on one loop. Tasks are `struct
 *    cron_task`s owned by the caller, usually embedded in the component whose
 *    work they run; the cron only links them. A task must stay valid until it
 *    is removed or the cron is closed.
 *  - A task has a period, `every_ms` (0: it runs only when asked), and at most
 *    one pending one-shot run, asked for with cron_soon(). The two are
 *    independent: a one-shot run does not move the next periodic one. When
 *    both fall due together the task runs once.
 *  - Times are the loop's clock (uv_now()), exactly as libuv's own timers: a
 *    periodic task next runs `every_ms` after the loop time at which it last
 *    ran, so a late loop delays runs and never bunches them up. Tasks due at
 *    the same time run in the order they were added.
 *  - Tasks run on the loop thread from the cron's timer callback, never from
 *    inside a cron_*() call. A running task may call any cron function, on
 *    itself or on another task (remove itself, ask for a one-shot run, ...).
 *  - cron_close() stops the timer and forgets every task: none runs after it.
 */
#ifndef LOOP_CRON_H
#define LOOP_CRON_H

#include <stdint.h>
#include <uv.h>

struct cron;

struct cron_task {
	const char *name;          /* for logs and the documented task list */
	uint64_t every_ms;         /* period; 0: only one-shot runs */
	void (*run)(struct cron_task *t);
	void *data;                /* the caller's */

	/* private to cron.c */
	struct cron *cron;
	struct cron_task *next;
	uint64_t periodic_due;     /* loop time of the next periodic run, or CRON_NEVER */
	uint64_t soon_due;         /* loop time of the pending one-shot run, or CRON_NEVER */
	int firing;
};

#define CRON_NEVER UINT64_MAX

struct cron {
	uv_loop_t *loop;
	uv_timer_t timer;
	struct cron_task *tasks;   /* in the order added */
	int in_tick, closed;
};

/* --- lifecycle --- */

/* Set up `c` on `loop`; no task runs until one is added. */
void cron_init(struct cron *c, uv_loop_t *loop);

/*
 * Stop the timer and forget every task (they are left unlinked and may be
 * freed). The timer handle is closed; the loop must run once more for the
 * close to complete, so `c` must stay valid until then.
 */
void cron_close(struct cron *c);

/* --- tasks --- */

/*
 * Link `t` into `c`. A periodic task (every_ms > 0) first runs `first_ms`
 * from now; a task without a period waits for cron_soon(). Adding a task that
 * is already linked, or adding to a closed cron, does nothing.
 */
void cron_add(struct cron *c, struct cron_task *t, uint64_t first_ms);

/* Unlink `t`: it does not run again (a pending one-shot run is dropped). */
void cron_remove(struct cron_task *t);

/*
 * Ask for one extra run of `t`, `delay_ms` from now (0: on the next loop
 * iteration, never synchronously). If a one-shot run is already pending, the
 * earlier of the two stays. Does nothing if `t` is not linked.
 */
void cron_soon(struct cron_task *t, uint64_t delay_ms);

/* Drop the pending one-shot run of `t`, if any; its period is untouched. */
void cron_cancel(struct cron_task *t);

/* Whether a one-shot run of `t` is pending. */
int cron_soon_pending(const struct cron_task *t);

#endif
