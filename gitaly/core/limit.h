/*
 * limit: concurrency limits with a queue, as upstream's [[concurrency]]
 * (docs/technical/gitaly-node.md, "Concurrency limits"). This file is the
 * mechanism only, without gRPC: core/methods.c wraps the handlers of the
 * configured methods with it.
 *
 * Model:
 *
 *  - A `struct limit` serves one RPC. Calls are counted per key (the
 *    repository's relative path): at most `max` of a key hold a slot at
 *    once. A key's counters exist while some call of that key holds or
 *    waits, and are freed with its last call.
 *  - A call that finds no free slot waits in the key's FIFO queue. With
 *    `max_queue` > 0 a key admits at most `max + max_queue` calls (holding
 *    or waiting) and refuses the next at once (LIMIT_EFULL, "maximum queue
 *    size reached"); 0 means no bound. With `max_wait_ms` > 0 a call that
 *    waited that long leaves the queue with LIMIT_ETIME ("maximum time in
 *    concurrency queue reached"); 0 means it may wait as long as it lives.
 *  - A slot that frees goes to the head of the queue. The waiter learns it
 *    from its callback on a later loop iteration, never from inside the
 *    limit_done() that freed the slot: that runs where another call closes.
 *
 * Callbacks follow libuv's rule: limit_acquire() either grants at once
 * (LIMIT_NOW, no callback), refuses (LIMIT_EFULL, no callback), or queues
 * (LIMIT_QUEUED): then `cb` fires exactly once, with 0 (the slot is held) or
 * LIMIT_ETIME (the ticket is gone), unless limit_done() cancelled the wait
 * first, in which case it never fires.
 */
#ifndef GITALY_CORE_LIMIT_H
#define GITALY_CORE_LIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct limit;
struct limit_ticket;

#define LIMIT_NOW      0
#define LIMIT_QUEUED   1
#define LIMIT_EFULL   -1       /* maximum queue size reached */
#define LIMIT_ETIME   -2       /* maximum time in concurrency queue reached */

struct limit_opts {
	int64_t max;               /* slots per key, > 0 */
	int64_t max_queue;         /* 0: unbounded */
	uint64_t max_wait_ms;      /* 0: unbounded */
};

/*
 * What upstream logs about one limited call (its limit.* fields), filled
 * in by the limiter in the caller's memory as the call moves along.
 */
struct limit_info {
	int queued;                /* limit_acquire() admitted the call (granted or waiting) */
	int entered;               /* the call got a slot */
	int64_t queue_length;      /* limit.concurrency_queue_length */
	int64_t in_progress;       /* limit.concurrency_in_progress: on entering, or when dropped */
	uint64_t queue_ms;         /* limit.concurrency_queue_ms: waited until entering or dropped */
	const char *dropped;       /* limit.concurrency_dropped: NULL, "max_size", "max_time", or
				      "other" when the call ended while it waited */
};

typedef void (*limit_cb)(struct limit_ticket *t, int status, void *arg);

/* --- the limiter of one RPC --- */

struct limit *limit_new(uv_loop_t *loop, const char *name, const struct limit_opts *opts);
/*
 * Free `l`. Tickets still waiting are dropped without their callback; the
 * loop must run once more to close their timers. No ticket may be used after.
 */
void limit_free(struct limit *l);
const char *limit_name(const struct limit *l);

/*
 * What upstream's concurrency monitor is told (its Prometheus series,
 * gitaly/core/metrics.c): a call starts waiting in the queue, stops waiting
 * (granted, timed out or gone), takes a slot after waiting `waited_ns`,
 * gives it back, or is dropped ("max_size", "max_time", "other"). Any
 * function may be NULL; they run inside the limiter's calls and must not
 * call back into it.
 */
struct limit_monitor {
	void (*queued)(void *arg);
	void (*dequeued)(void *arg);
	void (*enter)(void *arg, uint64_t waited_ns);
	void (*exit)(void *arg);
	void (*dropped)(void *arg, const char *reason);
	void *arg;
};
void limit_set_monitor(struct limit *l, const struct limit_monitor *m);

/* --- one call --- */

/*
 * Ask for a slot for `key` (`len` bytes). `info` must stay valid until the
 * ticket is done. Returns LIMIT_NOW (holding: call limit_done() at the end),
 * LIMIT_QUEUED (see above; `*out` is the ticket either way), or LIMIT_EFULL
 * (`*out` NULL, nothing to release).
 */
int limit_acquire(struct limit *l, const char *key, size_t len, struct limit_info *info, limit_cb cb, void *arg,
		  struct limit_ticket **out);

/*
 * The call ended: a waiting ticket leaves the queue (its callback never
 * fires), a holding one frees its slot for the next waiter. Exactly once per
 * ticket from LIMIT_NOW, LIMIT_QUEUED or a callback with 0; never after a
 * callback with LIMIT_ETIME.
 */
void limit_done(struct limit_ticket *t);

/* Counters of `key` (0 when it has none), for tests and metrics. */
int64_t limit_in_progress(const struct limit *l, const char *key, size_t len);
int64_t limit_waiting(const struct limit *l, const char *key, size_t len);

#endif
