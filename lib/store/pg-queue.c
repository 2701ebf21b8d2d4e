/*
 * PostgreSQL tracking store: the replication queue on upstream's tables (the
 * job as JSONB in `job`, the correlation id in `meta`), and node health.
 * Semantics as sqlite-queue.c; docs/technical/store.md.
 */
#include "pg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "base/banned.h"

#define J(f) "(job->>'" f "')"
#define FORCED "COALESCE((job->'params'->>'force')::boolean, false)"

#define JOB_COLUMNS \
	"id, state::text, " PG_MS("created_at") ", attempt, " J("change") ", COALESCE(" J("repository_id") "::bigint, 0)," \
	" " J("virtual_storage") ", " J("relative_path") ", COALESCE(" J("replica_path") ", '')," \
	" COALESCE(" J("source_node_storage") ", ''), " J("target_node_storage") "," \
	" COALESCE(meta->>'correlation_id', ''), " FORCED

static const char SQL_JOB_BY_ID[] = "SELECT " JOB_COLUMNS " FROM replication_queue WHERE id = $1";
static const char SQL_JOBS_ALL[] = "SELECT " JOB_COLUMNS " FROM replication_queue ORDER BY id";

static void read_job(struct store_op *op, PGresult *res, int row)
{
	struct repl_job *job = store_op_add_job(op);

	job->id = pg_col_int(res, row, 0, 0);
	if (store_job_state_parse(PQgetvalue(res, row, 1), &job->state) < 0)
		job->state = JOB_FAILED;   /* unreachable: the column is an enum of these */
	job->created_at_ms = pg_col_int(res, row, 2, 0);
	job->attempt = (int)pg_col_int(res, row, 3, 0);
	job->change = pg_col_text(op, res, row, 4);
	job->repository_id = pg_col_int(res, row, 5, 0);
	job->virtual_storage = pg_col_text(op, res, row, 6);
	job->relative_path = pg_col_text(op, res, row, 7);
	job->replica_path = pg_col_text(op, res, row, 8);
	job->source_storage = pg_col_text(op, res, row, 9);
	job->target_storage = pg_col_text(op, res, row, 10);
	job->correlation_id = pg_col_text(op, res, row, 11);
	job->force = pg_col_int(res, row, 12, 0) != 0;
	if (!job->change)
		job->change = "";
	if (!job->virtual_storage)
		job->virtual_storage = "";
	if (!job->relative_path)
		job->relative_path = "";
	if (!job->target_storage)
		job->target_storage = "";
}

static const char SQL_RELEASE_LOCK[] =
	"UPDATE replication_queue_lock SET acquired = false WHERE id = $1"
	" AND NOT EXISTS (SELECT 1 FROM replication_queue_job_lock WHERE lock_id = $1)";

/* --- enqueue --- */

static const char SQL_UPSERT_LOCK[] =
	"INSERT INTO replication_queue_lock (id) VALUES ($1) ON CONFLICT DO NOTHING";
static const char SQL_READY_DUPLICATE[] =
	"SELECT id FROM replication_queue WHERE state = 'ready' AND " J("virtual_storage") " = $1"
	" AND " J("relative_path") " = $2 AND " J("target_node_storage") " = $3 AND " J("change") " = $4"
	" AND (NOT $5::boolean OR " FORCED ") LIMIT 1";
/* ON CONFLICT: a second live delete_replica job (the partial unique index) leaves the transaction intact */
static const char SQL_INSERT_JOB[] =
	"INSERT INTO replication_queue (state, created_at, attempt, lock_id, job, meta)"
	" VALUES ('ready', " PG_TS("$1") ", 3, $2, jsonb_build_object("
	"  'change', $3::text, 'repository_id', $4::bigint, 'virtual_storage', $5::text,"
	"  'relative_path', $6::text, 'replica_path', $7::text, 'source_node_storage', $8::text,"
	"  'target_node_storage', $9::text,"
	"  'params', CASE WHEN $11::boolean THEN '{\"force\": true}'::jsonb ELSE 'null'::jsonb END),"
	" jsonb_build_object('correlation_id', $10::text))"
	" ON CONFLICT DO NOTHING RETURNING id";

static int valid_change(const char *change)
{
	static const char *const changes[] = { "update", "create", "delete", "delete_replica" };
	for (size_t i = 0; i < ARRAY_SIZE(changes); i++)
		if (!strcmp(change, changes[i]))
			return 1;
	return 0;
}

