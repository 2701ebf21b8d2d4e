/* Versioned schema of the SQLite tracking store, applied at open and recorded in schema_migrations. */
#include "sqlite.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "base/banned.h"

/*
 * Rules: a migration, once released, never changes; a schema change is a new
 * entry appended with a later id (UTC time stamp + name, upstream's style).
 * Each runs in its own transaction together with its schema_migrations row,
 * so a crash leaves the database either before or after it. Times are
 * INTEGER Unix milliseconds (UTC) everywhere.
 *
 * Names of tables, columns and indexes follow upstream's PostgreSQL schema
 * (docs/technical/store.md, "Schema") so that queries and documentation carry over; the
 * differences are listed in docs/technical/store.md.
 */

static const char m_initial[] =
	/* ids are reserved before the row exists, as with upstream's sequence */
	"CREATE TABLE sequences ("
	"  name TEXT NOT NULL PRIMARY KEY,"
	"  value INTEGER NOT NULL"
	");"
	"INSERT INTO sequences (name, value) VALUES ('repositories_repository_id_seq', 0);"
	"CREATE TABLE repositories ("
	"  repository_id INTEGER PRIMARY KEY,"
	"  virtual_storage TEXT NOT NULL,"
	"  relative_path TEXT NOT NULL,"
	"  generation INTEGER,"
	"  \"primary\" TEXT,"
	"  replica_path TEXT"
	");"
	"CREATE UNIQUE INDEX repository_lookup_index ON repositories (virtual_storage, relative_path);"
	"CREATE INDEX repository_replica_path_index ON repositories (replica_path, virtual_storage);"
	"CREATE TABLE storage_repositories ("
	"  virtual_storage TEXT NOT NULL,"
	"  relative_path TEXT NOT NULL,"
	"  storage TEXT NOT NULL,"
	"  generation INTEGER NOT NULL,"
	"  repository_id INTEGER NOT NULL REFERENCES repositories (repository_id) ON DELETE CASCADE,"
	"  verified_at INTEGER,"
	"  verification_leased_until INTEGER,"
	"  PRIMARY KEY (virtual_storage, relative_path, storage)"
	");"
	"CREATE UNIQUE INDEX storage_repositories_new_pkey ON storage_repositories (repository_id, storage);"
	"CREATE INDEX verification_queue ON storage_repositories (verified_at)"
	"  WHERE verification_leased_until IS NULL;"
	"CREATE INDEX verification_leases ON storage_repositories (verification_leased_until)"
	"  WHERE verification_leased_until IS NOT NULL;"
	"CREATE TABLE repository_assignments ("
	"  virtual_storage TEXT NOT NULL,"
	"  relative_path TEXT NOT NULL,"
	"  storage TEXT NOT NULL,"
	"  repository_id INTEGER NOT NULL REFERENCES repositories (repository_id) ON DELETE CASCADE,"
	"  PRIMARY KEY (virtual_storage, relative_path, storage),"
	"  FOREIGN KEY (virtual_storage, relative_path) REFERENCES repositories (virtual_storage, relative_path)"
	"    ON UPDATE CASCADE ON DELETE CASCADE"
	");"
	"CREATE UNIQUE INDEX repository_assignments_new_pkey ON repository_assignments (repository_id, storage);"
	"CREATE TABLE storage_cleanups ("
	"  virtual_storage TEXT NOT NULL,"
	"  storage TEXT NOT NULL,"
	"  last_run INTEGER,"
	"  triggered_at INTEGER,"
	"  PRIMARY KEY (virtual_storage, storage)"
	");"
	/* read and written by `praefect check` */
	"CREATE TABLE hello_world (id INTEGER);"
	"INSERT INTO hello_world (id) VALUES (1);";

