/* SQLite tracking store: repositories, replicas (generations) and assignments. */
#include "sqlite.h"

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
	"SELECT " REPO_COLUMNS " FROM repositories WHERE virtual_storage = ?1 ORDER BY repository_id";
/* A page of the start-up listing: ids in (?1, ?2] */
static const char SQL_REPOS_PAGE[] =
	"SELECT " REPO_COLUMNS " FROM repositories WHERE repository_id > ?1 AND repository_id <= ?2"
	" ORDER BY repository_id";
static const char SQL_REPO_PATH[] =
	"SELECT " REPO_COLUMNS " FROM repositories WHERE virtual_storage = ?1 AND relative_path = ?2";

/*
 * Replicas are the union of replica rows and assignment rows: a storage only
 * assigned reads as generation -1, one only holding a replica as unassigned.
 * Both tables are read in (repository_id, storage) order, along their unique
 * indexes, and merged here: no temporary B-tree for a GROUP BY, which made
 * the start-up listing of a million repositories several times slower.
 */
#define REPLICA_ROWS(where) \
	"SELECT repository_id, storage, generation, verified_at, outdated_since FROM storage_repositories " where \
	" ORDER BY repository_id, storage"
#define ASSIGNMENT_ROWS(where) \
	"SELECT repository_id, storage FROM repository_assignments " where " ORDER BY repository_id, storage"

static const char SQL_REPLICAS_ALL[] = REPLICA_ROWS("");
static const char SQL_REPLICAS_VS[] = REPLICA_ROWS("WHERE virtual_storage = ?1");
static const char SQL_REPLICAS_ID[] = REPLICA_ROWS("WHERE repository_id = ?1");
/* the replicas of a page: the same range */
static const char SQL_REPLICAS_RANGE[] = REPLICA_ROWS("WHERE repository_id > ?1 AND repository_id <= ?2");
static const char SQL_ASSIGNED_ALL[] = ASSIGNMENT_ROWS("");
static const char SQL_ASSIGNED_VS[] = ASSIGNMENT_ROWS("WHERE virtual_storage = ?1");
static const char SQL_ASSIGNED_ID[] = ASSIGNMENT_ROWS("WHERE repository_id = ?1");
static const char SQL_ASSIGNED_RANGE[] = ASSIGNMENT_ROWS("WHERE repository_id > ?1 AND repository_id <= ?2");

/*
 * Names repeated on every row (virtual storages, storages, primaries): kept
 * once per listing. `cache` holds the distinct ones seen so far; past its
 * size they are kept row by row, as any other text.
 */
struct names {
	const char *v[16];
	size_t nr;
};

static const char *kept_name(struct store_op *op, sqlite3_stmt *st, int col, struct names *c)
{
	const char *s = (const char *)sqlite3_column_text(st, col);
	const char *k;
	if (!s)
		return NULL;
	for (size_t i = 0; i < c->nr; i++)
		if (!strcmp(c->v[i], s))
			return c->v[i];
	k = store_op_keep(op, s);
	if (c->nr < ARRAY_SIZE(c->v))
		c->v[c->nr++] = k;
	return k;
}

static int read_repos(struct sqlite_backend *q, struct store_op *op, sqlite3_stmt *st)
{
	struct names names = { { NULL }, 0 };
	int r;

	while ((r = sq_next(q, op, st)) > 0) {
		struct store_repo *repo = store_op_add_repo(op);
		repo->id = sqlite3_column_int64(st, 0);
		repo->virtual_storage = kept_name(op, st, 1, &names);
		repo->relative_path = sq_text(op, st, 2);
		repo->replica_path = sq_text(op, st, 3);
		repo->primary = kept_name(op, st, 4, &names);
		repo->generation = sqlite3_column_type(st, 5) == SQLITE_NULL ? GENERATION_UNKNOWN
									 : sqlite3_column_int64(st, 5);
	}
	return r;
}