int pg_insert_job(struct pg_backend *g, struct store_op *op, const struct repl_job *job)
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

	if ((r = pg_exec(g, op, SQL_UPSERT_LOCK, "t", lock_id)) < 0 ||
	    (r = pg_int(g, op, &found, 0, SQL_READY_DUPLICATE, "ttttd", job->virtual_storage,
			job->relative_path, job->target_storage, job->change, job->force != 0)) < 0)
		return r;
	if (r)
		goto exists;
	if ((r = pg_int(g, op, &op->value, 0, SQL_INSERT_JOB, "ltt" "lttttttd", pg_now_ms(g), lock_id, job->change,
			job->repository_id, job->virtual_storage, job->relative_path, job->replica_path,
			job->source_storage, job->target_storage, job->correlation_id, job->force != 0)) < 0)
		return r;
	if (r)
		return 0;

exists:
	return store_op_fail(op, -EEXIST, "replication event \"\" -> \"%s\" -> \"%s\" -> \"%s\" already exists",
			     job->virtual_storage, job->target_storage, job->relative_path);
}

int pg_enqueue(struct store_backend *b, struct store_op *op)
{
	return pg_insert_job(pg_backend(b), op, &op->in.job);
}

/* --- dequeue --- */

/*
 * As sqlite-queue.c, safe against other praefects dequeuing at the same time
 * (docs/technical/multi-praefect.md): each candidate's lock row is locked
 * (FOR UPDATE) and read again before its job is taken, so a lock another
 * praefect acquired meanwhile makes us skip the job, and a job is only taken
 * while it is still ready or failed (re-checked on the row's latest version).
 */
static const char SQL_DEQUEUE_CANDIDATES[] =
	"SELECT id FROM ("
	" SELECT q.id, q.created_at, q.not_before, row_number() OVER ("
	"  PARTITION BY q.lock_id, q.job->>'change' ORDER BY q.created_at, q.id) AS rn"
	" FROM replication_queue AS q JOIN replication_queue_lock AS l ON l.id = q.lock_id"
	" WHERE q.job->>'virtual_storage' = $1 AND q.job->>'target_node_storage' = $2"
	" AND q.state IN ('ready', 'failed') AND NOT l.acquired"
	" AND NOT EXISTS (SELECT 1 FROM replication_queue_job_lock AS jl WHERE jl.lock_id = q.lock_id)"
	") AS c WHERE rn = 1 AND (not_before IS NULL OR not_before <= " PG_TS("$4") ")"
	" ORDER BY created_at, id LIMIT $3";
static const char SQL_TAKE_JOB[] =
	"UPDATE replication_queue SET"
	" attempt = CASE WHEN job->>'change' = 'delete_replica' THEN attempt ELSE attempt - 1 END,"
	" state = 'in_progress', updated_at = " PG_TS("$2")
	" WHERE id = $1 AND state IN ('ready', 'failed') RETURNING lock_id";
static const char SQL_LOCK_OF_JOB[] =
	"SELECT l.id, l.acquired FROM replication_queue_lock AS l JOIN replication_queue AS q ON q.lock_id = l.id"
	" WHERE q.id = $1 FOR UPDATE OF l";
static const char SQL_BIND_JOB_LOCK[] =
	"INSERT INTO replication_queue_job_lock (job_id, lock_id, triggered_at) VALUES ($1, $2, " PG_TS("$3") ")";
static const char SQL_ACQUIRE_LOCK[] = "UPDATE replication_queue_lock SET acquired = true WHERE id = $1";

static int has_lock(const struct strvec *v, const char *lock_id)
{
	for (size_t i = 0; i < v->nr; i++)
		if (!strcmp(v->v[i], lock_id))
			return 1;
	return 0;
}

static int cmp_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

