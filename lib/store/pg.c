/* The PostgreSQL backend of the tracking store: connection, reconnection, query helpers, transactions. */
#include "pg.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/util.h"
#include "base/banned.h"

/* Reconnection back-off after a lost connection: first retry at once, then doubling up to the cap. */
#define PG_BACKOFF_MIN_MS 100
#define PG_BACKOFF_MAX_MS 5000
#define PG_MAX_PARAMS 16

int64_t pg_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t pg_now_ms(struct pg_backend *g)
{
	int64_t now = pg_wall_ms();
	if (now < g->last_ms)
		now = g->last_ms;
	g->last_ms = now;
	return now;
}

/* --- connecting --- */

static void quiet_notices(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/*
 * TCP keepalives on every connection (the store's and the listener's), so a
 * server host that vanishes without a FIN is noticed in about 30 s rather than
 * the kernel's 2 hours: 15 s idle, then a probe every 5 s, 3 unanswered; data
 * unacknowledged for 30 s ends the connection too. libpq ignores them on a
 * Unix socket. docs/technical/store.md, "PostgreSQL".
 */
static const struct { const char *key, *value; } keepalives[] = {
	{ "keepalives", "1" },
	{ "keepalives_idle", "15" },
	{ "keepalives_interval", "5" },
	{ "keepalives_count", "3" },
	{ "tcp_user_timeout", "30000" },
};

/* Keys the environment sets (a service file named by PGSERVICE): the admin's choice stands. */
static int set_by_admin(const PQconninfoOption *defaults, const char *key)
{
	for (const PQconninfoOption *o = defaults; o && o->keyword; o++)
		if (!strcmp(o->keyword, key))
			return o->val && *o->val;
	return 0;
}

size_t store_pg_conninfo(const struct store_pg_params *p, const char **keys, const char **values, size_t room)
{
	PQconninfoOption *defaults = PQconndefaults();
	size_t n = 0;

#define PARAM(k, v) do { if ((v) && *(v) && n + 1 < room) { keys[n] = (k); values[n] = (v); n++; } } while (0)
	PARAM("host", p->host);
	PARAM("port", p->port);
	PARAM("user", p->user);
	PARAM("password", p->password);
	PARAM("dbname", p->dbname);
	PARAM("sslmode", p->sslmode);
	PARAM("sslcert", p->sslcert);
	PARAM("sslkey", p->sslkey);
	PARAM("sslrootcert", p->sslrootcert);
	PARAM("application_name", "praefect");
	PARAM("connect_timeout", "10");
	for (size_t i = 0; i < ARRAY_SIZE(keepalives); i++)
		if (!set_by_admin(defaults, keepalives[i].key))
			PARAM(keepalives[i].key, keepalives[i].value);
#undef PARAM
	PQconninfoFree(defaults);
	keys[n] = values[n] = NULL;
	return n;
}

PGconn *store_pg_connect(const struct store_pg_params *p, struct strbuf *err)
{
	const char *keys[STORE_PG_CONNINFO_MAX], *values[STORE_PG_CONNINFO_MAX];
	PGconn *c;

	store_pg_conninfo(p, keys, values, ARRAY_SIZE(keys));
	c = PQconnectdbParams(keys, values, 0);
	if (!c) {
		strbuf_addstr(err, "cannot connect to database: out of memory");
		return NULL;
	}
	if (PQstatus(c) != CONNECTION_OK) {
		const char *m = PQerrorMessage(c);
		size_t len = strlen(m);
		while (len && (m[len - 1] == '\n' || m[len - 1] == ' '))
			len--;
		strbuf_addstr(err, "cannot connect to database: ");
		strbuf_add(err, m, len);
		PQfinish(c);
		return NULL;
	}
	/* no NOTICE chatter on stderr (e.g. "table does not exist, skipping") */
	PQsetNoticeProcessor(c, quiet_notices, NULL);
	return c;
}

/* --- errors and queries --- */

static void trimmed(struct strbuf *sb, const char *m)
{
	size_t len = m ? strlen(m) : 0;
	while (len && (m[len - 1] == '\n' || m[len - 1] == ' '))
		len--;
	strbuf_add(sb, m ? m : "", len);
}

static void clear_results(struct pg_backend *g)
{
	for (size_t i = 0; i < g->nr_results; i++)
		PQclear(g->results[i]);
	g->nr_results = 0;
}

static void keep_result(struct pg_backend *g, PGresult *res)
{
	ALLOC_GROW(g->results, g->nr_results + 1, g->alloc_results);
	g->results[g->nr_results++] = res;
}

static int fail_result(struct pg_backend *g, struct store_op *op, PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	struct strbuf m = STRBUF_INIT;
	int status = -EIO, r;

	snprintf(g->sqlstate, sizeof(g->sqlstate), "%s", state ? state : "");
	if (PQstatus(g->conn) != CONNECTION_OK) {
		strbuf_addstr(&m, "database connection lost: ");
		status = -ENOTCONN;
	} else if (state && !strcmp(state, "23505")) {
		status = -EEXIST;
	} else {
		strbuf_addstr(&m, "postgres: ");
	}
	trimmed(&m, res && PQresultErrorMessage(res)[0] ? PQresultErrorMessage(res) : PQerrorMessage(g->conn));
	r = store_op_fail(op, status, "%s", m.buf);
	strbuf_release(&m);
	return r;
}

static int vquery(struct pg_backend *g, struct store_op *op, PGresult **out, const char *sql,
		  const char *types, va_list ap)
{
	char bufs[PG_MAX_PARAMS][24];
	const char *values[PG_MAX_PARAMS];
	int n = 0;
	PGresult *res;
	ExecStatusType st;

	for (; *types; types++, n++) {
		if (n == PG_MAX_PARAMS)
			return store_op_fail(op, -EINVAL, "too many query parameters");
		switch (*types) {
		case 'l':
			snprintf(bufs[n], sizeof(bufs[n]), "%" PRId64, va_arg(ap, int64_t));
			values[n] = bufs[n];
			break;
		case 'd':
			snprintf(bufs[n], sizeof(bufs[n]), "%d", va_arg(ap, int));
			values[n] = bufs[n];
			break;
		case 't':
			values[n] = va_arg(ap, const char *);
			break;
		default:
			return store_op_fail(op, -EINVAL, "bad bind type '%c'", *types);
		}
	}
	g->sqlstate[0] = '\0';
	res = PQexecParams(g->conn, sql, n, NULL, values, NULL, NULL, 0);
	st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		int r = fail_result(g, op, res);
		PQclear(res);
		return r;
	}
	keep_result(g, res);
	if (out)
		*out = res;
	return 0;
}

