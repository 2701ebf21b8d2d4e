/*
 * The finalizer: after the last destination of a call closed, decide which
 * replicas now hold the change, record new generations (or the new
 * repository) in the store and the in-memory model, queue replication jobs
 * for the replicas left behind, and only then answer the client.
 */
#include "coordinator/proxy.h"
#include "base/util.h"
#include "base/log.h"
#include "transactions/transactions.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* --- the finalizer (docs/technical/praefect-routing.md, "After the call") --- */

static void finish_with_primary(struct proxy *px)
{
	struct dest *first_err = NULL, *primary = NULL;
	for (size_t i = 0; i < px->nr_dests; i++) {
		if (px->dests[i].primary)
			primary = &px->dests[i];
		if (!first_err && px->dests[i].code != GRPC_OK)
			first_err = &px->dests[i];
	}
	if (px->kind == ROUTE_MAINTENANCE && first_err)
		primary = first_err;
	if (primary)
		proxy_finish(px, primary->code, primary->msg.buf, &primary->trailers);
	else
		proxy_finish(px, GRPC_INTERNAL, "no destination", NULL);
}

static struct dest *primary_dest(struct proxy *px)
{
	for (size_t i = 0; i < px->nr_dests; i++)
		if (px->dests[i].primary)
			return &px->dests[i];
	return NULL;
}

/*
 * Should the primary's generation move on? Success: yes. A clean refusal
 * (bad argument, not found, precondition...) changed nothing. A call cut off
 * (the primary became unreachable, the client cancelled, the deadline passed)
 * was not acknowledged: whatever the primary may have applied is not promised
 * to anyone, and outdating every other replica for it would leave the
 * repository without a valid primary exactly when failover needs one. Such a
 * write is overwritten if the old primary is later repaired from a new one.
 * Any other error (the node ran the call and failed inside) may have left
 * changes, so replicas are brought in line.
 */
static int primary_maybe_modified(enum grpc_code code)
{
	switch (code) {
	case GRPC_INVALID_ARGUMENT: case GRPC_NOT_FOUND: case GRPC_ALREADY_EXISTS:
	case GRPC_FAILED_PRECONDITION: case GRPC_PERMISSION_DENIED: case GRPC_UNAUTHENTICATED:
	case GRPC_UNIMPLEMENTED: case GRPC_OUT_OF_RANGE:
	case GRPC_UNAVAILABLE: case GRPC_CANCELLED: case GRPC_DEADLINE_EXCEEDED:
		return 0;
	default:
		return 1;
	}
}

static void on_jobs_queued(void *arg, int status)
{
	struct proxy *px = arg;
	if (status < 0)
		proxy_fail(px, GRPC_INTERNAL, "queueing replication jobs failed");
	else
		finish_with_primary(px);
	proxy_unref(px);
}

static void queue_jobs(struct proxy *px)
{
	struct repo *r = repo_by_id(px->p, px->repo_id);
	const char *corr = px->call ? grpc_metadata_value(grpc_call_metadata(px->call), "x-gitlab-correlation-id") : NULL;
	if (!r || !px->outdated.nr) {
		finish_with_primary(px);
		return;
	}
	px->refs++;
	replicator_enqueue_updates(px->p, r, px->primary, px->outdated.v, px->outdated.nr, corr, on_jobs_queued, px);
}

static void on_generation_bumped(void *arg, int status, const char *msg, int64_t gen)
{
	struct proxy *px = arg;
	struct repo *r = repo_by_id(px->p, px->repo_id);
	if (status < 0) {
		proxy_fail(px, status == -ESTALE ? GRPC_UNKNOWN : GRPC_INTERNAL, "%s",
			   msg ? msg : "updating generation failed");
		proxy_unref(px);
		return;
	}
	if (r) {
		/* the store bumped exactly the replicas that were at the old generation */
		int64_t old = r->generation;
		struct replica *rep = repo_replica_add(r, px->primary);
		if (rep->generation == old)
			rep->generation = gen;
		for (size_t i = 0; i < px->updated.nr; i++) {
			rep = repo_replica_add(r, px->updated.v[i]);
			if (rep->generation == old)
				rep->generation = gen;
		}
		r->generation = gen;
	}
	queue_jobs(px);
	proxy_unref(px);
}

