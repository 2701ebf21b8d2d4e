/* Long-lived `git cat-file --batch-command` processes: the cache, leases and the reply parser. */
#include "catfile.h"
#include "cmd.h"
#include "base/strvec.h"
#include "base/util.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* An intrusive doubly linked list; an unlinked node points at itself. */
struct link {
	struct link *prev, *next;
};

static void link_init(struct link *l) { l->prev = l->next = l; }
static int link_empty(const struct link *l) { return l->next == l; }

static void link_add_tail(struct link *head, struct link *l)
{
	l->prev = head->prev;
	l->next = head;
	head->prev->next = l;
	head->prev = l;
}

static void link_del(struct link *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	link_init(l);
}

struct creq {
	struct creq *next;
	int contents;                 /* else info */
	const struct catfile_read_ops *ops;
	void *arg;
	void (*drop)(void *arg);      /* frees `arg` when the request is abandoned */
	char *name;                   /* as sent: "missing" replies echo it */
	size_t name_len;
};

enum parse_state { ST_HEADER, ST_BODY, ST_TRAILER };

struct catfile {
	struct catfile_cache *cache;  /* NULL once the cache is gone */
	struct git_cmd *cmd;          /* NULL once git exited */
	char *key;
	size_t key_len;
	struct link all, idle, resume;
	int is_idle, leased;
	uint64_t idle_since;

	struct creq *head, *tail;
	size_t nr_reqs;

	enum parse_state st;
	struct strbuf hdr;            /* header line being assembled */
	uint64_t remaining, want;
	struct strbuf pending;        /* output that arrived while paused */
	int paused, broken, depth, release_pending;
};

struct catfile_wait {
	struct catfile_cache *c;
	struct link link;             /* in cache->waiters or cache->ready */
	char *key;
	size_t key_len;
	struct strvec argv, env;
	int has_env;                  /* else the child inherits our environment */
	char *cwd;
	catfile_lease_fn cb;
	void *arg;
	struct catfile *cf;           /* granted process */
	int err;
};

struct catfile_cache {
	uv_loop_t *loop;
	struct catfile_cache_opts o;
	struct link all, idle, waiters, ready, resumed;
	size_t nr_all, nr_idle;
	uint64_t spawned;
	uint64_t hits, misses;     /* leases that found an idle process, and those that did not */
	uint64_t lookups[CATFILE_TAG + 2];  /* objects read, by enum catfile_type; the last: info requests */
	uv_timer_t timer;
	uv_idle_t kick;               /* delivers lease grants and resumed output */
	int timer_on, kick_on, draining, freeing, handles_open;
};

#define link_entry(ptr, type, member) container_of(ptr, type, member)

const char *catfile_type_name(enum catfile_type t)
{
	switch (t) {
	case CATFILE_COMMIT: return "commit";
	case CATFILE_TREE: return "tree";
	case CATFILE_BLOB: return "blob";
	case CATFILE_TAG: return "tag";
	default: return "unknown";
	}
}

size_t catfile_cache_idle(const struct catfile_cache *c) { return c->nr_idle; }
size_t catfile_cache_live(const struct catfile_cache *c) { return c->nr_all; }
uint64_t catfile_cache_spawned(const struct catfile_cache *c) { return c->spawned; }
uint64_t catfile_cache_hits(const struct catfile_cache *c) { return c->hits; }
uint64_t catfile_cache_misses(const struct catfile_cache *c) { return c->misses; }
uint64_t catfile_cache_lookups(const struct catfile_cache *c, int type)
{
	if (type < 0)
		return c->lookups[CATFILE_TAG + 1];
	return type <= CATFILE_TAG ? c->lookups[type] : 0;
}
size_t catfile_pending(const struct catfile *cf) { return cf->nr_reqs; }
int catfile_pid(const struct catfile *cf) { return cf->cmd ? git_cmd_pid(cf->cmd) : -1; }