int pg_query(struct pg_backend *g, struct store_op *op, PGresult **out, const char *sql, const char *types, ...)
{
	va_list ap;
	int r;
	va_start(ap, types);
	r = vquery(g, op, out, sql, types, ap);
	va_end(ap);
	return r;
}

static int changes(PGresult *res)
{
	const char *t = PQcmdTuples(res);
	if (t && *t)
		return (int)strtol(t, NULL, 10);
	return PQntuples(res);
}

int pg_exec(struct pg_backend *g, struct store_op *op, const char *sql, const char *types, ...)
{
	PGresult *res;
	va_list ap;
	int r;
	va_start(ap, types);
	r = vquery(g, op, &res, sql, types, ap);
	va_end(ap);
	return r < 0 ? r : changes(res);
}

int pg_int(struct pg_backend *g, struct store_op *op, int64_t *out, int64_t null_value,
	   const char *sql, const char *types, ...)
{
	PGresult *res;
	va_list ap;
	int r;
	va_start(ap, types);
	r = vquery(g, op, &res, sql, types, ap);
	va_end(ap);
	if (r < 0 || PQntuples(res) == 0)
		return r;
	*out = pg_col_int(res, 0, 0, null_value);
	return 1;
}

const char *pg_col_text(struct store_op *op, PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : store_op_keep(op, PQgetvalue(res, row, col));
}

int64_t pg_col_int(PGresult *res, int row, int col, int64_t null_value)
{
	const char *v;
	if (PQgetisnull(res, row, col))
		return null_value;
	v = PQgetvalue(res, row, col);
	if (!strcmp(v, "t"))
		return 1;
	if (!strcmp(v, "f"))
		return 0;
	return strtoll(v, NULL, 10);
}

