/*
 * PraefectInfoService calls behind `praefect set-replication-factor` and
 * `praefect verify`, and RepositoryReplicas (docs/technical/praefect-cli.md):
 * they change or read the records, the in-memory copy after the store.
 */
#include "intercept/intercept.h"
#include "base/util.h"
#include "base/log.h"
#include "base/strvec.h"
#include "grpc/auth.h"
#include "praefect.pb-c.h"
#include "repository.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CALCULATE_CHECKSUM "/gitaly.RepositoryService/CalculateChecksum"

/* A call waiting for the store or the nodes: `call` is NULL once the client has gone. */
static void shuffle(const char **v, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)rand() % i;
		const char *t = v[i - 1];
		v[i - 1] = v[j];
		v[j] = t;
	}
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* --- SetReplicationFactor --- */

struct set_rf {
	struct intercept_pending pc;
	int64_t repo_id;
	struct strvec storages;     /* the new assignments, sorted */
};

static void on_assignments_set(void *arg, int status, const char *msg)
{
	struct set_rf *s = arg;
	struct repo *r = repo_by_id(s->pc.p, s->repo_id);
	struct grpc_call *call = intercept_pending_take(&s->pc);

	if (status == 0 && r) {
		repo_changed(s->pc.p);
		for (size_t i = 0; i < r->nr_replicas; i++)
			r->replicas[i].assigned = 0;
		for (size_t i = 0; i < s->storages.nr; i++)
			repo_replica_add(r, s->storages.v[i])->assigned = 1;
		log_msgf(LOG_INFO, "replication factor of %s/%s set to %zu", r->vs->cfg->name, r->relative_path,
			 s->storages.nr);
		/* new assignments get their replica, dropped ones lose it (reconciler.c) */
		reconciler_soon(s->pc.p, r->id);
	}
	if (call) {
		if (status == -ENOENT || (status == 0 && !r)) {
			grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "set replication factor: repository not found", NULL);
		} else if (status < 0) {
			grpc_call_finishf(call, GRPC_INTERNAL, "set replication factor: %s", msg ? msg : "store error");
		} else {
			Gitaly__SetReplicationFactorResponse resp = GITALY__SET_REPLICATION_FACTOR_RESPONSE__INIT;
			resp.storages = (char **)s->storages.v;
			resp.n_storages = s->storages.nr;
			intercept_reply(call, &resp.base);
		}
	}
	strvec_clear(&s->storages);
	free(s);
}

/*
 * Upstream's choice: keep the assigned storages that are still configured;
 * to grow, add the primary first when it is not assigned, then random other
 * storages; to shrink, drop random assigned storages, never the primary.
 * With no assignment rows nothing is assigned yet, so the primary and
 * random others make up the whole factor.
 */
static void choose_assignments(struct repo *r, size_t rf, struct strvec *out)
{
	size_t nn = r->vs->nr_nodes, ne = 0, nc = 0;
	const char **existing = xcalloc(nn + 1, sizeof(*existing));
	const char **candidates = xcalloc(nn + 1, sizeof(*candidates));

	for (size_t i = 0; i < nn; i++) {
		const char *s = r->vs->nodes[i].cfg->storage;
		struct replica *rep = repo_replica(r, s);
		if (rep && rep->assigned)
			existing[ne++] = s;
		else
			candidates[nc++] = s;
	}
	if (rf > ne) {
		size_t want = rf - ne, first = 0;
		for (size_t i = 0; r->primary && i < nc; i++)
			if (!strcmp(candidates[i], r->primary)) {
				const char *t = candidates[0];
				candidates[0] = candidates[i];
				candidates[i] = t;
				first = 1;
				break;
			}
		shuffle(candidates + first, nc - first);
		for (size_t i = 0; i < ne; i++)
			strvec_push(out, existing[i]);
		for (size_t i = 0; i < want && i < nc; i++)
			strvec_push(out, candidates[i]);
	} else {
		size_t drop = ne - rf, nr = 0;
		const char **removable = xcalloc(ne + 1, sizeof(*removable));
		/* upstream compares with the primary in SQL: without one, nothing qualifies */
		for (size_t i = 0; r->primary && i < ne; i++)
			if (strcmp(existing[i], r->primary))
				removable[nr++] = existing[i];
		shuffle(removable, nr);
		for (size_t i = 0; i < ne; i++) {
			int dropped = 0;
			for (size_t k = 0; k < drop && k < nr; k++)
				dropped |= removable[k] == existing[i];
			if (!dropped)
				strvec_push(out, existing[i]);
		}
		free(removable);
	}
	qsort(out->v, out->nr, sizeof(*out->v), cmp_str);
	free(existing);
	free(candidates);
}

