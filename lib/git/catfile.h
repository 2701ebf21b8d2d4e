/*
 * catfile: long-lived `git cat-file --batch-command --buffer -z` processes,
 * kept in a bounded cache and leased to one user at a time.
 *
 * Spawning git for every object read costs milliseconds; a browsing request
 * reads dozens of objects. So processes stay alive between requests, keyed by
 * what makes them interchangeable (the repository, its object directories,
 * the git configuration: the caller builds the key, see catfile_spec).
 *
 * Cache rules:
 *   - A process serves one lease at a time; a busy process is never shared.
 *     A lease takes an idle process of the same key (the most recently used),
 *     else spawns one, unless `max_per_key` processes of that key already
 *     exist: then the lease waits until one is released.
 *   - Released processes go back to the idle list (LRU). At most `max_idle`
 *     idle processes are kept; the least recently used is closed first.
 *     Processes idle for longer than `idle_ms` are closed by a timer.
 *   - A process released with requests still outstanding, in the middle of
 *     an object, or after any protocol error is killed, never reused: its
 *     stdout position is unknown. This is what happens when an RPC is
 *     cancelled mid-read.
 *
 * Requests (catfile_contents(), catfile_info(), catfile_read()) may be
 * pipelined: each is written to git at once and answered in order. The owner
 * bounds the number in flight (catfile_pending()).
 *
 * Callbacks never run from inside the function that queued them: lease
 * grants and resumed deliveries are dispatched from the loop. A callback may
 * queue further requests, pause, resume or release the process; after
 * catfile_release() no callback of that process fires again.
 *
 * Errors are negative errno values. A missing object (or an ambiguous name)
 * is not an error: its request completes with status CATFILE_MISSING.
 */
#ifndef GIT_CATFILE_H
#define GIT_CATFILE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "base/strbuf.h"

#define CATFILE_MISSING 1

/* Longest hex object id (SHA-256). */
#define CATFILE_HEXSZ_MAX 64

enum catfile_type {
	CATFILE_OTHER = 0,
	CATFILE_COMMIT,
	CATFILE_TREE,
	CATFILE_BLOB,
	CATFILE_TAG,
};

struct catfile_info {
	char oid[CATFILE_HEXSZ_MAX + 1];
	size_t oid_len;
	enum catfile_type type;
	uint64_t size;
};

/* "blob", "tree", "commit", "tag" or "unknown". */
const char *catfile_type_name(enum catfile_type t);

/* --- the cache --- */

struct catfile_cache_opts {
	size_t max_idle;      /* idle processes kept; 0: 100 */
	uint64_t idle_ms;     /* idle processes older than this are closed; 0: 10 s */
	size_t max_per_key;   /* processes (busy or idle) per key; 0: 16 */
	int keep_none;        /* close processes on release (a cache size of 0) */
};

/*
 * How to start a process. `key` identifies what the process can serve:
 * processes with equal keys are interchangeable. argv/env as git_cmd_spec.
 * Everything is copied.
 */
struct catfile_spec {
	const char *key;
	size_t key_len;
	const char *const *argv;
	const char *const *env;
	const char *cwd;
};

struct catfile_cache;
struct catfile;
struct catfile_wait;

struct catfile_cache *catfile_cache_new(uv_loop_t *loop, const struct catfile_cache_opts *opts);
/*
 * Stop caching: idle processes are closed now and released ones are closed
 * instead of kept, so nothing of ours holds the loop alive (for shutdown).
 * Leases keep working.
 */
void catfile_cache_drain(struct catfile_cache *c);
/*
 * Close everything and free the cache once its handles are closed. Leases
 * still out stay valid: their processes are killed on release.
 */
void catfile_cache_free(struct catfile_cache *c);

size_t catfile_cache_idle(const struct catfile_cache *c);   /* idle processes */
size_t catfile_cache_live(const struct catfile_cache *c);   /* idle + leased */
uint64_t catfile_cache_spawned(const struct catfile_cache *c); /* processes started so far */
/* Leases that found an idle process of their key (hits) and those that did not (misses). */
uint64_t catfile_cache_hits(const struct catfile_cache *c);
uint64_t catfile_cache_misses(const struct catfile_cache *c);
/*
 * Lookups, as upstream's gitaly_catfile_lookups_total counts them: objects
 * read by their type (enum catfile_type), or with `type` -1 the info
 * requests sent.
 */
uint64_t catfile_cache_lookups(const struct catfile_cache *c, int type);

/* --- leases --- */

/*
 * `cf` is the leased process, or NULL with `err` < 0 when none could be
 * started. Fires exactly once unless the wait is cancelled first.
 */
typedef void (*catfile_lease_fn)(void *arg, struct catfile *cf, int err);

/*
 * Lease a process for `spec`. Returns 0 and sets *wait (valid until the
 * callback fires or catfile_wait_cancel()), or a negative error (then the
 * callback never fires).
 */
int catfile_lease(struct catfile_cache *c, const struct catfile_spec *spec, catfile_lease_fn cb,
		  void *arg, struct catfile_wait **wait);
/* Give up waiting; the callback does not fire. */
void catfile_wait_cancel(struct catfile_wait *w);
/*
 * End a lease: the process returns to the cache when it is clean, else it is
 * killed. Outstanding callbacks are dropped.
 */
void catfile_release(struct catfile *cf);

/* --- requests on a leased process --- */

struct catfile_read_ops {
	/*
	 * The object exists. For contents requests, return how many bytes of
	 * its content to pass to on_data (the rest is read and dropped); the
	 * return value of info requests is ignored. May be NULL (all bytes).
	 */
	uint64_t (*on_info)(void *arg, const struct catfile_info *info);
	/* Content, in order, in pieces of at most 128 KiB. */
	void (*on_data)(void *arg, const char *buf, size_t len);
	/* Last: 0, CATFILE_MISSING (no on_info came), or a negative error. */
	void (*on_done)(void *arg, int status);
};

/*
 * Queue `contents <rev>` / `info <rev>`. `rev` is any revision git accepts
 * (an object id, "HEAD^{commit}", "main:dir/file"); it must not contain NUL
 * (-EINVAL). Returns 0, or a negative error when the process is unusable
 * (then no callback fires).
 */
int catfile_contents(struct catfile *cf, const char *rev, size_t len,
		     const struct catfile_read_ops *ops, void *arg);
int catfile_info(struct catfile *cf, const char *rev, size_t len,
		 const struct catfile_read_ops *ops, void *arg);

/*
 * Read a whole object into memory. `data` holds its content (the callback
 * may take it with strbuf_detach). An object larger than `max_size` is read
 * and dropped, and reported with status -EFBIG (info filled).
 */
typedef void (*catfile_object_fn)(void *arg, int status, const struct catfile_info *info,
				  struct strbuf *data);
int catfile_read(struct catfile *cf, const char *rev, size_t len, size_t max_size,
		 catfile_object_fn cb, void *arg);

/* Requests queued and not completed. */
size_t catfile_pending(const struct catfile *cf);

/*
 * Backpressure for on_data consumers: after catfile_pause() no callback
 * fires until catfile_resume(); git blocks once the pipe fills.
 */
void catfile_pause(struct catfile *cf);
void catfile_resume(struct catfile *cf);

/* The process id (tests). */
int catfile_pid(const struct catfile *cf);

#endif
