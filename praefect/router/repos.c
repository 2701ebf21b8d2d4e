/* The in-memory copy of the repository records that routing reads. */
#include "praefect.h"
#include "base/util.h"
#include "base/log.h"

#include <malloc.h>
#include <openssl/sha.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vstorage *praefect_vs(struct praefect *p, const char *name, size_t len)
{
	for (size_t i = 0; i < p->nr_vs; i++)
		if (strlen(p->vs[i].cfg->name) == len && !memcmp(p->vs[i].cfg->name, name, len))
			return &p->vs[i];
	return NULL;
}

struct node *vs_node(struct vstorage *vs, const char *storage)
{
	for (size_t i = 0; i < vs->nr_nodes; i++)
		if (!strcmp(vs->nodes[i].cfg->storage, storage))
			return &vs->nodes[i];
	return NULL;
}

/* --- the indexes --- */

static uint64_t mix64(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

/* Eight bytes a step (the tail zero-padded, its length folded in): a path is hashed once per lookup. */
static uint64_t hash_words(uint64_t h, const char *s, size_t n)
{
	uint64_t w;
	for (; n >= 8; s += 8, n -= 8) {
		memcpy(&w, s, 8);
		h = (h ^ w) * 0x9e3779b97f4a7c15ull;
		h ^= h >> 29;
	}
	w = (uint64_t)n << 56;
	memcpy(&w, s, n);   /* little or big endian alike: the same bytes give the same word */
	h = (h ^ w) * 0x9e3779b97f4a7c15ull;
	return h ^ (h >> 29);
}

static uint32_t path_hash(const char *vs, size_t vslen, const char *path, size_t plen)
{
	/* "<vs>" then "<path>", each with its length, mixed so that the low bits index the table */
	return (uint32_t)mix64(hash_words(hash_words(0x1f, vs, vslen), path, plen));
}

static size_t id_slot(const struct repo_index *x, int64_t id)
{
	return mix64((uint64_t)id) & (x->cap - 1);
}

static void index_place(struct repo_index *x, struct repo *r)
{
	size_t mask = x->cap - 1, i;
	for (i = id_slot(x, r->id); x->by_id[i]; i = (i + 1) & mask)
		;
	x->by_id[i] = r;
	for (i = r->path_hash & mask; x->by_path[i]; i = (i + 1) & mask)
		;
	x->by_path[i] = r;
}

/* Keep the load at most 1/2: probes stay short, and 16 bytes a slot pair is what an entry costs at most. */
static void index_grow(struct repo_index *x)
{
	struct repo **old = x->by_id, **old_path = x->by_path;
	size_t oldcap = x->cap;

	x->cap = oldcap ? oldcap * 2 : 64;
	x->by_id = xcalloc(x->cap, sizeof(*x->by_id));
	x->by_path = xcalloc(x->cap, sizeof(*x->by_path));
	for (size_t i = 0; i < oldcap; i++)
		if (old[i])
			index_place(x, old[i]);
	free(old);
	free(old_path);
}

/*
 * Remove slot `i` of `t` (linear probing, no tombstones): the entries after
 * it in its run move back when their home slot allows.
 */
static void slot_delete(struct repo **t, size_t mask, size_t i, int by_id)
{
	size_t j = i;
	t[i] = NULL;
	for (;;) {
		size_t home;
		j = (j + 1) & mask;
		if (!t[j])
			return;
		home = by_id ? mix64((uint64_t)t[j]->id) & mask : t[j]->path_hash & mask;
		/* t[j] may fill the hole at i unless its home lies cyclically in (i, j] */
		if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
			t[i] = t[j];
			t[j] = NULL;
			i = j;
		}
	}
}

static void index_remove(struct repo_index *x, struct repo *r)
{
	size_t mask = x->cap - 1, i;
	for (i = id_slot(x, r->id); x->by_id[i] != r; i = (i + 1) & mask)
		if (!x->by_id[i])
			return;
	slot_delete(x->by_id, mask, i, 1);
	for (i = r->path_hash & mask; x->by_path[i] != r; i = (i + 1) & mask)
		if (!x->by_path[i])
			return;
	slot_delete(x->by_path, mask, i, 0);
	x->nr--;
}

