/* SQLite tracking store: the replication queue with per-(virtual storage, target, repository) locks, and node health. */
#include "sqlite.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "base/banned.h"

/*
 * Upstream runs each queue operation as one statement; here each runs inside
 * the op's savepoint, which gives the same all-or-nothing effect, and the
 * single writer connection plays the part of FOR UPDATE SKIP LOCKED.
 */

#define JOB_COLUMNS \
	"id, state, created_at, attempt, change, repository_id, virtual_storage, relative_path," \
	" replica_path, source_node_storage, target_node_storage, correlation_id," \
	" COALESCE(json_extract(params, '$.force'), 0)"

static const char SQL_JOB_BY_ID[] = "SELECT " JOB_COLUMNS " FROM replication_queue WHERE id = ?1";
static const char SQL_JOBS_ALL[] = "SELECT " JOB_COLUMNS " FROM replication_queue ORDER BY id";

static void read_job(struct store_op *op, sqlite3_stmt *st)
{
	struct repl_job *job = store_op_add_job(op);
	const char *state = (const char *)sqlite3_column_text(st, 1);

	job->id = sqlite3_column_int64(st, 0);
	if (store_job_state_parse(state, &job->state) < 0)
		job->state = JOB_FAILED;   /* unreachable: a CHECK constraint guards the column */
	job->created_at_ms = sqlite3_column_int64(st, 2);
	job->attempt = sqlite3_column_int(st, 3);
	job->change = sq_text(op, st, 4);
	job->repository_id = sqlite3_column_int64(st, 5);
	job->virtual_storage = sq_text(op, st, 6);
	job->relative_path = sq_text(op, st, 7);
	job->replica_path = sq_text(op, st, 8);
	job->source_storage = sq_text(op, st, 9);
	job->target_storage = sq_text(op, st, 10);
	job->correlation_id = sq_text(op, st, 11);
	job->force = sqlite3_column_int(st, 12) != 0;
}

/* Locks no job is bound to any more are free for the next dequeue. */
static const char SQL_RELEASE_LOCK[] =
	"UPDATE replication_queue_lock SET acquired = 0 WHERE id = ?1"
	" AND NOT EXISTS (SELECT 1 FROM replication_queue_job_lock WHERE lock_id = ?1)";

/* --- enqueue --- */

static const char SQL_UPSERT_LOCK[] =
	"INSERT INTO replication_queue_lock (id) VALUES (?1) ON CONFLICT DO NOTHING";
/*
 * Any ready job for the same target does (the source is chosen when the job
 * runs, so the survivor replicates from the newest generation anyway), except
 * that an unforced job cannot stand in for a forced one (?5).
 */
static const char SQL_READY_DUPLICATE[] =
	"SELECT id FROM replication_queue WHERE state = 'ready' AND virtual_storage = ?1"
	" AND relative_path = ?2 AND target_node_storage = ?3 AND change = ?4"
	" AND (NOT ?5 OR COALESCE(json_extract(params, '$.force'), 0)) LIMIT 1";
static const char SQL_INSERT_JOB[] =
	"INSERT INTO replication_queue (state, created_at, attempt, lock_id, change, repository_id,"
	" virtual_storage, relative_path, replica_path, source_node_storage, target_node_storage, correlation_id,"
	" params)"
	" VALUES ('ready', ?1, 3, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, CASE WHEN ?11 THEN '{\"force\":true}' END)";

static int valid_change(const char *change)
{
	static const char *const changes[] = { "update", "create", "delete", "delete_replica" };
	for (size_t i = 0; i < ARRAY_SIZE(changes); i++)
		if (!strcmp(change, changes[i]))
			return 1;
	return 0;
}