int pg_dequeue(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	int64_t now = pg_now_ms(g), *ids = NULL, limit;
	struct strvec taken = STRVEC_INIT;   /* lock ids this dequeue acquired */
	size_t nr = 0;
	PGresult *res;
	int r;

	if (!op->in.max)
		return 0;
	limit = op->in.max > INT64_MAX ? INT64_MAX : (int64_t)op->in.max;
	if ((r = pg_query(g, op, &res, SQL_DEQUEUE_CANDIDATES, "ttll", op->in.vs, op->in.storage, limit, now)) < 0)
		return r;
	nr = (size_t)PQntuples(res);
	ids = xcalloc(nr + 1, sizeof(*ids));
	for (size_t i = 0; i < nr; i++)
		ids[i] = pg_col_int(res, (int)i, 0, 0);
	for (size_t i = 0; r == 0 && i < nr; i++) {
		const char *lock_id;

		if ((r = pg_query(g, op, &res, SQL_LOCK_OF_JOB, "l", ids[i])) < 0)
			break;
		/* another praefect took this lock (or the job) since the candidates were read */
		if (!PQntuples(res) || (pg_col_int(res, 0, 1, 0) && !has_lock(&taken, PQgetvalue(res, 0, 0)))) {
			ids[i] = 0;
			continue;
		}
		if ((r = pg_query(g, op, &res, SQL_TAKE_JOB, "ll", ids[i], now)) < 0)
			break;
		if (!PQntuples(res) || !(lock_id = pg_col_text(op, res, 0, 0))) {
			ids[i] = 0;
			r = 0;
			continue;
		}
		strvec_push(&taken, lock_id);
		if ((r = pg_exec(g, op, SQL_BIND_JOB_LOCK, "ltl", ids[i], lock_id, now)) < 0 ||
		    (r = pg_exec(g, op, SQL_ACQUIRE_LOCK, "t", lock_id)) < 0)
			break;
		r = 0;
	}
	if (nr > 1)
		qsort(ids, nr, sizeof(*ids), cmp_id);
	for (size_t i = 0; r == 0 && i < nr; i++) {
		if (!ids[i])
			continue;
		if ((r = pg_query(g, op, &res, SQL_JOB_BY_ID, "l", ids[i])) < 0)
			break;
		if (PQntuples(res))
			read_job(op, res, 0);
	}
	strvec_clear(&taken);
	free(ids);
	return r < 0 ? r : 0;
}

/* --- acknowledge --- */

static const char SQL_RUNNING_JOB[] =
	"SELECT lock_id, " PG_MS("updated_at") ", job->>'change', COALESCE(job->>'source_node_storage', ''), " FORCED
	" FROM replication_queue WHERE id = $1 AND state = 'in_progress'";
static const char SQL_UNBIND_JOB_LOCK[] =
	"DELETE FROM replication_queue_job_lock WHERE job_id = $1 AND lock_id = $2";
static const char SQL_DELETE_JOB[] = "DELETE FROM replication_queue WHERE id = $1";
static const char SQL_DELETE_SUPERSEDED[] =
	"DELETE FROM replication_queue WHERE state = 'ready' AND created_at < " PG_TS("$1")
	" AND lock_id = $2 AND job->>'change' = $3 AND COALESCE(job->>'source_node_storage', '') = $4"
	" AND ($5::boolean OR NOT " FORCED ")";
static const char SQL_FAIL_JOB[] =
	"UPDATE replication_queue SET state = 'failed', updated_at = " PG_TS("$2") " WHERE id = $1";

int pg_acknowledge(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	enum job_state state = op->in.state;
	int64_t now = pg_now_ms(g);
	int r = 0;

	if (state != JOB_COMPLETED && state != JOB_FAILED && state != JOB_DEAD) {
		const char *name = store_job_state_name(state);
		return store_op_fail(op, -EINVAL, "event state is not supported: \"%s\"", name ? name : "");
	}
	for (size_t i = 0; i < op->in.nr_ids; i++) {
		int64_t id = op->in.ids[i], updated_at;
		const char *lock_id, *change, *source;
		PGresult *res;
		int forced;

		if ((r = pg_query(g, op, &res, SQL_RUNNING_JOB, "l", id)) < 0)
			return r;
		if (!PQntuples(res))
			continue;
		lock_id = pg_col_text(op, res, 0, 0);
		updated_at = pg_col_int(res, 0, 1, 0);
		change = pg_col_text(op, res, 0, 2);
		source = pg_col_text(op, res, 0, 3);
		forced = pg_col_int(res, 0, 4, 0) != 0;

		if ((r = pg_exec(g, op, SQL_UNBIND_JOB_LOCK, "lt", id, lock_id)) < 0)
			return r;
		if (state == JOB_FAILED)
			r = pg_exec(g, op, SQL_FAIL_JOB, "ll", id, now);
		else
			r = pg_exec(g, op, SQL_DELETE_JOB, "l", id);
		if (r >= 0 && state == JOB_COMPLETED)
			r = pg_exec(g, op, SQL_DELETE_SUPERSEDED, "ltttd", updated_at, lock_id, change ? change : "",
				    source ? source : "", forced);
		if (r < 0 || (r = pg_exec(g, op, SQL_RELEASE_LOCK, "t", lock_id)) < 0)
			return r;
	}
	return 0;
}