static void do_release(struct catfile *cf);
static void kick_start(struct catfile_cache *c);
static void serve_waiters(struct catfile_cache *c, const char *key, size_t key_len);

/* --- requests and the reply parser --- */

static void req_free(struct creq *r, int dropped)
{
	if (dropped && r->drop)
		r->drop(r->arg);
	free(r->name);
	free(r);
}

static void enter(struct catfile *cf) { cf->depth++; }

/* Leave a callback section; a release asked for inside it happens now. */
static void leave(struct catfile *cf)
{
	if (--cf->depth == 0 && cf->release_pending)
		do_release(cf);
}

/* Pop the head request and report `status` to its owner. */
static void complete(struct catfile *cf, int status)
{
	struct creq *r = cf->head;
	cf->head = r->next;
	if (!cf->head)
		cf->tail = NULL;
	cf->nr_reqs--;
	cf->st = ST_HEADER;
	strbuf_reset(&cf->hdr);
	if (cf->release_pending) {
		/* released from an earlier callback of this request: stay silent */
		req_free(r, 1);
		return;
	}
	if (r->ops->on_done)
		r->ops->on_done(r->arg, status);
	req_free(r, 0);
}

static void fail_all(struct catfile *cf, int err)
{
	enter(cf);
	while (cf->head && !cf->release_pending)
		complete(cf, err);
	leave(cf);
}

/* The stream can no longer be trusted: kill git, fail what is queued. */
static void protocol_error(struct catfile *cf)
{
	cf->broken = 1;
	if (cf->cmd)
		git_cmd_kill(cf->cmd, SIGKILL);
	fail_all(cf, -EPROTO);
}

static int is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

static enum catfile_type parse_type(const char *s, size_t n)
{
	if (n == 4 && !memcmp(s, "blob", 4)) return CATFILE_BLOB;
	if (n == 4 && !memcmp(s, "tree", 4)) return CATFILE_TREE;
	if (n == 6 && !memcmp(s, "commit", 6)) return CATFILE_COMMIT;
	if (n == 3 && !memcmp(s, "tag", 3)) return CATFILE_TAG;
	return CATFILE_OTHER;
}

/* "<oid> <type> <size>" */
static int parse_header(const char *line, size_t len, struct catfile_info *info)
{
	const char *sp1 = memchr(line, ' ', len), *sp2, *end = line + len;
	uint64_t size = 0;
	size_t olen;

	if (!sp1)
		return -1;
	olen = (size_t)(sp1 - line);
	if ((olen != 40 && olen != 64) || !is_hex(line, olen))
		return -1;
	sp2 = memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1));
	if (!sp2 || sp2 + 1 == end)
		return -1;
	for (const char *p = sp2 + 1; p < end; p++) {
		if (*p < '0' || *p > '9' || size > (UINT64_MAX - 9) / 10)
			return -1;
		size = size * 10 + (uint64_t)(*p - '0');
	}
	memcpy(info->oid, line, olen);
	info->oid[olen] = '\0';
	info->oid_len = olen;
	info->type = parse_type(sp1 + 1, (size_t)(sp2 - sp1 - 1));
	info->size = size;
	return 0;
}

/* Does `line` equal "<name> <word>", or is it a prefix of it that stops at a newline of the name? */
static int match_echo(const struct creq *r, const char *line, size_t len, const char *word, int *partial)
{
	size_t wl = strlen(word), full = r->name_len + 1 + wl;
	char c;
	if (len > full)
		return 0;
	for (size_t i = 0; i < len; i++) {
		c = i < r->name_len ? r->name[i] : i == r->name_len ? ' ' : word[i - r->name_len - 1];
		if (line[i] != c)
			return 0;
	}
	if (len == full)
		return 1;
	/* a name with a newline in it: git echoed the name verbatim, read on */
	if (len < r->name_len && r->name[len] == '\n')
		*partial = 1;
	return 0;
}

