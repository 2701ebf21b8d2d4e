/* SQLite tracking store: leases on replicas for the background verifier (praefect/verifier/). */
#include "sqlite.h"

#include <errno.h>
#include <string.h>

#include "base/util.h"
#include "base/banned.h"

/*
 * Upstream picks and leases in one statement with FOR NO KEY UPDATE SKIP
 * LOCKED; here the op's savepoint and the single writer connection give the
 * same effect. Never verified (NULL) sorts first, then the oldest: SQLite
 * orders NULL before any value in ascending order.
 */
static const char SQL_DUE[] =
	"SELECT sr.repository_id, r.relative_path, r.replica_path, sr.storage"
	" FROM storage_repositories sr JOIN repositories r ON r.repository_id = sr.repository_id"
	" WHERE r.virtual_storage = ?1 AND sr.storage = ?2 AND sr.verification_leased_until IS NULL"
	" AND (sr.verified_at IS NULL OR sr.verified_at < ?3)"
	" ORDER BY sr.verified_at LIMIT ?4";
static const char SQL_LEASE[] =
	"UPDATE storage_repositories SET verification_leased_until = ?3 WHERE repository_id = ?1 AND storage = ?2";

int sq_lease_verifications(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	int64_t now = sq_now_ms(q);
	size_t first, left = op->in.max;
	sqlite3_stmt *st;
	int r = 0;

	for (size_t i = 0; i < op->in.nr_ids && left; i++) {
		int64_t max = op->in.ids[i] < (int64_t)left ? op->in.ids[i] : (int64_t)left;
		if (max <= 0)
			continue;
		first = op->nr_jobs;
		if ((r = sq_query(q, op, &st, SQL_DUE, "ttll", op->in.storages.v[i], op->in.storages2.v[i],
				  now - op->in.interval_ms, max)) < 0)
			return r;
		while ((r = sq_next(q, op, st)) > 0) {
			struct repl_job *j = store_op_add_job(op);
			j->change = "verify";
			j->repository_id = sqlite3_column_int64(st, 0);
			j->virtual_storage = store_op_keep(op, op->in.storages.v[i]);
			j->relative_path = sq_text(op, st, 1);
			j->replica_path = sq_text(op, st, 2);
			j->target_storage = sq_text(op, st, 3);
			j->source_storage = "";
			j->correlation_id = "";
			j->state = JOB_IN_PROGRESS;
		}
		if (r < 0)
			return r;
		for (size_t k = first; k < op->nr_jobs; k++)
			if ((r = sq_exec(q, op, SQL_LEASE, "ltl", op->jobs[k].repository_id, op->jobs[k].target_storage,
					 now + op->in.lease_ms)) < 0)
				return r;
		left -= op->nr_jobs - first;
	}
	return 0;
}

static const char SQL_VERIFIED[] =
	"UPDATE storage_repositories SET verification_leased_until = NULL, verified_at = ?3"
	" WHERE repository_id = ?1 AND storage = ?2 AND verification_leased_until IS NOT NULL";
static const char SQL_UNLEASE[] =
	"UPDATE storage_repositories SET verification_leased_until = NULL"
	" WHERE repository_id = ?1 AND storage = ?2";
static const char SQL_DELETE_LEASED[] =
	"DELETE FROM storage_repositories"
	" WHERE repository_id = ?1 AND storage = ?2 AND verification_leased_until IS NOT NULL";

int sq_end_verification(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	int r;

	switch (op->in.verify_result) {
	case STORE_VERIFY_INVALID:
	case STORE_VERIFY_VALID:
		/* an invalid replica kept (deletions off) is not checked again before the interval is up */
		if (op->in.verify_result == STORE_VERIFY_INVALID && op->in.delete_invalid)
			r = sq_exec(q, op, SQL_DELETE_LEASED, "lt", op->in.id, op->in.storage);
		else
			r = sq_exec(q, op, SQL_VERIFIED, "ltl", op->in.id, op->in.storage, sq_now_ms(q));
		break;
	case STORE_VERIFY_ERROR:
		r = sq_exec(q, op, SQL_UNLEASE, "lt", op->in.id, op->in.storage);
		break;
	default:
		return store_op_fail(op, -EINVAL, "unknown verification result %d", op->in.verify_result);
	}
	if (r < 0)
		return r;
	op->value = r;
	return 0;
}

static const char SQL_RELEASE_EXPIRED[] =
	"UPDATE storage_repositories SET verification_leased_until = NULL WHERE verification_leased_until < ?1";

int sq_release_verification_leases(struct store_backend *b, struct store_op *op)
{
	struct sqlite_backend *q = sq_backend(b);
	int r = sq_exec(q, op, SQL_RELEASE_EXPIRED, "l", sq_now_ms(q) - op->in.lease_ms);
	if (r < 0)
		return r;
	op->value = r;
	return 0;
}
