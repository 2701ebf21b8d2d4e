/*
 * hashmap: string (bytes) keys to pointers, open addressing with linear
 * probing and tombstones. Keys are copied; values are the caller's.
 */
#ifndef BASE_HASHMAP_H
#define BASE_HASHMAP_H

#include <stddef.h>
#include <stdint.h>

struct hashmap_entry {
	char *key;        /* NULL: empty; HASHMAP_TOMBSTONE: deleted */
	size_t klen;
	uint64_t hash;
	void *value;
};

struct hashmap {
	struct hashmap_entry *e;
	size_t cap;       /* power of two, 0 when empty */
	size_t nr;        /* live entries */
	size_t used;      /* live + tombstones */
};

#define HASHMAP_INIT { NULL, 0, 0, 0 }

void hashmap_init(struct hashmap *m);
void hashmap_release(struct hashmap *m);
void *hashmap_get(const struct hashmap *m, const void *key, size_t klen);
/* Insert or replace; returns the previous value (or NULL). */
void *hashmap_put(struct hashmap *m, const void *key, size_t klen, void *value);
/* Remove; returns the removed value (or NULL). */
void *hashmap_remove(struct hashmap *m, const void *key, size_t klen);
/* Iterate: `for (size_t i = 0; hashmap_next(m, &i, &e);)` */
int hashmap_next(const struct hashmap *m, size_t *i, const struct hashmap_entry **out);

#endif