struct repo *repo_by_path(struct praefect *p, const char *vs, size_t vslen, const char *path, size_t plen)
{
	const struct repo_index *x = &p->repos;
	uint32_t h;
	size_t mask;

	if (!x->cap)
		return NULL;
	h = path_hash(vs, vslen, path, plen);
	mask = x->cap - 1;
	for (size_t i = h & mask; x->by_path[i]; i = (i + 1) & mask) {
		struct repo *r = x->by_path[i];
		const char *name = r->vs->cfg->name;
		if (r->path_hash == h && !strncmp(r->relative_path, path, plen) && !r->relative_path[plen] &&
		    !strncmp(name, vs, vslen) && !name[vslen])
			return r;
	}
	return NULL;
}

struct repo *repo_by_id(struct praefect *p, int64_t id)
{
	const struct repo_index *x = &p->repos;
	if (!x->cap)
		return NULL;
	for (size_t i = id_slot(x, id); x->by_id[i]; i = (i + 1) & (x->cap - 1))
		if (x->by_id[i]->id == id)
			return x->by_id[i];
	return NULL;
}

struct repo *repos_next(struct praefect *p, size_t *i)
{
	const struct repo_index *x = &p->repos;
	while (*i < x->cap) {
		struct repo *r = x->by_id[(*i)++];
		if (r)
			return r;
	}
	return NULL;
}

char *repos_intern(struct praefect *p, const char *s)
{
	size_t len = strlen(s);
	char *v = hashmap_get(&p->interned, s, len);
	if (!v) {
		v = xstrdup(s);
		hashmap_put(&p->interned, s, len, v);
	}
	return v;
}

void repo_set_primary(struct repo *r, const char *storage)
{
	r->primary = storage ? repos_intern(r->vs->p, storage) : NULL;
	repo_changed(r->vs->p);
}

uint64_t praefect_health_signature(const struct praefect *p)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < p->nr_vs; i++)
		for (size_t j = 0; j < p->vs[i].nr_nodes; j++)
			h = (h ^ (uint64_t)(p->vs[i].nodes[j].healthy ? 2 : 1)) * 1099511628211ull;
	return h;
}

/* --- the records --- */

struct replica *repo_replica(struct repo *r, const char *storage)
{
	for (size_t i = 0; i < r->nr_replicas; i++)
		if (r->replicas[i].storage == storage || !strcmp(r->replicas[i].storage, storage))
			return &r->replicas[i];
	return NULL;
}

struct replica *repo_replica_add(struct repo *r, const char *storage)
{
	struct replica *rep = repo_replica(r, storage);
	repo_changed(r->vs->p);
	if (rep)
		return rep;
	if (r->nr_replicas == r->alloc_replicas) {
		/* the inline replicas stay where they are, unused, once the array moves to the heap */
		uint32_t alloc = r->alloc_replicas * 2 + 2;
		struct replica *grown = xcalloc(alloc, sizeof(*grown));
		memcpy(grown, r->replicas, r->nr_replicas * sizeof(*grown));
		if (r->replicas != r->inline_replicas)
			free(r->replicas);
		r->replicas = grown;
		r->alloc_replicas = alloc;
	}
	rep = &r->replicas[r->nr_replicas++];
	rep->storage = repos_intern(r->vs->p, storage);
	rep->generation = GENERATION_UNKNOWN;
	rep->assigned = 0;
	rep->outdated_since_ms = 0;
	rep->outdated_unsaved = 0;
	return rep;
}

int repo_up_to_date(const struct repo *r, const char *storage)
{
	for (size_t i = 0; i < r->nr_replicas; i++)
		if (r->replicas[i].storage == storage || !strcmp(r->replicas[i].storage, storage))
			return r->replicas[i].generation == r->generation && r->generation != GENERATION_UNKNOWN;
	return 0;
}

