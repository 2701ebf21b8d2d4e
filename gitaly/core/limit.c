/* Per-key concurrency slots with a FIFO queue, a queue bound and a queue-wait timer (see limit.h). */
#include "core/limit.h"
#include "base/hashmap.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

enum ticket_state {
	T_HOLDING,      /* has a slot */
	T_WAITING,      /* in the queue */
	T_GRANTED,      /* has a slot, its callback is due on the next loop iteration */
};

struct limit_key {
	char *key;
	size_t len;
	int64_t in_progress;             /* holding or granted */
	int64_t waiting;
	struct limit_ticket *head, *tail; /* the queue, oldest first */
};

struct limit_ticket {
	struct limit *l;
	struct limit_key *k;
	struct limit_ticket *prev, *next;     /* the key's queue */
	struct limit_ticket *lprev, *lnext;   /* every live ticket of `l` */
	struct limit_info *info;
	limit_cb cb;
	void *arg;
	uint64_t start_ns;
	enum ticket_state state;
	int has_timer;
	uv_timer_t timer;                     /* queue wait, then the deferred grant */
};

struct limit {
	uv_loop_t *loop;
	char *name;
	struct limit_opts o;
	struct hashmap keys;                  /* key -> struct limit_key */
	struct limit_ticket *tickets;
	struct limit_monitor mon;
};

#define MON(l, fn, ...) do { if ((l)->mon.fn) (l)->mon.fn((l)->mon.arg, ##__VA_ARGS__); } while (0)
#define MON0(l, fn) do { if ((l)->mon.fn) (l)->mon.fn((l)->mon.arg); } while (0)

void limit_set_monitor(struct limit *l, const struct limit_monitor *m)
{
	l->mon = *m;
}

struct limit *limit_new(uv_loop_t *loop, const char *name, const struct limit_opts *opts)
{
	struct limit *l = xcalloc(1, sizeof(*l));
	l->loop = loop;
	l->name = xstrdup(name);
	l->o = *opts;
	hashmap_init(&l->keys);
	return l;
}

const char *limit_name(const struct limit *l)
{
	return l->name;
}

static void on_ticket_closed(uv_handle_t *h)
{
	free(h->data);
}

/* Unlink `t` from its limiter and free it (after its timer closed, if it has one). */
static void ticket_free(struct limit_ticket *t)
{
	struct limit *l = t->l;
	if (t->lprev)
		t->lprev->lnext = t->lnext;
	else
		l->tickets = t->lnext;
	if (t->lnext)
		t->lnext->lprev = t->lprev;
	if (t->has_timer) {
		t->timer.data = t;
		uv_close((uv_handle_t *)&t->timer, on_ticket_closed);
	} else {
		free(t);
	}
}

static void key_maybe_free(struct limit *l, struct limit_key *k)
{
	if (k->in_progress || k->waiting)
		return;
	hashmap_remove(&l->keys, k->key, k->len);
	free(k->key);
	free(k);
}

static uint64_t elapsed_ms(const struct limit_ticket *t)
{
	return (uv_hrtime() - t->start_ns) / 1000000u;
}

/* Upstream counts the queue only when it is bounded (its queue tokens exist only then). */
static int64_t queue_length(const struct limit *l, int64_t waiting)
{
	return l->o.max_queue > 0 ? waiting : 0;
}

static void dequeue(struct limit_ticket *t)
{
	struct limit_key *k = t->k;
	if (t->prev)
		t->prev->next = t->next;
	else
		k->head = t->next;
	if (t->next)
		t->next->prev = t->prev;
	else
		k->tail = t->prev;
	t->prev = t->next = NULL;
	k->waiting--;
	MON0(t->l, dequeued);
}

static void on_timer(uv_timer_t *h);

/* A slot of `k` freed: hand it to the oldest waiter, whose callback runs on the next iteration. */
static void release_slot(struct limit *l, struct limit_key *k)
{
	k->in_progress--;
	MON0(l, exit);
	while (k->head && k->in_progress < l->o.max) {
		struct limit_ticket *w = k->head;
		dequeue(w);
		k->in_progress++;
		MON(l, enter, uv_hrtime() - w->start_ns);
		w->state = T_GRANTED;
		uv_timer_stop(&w->timer);
		uv_timer_start(&w->timer, on_timer, 0, 0);
	}
	key_maybe_free(l, k);
}