static void on_created(void *arg, int status, const char *msg)
{
	struct proxy *px = arg;
	if (status < 0) {
		proxy_fail(px, status == -EEXIST ? GRPC_ALREADY_EXISTS : GRPC_INTERNAL, "%s",
			   msg ? msg : "recording repository failed");
		proxy_unref(px);
		return;
	}
	{
		struct store_replica *reps = xcalloc(1 + px->updated.nr + px->outdated.nr, sizeof(*reps));
		struct store_repo sr = { 0 };
		size_t n = 0;
		reps[n].storage = px->primary;
		reps[n].generation = 0;
		reps[n++].assigned = px->store_assignments;
		for (size_t i = 0; i < px->updated.nr; i++) {
			reps[n].storage = px->updated.v[i];
			reps[n].generation = 0;
			reps[n++].assigned = px->store_assignments;
		}
		for (size_t i = 0; i < px->outdated.nr; i++) {
			reps[n].storage = px->outdated.v[i];
			reps[n].generation = GENERATION_UNKNOWN;
			reps[n++].assigned = px->store_assignments;
		}
		sr.id = px->repo_id;
		sr.virtual_storage = px->vs->cfg->name;
		sr.relative_path = px->relative_path;
		sr.replica_path = px->replica_path;
		sr.primary = px->primary;
		sr.generation = 0;
		sr.replicas = reps;
		sr.nr_replicas = n;
		repo_insert(px->p, &sr);
		free(reps);
	}
	queue_jobs(px);
	proxy_unref(px);
}

static struct dest *dest_for(struct proxy *px, const char *storage)
{
	for (size_t i = 0; i < px->nr_dests; i++)
		if (!strcmp(px->dests[i].node->cfg->storage, storage))
			return &px->dests[i];
	return NULL;
}

/*
 * Who applied the change like the primary (docs/technical/transactions.md,
 * step 5)? Returns 0 when the
 * primary was not dirtied at all (nothing to record), 1 otherwise, with
 * px->updated and px->outdated filled.
 */
static int sort_out_voters(struct proxy *px, struct dest *pd)
{
	struct tx_outcome o;
	int all_outdated;

	tx_cleanup(px->p->txm, px->txid, &o);
	if ((o.subtransactions == 0 && pd->code != GRPC_OK) ||
	    (o.subtransactions == 1 && !o.primary_voted_first)) {
		tx_outcome_release(&o);
		return 0;
	}
	all_outdated = o.subtransactions == 0 || !o.state_known ||
		       tx_outcome_result(&o, px->primary) != VOTE_COMMITTED;
	for (size_t i = 0; i < px->secondaries.nr; i++) {
		const char *s = px->secondaries.v[i];
		struct dest *d = dest_for(px, s);
		int same_status = d && d->code == pd->code && !strcmp(d->msg.buf, pd->msg.buf);
		if (!all_outdated && same_status && tx_outcome_result(&o, s) == VOTE_COMMITTED)
			strvec_push(&px->updated, s);
		else
			strvec_push(&px->outdated, s);
	}
	tx_outcome_release(&o);
	return 1;
}

void proxy_finalize(struct proxy *px)
{
	struct dest *pd = primary_dest(px);
	int dirtied;

	if (px->finished || !pd) {
		proxy_finish(px, GRPC_INTERNAL, "call ended", NULL);
		if (px->txid) {
			struct tx_outcome o;
			tx_cleanup(px->p->txm, px->txid, &o);
			tx_outcome_release(&o);
		}
		return;
	}
	if (px->txid)
		dirtied = sort_out_voters(px, pd);
	else if (px->kind == ROUTE_CREATE)
		dirtied = pd->code == GRPC_OK;
	else
		dirtied = px->kind == ROUTE_MUTATOR && primary_maybe_modified(pd->code);
	if (!dirtied || (px->kind != ROUTE_CREATE && px->kind != ROUTE_MUTATOR)) {
		finish_with_primary(px);
		return;
	}
	if (px->kind == ROUTE_CREATE) {
		px->refs++;
		store_create_repository(px->p->store, px->repo_id, px->vs->cfg->name, px->relative_path,
					px->replica_path, px->primary, px->updated.v, px->updated.nr,
					px->outdated.v, px->outdated.nr, 1, px->store_assignments, on_created, px);
		return;
	}
	{
		const char **storages = xcalloc(1 + px->updated.nr, sizeof(*storages));
		storages[0] = px->primary;
		for (size_t i = 0; i < px->updated.nr; i++)
			storages[1 + i] = px->updated.v[i];
		px->refs++;
		store_increment_generation(px->p->store, px->repo_id, storages, 1 + px->updated.nr,
					   on_generation_bumped, px);
		free(storages);
	}
}