static const char m_replication_queue[] =
	"CREATE TABLE replication_queue_lock ("
	"  id TEXT NOT NULL PRIMARY KEY,"
	"  acquired INTEGER NOT NULL DEFAULT 0"
	");"
	/*
	 * Upstream keeps the job in a JSONB column; here its fields are
	 * columns. AUTOINCREMENT: an id is never reused, so a late
	 * acknowledgement cannot hit a newer job.
	 */
	"CREATE TABLE replication_queue ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  state TEXT NOT NULL DEFAULT 'ready' CHECK (state IN"
	"    ('ready', 'in_progress', 'completed', 'cancelled', 'failed', 'dead')),"
	"  created_at INTEGER NOT NULL,"
	"  updated_at INTEGER,"
	"  attempt INTEGER NOT NULL DEFAULT 3,"
	"  lock_id TEXT,"
	"  change TEXT NOT NULL,"
	"  repository_id INTEGER NOT NULL DEFAULT 0,"
	"  virtual_storage TEXT NOT NULL,"
	"  relative_path TEXT NOT NULL,"
	"  replica_path TEXT NOT NULL DEFAULT '',"
	"  source_node_storage TEXT NOT NULL DEFAULT '',"
	"  target_node_storage TEXT NOT NULL,"
	"  params TEXT,"
	"  correlation_id TEXT NOT NULL DEFAULT ''"
	");"
	"CREATE INDEX virtual_target_on_replication_queue_idx"
	"  ON replication_queue (virtual_storage, target_node_storage);"
	/* at most one live delete_replica job per repository */
	"CREATE UNIQUE INDEX delete_replica_unique_index ON replication_queue (virtual_storage, relative_path)"
	"  WHERE state NOT IN ('completed', 'cancelled', 'dead') AND change = 'delete_replica';"
	/* not partial: sqlite would not prove that state = 'ready' implies upstream's predicate */
	"CREATE INDEX replication_queue_target_index"
	"  ON replication_queue (virtual_storage, relative_path, target_node_storage, change, state);"
	"CREATE INDEX replication_queue_lock_id_index ON replication_queue (lock_id, change, state);"
	"CREATE TABLE replication_queue_job_lock ("
	"  job_id INTEGER NOT NULL REFERENCES replication_queue (id),"
	"  lock_id TEXT NOT NULL REFERENCES replication_queue_lock (id),"
	"  triggered_at INTEGER NOT NULL,"
	"  PRIMARY KEY (job_id, lock_id)"
	");"
	"CREATE INDEX replication_queue_job_lock_lock_id ON replication_queue_job_lock (lock_id);"
	"CREATE INDEX replication_queue_job_lock_triggered_at ON replication_queue_job_lock (triggered_at);";

static const char m_node_status[] =
	"CREATE TABLE node_status ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  praefect_name TEXT NOT NULL,"
	"  shard_name TEXT NOT NULL,"
	"  node_name TEXT NOT NULL,"
	"  last_contact_attempt_at INTEGER,"
	"  last_seen_active_at INTEGER"
	");"
	"CREATE UNIQUE INDEX shard_node_names_on_node_status_idx"
	"  ON node_status (praefect_name, shard_name, node_name);"
	"CREATE INDEX shard_name_on_node_status_idx ON node_status (shard_name, node_name);";

/*
 * Ours, not upstream's: one row per write forwarded and not yet finished,
 * so that a praefect killed mid-write knows at start-up which repositories
 * to verify. Jobs get a not_before time (retry back-off, or a job that could
 * not run yet) kept apart from created_at, which orders them.
 */
static const char m_write_intents[] =
	"CREATE TABLE write_intents ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  repository_id INTEGER NOT NULL REFERENCES repositories (repository_id) ON DELETE CASCADE,"
	"  created_at INTEGER NOT NULL"
	");"
	"CREATE INDEX write_intents_repository_id_idx ON write_intents (repository_id);"
	"ALTER TABLE replication_queue ADD COLUMN not_before INTEGER;";

/*
 * Ours: replicas to verify because a read failed on them as if their objects
 * were corrupt (praefect/router/suspect.c), kept across restarts.
 */
static const char m_suspect_replicas[] =
	"CREATE TABLE suspect_replicas ("
	"  repository_id INTEGER NOT NULL REFERENCES repositories (repository_id) ON DELETE CASCADE,"
	"  storage TEXT NOT NULL,"
	"  avoid INTEGER NOT NULL,"
	"  created_at INTEGER NOT NULL,"
	"  PRIMARY KEY (repository_id, storage)"
	");";

/*
 * Ours: when a replica was first seen behind its repository, Unix ms, NULL
 * while in sync (docs/technical/replication-status.md).
 */
static const char m_outdated_since[] = "ALTER TABLE storage_repositories ADD COLUMN outdated_since INTEGER;";

/*
 * Ours: the praefect that recorded a write intent, so that a praefect
 * starting recovers only its own ('' for intents from before the column).
 */
