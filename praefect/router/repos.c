/* The in-memory copy of the repository records that routing reads. */
#include "praefect.h"
#include "base/util.h"
#include "base/log.h"

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

static void path_key(struct strbuf *key, const char *vs, size_t vslen, const char *path, size_t plen)
{
	strbuf_add(key, vs, vslen);
	strbuf_addch(key, 0x1f);
	strbuf_add(key, path, plen);
}

struct repo *repo_by_path(struct praefect *p, const char *vs, size_t vslen, const char *path, size_t plen)
{
	struct strbuf key = STRBUF_INIT;
	struct repo *r;
	path_key(&key, vs, vslen, path, plen);
	r = hashmap_get(&p->repos_by_path, key.buf, key.len);
	strbuf_release(&key);
	return r;
}

struct repo *repo_by_id(struct praefect *p, int64_t id)
{
	char key[24];
	snprintf(key, sizeof(key), "%lld", (long long)id);
	return hashmap_get(&p->repos_by_id, key, strlen(key));
}

struct replica *repo_replica(struct repo *r, const char *storage)
{
	for (size_t i = 0; i < r->nr_replicas; i++)
		if (!strcmp(r->replicas[i].storage, storage))
			return &r->replicas[i];
	return NULL;
}

struct replica *repo_replica_add(struct repo *r, const char *storage)
{
	struct replica *rep = repo_replica(r, storage);
	if (rep)
		return rep;
	ALLOC_GROW(r->replicas, r->nr_replicas + 1, r->alloc_replicas);
	rep = &r->replicas[r->nr_replicas++];
	rep->storage = xstrdup(storage);
	rep->generation = GENERATION_UNKNOWN;
	rep->assigned = 0;
	rep->outdated_since_ms = rep->outdated_since_stored = 0;
	return rep;
}

int repo_up_to_date(const struct repo *r, const char *storage)
{
	for (size_t i = 0; i < r->nr_replicas; i++)
		if (!strcmp(r->replicas[i].storage, storage))
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

struct repo *repo_insert(struct praefect *p, const struct store_repo *sr)
{
	struct vstorage *vs = praefect_vs(p, sr->virtual_storage, strlen(sr->virtual_storage));
	struct repo *r;
	struct strbuf key = STRBUF_INIT;
	char id[24];

	if (!vs)
		return NULL; /* a virtual storage no longer configured: not routable */
	r = xcalloc(1, sizeof(*r));
	r->id = sr->id;
	r->vs = vs;
	r->relative_path = xstrdup(sr->relative_path);
	r->replica_path = xstrdup(sr->replica_path ? sr->replica_path : sr->relative_path);
	r->primary = sr->primary ? xstrdup(sr->primary) : NULL;
	r->generation = sr->generation;
	for (size_t i = 0; i < sr->nr_replicas; i++) {
		struct replica *rep = repo_replica_add(r, sr->replicas[i].storage);
		rep->generation = sr->replicas[i].generation;
		rep->assigned = sr->replicas[i].assigned;
		rep->outdated_since_ms = rep->outdated_since_stored = sr->replicas[i].outdated_since_ms;
	}
	path_key(&key, vs->cfg->name, strlen(vs->cfg->name), r->relative_path, strlen(r->relative_path));
	hashmap_put(&p->repos_by_path, key.buf, key.len, r);
	strbuf_release(&key);
	snprintf(id, sizeof(id), "%lld", (long long)r->id);
	hashmap_put(&p->repos_by_id, id, strlen(id), r);
	return r;
}

void repo_refresh(struct repo *r, const struct store_repo *sr)
{
	free(r->primary);
	r->primary = sr->primary ? xstrdup(sr->primary) : NULL;
	r->generation = sr->generation;
	for (size_t i = 0; i < r->nr_replicas; i++) {
		r->replicas[i].generation = GENERATION_UNKNOWN;
		r->replicas[i].assigned = 0;
	}
	for (size_t i = 0; i < sr->nr_replicas; i++) {
		struct replica *rep = repo_replica(r, sr->replicas[i].storage);
		if (!rep)
			rep = repo_replica_add(r, sr->replicas[i].storage);
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
	struct strbuf key = STRBUF_INIT;
	char id[24];
	path_key(&key, r->vs->cfg->name, strlen(r->vs->cfg->name), r->relative_path, strlen(r->relative_path));
	hashmap_remove(&p->repos_by_path, key.buf, key.len);
	strbuf_release(&key);
	snprintf(id, sizeof(id), "%lld", (long long)r->id);
	hashmap_remove(&p->repos_by_id, id, strlen(id));
	for (size_t i = 0; i < r->nr_replicas; i++)
		free(r->replicas[i].storage);
	free(r->replicas);
	free(r->relative_path);
	free(r->replica_path);
	free(r->primary);
	free(r);
}

struct load_state {
	struct praefect *p;
	int done, status;
	struct strbuf *err;
	size_t n;
};

static void on_loaded(void *arg, int status, const char *msg, const struct store_repo *repos, size_t n)
{
	struct load_state *ls = arg;
	ls->done = 1;
	ls->status = status;
	if (status < 0) {
		strbuf_addf(ls->err, "loading repositories: %s", msg ? msg : "store error");
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (repo_insert(ls->p, &repos[i]))
			ls->n++;
}

int repos_load(struct praefect *p, struct strbuf *err)
{
	struct load_state ls = { p, 0, 0, err, 0 };
	store_list_repositories(p->store, NULL, on_loaded, &ls);
	while (!ls.done)
		uv_run(p->loop, UV_RUN_ONCE);
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
	const struct hashmap_entry *e;
	struct hashmap batch;
	size_t nr = 0;
	int untracked = 0;                /* the value of a path nothing tracks so far */

	/* mark the tracked ones: a repository of vs with a replica record on the storage */
	hashmap_init(&batch);
	for (size_t i = 0; i < n; i++)
		hashmap_put(&batch, paths[i], strlen(paths[i]), &untracked);
	for (size_t i = 0; hashmap_next(&p->repos_by_id, &i, &e);) {
		struct repo *r = e->value;
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
