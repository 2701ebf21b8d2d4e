/*
 * [daily_maintenance]: once a day, inside the configured window, optimize
 * every repository of the listed storages, one repository per second at
 * most, stopping when the window closes (docs/technical/housekeeping.md,
 * "Daily maintenance"). Driven by one task on the node's cron.
 */
#include "housekeeping/housekeeping.h"
#include "core/gitaly.h"
#include "repository/repository.h"
#include "base/log.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "loop/cron.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "base/banned.h"

/* The task's period: also upstream's pause between two repositories. */
#define DAILY_TICK_MS 1000
/*
 * Test hook: seconds added to the wall clock the scheduler reads, so that a
 * test can put "now" just before a window without waiting for the minute.
 */
#define DAILY_SKEW_ENV "GITALY_TESTING_DAILY_MAINTENANCE_SKEW_S"

struct daily_repo {
	char *storage, *rel, *path;
};

struct hk_daily {
	struct gitaly *g;
	struct cron_task task;
	int64_t skew;
	time_t next_start;            /* wall clock of the next window */
	time_t window_end;            /* 0: no window open */
	time_t window_start;
	bool collecting, drop_collected, stopped;
	uv_work_t work;
	struct daily_repo *repos;     /* what the window walks, in walk order */
	size_t nr, alloc, next;
	unsigned optimized, failed;
	struct hk_run *run;           /* the optimization in flight */
};

static time_t daily_now(const struct hk_daily *d)
{
	return time(NULL) + (time_t)d->skew;
}

/* The next hh:mm:00 local time strictly after `now` (upstream's nextTime). */
static time_t next_time(time_t now, int hour, int minute)
{
	struct tm tm;
	time_t t;
	localtime_r(&now, &tm);
	tm.tm_hour = hour;
	tm.tm_min = minute;
	tm.tm_sec = 0;
	tm.tm_isdst = -1;
	t = mktime(&tm);
	if (t <= now) {
		tm.tm_mday++;
		tm.tm_isdst = -1;
		t = mktime(&tm);
	}
	return t;
}

static void free_repos(struct hk_daily *d)
{
	for (size_t i = 0; i < d->nr; i++) {
		free(d->repos[i].storage);
		free(d->repos[i].rel);
		free(d->repos[i].path);
	}
	free(d->repos);
	d->repos = NULL;
	d->nr = d->alloc = d->next = 0;
}

