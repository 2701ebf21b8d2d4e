/*
 * The PostgreSQL tracking store seen by tools: connecting with upstream's
 * [database] keys, the migrations (upstream's ids, then ours) and their
 * bookkeeping, for `praefect sql-migrate`, `sql-migrate-down`,
 * `sql-migrate-status`, `sql-ping` and `check`. Synchronous, caller's thread.
 * docs/technical/store.md, "PostgreSQL".
 */
#ifndef STORE_PG_ADMIN_H
#define STORE_PG_ADMIN_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "base/strbuf.h"

/* Upstream's [database] keys; NULL: libpq's default (environment, then built-in). */
struct store_pg_params {
	const char *host, *port, *user, *password, *dbname, *sslmode, *sslcert, *sslkey, *sslrootcert;
};

/*
 * The libpq keywords and values of a connection (NULL-terminated, at most
 * `room` - 1 pairs): the [database] keys set, praefect's application name, a
 * connect timeout and TCP keepalives unless a service file sets them. Values
 * point into `p` or static strings. Returns the number of pairs.
 */
#define STORE_PG_CONNINFO_MAX 20
size_t store_pg_conninfo(const struct store_pg_params *p, const char **keys, const char **values, size_t room);

/* A connection, or NULL with `err` set ("cannot connect to database: ..."). */
PGconn *store_pg_connect(const struct store_pg_params *p, struct strbuf *err);

/* Every migration id this binary knows, in order (upstream's, then ours). */
const char *const *store_pg_migrations(size_t *n);

/*
 * The SQL a migration runs, for `sql-migrate -verbose`. Upstream's ids are
 * applied together as one schema: the first one carries it, the others
 * NULL, as does an unknown id.
 */
const char *store_pg_migration_sql(const char *id);

struct store_pg_applied {
	char *id;
	int64_t at_ms;             /* -1: time unknown */
};
/* The ids in schema_migrations (none when the table does not exist); 0 or -1. */
int store_pg_applied(PGconn *c, struct store_pg_applied **out, size_t *n, struct strbuf *err);
void store_pg_applied_free(struct store_pg_applied *a, size_t n);

/*
 * Ids of known migrations not applied yet, in order. -1 when the database
 * holds an id this binary does not know and `ignore_unknown` is 0.
 */
int store_pg_migrate_plan(PGconn *c, int ignore_unknown, char ***ids, size_t *n, struct strbuf *err);

/* Called before (`done` 0) and after (`done` 1, with its duration) each migration. */
typedef void (*store_pg_progress_fn)(void *arg, const char *id, int done, int64_t ms);
/* Apply the plan; returns how many migrations were applied, or -1 with `err` set. */
int store_pg_migrate(PGconn *c, int ignore_unknown, store_pg_progress_fn cb, void *arg, struct strbuf *err);

/*
 * The last `max` applied migrations, newest first (`ids`, for a dry run);
 * with `apply` they are rolled back too. Returns how many, or -1.
 */
int store_pg_migrate_down(PGconn *c, int max, int apply, char ***ids, size_t *n, struct strbuf *err);

/*
 * 0 when every one of upstream's migrations is applied and no unknown one
 * is, else -1 saying what to do. Ours may be missing: they only add (a
 * table, a nullable column), and serve applies them itself, so that a
 * database upstream praefect migrated is used with no admin step.
 */
int store_pg_check_schema(PGconn *c, struct strbuf *err);
/* After store_pg_check_schema(): apply our own missing migrations; count or -1. */
int store_pg_migrate_ours(PGconn *c, struct strbuf *err);

#endif