static void header_line(struct catfile *cf, struct creq *r)
{
	struct catfile_info info;
	int partial = 0;
	uint64_t want = UINT64_MAX;

	if (match_echo(r, cf->hdr.buf, cf->hdr.len, "missing", &partial) ||
	    match_echo(r, cf->hdr.buf, cf->hdr.len, "ambiguous", &partial)) {
		complete(cf, CATFILE_MISSING);
		return;
	}
	if (partial) {
		strbuf_addch(&cf->hdr, '\n');
		return;
	}
	if (parse_header(cf->hdr.buf, cf->hdr.len, &info) < 0) {
		protocol_error(cf);
		return;
	}
	strbuf_reset(&cf->hdr);
	if (r->contents && cf->cache && (unsigned)info.type <= CATFILE_TAG)
		cf->cache->lookups[info.type]++;
	if (r->ops->on_info)
		want = r->ops->on_info(r->arg, &info);
	if (cf->release_pending)
		return;
	if (!r->contents) {
		complete(cf, 0);
		return;
	}
	cf->remaining = info.size;
	cf->want = MIN(want, info.size);
	cf->st = info.size ? ST_BODY : ST_TRAILER;
}

/* Parse git's output; stops (keeping the rest) when the owner pauses. */
static void feed(struct catfile *cf, const char *buf, size_t len)
{
	enter(cf);
	while (len && !cf->broken && !cf->release_pending) {
		struct creq *r = cf->head;
		if (cf->paused) {
			strbuf_add(&cf->pending, buf, len);
			if (cf->cmd)
				git_cmd_pause_stdout(cf->cmd);
			len = 0;
			break;
		}
		if (!r) {
			protocol_error(cf);
			break;
		}
		if (cf->st == ST_HEADER) {
			const char *nl = memchr(buf, '\n', len);
			size_t n = nl ? (size_t)(nl - buf) : len;
			if (cf->hdr.len + n > r->name_len + 256) {
				protocol_error(cf);
				break;
			}
			strbuf_add(&cf->hdr, buf, n);
			if (!nl)
				break;
			buf += n + 1;
			len -= n + 1;
			header_line(cf, r);
		} else if (cf->st == ST_BODY) {
			size_t n = (size_t)MIN((uint64_t)len, cf->remaining);
			size_t give = (size_t)MIN((uint64_t)n, cf->want);
			cf->want -= give;
			cf->remaining -= n;
			if (!cf->remaining)
				cf->st = ST_TRAILER;
			if (give && r->ops->on_data)
				r->ops->on_data(r->arg, buf, give);
			buf += n;
			len -= n;
		} else {
			if (buf[0] != '\n') {
				protocol_error(cf);
				break;
			}
			buf++;
			len--;
			complete(cf, 0);
		}
	}
	if (len && cf->release_pending)
		cf->broken = 1; /* output nobody will read: the process cannot be reused */
	if (!cf->paused && !cf->pending.len && cf->cmd)
		git_cmd_resume_stdout(cf->cmd);
	leave(cf);
}

static void cmd_stdout(struct git_cmd *cmd, const char *buf, size_t len)
{
	feed(git_cmd_user(cmd), buf, len);
}

static void proc_destroy(struct catfile *cf);

static void cmd_exit(struct git_cmd *cmd, int status)
{
	struct catfile *cf = git_cmd_user(cmd);
	struct catfile_cache *c = cf->cache;
	(void)status;
	cf->cmd = NULL;
	cf->broken = 1;
	if (!cf->leased) {
		/* an idle process died (or was killed by us): forget it */
		char *key = xmemdup(cf->key, cf->key_len);
		size_t key_len = cf->key_len;
		proc_destroy(cf);
		if (c)
			serve_waiters(c, key, key_len);
		free(key);
		return;
	}
	fail_all(cf, -EPIPE);
}

static const struct git_cmd_ops catfile_cmd_ops = {
	.on_stdout = cmd_stdout,
	.on_exit = cmd_exit,
};

