/* Unit tests: gitaly's concurrency limiter (queue order, bound, wait, cancellation, hand-over). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/limit.h"

/* One call: its ticket, what the limiter wrote about it, and what its callback saw. */
struct caller {
	struct limit_ticket *t;
	struct limit_info info;
	int fired;          /* callback count */
	int status;
	int order;          /* the position in which it got its slot */
};

static int grants;

static void on_cb(struct limit_ticket *t, int status, void *arg)
{
	struct caller *c = arg;
	assert_ptr_equal(t, c->t);
	c->fired++;
	c->status = status;
	if (status == 0)
		c->order = ++grants;
	else
		c->t = NULL;    /* the ticket is gone */
}

static int ask(struct limit *l, const char *key, struct caller *c)
{
	memset(c, 0, sizeof(*c));
	return limit_acquire(l, key, strlen(key), &c->info, on_cb, c, &c->t);
}

static void on_stop(uv_timer_t *h)
{
	uv_stop(h->loop);
}

/* Run the loop for about `ms` milliseconds (0: one round of due callbacks). */
static void run_for(uv_loop_t *loop, uint64_t ms)
{
	uv_timer_t stop;
	uv_timer_init(loop, &stop);
	uv_timer_start(&stop, on_stop, ms, 0);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&stop, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

static void finish(uv_loop_t *loop, struct limit *l)
{
	limit_free(l);
	uv_run(loop, UV_RUN_NOWAIT);
	assert_int_equal(uv_loop_close(loop), 0);
}

static void test_waiters_get_the_slot_in_arrival_order(void **state)
{
	uv_loop_t loop;
	struct limit_opts o = { .max = 1 };
	struct limit *l;
	struct caller a, b, c, d;
	(void)state;

	uv_loop_init(&loop);
	l = limit_new(&loop, "/gitaly.SSHService/SSHUploadPack", &o);
	grants = 0;
	assert_int_equal(ask(l, "repo.git", &a), LIMIT_NOW);
	assert_int_equal(a.info.in_progress, 1);
	assert_int_equal(ask(l, "repo.git", &b), LIMIT_QUEUED);
	assert_int_equal(ask(l, "repo.git", &c), LIMIT_QUEUED);
	assert_int_equal(ask(l, "repo.git", &d), LIMIT_QUEUED);
	assert_int_equal(limit_waiting(l, "repo.git", 8), 3);
	/* without a queue bound upstream reports no queue length */
	assert_int_equal(d.info.queue_length, 0);

	limit_done(a.t);
	/* the hand-over is never synchronous: it happens where another call closes */
	assert_int_equal(b.fired, 0);
	assert_int_equal(limit_in_progress(l, "repo.git", 8), 1);
	run_for(&loop, 0);
	assert_int_equal(b.fired, 1);
	assert_int_equal(b.status, 0);
	assert_int_equal(c.fired, 0);
	limit_done(b.t);
	run_for(&loop, 0);
	limit_done(c.t);
	run_for(&loop, 0);
	assert_int_equal(b.order, 1);
	assert_int_equal(c.order, 2);
	assert_int_equal(d.order, 3);
	assert_int_equal(d.info.entered, 1);
	limit_done(d.t);
	assert_int_equal(limit_in_progress(l, "repo.git", 8), 0);
	assert_int_equal(limit_waiting(l, "repo.git", 8), 0);
	finish(&loop, l);
}

static void test_keys_are_limited_separately(void **state)
{
	uv_loop_t loop;
	struct limit_opts o = { .max = 1, .max_queue = 1 };
	struct limit *l;
	struct caller a, b, c;
	(void)state;

	uv_loop_init(&loop);
	l = limit_new(&loop, "rpc", &o);
	assert_int_equal(ask(l, "a.git", &a), LIMIT_NOW);
	assert_int_equal(ask(l, "b.git", &b), LIMIT_NOW);
	assert_int_equal(ask(l, "a.git", &c), LIMIT_QUEUED);
	limit_done(b.t);
	run_for(&loop, 0);
	assert_int_equal(c.fired, 0);
	limit_done(c.t);
	limit_done(a.t);
	finish(&loop, l);
}

static void test_a_full_queue_refuses_at_once(void **state)
{
	uv_loop_t loop;
	struct limit_opts o = { .max = 1, .max_queue = 1 };
	struct limit *l;
	struct caller a, b, c;
	(void)state;

	uv_loop_init(&loop);
	l = limit_new(&loop, "rpc", &o);
	assert_int_equal(ask(l, "r", &a), LIMIT_NOW);
	assert_int_equal(a.info.queue_length, 1);   /* upstream counts the caller itself */
	assert_int_equal(ask(l, "r", &b), LIMIT_QUEUED);
	assert_int_equal(b.info.queue_length, 1);
	assert_int_equal(ask(l, "r", &c), LIMIT_EFULL);
	assert_null(c.t);
	assert_string_equal(c.info.dropped, "max_size");
	assert_int_equal(c.info.queue_length, 1);
	assert_int_equal(c.info.in_progress, 1);
	run_for(&loop, 5);
	assert_int_equal(c.fired, 0);
	/* once the waiter got in, there is room in the queue again */
	limit_done(a.t);
	run_for(&loop, 0);
	assert_int_equal(b.fired, 1);
	assert_int_equal(ask(l, "r", &c), LIMIT_QUEUED);
	limit_done(c.t);
	limit_done(b.t);
	finish(&loop, l);
}

static void test_a_waiter_gives_up_after_the_queue_wait(void **state)
{
	uv_loop_t loop;
	struct limit_opts o = { .max = 1, .max_wait_ms = 30 };
	struct limit *l;
	struct caller a, b;
	uint64_t t0;
	(void)state;

	uv_loop_init(&loop);
	l = limit_new(&loop, "rpc", &o);
	assert_int_equal(ask(l, "r", &a), LIMIT_NOW);
	uv_update_time(&loop);
	t0 = uv_now(&loop);
	assert_int_equal(ask(l, "r", &b), LIMIT_QUEUED);
	run_for(&loop, 10);
	assert_int_equal(b.fired, 0);
	run_for(&loop, 60);
	assert_int_equal(b.fired, 1);
	assert_int_equal(b.status, LIMIT_ETIME);
	assert_null(b.t);
	assert_true(uv_now(&loop) - t0 >= 30);
	assert_string_equal(b.info.dropped, "max_time");
	assert_true(b.info.queue_ms >= 29);
	assert_int_equal(limit_waiting(l, "r", 1), 0);
	/* the holder is unaffected and its release finds nobody waiting */
	limit_done(a.t);
	run_for(&loop, 0);
	assert_int_equal(b.fired, 1);
	assert_int_equal(limit_in_progress(l, "r", 1), 0);
	finish(&loop, l);
}

static void test_the_queue_wait_does_not_apply_to_a_granted_call(void **state)
{
	uv_loop_t loop;
	struct limit_opts o = { .max = 1, .max_wait_ms = 20 };
	struct limit *l;
	struct caller a, b;
	(void)state;

	uv_loop_init(&loop);
	l = limit_new(&loop, "rpc", &o);
	assert_int_equal(ask(l, "r", &a), LIMIT_NOW);
	assert_int_equal(ask(l, "r", &b), LIMIT_QUEUED);
	limit_done(a.t);
	run_for(&loop, 50);
	assert_int_equal(b.fired, 1);
	assert_int_equal(b.status, 0);
	assert_int_equal(limit_in_progress(l, "r", 1), 1);
	limit_done(b.t);
	finish(&loop, l);
}

static void test_a_cancelled_waiter_leaves_the_queue_silently(void **state)
{
	uv_loop_t loop;
	struct limit_opts o = { .max = 1, .max_queue = 1, .max_wait_ms = 20 };
	struct limit *l;
	struct caller a, b, c;
	(void)state;

	uv_loop_init(&loop);
	l = limit_new(&loop, "rpc", &o);
	assert_int_equal(ask(l, "r", &a), LIMIT_NOW);
	assert_int_equal(ask(l, "r", &b), LIMIT_QUEUED);
	limit_done(b.t);   /* the client went away */
	assert_string_equal(b.info.dropped, "other");
	assert_int_equal(limit_waiting(l, "r", 1), 0);
	/* its place in the bounded queue is free again */
	assert_int_equal(ask(l, "r", &c), LIMIT_QUEUED);
	run_for(&loop, 40);
	assert_int_equal(b.fired, 0);   /* neither its timer nor a grant reports */
	assert_int_equal(c.fired, 1);
	assert_int_equal(c.status, LIMIT_ETIME);
	limit_done(a.t);
	finish(&loop, l);
}

static void test_a_waiter_cancelled_after_the_hand_over_passes_the_slot_on(void **state)
{
	uv_loop_t loop;
	struct limit_opts o = { .max = 1 };
	struct limit *l;
	struct caller a, b, c;
	(void)state;

	uv_loop_init(&loop);
	l = limit_new(&loop, "rpc", &o);
	grants = 0;
	assert_int_equal(ask(l, "r", &a), LIMIT_NOW);
	assert_int_equal(ask(l, "r", &b), LIMIT_QUEUED);
	assert_int_equal(ask(l, "r", &c), LIMIT_QUEUED);
	limit_done(a.t);    /* b is handed the slot; its callback is due */
	limit_done(b.t);    /* ...but b's call closes first */
	run_for(&loop, 0);
	assert_int_equal(b.fired, 0);
	assert_int_equal(c.fired, 1);
	assert_int_equal(c.status, 0);
	assert_int_equal(limit_in_progress(l, "r", 1), 1);
	limit_done(c.t);
	finish(&loop, l);
}

static void test_several_slots_per_key(void **state)
{
	uv_loop_t loop;
	struct limit_opts o = { .max = 2, .max_queue = 1 };
	struct limit *l;
	struct caller a, b, c, d;
	(void)state;

	uv_loop_init(&loop);
	l = limit_new(&loop, "rpc", &o);
	assert_int_equal(ask(l, "r", &a), LIMIT_NOW);
	assert_int_equal(ask(l, "r", &b), LIMIT_NOW);
	assert_int_equal(b.info.in_progress, 2);
	assert_int_equal(ask(l, "r", &c), LIMIT_QUEUED);
	assert_int_equal(ask(l, "r", &d), LIMIT_EFULL);
	limit_done(b.t);
	run_for(&loop, 0);
	assert_int_equal(c.fired, 1);
	assert_int_equal(c.info.in_progress, 2);
	limit_done(a.t);
	limit_done(c.t);
	finish(&loop, l);
}

static void test_free_drops_waiters_without_callbacks(void **state)
{
	uv_loop_t loop;
	struct limit_opts o = { .max = 1, .max_wait_ms = 10 };
	struct limit *l;
	struct caller a, b;
	(void)state;

	uv_loop_init(&loop);
	l = limit_new(&loop, "rpc", &o);
	assert_int_equal(ask(l, "r", &a), LIMIT_NOW);
	assert_int_equal(ask(l, "r", &b), LIMIT_QUEUED);
	finish(&loop, l);
	assert_int_equal(b.fired, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_waiters_get_the_slot_in_arrival_order),
		cmocka_unit_test(test_keys_are_limited_separately),
		cmocka_unit_test(test_a_full_queue_refuses_at_once),
		cmocka_unit_test(test_a_waiter_gives_up_after_the_queue_wait),
		cmocka_unit_test(test_the_queue_wait_does_not_apply_to_a_granted_call),
		cmocka_unit_test(test_a_cancelled_waiter_leaves_the_queue_silently),
		cmocka_unit_test(test_a_waiter_cancelled_after_the_hand_over_passes_the_slot_on),
		cmocka_unit_test(test_several_slots_per_key),
		cmocka_unit_test(test_free_drops_waiters_without_callbacks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