int repo_assigned(const struct repo *r, const char *storage)
{
	int any = 0;
	for (size_t i = 0; i < r->nr_replicas; i++) {
		if (r->replicas[i].assigned && vs_node(r->vs, r->replicas[i].storage)) {
			any = 1;
			if (!strcmp(r->replicas[i].storage, storage))
				return 1;
		}
	}
	/* no assignment rows among configured storages: every configured storage is assigned */
	return !any && vs_node(r->vs, storage) != NULL;
}

/*
 * `fresh`: a page of the start-up load from a store only this praefect
 * writes. Its ids and paths are new to the model (pages do not overlap in
 * ids, and nothing wrote the store between them), so the lookups for a
 * record to replace are skipped: they were most of the load's CPU.
 */
static struct repo *insert(struct praefect *p, const struct store_repo *sr, int fresh)
{
	struct vstorage *vs = praefect_vs(p, sr->virtual_storage, strlen(sr->virtual_storage));
	const char *replica_path = sr->replica_path ? sr->replica_path : sr->relative_path;
	size_t rlen = strlen(sr->relative_path), clen = strlen(replica_path);
	size_t nr = sr->nr_replicas ? sr->nr_replicas : 1;
	size_t head = sizeof(struct repo) + nr * sizeof(struct replica);
	struct repo *r, *old;

	if (!vs)
		return NULL; /* a virtual storage no longer configured: not routable */
	/* one allocation: the struct, its replicas, then both paths */
	r = xcalloc(1, head + rlen + 1 + clen + 1);
	r->id = sr->id;
	r->vs = vs;
	r->relative_path = (char *)r + head;
	memcpy(r->relative_path, sr->relative_path, rlen + 1);
	r->replica_path = r->relative_path + rlen + 1;
	memcpy(r->replica_path, replica_path, clen + 1);
	r->primary = sr->primary ? repos_intern(p, sr->primary) : NULL;
	r->generation = sr->generation;
	r->replicas = r->inline_replicas;
	r->alloc_replicas = (uint32_t)nr;
	r->path_hash = path_hash(vs->cfg->name, strlen(vs->cfg->name), r->relative_path, rlen);
	for (size_t i = 0; i < sr->nr_replicas; i++) {
		struct replica *rep = repo_replica_add(r, sr->replicas[i].storage);
		rep->generation = sr->replicas[i].generation;
		rep->assigned = sr->replicas[i].assigned;
		rep->outdated_since_ms = sr->replicas[i].outdated_since_ms;
	}
	/*
	 * A record of the same id or path leaves the indexes for the new one; it
	 * is not freed, a call in flight may still point at it.
	 */
	if (!fresh && (old = repo_by_id(p, r->id)))
		index_remove(&p->repos, old);
	if (!fresh && (old = repo_by_path(p, vs->cfg->name, strlen(vs->cfg->name), r->relative_path, rlen)))
		index_remove(&p->repos, old);
	if ((p->repos.nr + 1) * 2 > p->repos.cap)
		index_grow(&p->repos);
	index_place(&p->repos, r);
	p->repos.nr++;
	repo_changed(p);
	return r;
}

struct repo *repo_insert(struct praefect *p, const struct store_repo *sr)
{
	return insert(p, sr, 0);
}

void repo_refresh(struct repo *r, const struct store_repo *sr)
{
	repo_set_primary(r, sr->primary);
	r->generation = sr->generation;
	for (size_t i = 0; i < r->nr_replicas; i++) {
		r->replicas[i].generation = GENERATION_UNKNOWN;
		r->replicas[i].assigned = 0;
	}
	for (size_t i = 0; i < sr->nr_replicas; i++) {
		struct replica *rep = repo_replica_add(r, sr->replicas[i].storage);
		rep->generation = sr->replicas[i].generation;
		rep->assigned = sr->replicas[i].assigned;
	}
}

