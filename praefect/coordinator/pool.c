/*
 * GetObjectPool through praefect (docs/technical/object-pools.md): the node
 * answers with the pool's replica path, "@cluster/pools/ab/cd/<id>"; the
 * client knows the pool by its own relative path, which the records give
 * for that repository id. A pool at any other path (an unmanaged one) keeps
 * its path. The storage is always the virtual storage.
 */
#include "coordinator/proxy.h"
#include "base/util.h"
#include "objectpool.pb-c.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The repository id of a praefect pool path, or -1. */
static int64_t pool_id(const char *rel)
{
	const char *d;
	char *end;
	long long id;

	if (strncmp(rel, "@cluster/pools/", 15))
		return -1;
	d = rel + 15;
	for (int i = 0; i < 2; i++, d += 3)
		if (!isxdigit((unsigned char)d[0]) || !isxdigit((unsigned char)d[1]) || d[2] != '/' ||
		    isupper((unsigned char)d[0]) || isupper((unsigned char)d[1]))
			return -1;
	if (!isdigit((unsigned char)*d))
		return -1;
	errno = 0;
	id = strtoll(d, &end, 10);
	if (*end || errno)
		return -1;
	return id;
}

int proxy_rewrite_pool_response(struct proxy *px, const uint8_t *msg, size_t len, struct strbuf *out,
				struct strbuf *err)
{
	Gitaly__GetObjectPoolResponse *resp = gitaly__get_object_pool_response__unpack(NULL, len, msg);
	Gitaly__GetObjectPoolResponse rewritten = GITALY__GET_OBJECT_POOL_RESPONSE__INIT;
	Gitaly__ObjectPool pool = GITALY__OBJECT_POOL__INIT;
	Gitaly__Repository repo = GITALY__REPOSITORY__INIT;
	size_t n;

	if (!resp) {
		strbuf_addstr(err, "get object pool: cannot decode the node's response");
		return -1;
	}
	if (resp->object_pool && resp->object_pool->repository) {
		const char *rel = resp->object_pool->repository->relative_path ?
				  resp->object_pool->repository->relative_path : "";
		int64_t id = pool_id(rel);
		if (id >= 0) {
			struct repo *r = repo_by_id(px->p, id);
			if (!r) {
				strbuf_addstr(err, "get Praefect repository metadata: repository not found");
				gitaly__get_object_pool_response__free_unpacked(resp, NULL);
				return -1;
			}
			rel = r->relative_path;
		}
		repo.storage_name = (char *)px->vs->cfg->name;
		repo.relative_path = (char *)rel;
		pool.repository = &repo;
		rewritten.object_pool = &pool;
	}
	n = gitaly__get_object_pool_response__get_packed_size(&rewritten);
	strbuf_grow(out, n + 1);
	gitaly__get_object_pool_response__pack(&rewritten, (uint8_t *)out->buf);
	strbuf_setlen(out, n);
	gitaly__get_object_pool_response__free_unpacked(resp, NULL);
	return 0;
}
