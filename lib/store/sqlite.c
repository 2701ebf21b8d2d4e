/* The SQLite backend of the tracking store: opening, pragmas, statement cache, transactions. */
#include "sqlite.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/util.h"
#include "base/banned.h"

/*
 * How long a statement waits for another connection's lock (another process
 * such as a praefect subcommand on the same file) before failing with "database
 * is locked".
 */
#define SQ_BUSY_TIMEOUT_MS 5000

int64_t sq_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sq_now_ms(struct sqlite_backend *q)
{
	int64_t now = sq_wall_ms();
	/* a clock stepped back must not reorder jobs or un-supersede them */
	if (now < q->last_ms)
		now = q->last_ms;
	q->last_ms = now;
	return now;
}

/* --- errors and statements --- */

int sq_error(struct sqlite_backend *q, struct store_op *op, int rc)
{
	/* extended result codes are on, so `rc` names the constraint kind */
	const char *msg = sqlite3_errmsg(q->db);

	if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
		return store_op_fail(op, -EEXIST, "%s", msg);
	return store_op_fail(op, -EIO, "sqlite: %s", msg ? msg : sqlite3_errstr(rc));
}

static sqlite3_stmt *cached(struct sqlite_backend *q, const char *sql, int *rc)
{
	sqlite3_stmt *st;

	for (size_t i = 0; i < q->nr_cache; i++)
		if (q->cache[i].sql == sql) {
			st = q->cache[i].st;
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			*rc = SQLITE_OK;
			return st;
		}
	*rc = sqlite3_prepare_v3(q->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
	if (*rc != SQLITE_OK)
		return NULL;
	ALLOC_GROW(q->cache, q->nr_cache + 1, q->alloc_cache);
	q->cache[q->nr_cache].sql = sql;
	q->cache[q->nr_cache].st = st;
	q->nr_cache++;
	return st;
}

static int vquery(struct sqlite_backend *q, struct store_op *op, sqlite3_stmt **out,
		  const char *sql, const char *types, va_list ap)
{
	int rc;
	sqlite3_stmt *st = cached(q, sql, &rc);

	if (!st)
		return sq_error(q, op, rc);
	for (int i = 1; *types; types++, i++) {
		switch (*types) {
		case 'l':
			rc = sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
			break;
		case 'd':
			rc = sqlite3_bind_int(st, i, va_arg(ap, int));
			break;
		case 't': {
			const char *s = va_arg(ap, const char *);
			rc = s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
			break;
		}
		default:
			return store_op_fail(op, -EINVAL, "bad bind type '%c'", *types);
		}
		if (rc != SQLITE_OK)
			return sq_error(q, op, rc);
	}
	*out = st;
	return 0;
}

int sq_query(struct sqlite_backend *q, struct store_op *op, sqlite3_stmt **out,
	     const char *sql, const char *types, ...)
{
	va_list ap;
	int r;
	va_start(ap, types);
	r = vquery(q, op, out, sql, types, ap);
	va_end(ap);
	return r;
}

int sq_next(struct sqlite_backend *q, struct store_op *op, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st), r;
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE) {
		sqlite3_reset(st);
		return 0;
	}
	r = sq_error(q, op, rc);
	sqlite3_reset(st);
	return r;
}

int sq_exec(struct sqlite_backend *q, struct store_op *op, const char *sql, const char *types, ...)
{
	sqlite3_stmt *st;
	va_list ap;
	int r;

	va_start(ap, types);
	r = vquery(q, op, &st, sql, types, ap);
	va_end(ap);
	if (r < 0)
		return r;
	while ((r = sq_next(q, op, st)) > 0)
		;
	return r < 0 ? r : sqlite3_changes(q->db);
}

int sq_int(struct sqlite_backend *q, struct store_op *op, int64_t *out, int64_t null_value,
	   const char *sql, const char *types, ...)
{
	sqlite3_stmt *st;
	va_list ap;
	int r;

	va_start(ap, types);
	r = vquery(q, op, &st, sql, types, ap);
	va_end(ap);
	if (r < 0 || (r = sq_next(q, op, st)) <= 0)
		return r;
	*out = sqlite3_column_type(st, 0) == SQLITE_NULL ? null_value : sqlite3_column_int64(st, 0);
	/* finish the statement so that an INSERT ... RETURNING is complete */
	while ((r = sq_next(q, op, st)) > 0)
		;
	return r < 0 ? r : 1;
}

const char *sq_text(struct store_op *op, sqlite3_stmt *st, int col)
{
	const unsigned char *s = sqlite3_column_text(st, col);
	return s ? store_op_keep(op, (const char *)s) : NULL;
}

/* --- transactions --- */

