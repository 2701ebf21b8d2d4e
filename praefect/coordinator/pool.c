/*
 * GetObjectPool through praefect (docs/technical/object-pools.md): the node
 * answers with the pool's replica path, "@cluster/pools/ab/cd/<id>"; the
 * client knows the pool by its own relative path, which the records give
 * for that repository id. A pool at any other path (an unmanaged one) keeps
 * its path. The storage is always the virtual storage.
 */
#include "coordinator/proxy.h"
#include "base/util.h"
#include "base/log.h"
#include "grpc/auth.h"
#include "objectpool.pb-c.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FOLLOW_TIMEOUT_MS 30000

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

/* --- a pool follows its members (object-pools.md, "A member moves") --- */

struct follow {
	struct praefect *p;
	struct vstorage *vs;
	char *storage;            /* where the member's replica now is */
	int64_t pool_id;          /* from the node's answer, -1: none */
	struct strvec assigned;   /* the pool's new assignments, when it gains one */
};

static void follow_free(struct follow *f)
{
	strvec_clear(&f->assigned);
	free(f->storage);
	free(f);
}

static void on_follow_queued(void *arg, int status)
{
	struct follow *f = arg;
	if (status < 0)
		log_msgf(LOG_WARN, "queueing the replication of pool %lld to %s failed", (long long)f->pool_id,
			 f->storage);
	follow_free(f);
}

static void replicate_pool_there(struct follow *f, struct repo *pool)
{
	const char *target = f->storage;
	log_msgf(LOG_INFO, "pool %s follows a member to %s", pool->relative_path, f->storage);
	replicator_enqueue_jobs(f->p, pool, pool->primary, &target, 1, 0, NULL, on_follow_queued, f);
}

static void on_pool_assigned(void *arg, int status, const char *msg)
{
	struct follow *f = arg;
	struct repo *pool = repo_by_id(f->p, f->pool_id);
	if (status < 0 || !pool) {
		if (status < 0)
			log_msgf(LOG_WARN, "assigning pool %lld to %s: %s", (long long)f->pool_id, f->storage,
				 msg ? msg : "store error");
		follow_free(f);
		return;
	}
	for (size_t i = 0; i < pool->nr_replicas; i++)
		pool->replicas[i].assigned = 0;
	for (size_t i = 0; i < f->assigned.nr; i++)
		repo_replica_add(pool, f->assigned.v[i])->assigned = 1;
	replicate_pool_there(f, pool);
}

static void pool_found(struct follow *f)
{
	struct repo *pool = f->pool_id >= 0 ? repo_by_id(f->p, f->pool_id) : NULL;
	if (!pool || pool->vs != f->vs || !pool->primary) {
		follow_free(f);
		return;
	}
	if (repo_assigned(pool, f->storage)) {
		if (repo_up_to_date(pool, f->storage))
			follow_free(f);
		else
			replicate_pool_there(f, pool);
		return;
	}
	/* assigned elsewhere only (so it has assignment rows): it gains this storage, so the reconciler keeps it */
	for (size_t i = 0; i < pool->vs->nr_nodes; i++) {
		const char *s = pool->vs->nodes[i].cfg->storage;
		if (repo_assigned(pool, s) || !strcmp(s, f->storage))
			strvec_push(&f->assigned, s);
	}
	store_set_assignments(f->p->store, pool->id, (const char *const *)f->assigned.v, f->assigned.nr,
			      on_pool_assigned, f);
}

static void on_follow_message(struct grpc_client_call *cc, const uint8_t *msg, size_t len)
{
	struct follow *f = grpc_client_call_user(cc);
	Gitaly__GetObjectPoolResponse *resp = gitaly__get_object_pool_response__unpack(NULL, len, msg);
	if (!resp)
		return;
	if (resp->object_pool && resp->object_pool->repository && resp->object_pool->repository->relative_path)
		f->pool_id = pool_id(resp->object_pool->repository->relative_path);
	gitaly__get_object_pool_response__free_unpacked(resp, NULL);
}

static void on_follow_close(struct grpc_client_call *cc, enum grpc_code code, const char *message,
			    const struct grpc_metadata *trailers)
{
	struct follow *f = grpc_client_call_user(cc);
	(void)trailers;
	if (code != GRPC_OK) {
		log_msgf(LOG_WARN, "GetObjectPool on %s after a replication: %s: %s", f->storage, grpc_code_name(code),
			 message ? message : "");
		follow_free(f);
		return;
	}
	pool_found(f);
}

static const struct grpc_client_ops follow_ops = { .on_message = on_follow_message, .on_close = on_follow_close };

void coordinator_pool_follows(struct praefect *p, struct repo *r, const char *storage)
{
	Gitaly__GetObjectPoolRequest req = GITALY__GET_OBJECT_POOL_REQUEST__INIT;
	Gitaly__Repository repo = GITALY__REPOSITORY__INIT;
	struct grpc_metadata md = GRPC_METADATA_INIT;
	struct grpc_client_call *cc;
	struct node *n = vs_node(r->vs, storage);
	struct follow *f;
	uint8_t *buf;
	size_t len;

	if (!n || pool_id(r->replica_path) >= 0)
		return; /* a pool itself belongs to none */
	f = xcalloc(1, sizeof(*f));
	f->p = p;
	f->vs = r->vs;
	f->storage = xstrdup(storage);
	f->pool_id = -1;
	strvec_init(&f->assigned);
	repo.storage_name = (char *)storage;
	repo.relative_path = r->replica_path;
	req.repository = &repo;
	len = gitaly__get_object_pool_request__get_packed_size(&req);
	buf = xmalloc(len ? len : 1);
	gitaly__get_object_pool_request__pack(&req, buf);
	auth_v2_add(&md, n->cfg->token);
	if (grpc_channel_call(n->ch, p->calls.get_object_pool->name, &md, FOLLOW_TIMEOUT_MS, 0, &follow_ops, f,
			      &cc) < 0) {
		follow_free(f);
	} else {
		grpc_client_call_send(cc, buf, len);
		grpc_client_call_close_send(cc);
	}
	free(buf);
	grpc_metadata_release(&md);
}