void repo_adopt(struct praefect *p, const char *vs, const char *relative_path, const struct store_repo *sr)
{
	struct repo *r = repo_by_path(p, vs, strlen(vs), relative_path, strlen(relative_path));
	struct strbuf key = STRBUF_INIT;
	int reserved;

	/* a write, election or creation of this praefect in flight owns the entry until it ends */
	if (r && (r->writes_in_flight || r->electing))
		return;
	strbuf_addf(&key, "%s\x1f%s", vs, relative_path);
	reserved = hashmap_get(&p->reserved_paths, key.buf, key.len) != NULL;
	strbuf_release(&key);
	if (reserved)
		return;
	if (r && (!sr || sr->id != r->id)) {
		repo_remove(p, r);  /* deleted (or deleted and created again) through another praefect */
		r = NULL;
	}
	if (!sr)
		return;
	if (r)
		repo_refresh(r, sr);
	else
		repo_insert(p, sr);
}

void repo_remove(struct praefect *p, struct repo *r)
{
	index_remove(&p->repos, r);
	if (r->replicas != r->inline_replicas)
		free(r->replicas);
	free(r);
	repo_changed(p);
}

void repos_free(struct praefect *p)
{
	const struct hashmap_entry *e;
	for (size_t i = 0; i < p->repos.cap; i++) {
		struct repo *r = p->repos.by_id[i];
		if (r && r->replicas != r->inline_replicas)
			free(r->replicas);
		free(r);
	}
	free(p->repos.by_id);
	free(p->repos.by_path);
	memset(&p->repos, 0, sizeof(p->repos));
	for (size_t i = 0; hashmap_next(&p->interned, &i, &e);)
		free(e->value);
	hashmap_release(&p->interned);
}

/*
 * The start-up load reads the store a page at a time, LOAD_AHEAD pages
 * queued at once: the store thread reads the next pages while the loop
 * copies the one it got, and only those pages of listing are alive (a whole
 * listing of a million repositories was another model's worth of memory,
 * allocated, touched and freed again). A page is a range of ids, so that
 * pages can be queued before the one before arrives; its width spreads the
 * ids up to the last one over pages of about LOAD_PAGE repositories.
 */
#define LOAD_PAGE 4096
#define LOAD_AHEAD 4

struct load_state {
	struct praefect *p;
	int pending, status;
	struct strbuf *err;
	int64_t count, last_id;   /* from the store before the first page */
	int64_t next_id;          /* the next page starts after this id */
	int64_t width;            /* ids per page */
	size_t n;
};

static void on_page(void *arg, int status, const char *msg, const struct store_repo *repos, size_t n);

static void queue_page(struct load_state *ls)
{
	int64_t after = ls->next_id;
	ls->next_id = after < ls->last_id - ls->width ? after + ls->width : ls->last_id;
	ls->pending++;
	store_list_repositories_page(ls->p->store, after, ls->next_id, on_page, ls);
}

static void on_page(void *arg, int status, const char *msg, const struct store_repo *repos, size_t n)
{
	struct load_state *ls = arg;
	ls->pending--;
	if (ls->status < 0)
		return;
	if (status < 0) {
		ls->status = status;
		strbuf_addf(ls->err, "loading repositories: %s", msg ? msg : "store error");
		return;
	}
	if (ls->next_id < ls->last_id)
		queue_page(ls);
	/* grown once per page at most, not per record (more than the count: created meanwhile elsewhere) */
	while (ls->p->repos.cap < 2 * (ls->p->repos.nr + n))
		index_grow(&ls->p->repos);
	/*
	 * Ids are unique across pages (their ranges do not overlap), but in a
	 * store other praefects write, a path may come back under a new id in a
	 * later page: that page's record is the newer and replaces the earlier one.
	 */
	for (size_t i = 0; i < n; i++)
		if (insert(ls->p, &repos[i], !store_is_shared(ls->p->store)))
			ls->n++;
}

/* The count sizes the index before the first page (no rehash of a growing index); the last id ends the pages. */
static void on_count(void *arg, int status, const char *msg, int64_t count)
{
	struct load_state *ls = arg;
	ls->pending--;
	if (ls->status < 0)
		return;
	if (status < 0) {
		ls->status = status;
		strbuf_addf(ls->err, "counting repositories: %s", msg ? msg : "store error");
		return;
	}
	ls->count = count;
	while (count > 0 && ls->p->repos.cap < 2 * (size_t)count)
		index_grow(&ls->p->repos);
}

