/* Stale locks, quarantines and temporary objects: the writer registry and the passes that remove them. */
#include "core/cleanup.h"
#include "core/gitaly.h"
#include "base/fs.h"
#include "base/hashmap.h"
#include "base/log.h"
#include "base/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "base/banned.h"

/* A repository in which writers of ours run or wait. */
struct cleanup_repo {
	char *path;
	unsigned writers;                /* entered and not left, waiting ones included */
	int passing;                     /* a pass runs in the thread pool */
	struct cleanup_writer *waiting;  /* until the pass is over */
};

struct cleanup_writer {
	struct cleanup *c;
	struct cleanup_repo *repo;
	void (*ready)(void *arg);
	void *arg;
	struct cleanup_writer *next;
};

struct cleanup {
	struct gitaly *g;
	struct hashmap repos;            /* path -> struct cleanup_repo */
	uv_idle_t idle;                  /* fires `ready` of writers that need not wait */
	struct cleanup_writer *ready_head, **ready_tail;
	time_t started;                  /* wall clock at start-up */
	pid_t prev;                      /* the previous gitaly of an upgrade, while it may run */
	uv_poll_t prev_poll;             /* on its pidfd: readable once it exited */
	int prev_fd, startup_queued;
	int prev_polling;                /* prev_poll is open */
};

/* --- the passes (thread pool; nothing here touches the loop) --- */

struct pass {
	uv_work_t work;
	struct cleanup *c;
	struct cleanup_repo *repo;       /* NULL: the start-up pass */
	char *path;
	time_t cutoff;                   /* newest mtime that counts as stale */
	time_t now;
	struct strbuf removed;           /* "<age>\t<path>\n" for the log */
};

static int is_dir(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static time_t changed(const struct stat *st)
{
	return st->st_mtime > st->st_ctime ? st->st_mtime : st->st_ctime;
}

static void note(struct pass *p, const char *path, time_t when)
{
	strbuf_addf(&p->removed, "%lld\t%s\n", (long long)(p->now - when), path);
}

/*
 * A lock or temporary file: its mtime is when it was taken or last written
 * (files are created in place, never renamed in, so ctime says nothing more).
 */
static void remove_file_if_stale(struct pass *p, const char *path)
{
	struct stat st;
	time_t t;
	if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return;
	t = st.st_mtime;
	if (t > p->cutoff)
		return;
	if (unlink(path) == 0)
		note(p, path, t);
}

/* Something of ours in +gitaly/tmp or a quarantine: renames move it, so ctime counts too. */
static void remove_tree_if_stale(struct pass *p, const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0 || changed(&st) > p->cutoff)
		return;
	if (S_ISDIR(st.st_mode) ? fs_remove_tree(path) == 0 : unlink(path) == 0)
		note(p, path, changed(&st));
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && !memcmp(s + n - m, suffix, m);
}

/* Every *.lock below refs/ (loose refs and their directories). */
static void clean_refs(struct pass *p, struct strbuf *dir, int depth)
{
	DIR *d = opendir(dir->buf);
	struct dirent *de;
	size_t len = dir->len;
	if (!d)
		return;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
			continue;
		strbuf_setlen(dir, len);
		strbuf_addf(dir, "/%s", de->d_name);
		if (de->d_type == DT_DIR || (de->d_type == DT_UNKNOWN && is_dir(dir->buf))) {
			if (depth < 64)
				clean_refs(p, dir, depth + 1);
		} else if (ends_with(de->d_name, ".lock")) {
			remove_file_if_stale(p, dir->buf);
		}
	}
	strbuf_setlen(dir, len);
	closedir(d);
}

