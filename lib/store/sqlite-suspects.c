/* SQLite tracking store: suspect replicas, kept until verified (praefect/router/suspect.c). */
#include "sqlite.h"

#include <errno.h>
#include <string.h>

#include "base/util.h"
#include "base/banned.h"

static const char SQL_ADD_SUSPECT[] =
	"INSERT INTO suspect_replicas (repository_id, storage, avoid, created_at) VALUES (?1, ?2, ?3, ?4)"
	" ON CONFLICT (repository_id, storage) DO UPDATE SET avoid = excluded.avoid";

int sq_suspect_add(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	int r = sq_exec(q, op, SQL_ADD_SUSPECT, "ltdl", op->in.id, op->in.storage, op->in.avoid, sq_now_ms(q));

	/* the foreign key: the repository is gone */
	if (r == -EIO && strstr(op->msg.buf, "FOREIGN KEY"))
		return store_op_fail(op, -ENOENT, "repository not found");
	return r < 0 ? r : 0;
}

static const char SQL_REMOVE_SUSPECT[] = "DELETE FROM suspect_replicas WHERE repository_id = ?1 AND storage = ?2";

int sq_suspect_remove(struct store_backend *b, struct store_op *op)
{
	int r = sq_exec(sq_backend(b), op, SQL_REMOVE_SUSPECT, "lt", op->in.id, op->in.storage);
	return r < 0 ? r : 0;
}

static const char SQL_LIST_SUSPECTS[] =
	"SELECT repository_id, storage, avoid FROM suspect_replicas ORDER BY repository_id, storage";

int sq_list_suspects(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	sqlite3_stmt *st;
	int r;

	if ((r = sq_query(q, op, &st, SQL_LIST_SUSPECTS, "")) < 0)
		return r;
	while ((r = sq_next(q, op, st)) > 0) {
		struct store_suspect *s = store_op_add_suspect(op);
		s->repository_id = sqlite3_column_int64(st, 0);
		s->storage = sq_text(op, st, 1);
		s->avoid = sqlite3_column_int(st, 2) != 0;
	}
	return r < 0 ? r : 0;
}
