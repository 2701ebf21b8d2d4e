/*
 * Keeping the in-memory model in step with the other praefects of a shared
 * store (docs/technical/multi-praefect.md, "The listener"): LISTEN on
 * upstream's channels, and for every repository a notification names, read
 * it from the database and adopt the record (repo_adopt(), the path every
 * call's own database read takes). When the listener (re)connects, anything
 * may have been missed meanwhile: the whole model is reloaded.
 *
 * The connection is `[database.session_pooled]` when configured (key by key
 * over `[database]`, as upstream), else `[database]`; it runs on its own
 * thread (lib/store/pg-listen.c), the database reads on the store's worker.
 */
#include "praefect.h"
#include "metrics/series.h"
#include "store/pg-admin.h"
#include "store/pg-notify.h"
#include "base/log.h"
#include "base/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct listener {
	struct praefect *p;
	struct pg_listener *pg;
	struct hashmap pending;   /* "<vs>\x1f<path>" -> struct refresh in flight */
	int reloading;            /* a full reload is under way */
	int reload_again;         /* and another is due once it ends */
	int stopped;
	size_t ops;               /* store operations in flight (the struct lives until they end) */
};

struct refresh {
	struct listener *l;
	char *key, *vs, *path;
	int again;                /* notified again while in flight: read once more */
};

static struct listener *the_listener;

static void maybe_free(struct listener *l)
{
	if (!l->stopped || l->ops)
		return;
	hashmap_release(&l->pending);
	free(l);
}

static void count_reconnect(struct listener *l, const char *state)
{
	metric_inc(pm(l->p, PM_NOTIFY_RECONNECTS), METRIC_LV(state));
}

static void start_refresh(struct refresh *rf);

static void on_refreshed(void *arg, int status, const char *msg, const struct store_repo *repos, size_t n)
{
	struct refresh *rf = arg;
	struct listener *l = rf->l;

	l->ops--;
	if (!l->stopped) {
		if (status == 0 && n == 1)
			repo_adopt(l->p, rf->vs, rf->path, &repos[0]);
		else if (status == -ENOENT)
			repo_adopt(l->p, rf->vs, rf->path, NULL);
		else
			log_msgf(LOG_WARN, "reading notified repository \"%s\" from the database: %s", rf->path,
				 msg ? msg : "store error");
		if (rf->again) {
			rf->again = 0;
			start_refresh(rf);
			return;
		}
	}
	if (!l->stopped)
		hashmap_remove(&l->pending, rf->key, strlen(rf->key));
	free(rf->key);
	free(rf->vs);
	free(rf->path);
	free(rf);
	maybe_free(l);
}

static void start_refresh(struct refresh *rf)
{
	rf->l->ops++;
	store_get_repository(rf->l->p->store, rf->vs, rf->path, on_refreshed, rf);
}

/* One read per repository in flight: a notification meanwhile only asks for one more read after it. */
static void refresh(struct listener *l, const char *vs, const char *path)
{
	struct strbuf key = STRBUF_INIT;
	struct refresh *rf;

	strbuf_addf(&key, "%s\x1f%s", vs, path);
	rf = hashmap_get(&l->pending, key.buf, key.len);
	if (rf) {
		rf->again = 1;
		strbuf_release(&key);
		return;
	}
	rf = xcalloc(1, sizeof(*rf));
	rf->l = l;
	rf->vs = xstrdup(vs);
	rf->path = xstrdup(path);
	hashmap_put(&l->pending, key.buf, key.len, rf);
	rf->key = strbuf_detach(&key, NULL);
	start_refresh(rf);
}

static void start_reload(struct listener *l);

static void on_reloaded(void *arg, int status, const char *msg, const struct store_repo *repos, size_t n)
{
	struct listener *l = arg;
	struct hashmap seen;
	struct repo *r;
	struct repo **gone;
	size_t nr_gone = 0;

	l->ops--;
	l->reloading = 0;
	if (l->stopped) {
		maybe_free(l);
		return;
	}
	if (status < 0) {
		log_msgf(LOG_WARN, "reloading repositories after the listener connected: %s",
			 msg ? msg : "store error");
		return;   /* the listener's next connection reloads again */
	}
	hashmap_init(&seen);
	for (size_t i = 0; i < n; i++) {
		struct strbuf key = STRBUF_INIT;
		if (!praefect_vs(l->p, repos[i].virtual_storage, strlen(repos[i].virtual_storage)))
			continue;
		repo_adopt(l->p, repos[i].virtual_storage, repos[i].relative_path, &repos[i]);
		strbuf_addf(&key, "%s\x1f%s", repos[i].virtual_storage, repos[i].relative_path);
		hashmap_put(&seen, key.buf, key.len, &seen);
		strbuf_release(&key);
	}
	/* the ones the database no longer has (repo_adopt() keeps those with work of ours in flight) */
	gone = xcalloc(l->p->repos.nr + 1, sizeof(*gone));
	for (size_t i = 0; (r = repos_next(l->p, &i));) {
		struct strbuf key = STRBUF_INIT;
		strbuf_addf(&key, "%s\x1f%s", r->vs->cfg->name, r->relative_path);
		if (!hashmap_get(&seen, key.buf, key.len))
			gone[nr_gone++] = r;
		strbuf_release(&key);
	}
	for (size_t i = 0; i < nr_gone; i++) {
		char *vs = xstrdup(gone[i]->vs->cfg->name), *path = xstrdup(gone[i]->relative_path);
		repo_adopt(l->p, vs, path, NULL);
		free(vs);
		free(path);
	}
	free(gone);
	hashmap_release(&seen);
	log_msgf(LOG_INFO, "listener connected: reloaded %zu repositories from the database", n);
	if (l->reload_again) {
		l->reload_again = 0;
		start_reload(l);
	}
}