/* Entries of `dir` whose name starts with one of `prefixes`. */
static void clean_prefixed(struct pass *p, const char *dir, const char *const *prefixes, int trees)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	struct strbuf sb = STRBUF_INIT;
	if (!d)
		return;
	while ((de = readdir(d))) {
		for (const char *const *pre = prefixes; *pre; pre++) {
			if (strncmp(de->d_name, *pre, strlen(*pre)))
				continue;
			strbuf_reset(&sb);
			strbuf_addf(&sb, "%s/%s", dir, de->d_name);
			if (trees)
				remove_tree_if_stale(p, sb.buf);
			else
				remove_file_if_stale(p, sb.buf);
			break;
		}
	}
	closedir(d);
	strbuf_release(&sb);
}

static void clean_repo(struct pass *p, const char *repo, int loose_too)
{
	static const char *const locks[] = {
		"HEAD.lock", "config.lock", "packed-refs.lock", "packed-refs.new", "shallow.lock",
		"info/attributes.lock", "custom_hooks.lock", NULL,
	};
	static const char *const quarantines[] = { "tmp_objdir-", "incoming-", NULL };
	static const char *const tmp_packs[] = { "tmp_", ".tmp-", NULL };
	static const char *const tmp_loose[] = { "tmp_obj_", NULL };
	struct strbuf sb = STRBUF_INIT;

	for (const char *const *l = locks; *l; l++) {
		strbuf_reset(&sb);
		strbuf_addf(&sb, "%s/%s", repo, *l);
		remove_file_if_stale(p, sb.buf);
	}
	strbuf_reset(&sb);
	strbuf_addf(&sb, "%s/refs", repo);
	clean_refs(p, &sb, 0);
	strbuf_reset(&sb);
	strbuf_addf(&sb, "%s/objects", repo);
	clean_prefixed(p, sb.buf, quarantines, 1);
	strbuf_addstr(&sb, "/pack");
	clean_prefixed(p, sb.buf, tmp_packs, 0);
	for (int i = 0; loose_too && i < 256; i++) {
		strbuf_reset(&sb);
		strbuf_addf(&sb, "%s/objects/%02x", repo, i);
		clean_prefixed(p, sb.buf, tmp_loose, 0);
	}
	strbuf_release(&sb);
}

static int is_repo(struct strbuf *dir)
{
	static const char *const parts[] = { "/HEAD", "/objects", "/refs" };
	size_t len = dir->len;
	int ok = 1;
	for (size_t i = 0; ok && i < ARRAY_SIZE(parts); i++) {
		strbuf_addstr(dir, parts[i]);
		ok = access(dir->buf, F_OK) == 0;
		strbuf_setlen(dir, len);
	}
	return ok;
}

/* Find the repositories below `dir` (symlinks are not followed) and clean each. */
static void walk_storage(struct pass *p, struct strbuf *dir, int depth)
{
	DIR *d;
	struct dirent *de;
	size_t len = dir->len;

	if (depth > 0 && is_repo(dir)) {
		clean_repo(p, dir->buf, 1);
		return;
	}
	if (depth >= CLEANUP_MAX_DEPTH || !(d = opendir(dir->buf)))
		return;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
			continue;
		if (depth == 0 && !strcmp(de->d_name, "+gitaly"))
			continue;
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		strbuf_setlen(dir, len);
		strbuf_addf(dir, "/%s", de->d_name);
		if (de->d_type == DT_DIR || is_dir(dir->buf))
			walk_storage(p, dir, depth + 1);
	}
	strbuf_setlen(dir, len);
	closedir(d);
}

static void clean_tmp(struct pass *p, const char *storage)
{
	struct strbuf sb = STRBUF_INIT;
	DIR *d;
	struct dirent *de;

	strbuf_addf(&sb, "%s/+gitaly/tmp", storage);
	if ((d = opendir(sb.buf))) {
		size_t len = sb.len;
		while ((de = readdir(d))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			strbuf_setlen(&sb, len);
			strbuf_addf(&sb, "/%s", de->d_name);
			remove_tree_if_stale(p, sb.buf);
		}
		closedir(d);
	}
	strbuf_release(&sb);
}

