/*
 * The pack-objects cache (hooks/pack_cache.h, docs/technical/pack-objects-cache.md).
 *
 * The index is a list under one mutex; each entry is a file
 * <dir>/<first two hex digits>/<hex key>-<pid>-<sequence> that one producer
 * appends to while readers follow it (a condition variable says "grown").
 * An entry that expires or fails leaves the index and loses its file name;
 * whoever still holds it keeps reading through its own descriptor.
 */
#include "hooks/pack_cache.h"
#include "base/fs.h"
#include "base/util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* a reader wakes this often to see whether its call was cancelled */
#define SERVE_POLL_MS 200

struct pack_entry {
	struct pack_entry *next;
	struct pack_cache *cache;
	unsigned char key[PACK_CACHE_KEY_LEN];
	uint64_t created_ms;
	int64_t seen;           /* lookups while min_occurrences is not reached */
	char *path;             /* NULL while only counting occurrences */
	int fd;                 /* written by the producer, dup()ed by readers */
	size_t size;            /* bytes written so far */
	int done;
	enum grpc_code code;
	char *msg;
	int refs;
	int indexed;
};

struct pack_cache {
	pthread_mutex_t lock;
	pthread_cond_t grown;   /* any entry grew or finished */
	pthread_cond_t wake;    /* the sweeper: stop */
	pthread_t sweeper;
	char *dir;
	uint64_t max_age_ms;
	int64_t min_occurrences;
	struct pack_entry *entries;
	uint64_t seq;
	uint64_t hits, misses;
	int refs;               /* the owner plus every entry */
	int stopping;
};

static atomic_ullong generated_bytes, served_bytes;

void pack_objects_count_generated(size_t n) { atomic_fetch_add(&generated_bytes, n); }
void pack_objects_count_served(size_t n) { atomic_fetch_add(&served_bytes, n); }
uint64_t pack_objects_generated_bytes(void) { return atomic_load(&generated_bytes); }
uint64_t pack_objects_served_bytes(void) { return atomic_load(&served_bytes); }

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void cache_unref_locked(struct pack_cache *c, int *free_it)
{
	*free_it = --c->refs == 0;
}

static void cache_destroy(struct pack_cache *c)
{
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->grown);
	pthread_cond_destroy(&c->wake);
	free(c->dir);
	free(c);
}

/* Drop `e` from the index and its name from the disk; under the lock. */
static void unindex_locked(struct pack_cache *c, struct pack_entry *e)
{
	for (struct pack_entry **pp = &c->entries; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	}
	e->next = NULL;
	e->indexed = 0;
	if (e->path)
		unlink(e->path);
}

/* One reference less, under the lock; returns the entry to free outside it, or NULL. */
static struct pack_entry *entry_unref_locked(struct pack_entry *e)
{
	return --e->refs == 0 ? e : NULL;
}

static void entry_free(struct pack_entry *e)
{
	struct pack_cache *c = e->cache;
	int free_cache;
	if (e->fd >= 0)
		close(e->fd);
	free(e->path);
	free(e->msg);
	free(e);
	pthread_mutex_lock(&c->lock);
	cache_unref_locked(c, &free_cache);
	pthread_mutex_unlock(&c->lock);
	if (free_cache)
		cache_destroy(c);
}

/* Files of earlier runs (or of entries gone) older than max_age. */
static void sweep_dir(struct pack_cache *c, uint64_t now)
{
	DIR *top = opendir(c->dir);
	struct dirent *d;
	struct strbuf p = STRBUF_INIT;
	if (!top)
		return;
	while ((d = readdir(top))) {
		DIR *sub;
		struct dirent *f;
		if (strlen(d->d_name) != 2 || !isxdigit((unsigned char)d->d_name[0]) ||
		    !isxdigit((unsigned char)d->d_name[1]))
			continue;
		strbuf_reset(&p);
		strbuf_addf(&p, "%s/%s", c->dir, d->d_name);
		if (!(sub = opendir(p.buf)))
			continue;
		while ((f = readdir(sub))) {
			struct stat st;
			if (f->d_name[0] == '.')
				continue;
			strbuf_reset(&p);
			strbuf_addf(&p, "%s/%s/%s", c->dir, d->d_name, f->d_name);
			if (lstat(p.buf, &st) == 0 && S_ISREG(st.st_mode) &&
			    (uint64_t)st.st_mtime * 1000 + c->max_age_ms <= now)
				unlink(p.buf);
		}
		closedir(sub);
	}
	closedir(top);
	strbuf_release(&p);
}

