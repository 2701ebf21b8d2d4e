/* PostgreSQL tracking store: repositories, replicas (generations) and assignments, on upstream's tables. */
#include "pg.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "base/banned.h"

#define REPO_COLUMNS "repository_id, virtual_storage, relative_path, replica_path, \"primary\", generation"

static const char SQL_REPOS_ALL[] =
	"SELECT " REPO_COLUMNS " FROM repositories ORDER BY repository_id";
static const char SQL_REPOS_VS[] =
	"SELECT " REPO_COLUMNS " FROM repositories WHERE virtual_storage = $1 ORDER BY repository_id";
/* A page of the start-up listing: ids in ($1, $2] */
static const char SQL_REPOS_PAGE[] =
	"SELECT " REPO_COLUMNS " FROM repositories WHERE repository_id > $1 AND repository_id <= $2"
	" ORDER BY repository_id";
static const char SQL_REPO_PATH[] =
	"SELECT " REPO_COLUMNS " FROM repositories WHERE virtual_storage = $1 AND relative_path = $2";

/* As the SQLite backend: the union of replica rows (generation >= 0) and assignment rows (-1). */
#define REPLICAS(where) \
	"SELECT repository_id, storage, MAX(generation), MAX(assigned), " PG_MSZ("MAX(verified_at)") ", " \
	PG_MSZ("MAX(outdated_since)") " FROM (" \
	" SELECT repository_id, storage, generation, 0 AS assigned, verified_at, outdated_since" \
	" FROM storage_repositories " where \
	" UNION ALL" \
	" SELECT repository_id, storage, -1, 1, NULL::timestamptz, NULL::timestamptz FROM repository_assignments " where \
	") AS u GROUP BY repository_id, storage ORDER BY repository_id, storage"

static const char SQL_REPLICAS_ALL[] = REPLICAS("");
static const char SQL_REPLICAS_VS[] = REPLICAS("WHERE virtual_storage = $1");
static const char SQL_REPLICAS_ID[] = REPLICAS("WHERE repository_id = $1");
/* the replicas of a page: the same range */
static const char SQL_REPLICAS_RANGE[] = REPLICAS("WHERE repository_id > $1 AND repository_id <= $2");

static void read_repos(struct store_op *op, PGresult *res)
{
	for (int i = 0; i < PQntuples(res); i++) {
		struct store_repo *repo = store_op_add_repo(op);
		repo->id = pg_col_int(res, i, 0, 0);
		repo->virtual_storage = pg_col_text(op, res, i, 1);
		repo->relative_path = pg_col_text(op, res, i, 2);
		repo->replica_path = pg_col_text(op, res, i, 3);
		repo->primary = pg_col_text(op, res, i, 4);
		repo->generation = pg_col_int(res, i, 5, GENERATION_UNKNOWN);
	}
}

static void read_replicas(struct store_op *op, PGresult *res)
{
	size_t i = 0, alloc = 0;

	for (int row = 0; row < PQntuples(res); row++) {
		int64_t id = pg_col_int(res, row, 0, 0);
		struct store_repo *repo;
		struct store_replica *rep;

		while (i < op->nr_repos && op->repos[i].id < id) {
			i++;
			alloc = 0;
		}
		if (i == op->nr_repos || op->repos[i].id != id)
			continue;
		repo = &op->repos[i];
		ALLOC_GROW(repo->replicas, repo->nr_replicas + 1, alloc);
		rep = &repo->replicas[repo->nr_replicas++];
		rep->storage = pg_col_text(op, res, row, 1);
		rep->generation = pg_col_int(res, row, 2, GENERATION_UNKNOWN);
		rep->assigned = pg_col_int(res, row, 3, 0) != 0;
		rep->verified_at_ms = pg_col_int(res, row, 4, 0);
		rep->outdated_since_ms = pg_col_int(res, row, 5, 0);
	}
}