static void on_last_id(void *arg, int status, const char *msg, int64_t last_id)
{
	struct load_state *ls = arg;
	int64_t per_repo;
	ls->pending--;
	if (ls->status < 0)
		return;
	if (status < 0) {
		ls->status = status;
		strbuf_addf(ls->err, "loading repositories: %s", msg ? msg : "store error");
		return;
	}
	ls->last_id = last_id;
	/* ids spread evenly: LOAD_PAGE repositories a page; clustered ids make some pages larger, none wrong */
	per_repo = ls->count > 0 && last_id / ls->count > 1 ? last_id / ls->count : 1;
	ls->width = per_repo > last_id / LOAD_PAGE ? last_id : per_repo * LOAD_PAGE;
	for (int i = 0; i < LOAD_AHEAD && ls->next_id < ls->last_id; i++)
		queue_page(ls);
}

int repos_load(struct praefect *p, struct strbuf *err)
{
	struct load_state ls = { .p = p, .pending = 2, .err = err };
	/* ops run and call back in submission order: the count, then the last id, then the pages */
	store_count_repositories(p->store, on_count, &ls);
	store_last_repository_id(p->store, on_last_id, &ls);
	while (ls.pending)
		uv_run(p->loop, UV_RUN_ONCE);
	/*
	 * The pages were copied into the records and freed, in the store
	 * thread's malloc arena as much as in ours: hand the free pages back.
	 */
	malloc_trim(0);
	if (ls.status == 0)
		log_msgf(LOG_INFO, "loaded %zu repositories from the tracking store", ls.n);
	return ls.status < 0 ? -1 : 0;
}

/* Rails object pool paths "@pools/aa/bb/<64 hex>.git" whose hash starts with aabb get pool replica paths. */
int repos_is_rails_pool(const char *path)
{
	static regex_t re;
	static int compiled;
	regmatch_t m[4];
	if (!compiled) {
		regcomp(&re, "@pools/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})\\.git$", REG_EXTENDED);
		compiled = 1;
	}
	if (regexec(&re, path, 4, m, 0) != 0)
		return 0;
	return !strncmp(path + m[3].rm_so, path + m[1].rm_so, 2) &&
	       !strncmp(path + m[3].rm_so + 2, path + m[2].rm_so, 2);
}

void replica_path_for(int64_t id, const char *relative_path, struct strbuf *out)
{
	char dec[24];
	unsigned char h[SHA256_DIGEST_LENGTH];
	snprintf(dec, sizeof(dec), "%lld", (long long)id);
	SHA256((const unsigned char *)dec, strlen(dec), h);
	strbuf_addf(out, "@cluster/%s/%02x/%02x/%s", repos_is_rails_pool(relative_path) ? "pools" : "repositories",
		    h[0], h[1], dec);
}

size_t repos_untracked(struct praefect *p, const struct vstorage *vs, const char *storage, const char *const *paths,
		       size_t n, char **out)
{
	struct repo *r;
	struct hashmap batch;
	size_t nr = 0;
	int untracked = 0;                /* the value of a path nothing tracks so far */

	/* mark the tracked ones: a repository of vs with a replica record on the storage */
	hashmap_init(&batch);
	for (size_t i = 0; i < n; i++)
		hashmap_put(&batch, paths[i], strlen(paths[i]), &untracked);
	for (size_t i = 0; (r = repos_next(p, &i));) {
		struct replica *rep;
		if (r->vs != vs || !hashmap_get(&batch, r->replica_path, strlen(r->replica_path)))
			continue;
		rep = repo_replica(r, storage);
		if (rep && rep->generation >= 0)
			hashmap_put(&batch, r->replica_path, strlen(r->replica_path), r);
	}
	for (size_t i = 0; i < n; i++)
		if (hashmap_get(&batch, paths[i], strlen(paths[i])) == &untracked)
			out[nr++] = (char *)paths[i];
	hashmap_release(&batch);
	return nr;
}