static void set_replication_factor(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct praefect *p = data;
	Gitaly__SetReplicationFactorRequest *q = gitaly__set_replication_factor_request__unpack(NULL, len, req);
	const char *vsname, *path;
	struct vstorage *vs;
	struct repo *r;
	struct set_rf *s;

	if (!q) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		return;
	}
	vsname = q->virtual_storage ? q->virtual_storage : "";
	path = q->relative_path ? q->relative_path : "";
	vs = praefect_vs(p, vsname, strlen(vsname));
	if (!vs) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "set replication factor: virtual storage \"%s\" not found",
				  vsname);
	} else if (q->replication_factor < 1) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT,
				  "set replication factor: attempted to set replication factor %d but minimum is 1",
				  q->replication_factor);
	} else if ((size_t)q->replication_factor > vs->nr_nodes) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT,
				  "set replication factor: attempted to set replication factor %d but virtual storage "
				  "only contains %zu storages", q->replication_factor, vs->nr_nodes);
	} else if (!(r = repo_by_path(p, vsname, strlen(vsname), path, strlen(path)))) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "set replication factor: repository \"%s\"/\"%s\" not found",
				  vsname, path);
	} else {
		s = xcalloc(1, sizeof(*s));
		strvec_init(&s->storages);
		s->repo_id = r->id;
		choose_assignments(r, (size_t)q->replication_factor, &s->storages);
		intercept_pending_start(&s->pc, p, call);
		store_set_assignments(p->store, r->id, (const char *const *)s->storages.v, s->storages.nr,
				      on_assignments_set, s);
	}
	gitaly__set_replication_factor_request__free_unpacked(q, NULL);
}

/* --- MarkUnverified --- */

static void on_unverified(void *arg, int status, const char *msg, int64_t count)
{
	struct intercept_pending *pc = arg;
	struct grpc_call *call = intercept_pending_take(pc);
	if (call) {
		if (status < 0) {
			grpc_call_finishf(call, GRPC_UNKNOWN, "schedule verification: %s", msg ? msg : "store error");
		} else {
			Gitaly__MarkUnverifiedResponse resp = GITALY__MARK_UNVERIFIED_RESPONSE__INIT;
			resp.replicas_marked = count;
			intercept_reply(call, &resp.base);
		}
	}
	free(pc);
}