/* Attach replica rows (ordered by repository id) to op->repos (ordered the same way). */
static int read_replicas(struct sqlite_backend *q, struct store_op *op, sqlite3_stmt *st, struct names *names)
{
	size_t i = 0, alloc = 0;
	int r;

	while ((r = sq_next(q, op, st)) > 0) {
		int64_t id = sqlite3_column_int64(st, 0);
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
		rep->storage = kept_name(op, st, 1, names);
		rep->generation = sqlite3_column_int64(st, 2);
		rep->assigned = 0;
		rep->verified_at_ms = sqlite3_column_type(st, 3) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 3);
		rep->outdated_since_ms = sqlite3_column_type(st, 4) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 4);
	}
	return r;
}

/*
 * Merge assignment rows (ordered as the replica rows) into op->repos: an
 * assigned replica row gets `assigned`, an assigned storage without one a
 * replica at GENERATION_UNKNOWN, in storage order among the others.
 */
static int read_assignments(struct sqlite_backend *q, struct store_op *op, sqlite3_stmt *st, struct names *names)
{
	size_t i = 0;
	int r;

	while ((r = sq_next(q, op, st)) > 0) {
		int64_t id = sqlite3_column_int64(st, 0);
		const char *storage = (const char *)sqlite3_column_text(st, 1);
		struct store_repo *repo;
		size_t k;

		while (i < op->nr_repos && op->repos[i].id < id)
			i++;
		if (i == op->nr_repos || op->repos[i].id != id || !storage)
			continue;
		repo = &op->repos[i];
		for (k = 0; k < repo->nr_replicas && strcmp(repo->replicas[k].storage, storage) < 0; k++)
			;
		if (k < repo->nr_replicas && !strcmp(repo->replicas[k].storage, storage)) {
			repo->replicas[k].assigned = 1;
			continue;
		}
		/* read_replicas() allocated at least nr_replicas: one more, exactly */
		repo->replicas = xrealloc(repo->replicas, (repo->nr_replicas + 1) * sizeof(*repo->replicas));
		memmove(&repo->replicas[k + 1], &repo->replicas[k], (repo->nr_replicas - k) * sizeof(*repo->replicas));
		repo->nr_replicas++;
		repo->replicas[k] = (struct store_replica){ kept_name(op, st, 1, names), GENERATION_UNKNOWN, 1, 0, 0 };
	}
	return r;
}

/*
 * The replicas of op->repos: `in`'s types and its values select them as `rows`
 * and `assigned` do: "" none, "t" one text, "l" one id, "ll" two ids.
 */
static int query_by(struct sqlite_backend *q, struct store_op *op, sqlite3_stmt **st, const char *sql,
		    const char *types, const void *in)
{
	if (!*types)
		return sq_query(q, op, st, sql, "");
	if (*types == 't')
		return sq_query(q, op, st, sql, "t", (const char *)in);
	if (!types[1])
		return sq_query(q, op, st, sql, "l", *(const int64_t *)in);
	return sq_query(q, op, st, sql, "ll", ((const int64_t *)in)[0], ((const int64_t *)in)[1]);
}

static int read_all_replicas(struct sqlite_backend *q, struct store_op *op, const char *rows, const char *assigned,
			     const char *types, const void *in)
{
	struct names names = { { NULL }, 0 };
	sqlite3_stmt *st;
	int r;

	if ((r = query_by(q, op, &st, rows, types, in)) < 0 || (r = read_replicas(q, op, st, &names)) < 0)
		return r;
	if ((r = query_by(q, op, &st, assigned, types, in)) < 0 || (r = read_assignments(q, op, st, &names)) < 0)
		return r;
	return 0;
}