static void start_reload(struct listener *l)
{
	if (l->reloading) {
		l->reload_again = 1;
		return;
	}
	l->reloading = 1;
	l->ops++;
	store_list_repositories(l->p->store, NULL, on_reloaded, l);
}

static void on_event(void *arg, const struct pg_listen_ev *ev)
{
	struct listener *l = arg;

	switch (ev->type) {
	case PG_LISTEN_CONNECTED:
		count_reconnect(l, "connected");
		log_msgf(LOG_INFO, "listening for repository changes on the database");
		start_reload(l);
		break;
	case PG_LISTEN_DISCONNECTED:
		/* as upstream: counted when a connection that listened is lost, not when one cannot be made */
		if (ev->lost)
			count_reconnect(l, "disconnected");
		log_msgf(LOG_WARN, ev->lost ? "listening for repository changes was interrupted: %s" :
			 "cannot listen for repository changes: %s", ev->msg ? ev->msg : "");
		break;
	case PG_LISTEN_BAD_PAYLOAD:
		log_msgf(LOG_ERROR, "notification on \"%s\" cannot be processed (%s): reloading every repository",
			 ev->channel, ev->msg ? ev->msg : "");
		start_reload(l);
		break;
	case PG_LISTEN_CHANGED:
		for (size_t i = 0; i < ev->nr_entries; i++) {
			const struct pg_notify_entry *en = &ev->entries[i];
			if (!praefect_vs(l->p, en->virtual_storage, strlen(en->virtual_storage)))
				continue;
			for (size_t j = 0; j < en->nr_paths; j++)
				refresh(l, en->virtual_storage, en->relative_paths[j]);
		}
		break;
	}
}

static const char *coalesce(const char *a, const char *b)
{
	return a && *a ? a : b;
}

void listener_start(struct praefect *p)
{
	static const char *const channels[] = { PG_CHANNEL_STORAGE_REPOSITORIES, PG_CHANNEL_REPOSITORIES };
	const struct praefect_db_conn *db = &p->cfg.db, *sp = &p->cfg.db_session_pooled;
	struct store_pg_params params;
	struct listener *l;
	char port[16];

	if (!store_is_shared(p->store))
		return;
	/* upstream's direct connection: each session_pooled key over the main one */
	memset(&params, 0, sizeof(params));
	params.host = coalesce(sp->host, db->host);
	params.user = coalesce(sp->user, db->user);
	params.password = coalesce(sp->password, db->password);
	params.dbname = coalesce(sp->dbname, db->dbname);
	params.sslmode = coalesce(sp->sslmode, db->sslmode);
	params.sslcert = coalesce(sp->sslcert, db->sslcert);
	params.sslkey = coalesce(sp->sslkey, db->sslkey);
	params.sslrootcert = coalesce(sp->sslrootcert, db->sslrootcert);
	if (sp->port > 0 || db->port > 0) {
		snprintf(port, sizeof(port), "%d", (int)(sp->port > 0 ? sp->port : db->port));
		params.port = port;
	}
	l = xcalloc(1, sizeof(*l));
	l->p = p;
	hashmap_init(&l->pending);
	l->pg = pg_listener_start(p->loop, &params, channels, ARRAY_SIZE(channels), on_event, l);
	the_listener = l;
}

void listener_stop(struct praefect *p)
{
	struct listener *l = the_listener;
	(void)p;
	if (!l)
		return;
	the_listener = NULL;
	pg_listener_stop(l->pg);
	l->stopped = 1;
	hashmap_release(&l->pending);   /* the refreshes in flight free themselves */
	hashmap_init(&l->pending);
	maybe_free(l);
}
