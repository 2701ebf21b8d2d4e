/* PostgreSQL tracking store: write intents (our table, migration of our own) and their start-up recovery. */
#include "pg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "base/banned.h"

static const char SQL_INSERT_INTENT[] =
	"INSERT INTO write_intents (repository_id, created_at, praefect_name) VALUES ($1, " PG_TS("$2") ", $3)"
	" RETURNING id";

int pg_begin_write(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	int r = pg_int(g, op, &op->value, 0, SQL_INSERT_INTENT, "llt", op->in.id, pg_now_ms(g),
		       op->in.praefect);

	/* foreign_key_violation: the repository is gone */
	if (r < 0 && !strcmp(g->sqlstate, "23503"))
		return store_op_fail(op, -ENOENT, "repository not found");
	return r < 0 ? r : 0;
}

static const char SQL_DELETE_INTENT[] = "DELETE FROM write_intents WHERE id = $1";

int pg_end_write(struct store_backend *b, struct store_op *op)
{
	int r = pg_exec(pg_backend(b), op, SQL_DELETE_INTENT, "l", op->in.intent);
	return r < 0 ? r : 0;
}

/* this praefect's intents, and those from before intents had an owner ('') */
static const char SQL_INTENT_REPOS[] =
	"SELECT DISTINCT repository_id FROM write_intents WHERE $1::text IS NULL OR praefect_name IN ($1, '') ORDER BY repository_id";
static const char SQL_INTENT_REPO[] =
	"SELECT virtual_storage, relative_path, generation, \"primary\" FROM repositories WHERE repository_id = $1";
static const char SQL_INTENT_SOURCE[] =
	"SELECT storage FROM storage_repositories WHERE repository_id = $1 AND generation = $2"
	" ORDER BY (storage IS NOT DISTINCT FROM $3::text) DESC, storage LIMIT 1";
static const char SQL_INTENT_TARGETS[] =
	"SELECT storage FROM storage_repositories WHERE repository_id = $1 AND storage <> $2 ORDER BY storage";
static const char SQL_DELETE_INTENTS[] = "DELETE FROM write_intents WHERE $1::text IS NULL OR praefect_name IN ($1, '')";

static int verify_repository(struct pg_backend *g, struct store_op *op, int64_t id, int64_t *queued)
{
	const char *vs, *path, *primary, *source;
	PGresult *res;
	int64_t gen;
	int r;

	if ((r = pg_query(g, op, &res, SQL_INTENT_REPO, "l", id)) < 0 || !PQntuples(res))
		return r;
	vs = pg_col_text(op, res, 0, 0);
	path = pg_col_text(op, res, 0, 1);
	gen = pg_col_int(res, 0, 2, GENERATION_UNKNOWN);
	primary = pg_col_text(op, res, 0, 3);

	if ((r = pg_query(g, op, &res, SQL_INTENT_SOURCE, "llt", id, gen, primary)) < 0 || !PQntuples(res))
		return r;
	source = pg_col_text(op, res, 0, 0);

	if ((r = pg_query(g, op, &res, SQL_INTENT_TARGETS, "lt", id, source)) < 0)
		return r;
	for (int i = 0; r == 0 && i < PQntuples(res); i++) {
		struct repl_job job = {
			.change = "update", .repository_id = id, .virtual_storage = vs, .relative_path = path,
			.replica_path = "", .source_storage = source, .target_storage = pg_col_text(op, res, i, 0),
			.correlation_id = "write-intent", .force = 1,
		};
		r = pg_insert_job(g, op, &job);
		if (r == 0)
			(*queued)++;
		else if (r == -EEXIST)
			r = 0; /* a forced job for that replica is already waiting; the transaction is intact */
	}
	return r;
}

int pg_recover_writes(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	int64_t queued = 0, *ids;
	PGresult *res;
	int r, nr;

	if ((r = pg_query(g, op, &res, SQL_INTENT_REPOS, "t", op->in.praefect)) < 0)
		return r;
	nr = PQntuples(res);
	ids = xcalloc((size_t)nr + 1, sizeof(*ids));
	for (int i = 0; i < nr; i++)
		ids[i] = pg_col_int(res, i, 0, 0);
	for (int i = 0; r == 0 && i < nr; i++)
		r = verify_repository(g, op, ids[i], &queued);
	free(ids);
	if (r < 0 || (r = pg_exec(g, op, SQL_DELETE_INTENTS, "t", op->in.praefect)) < 0)
		return r;
	strbuf_reset(&op->msg);
	op->value = queued;
	return 0;
}