int sq_list_repositories(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	sqlite3_stmt *st;
	int r;

	if (op->in.max) {
		/* a page (store_list_repositories_page()): ids in (in.id, in.last_id] */
		int64_t range[2] = { op->in.id, op->in.last_id };
		if ((r = sq_query(q, op, &st, SQL_REPOS_PAGE, "ll", range[0], range[1])) < 0 ||
		    (r = read_repos(q, op, st)) < 0)
			return r;
		if (!op->nr_repos)
			return 0;
		return read_all_replicas(q, op, SQL_REPLICAS_RANGE, SQL_ASSIGNED_RANGE, "ll", range);
	}
	if (op->in.vs)
		r = sq_query(q, op, &st, SQL_REPOS_VS, "t", op->in.vs);
	else
		r = sq_query(q, op, &st, SQL_REPOS_ALL, "");
	if (r < 0 || (r = read_repos(q, op, st)) < 0)
		return r;
	if (op->in.vs)
		return read_all_replicas(q, op, SQL_REPLICAS_VS, SQL_ASSIGNED_VS, "t", op->in.vs);
	return read_all_replicas(q, op, SQL_REPLICAS_ALL, SQL_ASSIGNED_ALL, "", NULL);
}

static const char SQL_COUNT_REPOS[] = "SELECT COUNT(*) FROM repositories";

static const char SQL_LAST_REPO_ID[] = "SELECT COALESCE(MAX(repository_id), 0) FROM repositories";

int sq_last_repository_id(struct store_backend *b, struct store_op *op)
{
	int r = sq_int(sq_backend(b), op, &op->value, 0, SQL_LAST_REPO_ID, "");
	return r < 0 ? r : 0;
}

int sq_count_repositories(struct store_backend *b, struct store_op *op)
{
	int r = sq_int(sq_backend(b), op, &op->value, 0, SQL_COUNT_REPOS, "");
	return r < 0 ? r : 0;
}

int sq_get_repository(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	sqlite3_stmt *st;
	int r;

	if ((r = sq_query(q, op, &st, SQL_REPO_PATH, "tt", op->in.vs, op->in.path)) < 0 ||
	    (r = read_repos(q, op, st)) < 0)
		return r;
	if (!op->nr_repos)
		return store_op_fail(op, -ENOENT, "repository \"%s\"/\"%s\" not found",
				     op->in.vs, op->in.path);
	return read_all_replicas(q, op, SQL_REPLICAS_ID, SQL_ASSIGNED_ID, "l", &op->repos[0].id);
}

static const char SQL_REPO_BY_PATH[] =
	"SELECT repository_id FROM repositories WHERE virtual_storage = ?1 AND relative_path = ?2";
static const char SQL_REPO_BY_ID[] =
	"SELECT repository_id FROM repositories WHERE repository_id = ?1";
static const char SQL_NEXTVAL[] =
	"UPDATE sequences SET value = value + 1 WHERE name = 'repositories_repository_id_seq' RETURNING value";

int sq_reserve_id(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	int64_t id;
	int r;

	if ((r = sq_int(q, op, &id, 0, SQL_REPO_BY_PATH, "tt", op->in.vs, op->in.path)) < 0)
		return r;
	if (r)
		return store_op_fail(op, -EEXIST, "repository already exists");
	if ((r = sq_int(q, op, &op->value, 0, SQL_NEXTVAL, "")) < 0)
		return r;
	if (!r)
		return store_op_fail(op, -EIO, "repository id sequence missing");
	return 0;
}

static const char SQL_INSERT_REPO[] =
	"INSERT INTO repositories (repository_id, virtual_storage, relative_path, replica_path, generation, \"primary\")"
	" VALUES (?1, ?2, ?3, ?4, 0, ?5)";
static const char SQL_INSERT_REPLICA0[] =
	"INSERT INTO storage_repositories (repository_id, virtual_storage, relative_path, storage, generation)"
	" VALUES (?1, ?2, ?3, ?4, 0) ON CONFLICT DO NOTHING";
static const char SQL_INSERT_ASSIGNMENT[] =
	"INSERT INTO repository_assignments (repository_id, virtual_storage, relative_path, storage)"
	" VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING";
/* ids given explicitly must not be handed out again by reserve_id */
static const char SQL_SEQ_RAISE[] =
	"UPDATE sequences SET value = MAX(value, ?1) WHERE name = 'repositories_repository_id_seq'";