static const char m_write_intents_praefect[] =
	"ALTER TABLE write_intents ADD COLUMN praefect_name TEXT NOT NULL DEFAULT '';";

#define MIGRATIONS(X) \
	X("20240101000000_initial", m_initial) \
	X("20240101000100_replication_queue", m_replication_queue) \
	X("20240101000200_node_status", m_node_status) \
	X("20261206000000_write_intents", m_write_intents) \
	X("20261207100000_suspect_replicas", m_suspect_replicas) \
	X("20261207110000_outdated_since", m_outdated_since) \
	X("20261207120000_write_intents_praefect", m_write_intents_praefect)

#define MIGRATION_ID(id, sql) id,
#define MIGRATION_SQL(id, sql) sql,
static const char *const migration_ids[] = { MIGRATIONS(MIGRATION_ID) NULL };
static const char *const migration_sql[] = { MIGRATIONS(MIGRATION_SQL) };

const char *const *store_migrations(size_t *n)
{
	if (n)
		*n = ARRAY_SIZE(migration_sql);
	return migration_ids;
}

static int exec(sqlite3 *db, const char *sql, struct strbuf *err)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	strbuf_addstr(err, msg ? msg : sqlite3_errmsg(db));
	sqlite3_free(msg);
	return -1;
}

static int known(const char *id)
{
	for (size_t i = 0; i < ARRAY_SIZE(migration_sql); i++)
		if (!strcmp(migration_ids[i], id))
			return 1;
	return 0;
}

/* A database touched by a newer version may hold tables this one would misuse: refuse it. */
static int check_unknown(sqlite3 *db, struct strbuf *err)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, "SELECT id FROM schema_migrations ORDER BY id", -1, &st, NULL);
	int r = 0;

	if (rc != SQLITE_OK) {
		strbuf_addstr(err, sqlite3_errmsg(db));
		return -1;
	}
	while (!r && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(st, 0);
		if (id && !known(id)) {
			strbuf_addf(err, "unknown migration \"%s\" in database (written by a newer version?)", id);
			r = -1;
		}
	}
	if (!r && rc != SQLITE_DONE) {
		strbuf_addstr(err, sqlite3_errmsg(db));
		r = -1;
	}
	sqlite3_finalize(st);
	return r;
}

static int applied(sqlite3 *db, const char *id, struct strbuf *err)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, "SELECT 1 FROM schema_migrations WHERE id = ?1", -1, &st, NULL);

	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc == SQLITE_ROW || rc == SQLITE_DONE)
			return rc == SQLITE_ROW;
	}
	strbuf_addstr(err, sqlite3_errmsg(db));
	return -1;
}

static int record(sqlite3 *db, const char *id, struct strbuf *err)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, "INSERT INTO schema_migrations (id, applied_at) VALUES (?1, ?2)",
				    -1, &st, NULL);

	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, sq_wall_ms());
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc == SQLITE_DONE)
			return 0;
	}
	strbuf_addstr(err, sqlite3_errmsg(db));
	return -1;
}

/*
 * Apply every known migration not yet recorded, in id order, catching up on
 * older ones too (as sql-migrate plans). Another process may migrate the same
 * file concurrently: BEGIN IMMEDIATE serialises us and the re-check inside
 * the transaction skips what it already did.
 */
int sq_migrate(sqlite3 *db, struct strbuf *err)
{
	if (exec(db, "CREATE TABLE IF NOT EXISTS schema_migrations ("
		     "id TEXT NOT NULL PRIMARY KEY, applied_at INTEGER)", err) < 0 ||
	    check_unknown(db, err) < 0)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(migration_sql); i++) {
		const char *id = migration_ids[i];
		int r;

		if (exec(db, "BEGIN IMMEDIATE", err) < 0)
			return -1;
		r = applied(db, id, err);
		if (r == 0 && (exec(db, migration_sql[i], err) < 0 || record(db, id, err) < 0))
			r = -1;
		if (r >= 0 && exec(db, "COMMIT", err) < 0)
			r = -1;
		if (r < 0) {
			struct strbuf why = STRBUF_INIT;
			strbuf_addstr(&why, err->buf);
			strbuf_reset(err);
			strbuf_addf(err, "migration \"%s\" failed: %s", id, why.buf);
			strbuf_release(&why);
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			return -1;
		}
	}
	return 0;
}