static void schedule(struct hk_daily *d)
{
	const struct gitaly_daily_maintenance *c = &d->g->cfg.daily_maintenance;
	struct log_entry e;
	char buf[64];
	struct tm tm;

	d->next_start = next_time(daily_now(d), (int)c->start_hour, (int)c->start_minute);
	localtime_r(&d->next_start, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S%z", &tm);
	if (log_begin(&e, LOG_INFO, "maintenance: daily scheduled")) {
		log_str(&e, "scheduled", buf);
		log_end(&e);
	}
}

static void end_window(struct hk_daily *d)
{
	struct log_entry e;
	if (d->run) {
		hk_cancel(d->run);   /* its done callback clears d->run */
	}
	if (d->collecting)
		d->drop_collected = true;
	else if (!d->run)
		free_repos(d);   /* else optimized() frees them once the run is gone */
	if (log_begin(&e, LOG_INFO, "maintenance: daily completed")) {
		log_int(&e, "max_duration_ms", (int64_t)d->g->cfg.daily_maintenance.duration_ms);
		log_int(&e, "actual_duration_ms", (int64_t)(daily_now(d) - d->window_start) * 1000);
		log_int(&e, "optimized", d->optimized);
		log_int(&e, "failed", d->failed);
		log_end(&e);
	}
	d->window_end = 0;
	if (!d->stopped)
		schedule(d);
}

/* --- finding the repositories (thread pool) --- */

static int is_repository(const char *path)
{
	static const char *const entries[] = { "objects", "refs", "HEAD" };
	struct strbuf e = STRBUF_INIT;
	struct stat st;
	int ok = 1;
	for (size_t i = 0; ok && i < ARRAY_SIZE(entries); i++) {
		strbuf_reset(&e);
		strbuf_addf(&e, "%s/%s", path, entries[i]);
		ok = stat(e.buf, &st) == 0;
	}
	strbuf_release(&e);
	return ok;
}

static void walk(struct hk_daily *d, const struct gitaly_storage *s, struct strbuf *rel, int depth)
{
	struct strbuf abs = STRBUF_INIT;
	char **names = NULL;
	size_t nr = 0;

	strbuf_addstr(&abs, s->path);
	if (rel->len)
		strbuf_addf(&abs, "/%s", rel->buf);
	if (depth > 0 && is_repository(abs.buf)) {
		struct daily_repo *r;
		ALLOC_GROW(d->repos, d->nr + 1, d->alloc);
		r = &d->repos[d->nr++];
		r->storage = xstrdup(s->name);
		r->rel = xstrdup(rel->buf);
		r->path = strbuf_detach(&abs, NULL);
		return;
	}
	if (depth < CLEANUP_MAX_DEPTH && reposvc_list_dir(abs.buf, &names, &nr) == 0) {
		for (size_t i = 0; i < nr; i++) {
			size_t len = rel->len;
			struct stat st;
			struct strbuf child = STRBUF_INIT;
			if (depth == 0 && !strcmp(names[i], "+gitaly"))
				continue;
			strbuf_addf(&child, "%s/%s", abs.buf, names[i]);
			if (lstat(child.buf, &st) == 0 && S_ISDIR(st.st_mode)) {
				if (len)
					strbuf_addch(rel, '/');
				strbuf_addstr(rel, names[i]);
				walk(d, s, rel, depth + 1);
				strbuf_setlen(rel, len);
			}
			strbuf_release(&child);
		}
		reposvc_free_names(names, nr);
	}
	strbuf_release(&abs);
}

static void collect_work(uv_work_t *w)
{
	struct hk_daily *d = w->data;
	const struct gitaly_daily_maintenance *c = &d->g->cfg.daily_maintenance;
	struct strvec seen = STRVEC_INIT;

	for (size_t i = 0; i < c->storages.nr; i++) {
		const struct gitaly_storage *s = gitaly_config_storage(&d->g->cfg, c->storages.v[i],
									 strlen(c->storages.v[i]));
		struct strbuf rel = STRBUF_INIT;
		int dup = 0;
		if (!s)
			continue;
		for (size_t j = 0; j < seen.nr; j++)
			dup |= !strcmp(seen.v[j], s->path);   /* two storages on one directory: walk it once */
		if (dup)
			continue;
		strvec_push(&seen, s->path);
		walk(d, s, &rel, 0);
		strbuf_release(&rel);
	}
	strvec_clear(&seen);
}

static void collect_after(uv_work_t *w, int status)
{
	struct hk_daily *d = w->data;
	(void)status;
	d->collecting = false;
	if (d->drop_collected) {
		d->drop_collected = false;
		if (!d->run)
			free_repos(d);
	}
}

/* --- the window --- */

static void optimized(void *arg, int rc, const char *msg)
{
	struct hk_daily *d = arg;
	struct daily_repo *r = &d->repos[d->next - 1];
	struct log_entry e;
	d->run = NULL;
	if (rc == 0)
		d->optimized++;
	else if (rc != -ECANCELED)
		d->failed++;
	if (log_begin(&e, rc == 0 ? LOG_INFO : LOG_ERROR,
		      rc == 0 ? "maintenance: repo optimization succeeded" : "maintenance: repo optimization failure")) {
		log_str(&e, "storage", r->storage);
		log_str(&e, "relative_path", r->rel);
		log_str(&e, "source", "maintenance.daily");
		if (rc != 0)
			log_str(&e, "error", msg);
		log_end(&e);
	}
	if (!d->window_end && !d->collecting)
		free_repos(d);
}

static void start_next(struct hk_daily *d)
{
	struct strbuf msg = STRBUF_INIT;
	while (d->next < d->nr) {
		struct daily_repo *r = &d->repos[d->next++];
		Gitaly__Repository repo = GITALY__REPOSITORY__INIT;
		int rc;
		if (!is_repository(r->path))
			continue;   /* removed since the walk */
		repo.storage_name = r->storage;
		repo.relative_path = r->rel;
		rc = hk_optimize(d->g, &repo, r->path, HK_HEURISTICAL, optimized, d, &d->run, &msg);
		if (rc == HK_BUSY) {
			d->run = NULL;
			continue;   /* an RPC optimizes it right now */
		}
		if (rc < 0) {
			d->run = NULL;
			d->failed++;
			strbuf_reset(&msg);
			continue;
		}
		break;
	}
	strbuf_release(&msg);
}

static void tick(struct cron_task *t)
{
	struct hk_daily *d = t->data;
	time_t now = daily_now(d);

	if (!d->window_end) {
		if (now < d->next_start || d->run || d->collecting)
			return;
		d->window_start = now;
		d->window_end = now + (time_t)((d->g->cfg.daily_maintenance.duration_ms + 999) / 1000);
		d->optimized = d->failed = 0;
		log_msgf(LOG_INFO, "maintenance: daily starting");
		d->collecting = true;
		d->work.data = d;
		if (uv_queue_work(d->g->loop, &d->work, collect_work, collect_after) < 0) {
			d->collecting = false;
			end_window(d);
		}
		return;
	}
	if (now >= d->window_end) {
		end_window(d);
		return;
	}
	if (d->collecting || d->run)
		return;
	if (d->next == d->nr) {
		end_window(d);   /* every repository done before the window closed */
		return;
	}
	start_next(d);   /* at most one repository per tick: upstream's one-second pause */
}

void hk_daily_start(struct gitaly *g)
{
	const struct gitaly_daily_maintenance *c = &g->cfg.daily_maintenance;
	struct hk_daily *d;
	const char *skew = getenv(DAILY_SKEW_ENV);

	if (c->disabled || !c->duration_ms || !c->storages.nr || !g->cron)
		return;
	d = xcalloc(1, sizeof(*d));
	d->g = g;
	if (skew && *skew)
		d->skew = strtoll(skew, NULL, 10);
	d->task.name = "daily maintenance";
	d->task.every_ms = DAILY_TICK_MS;
	d->task.run = tick;
	d->task.data = d;
	hk_state(g)->daily = d;
	schedule(d);
	cron_add(g->cron, &d->task, DAILY_TICK_MS);
}

void hk_daily_stop(struct gitaly *g)
{
	struct hk_daily *d = g->housekeeping ? g->housekeeping->daily : NULL;
	if (!d || d->stopped)
		return;
	d->stopped = true;
	cron_remove(&d->task);
	if (d->window_end)
		end_window(d);
}

void hk_free(struct gitaly *g)
{
	struct hk_daily *d = g->housekeeping ? g->housekeeping->daily : NULL;
	if (d) {
		free_repos(d);
		free(d);
	}
	free(g->housekeeping);
	g->housekeeping = NULL;
}
