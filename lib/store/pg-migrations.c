/*
 * Migrations of the PostgreSQL tracking store. The schema is upstream's
 * (docs/technical/store.md, "PostgreSQL"): a database migrated by upstream
 * praefect is used as it is, and one we create is recorded with upstream's
 * 42 migration ids, so that upstream praefect accepts it too. Our own
 * additions follow as migrations with later ids.
 */
#include "pg.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "base/banned.h"

/*
 * The state upstream's 42 migrations leave a database in, written from the
 * facts in docs/technical/store.md: tables, columns, types, defaults,
 * sequences, indexes, views, the notification function and its triggers.
 * It is applied as one step to a database that has none of them.
 */
static const char upstream_schema[] =
	"CREATE TYPE replication_job_state AS ENUM"
	" ('ready', 'in_progress', 'completed', 'cancelled', 'failed', 'dead');"

	"CREATE TABLE hello_world (id integer);"

	"CREATE TABLE node_status ("
	" id bigserial PRIMARY KEY,"
	" praefect_name varchar(511) NOT NULL,"
	" shard_name varchar(255) NOT NULL,"
	" node_name varchar(255) NOT NULL,"
	" last_contact_attempt_at timestamptz,"
	" last_seen_active_at timestamptz);"
	"CREATE UNIQUE INDEX shard_node_names_on_node_status_idx ON node_status (praefect_name, shard_name, node_name);"
	"CREATE INDEX shard_name_on_node_status_idx ON node_status (shard_name, node_name);"

	"CREATE TABLE shard_primaries ("
	" id bigserial PRIMARY KEY,"
	" shard_name varchar(255) NOT NULL,"
	" node_name varchar(255) NOT NULL,"
	" elected_by_praefect varchar(255) NOT NULL,"
	" elected_at timestamptz NOT NULL,"
	" read_only boolean NOT NULL DEFAULT false,"
	" demoted boolean NOT NULL DEFAULT false,"
	" previous_writable_primary text);"
	"CREATE UNIQUE INDEX shard_name_on_shard_primaries_idx ON shard_primaries (shard_name);"

	"CREATE TABLE virtual_storages ("
	" virtual_storage text PRIMARY KEY,"
	" repositories_imported boolean NOT NULL DEFAULT false);"

	"CREATE TABLE replication_queue_lock ("
	" id text PRIMARY KEY,"
	" acquired boolean NOT NULL DEFAULT false);"
	"CREATE TABLE replication_queue ("
	" id bigserial PRIMARY KEY,"
	" state replication_job_state NOT NULL DEFAULT 'ready',"
	" created_at timestamp NOT NULL DEFAULT timezone('UTC', now()),"
	" updated_at timestamp,"
	" attempt integer NOT NULL DEFAULT 3,"
	" lock_id text,"
	" job jsonb,"
	" meta jsonb);"
	"CREATE INDEX virtual_target_on_replication_queue_idx"
	" ON replication_queue ((job->>'virtual_storage'), (job->>'target_node_storage'));"
	"CREATE UNIQUE INDEX delete_replica_unique_index"
	" ON replication_queue ((job->>'virtual_storage'), (job->>'relative_path'))"
	" WHERE state NOT IN ('completed', 'cancelled', 'dead') AND job->>'change' = 'delete_replica';"
	"CREATE INDEX replication_queue_target_index"
	" ON replication_queue ((job->>'virtual_storage'), (job->>'relative_path'), (job->>'target_node_storage'),"
	"  (job->>'change')) WHERE state NOT IN ('completed', 'cancelled', 'dead');"
	"CREATE TABLE replication_queue_job_lock ("
	" job_id bigint NOT NULL REFERENCES replication_queue (id),"
	" lock_id text NOT NULL REFERENCES replication_queue_lock (id),"
	" triggered_at timestamp NOT NULL DEFAULT timezone('UTC', now()),"
	" CONSTRAINT replication_queue_job_lock_pk PRIMARY KEY (job_id, lock_id));"

	"CREATE TABLE repositories ("
	" virtual_storage text NOT NULL,"
	" relative_path text NOT NULL,"
	" generation bigint,"
	" \"primary\" text,"
	" repository_id bigserial PRIMARY KEY,"
	" replica_path text);"
	"CREATE UNIQUE INDEX repository_lookup_index ON repositories (virtual_storage, relative_path);"
	"CREATE INDEX repository_replica_path_index ON repositories (replica_path, virtual_storage);"

	"CREATE TABLE storage_repositories ("
	" virtual_storage text NOT NULL,"
	" relative_path text NOT NULL,"
	" storage text NOT NULL,"
	" generation bigint NOT NULL,"
	" repository_id bigint NOT NULL REFERENCES repositories (repository_id) ON DELETE CASCADE,"
	" verified_at timestamptz,"
	" verification_leased_until timestamptz,"
	" PRIMARY KEY (virtual_storage, relative_path, storage));"
	"CREATE UNIQUE INDEX storage_repositories_new_pkey ON storage_repositories (repository_id, storage);"
	"CREATE INDEX verification_queue ON storage_repositories (verified_at NULLS FIRST)"
	" WHERE verification_leased_until IS NULL;"
	"CREATE INDEX verification_leases ON storage_repositories (verification_leased_until)"
	" WHERE verification_leased_until IS NOT NULL;"

	"CREATE TABLE repository_assignments ("
	" virtual_storage text NOT NULL,"
	" relative_path text NOT NULL,"
	" storage text NOT NULL,"
	" repository_id bigint NOT NULL REFERENCES repositories (repository_id) ON DELETE CASCADE,"
	" PRIMARY KEY (virtual_storage, relative_path, storage),"
	" FOREIGN KEY (virtual_storage, relative_path) REFERENCES repositories (virtual_storage, relative_path)"
	"  ON UPDATE CASCADE ON DELETE CASCADE);"
	"CREATE UNIQUE INDEX repository_assignments_new_pkey ON repository_assignments (repository_id, storage);"

	"CREATE TABLE storage_cleanups ("
	" virtual_storage text NOT NULL,"
	" storage text NOT NULL,"
	" last_run timestamp,"
	" triggered_at timestamp,"
	" PRIMARY KEY (virtual_storage, storage));"

	"CREATE VIEW repository_generations AS"
	" SELECT virtual_storage, relative_path, MAX(generation) AS generation"
	" FROM storage_repositories GROUP BY virtual_storage, relative_path;"

	/* a storage counts as healthy when half the praefects that recently checked saw it alive in the last 10 s */
	"CREATE VIEW healthy_storages AS"
	" SELECT ns.shard_name AS virtual_storage, ns.node_name AS storage"
	" FROM node_status AS ns"
	" WHERE ns.last_seen_active_at >= now() - interval '10 seconds'"
	" GROUP BY ns.shard_name, ns.node_name"
	" HAVING COUNT(ns.praefect_name) >= ("
	"  SELECT CEIL(COUNT(DISTINCT p.praefect_name) / 2.0) FROM node_status AS p"
	"  WHERE p.shard_name = ns.shard_name AND p.last_contact_attempt_at >= now() - interval '1 minute')"
	" ORDER BY ns.shard_name, ns.node_name;"

	/* up to date, healthy, assigned (or the repository has no assignments), and not being deleted */
	"CREATE VIEW valid_primaries AS"
	" SELECT repository_id, virtual_storage, relative_path, storage FROM ("
	"  SELECT r.repository_id, r.virtual_storage, r.relative_path, sr.storage,"
	"   (a.storage IS NOT NULL OR bool_and(a.storage IS NULL) OVER (PARTITION BY r.repository_id)) AS eligible"
	"  FROM repositories AS r"
	"  JOIN storage_repositories AS sr ON sr.repository_id = r.repository_id AND sr.generation = r.generation"
	"  JOIN healthy_storages AS hs ON hs.virtual_storage = r.virtual_storage AND hs.storage = sr.storage"
	"  LEFT JOIN repository_assignments AS a ON a.repository_id = r.repository_id AND a.storage = sr.storage"
	"  WHERE NOT EXISTS (SELECT FROM replication_queue AS q"
	"   WHERE q.state NOT IN ('completed', 'dead', 'cancelled') AND q.job->>'change' = 'delete_replica'"
	"   AND (q.job->>'repository_id')::bigint = r.repository_id AND q.job->>'target_node_storage' = sr.storage)"
	" ) AS candidates WHERE eligible;"

	/*
	 * One NOTIFY per statement on the channel given as the trigger's last
	 * argument: a JSON array of {virtual_storage, relative_paths} for the
	 * rows inserted, deleted, or updated in generation or path. The
	 * verifier's updates (verified_at, leases) notify nobody.
	 */
	"CREATE FUNCTION notify_on_change() RETURNS trigger LANGUAGE plpgsql AS $fn$"
	" DECLARE payload jsonb;"
	" BEGIN"
	"  IF TG_OP = 'INSERT' THEN"
	"   SELECT jsonb_agg(o) INTO payload FROM ("
	"    SELECT jsonb_build_object('virtual_storage', virtual_storage,"
	"     'relative_paths', array_agg(DISTINCT relative_path)) AS o"
	"    FROM new GROUP BY virtual_storage) AS t;"
	"  ELSIF TG_OP = 'UPDATE' THEN"
	"   SELECT jsonb_agg(o) INTO payload FROM ("
	"    SELECT jsonb_build_object('virtual_storage', virtual_storage,"
	"     'relative_paths', array_agg(DISTINCT relative_path)) AS o"
	"    FROM new AS n FULL JOIN old AS o2 USING (virtual_storage, relative_path)"
	"    WHERE COALESCE(n.generation, -1) <> COALESCE(o2.generation, -1)"
	"     OR n.relative_path <> o2.relative_path"
	"    GROUP BY virtual_storage) AS t;"
	"  ELSE"
	"   SELECT jsonb_agg(o) INTO payload FROM ("
	"    SELECT jsonb_build_object('virtual_storage', virtual_storage,"
	"     'relative_paths', array_agg(DISTINCT relative_path)) AS o"
	"    FROM old GROUP BY virtual_storage) AS t;"
	"  END IF;"
	"  IF jsonb_array_length(payload) > 0 THEN"
	"   PERFORM pg_notify(TG_ARGV[TG_NARGS - 1], payload::text);"
	"  END IF;"
	"  RETURN NULL;"
	" END $fn$;"
	"CREATE TRIGGER notify_on_delete AFTER DELETE ON repositories REFERENCING OLD TABLE AS old"
	" FOR EACH STATEMENT EXECUTE PROCEDURE notify_on_change('repositories_updates');"
	"CREATE TRIGGER notify_on_insert AFTER INSERT ON storage_repositories REFERENCING NEW TABLE AS new"
	" FOR EACH STATEMENT EXECUTE PROCEDURE notify_on_change('storage_repositories_updates');"
	"CREATE TRIGGER notify_on_update AFTER UPDATE ON storage_repositories"
	" REFERENCING OLD TABLE AS old NEW TABLE AS new"
	" FOR EACH STATEMENT EXECUTE PROCEDURE notify_on_change('storage_repositories_updates');"
	"CREATE TRIGGER notify_on_delete AFTER DELETE ON storage_repositories REFERENCING OLD TABLE AS old"
	" FOR EACH STATEMENT EXECUTE PROCEDURE notify_on_change('storage_repositories_updates');"
	"INSERT INTO hello_world (id) VALUES (1);";

