/* One uv_timer_t for every periodic task of a process (see cron.h). */
#include "loop/cron.h"

#include <stddef.h>

static uint64_t task_due(const struct cron_task *t)
{
	return t->periodic_due < t->soon_due ? t->periodic_due : t->soon_due;
}

static void on_tick(uv_timer_t *h);

/* Point the timer at the earliest due task (or stop it). */
static void arm(struct cron *c)
{
	uint64_t due = CRON_NEVER, now;
	if (c->in_tick || c->closed)
		return;
	for (struct cron_task *t = c->tasks; t; t = t->next)
		if (task_due(t) < due)
			due = task_due(t);
	if (due == CRON_NEVER) {
		uv_timer_stop(&c->timer);
		return;
	}
	now = uv_now(c->loop);
	uv_timer_start(&c->timer, on_tick, due > now ? due - now : 0, 0);
}

static void on_tick(uv_timer_t *h)
{
	struct cron *c = h->data;
	uint64_t now = uv_now(c->loop);
	struct cron_task *t;

	c->in_tick = 1;
	for (t = c->tasks; t; t = t->next)
		t->firing = task_due(t) <= now;
	/*
	 * Run the due tasks in list order. A task may unlink itself or others,
	 * so look for the next one from the head each time (the list is short).
	 */
	for (;;) {
		for (t = c->tasks; t && !t->firing; t = t->next)
			;
		if (!t || c->closed)
			break;
		t->firing = 0;
		if (t->periodic_due <= now)
			t->periodic_due = now + t->every_ms;
		if (t->soon_due <= now)
			t->soon_due = CRON_NEVER;
		t->run(t);
	}
	c->in_tick = 0;
	arm(c);
}

void cron_init(struct cron *c, uv_loop_t *loop)
{
	c->loop = loop;
	c->tasks = NULL;
	c->in_tick = 0;
	c->closed = 0;
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
}

void cron_close(struct cron *c)
{
	struct cron_task *t, *next;
	if (c->closed)
		return;
	c->closed = 1;
	for (t = c->tasks; t; t = next) {
		next = t->next;
		t->cron = NULL;
		t->next = NULL;
		t->firing = 0;
	}
	c->tasks = NULL;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, NULL);
}

void cron_add(struct cron *c, struct cron_task *t, uint64_t first_ms)
{
	struct cron_task **tail;
	if (t->cron || c->closed)
		return;
	t->cron = c;
	t->next = NULL;
	t->firing = 0;
	t->soon_due = CRON_NEVER;
	t->periodic_due = t->every_ms ? uv_now(c->loop) + first_ms : CRON_NEVER;
	for (tail = &c->tasks; *tail; tail = &(*tail)->next)
		;
	*tail = t;
	arm(c);
}

void cron_remove(struct cron_task *t)
{
	struct cron *c = t->cron;
	struct cron_task **pp;
	if (!c)
		return;
	for (pp = &c->tasks; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	t->cron = NULL;
	t->next = NULL;
	t->firing = 0;
	arm(c);
}

void cron_soon(struct cron_task *t, uint64_t delay_ms)
{
	uint64_t due;
	if (!t->cron)
		return;
	due = uv_now(t->cron->loop) + delay_ms;
	if (due < t->soon_due)
		t->soon_due = due;
	arm(t->cron);
}

void cron_cancel(struct cron_task *t)
{
	if (!t->cron)
		return;
	t->soon_due = CRON_NEVER;
	t->firing = t->firing && t->periodic_due <= uv_now(t->cron->loop);
	arm(t->cron);
}

int cron_soon_pending(const struct cron_task *t)
{
	return t->cron && t->soon_due != CRON_NEVER;
}
