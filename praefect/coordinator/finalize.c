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

static void write_done(struct proxy *px);

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
	write_done(px);
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
	if (status < 0) {
		write_done(px);
		proxy_fail(px, GRPC_INTERNAL, "queueing replication jobs failed");
	} else
		finish_with_primary(px);
	proxy_unref(px);
}

static void on_intent_ended(void *arg, int status, const char *msg)
{
	if (status < 0)
		log_msgf(LOG_WARN, "deleting a write intent: %s", msg ? msg : "store error");
}

/* The write is over without a generation bump: its intent goes (after anything queued before). */
static void end_intent(struct proxy *px)
{
	if (px->intent > 0)
		store_end_write(px->p->store, px->intent, on_intent_ended, NULL);
	px->intent = 0;
}

static void queue_jobs(struct proxy *px)
{
	struct repo *r = repo_by_id(px->p, px->repo_id);
	const char *corr = px->call ? grpc_metadata_value(grpc_call_metadata(px->call), "x-gitlab-correlation-id") : NULL;
	if (!r || !px->outdated.nr) {
		end_intent(px);
		finish_with_primary(px);
		return;
	}
	px->refs++;
	replicator_enqueue_jobs(px->p, r, px->job_source ? px->job_source : px->primary, px->outdated.v,
				px->outdated.nr, px->verify, corr, on_jobs_queued, px);
	end_intent(px); /* after the jobs: a crash in between verifies twice, never not at all */
}

static void on_generation_bumped(void *arg, int status, const char *msg, int64_t gen)
{
	struct proxy *px = arg;
	struct repo *r = repo_by_id(px->p, px->repo_id);
	px->intent = 0; /* deleted with the bump, or kept by its rollback */
	if (status < 0) {
		/* nothing was recorded: keep the intent, so a restart verifies the replicas */
		write_done(px);
		proxy_fail(px, status == -ESTALE ? GRPC_UNKNOWN : praefect_store_code(status), "%s",
			   msg ? msg : "updating generation failed");
		proxy_unref(px);
		return;
	}
	if (r) {
		/* the store bumped exactly the replicas that were at the old generation */
		int64_t old = r->generation;
		repo_changed(px->p);
		for (size_t i = 0; i < px->updated.nr; i++) {
			struct replica *rep = repo_replica_add(r, px->updated.v[i]);
			if (rep->generation == old)
				rep->generation = gen;
		}
		r->generation = gen;
		/* every replica the store now holds at the new generation learns it (recovery.md) */
		for (size_t i = 0; i < r->nr_replicas; i++)
			if (r->replicas[i].generation == gen)
				replica_info_send(px->p, r, r->replicas[i].storage, gen);
	}
	queue_jobs(px);
	proxy_unref(px);
}