/* Upstream's migration ids, in order (v16.8 has 42; none was added after 2022-05-20). */
static const char *const upstream_ids[] = {
	"20200109161404_hello_world",
	"20200113151438_1_test_migration",   /* upstream's row in hello_world */
	"20200224220728_job_queue",
	"20200225220728_readd_job_queue",
	"20200324001604_add_sql_election_tables",
	"20200422131451_add_shard_read_only_column",
	"20200512131219_replication_job_indexing",
	"20200527103816_drop_old_gitaly_tables",
	"20200602154246_remember_previous_writable_primary",
	"20200707101830_repositories_table",
	"20200810055650_replication_queue_cleanup",
	"20200921154417_repositories_nullable_generation",
	"20200921170311_repositories_primary_column",
	"20201006125956_trigger_repository_update_generation",
	"20201102115118_variable_replication_factor",
	"20201102171914_virtual_storage_configuration",
	"20201126165633_repository_assignments_table",
	"20201208163237_cleanup_notifiactions_payload",
	"20201231075619_remove_unused_assigned_column",
	"20210223130233_delete_replica_unique_index",
	"20210225101159_replication_queue_target_index",
	"20210525143540_healthy_storages_view",
	"20210525173505_valid_primaries_view",
	"20210607124235_optimize_valid_primaries_view",
	"20210727085659_repository_ids",
	"20210906130405_add_replica_path",
	"20210906145021_link_repository_id",
	"20210914115710_storage_cleanups_table",
	"20210921131816_backfill_replica_path",
	"20210922091614_repository_id_primary_key_indexes",
	"20210922143752_storage_repositories_cascade_delete",
	"20210923155827_valid_primaries_view_repository_id",
	"20210927083631_repository_path_index",
	"20211018142158_valid_primaries_view_join_repo_id",
	"20211025113445_remove_cancelled_replication_events",
	"20211105100456_check_non_null_repository_id",
	"20211105100458_non_nullable_repository_id",
	"20220215160117_replication_queue_cleanup_again",
	"20220303105110_background_verification_columns",
	"20220404131105_stale_verification_lease_index",
	"20220407111624_ignore_verification_in_triggers",
	"20220520083313_remove_maintenance_replication_events",
};
#define NR_UPSTREAM ARRAY_SIZE(upstream_ids)