static void pass_run(uv_work_t *w)
{
	struct pass *p = container_of(w, struct pass, work);
	p->now = time(NULL);
	if (p->repo) {
		clean_repo(p, p->path, 0);
		return;
	}
	for (size_t i = 0; i < p->c->g->cfg.nr_storages; i++) {
		struct strbuf dir = STRBUF_INIT;
		const char *root = p->c->g->cfg.storages[i].path;
		clean_tmp(p, root);
		strbuf_addstr(&dir, root);
		walk_storage(p, &dir, 0);
		strbuf_release(&dir);
	}
}

/* --- the writer registry (loop) --- */

static void fire_ready(struct cleanup_writer *list)
{
	while (list) {
		struct cleanup_writer *w = list;
		list = w->next;
		w->next = NULL;
		w->ready(w->arg);
	}
}

static void log_removed(const struct pass *p)
{
	const char *line = p->removed.buf, *end = line + p->removed.len;
	while (line < end) {
		const char *tab = strchr(line, '\t'), *nl = strchr(line, '\n');
		struct log_entry e;
		if (!tab || !nl)
			break;
		if (log_begin(&e, LOG_INFO, "removed a leftover of an interrupted write")) {
			log_strn(&e, "path", tab + 1, (size_t)(nl - tab - 1));
			log_int(&e, "age_seconds", strtoll(line, NULL, 10));
			log_end(&e);
		}
		line = nl + 1;
	}
}

static void pass_done(uv_work_t *w, int status)
{
	struct pass *p = container_of(w, struct pass, work);
	struct cleanup_repo *r = p->repo;
	log_removed(p);
	strbuf_release(&p->removed);
	free(p->path);
	free(p);
	if (r) {
		struct cleanup_writer *list = r->waiting;
		r->passing = 0;
		r->waiting = NULL;
		fire_ready(list);   /* each leaves later; the repository stays while they count */
	}
}

static int pass_queue(struct cleanup *c, struct cleanup_repo *r, time_t cutoff)
{
	struct pass *p = xcalloc(1, sizeof(*p));
	int rc;
	p->c = c;
	p->repo = r;
	p->path = r ? xstrdup(r->path) : NULL;
	p->cutoff = cutoff;
	strbuf_init(&p->removed, 0);
	rc = uv_queue_work(c->g->loop, &p->work, pass_run, pass_done);
	if (rc < 0) {
		strbuf_release(&p->removed);
		free(p->path);
		free(p);
	}
	return rc;
}

/* Whether the previous gitaly of an upgrade may still run (it is our parent until it exits). */
static int prev_alive(struct cleanup *c)
{
	if (c->prev && getppid() != c->prev)
		c->prev = 0;
	return c->prev != 0;
}

static void startup_pass(struct cleanup *c)
{
	if (c->startup_queued || prev_alive(c))
		return;
	c->startup_queued = 1;
	/* created before we started: nothing of ours can hold it (1 s for coarse file times) */
	if (pass_queue(c, NULL, c->started - 1) < 0)
		log_msgf(LOG_WARN, "cannot queue the start-up clean-up of the storages");
}

static void on_prev_poll_closed(uv_handle_t *h)
{
	struct cleanup *c = h->data;
	close(c->prev_fd);
	c->prev_fd = -1;
}

static void on_prev_exit(uv_poll_t *h, int status, int events)
{
	struct cleanup *c = h->data;
	c->prev = 0;
	c->prev_polling = 0;
	uv_poll_stop(h);
	uv_close((uv_handle_t *)h, on_prev_poll_closed);
	log_msgf(LOG_INFO, "the previous gitaly process exited: cleaning up the storages");
	startup_pass(c);
}

static void on_idle(uv_idle_t *h)
{
	struct cleanup *c = h->data;
	struct cleanup_writer *list = c->ready_head;
	c->ready_head = NULL;
	c->ready_tail = &c->ready_head;
	uv_idle_stop(h);
	fire_ready(list);
}

