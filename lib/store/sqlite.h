/*
 * Internals of the SQLite backend shared by sqlite*.c: the connection, a
 * prepared-statement cache and small query helpers. Everything here runs on
 * the store's worker thread, which is the only user of the connection.
 */
#ifndef STORE_SQLITE_H
#define STORE_SQLITE_H

#include <sqlite3.h>
#include <stdint.h>

#include "backend.h"

struct sq_cached_stmt {
	const char *sql;    /* key: the address of a static SQL string */
	sqlite3_stmt *st;
};

struct sqlite_backend {
	struct store_backend base;
	sqlite3 *db;
	struct sq_cached_stmt *cache;
	size_t nr_cache, alloc_cache;
	int64_t last_ms;    /* see sq_now_ms() */
};

static inline struct sqlite_backend *sq_backend(struct store_backend *b)
{
	return (struct sqlite_backend *)b;
}

/*
 * Prepare `sql` (cached by its address, so pass static strings only), reset
 * it and bind parameters described by `types`, one letter each: 'l' int64_t,
 * 'd' int, 't' const char * (NULL binds SQL NULL; the text must outlive the
 * statement's use, e.g. be owned by the op). Returns 0, or a negative errno
 * value with the message in `op`.
 */
int sq_query(struct sqlite_backend *q, struct store_op *op, sqlite3_stmt **out,
	     const char *sql, const char *types, ...);
/* sq_query() and step to completion; returns the number of changed rows or < 0. */
int sq_exec(struct sqlite_backend *q, struct store_op *op, const char *sql, const char *types, ...);
/*
 * The first column of the first row as an integer: 1 if there was a row
 * (`out` set; SQL NULL reads as `null_value`), 0 if none, < 0 on error.
 */
int sq_int(struct sqlite_backend *q, struct store_op *op, int64_t *out, int64_t null_value,
	   const char *sql, const char *types, ...);
/* Step a query: 1 for a row, 0 when done (the statement is reset), < 0 on error. */
int sq_next(struct sqlite_backend *q, struct store_op *op, sqlite3_stmt *st);
/* Column `col` as a string owned by `op`; NULL for SQL NULL. */
const char *sq_text(struct store_op *op, sqlite3_stmt *st, int col);
/* Turn an sqlite result code into a negative errno value and a message in `op`. */
int sq_error(struct sqlite_backend *q, struct store_op *op, int rc);

/*
 * Wall-clock time in Unix milliseconds (UTC), never going backwards within
 * one open store: job ordering and "created before it was dequeued" compare
 * these values.
 */
int64_t sq_now_ms(struct sqlite_backend *q);
int64_t sq_wall_ms(void);

/* Bring the schema up to date (sqlite-migrations.c). 0, or -1 with `err` set. */
int sq_migrate(sqlite3 *db, struct strbuf *err);

/* Operation functions (sqlite-repo.c, sqlite-queue.c, sqlite-intents.c, sqlite-verify.c). */
int sq_list_repositories(struct store_backend *b, struct store_op *op);
int sq_count_repositories(struct store_backend *b, struct store_op *op);
int sq_last_repository_id(struct store_backend *b, struct store_op *op);
int sq_get_repository(struct store_backend *b, struct store_op *op);
int sq_reserve_id(struct store_backend *b, struct store_op *op);
int sq_create_repository(struct store_backend *b, struct store_op *op);
int sq_increment_generation(struct store_backend *b, struct store_op *op);
int sq_set_generation(struct store_backend *b, struct store_op *op);
int sq_delete_repository(struct store_backend *b, struct store_op *op);
int sq_delete_all_repositories(struct store_backend *b, struct store_op *op);
int sq_delete_replica(struct store_backend *b, struct store_op *op);
int sq_delete_invalid_replica(struct store_backend *b, struct store_op *op);
int sq_set_authoritative(struct store_backend *b, struct store_op *op);
int sq_set_primary(struct store_backend *b, struct store_op *op);
int sq_swap_primary(struct store_backend *b, struct store_op *op);
int sq_node_votes(struct store_backend *b, struct store_op *op);
int sq_set_outdated_since(struct store_backend *b, struct store_op *op);
int sq_set_assignments(struct store_backend *b, struct store_op *op);
int sq_rename_repository(struct store_backend *b, struct store_op *op);
int sq_enqueue(struct store_backend *b, struct store_op *op);
int sq_dequeue(struct store_backend *b, struct store_op *op);
int sq_acknowledge(struct store_backend *b, struct store_op *op);
int sq_heartbeat(struct store_backend *b, struct store_op *op);
int sq_acknowledge_stale(struct store_backend *b, struct store_op *op);
int sq_count_jobs(struct store_backend *b, struct store_op *op);
int sq_list_jobs(struct store_backend *b, struct store_op *op);
int sq_record_node_status(struct store_backend *b, struct store_op *op);
int sq_begin_write(struct store_backend *b, struct store_op *op);
int sq_end_write(struct store_backend *b, struct store_op *op);
int sq_recover_writes(struct store_backend *b, struct store_op *op);
/* sqlite-suspects.c */
int sq_suspect_add(struct store_backend *b, struct store_op *op);
int sq_suspect_remove(struct store_backend *b, struct store_op *op);
int sq_list_suspects(struct store_backend *b, struct store_op *op);
int sq_postpone(struct store_backend *b, struct store_op *op);
int sq_mark_unverified(struct store_backend *b, struct store_op *op);
int sq_purge_jobs(struct store_backend *b, struct store_op *op);
int sq_lease_verifications(struct store_backend *b, struct store_op *op);
int sq_end_verification(struct store_backend *b, struct store_op *op);
int sq_release_verification_leases(struct store_backend *b, struct store_op *op);
/* Insert an update/delete job (sqlite-queue.c); used by recover_writes too. */
int sq_insert_job(struct sqlite_backend *q, struct store_op *op, const struct repl_job *job);

#endif