/* --- transactions --- */

static int simple(struct pg_backend *g, const char *sql, struct strbuf *err)
{
	PGresult *res = PQexec(g->conn, sql);
	int ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;

	/* COMMIT of a transaction that failed half-way answers ROLLBACK, not an error */
	if (ok && !strcmp(sql, "COMMIT") && !strcmp(PQcmdStatus(res), "ROLLBACK")) {
		ok = 0;
		if (err)
			strbuf_addstr(err, "postgres: COMMIT: transaction was rolled back");
	} else if (!ok && err) {
		strbuf_addf(err, "%s%s: ", PQstatus(g->conn) == CONNECTION_OK ? "postgres: " :
			    "database connection lost: ", sql);
		trimmed(err, res ? PQresultErrorMessage(res) : PQerrorMessage(g->conn));
	}
	PQclear(res);
	return ok ? 0 : PQstatus(g->conn) == CONNECTION_OK ? -EIO : -ENOTCONN;
}

/*
 * A lost connection is re-established at the start of a batch, with a
 * doubling back-off; meanwhile every batch fails at once with -ENOTCONN.
 */
static int ensure_connected(struct pg_backend *g, struct strbuf *err)
{
	int64_t now;

	if (PQstatus(g->conn) == CONNECTION_OK)
		return 0;
	now = pg_wall_ms();
	if (now >= g->retry_at_ms) {
		PQreset(g->conn);
		if (PQstatus(g->conn) == CONNECTION_OK) {
			PQsetNoticeProcessor(g->conn, quiet_notices, NULL);
			g->backoff_ms = 0;
			return 0;
		}
		g->backoff_ms = g->backoff_ms ? MIN(g->backoff_ms * 2, PG_BACKOFF_MAX_MS) : PG_BACKOFF_MIN_MS;
		g->retry_at_ms = now + g->backoff_ms;
	}
	strbuf_addstr(err, "database unavailable (reconnecting): ");
	trimmed(err, PQerrorMessage(g->conn));
	return -ENOTCONN;
}

static int pg_begin(struct store_backend *b, int writes, struct strbuf *err)
{
	struct pg_backend *g = pg_backend(b);
	int r;

	(void)writes;
	clear_results(g);
	if ((r = ensure_connected(g, err)) < 0)
		return r;
	return simple(g, "BEGIN", err);
}

static int pg_commit(struct store_backend *b, struct strbuf *err)
{
	clear_results(pg_backend(b));
	return simple(pg_backend(b), "COMMIT", err);
}

static void pg_rollback(struct store_backend *b)
{
	struct pg_backend *g = pg_backend(b);
	clear_results(g);
	if (PQstatus(g->conn) == CONNECTION_OK && PQtransactionStatus(g->conn) != PQTRANS_IDLE)
		simple(g, "ROLLBACK", NULL);
}

static int pg_savepoint(struct store_backend *b, struct strbuf *err)
{
	clear_results(pg_backend(b));
	return simple(pg_backend(b), "SAVEPOINT op", err);
}

static int pg_release(struct store_backend *b, struct strbuf *err)
{
	clear_results(pg_backend(b));
	return simple(pg_backend(b), "RELEASE SAVEPOINT op", err);
}

static void pg_rollback_to(struct store_backend *b)
{
	struct pg_backend *g = pg_backend(b);
	clear_results(g);
	if (simple(g, "ROLLBACK TO SAVEPOINT op", NULL) == 0)
		simple(g, "RELEASE SAVEPOINT op", NULL);
}

