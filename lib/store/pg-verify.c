/* PostgreSQL tracking store: leases on replicas for the background verifier, on upstream's columns. */
#include "pg.h"

#include <errno.h>
#include <string.h>

#include "base/util.h"
#include "base/banned.h"

/* Never verified first (upstream's verification_queue index is NULLS FIRST too), then the oldest. */
static const char SQL_DUE[] =
	"SELECT sr.repository_id, r.relative_path, r.replica_path, sr.storage"
	" FROM storage_repositories sr JOIN repositories r ON r.repository_id = sr.repository_id"
	" WHERE r.virtual_storage = $1 AND sr.storage = $2 AND sr.verification_leased_until IS NULL"
	" AND (sr.verified_at IS NULL OR sr.verified_at < " PG_TSZ("$3") ")"
	" ORDER BY sr.verified_at NULLS FIRST LIMIT $4";
static const char SQL_LEASE[] =
	"UPDATE storage_repositories SET verification_leased_until = " PG_TSZ("$3")
	" WHERE repository_id = $1 AND storage = $2";

int pg_lease_verifications(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	int64_t now = pg_now_ms(g);
	size_t first, left = op->in.max;
	PGresult *res;
	int r = 0;

	for (size_t i = 0; i < op->in.nr_ids && left; i++) {
		int64_t max = op->in.ids[i] < (int64_t)left ? op->in.ids[i] : (int64_t)left;
		if (max <= 0)
			continue;
		first = op->nr_jobs;
		if ((r = pg_query(g, op, &res, SQL_DUE, "ttll", op->in.storages.v[i], op->in.storages2.v[i],
				  now - op->in.interval_ms, max)) < 0)
			return r;
		for (int row = 0; row < PQntuples(res); row++) {
			struct repl_job *j = store_op_add_job(op);
			j->change = "verify";
			j->repository_id = pg_col_int(res, row, 0, 0);
			j->virtual_storage = store_op_keep(op, op->in.storages.v[i]);
			j->relative_path = pg_col_text(op, res, row, 1);
			j->replica_path = pg_col_text(op, res, row, 2);
			j->target_storage = pg_col_text(op, res, row, 3);
			j->source_storage = "";
			j->correlation_id = "";
			j->state = JOB_IN_PROGRESS;
		}
		for (size_t k = first; k < op->nr_jobs; k++)
			if ((r = pg_exec(g, op, SQL_LEASE, "ltl", op->jobs[k].repository_id, op->jobs[k].target_storage,
					 now + op->in.lease_ms)) < 0)
				return r;
		left -= op->nr_jobs - first;
	}
	return 0;
}

static const char SQL_VERIFIED[] =
	"UPDATE storage_repositories SET verification_leased_until = NULL, verified_at = " PG_TSZ("$3")
	" WHERE repository_id = $1 AND storage = $2 AND verification_leased_until IS NOT NULL";
static const char SQL_UNLEASE[] =
	"UPDATE storage_repositories SET verification_leased_until = NULL WHERE repository_id = $1 AND storage = $2";
static const char SQL_DELETE_LEASED[] =
	"DELETE FROM storage_repositories"
	" WHERE repository_id = $1 AND storage = $2 AND verification_leased_until IS NOT NULL";

int pg_end_verification(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	int r;

	switch (op->in.verify_result) {
	case STORE_VERIFY_INVALID:
	case STORE_VERIFY_VALID:
		if (op->in.verify_result == STORE_VERIFY_INVALID && op->in.delete_invalid)
			r = pg_exec(g, op, SQL_DELETE_LEASED, "lt", op->in.id, op->in.storage);
		else
			r = pg_exec(g, op, SQL_VERIFIED, "ltl", op->in.id, op->in.storage, pg_now_ms(g));
		break;
	case STORE_VERIFY_ERROR:
		r = pg_exec(g, op, SQL_UNLEASE, "lt", op->in.id, op->in.storage);
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
	"UPDATE storage_repositories SET verification_leased_until = NULL"
	" WHERE verification_leased_until < " PG_TSZ("$1");

int pg_release_verification_leases(struct store_backend *b, struct store_op *op)
{
	struct pg_backend *g = pg_backend(b);
	int r = pg_exec(g, op, SQL_RELEASE_EXPIRED, "l", pg_now_ms(g) - op->in.lease_ms);
	if (r < 0)
		return r;
	op->value = r;
	return 0;
}