int sq_insert_job(struct sqlite_backend *q, struct store_op *op, const struct repl_job *job)
{
	struct strbuf lock = STRBUF_INIT;
	const char *lock_id;
	int64_t found;
	int r;

	if (!valid_change(job->change))
		return store_op_fail(op, -EINVAL, "unknown replication change type \"%s\"", job->change);
	if (!*job->virtual_storage || !*job->relative_path || !*job->target_storage)
		return store_op_fail(op, -EINVAL, "replication job needs a virtual storage, path and target");
	strbuf_addf(&lock, "%s|%s|%s", job->virtual_storage, job->target_storage, job->relative_path);
	lock_id = store_op_keep(op, lock.buf);
	strbuf_release(&lock);

	if ((r = sq_exec(q, op, SQL_UPSERT_LOCK, "t", lock_id)) < 0 ||
	    (r = sq_int(q, op, &found, 0, SQL_READY_DUPLICATE, "ttttd", job->virtual_storage,
			job->relative_path, job->target_storage, job->change, job->force != 0)) < 0)
		return r;
	if (r)
		goto exists;
	r = sq_exec(q, op, SQL_INSERT_JOB, "lttl" "tttttt" "d", sq_now_ms(q), lock_id, job->change,
		    job->repository_id, job->virtual_storage, job->relative_path, job->replica_path,
		    job->source_storage, job->target_storage, job->correlation_id, job->force != 0);
	/* the only unique index: a delete_replica job for this repository is already live */
	if (r == -EEXIST)
		goto exists;
	if (r < 0)
		return r;
	op->value = sqlite3_last_insert_rowid(q->db);
	return 0;

exists:
	/* upstream's text; the state is that of the new event, which has none yet */
	return store_op_fail(op, -EEXIST, "replication event \"\" -> \"%s\" -> \"%s\" -> \"%s\" already exists",
			     job->virtual_storage, job->target_storage, job->relative_path);
}

int sq_enqueue(struct store_backend *b, struct store_op *op)
{
	return sq_insert_job(sq_backend(b), op, &op->in.job);
}

/* --- dequeue --- */

/*
 * Candidates: jobs for this (virtual storage, target) whose lock is free and
 * bound to no running job; per (lock, change) only the oldest, and only once
 * it is due (not_before), so a replica's back-off holds for the newer jobs
 * queued behind it too; oldest first.
 */
static const char SQL_DEQUEUE_CANDIDATES[] =
	"SELECT id FROM ("
	" SELECT q.id, q.created_at, q.not_before, row_number() OVER ("
	"  PARTITION BY q.lock_id, q.change ORDER BY q.created_at, q.id) AS rn"
	" FROM replication_queue AS q JOIN replication_queue_lock AS l ON l.id = q.lock_id"
	" WHERE q.virtual_storage = ?1 AND q.target_node_storage = ?2"
	" AND q.state IN ('ready', 'failed') AND NOT l.acquired"
	" AND NOT EXISTS (SELECT 1 FROM replication_queue_job_lock AS jl WHERE jl.lock_id = q.lock_id)"
	") WHERE rn = 1 AND COALESCE(not_before, 0) <= ?4 ORDER BY created_at, id LIMIT ?3";
static const char SQL_TAKE_JOB[] =
	"UPDATE replication_queue SET"
	" attempt = CASE WHEN change = 'delete_replica' THEN attempt ELSE attempt - 1 END,"
	" state = 'in_progress', updated_at = ?2"
	" WHERE id = ?1 RETURNING lock_id";
static const char SQL_BIND_JOB_LOCK[] =
	"INSERT INTO replication_queue_job_lock (job_id, lock_id, triggered_at) VALUES (?1, ?2, ?3)";
static const char SQL_ACQUIRE_LOCK[] =
	"UPDATE replication_queue_lock SET acquired = 1 WHERE id = ?1";

static int cmp_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