static int queue_request(struct catfile *cf, int contents, const char *rev, size_t len,
			 const struct catfile_read_ops *ops, void *arg, void (*drop)(void *))
{
	struct strbuf line = STRBUF_INIT;
	struct creq *r;
	int rc;

	if (!cf->cmd || cf->broken)
		return -EPIPE;
	if (memchr(rev, '\0', len))
		return -EINVAL;
	r = xcalloc(1, sizeof(*r));
	r->contents = contents;
	r->ops = ops;
	r->arg = arg;
	r->drop = drop;
	r->name = xmemdup(rev, len);
	r->name_len = len;
	/* --buffer queues commands until "flush": one request, one flush */
	strbuf_addstr(&line, contents ? "contents " : "info ");
	strbuf_add(&line, rev, len);
	strbuf_add(&line, "\0flush\0", 7);
	rc = git_cmd_write_stdin(cf->cmd, line.buf, line.len);
	strbuf_release(&line);
	if (rc < 0) {
		req_free(r, 0);
		return rc;
	}
	if (cf->tail)
		cf->tail->next = r;
	else
		cf->head = r;
	cf->tail = r;
	cf->nr_reqs++;
	if (!contents && cf->cache)
		cf->cache->lookups[CATFILE_TAG + 1]++;
	return 0;
}

int catfile_contents(struct catfile *cf, const char *rev, size_t len,
		     const struct catfile_read_ops *ops, void *arg)
{
	return queue_request(cf, 1, rev, len, ops, arg, NULL);
}

int catfile_info(struct catfile *cf, const char *rev, size_t len,
		 const struct catfile_read_ops *ops, void *arg)
{
	return queue_request(cf, 0, rev, len, ops, arg, NULL);
}

/* --- whole objects --- */

struct whole {
	struct strbuf data;
	struct catfile_info info;
	int have_info, too_big;
	size_t max;
	catfile_object_fn cb;
	void *arg;
};

static void whole_free(void *arg)
{
	struct whole *w = arg;
	strbuf_release(&w->data);
	free(w);
}

static uint64_t whole_info(void *arg, const struct catfile_info *info)
{
	struct whole *w = arg;
	w->info = *info;
	w->have_info = 1;
	if (info->size > w->max) {
		w->too_big = 1;
		return 0;
	}
	strbuf_grow(&w->data, (size_t)info->size);
	return info->size;
}

static void whole_data(void *arg, const char *buf, size_t len)
{
	struct whole *w = arg;
	strbuf_add(&w->data, buf, len);
}

static void whole_done(void *arg, int status)
{
	struct whole *w = arg;
	if (status == 0 && w->too_big)
		status = -EFBIG;
	w->cb(w->arg, status, w->have_info ? &w->info : NULL, &w->data);
	whole_free(w);
}

static const struct catfile_read_ops whole_ops = {
	.on_info = whole_info,
	.on_data = whole_data,
	.on_done = whole_done,
};

int catfile_read(struct catfile *cf, const char *rev, size_t len, size_t max_size,
		 catfile_object_fn cb, void *arg)
{
	struct whole *w = xcalloc(1, sizeof(*w));
	int rc;
	strbuf_init(&w->data, 0);
	w->max = max_size;
	w->cb = cb;
	w->arg = arg;
	rc = queue_request(cf, 1, rev, len, &whole_ops, w, whole_free);
	if (rc < 0)
		whole_free(w);
	return rc;
}

/* --- backpressure --- */

void catfile_pause(struct catfile *cf)
{
	cf->paused = 1;
	if (cf->cmd)
		git_cmd_pause_stdout(cf->cmd);
}

static void deliver_pending(struct catfile *cf)
{
	struct strbuf tmp = cf->pending;
	strbuf_init(&cf->pending, 0);
	/* feed() resumes git's stdout once everything kept was consumed */
	feed(cf, tmp.buf, tmp.len);
	strbuf_release(&tmp);
}