static void on_created(void *arg, int status, const char *msg)
{
	struct proxy *px = arg;
	if (status < 0) {
		proxy_fail(px, status == -EEXIST ? GRPC_ALREADY_EXISTS : praefect_store_code(status), "%s",
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
		/* the created replicas learn what they are (docs/technical/recovery.md) */
		replica_info_send(px->p, repo_by_id(px->p, px->repo_id), px->primary, 0);
		for (size_t i = 0; i < px->updated.nr; i++)
			replica_info_send(px->p, repo_by_id(px->p, px->repo_id), px->updated.v[i], 0);
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
 * Creations (docs/technical/transactions.md, step 5): the primary and every
 * secondary that committed the last subtransaction like it are created at
 * generation 0. Returns 0 when the primary was not dirtied at all (nothing
 * to record), 1 otherwise, with px->updated and px->outdated filled.
 */
static int sort_out_creators(struct proxy *px, struct dest *pd)
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

/*
 * A creation that is not voted but went to secondaries too (CreateObjectPool,
 * router/route.c): each secondary that succeeded holds the new repository as
 * the primary does, the others get a replication job (object-pools.md).
 */
static void sort_out_unvoted_creators(struct proxy *px)
{
	for (size_t i = 0; i < px->secondaries.nr; i++) {
		struct dest *d = dest_for(px, px->secondaries.v[i]);
		strvec_push(d && d->code == GRPC_OK ? &px->updated : &px->outdated, px->secondaries.v[i]);
	}
}

/* The call did not run to its end on that node: it died, we cancelled it, or time ran out. */
static int cut_off(enum grpc_code code)
{
	return code == GRPC_UNAVAILABLE || code == GRPC_CANCELLED || code == GRPC_DEADLINE_EXCEEDED;
}

enum write_outcome { WRITE_NOTHING, WRITE_BUMP, WRITE_VERIFY };

static int in_list(const struct strvec *v, const char *s)
{
	for (size_t i = 0; i < v->nr; i++)
		if (!strcmp(v->v[i], s))
			return 1;
	return 0;
}

/* Replace px->updated and px->outdated (the routing's non-voters stay outdated unless `keep_routed` is 0). */
static void set_lists(struct proxy *px, struct strvec *updated, struct strvec *outdated, int keep_routed)
{
	if (keep_routed)
		for (size_t i = 0; i < px->outdated.nr; i++)
			strvec_push(outdated, px->outdated.v[i]);
	strvec_clear(&px->updated);
	strvec_clear(&px->outdated);
	px->updated = *updated;
	px->outdated = *outdated;
}

/*
 * Who holds the change of a mutator (docs/technical/transactions.md, "The
 * finalizer"): the generation follows what each node committed.
 *
 *  - Voted on nothing and succeeded: the primary alone applied it.
 *  - The primary committed the last subtransaction and ran to its end:
 *    it and the secondaries that committed it too (and did not fail
 *    otherwise than the primary or by being cut off) move on.
 *  - Else (the primary died, was cut off, or did not commit): the live
 *    voters that committed the last subtransaction move on if they are a
 *    quorum of the assigned replicas, the old primary included among those
 *    outdated. A voter we cancelled counts only when that last vote was
 *    one cast after its refs moved (tx_outcome.last_applied): cancelled
 *    after a PREPARED vote, it may have stopped before applying anything.
 *  - Else nobody moves; if anyone committed anything, a node may have
 *    applied part of the change: every voter is verified against one of
 *    them (forced jobs), since they may now differ at equal generations.
 *
 * Fills px->updated (every storage to bump), px->outdated (job targets) and
 * px->job_source.
 */
static enum write_outcome sort_out_writers(struct proxy *px, struct dest *pd)
{
	struct strvec updated = STRVEC_INIT, outdated = STRVEC_INIT;
	size_t assigned = 1 + px->secondaries.nr + px->outdated.nr, quorum = assigned / 2 + 1;
	size_t any_commit = 0, best = 0;
	ssize_t source = -1;
	struct tx_outcome o;

	strvec_init(&updated);
	strvec_init(&outdated);
	tx_cleanup(px->p->txm, px->txid, &o);
	if ((o.subtransactions == 0 && pd->code != GRPC_OK) ||
	    (o.subtransactions == 1 && !o.primary_voted_first)) {
		tx_outcome_release(&o);
		return WRITE_NOTHING;
	}
	if (o.subtransactions == 0 || !o.state_known) {
		strvec_push(&updated, px->primary);
		for (size_t i = 0; i < px->secondaries.nr; i++)
			strvec_push(&outdated, px->secondaries.v[i]);
		set_lists(px, &updated, &outdated, 1);
		px->job_source = px->primary;
		tx_outcome_release(&o);
		return WRITE_BUMP;
	}
	if (tx_outcome_result(&o, px->primary) == VOTE_COMMITTED && !cut_off(pd->code)) {
		strvec_push(&updated, px->primary);
		for (size_t i = 0; i < px->secondaries.nr; i++) {
			const char *s = px->secondaries.v[i];
			struct dest *d = dest_for(px, s);
			int same_status = d && d->code == pd->code && !strcmp(d->msg.buf, pd->msg.buf);
			if (tx_outcome_result(&o, s) == VOTE_COMMITTED && d && (same_status || cut_off(d->code)))
				strvec_push(&updated, s);
			else
				strvec_push(&outdated, s);
		}
		set_lists(px, &updated, &outdated, 1);
		px->job_source = px->primary;
		tx_outcome_release(&o);
		return WRITE_BUMP;
	}

	/*
	 * The primary did not see the write through: count who did, among the
	 * nodes still there. A dead node that committed is left behind rather
	 * than counted (it is repaired when it returns): the write was not
	 * acknowledged, and recording the dead primary ahead of everyone (two
	 * concurrent writes each committed by it and a different secondary
	 * would) makes the repository wait for it.
	 */
	for (size_t i = 0; i < o.nr; i++) {
		struct dest *d = dest_for(px, o.voters[i]);
		int alive = d && d->code != GRPC_UNAVAILABLE && d->code != GRPC_DEADLINE_EXCEEDED;
		int ran = alive && (d->code == GRPC_OK || (cut_off(d->code) && o.last_applied) ||
				    (d->code == pd->code && !strcmp(d->msg.buf, pd->msg.buf)));
		any_commit += o.committed[i];
		if (o.results[i] == VOTE_COMMITTED && ran) {
			strvec_push(&updated, o.voters[i]);
			if (source < 0)
				source = (ssize_t)i;
		}
	}
	if (updated.nr >= quorum) {
		for (size_t i = 0; i < o.nr; i++)
			if (!in_list(&updated, o.voters[i]))
				strvec_push(&outdated, o.voters[i]);
		px->job_source = NULL;
		set_lists(px, &updated, &outdated, 1);
		/* point into px's own lists, which live as long as px */
		for (size_t i = 0; i < px->updated.nr; i++)
			if (!strcmp(px->updated.v[i], o.voters[source]))
				px->job_source = px->updated.v[i];
		log_msgf(LOG_WARN, "write to %s cut off on the primary %s (%s): %zu voters committed it, "
			 "they hold generation +1", px->relative_path, px->primary, grpc_code_name(pd->code),
			 px->updated.nr);
		tx_outcome_release(&o);
		return WRITE_BUMP;
	}
	strvec_clear(&updated);
	if (!any_commit) {
		strvec_clear(&outdated);
		tx_outcome_release(&o);
		return WRITE_NOTHING;
	}
	/* the reference: the live voter that committed the most (the primary on a tie) */
	source = -1;
	{
		int source_alive = 0;
		for (size_t i = 0; i < o.nr; i++) {
			struct dest *d = dest_for(px, o.voters[i]);
			int alive = d && d->code != GRPC_UNAVAILABLE && d->code != GRPC_DEADLINE_EXCEEDED;
			int better;
			if (!o.voted[i])
				continue;
			better = source < 0 || (alive && !source_alive) ||
				 (alive == source_alive && (o.committed[i] > best ||
							    (o.committed[i] == best && !strcmp(o.voters[i], px->primary))));
			if (better) {
				source = (ssize_t)i;
				source_alive = alive;
				best = o.committed[i];
			}
		}
	}
	for (size_t i = 0; i < o.nr; i++)
		if (o.voted[i] && (ssize_t)i != source)
			strvec_push(&outdated, o.voters[i]);
	{
		/*
		 * A replica routing left out (its node was unhealthy) at the
		 * generation the voters had: the change may now be on some
		 * voters and not on it, at one generation. Verified too, or
		 * once the voters are made equal it differs from them unseen.
		 */
		struct repo *r = repo_by_id(px->p, px->repo_id);
		for (size_t i = 0; r && i < px->outdated.nr; i++)
			if (repo_up_to_date(r, px->outdated.v[i]) && !in_list(&outdated, px->outdated.v[i]))
				strvec_push(&outdated, px->outdated.v[i]);
	}
	set_lists(px, &updated, &outdated, 0);
	px->job_source = NULL;
	if (source >= 0) {
		if (!strcmp(o.voters[source], px->primary))
			px->job_source = px->primary;
		for (size_t i = 0; i < px->secondaries.nr; i++)
			if (!strcmp(px->secondaries.v[i], o.voters[source]))
				px->job_source = px->secondaries.v[i];
	}
	px->verify = 1;
	log_msgf(LOG_WARN, "write to %s ended without a quorum (primary %s: %s): nobody moves on, "
		 "%zu replicas are verified against %s", px->relative_path, px->primary, grpc_code_name(pd->code),
		 px->outdated.nr, px->job_source ? px->job_source : "-");
	tx_outcome_release(&o);
	return px->job_source && px->outdated.nr ? WRITE_VERIFY : WRITE_NOTHING;
}

static void on_intent(void *arg, int status, const char *msg, int64_t id)
{
	struct proxy *px = arg;
	px->intent_state = 2;
	if (status < 0) {
		proxy_fail(px, status == -ENOENT ? GRPC_NOT_FOUND : GRPC_UNAVAILABLE, "cannot record the write: %s",
			   msg ? msg : "store error");
		px->routing = 0;
		px->routed = 1;
		proxy_finalize(px);
		proxy_unref(px);
		return;
	}
	px->intent = id;
	proxy_forward(px); /* forwards, or finalizes if the client went away meanwhile */
	proxy_unref(px);
}

/* --- the write barrier: a replica that keeps falling behind rejoins --- */

/*
 * Under a steady stream of writes a replica that was away never catches up:
 * each replication ends at the generation it started from, and by then the
 * writes routed without it have moved the repository on. So the replicator
 * raises a barrier: new writes to the repository wait (before routing
 * matters: they are routed again when released), the writes in flight drain,
 * the next catch-up ends at the repository's generation and the barrier
 * drops, so the waiting writes include the replica. Bounded in time: when
 * the barrier expires the writes go on without it.
 */
int coordinator_raise_barrier(struct praefect *p, struct repo *r, const char *storage, uint64_t ms)
{
	uint64_t now = uv_now(p->loop);
	/* after a barrier that did not help, let writes run undisturbed for a while */
	if (r->barrier_until_ms || (r->last_barrier_ms && now - r->last_barrier_ms < 10 * ms))
		return 0;
	r->barrier_until_ms = now + ms;
	r->rejoining = storage;
	r->barrier_for_quorum = 0;
	schedule_kick_in(p, TASK_WRITE_BARRIER, ms);
	log_msgf(LOG_INFO, "replica %s of %s rejoins: writes wait for at most %llu ms", storage, r->relative_path,
		 (unsigned long long)ms);
	return 1;
}

/*
 * The same barrier when a write lacks its quorum (router/route.c): a node
 * that was away is healthy again and its replica is being caught up, the
 * only thing between the write and a quorum. Refusing would fail the push
 * for a second or two; waiting acknowledges it once the replica is back.
 * Unlike a rejoin a wait is worth trying after a recent one; only a wait
 * that just ran out without help is not tried again at once.
 */
int coordinator_wait_for_quorum(struct praefect *p, struct repo *r, const char *storage, uint64_t ms)
{
	uint64_t now = uv_now(p->loop);
	if (r->barrier_until_ms)
		return 1; /* already waiting for a replica: the write waits with the others */
	/* only a quorum wait that ran out counts: a rejoin that did not make it is no reason to refuse */
	if (r->last_quorum_wait_ms && now - r->last_quorum_wait_ms < ms)
		return 0;
	r->barrier_until_ms = now + ms;
	r->rejoining = storage;
	r->barrier_for_quorum = 1;
	schedule_kick_in(p, TASK_WRITE_BARRIER, ms);
	log_msgf(LOG_INFO, "writes to %s wait for at most %llu ms for replica %s to catch up (no write quorum without it)",
		 r->relative_path, (unsigned long long)ms, storage);
	replicator_kick(p, r->vs, storage);
	reconciler_soon(p, r->id); /* in case no job of its own is queued */
	return 1;
}

void coordinator_lower_barrier(struct praefect *p, struct repo *r)
{
	if (!r->barrier_until_ms)
		return;
	r->barrier_until_ms = 0;
	r->rejoining = NULL;
	schedule_kick_in(p, TASK_WRITE_BARRIER, 0);
}

/* Route `px` again from scratch: the first routing predates the barrier's end. */
static void release(struct proxy *px)
{
	px->next_held = NULL;
	if (px->txid) {
		struct tx_outcome o;
		tx_cleanup(px->p->txm, px->txid, &o);
		tx_outcome_release(&o);
		px->txid = 0;
	}
	for (size_t i = 0; i < px->nr_dests; i++) {
		strbuf_release(&px->dests[i].msg);
		grpc_metadata_release(&px->dests[i].trailers);
		grpc_metadata_release(&px->dests[i].headers);
	}
	free(px->dests);
	px->dests = NULL;
	px->nr_dests = px->open_dests = 0;
	free(px->relative_path);
	free(px->replica_path);
	free(px->primary);
	px->relative_path = px->replica_path = px->primary = NULL;
	strvec_clear(&px->secondaries);
	strvec_clear(&px->outdated);
	strvec_clear(&px->updated);
	px->routing = 0;
	px->intent_state = 0;
	if (px->call && !px->finished)
		proxy_route(px);
	else
		px->finished = 1;
	proxy_unref(px);
}

void coordinator_release_held(struct praefect *p)
{
	uint64_t now = uv_now(p->loop), next = 0;
	struct proxy *go = NULL, **tail = &go, **pp = &p->held_writes;

	while (*pp) {
		struct proxy *px = *pp;
		struct repo *r = repo_by_id(p, px->repo_id);
		if (r && r->barrier_until_ms && r->barrier_until_ms <= now) {
			log_msgf(LOG_INFO, "replica %s of %s did not rejoin in time: writes go on without it",
				 r->rejoining ? r->rejoining : "-", r->relative_path);
			r->barrier_until_ms = 0;
			r->rejoining = NULL;
			if (r->barrier_for_quorum)
				r->last_quorum_wait_ms = now;
			else
				r->last_barrier_ms = now;
		}
		if (!r || !r->barrier_until_ms) {
			*pp = px->next_held;
			*tail = px;
			tail = &px->next_held;
			px->next_held = NULL;
			continue;
		}
		if (!next || r->barrier_until_ms < next)
			next = r->barrier_until_ms;
		pp = &px->next_held;
	}
	if (next)
		schedule_kick_in(p, TASK_WRITE_BARRIER, next - now);
	while (go) {
		struct proxy *px = go;
		go = px->next_held;
		release(px);
	}
}

void coordinator_stop(struct praefect *p)
{
	for (struct proxy *px = p->held_writes; px; px = px->next_held) {
		struct repo *r = repo_by_id(p, px->repo_id);
		if (r) {
			r->barrier_until_ms = 0;
			r->rejoining = NULL;
		}
	}
	coordinator_release_held(p);
}

static void write_done(struct proxy *px)
{
	struct repo *r;
	if (!px->counted)
		return;
	px->counted = 0;
	r = repo_by_id(px->p, px->repo_id);
	if (!r || --r->writes_in_flight > 0 || !r->rejoining)
		return;
	/* the last write routed without it is over: its catch-up can now end at the generation */
	replicator_kick(px->p, r->vs, r->rejoining);
}

void proxy_route_again(struct proxy *px)
{
	end_intent(px); /* nothing was applied anywhere: no verification needed */
	write_done(px);
	px->refs++; /* release() drops a held write's reference */
	release(px);
}

int proxy_record_intent(struct proxy *px)
{
	struct repo *r;
	if (px->intent_state || px->kind != ROUTE_MUTATOR || !px->call || px->finished)
		return 0;
	r = repo_by_id(px->p, px->repo_id);
	px->routing = 1; /* client messages meanwhile are kept for the replay */
	grpc_call_pause_recv(px->call);
	px->refs++;
	if (r && r->barrier_until_ms) {
		struct proxy **pp = &px->p->held_writes;
		while (*pp)
			pp = &(*pp)->next_held;
		*pp = px;
		return 1;
	}
	if (r) {
		r->writes_in_flight++;
		px->counted = 1;
	}
	px->intent_state = 1;
	store_begin_write(px->p->store, px->p->name, px->repo_id, on_intent, px);
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
		end_intent(px);
		write_done(px);
		return;
	}
	if (px->kind == ROUTE_CREATE) {
		dirtied = px->txid ? sort_out_creators(px, pd) : pd->code == GRPC_OK;
		if (!dirtied) {
			finish_with_primary(px);
			return;
		}
		if (!px->txid)
			sort_out_unvoted_creators(px);
		px->refs++;
		store_create_repository(px->p->store, px->repo_id, px->vs->cfg->name, px->relative_path,
					px->replica_path, px->primary, px->updated.v, px->updated.nr,
					px->outdated.v, px->outdated.nr, 1, px->store_assignments, on_created, px);
		return;
	}
	if (px->kind != ROUTE_MUTATOR) {
		finish_with_primary(px);
		return;
	}
	if (px->txid) {
		enum write_outcome w = sort_out_writers(px, pd);
		if (w == WRITE_VERIFY) {
			queue_jobs(px);
			return;
		}
		dirtied = w == WRITE_BUMP;
	} else {
		dirtied = primary_maybe_modified(pd->code);
		if (dirtied) {
			strvec_push(&px->updated, px->primary);
			px->job_source = px->primary;
		}
	}
	if (!dirtied) {
		end_intent(px);
		finish_with_primary(px);
		return;
	}
	px->refs++;
	store_complete_write(px->p->store, px->intent, px->repo_id, px->updated.v, px->updated.nr,
			     on_generation_bumped, px);
}