int sq_dequeue(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	int64_t now = sq_now_ms(q), *ids = NULL, limit;
	size_t nr = 0, alloc = 0;
	sqlite3_stmt *st;
	int r;

	if (!op->in.max)
		return 0;
	limit = op->in.max > INT64_MAX ? INT64_MAX : (int64_t)op->in.max;
	if ((r = sq_query(q, op, &st, SQL_DEQUEUE_CANDIDATES, "ttll", op->in.vs, op->in.storage, limit, now)) < 0)
		return r;
	while ((r = sq_next(q, op, st)) > 0) {
		ALLOC_GROW(ids, nr + 1, alloc);
		ids[nr++] = sqlite3_column_int64(st, 0);
	}
	for (size_t i = 0; r == 0 && i < nr; i++) {
		const char *lock_id = NULL;

		if ((r = sq_query(q, op, &st, SQL_TAKE_JOB, "ll", ids[i], now)) < 0 ||
		    (r = sq_next(q, op, st)) < 0)
			break;
		if (r)
			lock_id = sq_text(op, st, 0);
		sqlite3_reset(st);
		if (!lock_id) {
			r = store_op_fail(op, -EIO, "replication job %lld vanished during dequeue", (long long)ids[i]);
			break;
		}
		if ((r = sq_exec(q, op, SQL_BIND_JOB_LOCK, "ltl", ids[i], lock_id, now)) < 0 ||
		    (r = sq_exec(q, op, SQL_ACQUIRE_LOCK, "t", lock_id)) < 0)
			break;
		r = 0;
	}
	if (nr > 1)
		qsort(ids, nr, sizeof(*ids), cmp_id);
	for (size_t i = 0; r == 0 && i < nr; i++) {
		if ((r = sq_query(q, op, &st, SQL_JOB_BY_ID, "l", ids[i])) < 0 || (r = sq_next(q, op, st)) <= 0)
			break;
		read_job(op, st);
		sqlite3_reset(st);
		r = 0;
	}
	free(ids);
	return r < 0 ? r : 0;
}

/* --- acknowledge --- */

static const char SQL_RUNNING_JOB[] =
	"SELECT lock_id, updated_at, change, source_node_storage, COALESCE(json_extract(params, '$.force'), 0)"
	" FROM replication_queue WHERE id = ?1 AND state = 'in_progress'";
static const char SQL_UNBIND_JOB_LOCK[] =
	"DELETE FROM replication_queue_job_lock WHERE job_id = ?1 AND lock_id = ?2";
static const char SQL_DELETE_JOB[] =
	"DELETE FROM replication_queue WHERE id = ?1";
/* ready jobs the completed one made redundant: same repository and target, change and source, queued before it ran */
static const char SQL_DELETE_SUPERSEDED[] =
	"DELETE FROM replication_queue WHERE state = 'ready' AND created_at < ?1"
	" AND lock_id = ?2 AND change = ?3 AND source_node_storage = ?4"
	" AND (?5 OR NOT COALESCE(json_extract(params, '$.force'), 0))";
static const char SQL_FAIL_JOB[] =
	"UPDATE replication_queue SET state = 'failed', updated_at = ?2 WHERE id = ?1";

int sq_acknowledge(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	enum job_state state = op->in.state;
	int64_t now = sq_now_ms(q);
	int r = 0;

	if (state != JOB_COMPLETED && state != JOB_FAILED && state != JOB_DEAD) {
		const char *name = store_job_state_name(state);
		return store_op_fail(op, -EINVAL, "event state is not supported: \"%s\"", name ? name : "");
	}
	for (size_t i = 0; i < op->in.nr_ids; i++) {
		int64_t id = op->in.ids[i], updated_at;
		const char *lock_id, *change, *source;
		sqlite3_stmt *st;
		int forced;

		if ((r = sq_query(q, op, &st, SQL_RUNNING_JOB, "l", id)) < 0 || (r = sq_next(q, op, st)) < 0)
			return r;
		if (!r)
			continue; /* not in progress (any more): upstream ignores it too */
		lock_id = sq_text(op, st, 0);
		updated_at = sqlite3_column_int64(st, 1);
		change = sq_text(op, st, 2);
		source = sq_text(op, st, 3);
		forced = sqlite3_column_int(st, 4) != 0;
		sqlite3_reset(st);

		/* the job lock goes first: it references the job */
		if ((r = sq_exec(q, op, SQL_UNBIND_JOB_LOCK, "lt", id, lock_id)) < 0)
			return r;
		if (state == JOB_FAILED)
			r = sq_exec(q, op, SQL_FAIL_JOB, "ll", id, now);
		else
			r = sq_exec(q, op, SQL_DELETE_JOB, "l", id);
		if (r >= 0 && state == JOB_COMPLETED)
			r = sq_exec(q, op, SQL_DELETE_SUPERSEDED, "ltttd", updated_at, lock_id, change,
				    source ? source : "", forced);
		if (r < 0 || (r = sq_exec(q, op, SQL_RELEASE_LOCK, "t", lock_id)) < 0)
			return r;
	}
	return 0;
}