/*
 * Ours, after upstream's (ids sort later; upstream praefect ignores them with
 * `sql-migrate -ignore-unknown`, and its queries never see our additions):
 * write intents (see sqlite-migrations.c) and the queue's not_before; suspect
 * replicas; replicas' outdated_since; notifications of primary and assignment
 * changes.
 */
struct pg_migration {
	const char *id, *up, *down;
};

static const struct pg_migration ours[] = {
	{ "20261207000000_gitalyc_write_intents",
	  "CREATE TABLE write_intents ("
	  " id bigserial PRIMARY KEY,"
	  " repository_id bigint NOT NULL REFERENCES repositories (repository_id) ON DELETE CASCADE,"
	  " created_at timestamp NOT NULL DEFAULT timezone('UTC', now()));"
	  "CREATE INDEX write_intents_repository_id_idx ON write_intents (repository_id);"
	  "ALTER TABLE replication_queue ADD COLUMN not_before timestamp;",
	  "DROP TABLE write_intents;"
	  "ALTER TABLE replication_queue DROP COLUMN not_before;" },
	{ "20261207100000_gitalyc_suspect_replicas",
	  "CREATE TABLE suspect_replicas ("
	  " repository_id bigint NOT NULL REFERENCES repositories (repository_id) ON DELETE CASCADE,"
	  " storage text NOT NULL,"
	  " avoid boolean NOT NULL,"
	  " created_at timestamp NOT NULL DEFAULT timezone('UTC', now()),"
	  " PRIMARY KEY (repository_id, storage));",
	  "DROP TABLE suspect_replicas;" },
	/* when a replica was first seen behind, NULL while in sync (docs/technical/replication-status.md) */
	{ "20261207110000_gitalyc_outdated_since",
	  "ALTER TABLE storage_repositories ADD COLUMN outdated_since timestamptz;",
	  "ALTER TABLE storage_repositories DROP COLUMN outdated_since;" },
	/* whose write intent it is: recover_writes takes only its own ('' before this column) */
	{ "20261207120000_gitalyc_write_intents_praefect",
	  "ALTER TABLE write_intents ADD COLUMN praefect_name text NOT NULL DEFAULT '';",
	  "ALTER TABLE write_intents DROP COLUMN praefect_name;" },
	/*
	 * Upstream's triggers do not notify primary or assignment changes; other
	 * praefects' models need them (docs/technical/multi-praefect.md, "The
	 * listener"). Same channel and payload as upstream's repositories_updates,
	 * so an upstream praefect listening only drops a cache entry more.
	 */
	{ "20261207130000_gitalyc_notify_primary_assignments",
	  "CREATE FUNCTION gitalyc_notify_repository_change() RETURNS trigger LANGUAGE plpgsql AS $fn$"
	  " DECLARE payload jsonb;"
	  " BEGIN"
	  "  IF TG_OP = 'UPDATE' THEN"
	  "   SELECT jsonb_agg(o) INTO payload FROM ("
	  "    SELECT jsonb_build_object('virtual_storage', n.virtual_storage,"
	  "     'relative_paths', array_agg(DISTINCT n.relative_path)) AS o"
	  "    FROM new AS n JOIN old AS o2 USING (repository_id)"
	  "    WHERE n.\"primary\" IS DISTINCT FROM o2.\"primary\""
	  "    GROUP BY n.virtual_storage) AS t;"
	  "  ELSIF TG_OP = 'INSERT' THEN"
	  "   SELECT jsonb_agg(o) INTO payload FROM ("
	  "    SELECT jsonb_build_object('virtual_storage', virtual_storage,"
	  "     'relative_paths', array_agg(DISTINCT relative_path)) AS o"
	  "    FROM new GROUP BY virtual_storage) AS t;"
	  "  ELSE"
	  "   SELECT jsonb_agg(o) INTO payload FROM ("
	  "    SELECT jsonb_build_object('virtual_storage', virtual_storage,"
	  "     'relative_paths', array_agg(DISTINCT relative_path)) AS o"
	  "    FROM old GROUP BY virtual_storage) AS t;"
	  "  END IF;"
	  "  IF jsonb_array_length(payload) > 0 THEN"
	  "   PERFORM pg_notify('repositories_updates', payload::text);"
	  "  END IF;"
	  "  RETURN NULL;"
	  " END $fn$;"
	  "CREATE TRIGGER gitalyc_notify_on_update AFTER UPDATE ON repositories"
	  " REFERENCING OLD TABLE AS old NEW TABLE AS new"
	  " FOR EACH STATEMENT EXECUTE PROCEDURE gitalyc_notify_repository_change();"
	  "CREATE TRIGGER gitalyc_notify_on_insert AFTER INSERT ON repository_assignments REFERENCING NEW TABLE AS new"
	  " FOR EACH STATEMENT EXECUTE PROCEDURE gitalyc_notify_repository_change();"
	  "CREATE TRIGGER gitalyc_notify_on_delete AFTER DELETE ON repository_assignments REFERENCING OLD TABLE AS old"
	  " FOR EACH STATEMENT EXECUTE PROCEDURE gitalyc_notify_repository_change();",
	  "DROP TRIGGER gitalyc_notify_on_update ON repositories;"
	  "DROP TRIGGER gitalyc_notify_on_insert ON repository_assignments;"
	  "DROP TRIGGER gitalyc_notify_on_delete ON repository_assignments;"
	  "DROP FUNCTION gitalyc_notify_repository_change();" },
};

