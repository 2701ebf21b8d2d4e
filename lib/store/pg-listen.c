/*
 * The LISTEN connection (docs/technical/multi-praefect.md, "The listener"):
 * one thread owns it, blocks in poll() on its socket and on a wake-up pipe,
 * parses what arrives and queues it for the loop thread, woken with
 * uv_async_send(). The store's worker thread and the loop never wait on it.
 */
#include "pg-notify.h"
#include "pg-admin.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "base/banned.h"

#define LISTEN_BACKOFF_MIN_MS 100
#define LISTEN_BACKOFF_MAX_MS 5000

struct queued_ev {
	struct queued_ev *next;
	enum pg_listen_event type;
	char *channel, *msg;
	struct pg_notify_entry *entries;
	size_t nr_entries;
	int lost;
};

struct pg_listener {
	uv_loop_t *loop;
	uv_async_t async;
	pthread_t thread;
	pthread_mutex_t lock;
	struct queued_ev *head, **tail;  /* events for the loop, under `lock` */
	int wake[2];                     /* the loop writes to wake[1] to stop the thread */
	int stopping;                    /* under `lock` */
	char *keys[STORE_PG_CONNINFO_MAX], *values[STORE_PG_CONNINFO_MAX]; /* the connection parameters, owned */
	size_t nr_params;
	char *listen_sql;
	pg_listen_fn cb;
	void *arg;
};

static void push(struct pg_listener *l, struct queued_ev *ev)
{
	pthread_mutex_lock(&l->lock);
	ev->next = NULL;
	*l->tail = ev;
	l->tail = &ev->next;
	pthread_mutex_unlock(&l->lock);
	uv_async_send(&l->async);
}

static void push_simple(struct pg_listener *l, enum pg_listen_event type, const char *channel, const char *msg)
{
	struct queued_ev *ev = xcalloc(1, sizeof(*ev));
	ev->type = type;
	ev->channel = channel ? xstrdup(channel) : NULL;
	ev->msg = msg ? xstrdup(msg) : NULL;
	push(l, ev);
}

static void free_ev(struct queued_ev *ev)
{
	free(ev->channel);
	free(ev->msg);
	pg_notify_entries_free(ev->entries, ev->nr_entries);
	free(ev);
}

/* libpq's last error without the trailing newline */
static void conn_error(PGconn *c, struct strbuf *out)
{
	const char *m = c ? PQerrorMessage(c) : "out of memory";
	size_t len = strlen(m);
	while (len && (m[len - 1] == '\n' || m[len - 1] == ' '))
		len--;
	strbuf_add(out, m, len);
}

/* Sleep `ms` unless woken to stop; 1 when stopping. */
static int nap(struct pg_listener *l, int ms)
{
	struct pollfd pfd = { l->wake[0], POLLIN, 0 };
	int r = poll(&pfd, 1, ms);
	return r > 0 || (r < 0 && errno != EINTR);
}