/* --- postpone: a later run, after a failure (back-off) or when the job could not run --- */

static const char SQL_POSTPONE_LOCK[] =
	"SELECT lock_id FROM replication_queue WHERE id = ?1 AND state = 'in_progress'";
static const char SQL_POSTPONE_JOB[] =
	"UPDATE replication_queue SET"
	" state = CASE WHEN ?3 THEN 'ready' ELSE 'failed' END,"
	" attempt = CASE WHEN ?3 AND change <> 'delete_replica' THEN attempt + 1 ELSE attempt END,"
	" updated_at = ?2, not_before = ?2 + ?4"
	" WHERE id = ?1";

int sq_postpone(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	int64_t now = sq_now_ms(q);
	int r;

	for (size_t i = 0; i < op->in.nr_ids; i++) {
		int64_t id = op->in.ids[i];
		const char *lock_id;
		sqlite3_stmt *st;

		if ((r = sq_query(q, op, &st, SQL_POSTPONE_LOCK, "l", id)) < 0 || (r = sq_next(q, op, st)) < 0)
			return r;
		if (!r)
			continue; /* not in progress (any more), as acknowledge */
		lock_id = sq_text(op, st, 0);
		sqlite3_reset(st);
		if ((r = sq_exec(q, op, SQL_UNBIND_JOB_LOCK, "lt", id, lock_id)) < 0 ||
		    (r = sq_exec(q, op, SQL_POSTPONE_JOB, "lldl", id, now, op->in.refund != 0,
				 op->in.delay_ms > 0 ? op->in.delay_ms : 0)) < 0 ||
		    (r = sq_exec(q, op, SQL_RELEASE_LOCK, "t", lock_id)) < 0)
			return r;
	}
	return 0;
}

static const char SQL_HEARTBEAT[] =
	"UPDATE replication_queue_job_lock SET triggered_at = ?2 WHERE job_id = ?1";

/* -ENOENT when none of the jobs holds a lock any more: the caller can stop beating. */
int sq_heartbeat(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	int64_t now = sq_now_ms(q);
	int r, touched = 0;

	for (size_t i = 0; i < op->in.nr_ids; i++) {
		if ((r = sq_exec(q, op, SQL_HEARTBEAT, "ll", op->in.ids[i], now)) < 0)
			return r;
		touched += r;
	}
	if (op->in.nr_ids && !touched)
		return store_op_fail(op, -ENOENT, "no replication job lock left to refresh");
	return 0;
}

static const char SQL_STALE_JOB_LOCKS[] =
	"SELECT job_id, lock_id FROM replication_queue_job_lock WHERE triggered_at < ?1";
static const char SQL_STALE_FAIL[] =
	"UPDATE replication_queue SET state = 'failed' WHERE id = ?1 AND attempt >= 1";
/* upstream deletes at attempt = 0; <= 0 also catches jobs a caller kept failing past zero */
static const char SQL_STALE_DELETE[] =
	"DELETE FROM replication_queue WHERE id = ?1 AND attempt <= 0";