static void *sweeper(void *arg)
{
	struct pack_cache *c = arg;
	/* often enough that an entry outlives max_age by at most a quarter of it (and a second) */
	uint64_t every = MIN(MAX(c->max_age_ms / 4, 100), 1000);

	pthread_mutex_lock(&c->lock);
	while (!c->stopping) {
		struct timespec ts;
		uint64_t now = wall_ms(), due = now + every;
		struct pack_entry *gone = NULL, **pp = &c->entries;
		while (*pp) {
			struct pack_entry *e = *pp;
			if (e->created_ms + c->max_age_ms <= now) {
				unindex_locked(c, e);
				if (entry_unref_locked(e)) {
					e->next = gone;
					gone = e;
				}
				continue;       /* *pp is the next one now */
			}
			pp = &e->next;
		}
		pthread_mutex_unlock(&c->lock);
		while (gone) {
			struct pack_entry *n = gone->next;
			entry_free(gone);
			gone = n;
		}
		sweep_dir(c, now);
		pthread_mutex_lock(&c->lock);
		ts.tv_sec = (time_t)(due / 1000);
		ts.tv_nsec = (long)(due % 1000) * 1000000;
		if (!c->stopping)
			pthread_cond_timedwait(&c->wake, &c->lock, &ts);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

struct pack_cache *pack_cache_new(const char *dir, uint64_t max_age_ms, int64_t min_occurrences, struct strbuf *err)
{
	struct pack_cache *c;
	pthread_condattr_t ca;

	if (fs_mkdir_p(dir, 0700) < 0) {
		strbuf_addf(err, "pack-objects cache: create %s: %s", dir, strerror(errno));
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_REALTIME);
	pthread_cond_init(&c->grown, &ca);
	pthread_cond_init(&c->wake, &ca);
	pthread_condattr_destroy(&ca);
	c->dir = xstrdup(dir);
	c->max_age_ms = max_age_ms;
	c->min_occurrences = min_occurrences;
	c->refs = 1;
	if (pthread_create(&c->sweeper, NULL, sweeper, c)) {
		strbuf_addstr(err, "pack-objects cache: cannot start the sweeper thread");
		cache_destroy(c);
		return NULL;
	}
	return c;
}

void pack_cache_free(struct pack_cache *c)
{
	struct pack_entry *gone = NULL;
	int free_cache;
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	c->stopping = 1;
	pthread_cond_broadcast(&c->wake);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->sweeper, NULL);
	/* the index lets go of its entries; producers and readers keep theirs */
	pthread_mutex_lock(&c->lock);
	while (c->entries) {
		struct pack_entry *e = c->entries;
		c->entries = e->next;
		e->next = NULL;
		e->indexed = 0;
		if (entry_unref_locked(e)) {
			e->next = gone;
			gone = e;
		}
	}
	pthread_mutex_unlock(&c->lock);
	while (gone) {
		struct pack_entry *n = gone->next;
		entry_free(gone);
		gone = n;
	}
	pthread_mutex_lock(&c->lock);
	cache_unref_locked(c, &free_cache);
	pthread_mutex_unlock(&c->lock);
	if (free_cache)
		cache_destroy(c);
}

static void hex(char *out, const unsigned char *key)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < PACK_CACHE_KEY_LEN; i++) {
		out[2 * i] = digits[key[i] >> 4];
		out[2 * i + 1] = digits[key[i] & 15];
	}
	out[2 * PACK_CACHE_KEY_LEN] = '\0';
}

