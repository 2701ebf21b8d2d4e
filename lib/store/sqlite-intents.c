/* SQLite tracking store: write intents, and turning those a dead praefect left into verification jobs. */
#include "sqlite.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "base/banned.h"

static const char SQL_INSERT_INTENT[] =
	"INSERT INTO write_intents (repository_id, created_at, praefect_name) VALUES (?1, ?2, ?3)";

int sq_begin_write(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	int r = sq_exec(q, op, SQL_INSERT_INTENT, "llt", op->in.id, sq_now_ms(q), op->in.praefect);

	/* the foreign key: the repository is gone */
	if (r == -EIO && strstr(op->msg.buf, "FOREIGN KEY"))
		return store_op_fail(op, -ENOENT, "repository not found");
	if (r < 0)
		return r;
	op->value = sqlite3_last_insert_rowid(q->db);
	return 0;
}

static const char SQL_DELETE_INTENT[] = "DELETE FROM write_intents WHERE id = ?1";

int sq_end_write(struct store_backend *b, struct store_op *op)
{
	int r = sq_exec(sq_backend(b), op, SQL_DELETE_INTENT, "l", op->in.intent);
	return r < 0 ? r : 0;
}

/* this praefect's intents, and those from before intents had an owner ('') */
static const char SQL_INTENT_REPOS[] =
	"SELECT DISTINCT repository_id FROM write_intents WHERE ?1 IS NULL OR praefect_name IN (?1, '') ORDER BY repository_id";
static const char SQL_INTENT_REPO[] =
	"SELECT virtual_storage, relative_path, generation, \"primary\" FROM repositories WHERE repository_id = ?1";
/* the primary when it is at the repository's generation, else the first replica that is */
static const char SQL_INTENT_SOURCE[] =
	"SELECT storage FROM storage_repositories WHERE repository_id = ?1 AND generation = ?2"
	" ORDER BY storage IS ?3 DESC, storage LIMIT 1";
static const char SQL_INTENT_TARGETS[] =
	"SELECT storage FROM storage_repositories WHERE repository_id = ?1 AND storage <> ?2 ORDER BY storage";
static const char SQL_DELETE_INTENTS[] = "DELETE FROM write_intents WHERE ?1 IS NULL OR praefect_name IN (?1, '')";

/* Forced jobs from the repository's best source to every other replica; counts them in `queued`. */
static int verify_repository(struct sqlite_backend *q, struct store_op *op, int64_t id, int64_t *queued)
{
	const char *vs, *path, *primary, *source = NULL;
	struct strvec targets = STRVEC_INIT;
	int64_t gen;
	sqlite3_stmt *st;
	int r;

	if ((r = sq_query(q, op, &st, SQL_INTENT_REPO, "l", id)) < 0 || (r = sq_next(q, op, st)) <= 0)
		return r; /* no repository: the intent went with it */
	vs = sq_text(op, st, 0);
	path = sq_text(op, st, 1);
	gen = sqlite3_column_type(st, 2) == SQLITE_NULL ? GENERATION_UNKNOWN : sqlite3_column_int64(st, 2);
	primary = sq_text(op, st, 3);
	sqlite3_reset(st);

	if ((r = sq_query(q, op, &st, SQL_INTENT_SOURCE, "llt", id, gen, primary)) < 0 ||
	    (r = sq_next(q, op, st)) < 0)
		return r;
	if (!r)
		return 0; /* no replica at the generation: the reconciler's business */
	source = sq_text(op, st, 0);
	sqlite3_reset(st);

	if ((r = sq_query(q, op, &st, SQL_INTENT_TARGETS, "lt", id, source)) < 0)
		return r;
	while ((r = sq_next(q, op, st)) > 0)
		strvec_push(&targets, (const char *)sqlite3_column_text(st, 0));
	for (size_t i = 0; r == 0 && i < targets.nr; i++) {
		struct repl_job job = {
			.change = "update", .repository_id = id, .virtual_storage = vs, .relative_path = path,
			.replica_path = "", .source_storage = source, .target_storage = targets.v[i],
			.correlation_id = "write-intent", .force = 1,
		};
		r = sq_insert_job(q, op, &job);
		if (r == 0)
			(*queued)++;
		else if (r == -EEXIST)
			r = 0; /* a forced job for that replica is already waiting */
	}
	strvec_clear(&targets);
	return r;
}

int sq_recover_writes(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	int64_t *ids = NULL, queued = 0;
	size_t nr = 0, alloc = 0;
	sqlite3_stmt *st;
	int r;

	if ((r = sq_query(q, op, &st, SQL_INTENT_REPOS, "t", op->in.praefect)) < 0)
		return r;
	while ((r = sq_next(q, op, st)) > 0) {
		ALLOC_GROW(ids, nr + 1, alloc);
		ids[nr++] = sqlite3_column_int64(st, 0);
	}
	for (size_t i = 0; r == 0 && i < nr; i++)
		r = verify_repository(q, op, ids[i], &queued);
	free(ids);
	if (r < 0 || (r = sq_exec(q, op, SQL_DELETE_INTENTS, "t", op->in.praefect)) < 0)
		return r;
	strbuf_reset(&op->msg);
	op->value = queued;
	return 0;
}