static void mark_unverified(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct praefect *p = data;
	Gitaly__MarkUnverifiedRequest *q = gitaly__mark_unverified_request__unpack(NULL, len, req);
	struct intercept_pending *pc;

	if (!q) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		return;
	}
	pc = xcalloc(1, sizeof(*pc));
	switch (q->selector_case) {
	case GITALY__MARK_UNVERIFIED_REQUEST__SELECTOR_REPOSITORY_ID:
		intercept_pending_start(pc, p, call);
		/* an id that is no repository's marks nothing, as upstream's UPDATE */
		store_mark_unverified(p->store, q->repository_id > 0 ? q->repository_id : INT64_MAX, NULL, NULL,
				      on_unverified, pc);
		break;
	case GITALY__MARK_UNVERIFIED_REQUEST__SELECTOR_VIRTUAL_STORAGE:
		intercept_pending_start(pc, p, call);
		store_mark_unverified(p->store, 0, q->virtual_storage ? q->virtual_storage : "", NULL, on_unverified, pc);
		break;
	case GITALY__MARK_UNVERIFIED_REQUEST__SELECTOR_STORAGE:
		intercept_pending_start(pc, p, call);
		store_mark_unverified(p->store, 0,
				      q->storage && q->storage->virtual_storage ? q->storage->virtual_storage : "",
				      q->storage && q->storage->storage ? q->storage->storage : "", on_unverified, pc);
		break;
	default:
		free(pc);
		grpc_call_finish(call, GRPC_UNKNOWN, "unknown selector: <nil>", NULL);
		break;
	}
	gitaly__mark_unverified_request__free_unpacked(q, NULL);
}

/* --- RepositoryReplicas: the checksum of every assigned replica, primary first --- */

struct replicas_call {
	struct intercept_pending pc;
	char *relative_path;
	size_t pending;
	int failed;
	struct strbuf error;
	Gitaly__RepositoryReplicasResponse__RepositoryDetails *details;  /* [0] the primary */
	Gitaly__Repository *repos;
	struct strbuf *sums;
	size_t n;
};

struct replica_part {
	struct replicas_call *rc;
	size_t i;
};

static void replicas_maybe_done(struct replicas_call *rc)
{
	Gitaly__RepositoryReplicasResponse resp = GITALY__REPOSITORY_REPLICAS_RESPONSE__INIT;
	Gitaly__RepositoryReplicasResponse__RepositoryDetails **rep;
	struct grpc_call *call;

	if (--rc->pending)
		return;
	call = intercept_pending_take(&rc->pc);
	if (call && rc->failed) {
		grpc_call_finish(call, GRPC_INTERNAL, rc->error.buf, NULL);
	} else if (call) {
		rep = xcalloc(rc->n, sizeof(*rep));
		for (size_t i = 1; i < rc->n; i++)
			rep[i - 1] = &rc->details[i];
		resp.primary = &rc->details[0];
		resp.replicas = rep;
		resp.n_replicas = rc->n - 1;
		intercept_reply(call, &resp.base);
		free(rep);
	}
	for (size_t i = 0; i < rc->n; i++) {
		free(rc->repos[i].storage_name);
		strbuf_release(&rc->sums[i]);
	}
	free(rc->repos);
	free(rc->sums);
	free(rc->details);
	strbuf_release(&rc->error);
	free(rc->relative_path);
	free(rc);
}

static void part_done(void *arg, enum grpc_code code, const char *message, const uint8_t *msg, size_t len)
{
	struct replica_part *rp = arg;
	struct replicas_call *rc = rp->rc;
	Gitaly__CalculateChecksumResponse *r = msg ? gitaly__calculate_checksum_response__unpack(NULL, len, msg) : NULL;

	if (!r) {
		if (!rc->failed)
			strbuf_addstr(&rc->error, code == GRPC_OK ? "cannot decode checksum response"
								  : message ? message : grpc_code_name(code));
		rc->failed = 1;
	} else {
		strbuf_addstr(&rc->sums[rp->i], r->checksum ? r->checksum : "");
		rc->details[rp->i].checksum = rc->sums[rp->i].buf;
		gitaly__calculate_checksum_response__free_unpacked(r, NULL);
	}
	free(rp);
	replicas_maybe_done(rc);
}

