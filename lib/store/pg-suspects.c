/* PostgreSQL tracking store: suspect replicas (our table), kept until verified (praefect/router/suspect.c). */
#include "pg.h"

#include <errno.h>
#include <string.h>

#include "base/util.h"
#include "base/banned.h"

static const char SQL_ADD_SUSPECT[] =
	"INSERT INTO suspect_replicas (repository_id, storage, avoid, created_at)"
	" VALUES ($1, $2, $3::int <> 0, " PG_TS("$4") ")"
	" ON CONFLICT (repository_id, storage) DO UPDATE SET avoid = EXCLUDED.avoid";

int pg_suspect_add(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	int r = pg_exec(g, op, SQL_ADD_SUSPECT, "ltdl", op->in.id, op->in.storage, op->in.avoid, pg_now_ms(g));

	/* foreign_key_violation: the repository is gone */
	if (r < 0 && !strcmp(g->sqlstate, "23503"))
		return store_op_fail(op, -ENOENT, "repository not found");
	return r < 0 ? r : 0;
}

static const char SQL_REMOVE_SUSPECT[] = "DELETE FROM suspect_replicas WHERE repository_id = $1 AND storage = $2";

int pg_suspect_remove(struct store_backend *b, struct store_op *op)
{
	int r = pg_exec(pg_backend(b), op, SQL_REMOVE_SUSPECT, "lt", op->in.id, op->in.storage);
	return r < 0 ? r : 0;
}

static const char SQL_LIST_SUSPECTS[] =
	"SELECT repository_id, storage, avoid::int FROM suspect_replicas ORDER BY repository_id, storage";

int pg_list_suspects(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	PGresult *res;
	int r;

	if ((r = pg_query(g, op, &res, SQL_LIST_SUSPECTS, "")) < 0)
		return r;
	for (int i = 0; i < PQntuples(res); i++) {
		struct store_suspect *s = store_op_add_suspect(op);
		s->repository_id = pg_col_int(res, i, 0, 0);
		s->storage = pg_col_text(op, res, i, 1);
		s->avoid = pg_col_int(res, i, 2, 0) != 0;
	}
	return 0;
}
