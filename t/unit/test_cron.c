/* Unit tests: lib/loop's cron (periods, one-shot runs, removal from a task, close). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "loop/cron.h"

struct rec {
	uint64_t at[64];
	size_t n;
	struct cron *c;
	int remove_self_after;    /* unlink itself on this run (1-based); 0: never */
	struct cron_task *kick;   /* ask this task for a one-shot run on every run */
	int close_after;          /* close the cron on this run */
};

static void record(struct cron_task *t)
{
	struct rec *r = t->data;
	if (r->n < 64)
		r->at[r->n] = uv_now(r->c->loop);
	r->n++;
	if (r->remove_self_after && (int)r->n == r->remove_self_after)
		cron_remove(t);
	if (r->kick)
		cron_soon(r->kick, 0);
	if (r->close_after && (int)r->n == r->close_after)
		cron_close(r->c);
}

static void on_stop(uv_timer_t *h)
{
	uv_stop(h->loop);
}

/* Run the loop for about `ms` milliseconds. */
static void run_for(uv_loop_t *loop, uint64_t ms)
{
	uv_timer_t stop;
	uv_timer_init(loop, &stop);
	uv_timer_start(&stop, on_stop, ms, 0);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&stop, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

static void finish(uv_loop_t *loop, struct cron *c)
{
	cron_close(c);
	uv_run(loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(loop), 0);
}

static void test_periodic_runs_keep_their_period(void **state)
{
	uv_loop_t loop;
	struct cron c;
	struct rec r = { .c = &c };
	struct cron_task t = { .name = "tick", .every_ms = 20, .run = record, .data = &r };
	uint64_t start;

	uv_loop_init(&loop);
	cron_init(&c, &loop);
	start = uv_now(&loop);
	cron_add(&c, &t, 30);
	run_for(&loop, 150);
	assert_true(r.n >= 2);
	assert_true(r.at[0] >= start + 30);
	for (size_t i = 1; i < r.n && i < 64; i++)
		assert_true(r.at[i] - r.at[i - 1] >= 20);
	finish(&loop, &c);
}

static void test_task_without_period_runs_only_when_asked(void **state)
{
	uv_loop_t loop;
	struct cron c;
	struct rec r = { .c = &c };
	struct cron_task t = { .name = "soon", .every_ms = 0, .run = record, .data = &r };
	uint64_t asked;

	uv_loop_init(&loop);
	cron_init(&c, &loop);
	cron_add(&c, &t, 0);
	run_for(&loop, 30);
	assert_int_equal(r.n, 0);

	asked = uv_now(&loop);
	cron_soon(&t, 20);
	cron_soon(&t, 200); /* a later request does not push the pending run back */
	assert_true(cron_soon_pending(&t));
	assert_int_equal(r.n, 0); /* never synchronously */
	run_for(&loop, 100);
	assert_int_equal(r.n, 1);
	assert_true(r.at[0] >= asked + 20);
	assert_false(cron_soon_pending(&t));

	cron_soon(&t, 10);
	cron_cancel(&t);
	run_for(&loop, 40);
	assert_int_equal(r.n, 1);
	finish(&loop, &c);
}

static void test_one_shot_run_leaves_the_period_alone(void **state)
{
	uv_loop_t loop;
	struct cron c;
	struct rec r = { .c = &c };
	struct cron_task t = { .name = "both", .every_ms = 60, .run = record, .data = &r };
	uint64_t start;

	uv_loop_init(&loop);
	cron_init(&c, &loop);
	start = uv_now(&loop);
	cron_add(&c, &t, 60);
	cron_soon(&t, 0);
	run_for(&loop, 90);
	/* the one-shot run at once, then the periodic one at 60 ms as planned */
	assert_int_equal(r.n, 2);
	assert_true(r.at[0] < start + 60);
	assert_true(r.at[1] >= start + 60);
	finish(&loop, &c);
}

static void test_tasks_may_remove_themselves_and_kick_others(void **state)
{
	uv_loop_t loop;
	struct cron c;
	struct rec kicked = { .c = &c };
	struct cron_task k = { .name = "kicked", .run = record, .data = &kicked };
	struct rec r = { .c = &c, .remove_self_after = 3, .kick = &k };
	struct cron_task t = { .name = "self", .every_ms = 10, .run = record, .data = &r };

	uv_loop_init(&loop);
	cron_init(&c, &loop);
	cron_add(&c, &t, 0);
	cron_add(&c, &k, 0);
	run_for(&loop, 120);
	assert_int_equal(r.n, 3);
	assert_int_equal(kicked.n, 3);
	cron_soon(&t, 0); /* not linked any more: ignored */
	run_for(&loop, 20);
	assert_int_equal(r.n, 3);
	finish(&loop, &c);
}

static void test_nothing_runs_after_close(void **state)
{
	uv_loop_t loop;
	struct cron c;
	struct rec a = { .c = &c, .close_after = 1 };
	struct rec b = { .c = &c };
	struct cron_task ta = { .name = "a", .every_ms = 10, .run = record, .data = &a };
	struct cron_task tb = { .name = "b", .every_ms = 10, .run = record, .data = &b };

	uv_loop_init(&loop);
	cron_init(&c, &loop);
	cron_add(&c, &ta, 10);
	cron_add(&c, &tb, 10); /* due with a, after it: a's close must stop it */
	uv_run(&loop, UV_RUN_DEFAULT); /* returns once the closed timer is gone */
	assert_int_equal(a.n, 1);
	assert_int_equal(b.n, 0);
	cron_add(&c, &tb, 0); /* a closed cron takes no tasks */
	assert_null(tb.cron);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_periodic_runs_keep_their_period),
		cmocka_unit_test(test_task_without_period_runs_only_when_asked),
		cmocka_unit_test(test_one_shot_run_leaves_the_period_alone),
		cmocka_unit_test(test_tasks_may_remove_themselves_and_kick_others),
		cmocka_unit_test(test_nothing_runs_after_close),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