/* --- postpone --- */

static const char SQL_POSTPONE_LOCK[] =
	"SELECT lock_id FROM replication_queue WHERE id = $1 AND state = 'in_progress'";
static const char SQL_POSTPONE_JOB[] =
	"UPDATE replication_queue SET"
	" state = CASE WHEN $3::boolean THEN 'ready'::replication_job_state ELSE 'failed'::replication_job_state END,"
	" attempt = CASE WHEN $3::boolean AND job->>'change' <> 'delete_replica' THEN attempt + 1 ELSE attempt END,"
	" updated_at = " PG_TS("$2") ", not_before = " PG_TS("($2::bigint + $4::bigint)")
	" WHERE id = $1";

int pg_postpone(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	int64_t now = pg_now_ms(g);
	int r;

	for (size_t i = 0; i < op->in.nr_ids; i++) {
		int64_t id = op->in.ids[i];
		const char *lock_id;
		PGresult *res;

		if ((r = pg_query(g, op, &res, SQL_POSTPONE_LOCK, "l", id)) < 0)
			return r;
		if (!PQntuples(res))
			continue;
		lock_id = pg_col_text(op, res, 0, 0);
		if ((r = pg_exec(g, op, SQL_UNBIND_JOB_LOCK, "lt", id, lock_id)) < 0 ||
		    (r = pg_exec(g, op, SQL_POSTPONE_JOB, "lldl", id, now, op->in.refund != 0,
				 op->in.delay_ms > 0 ? op->in.delay_ms : 0)) < 0 ||
		    (r = pg_exec(g, op, SQL_RELEASE_LOCK, "t", lock_id)) < 0)
			return r;
	}
	return 0;
}

static const char SQL_HEARTBEAT[] =
	"UPDATE replication_queue_job_lock SET triggered_at = " PG_TS("$2") " WHERE job_id = $1";

int pg_heartbeat(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	int64_t now = pg_now_ms(g);
	int r, touched = 0;

	for (size_t i = 0; i < op->in.nr_ids; i++) {
		if ((r = pg_exec(g, op, SQL_HEARTBEAT, "ll", op->in.ids[i], now)) < 0)
			return r;
		touched += r;
	}
	if (op->in.nr_ids && !touched)
		return store_op_fail(op, -ENOENT, "no replication job lock left to refresh");
	return 0;
}

static const char SQL_STALE_JOB_LOCKS[] =
	"SELECT job_id, lock_id FROM replication_queue_job_lock WHERE triggered_at < " PG_TS("$1")
	" FOR UPDATE SKIP LOCKED";
static const char SQL_STALE_FAIL[] =
	"UPDATE replication_queue SET state = 'failed' WHERE id = $1 AND attempt >= 1";
static const char SQL_STALE_DELETE[] = "DELETE FROM replication_queue WHERE id = $1 AND attempt <= 0";

int pg_acknowledge_stale(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	int64_t threshold = pg_now_ms(g) - (op->in.stale_ms > 0 ? op->in.stale_ms : 0);
	PGresult *res;
	int r, nr;

	if ((r = pg_query(g, op, &res, SQL_STALE_JOB_LOCKS, "l", threshold)) < 0)
		return r;
	nr = PQntuples(res);
	for (int i = 0; i < nr; i++) {
		int64_t id = pg_col_int(res, i, 0, 0);
		const char *lock = pg_col_text(op, res, i, 1);

		if ((r = pg_exec(g, op, SQL_UNBIND_JOB_LOCK, "lt", id, lock)) < 0 ||
		    (r = pg_exec(g, op, SQL_STALE_FAIL, "l", id)) < 0 ||
		    (r = pg_exec(g, op, SQL_STALE_DELETE, "l", id)) < 0 ||
		    (r = pg_exec(g, op, SQL_RELEASE_LOCK, "t", lock)) < 0)
			return r;
	}
	op->value = nr;
	return 0;
}

static const char SQL_COUNT_JOBS[] =
	"SELECT COUNT(*) FROM replication_queue WHERE state IN ('ready', 'in_progress', 'failed')";
static const char SQL_PURGE_JOB_LOCKS[] =
	"DELETE FROM replication_queue_job_lock WHERE job_id IN (SELECT id FROM replication_queue"
	" WHERE job->>'virtual_storage' = $1 AND job->>'relative_path' = $2 AND state <> 'in_progress'"
	" AND job->>'change' <> 'delete')";