static const char *all_ids[NR_UPSTREAM + ARRAY_SIZE(ours) + 1];

const char *const *store_pg_migrations(size_t *n)
{
	if (!all_ids[0]) {
		for (size_t i = 0; i < NR_UPSTREAM; i++)
			all_ids[i] = upstream_ids[i];
		for (size_t i = 0; i < ARRAY_SIZE(ours); i++)
			all_ids[NR_UPSTREAM + i] = ours[i].id;
	}
	if (n)
		*n = NR_UPSTREAM + ARRAY_SIZE(ours);
	return all_ids;
}

static int known_index(const char *id);

const char *store_pg_migration_sql(const char *id)
{
	int k = known_index(id);
	if (k < 0)
		return NULL;
	if ((size_t)k < NR_UPSTREAM)
		return k == 0 ? upstream_schema : NULL;
	return ours[k - NR_UPSTREAM].up;
}

static int known_index(const char *id)
{
	size_t n;
	const char *const *ids = store_pg_migrations(&n);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(ids[i], id))
			return (int)i;
	return -1;
}

/* --- plumbing --- */

static void rtrim(struct strbuf *sb)
{
	while (sb->len && (sb->buf[sb->len - 1] == '\n' || sb->buf[sb->len - 1] == ' '))
		sb->buf[--sb->len] = '\0';
}

