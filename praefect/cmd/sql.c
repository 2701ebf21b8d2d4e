/*
 * The tracking-store subcommands `sql-ping`, `sql-migrate-status`, and the
 * database checks of `praefect check`, for both stores: the embedded SQLite
 * file and upstream's PostgreSQL schema. They read, or write inside a
 * rolled-back transaction, so none of them migrates or changes the store
 * (docs/technical/praefect-cli.md). sql-migrate and sql-migrate-down are in
 * sql_migrate.c.
 */
#include "cmd/cmd.h"
#include "store/store.h"
#include "store/pg-admin.h"
#include "base/util.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How long a storage's last health check may be old and still count (upstream's 10 s). */
#define HEALTHY_WINDOW_MS 10000

static int open_db(const struct praefect_config *cfg, int writable, sqlite3 **db, struct strbuf *err)
{
	int rc = sqlite3_open_v2(cfg->sqlite_path, db, writable ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY, NULL);
	if (rc != SQLITE_OK) {
		strbuf_addf(err, "%s: %s", cfg->sqlite_path, *db ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
		sqlite3_close(*db);
		*db = NULL;
		return -1;
	}
	sqlite3_busy_timeout(*db, 5000);
	return 0;
}

int cmd_sql_ping(int argc, char **argv, void *ctx)
{
	struct praefect_config *cfg = ctx;
	struct strbuf err = STRBUF_INIT;
	sqlite3 *db = NULL;
	int next, rc;

	if (cmd_flags("sql-ping", NULL, 0, 0, argc, argv, &next, &rc) < 0)
		return rc;
	rc = 0;
	if (cfg->db_postgres) {
		PGconn *c = cmd_pg_connect(cfg, &err);
		PGresult *res = c ? PQexec(c, "SELECT 1") : NULL;
		if (c && (!res || PQresultStatus(res) != PGRES_TUPLES_OK))
			strbuf_addstr(&err, PQerrorMessage(c));
		if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
			cmd_fatal("praefect sql-ping: fail: sql open: send ping: %s", err.buf);
			rc = 1;
		} else {
			printf("praefect sql-ping: OK\n");
		}
		PQclear(res);
		PQfinish(c);
		strbuf_release(&err);
		return rc;
	}
	if (open_db(cfg, 0, &db, &err) < 0 ||
	    sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL) != SQLITE_OK) {
		if (db)
			strbuf_addf(&err, "%s", sqlite3_errmsg(db));
		cmd_fatal("praefect sql-ping: fail: sql open: send ping: %s", err.buf);
		rc = 1;
	} else {
		printf("praefect sql-ping: OK\n");
	}
	sqlite3_close(db);
	strbuf_release(&err);
	return rc;
}

struct applied {
	char *id;
	int64_t at_ms;     /* -1: applied, time unknown */
};

/* The store's applied migrations (none when the file or its table does not exist yet). */
static int read_applied(const struct praefect_config *cfg, struct applied **out, size_t *nr, struct strbuf *err)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st;
	size_t alloc = 0;

	*out = NULL;
	*nr = 0;
	if (cfg->db_postgres) {
		struct store_pg_applied *a;
		PGconn *c = cmd_pg_connect(cfg, err);
		int r = c ? store_pg_applied(c, &a, nr, err) : -1;

		PQfinish(c);
		if (r < 0)
			return -1;
		*out = xcalloc(*nr + 1, sizeof(**out));
		for (size_t i = 0; i < *nr; i++) {
			(*out)[i].id = a[i].id;
			(*out)[i].at_ms = a[i].at_ms;
		}
		free(a);
		return 0;
	}
	if (access(cfg->sqlite_path, F_OK) < 0)
		return 0;
	if (open_db(cfg, 0, &db, err) < 0)
		return -1;
	if (sqlite3_prepare_v2(db, "SELECT id, applied_at FROM schema_migrations ORDER BY id", -1, &st, NULL)
	    != SQLITE_OK) {
		int missing = strstr(sqlite3_errmsg(db), "no such table") != NULL;
		if (!missing)
			strbuf_addstr(err, sqlite3_errmsg(db));
		sqlite3_close(db);
		return missing ? 0 : -1;
	}
	while (sqlite3_step(st) == SQLITE_ROW) {
		ALLOC_GROW(*out, *nr + 1, alloc);
		(*out)[*nr].id = xstrdup((const char *)sqlite3_column_text(st, 0));
		(*out)[*nr].at_ms = sqlite3_column_type(st, 1) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 1);
		(*nr)++;
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return 0;
}