static const char SQL_PURGE_JOBS[] =
	"DELETE FROM replication_queue WHERE job->>'virtual_storage' = $1 AND job->>'relative_path' = $2"
	" AND state <> 'in_progress' AND job->>'change' <> 'delete'";
static const char SQL_COUNT_IN_PROGRESS[] =
	"SELECT COUNT(*) FROM replication_queue"
	" WHERE job->>'virtual_storage' = $1 AND job->>'relative_path' = $2 AND state = 'in_progress'";

int pg_purge_jobs(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	int r;

	if ((r = pg_exec(g, op, SQL_PURGE_JOB_LOCKS, "tt", op->in.vs, op->in.path)) < 0 ||
	    (r = pg_exec(g, op, SQL_PURGE_JOBS, "tt", op->in.vs, op->in.path)) < 0 ||
	    (r = pg_int(g, op, &op->value, 0, SQL_COUNT_IN_PROGRESS, "tt", op->in.vs, op->in.path)) < 0)
		return r;
	return 0;
}

int pg_count_jobs(struct store_backend *b, struct store_op *op)
{
	int r = pg_int(pg_backend(b), op, &op->value, 0, SQL_COUNT_JOBS, "");
	return r < 0 ? r : 0;
}

int pg_list_jobs(struct store_backend *b, struct store_op *op)
{
	PGresult *res;
	int r;

	if ((r = pg_query(pg_backend(b), op, &res, SQL_JOBS_ALL, "")) < 0)
		return r;
	for (int i = 0; i < PQntuples(res); i++)
		read_job(op, res, i);
	return 0;
}

/* --- node health --- */

static const char SQL_NODE_STATUS[] =
	"INSERT INTO node_status (praefect_name, shard_name, node_name, last_contact_attempt_at, last_seen_active_at)"
	" VALUES ($1, $2, $3, " PG_TSZ("$4") ", CASE WHEN $5::boolean THEN " PG_TSZ("$4") " END)"
	" ON CONFLICT (praefect_name, shard_name, node_name) DO UPDATE SET"
	"  last_contact_attempt_at = excluded.last_contact_attempt_at,"
	"  last_seen_active_at = COALESCE(excluded.last_seen_active_at, node_status.last_seen_active_at)";

int pg_record_node_status(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	int r = pg_exec(g, op, SQL_NODE_STATUS, "tttld", op->in.praefect, op->in.vs, op->in.storage,
			pg_now_ms(g), op->in.healthy != 0);
	return r < 0 ? r : 0;
}

/*
 * Upstream's majority rule (docs/technical/multi-praefect.md) counts, per
 * node, the praefects that saw it healthy within the failover window, out of
 * the praefects active in the last minute. A vote here also needs the
 * praefect's latest check to have found the node healthy (both columns hold
 * the same instant then): a node every praefect sees dead loses its votes at
 * once, not a window later. The caller adds its own live view.
 */
static const char SQL_NODE_VOTES[] =
	"SELECT ns.shard_name, ns.node_name,"
	"  count(*) FILTER (WHERE ns.last_seen_active_at >= " PG_TSZ("$2") " - $3::bigint * interval '1 millisecond'"
	"   AND ns.last_seen_active_at >= ns.last_contact_attempt_at),"
	"  (SELECT count(DISTINCT a.praefect_name) FROM node_status AS a"
	"   WHERE a.shard_name = ns.shard_name AND a.praefect_name <> $1"
	"   AND a.last_contact_attempt_at >= " PG_TSZ("$2") " - interval '1 minute')"
	" FROM node_status AS ns"
	" WHERE ns.praefect_name <> $1 AND ns.last_contact_attempt_at >= " PG_TSZ("$2") " - interval '1 minute'"
	" GROUP BY ns.shard_name, ns.node_name";

int pg_node_votes(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	PGresult *res;
	int r = pg_query(g, op, &res, SQL_NODE_VOTES, "tll", op->in.praefect, pg_now_ms(g), op->in.interval_ms);
	if (r < 0)
		return r;
	for (int i = 0; i < PQntuples(res); i++) {
		struct store_node_vote *v = store_op_add_vote(op);
		v->virtual_storage = pg_col_text(op, res, i, 0);
		v->storage = pg_col_text(op, res, i, 1);
		v->healthy_votes = pg_col_int(res, i, 2, 0);
		v->active_praefects = pg_col_int(res, i, 3, 0);
	}
	return 0;
}