void catfile_resume(struct catfile *cf)
{
	if (!cf->paused)
		return;
	cf->paused = 0;
	if (!cf->pending.len) {
		if (cf->cmd)
			git_cmd_resume_stdout(cf->cmd);
		return;
	}
	if (!cf->cache) {
		deliver_pending(cf);
		return;
	}
	if (link_empty(&cf->resume)) {
		link_add_tail(&cf->cache->resumed, &cf->resume);
		kick_start(cf->cache);
	}
}

/* --- processes --- */

static void proc_destroy(struct catfile *cf)
{
	struct catfile_cache *c = cf->cache;
	if (c) {
		link_del(&cf->all);
		c->nr_all--;
		if (cf->is_idle) {
			link_del(&cf->idle);
			c->nr_idle--;
		}
		link_del(&cf->resume);
	}
	if (cf->cmd) {
		/* killed and reaped in the background; its callbacks are gone */
		git_cmd_detach(cf->cmd);
		cf->cmd = NULL;
	}
	while (cf->head) {
		struct creq *r = cf->head;
		cf->head = r->next;
		req_free(r, 1);
	}
	strbuf_release(&cf->hdr);
	strbuf_release(&cf->pending);
	free(cf->key);
	free(cf);
}

static struct catfile *proc_spawn(struct catfile_cache *c, const char *key, size_t key_len,
				  const char *const *argv, const char *const *env, const char *cwd,
				  int *err)
{
	struct catfile *cf = xcalloc(1, sizeof(*cf));
	struct git_cmd_spec spec = { 0 };
	int rc;

	spec.argv = argv;
	spec.env = env;
	spec.cwd = cwd;
	spec.pipe_stdin = 1;
	spec.pipe_stdout = 1;
	link_init(&cf->all);
	link_init(&cf->idle);
	link_init(&cf->resume);
	strbuf_init(&cf->hdr, 0);
	strbuf_init(&cf->pending, 0);
	rc = git_cmd_spawn(c->loop, &spec, &catfile_cmd_ops, cf, &cf->cmd);
	if (rc < 0) {
		free(cf);
		*err = rc;
		return NULL;
	}
	cf->cache = c;
	cf->key = xmemdup(key, key_len);
	cf->key_len = key_len;
	link_add_tail(&c->all, &cf->all);
	c->nr_all++;
	c->spawned++;
	return cf;
}

static int key_eq(const struct catfile *cf, const char *key, size_t len)
{
	return cf->key_len == len && !memcmp(cf->key, key, len);
}

static size_t count_key(struct catfile_cache *c, const char *key, size_t len)
{
	size_t n = 0;
	for (struct link *l = c->all.next; l != &c->all; l = l->next)
		n += key_eq(link_entry(l, struct catfile, all), key, len);
	return n;
}

/* The most recently used idle process of `key`. */
static struct catfile *take_idle(struct catfile_cache *c, const char *key, size_t len)
{
	for (struct link *l = c->idle.prev; l != &c->idle; l = l->prev) {
		struct catfile *cf = link_entry(l, struct catfile, idle);
		if (key_eq(cf, key, len)) {
			link_del(&cf->idle);
			cf->is_idle = 0;
			c->nr_idle--;
			return cf;
		}
	}
	return NULL;
}

/* --- the cache's loop handles --- */

static void wait_free(struct catfile_wait *w)
{
	strvec_clear(&w->argv);
	strvec_clear(&w->env);
	free(w->cwd);
	free(w->key);
	free(w);
}

static void on_kick(uv_idle_t *h)
{
	struct catfile_cache *c = h->data;
	while (!link_empty(&c->ready) || !link_empty(&c->resumed)) {
		if (!link_empty(&c->ready)) {
			struct catfile_wait *w = link_entry(c->ready.next, struct catfile_wait, link);
			catfile_lease_fn cb = w->cb;
			void *arg = w->arg;
			struct catfile *cf = w->cf;
			int err = w->err;
			link_del(&w->link);
			wait_free(w);
			cb(arg, cf, err);
		} else {
			struct catfile *cf = link_entry(c->resumed.next, struct catfile, resume);
			link_del(&cf->resume);
			if (!cf->paused)
				deliver_pending(cf);
		}
	}
	uv_idle_stop(&c->kick);
	c->kick_on = 0;
}