/* The migrations this binary knows for the configured store. */
static const char *const *known_migrations(const struct praefect_config *cfg, size_t *n)
{
	return cfg->db_postgres ? store_pg_migrations(n) : store_migrations(n);
}

static void free_applied(struct applied *a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(a[i].id);
	free(a);
}

int cmd_db_pending_ids(const struct praefect_config *cfg, char ***pending, size_t *nr, struct strbuf *err)
{
	struct applied *a;
	size_t n, known;
	const char *const *ids = known_migrations(cfg, &known);

	if (read_applied(cfg, &a, &n, err) < 0)
		return -1;
	*nr = 0;
	*pending = xcalloc(known + 1, sizeof(**pending));
	for (size_t i = 0; i < known; i++) {
		size_t k;
		for (k = 0; k < n && strcmp(a[k].id, ids[i]); k++)
			;
		if (k == n)
			(*pending)[(*nr)++] = xstrdup(ids[i]);
	}
	free_applied(a, n);
	return 0;
}

int cmd_db_pending_migrations(const struct praefect_config *cfg, size_t *pending, struct strbuf *err)
{
	char **ids;

	if (cmd_db_pending_ids(cfg, &ids, pending, err) < 0)
		return -1;
	for (size_t i = 0; i < *pending; i++)
		free(ids[i]);
	free(ids);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* tablewriter's default layout: bordered, headers centred, cells left-aligned. */
static void print_row(const char *a, const char *b, size_t w0, size_t w1, int header)
{
	if (header) {
		size_t g0 = w0 - strlen(a), g1 = w1 - strlen(b);
		printf("| %*s%s%*s | %*s%s%*s |\n", (int)(g0 / 2), "", a, (int)(g0 - g0 / 2), "", (int)(g1 / 2), "", b,
		       (int)(g1 - g1 / 2), "");
	} else {
		printf("| %-*s | %-*s |\n", (int)w0, a, (int)w1, b);
	}
}

static void print_rule(size_t w0, size_t w1)
{
	putchar('+');
	for (size_t i = 0; i < w0 + 2; i++)
		putchar('-');
	putchar('+');
	for (size_t i = 0; i < w1 + 2; i++)
		putchar('-');
	puts("+");
}

int cmd_sql_migrate_status(int argc, char **argv, void *ctx)
{
	struct praefect_config *cfg = ctx;
	struct strbuf err = STRBUF_INIT;
	struct applied *a;
	size_t n, known, nr_rows = 0, w0 = strlen("MIGRATION"), w1 = strlen("APPLIED");
	const char *const *ids = known_migrations(cfg, &known);
	const char **rows;
	char **status;
	int next, rc;

	if (cmd_flags("sql-migrate-status", NULL, 0, 0, argc, argv, &next, &rc) < 0)
		return rc;
	if (read_applied(cfg, &a, &n, &err) < 0) {
		cmd_fatal("%s", err.buf);
		strbuf_release(&err);
		return 1;
	}
	rows = xcalloc(known + n + 1, sizeof(*rows));
	for (size_t i = 0; i < known; i++)
		rows[nr_rows++] = ids[i];
	for (size_t i = 0; i < n; i++) {
		size_t k;
		for (k = 0; k < known && strcmp(ids[k], a[i].id); k++)
			;
		if (k == known)
			rows[nr_rows++] = a[i].id;
	}
	qsort(rows, nr_rows, sizeof(*rows), cmp_str);
	status = xcalloc(nr_rows + 1, sizeof(*status));
	for (size_t i = 0; i < nr_rows; i++) {
		struct strbuf sb = STRBUF_INIT;
		size_t k, j;
		for (k = 0; k < n && strcmp(a[k].id, rows[i]); k++)
			;
		for (j = 0; j < known && strcmp(ids[j], rows[i]); j++)
			;
		if (j == known)
			strbuf_addstr(&sb, "unknown migration");
		else if (k == n)
			strbuf_addstr(&sb, "no");
		else if (a[k].at_ms < 0)
			strbuf_addstr(&sb, "yes");
		else
			cli_go_time(&sb, a[k].at_ms / 1000, (long)(a[k].at_ms % 1000) * 1000000L, 0);
		status[i] = strbuf_detach(&sb, NULL);
		w0 = MAX(w0, strlen(rows[i]));
		w1 = MAX(w1, strlen(status[i]));
	}
	print_rule(w0, w1);
	print_row("MIGRATION", "APPLIED", w0, w1, 1);
	print_rule(w0, w1);
	for (size_t i = 0; i < nr_rows; i++) {
		print_row(rows[i], status[i], w0, w1, 0);
		free(status[i]);
	}
	print_rule(w0, w1);
	free(status);
	free(rows);
	free_applied(a, n);
	return 0;
}

/* The first failure of a sequence of statements, as "<what>: <message>"; 0 or -1. */
static int pg_step(PGconn *c, const char *sql, ExecStatusType want, const char *what, struct strbuf *err)
{
	PGresult *res = PQexec(c, sql);
	int ok = res && PQresultStatus(res) == want;

	if (!ok)
		strbuf_addf(err, "%s: %s", what, res ? PQresultErrorMessage(res) : PQerrorMessage(c));
	if (ok && want == PGRES_COMMAND_OK && !strncmp(sql, "INSERT", 6) && strcmp(PQcmdTuples(res), "1")) {
		strbuf_addstr(err, "failed to insert row");
		ok = 0;
	}
	PQclear(res);
	return ok ? 0 : -1;
}

static int pg_read_write(const struct praefect_config *cfg, int quiet, struct strbuf *err)
{
	PGconn *c;
	int rc = -1;

	if (!(c = cmd_pg_connect(cfg, err))) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "error opening database connection: %s", err->buf);
		strbuf_reset(err);
		strbuf_add(err, m.buf, m.len);
		strbuf_release(&m);
		return -1;
	}
	if (pg_step(c, "BEGIN", PGRES_COMMAND_OK, "error starting transaction", err) < 0 ||
	    pg_step(c, "SELECT id FROM hello_world", PGRES_TUPLES_OK, "error reading from table", err) < 0)
		goto out;
	if (!quiet)
		printf("successfully read from database\n");
	if (pg_step(c, "INSERT INTO hello_world (id) VALUES (1)", PGRES_COMMAND_OK, "error writing to table", err) < 0)
		goto out;
	if (!quiet)
		printf("successfully wrote to database\n");
	rc = 0;
