/*
 * The pack-objects cache ([pack_objects_cache], docs/technical/pack-objects-cache.md):
 * an index of files, one a key, each holding the side-band stream one
 * pack-objects run produced. Identical requests share the file and read it as
 * it grows; entries older than max_age are removed by a sweeper thread. All
 * functions are thread-safe (calls run on threads of their own).
 */
#ifndef GITALY_HOOKS_PACK_CACHE_H
#define GITALY_HOOKS_PACK_CACHE_H

#include "base/strbuf.h"
#include "grpc/status.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define PACK_CACHE_KEY_LEN 32

struct pack_cache;
struct pack_entry;

/* Make `dir` (with parents) and start the sweeper; NULL with a message in `err`. */
struct pack_cache *pack_cache_new(const char *dir, uint64_t max_age_ms, int64_t min_occurrences, struct strbuf *err);
/* Stop the sweeper; the cache itself goes when its last entry is released. */
void pack_cache_free(struct pack_cache *c);

/*
 * Look `key` up. NULL: not cached (min_occurrences not reached yet, or the
 * file could not be made): run pack-objects directly. Else a reference to
 * release with pack_entry_release(); *generate is 1 when the caller must
 * produce the stream (pack_entry_append(), then pack_entry_finish()), which
 * it must do even when nobody reads any more: the entry then holds a second
 * reference, the producer's, that pack_entry_finish() releases.
 */
struct pack_entry *pack_cache_lookup(struct pack_cache *c, const unsigned char key[PACK_CACHE_KEY_LEN], int *generate);
/* Add produced bytes; -1 with errno when the file cannot take them. */
int pack_entry_append(struct pack_entry *e, const char *buf, size_t len);
/* The stream is complete (code GRPC_OK) or failed with `msg`. */
void pack_entry_finish(struct pack_entry *e, enum grpc_code code, const char *msg);
/*
 * Copy the stream to `fd` as it grows, until it is complete. GRPC_OK, or the
 * producer's failure, or -1 with errno when writing `fd` failed or
 * *cancelled became set (ECANCELED). `code`/`msg` carry the producer's error.
 */
int pack_entry_serve(struct pack_entry *e, int fd, atomic_int *cancelled, enum grpc_code *code, struct strbuf *msg);
void pack_entry_release(struct pack_entry *e);

/* The series' values (core/metrics.c); c may be NULL (cache disabled). */
struct pack_cache_stats {
	uint64_t hits, misses;
	uint64_t disk_bytes, entries;
};
void pack_cache_stats(struct pack_cache *c, struct pack_cache_stats *st);
/* Bytes pack-objects produced and bytes sent to clients, cached or not. */
void pack_objects_count_generated(size_t n);
void pack_objects_count_served(size_t n);
uint64_t pack_objects_generated_bytes(void);
uint64_t pack_objects_served_bytes(void);

#endif