static void kick_start(struct catfile_cache *c)
{
	if (!c->kick_on && !c->freeing) {
		c->kick_on = 1;
		uv_idle_start(&c->kick, on_kick);
	}
}

static void on_timer(uv_timer_t *t)
{
	struct catfile_cache *c = t->data;
	uint64_t now = now_ms();
	/* the idle list is in release order: the oldest first */
	while (!link_empty(&c->idle)) {
		struct catfile *cf = link_entry(c->idle.next, struct catfile, idle);
		if (now - cf->idle_since < c->o.idle_ms)
			break;
		proc_destroy(cf);
	}
	if (!c->nr_idle) {
		uv_timer_stop(&c->timer);
		c->timer_on = 0;
	}
}

static void timer_arm(struct catfile_cache *c)
{
	uint64_t tick = MIN((uint64_t)1000, MAX(c->o.idle_ms / 2, (uint64_t)10));
	if (!c->timer_on && c->nr_idle && !c->freeing) {
		c->timer_on = 1;
		uv_timer_start(&c->timer, on_timer, tick, tick);
	}
}

struct catfile_cache *catfile_cache_new(uv_loop_t *loop, const struct catfile_cache_opts *opts)
{
	struct catfile_cache *c = xcalloc(1, sizeof(*c));
	c->loop = loop;
	if (opts)
		c->o = *opts;
	if (!c->o.max_idle)
		c->o.max_idle = 100;
	if (!c->o.idle_ms)
		c->o.idle_ms = 10000;
	if (!c->o.max_per_key)
		c->o.max_per_key = 16;
	link_init(&c->all);
	link_init(&c->idle);
	link_init(&c->waiters);
	link_init(&c->ready);
	link_init(&c->resumed);
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	/* idle processes must not keep the loop (and so the server) alive */
	uv_unref((uv_handle_t *)&c->timer);
	uv_idle_init(loop, &c->kick);
	c->kick.data = c;
	c->handles_open = 2;
	return c;
}

static void grant(struct catfile_cache *c, struct catfile_wait *w, struct catfile *cf, int err)
{
	w->cf = cf;
	w->err = err;
	if (cf)
		cf->leased = 1;
	link_del(&w->link);
	link_add_tail(&c->ready, &w->link);
	kick_start(c);
}

/* Start processes for waiters of `key` while the per-key bound allows. */
static void serve_waiters(struct catfile_cache *c, const char *key, size_t key_len)
{
	struct link *l = c->waiters.next;
	while (l != &c->waiters) {
		struct catfile_wait *w = link_entry(l, struct catfile_wait, link);
		struct catfile *cf;
		int err = 0;
		l = l->next;
		if (w->key_len != key_len || memcmp(w->key, key, key_len))
			continue;
		if (count_key(c, key, key_len) >= c->o.max_per_key)
			break;
		cf = proc_spawn(c, w->key, w->key_len, w->argv.v, w->has_env ? w->env.v : NULL, w->cwd,
				&err);
		grant(c, w, cf, err);
	}
}

int catfile_lease(struct catfile_cache *c, const struct catfile_spec *spec, catfile_lease_fn cb,
		  void *arg, struct catfile_wait **wait)
{
	struct catfile_wait *w;
	struct catfile *cf;

	if (c->freeing)
		return -ECANCELED;
	w = xcalloc(1, sizeof(*w));
	w->c = c;
	link_init(&w->link);
	w->key = xmemdup(spec->key, spec->key_len);
	w->key_len = spec->key_len;
	strvec_init(&w->argv);
	strvec_init(&w->env);
	strvec_pushv(&w->argv, spec->argv);
	w->has_env = spec->env != NULL;
	if (spec->env)
		strvec_pushv(&w->env, spec->env);
	w->cwd = spec->cwd ? xstrdup(spec->cwd) : NULL;
	w->cb = cb;
	w->arg = arg;

	cf = take_idle(c, w->key, w->key_len);
	if (cf)
		c->hits++;
	else
		c->misses++;
	if (!cf && count_key(c, w->key, w->key_len) < c->o.max_per_key) {
		int err = 0;
		cf = proc_spawn(c, w->key, w->key_len, w->argv.v, w->has_env ? w->env.v : NULL,
				w->cwd, &err);
		if (!cf) {
			wait_free(w);
			return err;
		}
	}
	if (cf)
		grant(c, w, cf, 0);
	else
		link_add_tail(&c->waiters, &w->link);
	*wait = w;
	return 0;
}