static int run(PGconn *c, const char *sql, struct strbuf *err)
{
	PGresult *res = PQexec(c, sql);
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

	if (!ok) {
		const char *m = res ? PQresultErrorMessage(res) : PQerrorMessage(c);
		size_t len = strlen(m);
		while (len && (m[len - 1] == '\n' || m[len - 1] == ' '))
			len--;
		strbuf_add(err, m, len);
	}
	PQclear(res);
	return ok ? 0 : -1;
}

static int64_t ms_of(PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? -1 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

int store_pg_applied(PGconn *c, struct store_pg_applied **out, size_t *n, struct strbuf *err)
{
	PGresult *res;
	int rows;

	*out = NULL;
	*n = 0;
	res = PQexec(c, "SELECT id, " PG_MSZ("applied_at") " FROM schema_migrations ORDER BY id");
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
		/* undefined_table: a database nothing migrated yet */
		int missing = state && !strcmp(state, "42P01");
		if (!missing) {
			strbuf_addstr(err, "reading schema_migrations: ");
			strbuf_addstr(err, res ? PQresultErrorMessage(res) : PQerrorMessage(c));
			rtrim(err);
		}
		PQclear(res);
		return missing ? 0 : -1;
	}
	rows = PQntuples(res);
	*out = xcalloc((size_t)rows + 1, sizeof(**out));
	for (int i = 0; i < rows; i++) {
		(*out)[i].id = xstrdup(PQgetvalue(res, i, 0));
		(*out)[i].at_ms = ms_of(res, i, 1);
	}
	*n = (size_t)rows;
	PQclear(res);
	return 0;
}