/* Count: the stale jobs released (failed again or deleted). */
int sq_acknowledge_stale(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	int64_t threshold = sq_now_ms(q) - (op->in.stale_ms > 0 ? op->in.stale_ms : 0);
	int64_t *ids = NULL;
	const char **locks = NULL;
	size_t nr = 0, alloc_ids = 0, alloc_locks = 0;
	sqlite3_stmt *st;
	int r;

	if ((r = sq_query(q, op, &st, SQL_STALE_JOB_LOCKS, "l", threshold)) < 0)
		return r;
	while ((r = sq_next(q, op, st)) > 0) {
		ALLOC_GROW(ids, nr + 1, alloc_ids);
		ALLOC_GROW(locks, nr + 1, alloc_locks);
		ids[nr] = sqlite3_column_int64(st, 0);
		locks[nr++] = sq_text(op, st, 1);
	}
	for (size_t i = 0; r == 0 && i < nr; i++) {
		if ((r = sq_exec(q, op, SQL_UNBIND_JOB_LOCK, "lt", ids[i], locks[i])) < 0 ||
		    (r = sq_exec(q, op, SQL_STALE_FAIL, "l", ids[i])) < 0 ||
		    (r = sq_exec(q, op, SQL_STALE_DELETE, "l", ids[i])) < 0 ||
		    (r = sq_exec(q, op, SQL_RELEASE_LOCK, "t", locks[i])) < 0)
			break;
		r = 0;
	}
	free(ids);
	free(locks);
	op->value = (int64_t)nr;
	return r < 0 ? r : 0;
}

static const char SQL_COUNT_JOBS[] =
	"SELECT COUNT(*) FROM replication_queue WHERE state IN ('ready', 'in_progress', 'failed')";

/* `delete` jobs stay: they retry the removal of a replica that failed (praefect's RemoveRepository) */
static const char SQL_PURGE_JOB_LOCKS[] =
	"DELETE FROM replication_queue_job_lock WHERE job_id IN (SELECT id FROM replication_queue"
	" WHERE virtual_storage = ?1 AND relative_path = ?2 AND state != 'in_progress' AND change != 'delete')";
static const char SQL_PURGE_JOBS[] =
	"DELETE FROM replication_queue"
	" WHERE virtual_storage = ?1 AND relative_path = ?2 AND state != 'in_progress' AND change != 'delete'";
static const char SQL_COUNT_IN_PROGRESS[] =
	"SELECT COUNT(*) FROM replication_queue"
	" WHERE virtual_storage = ?1 AND relative_path = ?2 AND state = 'in_progress'";

int sq_purge_jobs(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	int r;

	if ((r = sq_exec(q, op, SQL_PURGE_JOB_LOCKS, "tt", op->in.vs, op->in.path)) < 0 ||
	    (r = sq_exec(q, op, SQL_PURGE_JOBS, "tt", op->in.vs, op->in.path)) < 0 ||
	    (r = sq_int(q, op, &op->value, 0, SQL_COUNT_IN_PROGRESS, "tt", op->in.vs, op->in.path)) < 0)
		return r;
	return 0;
}

int sq_count_jobs(struct store_backend *b, struct store_op *op)
{
	int r = sq_int(sq_backend(b), op, &op->value, 0, SQL_COUNT_JOBS, "");
	return r < 0 ? r : 0;
}

int sq_list_jobs(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	sqlite3_stmt *st;
	int r;

	if ((r = sq_query(q, op, &st, SQL_JOBS_ALL, "")) < 0)
		return r;
	while ((r = sq_next(q, op, st)) > 0)
		read_job(op, st);
	return r;
}

/* --- node health --- */

static const char SQL_NODE_STATUS[] =
	"INSERT INTO node_status (praefect_name, shard_name, node_name, last_contact_attempt_at, last_seen_active_at)"
	" VALUES (?1, ?2, ?3, ?4, CASE WHEN ?5 THEN ?4 END)"
	" ON CONFLICT (praefect_name, shard_name, node_name) DO UPDATE SET"
	"  last_contact_attempt_at = excluded.last_contact_attempt_at,"
	"  last_seen_active_at = COALESCE(excluded.last_seen_active_at, node_status.last_seen_active_at)";

int sq_record_node_status(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	int r = sq_exec(q, op, SQL_NODE_STATUS, "tttld", op->in.praefect, op->in.vs, op->in.storage,
			sq_now_ms(q), op->in.healthy != 0);
	return r < 0 ? r : 0;
}

/* One praefect per SQLite store: no other praefect has a view to report. */
int sq_node_votes(struct store_backend *b, struct store_op *op)
{
	(void)b;
	(void)op;
	return 0;
}