void catfile_wait_cancel(struct catfile_wait *w)
{
	struct catfile *cf = w->cf;
	link_del(&w->link);
	wait_free(w);
	if (cf)
		catfile_release(cf);
}

static void do_release(struct catfile *cf)
{
	struct catfile_cache *c = cf->cache;
	int clean = cf->cmd && !cf->broken && !cf->head && cf->st == ST_HEADER && !cf->hdr.len &&
		    !cf->pending.len;

	cf->leased = 0;
	cf->release_pending = 0;
	if (!c || c->draining || c->freeing || !clean) {
		char *key = xmemdup(cf->key, cf->key_len);
		size_t key_len = cf->key_len;
		proc_destroy(cf);
		if (c && !c->freeing)
			serve_waiters(c, key, key_len);
		free(key);
		return;
	}
	cf->paused = 0;
	git_cmd_resume_stdout(cf->cmd);
	link_del(&cf->resume);

	for (struct link *l = c->waiters.next; l != &c->waiters; l = l->next) {
		struct catfile_wait *w = link_entry(l, struct catfile_wait, link);
		if (key_eq(cf, w->key, w->key_len)) {
			grant(c, w, cf, 0);
			return;
		}
	}
	if (c->o.keep_none) {
		proc_destroy(cf);
		return;
	}
	link_add_tail(&c->idle, &cf->idle);
	cf->is_idle = 1;
	cf->idle_since = now_ms();
	c->nr_idle++;
	while (c->nr_idle > c->o.max_idle)
		proc_destroy(link_entry(c->idle.next, struct catfile, idle));
	timer_arm(c);
}

void catfile_release(struct catfile *cf)
{
	if (cf->depth) {
		cf->release_pending = 1;
		return;
	}
	do_release(cf);
}

void catfile_cache_drain(struct catfile_cache *c)
{
	c->draining = 1;
	while (!link_empty(&c->idle))
		proc_destroy(link_entry(c->idle.next, struct catfile, idle));
	if (c->timer_on) {
		uv_timer_stop(&c->timer);
		c->timer_on = 0;
	}
}

static void on_handle_closed(uv_handle_t *h)
{
	struct catfile_cache *c = h->data;
	if (--c->handles_open == 0)
		free(c);
}

void catfile_cache_free(struct catfile_cache *c)
{
	catfile_cache_drain(c);
	c->freeing = 1;
	while (!link_empty(&c->waiters)) {
		struct catfile_wait *w = link_entry(c->waiters.next, struct catfile_wait, link);
		link_del(&w->link);
		wait_free(w);
	}
	while (!link_empty(&c->ready)) {
		struct catfile_wait *w = link_entry(c->ready.next, struct catfile_wait, link);
		struct catfile *cf = w->cf;
		link_del(&w->link);
		wait_free(w);
		if (cf)
			proc_destroy(cf);
	}
	/* processes still leased outlive the cache: they are killed on release */
	while (!link_empty(&c->all)) {
		struct catfile *cf = link_entry(c->all.next, struct catfile, all);
		link_del(&cf->all);
		link_del(&cf->resume);
		cf->cache = NULL;
	}
	c->nr_all = 0;
	uv_idle_stop(&c->kick);
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
	uv_close((uv_handle_t *)&c->kick, on_handle_closed);
}