int pg_list_repositories(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	PGresult *res;
	int r;

	if (op->in.max) {
		/* a page (store_list_repositories_page()): ids in (in.id, in.last_id] */
		if ((r = pg_query(g, op, &res, SQL_REPOS_PAGE, "ll", op->in.id, op->in.last_id)) < 0)
			return r;
		read_repos(op, res);
		if (!op->nr_repos)
			return 0;
		if ((r = pg_query(g, op, &res, SQL_REPLICAS_RANGE, "ll", op->in.id, op->in.last_id)) < 0)
			return r;
		read_replicas(op, res);
		return 0;
	}
	if (op->in.vs)
		r = pg_query(g, op, &res, SQL_REPOS_VS, "t", op->in.vs);
	else
		r = pg_query(g, op, &res, SQL_REPOS_ALL, "");
	if (r < 0)
		return r;
	read_repos(op, res);
	if (op->in.vs)
		r = pg_query(g, op, &res, SQL_REPLICAS_VS, "t", op->in.vs);
	else
		r = pg_query(g, op, &res, SQL_REPLICAS_ALL, "");
	if (r < 0)
		return r;
	read_replicas(op, res);
	return 0;
}

static const char SQL_COUNT_REPOS[] = "SELECT COUNT(*) FROM repositories";

static const char SQL_LAST_REPO_ID[] = "SELECT COALESCE(MAX(repository_id), 0) FROM repositories";

int pg_last_repository_id(struct store_backend *b, struct store_op *op)
{
	int r = pg_int(pg_backend(b), op, &op->value, 0, SQL_LAST_REPO_ID, "");
	return r < 0 ? r : 0;
}

int pg_count_repositories(struct store_backend *b, struct store_op *op)
{
	int r = pg_int(pg_backend(b), op, &op->value, 0, SQL_COUNT_REPOS, "");
	return r < 0 ? r : 0;
}

int pg_get_repository(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	PGresult *res;
	int r;

	if ((r = pg_query(g, op, &res, SQL_REPO_PATH, "tt", op->in.vs, op->in.path)) < 0)
		return r;
	read_repos(op, res);
	if (!op->nr_repos)
		return store_op_fail(op, -ENOENT, "repository \"%s\"/\"%s\" not found", op->in.vs, op->in.path);
	if ((r = pg_query(g, op, &res, SQL_REPLICAS_ID, "l", op->repos[0].id)) < 0)
		return r;
	read_replicas(op, res);
	return 0;
}

static const char SQL_REPO_BY_PATH[] =
	"SELECT repository_id FROM repositories WHERE virtual_storage = $1 AND relative_path = $2";
static const char SQL_REPO_BY_ID[] =
	"SELECT repository_id FROM repositories WHERE repository_id = $1";
static const char SQL_NEXTVAL[] = "SELECT nextval('repositories_repository_id_seq')";

int pg_reserve_id(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	int64_t id;
	int r;

	if ((r = pg_int(g, op, &id, 0, SQL_REPO_BY_PATH, "tt", op->in.vs, op->in.path)) < 0)
		return r;
	if (r)
		return store_op_fail(op, -EEXIST, "repository already exists");
	if ((r = pg_int(g, op, &op->value, 0, SQL_NEXTVAL, "")) < 0)
		return r;
	return 0;
}

static const char SQL_INSERT_REPO[] =
	"INSERT INTO repositories (repository_id, virtual_storage, relative_path, replica_path, generation, \"primary\")"
	" VALUES ($1, $2, $3, $4, 0, $5)";
static const char SQL_INSERT_REPLICA0[] =
	"INSERT INTO storage_repositories (repository_id, virtual_storage, relative_path, storage, generation)"
	" VALUES ($1, $2, $3, $4, 0) ON CONFLICT DO NOTHING";
static const char SQL_INSERT_ASSIGNMENT[] =
	"INSERT INTO repository_assignments (repository_id, virtual_storage, relative_path, storage)"
	" VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
/* an id given explicitly is never handed out by reserve_id afterwards */
static const char SQL_SEQ_RAISE[] =
	"SELECT setval('repositories_repository_id_seq', $1::bigint)"
	" FROM repositories_repository_id_seq WHERE last_value <= $1::bigint";