/* A statement left mid-way (an op that stopped reading early or failed) must not outlive its op. */
static void reset_busy(struct sqlite_backend *q)
{
	for (sqlite3_stmt *st = sqlite3_next_stmt(q->db, NULL); st; st = sqlite3_next_stmt(q->db, st))
		if (sqlite3_stmt_busy(st))
			sqlite3_reset(st);
}

static const char SQL_BEGIN[] = "BEGIN";
static const char SQL_BEGIN_IMMEDIATE[] = "BEGIN IMMEDIATE";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_ROLLBACK[] = "ROLLBACK";
static const char SQL_SAVEPOINT[] = "SAVEPOINT op";
static const char SQL_RELEASE[] = "RELEASE op";
static const char SQL_ROLLBACK_TO[] = "ROLLBACK TO op";

static int simple(struct sqlite_backend *q, const char *sql, struct strbuf *err)
{
	int rc;
	sqlite3_stmt *st = cached(q, sql, &rc);

	if (st) {
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc == SQLITE_DONE)
			return 0;
	}
	if (err)
		strbuf_addf(err, "sqlite: %s: %s", sql, sqlite3_errmsg(q->db));
	return -EIO;
}

static int sq_begin(struct store_backend *b, int writes, struct strbuf *err)
{
	/* IMMEDIATE takes the write lock up front so that no write fails half-way on a busy database */
	return simple(sq_backend(b), writes ? SQL_BEGIN_IMMEDIATE : SQL_BEGIN, err);
}

static int sq_commit(struct store_backend *b, struct strbuf *err)
{
	reset_busy(sq_backend(b));
	return simple(sq_backend(b), SQL_COMMIT, err);
}

static void sq_rollback(struct store_backend *b)
{
	struct sqlite_backend *q = sq_backend(b);
	reset_busy(q);
	if (!sqlite3_get_autocommit(q->db))
		simple(q, SQL_ROLLBACK, NULL);
}

static int sq_savepoint(struct store_backend *b, struct strbuf *err)
{
	return simple(sq_backend(b), SQL_SAVEPOINT, err);
}

static int sq_release(struct store_backend *b, struct strbuf *err)
{
	reset_busy(sq_backend(b));
	return simple(sq_backend(b), SQL_RELEASE, err);
}

static void sq_rollback_to(struct store_backend *b)
{
	struct sqlite_backend *q = sq_backend(b);
	reset_busy(q);
	/* ROLLBACK TO keeps the savepoint open; RELEASE pops it */
	if (simple(q, SQL_ROLLBACK_TO, NULL) == 0)
		simple(q, SQL_RELEASE, NULL);
}

static int sq_in_transaction(struct store_backend *b)
{
	return !sqlite3_get_autocommit(sq_backend(b)->db);
}

static void sq_close(struct store_backend *b)
{
	struct sqlite_backend *q = sq_backend(b);

	for (size_t i = 0; i < q->nr_cache; i++)
		sqlite3_finalize(q->cache[i].st);
	free(q->cache);
	/* keeps the query planner's statistics fresh, cheap when nothing changed */
	sqlite3_exec(q->db, "PRAGMA optimize", NULL, NULL, NULL);
	sqlite3_close_v2(q->db);
	free(q);
}