void store_pg_applied_free(struct store_pg_applied *a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(a[i].id);
	free(a);
}

static int is_applied(const struct store_pg_applied *a, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(a[i].id, id))
			return 1;
	return 0;
}

static void free_ids(char **ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}

int store_pg_migrate_plan(PGconn *c, int ignore_unknown, char ***ids, size_t *n, struct strbuf *err)
{
	struct store_pg_applied *a;
	size_t nr, known, nr_upstream = 0;
	const char *const *all = store_pg_migrations(&known);

	*ids = NULL;
	*n = 0;
	if (store_pg_applied(c, &a, &nr, err) < 0)
		return -1;
	for (size_t i = 0; i < nr; i++) {
		if (known_index(a[i].id) < 0 && !ignore_unknown) {
			/* upstream's sql-migrate says the same, in its words */
			strbuf_addf(err, "unknown migration in database: %s", a[i].id);
			store_pg_applied_free(a, nr);
			return -1;
		}
		if (known_index(a[i].id) >= 0 && (size_t)known_index(a[i].id) < NR_UPSTREAM)
			nr_upstream++;
	}
	if (nr_upstream && nr_upstream < NR_UPSTREAM) {
		strbuf_addf(err, "the database has %zu of upstream's %zu migrations: migrate it with upstream's "
			    "praefect (v14 or later) first", nr_upstream, (size_t)NR_UPSTREAM);
		store_pg_applied_free(a, nr);
		return -1;
	}
	*ids = xcalloc(known + 1, sizeof(**ids));
	for (size_t i = 0; i < known; i++)
		if (!is_applied(a, nr, all[i]))
			(*ids)[(*n)++] = xstrdup(all[i]);
	store_pg_applied_free(a, nr);
	return 0;
}

int store_pg_check_schema(PGconn *c, struct strbuf *err)
{
	struct strbuf why = STRBUF_INIT;
	size_t n, missing_upstream = 0;
	char **ids;

	if (store_pg_migrate_plan(c, 0, &ids, &n, &why) < 0) {
		strbuf_addf(err, "tracking database: %s", why.buf);
		strbuf_release(&why);
		return -1;
	}
	strbuf_release(&why);
	for (size_t i = 0; i < n; i++)
		if ((size_t)known_index(ids[i]) < NR_UPSTREAM)
			missing_upstream++;
	if (missing_upstream)
		strbuf_addf(err, "tracking database: %zu migration%s not applied (first: %s): run `praefect sql-migrate`",
			    missing_upstream, missing_upstream == 1 ? "" : "s", ids[0]);
	free_ids(ids, n);
	return missing_upstream ? -1 : 0;
}

int store_pg_migrate_ours(PGconn *c, struct strbuf *err)
{
	return store_pg_migrate(c, 0, NULL, NULL, err);
}

/* Serialises migrators of one database (two praefects starting sql-migrate at once). */
#define LOCK "SELECT pg_advisory_xact_lock(7298110)"
#define RECORD "INSERT INTO schema_migrations (id, applied_at) VALUES ($1, now())"

static int record(PGconn *c, const char *id, struct strbuf *err)
{
	const char *v[1] = { id };
	PGresult *res = PQexecParams(c, RECORD, 1, NULL, v, NULL, NULL, 0);
	int ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok) {
		strbuf_addstr(err, res ? PQresultErrorMessage(res) : PQerrorMessage(c));
		rtrim(err);
	}
	PQclear(res);
	return ok ? 0 : -1;
}