out:
	PQclear(PQexec(c, "ROLLBACK"));
	PQfinish(c);
	return rc;
}

int cmd_db_read_write(const struct praefect_config *cfg, int quiet, struct strbuf *err)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int rc = -1;

	if (cfg->db_postgres)
		return pg_read_write(cfg, quiet, err);

	if (open_db(cfg, 1, &db, err) < 0) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "error opening database connection: %s", err->buf);
		strbuf_reset(err);
		strbuf_add(err, m.buf, m.len);
		strbuf_release(&m);
		return -1;
	}
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		strbuf_addf(err, "error starting transaction: %s", sqlite3_errmsg(db));
		goto out;
	}
	if (sqlite3_prepare_v2(db, "SELECT id FROM hello_world", -1, &st, NULL) != SQLITE_OK ||
	    (rc = sqlite3_step(st)) == SQLITE_ERROR) {
		strbuf_addf(err, "error reading from table: %s", sqlite3_errmsg(db));
		rc = -1;
		goto out;
	}
	rc = -1;
	if (!quiet)
		printf("successfully read from database\n");
	if (sqlite3_exec(db, "INSERT INTO hello_world (id) VALUES (1)", NULL, NULL, NULL) != SQLITE_OK) {
		strbuf_addf(err, "error writing to table: %s", sqlite3_errmsg(db));
		goto out;
	}
	if (sqlite3_changes(db) != 1) {
		strbuf_addstr(err, "failed to insert row");
		goto out;
	}
	if (!quiet)
		printf("successfully wrote to database\n");
	rc = 0;
out:
	sqlite3_finalize(st);
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(db);
	return rc;
}

/*
 * Repositories with no valid primary: no replica on the latest generation
 * that is on a storage seen healthy in the last 10 s and assigned (or the
 * repository has no assignments), per virtual storage of the config.
 */