struct cleanup_writer *cleanup_writer_enter(struct gitaly *g, const char *repo_path,
					    void (*ready)(void *arg), void *arg)
{
	struct cleanup *c = g->cleanup;
	struct cleanup_writer *w = xcalloc(1, sizeof(*w));
	struct cleanup_repo *r = hashmap_get(&c->repos, repo_path, strlen(repo_path));

	if (!r) {
		r = xcalloc(1, sizeof(*r));
		r->path = xstrdup(repo_path);
		hashmap_put(&c->repos, repo_path, strlen(repo_path), r);
	}
	w->c = c;
	w->repo = r;
	w->ready = ready;
	w->arg = arg;
	r->writers++;
	if (r->writers == 1) {
		/* nobody of ours writes here: what is old enough is stale */
		time_t min_age = CLEANUP_MIN_AGE_S;
		if (prev_alive(c) && (time_t)(g->cfg.graceful_restart_timeout_ms / 1000) > min_age)
			min_age = (time_t)(g->cfg.graceful_restart_timeout_ms / 1000);
		else
			startup_pass(c);   /* deferred by an upgrade, and no pidfd told us */
		if (pass_queue(c, r, time(NULL) - min_age) == 0)
			r->passing = 1;
	}
	if (r->passing) {
		w->next = r->waiting;
		r->waiting = w;
		return w;
	}
	*c->ready_tail = w;
	c->ready_tail = &w->next;
	uv_idle_start(&c->idle, on_idle);
	return w;
}

void cleanup_writer_leave(struct cleanup_writer *w)
{
	struct cleanup_repo *r;
	struct cleanup *c;
	if (!w)
		return;
	r = w->repo;
	c = w->c;
	free(w);
	if (--r->writers > 0 || r->passing)
		return;
	hashmap_remove(&c->repos, r->path, strlen(r->path));
	free(r->path);
	free(r);
}

static void leave_reaped(void *arg, int status)
{
	cleanup_writer_leave(arg);
}

void cleanup_writer_leave_on_reap(struct cleanup_writer *w, struct git_cmd *cmd)
{
	git_cmd_on_reaped(cmd, leave_reaped, w);
}

void gitaly_cleanup_start(struct gitaly *g, int upgraded)
{
	struct cleanup *c = xcalloc(1, sizeof(*c));
	c->g = g;
	hashmap_init(&c->repos);
	uv_idle_init(g->loop, &c->idle);
	c->idle.data = c;
	c->ready_tail = &c->ready_head;
	c->started = time(NULL);
	c->prev_fd = -1;
	g->cleanup = c;
	if (upgraded) {
		/* the parent waits for our readiness before it drains: it is alive now */
		int fd = (int)syscall(SYS_pidfd_open, getppid(), 0);
		c->prev = getppid();
		c->prev_fd = fd;
		if (fd >= 0 && uv_poll_init(g->loop, &c->prev_poll, fd) == 0) {
			c->prev_poll.data = c;
			c->prev_polling = 1;
			uv_poll_start(&c->prev_poll, UV_READABLE, on_prev_exit);
			uv_unref((uv_handle_t *)&c->prev_poll);
		} else if (fd >= 0) {
			close(fd);
		}
		log_msgf(LOG_INFO, "started by an upgrade: storages are cleaned up once the previous gitaly exited");
	}
	startup_pass(c);
}

void gitaly_cleanup_free(struct gitaly *g)
{
	struct cleanup *c = g->cleanup;
	if (!c)
		return;
	if (c->prev_polling) {
		c->prev_polling = 0;
		uv_poll_stop(&c->prev_poll);
		uv_close((uv_handle_t *)&c->prev_poll, on_prev_poll_closed);
	}
	uv_close((uv_handle_t *)&c->idle, NULL);
	uv_run(g->loop, UV_RUN_NOWAIT);   /* the close callbacks */
	hashmap_release(&c->repos);       /* empty: every writer left with its call */
	free(c);
	g->cleanup = NULL;
}