/* A failed statement leaves the transaction open (in error) until it is rolled back; a lost connection does not. */
static int pg_in_transaction(struct store_backend *b)
{
	struct pg_backend *g = pg_backend(b);
	PGTransactionStatusType t;

	if (PQstatus(g->conn) != CONNECTION_OK)
		return 0;
	t = PQtransactionStatus(g->conn);
	return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

static void pg_close(struct store_backend *b)
{
	struct pg_backend *g = pg_backend(b);
	clear_results(g);
	free(g->results);
	PQfinish(g->conn);
	free(g);
}

static const struct store_backend_ops pg_ops = {
	.name = "postgres",
	.shared = 1,
	.begin = pg_begin,
	.commit = pg_commit,
	.rollback = pg_rollback,
	.savepoint = pg_savepoint,
	.release = pg_release,
	.rollback_to = pg_rollback_to,
	.in_transaction = pg_in_transaction,
	.op = {
		[STORE_OP_LIST_REPOSITORIES] = pg_list_repositories,
		[STORE_OP_GET_REPOSITORY] = pg_get_repository,
		[STORE_OP_RESERVE_ID] = pg_reserve_id,
		[STORE_OP_CREATE_REPOSITORY] = pg_create_repository,
		[STORE_OP_INCREMENT_GENERATION] = pg_increment_generation,
		[STORE_OP_SET_GENERATION] = pg_set_generation,
		[STORE_OP_DELETE_REPOSITORY] = pg_delete_repository,
		[STORE_OP_DELETE_ALL_REPOSITORIES] = pg_delete_all_repositories,
		[STORE_OP_DELETE_REPLICA] = pg_delete_replica,
		[STORE_OP_DELETE_INVALID_REPLICA] = pg_delete_invalid_replica,
		[STORE_OP_SET_AUTHORITATIVE] = pg_set_authoritative,
		[STORE_OP_SET_PRIMARY] = pg_set_primary,
		[STORE_OP_SET_OUTDATED_SINCE] = pg_set_outdated_since,
		[STORE_OP_SET_ASSIGNMENTS] = pg_set_assignments,
		[STORE_OP_RENAME_REPOSITORY] = pg_rename_repository,
		[STORE_OP_ENQUEUE] = pg_enqueue,
		[STORE_OP_DEQUEUE] = pg_dequeue,
		[STORE_OP_ACKNOWLEDGE] = pg_acknowledge,
		[STORE_OP_HEARTBEAT] = pg_heartbeat,
		[STORE_OP_ACKNOWLEDGE_STALE] = pg_acknowledge_stale,
		[STORE_OP_COUNT_JOBS] = pg_count_jobs,
		[STORE_OP_LIST_JOBS] = pg_list_jobs,
		[STORE_OP_RECORD_NODE_STATUS] = pg_record_node_status,
		[STORE_OP_SWAP_PRIMARY] = pg_swap_primary,
		[STORE_OP_NODE_VOTES] = pg_node_votes,
		[STORE_OP_COUNT_REPOSITORIES] = pg_count_repositories,
		[STORE_OP_LAST_REPOSITORY_ID] = pg_last_repository_id,
		[STORE_OP_BEGIN_WRITE] = pg_begin_write,
		[STORE_OP_END_WRITE] = pg_end_write,
		[STORE_OP_RECOVER_WRITES] = pg_recover_writes,
		[STORE_OP_SUSPECT_ADD] = pg_suspect_add,
		[STORE_OP_SUSPECT_REMOVE] = pg_suspect_remove,
		[STORE_OP_LIST_SUSPECTS] = pg_list_suspects,
		[STORE_OP_POSTPONE] = pg_postpone,
		[STORE_OP_MARK_UNVERIFIED] = pg_mark_unverified,
		[STORE_OP_PURGE_JOBS] = pg_purge_jobs,
		[STORE_OP_LEASE_VERIFICATIONS] = pg_lease_verifications,
		[STORE_OP_END_VERIFICATION] = pg_end_verification,
		[STORE_OP_RELEASE_VERIFICATION_LEASES] = pg_release_verification_leases,
	},
	.close = pg_close,
};

int store_open_pg(uv_loop_t *loop, const struct store_pg_params *p, struct store **out, struct strbuf *err)
{
	struct pg_backend *g;
	PGconn *c;

	*out = NULL;
	if (!(c = store_pg_connect(p, err)))
		return -1;
	/* upstream's migrations are the admin's (`praefect sql-migrate`); our additive ones are applied here */
	if (store_pg_check_schema(c, err) < 0 || store_pg_migrate_ours(c, err) < 0) {
		PQfinish(c);
		return -1;
	}
	g = xcalloc(1, sizeof(*g));
	g->base.ops = &pg_ops;
	g->conn = c;
	return store_start(loop, &g->base, out, err);
}