static const char SQL_UNAVAILABLE[] =
	"SELECT r.virtual_storage, count(*) FROM repositories r WHERE NOT EXISTS ("
	"  SELECT 1 FROM storage_repositories sr WHERE sr.repository_id = r.repository_id"
	"   AND sr.generation = r.generation"
	"   AND EXISTS (SELECT 1 FROM node_status ns WHERE ns.shard_name = r.virtual_storage"
	"     AND ns.node_name = sr.storage AND ns.last_contact_attempt_at >= ?1 AND ns.last_seen_active_at >= ?1)"
	"   AND (NOT EXISTS (SELECT 1 FROM repository_assignments a WHERE a.repository_id = r.repository_id)"
	"     OR EXISTS (SELECT 1 FROM repository_assignments a WHERE a.repository_id = r.repository_id"
	"       AND a.storage = sr.storage)))"
	" GROUP BY r.virtual_storage ORDER BY r.virtual_storage";

/* SQL_UNAVAILABLE on upstream's schema, where health times are timestamptz */
static const char SQL_PG_UNAVAILABLE[] =
	"SELECT r.virtual_storage, count(*) FROM repositories r WHERE NOT EXISTS ("
	"  SELECT 1 FROM storage_repositories sr WHERE sr.repository_id = r.repository_id"
	"   AND sr.generation = r.generation"
	"   AND EXISTS (SELECT 1 FROM node_status ns WHERE ns.shard_name = r.virtual_storage"
	"     AND ns.node_name = sr.storage AND ns.last_contact_attempt_at >= now() - interval '10 seconds'"
	"     AND ns.last_seen_active_at >= now() - interval '10 seconds')"
	"   AND (NOT EXISTS (SELECT 1 FROM repository_assignments a WHERE a.repository_id = r.repository_id)"
	"     OR EXISTS (SELECT 1 FROM repository_assignments a WHERE a.repository_id = r.repository_id"
	"       AND a.storage = sr.storage)))"
	" GROUP BY r.virtual_storage ORDER BY r.virtual_storage";

static int report_unavailable(const struct praefect_config *cfg, int quiet, const char *vs, int64_t count)
{
	if (!praefect_config_vs(cfg, vs, strlen(vs)))
		return 0;
	if (!quiet)
		printf("virtual-storage \"%s\" has %lld %s unavailable.\n", vs, (long long)count,
		       count == 1 ? "repository that is" : "repositories that are");
	return 1;
}

static int pg_unavailable(const struct praefect_config *cfg, int quiet, struct strbuf *err, int *found)
{
	PGconn *c = cmd_pg_connect(cfg, err);
	PGresult *res;

	if (!c)
		return -1;
	res = PQexec(c, SQL_PG_UNAVAILABLE);
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		strbuf_addstr(err, res ? PQresultErrorMessage(res) : PQerrorMessage(c));
		PQclear(res);
		PQfinish(c);
		return -1;
	}
	for (int i = 0; i < PQntuples(res); i++)
		*found |= report_unavailable(cfg, quiet, PQgetvalue(res, i, 0), strtoll(PQgetvalue(res, i, 1), NULL, 10));
	PQclear(res);
	PQfinish(c);
	return 0;
}

int cmd_db_unavailable(const struct praefect_config *cfg, int quiet, struct strbuf *err)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st;
	struct timespec ts;
	int found = 0;

	if (cfg->db_postgres) {
		if (pg_unavailable(cfg, quiet, err, &found) < 0)
			return -1;
		goto done;
	}
	if (open_db(cfg, 0, &db, err) < 0) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "error opening database connection: %s", err->buf);
		strbuf_reset(err);
		strbuf_add(err, m.buf, m.len);
		strbuf_release(&m);
		return -1;
	}
	if (sqlite3_prepare_v2(db, SQL_UNAVAILABLE, -1, &st, NULL) != SQLITE_OK) {
		strbuf_addstr(err, sqlite3_errmsg(db));
		sqlite3_close(db);
		return -1;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	sqlite3_bind_int64(st, 1, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - HEALTHY_WINDOW_MS);
	while (sqlite3_step(st) == SQLITE_ROW)
		found |= report_unavailable(cfg, quiet, (const char *)sqlite3_column_text(st, 0),
					    sqlite3_column_int64(st, 1));
	sqlite3_finalize(st);
	sqlite3_close(db);
done:
	if (!found) {
		if (!quiet)
			printf("All repositories are available.\n");
		return 0;
	}
	strbuf_addstr(err, "repositories unavailable");
	return -1;
}