static int insert_each(struct pg_backend *g, struct store_op *op, const char *sql, const struct strvec *v)
{
	for (size_t i = 0; i < v->nr; i++) {
		int r = pg_exec(g, op, sql, "lttt", op->in.id, op->in.vs, op->in.path, v->v[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

int pg_create_repository(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	const char *replica_path = op->in.replica_path ? op->in.replica_path : op->in.path;
	const char *primary = op->in.primary;
	int64_t found;
	int r;

	if ((r = pg_int(g, op, &found, 0, SQL_REPO_BY_ID, "l", op->in.id)) < 0)
		return r;
	if (r)
		return store_op_fail(op, -EEXIST, "repository id %" PRId64 " already in use", op->in.id);
	if ((r = pg_int(g, op, &found, 0, SQL_REPO_BY_PATH, "tt", op->in.vs, op->in.path)) < 0)
		return r;
	if (r)
		return store_op_fail(op, -EEXIST, "repository already exists");
	if ((r = pg_exec(g, op, SQL_INSERT_REPO, "ltttt", op->in.id, op->in.vs, op->in.path, replica_path,
			 op->in.store_primary ? primary : NULL)) < 0)
		return r;
	if (primary && (r = pg_exec(g, op, SQL_INSERT_REPLICA0, "lttt", op->in.id, op->in.vs, op->in.path,
				    primary)) < 0)
		return r;
	if ((r = insert_each(g, op, SQL_INSERT_REPLICA0, &op->in.storages)) < 0)
		return r;
	if (op->in.store_assignments) {
		if (primary && (r = pg_exec(g, op, SQL_INSERT_ASSIGNMENT, "lttt", op->in.id, op->in.vs,
					    op->in.path, primary)) < 0)
			return r;
		if ((r = insert_each(g, op, SQL_INSERT_ASSIGNMENT, &op->in.storages)) < 0 ||
		    (r = insert_each(g, op, SQL_INSERT_ASSIGNMENT, &op->in.storages2)) < 0)
			return r;
	}
	if ((r = pg_exec(g, op, SQL_SEQ_RAISE, "l", op->in.id)) < 0)
		return r;
	return 0;
}

/* FOR UPDATE: the compare-and-set below reads the generation it then writes */
static const char SQL_REPO_GEN[] =
	"SELECT generation FROM repositories WHERE repository_id = $1 FOR UPDATE";
static const char SQL_BUMP_REPLICA[] =
	"UPDATE storage_repositories SET generation = generation + 1"
	" WHERE repository_id = $1 AND storage = $2 AND generation = $3";
static const char SQL_SET_REPO_GEN[] =
	"UPDATE repositories SET generation = $2 WHERE repository_id = $1";
static const char SQL_DELETE_INTENT[] = "DELETE FROM write_intents WHERE id = $1";

int pg_increment_generation(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	int64_t gen;
	int r, bumped = 0;

	if ((r = pg_int(g, op, &gen, GENERATION_UNKNOWN, SQL_REPO_GEN, "l", op->in.id)) < 0)
		return r;
	if (!r)
		return store_op_fail(op, -ENOENT, "repository not found");
	for (size_t i = 0; gen != GENERATION_UNKNOWN && i < op->in.storages.nr; i++) {
		if ((r = pg_exec(g, op, SQL_BUMP_REPLICA, "ltl", op->in.id, op->in.storages.v[i], gen)) < 0)
			return r;
		bumped += r;
	}
	if (!bumped)
		return store_op_fail(op, -ESTALE, "write to outdated nodes");
	if ((r = pg_exec(g, op, SQL_SET_REPO_GEN, "ll", op->in.id, gen + 1)) < 0)
		return r;
	if (op->in.intent && (r = pg_exec(g, op, SQL_DELETE_INTENT, "l", op->in.intent)) < 0)
		return r;
	op->value = gen + 1;
	return 0;
}

static const char SQL_RAISE_REPO_GEN[] =
	"UPDATE repositories SET generation = $2"
	" WHERE repository_id = $1 AND COALESCE(generation, -1) < $2";
static const char SQL_UPSERT_REPLICA[] =
	"INSERT INTO storage_repositories (repository_id, virtual_storage, relative_path, storage, generation)"
	" SELECT repository_id, virtual_storage, COALESCE($3, relative_path), $2, $4"
	" FROM repositories WHERE repository_id = $1"
	" ON CONFLICT (repository_id, storage) DO UPDATE SET"
	"  relative_path = excluded.relative_path, generation = excluded.generation";

int pg_set_generation(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	int r;

	if ((r = pg_exec(g, op, SQL_RAISE_REPO_GEN, "ll", op->in.id, op->in.generation)) < 0 ||
	    (r = pg_exec(g, op, SQL_UPSERT_REPLICA, "lttl", op->in.id, op->in.storage, op->in.path,
			 op->in.generation)) < 0)
		return r;
	return 0;
}

static const char SQL_REPO_REPLICA_PATH[] =
	"SELECT repository_id, replica_path FROM repositories WHERE virtual_storage = $1 AND relative_path = $2";
static const char SQL_REPLICA_STORAGES[] =
	"SELECT storage FROM storage_repositories WHERE repository_id = $1 ORDER BY storage";
static const char SQL_DELETE_REPO[] = "DELETE FROM repositories WHERE repository_id = $1";

int pg_delete_repository(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	PGresult *res;
	int64_t id;
	int r;

	if ((r = pg_query(g, op, &res, SQL_REPO_REPLICA_PATH, "tt", op->in.vs, op->in.path)) < 0)
		return r;
	if (!PQntuples(res))
		return store_op_fail(op, -ENOENT, "repository \"%s\"/\"%s\" not found", op->in.vs, op->in.path);
	id = pg_col_int(res, 0, 0, 0);
	op->deleted_replica_path = pg_col_text(op, res, 0, 1);
	if ((r = pg_query(g, op, &res, SQL_REPLICA_STORAGES, "l", id)) < 0)
		return r;
	for (int i = 0; i < PQntuples(res); i++)
		strvec_push(&op->deleted_storages, PQgetvalue(res, i, 0));
	if ((r = pg_exec(g, op, SQL_DELETE_REPO, "l", id)) < 0)
		return r;
	return 0;
}

static const char SQL_COUNT_VS_REPOS[] = "SELECT COUNT(*) FROM repositories WHERE virtual_storage = $1";
/* upstream's replica and assignment rows carry the virtual storage themselves: removed by name too */
static const char SQL_DELETE_VS_REPLICAS[] = "DELETE FROM storage_repositories WHERE virtual_storage = $1";
static const char SQL_DELETE_VS_ASSIGNMENTS[] = "DELETE FROM repository_assignments WHERE virtual_storage = $1";
static const char SQL_DELETE_VS_REPOS[] = "DELETE FROM repositories WHERE virtual_storage = $1";

int pg_delete_all_repositories(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	int r;
	if ((r = pg_int(g, op, &op->value, 0, SQL_COUNT_VS_REPOS, "t", op->in.vs)) < 0 ||
	    (r = pg_exec(g, op, SQL_DELETE_VS_REPLICAS, "t", op->in.vs)) < 0 ||
	    (r = pg_exec(g, op, SQL_DELETE_VS_ASSIGNMENTS, "t", op->in.vs)) < 0 ||
	    (r = pg_exec(g, op, SQL_DELETE_VS_REPOS, "t", op->in.vs)) < 0)
		return r;
	return 0;
}

static const char SQL_DELETE_REPLICA[] =
	"DELETE FROM storage_repositories WHERE repository_id = $1 AND storage = $2";

int pg_delete_replica(struct store_backend *b, struct store_op *op)
{
	int r = pg_exec(pg_backend(b), op, SQL_DELETE_REPLICA, "lt", op->in.id, op->in.storage);
	return r < 0 ? r : 0;
}

static const char SQL_DELETE_REPO_IF_NO_REPLICA[] =
	"DELETE FROM repositories WHERE repository_id = $1 AND NOT EXISTS ("
	" SELECT 1 FROM storage_repositories WHERE repository_id = $1 AND storage <> $2)";

int pg_delete_invalid_replica(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	int r;

	if ((r = pg_exec(g, op, SQL_DELETE_REPLICA, "lt", op->in.id, op->in.storage)) < 0 ||
	    (r = pg_exec(g, op, SQL_DELETE_REPO_IF_NO_REPLICA, "lt", op->in.id, op->in.storage)) < 0)
		return r;
	return 0;
}

static const char SQL_BUMP_REPO[] =
	"UPDATE repositories SET generation = COALESCE(generation, -1) + 1"
	" WHERE virtual_storage = $1 AND relative_path = $2 RETURNING repository_id, generation";
static const char SQL_UPSERT_AUTHORITATIVE[] =
	"INSERT INTO storage_repositories (repository_id, virtual_storage, relative_path, storage, generation)"
	" VALUES ($1, $2, $3, $4, $5)"
	" ON CONFLICT (virtual_storage, relative_path, storage) DO UPDATE SET"
	"  repository_id = excluded.repository_id, generation = excluded.generation";

int pg_set_authoritative(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	PGresult *res;
	int64_t id, gen;
	int r;

	if ((r = pg_query(g, op, &res, SQL_BUMP_REPO, "tt", op->in.vs, op->in.path)) < 0)
		return r;
	if (!PQntuples(res))
		return store_op_fail(op, -ENOENT, "repository \"%s\"/\"%s\" not found", op->in.vs, op->in.path);
	id = pg_col_int(res, 0, 0, 0);
	gen = pg_col_int(res, 0, 1, 0);
	if ((r = pg_exec(g, op, SQL_UPSERT_AUTHORITATIVE, "ltttl", id, op->in.vs, op->in.path,
			 op->in.storage, gen)) < 0)
		return r;
	op->value = gen;
	return 0;
}

static const char SQL_SET_PRIMARY[] = "UPDATE repositories SET \"primary\" = $2 WHERE repository_id = $1";

int pg_set_primary(struct store_backend *b, struct store_op *op)
{
	int r = pg_exec(pg_backend(b), op, SQL_SET_PRIMARY, "lt", op->in.id, op->in.primary);
	if (r == 0)
		return store_op_fail(op, -ENOENT, "repository not found");
	return r < 0 ? r : 0;
}

/*
 * The compare-and-set of an election: the row changes only while it still
 * holds the primary the elector saw; a row lock orders racing electors, and
 * the second one's condition is checked again on the row the first wrote
 * (READ COMMITTED), so it changes nothing. The new primary must be up to
 * date in the database, not only in the elector's model, which may lag
 * (docs/technical/multi-praefect.md).
 */
static const char SQL_SWAP_PRIMARY[] =
	"UPDATE repositories SET \"primary\" = $3"
	" WHERE repository_id = $1 AND \"primary\" IS NOT DISTINCT FROM $2"
	" AND ($3::text IS NULL OR EXISTS (SELECT FROM storage_repositories AS sr"
	"  WHERE sr.repository_id = $1 AND sr.storage = $3 AND sr.generation = repositories.generation))";
static const char SQL_GET_PRIMARY[] = "SELECT \"primary\" FROM repositories WHERE repository_id = $1";

int pg_swap_primary(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	PGresult *res;
	int r = pg_exec(g, op, SQL_SWAP_PRIMARY, "ltt", op->in.id, op->in.expected, op->in.primary);
	if (r < 0)
		return r;
	if (r > 0) {
		op->value = 1; /* swapped */
		return 0;
	}
	if ((r = pg_query(g, op, &res, SQL_GET_PRIMARY, "l", op->in.id)) < 0)
		return r;
	if (PQntuples(res) == 0)
		return store_op_fail(op, -ENOENT, "repository not found");
	op->current = pg_col_text(op, res, 0, 0);
	return 0; /* lost: op->value stays 0, store.c reports -EAGAIN (a failed op keeps no result) */
}

static const char SQL_DELETE_ASSIGNMENTS[] = "DELETE FROM repository_assignments WHERE repository_id = $1";
static const char SQL_ASSIGN[] =
	"INSERT INTO repository_assignments (repository_id, virtual_storage, relative_path, storage)"
	" SELECT repository_id, virtual_storage, relative_path, $2 FROM repositories WHERE repository_id = $1"
	" ON CONFLICT DO NOTHING";

int pg_set_assignments(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	int64_t found;
	int r;

	if ((r = pg_int(g, op, &found, 0, SQL_REPO_BY_ID, "l", op->in.id)) < 0)
		return r;
	if (!r)
		return store_op_fail(op, -ENOENT, "repository not found");
	if ((r = pg_exec(g, op, SQL_DELETE_ASSIGNMENTS, "l", op->in.id)) < 0)
		return r;
	for (size_t i = 0; i < op->in.storages.nr; i++)
		if ((r = pg_exec(g, op, SQL_ASSIGN, "lt", op->in.id, op->in.storages.v[i])) < 0)
			return r;
	return 0;
}

static const char SQL_UNVERIFY_ID[] =
	"UPDATE storage_repositories SET verified_at = NULL"
	" WHERE repository_id = $1 AND verified_at IS NOT NULL";
static const char SQL_UNVERIFY_VS[] =
	"UPDATE storage_repositories SET verified_at = NULL"
	" WHERE verified_at IS NOT NULL AND repository_id IN"
	"  (SELECT repository_id FROM repositories WHERE virtual_storage = $1)";
static const char SQL_UNVERIFY_STORAGE[] =
	"UPDATE storage_repositories SET verified_at = NULL"
	" WHERE verified_at IS NOT NULL AND storage = $2 AND repository_id IN"
	"  (SELECT repository_id FROM repositories WHERE virtual_storage = $1)";

int pg_mark_unverified(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	int r;

	if (op->in.id > 0)
		r = pg_exec(g, op, SQL_UNVERIFY_ID, "l", op->in.id);
	else if (op->in.storage)
		r = pg_exec(g, op, SQL_UNVERIFY_STORAGE, "tt", op->in.vs, op->in.storage);
	else
		r = pg_exec(g, op, SQL_UNVERIFY_VS, "t", op->in.vs);
	if (r < 0)
		return r;
	op->value = r;
	return 0;
}

static const char SQL_RENAME_REPO[] = "UPDATE repositories SET relative_path = $2 WHERE repository_id = $1";
static const char SQL_RENAME_REPLICAS[] =
	"UPDATE storage_repositories SET relative_path = $2 WHERE repository_id = $1 AND relative_path = $3";

int pg_rename_repository(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	int64_t id, other;
	int r;

	if ((r = pg_int(g, op, &id, 0, SQL_REPO_BY_PATH, "tt", op->in.vs, op->in.path)) < 0)
		return r;
	if (!r)
		return store_op_fail(op, -ENOENT, "repository \"%s\"/\"%s\" not found", op->in.vs, op->in.path);
	if ((r = pg_int(g, op, &other, 0, SQL_REPO_BY_PATH, "tt", op->in.vs, op->in.path2)) < 0)
		return r;
	if (r)
		return store_op_fail(op, -EEXIST, "repository \"%s\"/\"%s\" already exists", op->in.vs, op->in.path2);
	/* assignment rows follow through their ON UPDATE CASCADE foreign key */
	if ((r = pg_exec(g, op, SQL_RENAME_REPO, "lt", id, op->in.path2)) < 0 ||
	    (r = pg_exec(g, op, SQL_RENAME_REPLICAS, "ltt", id, op->in.path2, op->in.path)) < 0)
		return r;
	return 0;
}

/* Unix ms, NULL for 0 (docs/technical/replication-status.md) */
static const char SQL_SET_OUTDATED_SINCE[] =
	"UPDATE storage_repositories SET outdated_since ="
	" CASE WHEN $3::bigint = 0 THEN NULL ELSE " PG_TSZ("$3") " END"
	" WHERE repository_id = $1 AND storage = $2";

int pg_set_outdated_since(struct store_backend *b, struct store_op *op)
{
	int r = pg_exec(pg_backend(b), op, SQL_SET_OUTDATED_SINCE, "ltl", op->in.id, op->in.storage, op->in.since_ms);
	return r < 0 ? r : 0;
}