static const struct store_backend_ops sqlite_ops = {
	.name = "sqlite",
	.begin = sq_begin,
	.commit = sq_commit,
	.rollback = sq_rollback,
	.savepoint = sq_savepoint,
	.release = sq_release,
	.rollback_to = sq_rollback_to,
	.in_transaction = sq_in_transaction,
	.op = {
		[STORE_OP_LIST_REPOSITORIES] = sq_list_repositories,
		[STORE_OP_GET_REPOSITORY] = sq_get_repository,
		[STORE_OP_RESERVE_ID] = sq_reserve_id,
		[STORE_OP_CREATE_REPOSITORY] = sq_create_repository,
		[STORE_OP_INCREMENT_GENERATION] = sq_increment_generation,
		[STORE_OP_SET_GENERATION] = sq_set_generation,
		[STORE_OP_DELETE_REPOSITORY] = sq_delete_repository,
		[STORE_OP_DELETE_ALL_REPOSITORIES] = sq_delete_all_repositories,
		[STORE_OP_DELETE_REPLICA] = sq_delete_replica,
		[STORE_OP_DELETE_INVALID_REPLICA] = sq_delete_invalid_replica,
		[STORE_OP_SET_AUTHORITATIVE] = sq_set_authoritative,
		[STORE_OP_SET_PRIMARY] = sq_set_primary,
		[STORE_OP_SET_OUTDATED_SINCE] = sq_set_outdated_since,
		[STORE_OP_SET_ASSIGNMENTS] = sq_set_assignments,
		[STORE_OP_RENAME_REPOSITORY] = sq_rename_repository,
		[STORE_OP_ENQUEUE] = sq_enqueue,
		[STORE_OP_DEQUEUE] = sq_dequeue,
		[STORE_OP_ACKNOWLEDGE] = sq_acknowledge,
		[STORE_OP_HEARTBEAT] = sq_heartbeat,
		[STORE_OP_ACKNOWLEDGE_STALE] = sq_acknowledge_stale,
		[STORE_OP_COUNT_JOBS] = sq_count_jobs,
		[STORE_OP_LIST_JOBS] = sq_list_jobs,
		[STORE_OP_RECORD_NODE_STATUS] = sq_record_node_status,
		[STORE_OP_SWAP_PRIMARY] = sq_swap_primary,
		[STORE_OP_NODE_VOTES] = sq_node_votes,
		[STORE_OP_COUNT_REPOSITORIES] = sq_count_repositories,
		[STORE_OP_LAST_REPOSITORY_ID] = sq_last_repository_id,
		[STORE_OP_BEGIN_WRITE] = sq_begin_write,
		[STORE_OP_END_WRITE] = sq_end_write,
		[STORE_OP_RECOVER_WRITES] = sq_recover_writes,
		[STORE_OP_SUSPECT_ADD] = sq_suspect_add,
		[STORE_OP_SUSPECT_REMOVE] = sq_suspect_remove,
		[STORE_OP_LIST_SUSPECTS] = sq_list_suspects,
		[STORE_OP_POSTPONE] = sq_postpone,
		[STORE_OP_MARK_UNVERIFIED] = sq_mark_unverified,
		[STORE_OP_PURGE_JOBS] = sq_purge_jobs,
		[STORE_OP_LEASE_VERIFICATIONS] = sq_lease_verifications,
		[STORE_OP_END_VERIFICATION] = sq_end_verification,
		[STORE_OP_RELEASE_VERIFICATION_LEASES] = sq_release_verification_leases,
	},
	.close = sq_close,
};

/* --- opening --- */

/* Run a pragma and return its first result column (copied into `out`). */
static int pragma(sqlite3 *db, const char *sql, struct strbuf *out, struct strbuf *err)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	if (rc == SQLITE_OK) {
		while ((rc = sqlite3_step(st)) == SQLITE_ROW)
			if (out && !out->len && sqlite3_column_text(st, 0))
				strbuf_addstr(out, (const char *)sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
		if (rc == SQLITE_DONE)
			return 0;
	}
	strbuf_addf(err, "%s: %s", sql, sqlite3_errmsg(db));
	return -1;
}

static int configure(sqlite3 *db, const char *path, struct strbuf *err)
{
	struct strbuf v = STRBUF_INIT;
	int r = -1;

	sqlite3_extended_result_codes(db, 1);
	sqlite3_busy_timeout(db, SQ_BUSY_TIMEOUT_MS);
	/*
	 * WAL: readers (other tools on the same file) never block the writer.
	 * synchronous=FULL: with WAL, NORMAL may lose the last commits on power
	 * loss; an acknowledged generation bump must not be lost.
	 */
	if (pragma(db, "PRAGMA journal_mode=WAL", &v, err) < 0)
		goto out;
	if (strcmp(v.buf, "wal") && strcmp(path, ":memory:")) {
		strbuf_addf(err, "cannot switch to WAL mode (journal mode is \"%s\")", v.buf);
		goto out;
	}
	strbuf_reset(&v);
	if (pragma(db, "PRAGMA synchronous=FULL", NULL, err) < 0 ||
	    pragma(db, "PRAGMA foreign_keys=ON", NULL, err) < 0 ||
	    pragma(db, "PRAGMA foreign_keys", &v, err) < 0)
		goto out;
	if (strcmp(v.buf, "1")) {
		strbuf_addstr(err, "sqlite has no foreign key support");
		goto out;
	}
	r = 0;
out:
	strbuf_release(&v);
	return r;
}

int store_open_sqlite(uv_loop_t *loop, const char *path, struct store **out, struct strbuf *err)
{
	struct strbuf why = STRBUF_INIT;
	struct sqlite_backend *q;
	sqlite3 *db = NULL;
	int rc;

	*out = NULL;
	if (!sqlite3_threadsafe()) {
		strbuf_addstr(err, "sqlite was built without thread support");
		return -1;
	}
	/* NOMUTEX: only the worker thread uses the connection once the store runs */
	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		strbuf_addf(err, "cannot open tracking database \"%s\": %s", path,
			    db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return -1;
	}
	if (configure(db, path, &why) < 0 || sq_migrate(db, &why) < 0) {
		strbuf_addf(err, "tracking database \"%s\": %s", path, why.buf);
		strbuf_release(&why);
		sqlite3_close_v2(db);
		return -1;
	}
	q = xcalloc(1, sizeof(*q));
	q->base.ops = &sqlite_ops;
	q->db = db;
	return store_start(loop, &q->base, out, err);
}