static int fail_tx(PGconn *c, const char *id, struct strbuf *why, struct strbuf *err)
{
	strbuf_addf(err, "migration \"%s\" failed: %s", id, why->buf);
	strbuf_release(why);
	PQclear(PQexec(c, "ROLLBACK"));
	return -1;
}

int store_pg_migrate(PGconn *c, int ignore_unknown, store_pg_progress_fn cb, void *arg, struct strbuf *err)
{
	char **plan;
	size_t n;
	int applied = 0;

	if (run(c, "CREATE TABLE IF NOT EXISTS schema_migrations (id text NOT NULL PRIMARY KEY, applied_at timestamptz)",
		err) < 0 ||
	    store_pg_migrate_plan(c, ignore_unknown, &plan, &n, err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		struct strbuf why = STRBUF_INIT;
		int k = known_index(plan[i]);
		int64_t start = pg_wall_ms();
		size_t last = i;

		if (cb)
			cb(arg, plan[i], 0, 0);
		if (run(c, "BEGIN", &why) < 0 || run(c, LOCK, &why) < 0)
			goto fail;
		if ((size_t)k < NR_UPSTREAM) {
			/* upstream's ids go together: they are one schema here (plan_* refuses a partial set) */
			last = i;
			while (last + 1 < n && (size_t)known_index(plan[last + 1]) < NR_UPSTREAM)
				last++;
			if (run(c, upstream_schema, &why) < 0)
				goto fail;
			for (size_t j = i; j <= last; j++)
				if (record(c, plan[j], &why) < 0)
					goto fail;
		} else {
			if (run(c, ours[k - NR_UPSTREAM].up, &why) < 0 || record(c, plan[i], &why) < 0)
				goto fail;
		}
		if (run(c, "COMMIT", &why) < 0)
			goto fail;
		for (size_t j = i; j <= last; j++) {
			if (cb && j > i)
				cb(arg, plan[j], 0, 0);
			if (cb)
				cb(arg, plan[j], 1, pg_wall_ms() - start);
			applied++;
		}
		strbuf_release(&why);
		i = last;
		continue;
fail:
		fail_tx(c, plan[i], &why, err);
		free_ids(plan, n);
		return -1;
	}
	free_ids(plan, n);
	return applied;
}

int store_pg_migrate_down(PGconn *c, int max, int apply, char ***ids, size_t *n, struct strbuf *err)
{
	struct store_pg_applied *a;
	size_t nr;
	int done = 0;

	*ids = NULL;
	*n = 0;
	if (store_pg_applied(c, &a, &nr, err) < 0)
		return -1;
	*ids = xcalloc(nr + 1, sizeof(**ids));
	/* newest first: applied ids sort by time stamp */
	for (size_t i = nr; i-- > 0 && *n < (size_t)max;)
		(*ids)[(*n)++] = xstrdup(a[i].id);
	store_pg_applied_free(a, nr);
	for (size_t i = 0; i < *n; i++) {
		int k = known_index((*ids)[i]);
		if (k < 0) {
			strbuf_addf(err, "unknown migration in database: %s", (*ids)[i]);
			return -1;
		}
		if ((size_t)k < NR_UPSTREAM) {
			strbuf_addf(err, "migration \"%s\" is upstream's schema and cannot be rolled back by this "
				    "praefect", (*ids)[i]);
			return -1;
		}
	}
	if (!apply)
		return (int)*n;
	for (size_t i = 0; i < *n; i++) {
		struct strbuf why = STRBUF_INIT;
		const char *v[1] = { (*ids)[i] };
		PGresult *res;
		int k = known_index((*ids)[i]);

		if (run(c, "BEGIN", &why) < 0 || run(c, LOCK, &why) < 0 || run(c, ours[k - NR_UPSTREAM].down, &why) < 0)
			return fail_tx(c, (*ids)[i], &why, err);
		res = PQexecParams(c, "DELETE FROM schema_migrations WHERE id = $1", 1, NULL, v, NULL, NULL, 0);
		if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
			strbuf_addstr(&why, res ? PQresultErrorMessage(res) : PQerrorMessage(c));
			PQclear(res);
			return fail_tx(c, (*ids)[i], &why, err);
		}
		PQclear(res);
		if (run(c, "COMMIT", &why) < 0)
			return fail_tx(c, (*ids)[i], &why, err);
		strbuf_release(&why);
		done++;
	}
	return done;
}