static void checksum_of(struct replicas_call *rc, struct repo *r, size_t i, const char *storage)
{
	Gitaly__CalculateChecksumRequest req = GITALY__CALCULATE_CHECKSUM_REQUEST__INIT;
	Gitaly__Repository target = GITALY__REPOSITORY__INIT;
	struct node *n = vs_node(r->vs, storage);
	struct replica_part *rp;
	uint8_t *buf;
	size_t len;

	gitaly__repository__init(&rc->repos[i]);
	rc->repos[i].storage_name = xstrdup(storage);
	rc->repos[i].relative_path = rc->relative_path;
	gitaly__repository_replicas_response__repository_details__init(&rc->details[i]);
	rc->details[i].repository = &rc->repos[i];
	rc->details[i].checksum = (char *)"";
	strbuf_init(&rc->sums[i], 0);

	target.storage_name = (char *)storage;
	target.relative_path = r->replica_path;
	req.repository = &target;
	len = gitaly__calculate_checksum_request__get_packed_size(&req);
	buf = xmalloc(len ? len : 1);
	gitaly__calculate_checksum_request__pack(&req, buf);
	rp = xcalloc(1, sizeof(*rp));
	rp->rc = rc;
	rp->i = i;
	if (node_unary(n, CALCULATE_CHECKSUM, buf, len, 60000, part_done, rp) == 0) {
		rc->pending++;
	} else {
		if (!rc->failed)
			strbuf_addf(&rc->error, "no connection to \"%s\"/\"%s\"", r->vs->cfg->name, storage);
		rc->failed = 1;
		free(rp);
	}
	free(buf);
}

static void repository_replicas(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct praefect *p = data;
	Gitaly__RepositoryReplicasRequest *q = gitaly__repository_replicas_request__unpack(NULL, len, req);
	const char *vsname, *path;
	struct replicas_call *rc;
	struct repo *r;
	size_t k;

	if (!q) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		return;
	}
	vsname = q->repository && q->repository->storage_name ? q->repository->storage_name : "";
	path = q->repository && q->repository->relative_path ? q->repository->relative_path : "";
	r = repo_by_path(p, vsname, strlen(vsname), path, strlen(path));
	if (!r) {
		grpc_call_finishf(call, GRPC_UNKNOWN, "get repository id: repository \"%s\"/\"%s\" not found", vsname,
				  path);
		goto out;
	}
	if (!r->primary || !vs_node(r->vs, r->primary)) {
		grpc_call_finishf(call, GRPC_UNKNOWN, "get primary: repository \"%s\"/\"%s\" has no primary", vsname,
				  path);
		goto out;
	}
	if (!repo_assigned(r, r->primary)) {
		grpc_call_finishf(call, GRPC_UNKNOWN, "primary \"%s\" is not an assigned host", r->primary);
		goto out;
	}
	rc = xcalloc(1, sizeof(*rc));
	rc->relative_path = xstrdup(path);
	strbuf_init(&rc->error, 0);
	rc->details = xcalloc(r->vs->nr_nodes, sizeof(*rc->details));
	rc->repos = xcalloc(r->vs->nr_nodes, sizeof(*rc->repos));
	rc->sums = xcalloc(r->vs->nr_nodes, sizeof(*rc->sums));
	rc->pending = 1;
	intercept_pending_start(&rc->pc, p, call);
	checksum_of(rc, r, 0, r->primary);
	k = 1;
	for (size_t i = 0; i < r->vs->nr_nodes; i++) {
		const char *s = r->vs->nodes[i].cfg->storage;
		if (strcmp(s, r->primary) && repo_assigned(r, s))
			checksum_of(rc, r, k++, s);
	}
	rc->n = k;
	replicas_maybe_done(rc);
out:
	gitaly__repository_replicas_request__free_unpacked(q, NULL);
}

void info_admin_register(struct praefect *p)
{
	praefect_method(CALCULATE_CHECKSUM);
	praefect_add_unary(p->server, "/gitaly.PraefectInfoService/SetReplicationFactor", set_replication_factor, p);
	praefect_add_unary(p->server, "/gitaly.PraefectInfoService/MarkUnverified", mark_unverified, p);
	praefect_add_unary(p->server, "/gitaly.PraefectInfoService/RepositoryReplicas", repository_replicas, p);
}
