/* Open-addressing hash map with copied byte-string keys. */
#include "hashmap.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static char tombstone;
#define TOMB (&tombstone)

static uint64_t hash_bytes(const void *key, size_t len)
{
	/* FNV-1a, then a final mix so low bits are usable as a table index */
	const unsigned char *p = key;
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 1099511628211ull;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h;
}

void hashmap_init(struct hashmap *m)
{
	memset(m, 0, sizeof(*m));
}

void hashmap_release(struct hashmap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		if (m->e[i].key && m->e[i].key != TOMB)
			free(m->e[i].key);
	free(m->e);
	hashmap_init(m);
}

static struct hashmap_entry *find(const struct hashmap *m, const void *key, size_t klen, uint64_t h)
{
	size_t mask = m->cap - 1;
	if (!m->cap)
		return NULL;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		struct hashmap_entry *e = &m->e[i];
		if (!e->key)
			return NULL;
		if (e->key != TOMB && e->hash == h && e->klen == klen && !memcmp(e->key, key, klen))
			return e;
	}
}

static void grow(struct hashmap *m)
{
	struct hashmap_entry *old = m->e;
	size_t oldcap = m->cap;
	m->cap = oldcap ? oldcap * 2 : 16;
	if (m->nr * 2 < oldcap) /* mostly tombstones: rehash at the same size */
		m->cap = oldcap;
	m->e = xcalloc(m->cap, sizeof(*m->e));
	m->used = m->nr;
	for (size_t i = 0; i < oldcap; i++) {
		struct hashmap_entry *e = &old[i];
		if (e->key && e->key != TOMB) {
			size_t j = e->hash & (m->cap - 1);
			while (m->e[j].key)
				j = (j + 1) & (m->cap - 1);
			m->e[j] = *e;
		}
	}
	free(old);
}

void *hashmap_get(const struct hashmap *m, const void *key, size_t klen)
{
	struct hashmap_entry *e = find(m, key, klen, hash_bytes(key, klen));
	return e ? e->value : NULL;
}

void *hashmap_put(struct hashmap *m, const void *key, size_t klen, void *value)
{
	uint64_t h = hash_bytes(key, klen);
	struct hashmap_entry *e = find(m, key, klen, h);
	size_t i;
	if (e) {
		void *old = e->value;
		e->value = value;
		return old;
	}
	if ((m->used + 1) * 4 >= m->cap * 3)
		grow(m);
	for (i = h & (m->cap - 1); m->e[i].key && m->e[i].key != TOMB; i = (i + 1) & (m->cap - 1))
		;
	if (!m->e[i].key)
		m->used++;
	m->e[i].key = xmemdup(key, klen ? klen : 1);
	m->e[i].klen = klen;
	m->e[i].hash = h;
	m->e[i].value = value;
	m->nr++;
	return NULL;
}

void *hashmap_remove(struct hashmap *m, const void *key, size_t klen)
{
	struct hashmap_entry *e = find(m, key, klen, hash_bytes(key, klen));
	void *v;
	if (!e)
		return NULL;
	v = e->value;
	free(e->key);
	e->key = TOMB;
	e->value = NULL;
	m->nr--;
	return v;
}

int hashmap_next(const struct hashmap *m, size_t *i, const struct hashmap_entry **out)
{
	for (; *i < m->cap; (*i)++) {
		if (m->e[*i].key && m->e[*i].key != TOMB) {
			*out = &m->e[(*i)++];
			return 1;
		}
	}
	return 0;
}
