/*
 * `praefect sql-migrate [-ignore-unknown] [-verbose]` and `praefect
 * sql-migrate-down [-f] N`: upstream's output (docs/technical/praefect-cli.md).
 * With PostgreSQL they apply store/pg-admin.h's migrations; serve never
 * migrates that store. The SQLite store migrates itself when it is opened,
 * so sql-migrate only opens it, and sql-migrate-down refuses.
 */
#include "cmd/cmd.h"
#include "store/store.h"
#include "store/pg-admin.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

PGconn *cmd_pg_connect(const struct praefect_config *cfg, struct strbuf *err)
{
	struct store_pg_params p;
	char port[16];

	praefect_config_pg_params(cfg, &p, port);
	return store_pg_connect(&p, err);
}

/* Go's "2006-01-02T15:04:05", local time */
static const char *stamp(char buf[32])
{
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	return buf;
}

/* `arg`: non-NULL for -verbose, which prints each migration's SQL (upstream prints its text too) */
static void progress(void *arg, const char *id, int done, int64_t ms)
{
	char t[32];
	if (!done) {
		const char *sql = arg ? store_pg_migration_sql(id) : NULL;
		printf("=  %s %s: migrating\n", stamp(t), id);
		if (sql)
			printf("\t%s\n", sql);
	} else
		printf("== %s %s: applied (%lldms)\n", stamp(t), id, (long long)ms);
	fflush(stdout);
}

static void free_ids(char **ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}

static int migrate_sqlite(const struct praefect_config *cfg)
{
	struct strbuf err = STRBUF_INIT;
	struct store *s = NULL;
	uv_loop_t loop;
	char **ids;
	size_t n;
	int rc = 0;

	if (cmd_db_pending_ids(cfg, &ids, &n, &err) < 0) {
		cmd_fatal("%s", err.buf);
		strbuf_release(&err);
		return 1;
	}
	if (!n) {
		printf("praefect sql-migrate: all migrations are up\n");
		free_ids(ids, n);
		return 0;
	}
	printf("praefect sql-migrate: migrations to apply: %zu\n\n", n);
	for (size_t i = 0; i < n; i++)
		progress(NULL, ids[i], 0, 0);
	uv_loop_init(&loop);
	if (store_open_sqlite(&loop, cfg->sqlite_path, &s, &err) < 0) {
		char t[32];
		cmd_fatal("%s: fail: %s", stamp(t), err.buf);
		rc = 1;
	} else {
		store_close(s);
		uv_run(&loop, UV_RUN_DEFAULT);
		for (size_t i = 0; i < n; i++)
			progress(NULL, ids[i], 1, 0);
		printf("\npraefect sql-migrate: OK (applied %zu migrations)\n", n);
	}
	uv_loop_close(&loop);
	free_ids(ids, n);
	strbuf_release(&err);
	return rc;
}

int cmd_sql_migrate(int argc, char **argv, void *ctx)
{
	struct praefect_config *cfg = ctx;
	struct strbuf err = STRBUF_INIT;
	int ignore_unknown = 0, verbose = 0, next, rc, applied;
	const struct cli_flag flags[] = {
		{ .name = "ignore-unknown", .type = CLI_BOOL, .on = &ignore_unknown, .help = "ignore unknown migrations" },
		{ .name = "verbose", .type = CLI_BOOL, .on = &verbose, .help = "show text of migration query" },
	};
	PGconn *c;
	char **plan;
	size_t n;

	if (cmd_flags("sql-migrate", flags, ARRAY_SIZE(flags), 0, argc, argv, &next, &rc) < 0)
		return rc;
	if (!cfg->db_postgres)
		return migrate_sqlite(cfg);
	if (!(c = cmd_pg_connect(cfg, &err)) || store_pg_migrate_plan(c, ignore_unknown, &plan, &n, &err) < 0) {
		char t[32];
		cmd_fatal("%s: fail: %s", stamp(t), err.buf);
		PQfinish(c);
		strbuf_release(&err);
		return 1;
	}
	free_ids(plan, n);
	if (!n) {
		printf("praefect sql-migrate: all migrations are up\n");
		PQfinish(c);
		return 0;
	}
	printf("praefect sql-migrate: migrations to apply: %zu\n\n", n);
	applied = store_pg_migrate(c, ignore_unknown, progress, verbose ? &verbose : NULL, &err);
	PQfinish(c);
	if (applied < 0) {
		char t[32];
		cmd_fatal("%s: fail: %s", stamp(t), err.buf);
		strbuf_release(&err);
		return 1;
	}
	printf("\npraefect sql-migrate: OK (applied %d migrations)\n", applied);
	return 0;
}

int cmd_sql_migrate_down(int argc, char **argv, void *ctx)
{
	struct praefect_config *cfg = ctx;
	struct strbuf err = STRBUF_INIT;
	int force = 0, next, rc, done;
	const struct cli_flag flags[] = {
		{ .name = "f", .type = CLI_BOOL, .on = &force, .help = "apply down-migrations" },
	};
	char **ids = NULL, *end;
	size_t n = 0;
	long max;
	PGconn *c;

	if (cmd_flags("sql-migrate-down", flags, ARRAY_SIZE(flags), CLI_STOP_AT_ARG, argc, argv, &next, &rc) < 0)
		return rc;
	if (next >= argc) {
		cmd_help(stdout, "sql-migrate-down", flags, ARRAY_SIZE(flags));
		cmd_fatal("sql-migrate-down requires a single positional argument");
		return 1;
	}
	if (next + 1 < argc) {
		cmd_help(stdout, "sql-migrate-down", flags, ARRAY_SIZE(flags));
		cmd_fatal("sql-migrate-down accepts only single positional argument");
		return 1;
	}
	max = strtol(argv[next], &end, 10);
	if (!*argv[next] || *end) {
		cmd_fatal("strconv.Atoi: parsing \"%s\": invalid syntax", argv[next]);
		return 1;
	}
	if (max < 1) {
		cmd_fatal("number of migrations to roll back must be 1 or more");
		return 1;
	}
	if (!cfg->db_postgres) {
		cmd_fatal("the SQLite tracking store has no down migrations");
		return 1;
	}
	if (!(c = cmd_pg_connect(cfg, &err)) ||
	    (done = store_pg_migrate_down(c, max > 100000 ? 100000 : (int)max, force, &ids, &n, &err)) < 0) {
		cmd_fatal("%s", err.buf);
		PQfinish(c);
		free_ids(ids, n);
		strbuf_release(&err);
		return 1;
	}
	PQfinish(c);
	if (force) {
		printf("OK (applied %d \"down\" migrations)\n", done);
	} else {
		printf("DRY RUN -- would roll back:\n\n");
		for (size_t i = 0; i < n; i++)
			printf("- %s\n", ids[i]);
		printf("\nTo apply these migrations run with -f\n");
	}
	free_ids(ids, n);
	return 0;
}
