/*
 * PraefectAdminService/ReplicationStatus, behind `praefect replication-status`
 * (docs/technical/replication-status.md): the per-storage numbers the metrics
 * task sampled, and the repositories with an outdated replica, from the
 * in-memory records (exact: every store write lands there too).
 */
#include "intercept/intercept.h"
#include "metrics/series.h"
#include "base/util.h"
#include "praefect_admin.pb-c.h"

#include <stdlib.h>
#include <string.h>

/* repositories listed in one answer; the count of the rest is given (keeps the message small) */
#define MAX_LISTED 5000

typedef Gitaly__ReplicationStatusResponse__Storage rs_storage;
typedef Gitaly__ReplicationStatusResponse__Repository rs_repo;
typedef Gitaly__ReplicationStatusResponse__Repository__Outdated rs_outdated;

static int behind(const struct repo *r, const struct replica *rep)
{
	return rep->generation < r->generation &&
			     (rep->generation != GENERATION_UNKNOWN || repo_assigned(r, rep->storage));
}

static int cmp_repo(const void *a, const void *b)
{
	const struct repo *x = *(struct repo *const *)a, *y = *(struct repo *const *)b;
	return strcmp(x->relative_path, y->relative_path);
}

static void fill_storage(rs_storage *st, struct praefect *p, struct node *n)
{
	const struct node_repl_status *s = &n->repl;
	struct repo *oldest = s->oldest_outdated_repo ? repo_by_id(p, s->oldest_outdated_repo) : NULL;

	gitaly__replication_status_response__storage__init(st);
	st->storage = n->cfg->storage;
	st->ready = s->ready;
	st->in_progress = s->in_progress;
	st->failed = s->failed;
	st->oldest_job_created_ms = s->oldest_job_ms;
	st->throughput = s->throughput;
	st->outdated = s->outdated;
	st->oldest_outdated_relative_path = oldest ? oldest->relative_path : (char *)"";
	st->oldest_outdated_since_ms = s->oldest_outdated_ms;
	st->healthy = n->healthy;
}

static void replication_status(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct praefect *p = data;
	Gitaly__ReplicationStatusRequest *q = gitaly__replication_status_request__unpack(NULL, len, req);
	Gitaly__ReplicationStatusResponse resp = GITALY__REPLICATION_STATUS_RESPONSE__INIT;
	struct vstorage *vs;
	struct repo **list = NULL;
	size_t n = 0, alloc = 0, nr_out = 0, next_out = 0;
	rs_storage *st;
	rs_storage **stp;
	rs_repo *rr;
	rs_repo **rrp;
	rs_outdated *out;
	rs_outdated **outp;

	if (!q) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		return;
	}
	vs = q->virtual_storage ? praefect_vs(p, q->virtual_storage, strlen(q->virtual_storage)) : NULL;
	if (!vs) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "unknown virtual storage: \"%s\"",
				  q->virtual_storage ? q->virtual_storage : "");
		gitaly__replication_status_request__free_unpacked(q, NULL);
		return;
	}
	gitaly__replication_status_request__free_unpacked(q, NULL);

	for (size_t i = 0; i < p->repos.cap; i++) {
		struct repo *r = p->repos.by_id[i];
		if (!r)
			continue;
		size_t k0 = nr_out;
		if (r->vs != vs)
			continue;
		for (size_t k = 0; k < r->nr_replicas; k++)
			nr_out += behind(r, &r->replicas[k]);
		if (nr_out == k0)
			continue;
		ALLOC_GROW(list, n + 1, alloc);
		list[n++] = r;
	}
	if (n)
		qsort(list, n, sizeof(*list), cmp_repo);
	if (n > MAX_LISTED) {
		resp.repositories_omitted = (int64_t)(n - MAX_LISTED);
		n = MAX_LISTED;
		nr_out = 0;
		for (size_t i = 0; i < n; i++)
			for (size_t k = 0; k < list[i]->nr_replicas; k++)
				nr_out += behind(list[i], &list[i]->replicas[k]);
	}

	st = xcalloc(vs->nr_nodes + 1, sizeof(*st));
	stp = xcalloc(vs->nr_nodes + 1, sizeof(*stp));
	for (size_t i = 0; i < vs->nr_nodes; i++) {
		fill_storage(&st[i], p, &vs->nodes[i]);
		stp[i] = &st[i];
	}
	rr = xcalloc(n + 1, sizeof(*rr));
	rrp = xcalloc(n + 1, sizeof(*rrp));
	out = xcalloc(nr_out + 1, sizeof(*out));
	outp = xcalloc(nr_out + 1, sizeof(*outp));
	for (size_t i = 0; i < n; i++) {
		struct repo *r = list[i];
		gitaly__replication_status_response__repository__init(&rr[i]);
		rr[i].relative_path = r->relative_path;
		rr[i].primary = r->primary ? r->primary : (char *)"";
		rr[i].generation = r->generation;
		rr[i].outdated = &outp[next_out];
		for (size_t k = 0; k < r->nr_replicas; k++) {
			struct replica *rep = &r->replicas[k];
			rs_outdated *o = &out[next_out];
			if (!behind(r, rep))
				continue;
			gitaly__replication_status_response__repository__outdated__init(o);
			o->storage = rep->storage;
			o->behind_by = r->generation - rep->generation;
			/* 0 until the metrics task first saw it behind (within a second) */
			o->outdated_since_ms = rep->outdated_since_ms;
			o->assigned = repo_assigned(r, rep->storage);
			outp[next_out++] = o;
			rr[i].n_outdated++;
		}
		rrp[i] = &rr[i];
	}
	resp.storages = stp;
	resp.n_storages = vs->nr_nodes;
	resp.repositories = rrp;
	resp.n_repositories = n;
	resp.now_ms = rstatus_wall_ms();
	intercept_reply(call, &resp.base);
	free(list);
	free(st);
	free(stp);
	free(rr);
	free(rrp);
	free(out);
	free(outp);
}

void rstatus_register(struct praefect *p)
{
	praefect_add_unary(p->server, "/gitaly.PraefectAdminService/ReplicationStatus", replication_status, p);
}