static void quiet_notices(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static PGconn *connect_and_listen(struct pg_listener *l, struct strbuf *err)
{
	const char *keys[STORE_PG_CONNINFO_MAX + 1], *values[STORE_PG_CONNINFO_MAX + 1];
	PGconn *c;
	PGresult *res;

	for (size_t i = 0; i < l->nr_params; i++) {
		keys[i] = l->keys[i];
		values[i] = l->values[i];
	}
	keys[l->nr_params] = values[l->nr_params] = NULL;
	c = PQconnectdbParams(keys, values, 0);
	if (!c || PQstatus(c) != CONNECTION_OK) {
		strbuf_addstr(err, "cannot connect to database: ");
		conn_error(c, err);
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeProcessor(c, quiet_notices, NULL);
	res = PQexec(c, l->listen_sql);
	if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
		strbuf_addstr(err, "LISTEN: ");
		conn_error(c, err);
		PQclear(res);
		PQfinish(c);
		return NULL;
	}
	PQclear(res);
	return c;
}

static void queue_notifications(struct pg_listener *l, PGconn *c)
{
	PGnotify *nf;
	while ((nf = PQnotifies(c))) {
		struct queued_ev *ev = xcalloc(1, sizeof(*ev));
		struct strbuf err = STRBUF_INIT;
		ev->channel = xstrdup(nf->relname);
		if (pg_notify_parse(nf->extra, strlen(nf->extra), &ev->entries, &ev->nr_entries, &err) < 0) {
			ev->type = PG_LISTEN_BAD_PAYLOAD;
			ev->msg = strbuf_detach(&err, NULL);
		} else {
			ev->type = PG_LISTEN_CHANGED;
			strbuf_release(&err);
		}
		PQfreemem(nf);
		push(l, ev);
	}
}

/* Wait for notifications until the connection fails (`err` says why) or the loop stops us (returns 1). */
static int serve_connection(struct pg_listener *l, PGconn *c, struct strbuf *err)
{
	for (;;) {
		struct pollfd pfd[2] = { { l->wake[0], POLLIN, 0 }, { PQsocket(c), POLLIN, 0 } };
		int r = poll(pfd, 2, -1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 || pfd[0].revents)
			return 1;
		if (!PQconsumeInput(c) || PQstatus(c) != CONNECTION_OK) {
			conn_error(c, err);
			if (!err->len)
				strbuf_addstr(err, "connection lost");
			return 0;
		}
		queue_notifications(l, c);
	}
}

static void *listener_main(void *arg)
{
	struct pg_listener *l = arg;
	int backoff = 0, reported = 0;

	for (;;) {
		struct strbuf err = STRBUF_INIT;
		PGconn *c = connect_and_listen(l, &err);
		int stop, lost = 0;

		if (c) {
			lost = 1;
			backoff = 0;
			reported = 0;
			push_simple(l, PG_LISTEN_CONNECTED, NULL, NULL);
			stop = serve_connection(l, c, &err);
			PQfinish(c);
			if (stop) {
				strbuf_release(&err);
				return NULL;
			}
		}
		/* one DISCONNECTED per outage, not one per failed attempt */
		if (!reported) {
			struct queued_ev *ev = xcalloc(1, sizeof(*ev));
			ev->type = PG_LISTEN_DISCONNECTED;
			ev->msg = xstrdup(err.buf);
			ev->lost = lost;
			push(l, ev);
			reported = 1;
		}
		strbuf_release(&err);
		backoff = backoff ? MIN(backoff * 2, LISTEN_BACKOFF_MAX_MS) : LISTEN_BACKOFF_MIN_MS;
		if (nap(l, backoff))
			return NULL;
	}
}

static void on_async(uv_async_t *h)
{
	struct pg_listener *l = h->data;
	for (;;) {
		struct queued_ev *ev;
		struct pg_listen_ev out;
		pthread_mutex_lock(&l->lock);
		ev = l->stopping ? NULL : l->head;
		if (ev) {
			l->head = ev->next;
			if (!l->head)
				l->tail = &l->head;
		}
		pthread_mutex_unlock(&l->lock);
		if (!ev)
			return;
		out.type = ev->type;
		out.channel = ev->channel;
		out.msg = ev->msg;
		out.entries = ev->entries;
		out.nr_entries = ev->nr_entries;
		out.lost = ev->lost;
		l->cb(l->arg, &out);
		free_ev(ev);
	}
}

static void add_param(struct pg_listener *l, const char *k, const char *v)
{
	if (!v || !*v || l->nr_params >= ARRAY_SIZE(l->keys))
		return;
	l->keys[l->nr_params] = xstrdup(k);
	l->values[l->nr_params] = xstrdup(v);
	l->nr_params++;
}

struct pg_listener *pg_listener_start(uv_loop_t *loop, const struct store_pg_params *p,
				      const char *const *channels, size_t nr_channels, pg_listen_fn cb, void *arg)
{
	struct pg_listener *l = xcalloc(1, sizeof(*l));
	struct strbuf sql = STRBUF_INIT;

	l->loop = loop;
	l->cb = cb;
	l->arg = arg;
	l->tail = &l->head;
	{
		const char *keys[STORE_PG_CONNINFO_MAX], *values[STORE_PG_CONNINFO_MAX];
		size_t n = store_pg_conninfo(p, keys, values, ARRAY_SIZE(keys));
		for (size_t i = 0; i < n; i++)
			add_param(l, keys[i], values[i]);
	}
	for (size_t i = 0; i < nr_channels; i++)
		strbuf_addf(&sql, "LISTEN %s;", channels[i]);   /* fixed names (pg-notify.h): nothing to quote */
	l->listen_sql = strbuf_detach(&sql, NULL);
	if (pipe(l->wake) < 0)
		die("listener: pipe: %s", strerror(errno));
	fcntl(l->wake[0], F_SETFD, FD_CLOEXEC);
	fcntl(l->wake[1], F_SETFD, FD_CLOEXEC);
	pthread_mutex_init(&l->lock, NULL);
	uv_async_init(loop, &l->async, on_async);
	l->async.data = l;
	uv_unref((uv_handle_t *)&l->async);
	if (pthread_create(&l->thread, NULL, listener_main, l) != 0)
		die("listener: cannot start its thread");
	return l;
}

static void on_closed(uv_handle_t *h)
{
	struct pg_listener *l = h->data;
	for (size_t i = 0; i < l->nr_params; i++) {
		free(l->keys[i]);
		free(l->values[i]);
	}
	free(l->listen_sql);
	free(l);
}

void pg_listener_stop(struct pg_listener *l)
{
	struct queued_ev *ev;
	ssize_t w;

	if (!l)
		return;
	do
		w = write(l->wake[1], "x", 1);
	while (w < 0 && errno == EINTR);
	pthread_join(l->thread, NULL);
	close(l->wake[0]);
	close(l->wake[1]);
	pthread_mutex_lock(&l->lock);
	l->stopping = 1;
	ev = l->head;
	l->head = NULL;
	l->tail = &l->head;
	pthread_mutex_unlock(&l->lock);
	while (ev) {
		struct queued_ev *next = ev->next;
		free_ev(ev);
		ev = next;
	}
	pthread_mutex_destroy(&l->lock);
	uv_close((uv_handle_t *)&l->async, on_closed);
}