static int insert_each(struct sqlite_backend *q, struct store_op *op, const char *sql, const struct strvec *v)
{
	for (size_t i = 0; i < v->nr; i++) {
		int r = sq_exec(q, op, sql, "lttt", op->in.id, op->in.vs, op->in.path, v->v[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

int sq_create_repository(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	const char *replica_path = op->in.replica_path ? op->in.replica_path : op->in.path;
	const char *primary = op->in.primary;
	int64_t found;
	int r;

	if ((r = sq_int(q, op, &found, 0, SQL_REPO_BY_ID, "l", op->in.id)) < 0)
		return r;
	if (r)
		return store_op_fail(op, -EEXIST, "repository id %" PRId64 " already in use", op->in.id);
	if ((r = sq_int(q, op, &found, 0, SQL_REPO_BY_PATH, "tt", op->in.vs, op->in.path)) < 0)
		return r;
	if (r)
		return store_op_fail(op, -EEXIST, "repository already exists");
	if ((r = sq_exec(q, op, SQL_INSERT_REPO, "lttt" "t", op->in.id, op->in.vs, op->in.path, replica_path,
			 op->in.store_primary ? primary : NULL)) < 0)
		return r;
	if (primary && (r = sq_exec(q, op, SQL_INSERT_REPLICA0, "lttt", op->in.id, op->in.vs,
				    op->in.path, primary)) < 0)
		return r;
	if ((r = insert_each(q, op, SQL_INSERT_REPLICA0, &op->in.storages)) < 0)
		return r;
	if (op->in.store_assignments) {
		if (primary && (r = sq_exec(q, op, SQL_INSERT_ASSIGNMENT, "lttt", op->in.id, op->in.vs,
					    op->in.path, primary)) < 0)
			return r;
		if ((r = insert_each(q, op, SQL_INSERT_ASSIGNMENT, &op->in.storages)) < 0 ||
		    (r = insert_each(q, op, SQL_INSERT_ASSIGNMENT, &op->in.storages2)) < 0)
			return r;
	}
	if ((r = sq_exec(q, op, SQL_SEQ_RAISE, "l", op->in.id)) < 0)
		return r;
	return 0;
}

static const char SQL_REPO_GEN[] =
	"SELECT generation FROM repositories WHERE repository_id = ?1";
static const char SQL_BUMP_REPLICA[] =
	"UPDATE storage_repositories SET generation = generation + 1"
	" WHERE repository_id = ?1 AND storage = ?2 AND generation = ?3";
static const char SQL_SET_REPO_GEN[] =
	"UPDATE repositories SET generation = ?2 WHERE repository_id = ?1";

static const char SQL_DELETE_INTENT[] = "DELETE FROM write_intents WHERE id = ?1";

int sq_increment_generation(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	int64_t gen;
	int r, bumped = 0;

	if ((r = sq_int(q, op, &gen, GENERATION_UNKNOWN, SQL_REPO_GEN, "l", op->in.id)) < 0)
		return r;
	if (!r)
		return store_op_fail(op, -ENOENT, "repository not found");
	/* a NULL (legacy) repository generation matches no replica, as upstream's join */
	for (size_t i = 0; gen != GENERATION_UNKNOWN && i < op->in.storages.nr; i++) {
		/* a storage named twice was bumped already and no longer matches */
		if ((r = sq_exec(q, op, SQL_BUMP_REPLICA, "ltl", op->in.id, op->in.storages.v[i], gen)) < 0)
			return r;
		bumped += r;
	}
	if (!bumped)
		return store_op_fail(op, -ESTALE, "write to outdated nodes");
	if ((r = sq_exec(q, op, SQL_SET_REPO_GEN, "ll", op->in.id, gen + 1)) < 0)
		return r;
	/* store_complete_write(): the write's intent goes in the same savepoint */
	if (op->in.intent && (r = sq_exec(q, op, SQL_DELETE_INTENT, "l", op->in.intent)) < 0)
		return r;
	op->value = gen + 1;
	return 0;
}

static const char SQL_RAISE_REPO_GEN[] =
	"UPDATE repositories SET generation = ?2"
	" WHERE repository_id = ?1 AND COALESCE(generation, -1) < ?2";
static const char SQL_UPSERT_REPLICA[] =
	"INSERT INTO storage_repositories (repository_id, virtual_storage, relative_path, storage, generation)"
	" SELECT repository_id, virtual_storage, COALESCE(?3, relative_path), ?2, ?4"
	" FROM repositories WHERE repository_id = ?1"
	" ON CONFLICT (repository_id, storage) DO UPDATE SET"
	"  relative_path = excluded.relative_path, generation = excluded.generation";

/* No repository row: nothing happens and it is not an error (upstream SetGeneration). */
int sq_set_generation(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	int r;

	if ((r = sq_exec(q, op, SQL_RAISE_REPO_GEN, "ll", op->in.id, op->in.generation)) < 0 ||
	    (r = sq_exec(q, op, SQL_UPSERT_REPLICA, "lttl", op->in.id, op->in.storage, op->in.path,
			 op->in.generation)) < 0)
		return r;
	return 0;
}

static const char SQL_REPO_REPLICA_PATH[] =
	"SELECT repository_id, replica_path FROM repositories WHERE virtual_storage = ?1 AND relative_path = ?2";
static const char SQL_REPLICA_STORAGES[] =
	"SELECT storage FROM storage_repositories WHERE repository_id = ?1 ORDER BY storage";
static const char SQL_DELETE_REPO[] =
	"DELETE FROM repositories WHERE repository_id = ?1";

int sq_delete_repository(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	sqlite3_stmt *st;
	int64_t id;
	int r;

	if ((r = sq_query(q, op, &st, SQL_REPO_REPLICA_PATH, "tt", op->in.vs, op->in.path)) < 0 ||
	    (r = sq_next(q, op, st)) < 0)
		return r;
	if (!r)
		return store_op_fail(op, -ENOENT, "repository \"%s\"/\"%s\" not found", op->in.vs, op->in.path);
	id = sqlite3_column_int64(st, 0);
	op->deleted_replica_path = sq_text(op, st, 1);
	sqlite3_reset(st);
	if ((r = sq_query(q, op, &st, SQL_REPLICA_STORAGES, "l", id)) < 0)
		return r;
	while ((r = sq_next(q, op, st)) > 0)
		strvec_push(&op->deleted_storages, (const char *)sqlite3_column_text(st, 0));
	if (r < 0)
		return r;
	/* replicas and assignments go with it (ON DELETE CASCADE) */
	if ((r = sq_exec(q, op, SQL_DELETE_REPO, "l", id)) < 0)
		return r;
	return 0;
}

static const char SQL_COUNT_VS_REPOS[] = "SELECT COUNT(*) FROM repositories WHERE virtual_storage = ?1";
static const char SQL_DELETE_VS_REPOS[] = "DELETE FROM repositories WHERE virtual_storage = ?1";

int sq_delete_all_repositories(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	int r;
	/* replicas and assignments go with them (ON DELETE CASCADE) */
	if ((r = sq_int(q, op, &op->value, 0, SQL_COUNT_VS_REPOS, "t", op->in.vs)) < 0 ||
	    (r = sq_exec(q, op, SQL_DELETE_VS_REPOS, "t", op->in.vs)) < 0)
		return r;
	return 0;
}

static const char SQL_DELETE_REPLICA[] =
	"DELETE FROM storage_repositories WHERE repository_id = ?1 AND storage = ?2";

int sq_delete_replica(struct store_backend *b, struct store_op *op)
{
	int r = sq_exec(sq_backend(b), op, SQL_DELETE_REPLICA, "lt", op->in.id, op->in.storage);
	return r < 0 ? r : 0;
}

static const char SQL_DELETE_REPO_IF_NO_REPLICA[] =
	"DELETE FROM repositories WHERE repository_id = ?1 AND NOT EXISTS ("
	" SELECT 1 FROM storage_repositories WHERE repository_id = ?1 AND storage != ?2)";

int sq_delete_invalid_replica(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	int r;

	if ((r = sq_exec(q, op, SQL_DELETE_REPLICA, "lt", op->in.id, op->in.storage)) < 0 ||
	    (r = sq_exec(q, op, SQL_DELETE_REPO_IF_NO_REPLICA, "lt", op->in.id, op->in.storage)) < 0)
		return r;
	return 0;
}

static const char SQL_BUMP_REPO[] =
	"UPDATE repositories SET generation = COALESCE(generation, -1) + 1"
	" WHERE virtual_storage = ?1 AND relative_path = ?2 RETURNING repository_id, generation";
static const char SQL_UPSERT_AUTHORITATIVE[] =
	"INSERT INTO storage_repositories (repository_id, virtual_storage, relative_path, storage, generation)"
	" VALUES (?1, ?2, ?3, ?4, ?5)"
	" ON CONFLICT (virtual_storage, relative_path, storage) DO UPDATE SET"
	"  repository_id = excluded.repository_id, generation = excluded.generation";

int sq_set_authoritative(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	sqlite3_stmt *st;
	int64_t id, gen;
	int r;

	if ((r = sq_query(q, op, &st, SQL_BUMP_REPO, "tt", op->in.vs, op->in.path)) < 0 ||
	    (r = sq_next(q, op, st)) < 0)
		return r;
	if (!r)
		return store_op_fail(op, -ENOENT, "repository \"%s\"/\"%s\" not found", op->in.vs, op->in.path);
	id = sqlite3_column_int64(st, 0);
	gen = sqlite3_column_int64(st, 1);
	sqlite3_reset(st);
	if ((r = sq_exec(q, op, SQL_UPSERT_AUTHORITATIVE, "ltttl", id, op->in.vs, op->in.path,
			 op->in.storage, gen)) < 0)
		return r;
	op->value = gen;
	return 0;
}

static const char SQL_SET_PRIMARY[] =
	"UPDATE repositories SET \"primary\" = ?2 WHERE repository_id = ?1";

int sq_set_primary(struct store_backend *b, struct store_op *op)
{
	int r = sq_exec(sq_backend(b), op, SQL_SET_PRIMARY, "lt", op->in.id, op->in.primary);
	if (r == 0)
		return store_op_fail(op, -ENOENT, "repository not found");
	return r < 0 ? r : 0;
}

static const char SQL_SWAP_PRIMARY[] =
	"UPDATE repositories SET \"primary\" = ?3 WHERE repository_id = ?1 AND \"primary\" IS ?2";
static const char SQL_GET_PRIMARY[] = "SELECT \"primary\" FROM repositories WHERE repository_id = ?1";

/* As pg_swap_primary(); with one praefect per SQLite store a lost race only follows an admin's change. */
int sq_swap_primary(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	sqlite3_stmt *st;
	int r = sq_exec(q, op, SQL_SWAP_PRIMARY, "ltt", op->in.id, op->in.expected, op->in.primary);
	if (r < 0)
		return r;
	if (r > 0) {
		op->value = 1; /* swapped */
		return 0;
	}
	if ((r = sq_query(q, op, &st, SQL_GET_PRIMARY, "l", op->in.id)) < 0 || (r = sq_next(q, op, st)) < 0)
		return r;
	if (r == 0)
		return store_op_fail(op, -ENOENT, "repository not found");
	op->current = sq_text(op, st, 0);
	sq_next(q, op, st);
	return 0; /* lost: op->value stays 0, store.c reports -EAGAIN (a failed op keeps no result) */
}

static const char SQL_DELETE_ASSIGNMENTS[] =
	"DELETE FROM repository_assignments WHERE repository_id = ?1";
static const char SQL_ASSIGN[] =
	"INSERT INTO repository_assignments (repository_id, virtual_storage, relative_path, storage)"
	" SELECT repository_id, virtual_storage, relative_path, ?2 FROM repositories WHERE repository_id = ?1"
	" ON CONFLICT DO NOTHING";

int sq_set_assignments(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	int64_t found;
	int r;

	if ((r = sq_int(q, op, &found, 0, SQL_REPO_BY_ID, "l", op->in.id)) < 0)
		return r;
	if (!r)
		return store_op_fail(op, -ENOENT, "repository not found");
	if ((r = sq_exec(q, op, SQL_DELETE_ASSIGNMENTS, "l", op->in.id)) < 0)
		return r;
	for (size_t i = 0; i < op->in.storages.nr; i++)
		if ((r = sq_exec(q, op, SQL_ASSIGN, "lt", op->in.id, op->in.storages.v[i])) < 0)
			return r;
	return 0;
}

/* verified_at holds Unix milliseconds; only replicas verified before count (upstream's RowsAffected) */
static const char SQL_UNVERIFY_ID[] =
	"UPDATE storage_repositories SET verified_at = NULL"
	" WHERE repository_id = ?1 AND verified_at IS NOT NULL";
static const char SQL_UNVERIFY_VS[] =
	"UPDATE storage_repositories SET verified_at = NULL"
	" WHERE verified_at IS NOT NULL AND repository_id IN"
	"  (SELECT repository_id FROM repositories WHERE virtual_storage = ?1)";
static const char SQL_UNVERIFY_STORAGE[] =
	"UPDATE storage_repositories SET verified_at = NULL"
	" WHERE verified_at IS NOT NULL AND storage = ?2 AND repository_id IN"
	"  (SELECT repository_id FROM repositories WHERE virtual_storage = ?1)";

int sq_mark_unverified(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	int r;

	if (op->in.id > 0)
		r = sq_exec(q, op, SQL_UNVERIFY_ID, "l", op->in.id);
	else if (op->in.storage)
		r = sq_exec(q, op, SQL_UNVERIFY_STORAGE, "tt", op->in.vs, op->in.storage);
	else
		r = sq_exec(q, op, SQL_UNVERIFY_VS, "t", op->in.vs);
	if (r < 0)
		return r;
	op->value = r;
	return 0;
}

static const char SQL_RENAME_REPO[] =
	"UPDATE repositories SET relative_path = ?2 WHERE repository_id = ?1";
static const char SQL_RENAME_REPLICAS[] =
	"UPDATE storage_repositories SET relative_path = ?2 WHERE repository_id = ?1 AND relative_path = ?3";

int sq_rename_repository(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	int64_t id, other;
	int r;

	if ((r = sq_int(q, op, &id, 0, SQL_REPO_BY_PATH, "tt", op->in.vs, op->in.path)) < 0)
		return r;
	if (!r)
		return store_op_fail(op, -ENOENT, "repository \"%s\"/\"%s\" not found", op->in.vs, op->in.path);
	if ((r = sq_int(q, op, &other, 0, SQL_REPO_BY_PATH, "tt", op->in.vs, op->in.path2)) < 0)
		return r;
	if (r)
		return store_op_fail(op, -EEXIST, "repository \"%s\"/\"%s\" already exists",
				     op->in.vs, op->in.path2);
	/* assignment rows follow through their ON UPDATE CASCADE foreign key */
	if ((r = sq_exec(q, op, SQL_RENAME_REPO, "lt", id, op->in.path2)) < 0 ||
	    (r = sq_exec(q, op, SQL_RENAME_REPLICAS, "ltt", id, op->in.path2, op->in.path)) < 0)
		return r;
	return 0;
}

/* Unix ms, NULL for 0 (docs/technical/replication-status.md) */
static const char SQL_SET_OUTDATED_SINCE[] =
	"UPDATE storage_repositories SET outdated_since = NULLIF(?3, 0) WHERE repository_id = ?1 AND storage = ?2";

int sq_set_outdated_since(struct store_backend *b, struct store_op *op)
{
	int r = sq_exec(sq_backend(b), op, SQL_SET_OUTDATED_SINCE, "ltl", op->in.id, op->in.storage, op->in.since_ms);
	return r < 0 ? r : 0;
}