static void on_timer(uv_timer_t *h)
{
	struct limit_ticket *t = h->data;
	struct limit_key *k = t->k;
	struct limit *l = t->l;

	if (t->state == T_GRANTED) {
		t->state = T_HOLDING;
		t->info->entered = 1;
		t->info->in_progress = k->in_progress;
		t->info->queue_ms = elapsed_ms(t);
		t->cb(t, 0, t->arg);
		return;
	}
	/* T_WAITING: the queue wait ran out */
	dequeue(t);
	MON(l, dropped, "max_time");
	t->info->dropped = "max_time";
	t->info->queue_length = queue_length(l, k->waiting);
	t->info->in_progress = k->in_progress;
	t->info->queue_ms = elapsed_ms(t);
	key_maybe_free(l, k);
	t->k = NULL;
	{
		limit_cb cb = t->cb;
		void *arg = t->arg;
		ticket_free(t);
		cb(t, LIMIT_ETIME, arg);   /* `t` only identifies the ticket now; its memory waits for the close */
	}
}

int limit_acquire(struct limit *l, const char *key, size_t len, struct limit_info *info, limit_cb cb, void *arg,
		  struct limit_ticket **out)
{
	struct limit_key *k = hashmap_get(&l->keys, key, len);
	struct limit_ticket *t;

	*out = NULL;
	memset(info, 0, sizeof(*info));
	if (!k) {
		k = xcalloc(1, sizeof(*k));
		k->key = xmemdup(key, len);
		k->len = len;
		hashmap_put(&l->keys, key, len, k);
	}
	if (l->o.max_queue > 0 && k->in_progress + k->waiting >= l->o.max + l->o.max_queue) {
		info->dropped = "max_size";
		info->queue_length = queue_length(l, k->waiting);
		info->in_progress = k->in_progress;
		MON(l, dropped, "max_size");
		key_maybe_free(l, k);
		return LIMIT_EFULL;
	}

	t = xcalloc(1, sizeof(*t));
	t->l = l;
	t->k = k;
	t->info = info;
	t->cb = cb;
	t->arg = arg;
	t->start_ns = uv_hrtime();
	t->lnext = l->tickets;
	if (l->tickets)
		l->tickets->lprev = t;
	l->tickets = t;
	*out = t;

	info->queued = 1;
	info->queue_length = queue_length(l, k->waiting + 1);
	if (!k->head && k->in_progress < l->o.max) {
		k->in_progress++;
		MON(l, enter, 0);
		t->state = T_HOLDING;
		info->entered = 1;
		info->in_progress = k->in_progress;
		return LIMIT_NOW;
	}
	t->state = T_WAITING;
	t->prev = k->tail;
	if (k->tail)
		k->tail->next = t;
	else
		k->head = t;
	k->tail = t;
	k->waiting++;
	MON0(l, queued);
	uv_timer_init(l->loop, &t->timer);
	t->timer.data = t;
	t->has_timer = 1;
	if (l->o.max_wait_ms)
		uv_timer_start(&t->timer, on_timer, l->o.max_wait_ms, 0);
	return LIMIT_QUEUED;
}

void limit_done(struct limit_ticket *t)
{
	struct limit *l = t->l;
	struct limit_key *k = t->k;

	switch (t->state) {
	case T_WAITING:
		/* the call went away while it waited (upstream: "other") */
		dequeue(t);
		MON(l, dropped, "other");
		t->info->dropped = "other";
		t->info->queue_length = queue_length(l, k->waiting);
		t->info->in_progress = k->in_progress;
		t->info->queue_ms = elapsed_ms(t);
		key_maybe_free(l, k);
		break;
	case T_GRANTED:
		uv_timer_stop(&t->timer);
		/* fall through */
	case T_HOLDING:
		release_slot(l, k);
		break;
	}
	ticket_free(t);
}

int64_t limit_in_progress(const struct limit *l, const char *key, size_t len)
{
	const struct limit_key *k = hashmap_get(&l->keys, key, len);
	return k ? k->in_progress : 0;
}

int64_t limit_waiting(const struct limit *l, const char *key, size_t len)
{
	const struct limit_key *k = hashmap_get(&l->keys, key, len);
	return k ? k->waiting : 0;
}

void limit_free(struct limit *l)
{
	size_t i = 0;
	const struct hashmap_entry *e;

	if (!l)
		return;
	while (l->tickets)
		ticket_free(l->tickets);
	while (hashmap_next(&l->keys, &i, &e)) {
		struct limit_key *k = e->value;
		free(k->key);
		free(k);
	}
	hashmap_release(&l->keys);
	free(l->name);
	free(l);
}
