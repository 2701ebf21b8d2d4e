/*
 * Internals of the PostgreSQL backend shared by pg*.c: the connection, its
 * reconnection, and small query helpers in the style of sqlite.h. Everything
 * here runs on the store's worker thread (or, before the store starts and in
 * command-line tools, on the caller's thread), the only user of the
 * connection. docs/technical/store.md, "PostgreSQL".
 */
#ifndef STORE_PG_H
#define STORE_PG_H

#include <libpq-fe.h>
#include <stdint.h>

#include "backend.h"
#include "pg-admin.h"

struct pg_backend {
	struct store_backend base;
	PGconn *conn;
	PGresult **results;        /* results of the running op, cleared between ops */
	size_t nr_results, alloc_results;
	char sqlstate[6];          /* of the last failed statement, "" if none */
	int64_t last_ms;           /* see pg_now_ms() */
	int64_t retry_at_ms;       /* reconnection back-off: no attempt before this */
	int64_t backoff_ms;
};

static inline struct pg_backend *pg_backend(struct store_backend *b)
{
	return (struct pg_backend *)b;
}

/*
 * Run `sql` with parameters described by `types`, one letter each: 'l'
 * int64_t, 'd' int, 't' const char * (NULL is SQL NULL). Parameters go as
 * text, so the SQL casts where PostgreSQL cannot infer a type. The result
 * belongs to the backend until the op ends. Returns 0, or a negative errno
 * value with the message in `op` (-EEXIST for a unique violation).
 */
int pg_query(struct pg_backend *g, struct store_op *op, PGresult **out, const char *sql, const char *types, ...);
/* pg_query() for a statement; returns the number of rows it changed (or returned), or < 0. */
int pg_exec(struct pg_backend *g, struct store_op *op, const char *sql, const char *types, ...);
/* The first column of the first row: 1 if there was a row (`out` set, NULL reads `null_value`), 0 if none. */
int pg_int(struct pg_backend *g, struct store_op *op, int64_t *out, int64_t null_value,
	   const char *sql, const char *types, ...);
/* Cells of a result: text owned by `op` (NULL for SQL NULL), integers (`null_value` for NULL). */
const char *pg_col_text(struct store_op *op, PGresult *res, int row, int col);
int64_t pg_col_int(PGresult *res, int row, int col, int64_t null_value);

/* As sq_now_ms(): Unix ms, never going backwards within one open store. */
int64_t pg_now_ms(struct pg_backend *g);
int64_t pg_wall_ms(void);

/*
 * SQL for times. The queue's columns are upstream's `timestamp` (UTC, no
 * zone), the replica and node columns `timestamptz`; we pass and read Unix
 * milliseconds.
 */
#define PG_TS(p) "(to_timestamp(" p "::bigint / 1000.0) AT TIME ZONE 'UTC')"
#define PG_TSZ(p) "to_timestamp(" p "::bigint / 1000.0)"
#define PG_MS(col) "(extract(epoch FROM " col " AT TIME ZONE 'UTC') * 1000)::bigint"
#define PG_MSZ(col) "(extract(epoch FROM " col ") * 1000)::bigint"

int pg_list_repositories(struct store_backend *b, struct store_op *op);
int pg_count_repositories(struct store_backend *b, struct store_op *op);
int pg_last_repository_id(struct store_backend *b, struct store_op *op);
int pg_get_repository(struct store_backend *b, struct store_op *op);
int pg_reserve_id(struct store_backend *b, struct store_op *op);
int pg_create_repository(struct store_backend *b, struct store_op *op);
int pg_increment_generation(struct store_backend *b, struct store_op *op);
int pg_set_generation(struct store_backend *b, struct store_op *op);
int pg_delete_repository(struct store_backend *b, struct store_op *op);
int pg_delete_all_repositories(struct store_backend *b, struct store_op *op);
int pg_delete_replica(struct store_backend *b, struct store_op *op);
int pg_delete_invalid_replica(struct store_backend *b, struct store_op *op);
int pg_set_authoritative(struct store_backend *b, struct store_op *op);
int pg_set_primary(struct store_backend *b, struct store_op *op);
int pg_swap_primary(struct store_backend *b, struct store_op *op);
int pg_node_votes(struct store_backend *b, struct store_op *op);
int pg_set_outdated_since(struct store_backend *b, struct store_op *op);
int pg_set_assignments(struct store_backend *b, struct store_op *op);
int pg_rename_repository(struct store_backend *b, struct store_op *op);
int pg_mark_unverified(struct store_backend *b, struct store_op *op);
int pg_enqueue(struct store_backend *b, struct store_op *op);
int pg_dequeue(struct store_backend *b, struct store_op *op);
int pg_acknowledge(struct store_backend *b, struct store_op *op);
int pg_heartbeat(struct store_backend *b, struct store_op *op);
int pg_acknowledge_stale(struct store_backend *b, struct store_op *op);
int pg_count_jobs(struct store_backend *b, struct store_op *op);
int pg_list_jobs(struct store_backend *b, struct store_op *op);
int pg_record_node_status(struct store_backend *b, struct store_op *op);
int pg_postpone(struct store_backend *b, struct store_op *op);
int pg_purge_jobs(struct store_backend *b, struct store_op *op);
int pg_begin_write(struct store_backend *b, struct store_op *op);
int pg_end_write(struct store_backend *b, struct store_op *op);
int pg_recover_writes(struct store_backend *b, struct store_op *op);
/* pg-suspects.c */
int pg_suspect_add(struct store_backend *b, struct store_op *op);
int pg_suspect_remove(struct store_backend *b, struct store_op *op);
int pg_list_suspects(struct store_backend *b, struct store_op *op);
int pg_lease_verifications(struct store_backend *b, struct store_op *op);
int pg_end_verification(struct store_backend *b, struct store_op *op);
int pg_release_verification_leases(struct store_backend *b, struct store_op *op);
/* Insert an update/delete job (pg-queue.c); -EEXIST for a duplicate, the transaction intact. */
int pg_insert_job(struct pg_backend *g, struct store_op *op, const struct repl_job *job);

#endif