/* Give `e` its file; under the lock. -1 when it cannot be made. */
static int entry_open_locked(struct pack_cache *c, struct pack_entry *e)
{
	char h[2 * PACK_CACHE_KEY_LEN + 1];
	struct strbuf p = STRBUF_INIT;
	hex(h, e->key);
	strbuf_addf(&p, "%s/%.2s", c->dir, h);
	if (mkdir(p.buf, 0700) < 0 && errno != EEXIST) {
		strbuf_release(&p);
		return -1;
	}
	strbuf_addf(&p, "/%s-%ld-%llu", h, (long)getpid(), (unsigned long long)++c->seq);
	e->fd = open(p.buf, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (e->fd < 0) {
		strbuf_release(&p);
		return -1;
	}
	e->path = strbuf_detach(&p, NULL);
	return 0;
}

struct pack_entry *pack_cache_lookup(struct pack_cache *c, const unsigned char key[PACK_CACHE_KEY_LEN], int *generate)
{
	struct pack_entry *e;
	*generate = 0;
	pthread_mutex_lock(&c->lock);
	for (e = c->entries; e; e = e->next)
		if (!memcmp(e->key, key, PACK_CACHE_KEY_LEN))
			break;
	if (e && e->path) {
		c->hits++;
		e->refs++;
		pthread_mutex_unlock(&c->lock);
		return e;
	}
	if (!e) {
		e = xcalloc(1, sizeof(*e));
		e->cache = c;
		memcpy(e->key, key, PACK_CACHE_KEY_LEN);
		e->created_ms = wall_ms();
		e->fd = -1;
		e->refs = 1;            /* the index's */
		e->indexed = 1;
		e->next = c->entries;
		c->entries = e;
		c->refs++;
	}
	/* upstream's min_occurrences: the first N-1 sightings within max_age run uncached */
	if (++e->seen < c->min_occurrences || entry_open_locked(c, e) < 0) {
		pthread_mutex_unlock(&c->lock);
		return NULL;
	}
	c->misses++;
	e->created_ms = wall_ms();
	e->refs += 2;           /* the caller's and the producer's */
	*generate = 1;
	pthread_mutex_unlock(&c->lock);
	return e;
}

int pack_entry_append(struct pack_entry *e, const char *buf, size_t len)
{
	struct pack_cache *c = e->cache;
	const char *b = buf;
	size_t left = len;
	while (left) {
		ssize_t n = write(e->fd, b, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		b += n;
		left -= (size_t)n;
	}
	pack_objects_count_generated(len);
	pthread_mutex_lock(&c->lock);
	e->size += len;
	pthread_cond_broadcast(&c->grown);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

void pack_entry_finish(struct pack_entry *e, enum grpc_code code, const char *msg)
{
	struct pack_cache *c = e->cache;
	pthread_mutex_lock(&c->lock);
	e->done = 1;
	e->code = code;
	if (code != GRPC_OK) {
		e->msg = xstrdup(msg ? msg : "");
		if (e->indexed) {       /* the next request tries again */
			unindex_locked(c, e);
			(void)entry_unref_locked(e);   /* the caller still holds one */
		}
	}
	pthread_cond_broadcast(&c->grown);
	pthread_mutex_unlock(&c->lock);
	pack_entry_release(e);  /* the producer's reference */
}

int pack_entry_serve(struct pack_entry *e, int fd, atomic_int *cancelled, enum grpc_code *code, struct strbuf *msg)
{
	struct pack_cache *c = e->cache;
	char buf[65536];
	size_t off = 0;
	int rfd;

	pthread_mutex_lock(&c->lock);
	/* pread() leaves the producer's file offset alone */
	rfd = e->fd >= 0 ? fcntl(e->fd, F_DUPFD_CLOEXEC, 0) : -1;
	pthread_mutex_unlock(&c->lock);
	if (rfd < 0)
		return -1;
	for (;;) {
		size_t size;
		int done;
		pthread_mutex_lock(&c->lock);
		while (off >= e->size && !e->done && !atomic_load(cancelled)) {
			uint64_t due = wall_ms() + SERVE_POLL_MS;
			struct timespec ts = { (time_t)(due / 1000), (long)(due % 1000) * 1000000 };
			pthread_cond_timedwait(&c->grown, &c->lock, &ts);
		}
		size = e->size;
		done = e->done;
		*code = e->code;
		if (done && e->code != GRPC_OK)
			strbuf_addstr(msg, e->msg);
		pthread_mutex_unlock(&c->lock);
		if (atomic_load(cancelled)) {
			close(rfd);
			errno = ECANCELED;
			return -1;
		}
		if (done && *code != GRPC_OK) {
			close(rfd);
			return 0;
		}
		while (off < size) {
			ssize_t n = pread(rfd, buf, MIN(sizeof(buf), size - off), (off_t)off);
			ssize_t w;
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				int err = n < 0 ? errno : EIO;
				close(rfd);
				errno = err;
				return -1;
			}
			for (ssize_t put = 0; put < n; put += w) {
				w = write(fd, buf + put, (size_t)(n - put));
				if (w < 0 && errno == EINTR) {
					w = 0;
					continue;
				}
				if (w <= 0) {
					int err = w < 0 ? errno : EPIPE;
					close(rfd);
					errno = err;
					return -1;
				}
			}
			off += (size_t)n;
			pack_objects_count_served((size_t)n);
		}
		if (done) {
			close(rfd);
			*code = GRPC_OK;
			return 0;
		}
	}
}

void pack_entry_release(struct pack_entry *e)
{
	struct pack_cache *c;
	struct pack_entry *gone;
	if (!e)
		return;
	c = e->cache;
	pthread_mutex_lock(&c->lock);
	gone = entry_unref_locked(e);
	pthread_mutex_unlock(&c->lock);
	if (gone)
		entry_free(gone);
}

void pack_cache_stats(struct pack_cache *c, struct pack_cache_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	st->hits = c->hits;
	st->misses = c->misses;
	for (struct pack_entry *e = c->entries; e; e = e->next) {
		if (!e->path)
			continue;
		st->entries++;
		st->disk_bytes += e->size;
	}
	pthread_mutex_unlock(&c->lock);
}
