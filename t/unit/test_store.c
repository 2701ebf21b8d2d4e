/* Unit tests: the tracking store on a real SQLite file, driven through the event loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "base/strbuf.h"
#include "store/store.h"
#include "store/backend.h"

/* --- fixture: a fresh database file per test --- */

struct fx {
	uv_loop_t loop;
	char dir[64];
	char path[128];
	struct store *s;
};

static struct fx *F;

static void fx_open(struct fx *f)
{
	struct strbuf err = STRBUF_INIT;
	if (store_open_sqlite(&f->loop, f->path, &f->s, &err) < 0)
		fail_msg("open: %s", err.buf);
	strbuf_release(&err);
}

/* Close and let the loop free the store (its async handle closes on the next turn). */
static void fx_close(struct fx *f)
{
	store_close(f->s);
	f->s = NULL;
	uv_run(&f->loop, UV_RUN_DEFAULT);
}

static void fx_reopen(struct fx *f)
{
	fx_close(f);
	fx_open(f);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_store.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/praefect.db", f->dir);
	uv_loop_init(&f->loop);
	fx_open(f);
	F = f;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char p[160];
	if (f->s)
		fx_close(f);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	static const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };
	for (size_t i = 0; i < 4; i++) {
		snprintf(p, sizeof(p), "%s%s", f->path, suffixes[i]);
		unlink(p);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

/* A second connection on the same file, to look at what is committed. */
static int64_t sql_int(const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int64_t v = -999;

	assert_int_equal(sqlite3_open_v2(F->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(db));
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_type(st, 0) == SQLITE_NULL ? -1000 : sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static void sql_exec(const char *sql)
{
	sqlite3 *db;
	assert_int_equal(sqlite3_open_v2(F->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(db));
	sqlite3_close(db);
}

/* --- capturing results --- */

static int seq_counter;

struct res {
	int fired, seq, status;
	char msg[256];
	int64_t val;
	char text[4096];
};

static void res_fire(struct res *r, int status, const char *msg)
{
	r->fired++;
	r->seq = ++seq_counter;
	r->status = status;
	snprintf(r->msg, sizeof(r->msg), "%s", status < 0 && msg ? msg : "");
}

static void on_done(void *arg, int status, const char *msg)
{
	res_fire(arg, status, msg);
}

static void on_val(void *arg, int status, const char *msg, int64_t v)
{
	struct res *r = arg;
	res_fire(r, status, msg);
	r->val = v;
}

static void on_repos(void *arg, int status, const char *msg, const struct store_repo *repos, size_t n)
{
	struct res *r = arg;
	struct strbuf sb = STRBUF_INIT;

	res_fire(r, status, msg);
	r->val = (int64_t)n;
	for (size_t i = 0; i < n; i++) {
		const struct store_repo *p = &repos[i];
		if (i)
			strbuf_addch(&sb, '\n');
		strbuf_addf(&sb, "%" PRId64 " %s/%s %s primary=%s gen=%" PRId64, p->id, p->virtual_storage,
			    p->relative_path, p->replica_path ? p->replica_path : "-",
			    p->primary ? p->primary : "-", p->generation);
		for (size_t j = 0; j < p->nr_replicas; j++)
			strbuf_addf(&sb, " %s:%" PRId64 "%s", p->replicas[j].storage, p->replicas[j].generation,
				    p->replicas[j].assigned ? "*" : "");
	}
	snprintf(r->text, sizeof(r->text), "%s", sb.buf);
	strbuf_release(&sb);
}

static void on_deleted(void *arg, int status, const char *msg, const char *replica_path,
		       const char *const *storages, size_t n)
{
	struct res *r = arg;
	struct strbuf sb = STRBUF_INIT;

	res_fire(r, status, msg);
	if (status == 0) {
		strbuf_addf(&sb, "%s:", replica_path ? replica_path : "-");
		for (size_t i = 0; i < n; i++)
			strbuf_addf(&sb, " %s", storages[i]);
	}
	snprintf(r->text, sizeof(r->text), "%s", sb.buf);
	strbuf_release(&sb);
}

static const char *state_str(enum job_state s)
{
	return store_job_state_name(s);
}

static int64_t last_ids[64];
static int last_force[64];

static void on_jobs(void *arg, int status, const char *msg, const struct repl_job *jobs, size_t n)
{
	struct res *r = arg;
	struct strbuf sb = STRBUF_INIT;

	res_fire(r, status, msg);
	r->val = (int64_t)n;
	for (size_t i = 0; i < n; i++) {
		const struct repl_job *j = &jobs[i];
		if (i < 64) {
			last_ids[i] = j->id;
			last_force[i] = j->force;
		}
		if (i)
			strbuf_addch(&sb, '\n');
		strbuf_addf(&sb, "%s %s/%s %s->%s %s %d", j->change, j->virtual_storage, j->relative_path,
			    *j->source_storage ? j->source_storage : "-", j->target_storage,
			    state_str(j->state), j->attempt);
		assert_true(j->created_at_ms > 1600000000000);
	}
	snprintf(r->text, sizeof(r->text), "%s", sb.buf);
	strbuf_release(&sb);
}

/* Run the loop until `r` fired; it must not have fired inside the call. */
static void wait_for(struct res *r)
{
	assert_int_equal(r->fired, 0);
	while (!r->fired)
		uv_run(&F->loop, UV_RUN_ONCE);
	assert_int_equal(r->fired, 1);
}

#define L(...) ((const char *const[]){ __VA_ARGS__, NULL })
static size_t len(const char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

/* --- synchronous wrappers --- */

static struct res R;

static struct res *reset(void)
{
	memset(&R, 0, sizeof(R));
	return &R;
}

static int64_t reserve(const char *path, int *status)
{
	store_reserve_id(F->s, "vs", path, on_val, reset());
	wait_for(&R);
	*status = R.status;
	return R.val;
}

static int create(int64_t id, const char *path, const char *primary, const char *const *updated,
		  const char *const *outdated, int store_primary, int store_assignments)
{
	char rp[64];
	snprintf(rp, sizeof(rp), "@cluster/repositories/%" PRId64, id);
	store_create_repository(F->s, id, "vs", path, rp, primary, updated, len(updated), outdated,
				len(outdated), store_primary, store_assignments, on_done, reset());
	wait_for(&R);
	return R.status;
}

static int create1(int64_t id, const char *path)
{
	return create(id, path, "s1", L("s2"), L("s3"), 1, 0);
}

/* "" when absent; the text otherwise (R.status holds the status). */
static const char *get(const char *path)
{
	store_get_repository(F->s, "vs", path, on_repos, reset());
	wait_for(&R);
	return R.text;
}

static int64_t incr(int64_t id, const char *const *storages, int *status)
{
	store_increment_generation(F->s, id, storages, len(storages), on_val, reset());
	wait_for(&R);
	*status = R.status;
	return R.val;
}

static int done_call(void)
{
	wait_for(&R);
	return R.status;
}

static int64_t enqueue(const char *change, const char *path, const char *source, const char *target,
		       int *status)
{
	struct repl_job job = {
		.change = change, .repository_id = 1, .virtual_storage = "vs", .relative_path = path,
		.replica_path = "", .source_storage = source, .target_storage = target,
		.correlation_id = "cid",
	};
	store_enqueue(F->s, &job, on_val, reset());
	wait_for(&R);
	*status = R.status;
	return R.val;
}

static const char *dequeue(const char *vs, const char *target, size_t max)
{
	store_dequeue(F->s, vs, target, max, on_jobs, reset());
	wait_for(&R);
	assert_int_equal(R.status, 0);
	return R.text;
}

static int ack(enum job_state state, const int64_t *ids, size_t n)
{
	store_acknowledge(F->s, state, ids, n, on_done, reset());
	return done_call();
}

static const char *jobs(void)
{
	store_list_jobs(F->s, on_jobs, reset());
	wait_for(&R);
	assert_int_equal(R.status, 0);
	return R.text;
}

static int64_t count_jobs(void)
{
	store_count_jobs(F->s, on_val, reset());
	wait_for(&R);
	assert_int_equal(R.status, 0);
	return R.val;
}

/* --- migrations and persistence --- */

static void test_migrations(void **state)
{
	size_t n;
	const char *const *ids = store_migrations(&n);
	char sql[256];

	assert_true(n >= 1);
	assert_null(ids[n]);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM schema_migrations"), (int64_t)n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(strlen(ids[i]) > 15 && ids[i][14] == '_', 1);
		snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM schema_migrations WHERE id = '%s'", ids[i]);
		assert_int_equal(sql_int(sql), 1);
		if (i)
			assert_true(strcmp(ids[i - 1], ids[i]) < 0);
	}
	int64_t applied = sql_int("SELECT MIN(applied_at) FROM schema_migrations");
	assert_true(applied > 1600000000000);

	/* reopening applies nothing again and keeps the bookkeeping */
	fx_reopen(F);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM schema_migrations"), (int64_t)n);
	assert_int_equal(sql_int("SELECT MIN(applied_at) FROM schema_migrations"), applied);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM hello_world"), 1);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'"), 1);

	/* a database migrated by a newer version is refused */
	fx_close(F);
	sql_exec("INSERT INTO schema_migrations (id, applied_at) VALUES ('29990101000000_future', 0)");
	struct strbuf err = STRBUF_INIT;
	struct store *s = NULL;
	assert_int_equal(store_open_sqlite(&F->loop, F->path, &s, &err), -1);
	assert_null(s);
	assert_non_null(strstr(err.buf, "unknown migration \"29990101000000_future\""));
	strbuf_release(&err);
	sql_exec("DELETE FROM schema_migrations WHERE id = '29990101000000_future'");
	fx_open(F);

	/* a missing older migration is caught up (sql-migrate's plan) */
	fx_close(F);
	sql_exec("DROP TABLE node_status;"
		 "DELETE FROM schema_migrations WHERE id = '20240101000200_node_status'");
	fx_open(F);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM schema_migrations"), (int64_t)n);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM node_status"), 0);
}

static void test_open_error(void **state)
{
	struct strbuf err = STRBUF_INIT;
	struct store *s = (struct store *)&err;
	assert_int_equal(store_open_sqlite(&F->loop, "/nonexistent/dir/x.db", &s, &err), -1);
	assert_null(s);
	assert_non_null(strstr(err.buf, "/nonexistent/dir/x.db"));
	strbuf_release(&err);
}

static void test_persistence(void **state)
{
	int st;
	assert_int_equal(create1(7, "a.git"), 0);
	incr(7, L("s1"), &st);
	assert_int_equal(st, 0);
	enqueue("update", "a.git", "s1", "s2", &st);
	assert_int_equal(st, 0);
	fx_reopen(F);
	assert_string_equal(get("a.git"), "7 vs/a.git @cluster/repositories/7 primary=s1 gen=1 s1:1 s2:0");
	assert_string_equal(jobs(), "update vs/a.git s1->s2 ready 3");
}

/* --- repositories --- */

static void test_repository_basics(void **state)
{
	int st;

	assert_int_equal(reserve("a.git", &st), 1);
	assert_int_equal(st, 0);
	assert_int_equal(reserve("b.git", &st), 2);
	assert_int_equal(create1(1, "a.git"), 0);
	reserve("a.git", &st);
	assert_int_equal(st, -EEXIST);

	assert_string_equal(get("a.git"), "1 vs/a.git @cluster/repositories/1 primary=s1 gen=0 s1:0 s2:0");
	assert_int_equal(R.status, 0);
	get("missing.git");
	assert_int_equal(R.status, -ENOENT);
	assert_int_equal(R.val, 0);

	assert_int_equal(create1(1, "other.git"), -EEXIST);
	assert_string_equal(R.msg, "repository id 1 already in use");
	assert_int_equal(create1(5, "a.git"), -EEXIST);
	assert_string_equal(R.msg, "repository already exists");

	/* an id given explicitly is never reserved again */
	assert_int_equal(create1(10, "c.git"), 0);
	assert_int_equal(reserve("d.git", &st), 11);

	store_list_repositories(F->s, NULL, on_repos, reset());
	wait_for(&R);
	assert_int_equal(R.status, 0);
	assert_string_equal(R.text, "1 vs/a.git @cluster/repositories/1 primary=s1 gen=0 s1:0 s2:0\n"
				    "10 vs/c.git @cluster/repositories/10 primary=s1 gen=0 s1:0 s2:0");
	store_list_repositories(F->s, "vs2", on_repos, reset());
	wait_for(&R);
	assert_int_equal(R.status, 0);
	assert_int_equal(R.val, 0);
	store_list_repositories(F->s, "vs", on_repos, reset());
	wait_for(&R);
	assert_int_equal(R.val, 2);
}

/* The start-up load's pages: a range of ids, in id order, each with its replicas and assignments. */
static void test_list_pages(void **state)
{
	assert_int_equal(create1(1, "a.git"), 0);
	assert_int_equal(create(2, "b.git", "s1", L("s2"), L("s3"), 1, 1), 0);
	assert_int_equal(create1(5, "c.git"), 0);
	assert_int_equal(create(9, "d.git", "s2", NULL, L("s3"), 1, 1), 0);
	assert_int_equal(create1(10, "e.git"), 0);

	store_count_repositories(F->s, on_val, reset());
	wait_for(&R);
	assert_int_equal(R.status, 0);
	assert_int_equal(R.val, 5);
	store_last_repository_id(F->s, on_val, reset());
	wait_for(&R);
	assert_int_equal(R.status, 0);
	assert_int_equal(R.val, 10);

	store_list_repositories_page(F->s, 0, 2, on_repos, reset());
	wait_for(&R);
	assert_int_equal(R.status, 0);
	assert_string_equal(R.text, "1 vs/a.git @cluster/repositories/1 primary=s1 gen=0 s1:0 s2:0\n"
				    "2 vs/b.git @cluster/repositories/2 primary=s1 gen=0 s1:0* s2:0* s3:-1*");
	/* a range that starts and ends between ids; replicas of ids outside the page stay out */
	store_list_repositories_page(F->s, 3, 9, on_repos, reset());
	wait_for(&R);
	assert_string_equal(R.text, "5 vs/c.git @cluster/repositories/5 primary=s1 gen=0 s1:0 s2:0\n"
				    "9 vs/d.git @cluster/repositories/9 primary=s2 gen=0 s2:0* s3:-1*");
	store_list_repositories_page(F->s, 9, 12, on_repos, reset());
	wait_for(&R);
	assert_int_equal(R.val, 1);
	assert_string_equal(R.text, "10 vs/e.git @cluster/repositories/10 primary=s1 gen=0 s1:0 s2:0");
	store_list_repositories_page(F->s, 10, 20, on_repos, reset());
	wait_for(&R);
	assert_int_equal(R.status, 0);
	assert_int_equal(R.val, 0);
	/* an empty store: no last id */
	sql_exec("DELETE FROM repositories");
	store_last_repository_id(F->s, on_val, reset());
	wait_for(&R);
	assert_int_equal(R.status, 0);
	assert_int_equal(R.val, 0);
}

static void test_create_with_assignments(void **state)
{
	assert_int_equal(create(1, "a.git", "s1", L("s2"), L("s3"), 0, 1), 0);
	assert_string_equal(get("a.git"), "1 vs/a.git @cluster/repositories/1 primary=- gen=0 s1:0* s2:0* s3:-1*");
	/* the primary among the updated secondaries is not an error */
	assert_int_equal(create(2, "b.git", "s1", L("s1", "s2"), L("s2"), 1, 1), 0);
	assert_string_equal(get("b.git"), "2 vs/b.git @cluster/repositories/2 primary=s1 gen=0 s1:0* s2:0*");
	/* a failed create leaves nothing behind */
	assert_int_equal(create(2, "c.git", "s1", NULL, NULL, 1, 1), -EEXIST);
	get("c.git");
	assert_int_equal(R.status, -ENOENT);
}

static void test_increment_generation(void **state)
{
	int st;

	assert_int_equal(create1(1, "a.git"), 0);
	assert_int_equal(incr(1, L("s1", "s2", "s3"), &st), 1);
	assert_int_equal(st, 0);
	assert_string_equal(get("a.git"), "1 vs/a.git @cluster/repositories/1 primary=s1 gen=1 s1:1 s2:1");
	assert_int_equal(incr(1, L("s1"), &st), 2);
	assert_string_equal(get("a.git"), "1 vs/a.git @cluster/repositories/1 primary=s1 gen=2 s1:2 s2:1");
	/* only outdated replicas named: nothing changes */
	assert_int_equal(incr(1, L("s2", "s3"), &st), GENERATION_UNKNOWN);
	assert_int_equal(st, -ESTALE);
	assert_string_equal(R.msg, "write to outdated nodes");
	assert_string_equal(get("a.git"), "1 vs/a.git @cluster/repositories/1 primary=s1 gen=2 s1:2 s2:1");
	incr(99, L("s1"), &st);
	assert_int_equal(st, -ENOENT);
	/* a storage named twice is bumped once */
	assert_int_equal(incr(1, L("s1", "s1"), &st), 3);
	assert_string_equal(get("a.git"), "1 vs/a.git @cluster/repositories/1 primary=s1 gen=3 s1:3 s2:1");
}

static void test_set_generation(void **state)
{
	assert_int_equal(create1(1, "a.git"), 0);
	store_set_generation(F->s, 1, "s3", "a.git", 5, on_done, reset());
	assert_int_equal(done_call(), 0);
	assert_string_equal(get("a.git"), "1 vs/a.git @cluster/repositories/1 primary=s1 gen=5 s1:0 s2:0 s3:5");
	/* lower than the repository: the repository keeps its generation */
	store_set_generation(F->s, 1, "s2", NULL, 2, on_done, reset());
	assert_int_equal(done_call(), 0);
	assert_string_equal(get("a.git"), "1 vs/a.git @cluster/repositories/1 primary=s1 gen=5 s1:0 s2:2 s3:5");
	/* upstream: no repository, no error, no row */
	store_set_generation(F->s, 99, "s1", "x.git", 1, on_done, reset());
	assert_int_equal(done_call(), 0);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM storage_repositories WHERE repository_id = 99"), 0);
}

static void test_delete_repository(void **state)
{
	assert_int_equal(create(1, "a.git", "s2", L("s1"), L("s3"), 1, 1), 0);
	assert_int_equal(create1(2, "b.git"), 0);
	store_delete_repository(F->s, "vs", "a.git", on_deleted, reset());
	assert_int_equal(done_call(), 0);
	assert_string_equal(R.text, "@cluster/repositories/1: s1 s2");
	get("a.git");
	assert_int_equal(R.status, -ENOENT);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM storage_repositories WHERE repository_id = 1"), 0);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM repository_assignments WHERE repository_id = 1"), 0);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM storage_repositories"), 2);
	store_delete_repository(F->s, "vs", "a.git", on_deleted, reset());
	assert_int_equal(done_call(), -ENOENT);
}

static void test_delete_replicas(void **state)
{
	assert_int_equal(create1(1, "a.git"), 0);
	store_delete_replica(F->s, 1, "s2", on_done, reset());
	assert_int_equal(done_call(), 0);
	store_delete_replica(F->s, 1, "s9", on_done, reset());
	assert_int_equal(done_call(), 0);
	assert_string_equal(get("a.git"), "1 vs/a.git @cluster/repositories/1 primary=s1 gen=0 s1:0");

	/* the last replica takes the repository with it */
	store_delete_invalid_replica(F->s, 1, "s1", on_done, reset());
	assert_int_equal(done_call(), 0);
	get("a.git");
	assert_int_equal(R.status, -ENOENT);

	/* another replica remains: only the invalid one goes */
	assert_int_equal(create1(2, "b.git"), 0);
	store_delete_invalid_replica(F->s, 2, "s1", on_done, reset());
	assert_int_equal(done_call(), 0);
	assert_string_equal(get("b.git"), "2 vs/b.git @cluster/repositories/2 primary=s1 gen=0 s2:0");
	store_delete_invalid_replica(F->s, 99, "s1", on_done, reset());
	assert_int_equal(done_call(), 0);
}

static void test_set_authoritative(void **state)
{
	int st;
	assert_int_equal(create1(1, "a.git"), 0);
	assert_int_equal(incr(1, L("s1"), &st), 1);
	store_set_authoritative(F->s, "vs", "a.git", "s2", on_val, reset());
	assert_int_equal(done_call(), 0);
	assert_int_equal(R.val, 2);
	assert_string_equal(get("a.git"), "1 vs/a.git @cluster/repositories/1 primary=s1 gen=2 s1:1 s2:2");
	store_set_authoritative(F->s, "vs", "a.git", "s3", on_val, reset());
	assert_int_equal(done_call(), 0);
	assert_int_equal(R.val, 3);
	assert_string_equal(get("a.git"), "1 vs/a.git @cluster/repositories/1 primary=s1 gen=3 s1:1 s2:2 s3:3");
	store_set_authoritative(F->s, "vs", "missing.git", "s1", on_val, reset());
	assert_int_equal(done_call(), -ENOENT);
}

static void on_swap(void *arg, int status, const char *msg, const char *current)
{
	struct res *r = arg;
	res_fire(r, status, msg);
	snprintf(r->text, sizeof(r->text), "%s", current ? current : "-");
}

/* store_swap_primary(): compare-and-set on the primary seen */
static void test_swap_primary(void **state)
{
	assert_int_equal(create1(1, "a.git"), 0);
	store_set_primary(F->s, 1, NULL, on_done, reset());
	assert_int_equal(done_call(), 0);
	store_swap_primary(F->s, 1, NULL, "s2", on_swap, reset());
	assert_int_equal(done_call(), 0);
	assert_string_equal(get("a.git"), "1 vs/a.git @cluster/repositories/1 primary=s2 gen=0 s1:0 s2:0");
	/* a second elector that still saw no primary loses and learns the winner */
	store_swap_primary(F->s, 1, NULL, "s1", on_swap, reset());
	assert_int_equal(done_call(), -EAGAIN);
	assert_string_equal(R.text, "s2");
	assert_string_equal(get("a.git"), "1 vs/a.git @cluster/repositories/1 primary=s2 gen=0 s1:0 s2:0");
	store_swap_primary(F->s, 1, "s2", "s1", on_swap, reset());
	assert_int_equal(done_call(), 0);
	assert_string_equal(get("a.git"), "1 vs/a.git @cluster/repositories/1 primary=s1 gen=0 s1:0 s2:0");
	store_swap_primary(F->s, 99, NULL, "s1", on_swap, reset());
	assert_int_equal(done_call(), -ENOENT);
	(void)state;
}

static void test_primary_assignments_rename(void **state)
{
	int st;
	assert_int_equal(create1(1, "a.git"), 0);
	assert_int_equal(create1(2, "b.git"), 0);

	store_set_primary(F->s, 1, "s2", on_done, reset());
	assert_int_equal(done_call(), 0);
	assert_string_equal(get("a.git"), "1 vs/a.git @cluster/repositories/1 primary=s2 gen=0 s1:0 s2:0");
	store_set_primary(F->s, 1, NULL, on_done, reset());
	assert_int_equal(done_call(), 0);
	assert_string_equal(get("a.git"), "1 vs/a.git @cluster/repositories/1 primary=- gen=0 s1:0 s2:0");
	store_set_primary(F->s, 99, "s1", on_done, reset());
	assert_int_equal(done_call(), -ENOENT);

	store_set_assignments(F->s, 1, L("s2", "s3"), 2, on_done, reset());
	assert_int_equal(done_call(), 0);
	assert_string_equal(get("a.git"), "1 vs/a.git @cluster/repositories/1 primary=- gen=0 s1:0 s2:0* s3:-1*");
	store_set_assignments(F->s, 1, L("s1"), 1, on_done, reset());
	assert_int_equal(done_call(), 0);
	assert_string_equal(get("a.git"), "1 vs/a.git @cluster/repositories/1 primary=- gen=0 s1:0* s2:0");
	store_set_assignments(F->s, 99, L("s1"), 1, on_done, reset());
	assert_int_equal(done_call(), -ENOENT);

	/* rename keeps id, replica path, replicas and assignments */
	store_rename_repository(F->s, "vs", "a.git", "c.git", on_done, reset());
	assert_int_equal(done_call(), 0);
	get("a.git");
	assert_int_equal(R.status, -ENOENT);
	assert_string_equal(get("c.git"), "1 vs/c.git @cluster/repositories/1 primary=- gen=0 s1:0* s2:0");
	assert_int_equal(incr(1, L("s1", "s2"), &st), 1);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM storage_repositories WHERE relative_path = 'c.git'"), 2);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM repository_assignments WHERE relative_path = 'c.git'"), 1);
	store_rename_repository(F->s, "vs", "c.git", "b.git", on_done, reset());
	assert_int_equal(done_call(), -EEXIST);
	store_rename_repository(F->s, "vs", "a.git", "d.git", on_done, reset());
	assert_int_equal(done_call(), -ENOENT);
}

/* --- replication queue --- */

static void test_enqueue_dedup(void **state)
{
	int st;
	int64_t id = enqueue("update", "a.git", "s1", "s2", &st);
	assert_int_equal(st, 0);
	assert_true(id > 0);
	enqueue("update", "a.git", "s3", "s2", &st);
	assert_int_equal(st, -EEXIST);
	assert_string_equal(R.msg, "replication event \"\" -> \"vs\" -> \"s2\" -> \"a.git\" already exists");
	assert_true(enqueue("update", "a.git", "s1", "s3", &st) > id);
	assert_int_equal(st, 0);
	enqueue("delete_replica", "a.git", "", "s2", &st);
	assert_int_equal(st, 0);
	enqueue("gc", "a.git", "s1", "s2", &st);
	assert_int_equal(st, -EINVAL);
	assert_int_equal(count_jobs(), 3);

	/* both changes of one lock come in one batch */
	assert_string_equal(dequeue("vs", "s2", 10), "update vs/a.git s1->s2 in_progress 2\n"
						     "delete_replica vs/a.git -->s2 in_progress 3");
	/* the dequeued job no longer blocks an identical one */
	enqueue("update", "a.git", "s1", "s2", &st);
	assert_int_equal(st, 0);
	/* one live delete_replica per repository */
	enqueue("delete_replica", "a.git", "", "s3", &st);
	assert_int_equal(st, -EEXIST);
	assert_int_equal(count_jobs(), 4);
}

static void test_dequeue(void **state)
{
	int st;
	char path[16];

	for (int i = 0; i < 5; i++) {
		snprintf(path, sizeof(path), "p%d.git", i);
		enqueue("update", path, "s1", "s2", &st);
		assert_int_equal(st, 0);
	}
	enqueue("update", "p0.git", "s1", "s3", &st);
	assert_string_equal(dequeue("vs", "s2", 0), "");
	assert_string_equal(dequeue("vs", "s2", 3), "update vs/p0.git s1->s2 in_progress 2\n"
						    "update vs/p1.git s1->s2 in_progress 2\n"
						    "update vs/p2.git s1->s2 in_progress 2");
	int64_t first = last_ids[0];
	assert_string_equal(dequeue("vs", "s2", 10), "update vs/p3.git s1->s2 in_progress 2\n"
						     "update vs/p4.git s1->s2 in_progress 2");
	assert_string_equal(dequeue("vs", "s2", 10), "");
	assert_string_equal(dequeue("other", "s3", 10), "");
	assert_string_equal(dequeue("vs", "s3", 10), "update vs/p0.git s1->s3 in_progress 2");

	/* the lock of p0 on s2 is held until its job is acknowledged */
	enqueue("update", "p0.git", "s1", "s2", &st);
	assert_int_equal(st, 0);
	assert_string_equal(dequeue("vs", "s2", 10), "");
	assert_int_equal(ack(JOB_COMPLETED, &first, 1), 0);
	/* queued after p0's job started, so not superseded by it */
	assert_string_equal(dequeue("vs", "s2", 10), "update vs/p0.git s1->s2 in_progress 2");
}

static void test_one_job_per_lock_and_change(void **state)
{
	int st;
	int64_t a = enqueue("update", "a.git", "s1", "s2", &st);
	assert_string_equal(dequeue("vs", "s2", 10), "update vs/a.git s1->s2 in_progress 2");
	assert_int_equal(ack(JOB_FAILED, &a, 1), 0);
	/* a failed job does not block a new ready one */
	int64_t b = enqueue("update", "a.git", "s1", "s2", &st);
	assert_int_equal(st, 0);
	assert_true(b > a);
	/* only the oldest of the two */
	assert_string_equal(dequeue("vs", "s2", 10), "update vs/a.git s1->s2 in_progress 1");
	assert_int_equal(last_ids[0], a);
	assert_string_equal(dequeue("vs", "s2", 10), "");
}

static void test_attempts(void **state)
{
	int st;
	int64_t id = enqueue("update", "a.git", "s1", "s2", &st);
	int64_t del = enqueue("delete_replica", "b.git", "", "s2", &st);
	int64_t both[] = { id, del };

	assert_string_equal(dequeue("vs", "s2", 10), "update vs/a.git s1->s2 in_progress 2\n"
						     "delete_replica vs/b.git -->s2 in_progress 3");
	assert_int_equal(ack(JOB_FAILED, both, 2), 0);
	assert_string_equal(jobs(), "update vs/a.git s1->s2 failed 2\ndelete_replica vs/b.git -->s2 failed 3");
	assert_string_equal(dequeue("vs", "s2", 10), "update vs/a.git s1->s2 in_progress 1\n"
						     "delete_replica vs/b.git -->s2 in_progress 3");
	assert_int_equal(ack(JOB_FAILED, both, 2), 0);
	assert_string_equal(dequeue("vs", "s2", 10), "update vs/a.git s1->s2 in_progress 0\n"
						     "delete_replica vs/b.git -->s2 in_progress 3");
	/* the worker gives up on the update at attempt 0; delete_replica never dies */
	assert_int_equal(ack(JOB_DEAD, &id, 1), 0);
	assert_int_equal(ack(JOB_FAILED, &del, 1), 0);
	for (int i = 0; i < 5; i++) {
		assert_string_equal(dequeue("vs", "s2", 10), "delete_replica vs/b.git -->s2 in_progress 3");
		assert_int_equal(ack(JOB_FAILED, &del, 1), 0);
	}
	assert_string_equal(jobs(), "delete_replica vs/b.git -->s2 failed 3");
	assert_int_equal(count_jobs(), 1);

	/* only in_progress jobs are acknowledged; other states are rejected */
	assert_int_equal(ack(JOB_COMPLETED, &del, 1), 0);
	assert_string_equal(jobs(), "delete_replica vs/b.git -->s2 failed 3");
	assert_int_equal(ack(JOB_READY, &del, 1), -EINVAL);
	assert_string_equal(R.msg, "event state is not supported: \"ready\"");
}

static void test_acknowledge_completed_supersedes(void **state)
{
	int st;
	int64_t a = enqueue("update", "a.git", "s1", "s2", &st);
	dequeue("vs", "s2", 10);
	assert_int_equal(ack(JOB_FAILED, &a, 1), 0);
	/* queued while a waits for its retry, from the same source */
	enqueue("update", "a.git", "s1", "s2", &st);
	assert_int_equal(st, 0);
	/* other repositories and targets are not touched */
	enqueue("update", "b.git", "s1", "s2", &st);
	enqueue("update", "a.git", "s1", "s3", &st);
	usleep(3000);   /* created_at has millisecond resolution */
	assert_string_equal(dequeue("vs", "s2", 1), "update vs/a.git s1->s2 in_progress 1");
	assert_int_equal(ack(JOB_COMPLETED, &a, 1), 0);
	assert_string_equal(jobs(), "update vs/b.git s1->s2 ready 3\nupdate vs/a.git s1->s3 ready 3");

	/* a ready job from another source survives */
	int64_t c = enqueue("update", "c.git", "s1", "s2", &st);
	dequeue("vs", "s2", 10);   /* takes c and b */
	assert_int_equal(ack(JOB_FAILED, &c, 1), 0);
	enqueue("update", "c.git", "s3", "s2", &st);
	assert_int_equal(st, 0);
	usleep(3000);
	assert_string_equal(dequeue("vs", "s2", 10), "update vs/c.git s1->s2 in_progress 1");
	assert_int_equal(ack(JOB_COMPLETED, &c, 1), 0);
	assert_string_equal(jobs(), "update vs/b.git s1->s2 in_progress 2\nupdate vs/a.git s1->s3 ready 3\n"
				    "update vs/c.git s3->s2 ready 3");
}

static void test_heartbeat(void **state)
{
	int st;
	int64_t id = enqueue("update", "a.git", "s1", "s2", &st);
	int64_t missing = 424242;

	dequeue("vs", "s2", 10);
	sql_exec("UPDATE replication_queue_job_lock SET triggered_at = 1");
	store_heartbeat(F->s, &id, 1, on_done, reset());
	assert_int_equal(done_call(), 0);
	assert_true(sql_int("SELECT triggered_at FROM replication_queue_job_lock") > 1600000000000);
	/* fresh: not stale after a minute's threshold */
	store_acknowledge_stale(F->s, 60000, on_val, reset());
	assert_int_equal(done_call(), 0);
	assert_int_equal(R.val, 0);
	assert_int_equal(ack(JOB_COMPLETED, &id, 1), 0);
	store_heartbeat(F->s, &id, 1, on_done, reset());
	assert_int_equal(done_call(), -ENOENT);
	store_heartbeat(F->s, &missing, 1, on_done, reset());
	assert_int_equal(done_call(), -ENOENT);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM replication_queue_lock WHERE acquired"), 0);
}

static void test_stale_after_crash(void **state)
{
	int st;
	int64_t a = enqueue("update", "a.git", "s1", "s2", &st);
	int64_t b = enqueue("update", "b.git", "s1", "s2", &st);
	enqueue("delete_replica", "c.git", "", "s2", &st);

	/* b on its last attempt */
	for (int i = 0; i < 2; i++) {
		dequeue("vs", "s2", 10);
		int64_t ids[] = { last_ids[0], last_ids[1], last_ids[2] };
		assert_int_equal(ack(JOB_FAILED, ids, 3), 0);
	}
	enqueue("update", "d.git", "s1", "s3", &st);
	assert_string_equal(dequeue("vs", "s2", 10), "update vs/a.git s1->s2 in_progress 0\n"
						     "update vs/b.git s1->s2 in_progress 0\n"
						     "delete_replica vs/c.git -->s2 in_progress 3");
	assert_int_equal(ack(JOB_FAILED, &a, 1), 0);
	dequeue("vs", "s2", 10);   /* a again: attempt -1 */
	assert_int_equal(sql_int("SELECT attempt FROM replication_queue WHERE id = 1"), -1);

	/* the process dies with jobs in progress */
	fx_reopen(F);
	assert_string_equal(jobs(), "update vs/a.git s1->s2 in_progress -1\n"
				    "update vs/b.git s1->s2 in_progress 0\n"
				    "delete_replica vs/c.git -->s2 in_progress 3\n"
				    "update vs/d.git s1->s3 ready 3");
	assert_string_equal(dequeue("vs", "s2", 10), "");
	usleep(3000);
	store_acknowledge_stale(F->s, 0, on_val, reset());
	assert_int_equal(done_call(), 0);
	assert_int_equal(R.val, 3);
	/* out of attempts: gone; the rest can be retried */
	assert_string_equal(jobs(), "delete_replica vs/c.git -->s2 failed 3\nupdate vs/d.git s1->s3 ready 3");
	assert_int_equal(sql_int("SELECT COUNT(*) FROM replication_queue_job_lock"), 0);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM replication_queue_lock WHERE acquired"), 0);
	assert_string_equal(dequeue("vs", "s2", 10), "delete_replica vs/c.git -->s2 in_progress 3");
	(void)b;
}

/* --- write intents and forced jobs (ours) --- */

static int64_t begin_write_as(const char *praefect, int64_t id, int *status)
{
	store_begin_write(F->s, praefect, id, on_val, reset());
	wait_for(&R);
	*status = R.status;
	return R.val;
}

static int64_t begin_write(int64_t id, int *status)
{
	return begin_write_as("p1", id, status);
}

static int64_t enqueue_forced(const char *path, const char *source, const char *target, int *status)
{
	struct repl_job job = {
		.change = "update", .repository_id = 1, .virtual_storage = "vs", .relative_path = path,
		.replica_path = "", .source_storage = source, .target_storage = target,
		.correlation_id = "cid", .force = 1,
	};
	store_enqueue(F->s, &job, on_val, reset());
	wait_for(&R);
	*status = R.status;
	return R.val;
}

static void test_write_intents(void **state)
{
	int st;
	int64_t a, b;

	assert_int_equal(create1(1, "a.git"), 0);
	a = begin_write(1, &st);
	assert_int_equal(st, 0);
	b = begin_write(1, &st);
	assert_int_equal(st, 0);
	assert_true(b > a);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM write_intents WHERE repository_id = 1"), 2);

	/* the bump and the deletion of the intent are one */
	store_complete_write(F->s, a, 1, L("s1", "s2"), 2, on_val, reset());
	assert_int_equal(done_call(), 0);
	assert_int_equal(R.val, 1);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM write_intents"), 1);
	assert_string_equal(get("a.git"), "1 vs/a.git @cluster/repositories/1 primary=s1 gen=1 s1:1 s2:1");

	/* a bump that fails keeps the intent */
	store_complete_write(F->s, b, 1, L("s3"), 1, on_val, reset());
	assert_int_equal(done_call(), -ESTALE);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM write_intents"), 1);
	/* a write that ends without a bump drops it alone; twice is no error */
	store_end_write(F->s, b, on_done, reset());
	assert_int_equal(done_call(), 0);
	store_end_write(F->s, b, on_done, reset());
	assert_int_equal(done_call(), 0);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM write_intents"), 0);

	begin_write(42, &st);
	assert_int_equal(st, -ENOENT);
	/* deleting the repository drops its intents */
	begin_write(1, &st);
	store_delete_repository(F->s, "vs", "a.git", on_deleted, reset());
	assert_int_equal(done_call(), 0);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM write_intents"), 0);
}

static void test_recover_writes(void **state)
{
	int st;

	/* a.git: primary s1 at the generation; b.git: primary s1 behind, s2 at it */
	assert_int_equal(create(1, "a.git", "s1", L("s2", "s3"), NULL, 1, 0), 0);
	assert_int_equal(create(2, "b.git", "s1", L("s2", "s3"), NULL, 1, 0), 0);
	incr(2, L("s2", "s3"), &st);
	assert_int_equal(st, 0);
	begin_write(1, &st);
	begin_write(1, &st);
	begin_write(2, &st);
	/* a forced job already waiting for one of the replicas is not doubled */
	enqueue_forced("a.git", "s1", "s3", &st);
	assert_int_equal(st, 0);
	/* c.git: another praefect's write, maybe still in flight, is not ours to recover */
	assert_int_equal(create(3, "c.git", "s1", L("s2"), NULL, 1, 0), 0);
	begin_write_as("p2", 3, &st);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM write_intents WHERE praefect_name = 'p2'"), 1);

	store_recover_writes(F->s, "p1", on_val, reset());
	assert_int_equal(done_call(), 0);
	assert_int_equal(R.val, 3);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM write_intents"), 1);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM write_intents WHERE praefect_name = 'p2'"), 1);
	assert_string_equal(jobs(), "update vs/a.git s1->s3 ready 3\n"
				    "update vs/a.git s1->s2 ready 3\n"
				    "update vs/b.git s2->s1 ready 3\n"
				    "update vs/b.git s2->s3 ready 3");
	assert_int_equal(sql_int("SELECT COUNT(*) FROM replication_queue WHERE json_extract(params, '$.force')"), 4);

	/* nothing left: a second start-up queues nothing */
	store_recover_writes(F->s, "p1", on_val, reset());
	assert_int_equal(done_call(), 0);
	assert_int_equal(R.val, 0);
	/* p2 starting takes its own, and an intent from before the column ('') goes to whoever starts */
	sql_exec("UPDATE write_intents SET praefect_name = ''");
	store_recover_writes(F->s, "p2", on_val, reset());
	assert_int_equal(done_call(), 0);
	assert_int_equal(R.val, 1);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM write_intents"), 0);
	sql_exec("DELETE FROM replication_queue WHERE relative_path = 'c.git'");
	/* no name (the embedded store's one praefect, restarted under another name) takes them all */
	begin_write_as("p2", 3, &st);
	begin_write_as("p3", 3, &st);
	store_recover_writes(F->s, NULL, on_val, reset());
	assert_int_equal(done_call(), 0);
	assert_int_equal(R.val, 1);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM write_intents"), 0);
	sql_exec("DELETE FROM replication_queue WHERE relative_path = 'c.git'");
	/* and the flag comes back with the job */
	assert_string_equal(dequeue("vs", "s2", 10), "update vs/a.git s1->s2 in_progress 2");
	assert_int_equal(last_force[0], 1);
	enqueue("update", "c.git", "s1", "s2", &st);
	assert_string_equal(dequeue("vs", "s2", 10), "update vs/c.git s1->s2 in_progress 2");
	assert_int_equal(last_force[0], 0);
}

/* --- suspect replicas (ours) --- */

static void on_suspects(void *arg, int status, const char *msg, const struct store_suspect *v, size_t n)
{
	struct res *r = arg;
	struct strbuf sb = STRBUF_INIT;
	res_fire(r, status, msg);
	for (size_t i = 0; i < n; i++)
		strbuf_addf(&sb, "%s%" PRId64 ":%s:%d", i ? " " : "", v[i].repository_id, v[i].storage, v[i].avoid);
	snprintf(r->text, sizeof(r->text), "%s", sb.buf);
	strbuf_release(&sb);
}

static const char *suspects(void)
{
	store_list_suspects(F->s, on_suspects, reset());
	wait_for(&R);
	assert_int_equal(R.status, 0);
	return R.text;
}

static int suspect_add(int64_t id, const char *storage, int avoid)
{
	store_suspect_add(F->s, id, storage, avoid, on_done, reset());
	return done_call();
}

static void test_suspects(void **state)
{
	assert_int_equal(create1(1, "a.git"), 0);
	assert_int_equal(create1(2, "b.git"), 0);
	assert_string_equal(suspects(), "");
	assert_int_equal(suspect_add(2, "s1", 0), 0);
	assert_int_equal(suspect_add(1, "s2", 0), 0);
	assert_int_equal(suspect_add(1, "s1", 1), 0);
	assert_string_equal(suspects(), "1:s1:1 1:s2:0 2:s1:0");
	/* recorded again: its `avoid` changes, both ways */
	assert_int_equal(suspect_add(1, "s2", 1), 0);
	assert_int_equal(suspect_add(1, "s1", 0), 0);
	assert_string_equal(suspects(), "1:s1:0 1:s2:1 2:s1:0");
	assert_int_equal(suspect_add(42, "s1", 1), -ENOENT);
	/* forgotten; twice is no error */
	store_suspect_remove(F->s, 1, "s1", on_done, reset());
	assert_int_equal(done_call(), 0);
	store_suspect_remove(F->s, 1, "s1", on_done, reset());
	assert_int_equal(done_call(), 0);
	assert_string_equal(suspects(), "1:s2:1 2:s1:0");
	/* kept across a reopen */
	fx_close(F);
	fx_open(F);
	assert_string_equal(suspects(), "1:s2:1 2:s1:0");
	/* and dropped with their repository */
	store_delete_repository(F->s, "vs", "a.git", on_deleted, reset());
	assert_int_equal(done_call(), 0);
	assert_string_equal(suspects(), "2:s1:0");
}

/* A database from before write intents keeps its queue and gains the table and the column. */
static void test_write_intents_migration(void **state)
{
	int st;
	assert_int_equal(create1(1, "a.git"), 0);
	enqueue("update", "a.git", "s1", "s2", &st);
	fx_close(F);
	sql_exec("DROP TABLE write_intents; ALTER TABLE replication_queue DROP COLUMN not_before;"
		 "DELETE FROM schema_migrations WHERE id IN ('20261206000000_write_intents',"
		 " '20261207120000_write_intents_praefect')");
	fx_open(F);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM pragma_table_info('replication_queue') WHERE name = 'not_before'"), 1);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM schema_migrations WHERE id = '20261206000000_write_intents'"), 1);
	assert_string_equal(dequeue("vs", "s2", 10), "update vs/a.git s1->s2 in_progress 2");
	assert_true(begin_write(1, &st) > 0);
	assert_int_equal(st, 0);

	/* an intent from before praefect_name existed gets '' (any praefect starting recovers it) */
	fx_close(F);
	sql_exec("ALTER TABLE write_intents DROP COLUMN praefect_name;"
		 "DELETE FROM schema_migrations WHERE id = '20261207120000_write_intents_praefect'");
	fx_open(F);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM write_intents WHERE praefect_name = ''"), 1);
	assert_true(begin_write(1, &st) > 0);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM write_intents WHERE praefect_name = 'p1'"), 1);
}

static int forced_of(int64_t id)
{
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT COALESCE(json_extract(params, '$.force'), 0) FROM replication_queue"
		 " WHERE id = %" PRId64, id);
	return (int)sql_int(sql);
}

static void test_forced_jobs(void **state)
{
	int st;
	int64_t plain = enqueue("update", "a.git", "s1", "s2", &st);
	int64_t forced;

	/* an unforced job does not stand in for a verification, the other way round it does */
	forced = enqueue_forced("a.git", "s1", "s2", &st);
	assert_int_equal(st, 0);
	assert_true(forced > plain);
	enqueue_forced("a.git", "s3", "s2", &st);
	assert_int_equal(st, -EEXIST);
	enqueue("update", "a.git", "s1", "s2", &st);
	assert_int_equal(st, -EEXIST);
	assert_int_equal(forced_of(plain), 0);
	assert_int_equal(forced_of(forced), 1);

	/* completing the unforced one does not supersede the verification */
	usleep(3000);
	assert_string_equal(dequeue("vs", "s2", 1), "update vs/a.git s1->s2 in_progress 2");
	assert_int_equal(last_ids[0], plain);
	assert_int_equal(ack(JOB_COMPLETED, &plain, 1), 0);
	assert_string_equal(jobs(), "update vs/a.git s1->s2 ready 3");
	assert_int_equal(forced_of(forced), 1);
}

static void test_postpone(void **state)
{
	int st;
	int64_t a = enqueue("update", "a.git", "s1", "s2", &st);
	int64_t del = enqueue("delete_replica", "b.git", "", "s2", &st);
	int64_t both[] = { a, del };

	/* could not run: ready again, attempt given back, not before its time */
	dequeue("vs", "s2", 10);
	store_postpone(F->s, both, 2, 60000, 1, on_done, reset());
	assert_int_equal(done_call(), 0);
	assert_string_equal(jobs(), "update vs/a.git s1->s2 ready 3\ndelete_replica vs/b.git -->s2 ready 3");
	assert_string_equal(dequeue("vs", "s2", 10), "");
	assert_int_equal(sql_int("SELECT COUNT(*) FROM replication_queue_lock WHERE acquired"), 0);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM replication_queue_job_lock"), 0);
	sql_exec("UPDATE replication_queue SET not_before = not_before - 60000");
	assert_string_equal(dequeue("vs", "s2", 10), "update vs/a.git s1->s2 in_progress 2\n"
						     "delete_replica vs/b.git -->s2 in_progress 3");

	/* failed: the attempt is spent, the retry waits */
	store_postpone(F->s, &a, 1, 60000, 0, on_done, reset());
	assert_int_equal(done_call(), 0);
	assert_string_equal(jobs(), "update vs/a.git s1->s2 failed 2\ndelete_replica vs/b.git -->s2 in_progress 3");
	assert_string_equal(dequeue("vs", "s2", 10), "");
	/* the replica's back-off holds for a newer job queued behind it */
	enqueue("update", "a.git", "s3", "s2", &st);
	assert_int_equal(st, 0);
	assert_string_equal(dequeue("vs", "s2", 10), "");
	sql_exec("UPDATE replication_queue SET not_before = NULL WHERE id = 1");
	assert_string_equal(dequeue("vs", "s2", 10), "update vs/a.git s1->s2 in_progress 1");
	/* a job no longer in progress is left alone */
	assert_int_equal(ack(JOB_COMPLETED, &a, 1), 0);
	store_postpone(F->s, &a, 1, 0, 1, on_done, reset());
	assert_int_equal(done_call(), 0);
	assert_string_equal(jobs(), "delete_replica vs/b.git -->s2 in_progress 3\nupdate vs/a.git s3->s2 ready 3");
	/* with no delay it is due at once */
	store_postpone(F->s, &del, 1, 0, 0, on_done, reset());
	assert_int_equal(done_call(), 0);
	assert_string_equal(dequeue("vs", "s2", 10), "delete_replica vs/b.git -->s2 in_progress 3\n"
						     "update vs/a.git s3->s2 in_progress 2");
}

/* --- ordering, draining, batching --- */

static void test_ordering(void **state)
{
	struct res rs[40];
	int st;
	const char *const s1[] = { "s1", NULL };

	assert_int_equal(create1(1, "a.git"), 0);
	memset(rs, 0, sizeof(rs));
	seq_counter = 0;
	for (int i = 0; i < 40; i++) {
		switch (i % 4) {
		case 0:
			store_increment_generation(F->s, 1, s1, 1, on_val, &rs[i]);
			break;
		case 1:
			store_get_repository(F->s, "vs", "a.git", on_repos, &rs[i]);
			break;
		case 2:
			store_increment_generation(F->s, 1, L("s3"), 1, on_val, &rs[i]);  /* -ESTALE */
			break;
		default:
			store_count_jobs(F->s, on_val, &rs[i]);
			break;
		}
		assert_int_equal(rs[i].fired, 0);
	}
	while (rs[39].fired == 0)
		uv_run(&F->loop, UV_RUN_ONCE);
	for (int i = 0; i < 40; i++) {
		assert_int_equal(rs[i].fired, 1);
		assert_int_equal(rs[i].seq, i + 1);
		if (i % 4 == 0) {
			assert_int_equal(rs[i].status, 0);
			assert_int_equal(rs[i].val, i / 4 + 1);
		} else if (i % 4 == 2) {
			assert_int_equal(rs[i].status, -ESTALE);
		} else {
			assert_int_equal(rs[i].status, 0);
		}
	}
	/* every read saw the writes submitted before it */
	char want[128];
	snprintf(want, sizeof(want), "1 vs/a.git @cluster/repositories/1 primary=s1 gen=%d s1:%d s2:0", 10, 10);
	assert_string_equal(rs[37].text, want);
	incr(1, L("s1"), &st);
	assert_int_equal(R.val, 11);
}

/* Failing ops inside a group-committed batch undo only themselves. */
static void test_batch_errors(void **state)
{
	enum { N = 60 };
	struct res rs[N];
	char paths[N][16];

	memset(rs, 0, sizeof(rs));
	for (int i = 0; i < N; i++) {
		/* every third op collides with the one before it */
		int id = i % 3 == 2 ? i : i + 1;
		snprintf(paths[i], sizeof(paths[i]), "r%d.git", i);
		store_create_repository(F->s, id, "vs", paths[i], paths[i], "s1", NULL, 0, NULL, 0, 1, 1,
					on_done, &rs[i]);
	}
	while (!rs[N - 1].fired)
		uv_run(&F->loop, UV_RUN_ONCE);
	for (int i = 0; i < N; i++)
		assert_int_equal(rs[i].status, i % 3 == 2 ? -EEXIST : 0);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM repositories"), N / 3 * 2);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM storage_repositories"), N / 3 * 2);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM repository_assignments"), N / 3 * 2);

	/* the same without group commit: odd ones reuse the id before them */
	store_set_max_batch(F->s, 1);
	memset(rs, 0, sizeof(rs));
	for (int i = 0; i < 6; i++) {
		snprintf(paths[i], sizeof(paths[i]), "n%d.git", i);
		store_create_repository(F->s, 1000 + i / 2, "vs", paths[i], "x", "s1", NULL, 0, NULL, 0, 1, 1,
					on_done, &rs[i]);
	}
	while (!rs[5].fired)
		uv_run(&F->loop, UV_RUN_ONCE);
	for (int i = 0; i < 6; i++)
		assert_int_equal(rs[i].status, i % 2 ? -EEXIST : 0);
}

static void test_close_drains(void **state)
{
	struct res rs[50];
	assert_int_equal(create1(1, "a.git"), 0);
	memset(rs, 0, sizeof(rs));
	for (int i = 0; i < 50; i++)
		store_increment_generation(F->s, 1, L("s1"), 1, on_val, &rs[i]);
	store_close(F->s);
	F->s = NULL;
	for (int i = 0; i < 50; i++) {
		assert_int_equal(rs[i].fired, 1);
		assert_int_equal(rs[i].status, 0);
		assert_int_equal(rs[i].val, i + 1);
	}
	uv_run(&F->loop, UV_RUN_DEFAULT);
	fx_open(F);
	assert_string_equal(get("a.git"), "1 vs/a.git @cluster/repositories/1 primary=s1 gen=50 s1:50 s2:0");
}

/* Callbacks may submit more work, and even close the store. */
static struct res queued_before, chained;

static void on_close_from_cb(void *arg, int status, const char *msg)
{
	res_fire(arg, status, msg);
	store_get_repository(F->s, "vs", "a.git", on_repos, &queued_before);
	store_close(F->s);
}

static void on_submit_during_close(void *arg, int status, const char *msg, int64_t v)
{
	res_fire(arg, status, msg);
	store_count_jobs(F->s, on_val, &chained);
}

static void test_close_from_callback(void **state)
{
	struct res first = { 0 }, later = { 0 };
	memset(&queued_before, 0, sizeof(queued_before));
	memset(&chained, 0, sizeof(chained));
	seq_counter = 0;
	store_set_primary(F->s, 1, NULL, on_close_from_cb, &first);
	store_count_jobs(F->s, on_submit_during_close, &later);
	while (!first.fired)
		uv_run(&F->loop, UV_RUN_ONCE);
	F->s = NULL;
	assert_int_equal(first.status, -ENOENT);
	/* queued before the close: ran, in order; submitted while it drained: cancelled */
	assert_int_equal(later.fired, 1);
	assert_int_equal(later.status, 0);
	assert_int_equal(queued_before.fired, 1);
	assert_int_equal(queued_before.status, -ENOENT);
	assert_int_equal(chained.fired, 1);
	assert_int_equal(chained.status, -ECANCELED);
	assert_int_equal(first.seq, 1);
	assert_int_equal(later.seq, 2);
	assert_int_equal(queued_before.seq, 3);
	assert_int_equal(chained.seq, 4);
	uv_run(&F->loop, UV_RUN_DEFAULT);
}

/* Another process holding the write lock for a moment delays operations, it does not fail them. */
static sqlite3 *locker;

static void release_lock(uv_timer_t *t)
{
	assert_int_equal(sqlite3_exec(locker, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	uv_close((uv_handle_t *)t, NULL);
}

static void test_busy_waits(void **state)
{
	uv_timer_t timer;
	struct res r = { 0 };
	uint64_t start;

	assert_int_equal(sqlite3_open_v2(F->path, &locker, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(locker, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	uv_timer_init(&F->loop, &timer);
	uv_update_time(&F->loop);
	start = uv_hrtime();
	uv_timer_start(&timer, release_lock, 200, 0);
	store_record_node_status(F->s, "p1", "vs", "s1", 1, on_done, &r);
	while (!r.fired)
		uv_run(&F->loop, UV_RUN_ONCE);
	assert_int_equal(r.status, 0);
	/* loop time has millisecond granularity */
	assert_true(uv_hrtime() - start >= 190 * 1000000ull);
	uv_run(&F->loop, UV_RUN_DEFAULT);
	sqlite3_close(locker);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM node_status"), 1);
}

/* An idle store does not keep the loop running; a pending op does (command-line tools). */
static void test_loop_exits_when_idle(void **state)
{
	struct res r = { 0 };
	assert_int_equal(uv_run(&F->loop, UV_RUN_DEFAULT), 0);
	store_count_jobs(F->s, on_val, &r);
	uv_run(&F->loop, UV_RUN_DEFAULT);
	assert_int_equal(r.fired, 1);
	assert_int_equal(r.status, 0);
	assert_int_equal(uv_run(&F->loop, UV_RUN_NOWAIT), 0);
}

/* --- node health --- */

static void test_node_status(void **state)
{
	store_record_node_status(F->s, "p1", "vs", "s1", 1, on_done, reset());
	assert_int_equal(done_call(), 0);
	int64_t seen = sql_int("SELECT last_seen_active_at FROM node_status");
	assert_true(seen > 1600000000000);
	usleep(3000);
	store_record_node_status(F->s, "p1", "vs", "s1", 0, on_done, reset());
	assert_int_equal(done_call(), 0);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM node_status"), 1);
	assert_int_equal(sql_int("SELECT last_seen_active_at FROM node_status"), seen);
	assert_true(sql_int("SELECT last_contact_attempt_at FROM node_status") > seen);
	store_record_node_status(F->s, "p2", "vs", "s1", 0, on_done, reset());
	assert_int_equal(done_call(), 0);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM node_status"), 2);
	assert_int_equal(sql_int("SELECT last_seen_active_at FROM node_status WHERE praefect_name = 'p2'"), -1000);
}

/* --- verification times and removed repositories' jobs --- */

static int64_t mark_unverified(int64_t id, const char *vs, const char *storage)
{
	store_mark_unverified(F->s, id, vs, storage, on_val, reset());
	wait_for(&R);
	assert_int_equal(R.status, 0);
	return R.val;
}

static void on_verified_at(void *arg, int status, const char *msg, const struct store_repo *repos, size_t n)
{
	struct res *r = arg;
	res_fire(r, status, msg);
	r->text[0] = 0;
	for (size_t i = 0; n == 1 && i < repos[0].nr_replicas; i++)
		snprintf(r->text + strlen(r->text), sizeof(r->text) - strlen(r->text), "%s%s=%" PRId64, i ? " " : "",
			 repos[0].replicas[i].storage, repos[0].replicas[i].verified_at_ms);
}

static void on_outdated_since(void *arg, int status, const char *msg, const struct store_repo *repos, size_t n)
{
	struct res *r = arg;
	res_fire(r, status, msg);
	r->text[0] = 0;
	for (size_t i = 0; n == 1 && i < repos[0].nr_replicas; i++)
		snprintf(r->text + strlen(r->text), sizeof(r->text) - strlen(r->text), "%s%s=%" PRId64, i ? " " : "",
			 repos[0].replicas[i].storage, repos[0].replicas[i].outdated_since_ms);
}

static const char *outdated_since_of(const char *path)
{
	store_get_repository(F->s, "vs", path, on_outdated_since, reset());
	wait_for(&R);
	assert_int_equal(R.status, 0);
	return R.text;
}

/* ours: when a replica fell behind, recorded, survives a reopen, cleared; no row is no error */
static void test_outdated_since(void **state)
{
	assert_int_equal(create(1, "a.git", "s1", L("s2"), L("s3"), 1, 1), 0);
	assert_string_equal(outdated_since_of("a.git"), "s1=0 s2=0 s3=0");
	store_set_outdated_since(F->s, 1, "s2", 1765000000123, on_done, reset());
	assert_int_equal(done_call(), 0);
	/* s3 is only assigned: no replica row to record on */
	store_set_outdated_since(F->s, 1, "s3", 1765000000456, on_done, reset());
	assert_int_equal(done_call(), 0);
	assert_string_equal(outdated_since_of("a.git"), "s1=0 s2=1765000000123 s3=0");
	fx_reopen(F);
	assert_string_equal(outdated_since_of("a.git"), "s1=0 s2=1765000000123 s3=0");
	store_set_outdated_since(F->s, 1, "s2", 0, on_done, reset());
	assert_int_equal(done_call(), 0);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM storage_repositories WHERE outdated_since IS NOT NULL"), 0);
	store_set_outdated_since(F->s, 99, "s1", 5, on_done, reset());
	assert_int_equal(done_call(), 0);
}

static void test_mark_unverified(void **state)
{
	assert_int_equal(create1(1, "a.git"), 0);
	assert_int_equal(create1(2, "b.git"), 0);
	sql_exec("INSERT INTO repositories (repository_id, virtual_storage, relative_path, generation)"
		 " VALUES (3, 'other', 'c.git', 0);"
		 "INSERT INTO storage_repositories (repository_id, virtual_storage, relative_path, storage, generation,"
		 " verified_at) VALUES (3, 'other', 'c.git', 's1', 0, 5);"
		 "UPDATE storage_repositories SET verified_at = 1617271460250 WHERE repository_id IN (1, 2);");
	/* read back with the replicas, assignment-only storages unverified */
	store_get_repository(F->s, "vs", "a.git", on_verified_at, reset());
	wait_for(&R);
	assert_string_equal(R.text, "s1=1617271460250 s2=1617271460250");

	assert_int_equal(mark_unverified(1, NULL, NULL), 2);
	assert_int_equal(mark_unverified(1, NULL, NULL), 0);       /* only verified ones count */
	assert_int_equal(mark_unverified(99, NULL, NULL), 0);
	store_get_repository(F->s, "vs", "a.git", on_verified_at, reset());
	wait_for(&R);
	assert_string_equal(R.text, "s1=0 s2=0");
	assert_int_equal(mark_unverified(0, "vs", "s2"), 1);       /* b.git on s2 */
	assert_int_equal(mark_unverified(0, "vs", "s9"), 0);
	assert_int_equal(mark_unverified(0, "vs", NULL), 1);       /* b.git on s1 */
	assert_int_equal(sql_int("SELECT verified_at FROM storage_repositories WHERE repository_id = 3"), 5);
	assert_int_equal(mark_unverified(0, "other", NULL), 1);
}

static void test_purge_jobs(void **state)
{
	int st;
	enqueue("update", "a.git", "s1", "s2", &st);
	assert_int_equal(st, 0);
	enqueue("update", "a.git", "s1", "s3", &st);
	enqueue("delete_replica", "a.git", "", "s4", &st);
	enqueue("delete", "a.git", "", "s5", &st);
	enqueue("update", "b.git", "s1", "s2", &st);
	/* one job of a.git in progress (dequeued) */
	assert_string_equal(dequeue("vs", "s3", 10), "update vs/a.git s1->s3 in_progress 2");

	store_purge_jobs(F->s, "vs", "a.git", on_val, reset());
	wait_for(&R);
	assert_int_equal(R.status, 0);
	assert_int_equal(R.val, 1);
	/* the in-progress job, the delete retry and b.git's job stay */
	assert_string_equal(jobs(), "update vs/a.git s1->s3 in_progress 2\n"
				    "delete vs/a.git -->s5 ready 3\n"
				    "update vs/b.git s1->s2 ready 3");
	/* it ends: the next purge finds none in progress and deletes it too */
	assert_int_equal(ack(JOB_COMPLETED, last_ids, 1), 0);
	store_purge_jobs(F->s, "vs", "a.git", on_val, reset());
	wait_for(&R);
	assert_int_equal(R.val, 0);
	assert_string_equal(jobs(), "delete vs/a.git -->s5 ready 3\nupdate vs/b.git s1->s2 ready 3");
	assert_int_equal(count_jobs(), 2);
}

/* --- background verification leases --- */

static void on_leased(void *arg, int status, const char *msg, const struct repl_job *jobs, size_t n)
{
	struct res *r = arg;
	res_fire(r, status, msg);
	r->val = (int64_t)n;
	r->text[0] = 0;
	for (size_t i = 0; i < n; i++)
		snprintf(r->text + strlen(r->text), sizeof(r->text) - strlen(r->text), "%s%" PRId64 " %s/%s %s %s",
			 i ? "\n" : "", jobs[i].repository_id, jobs[i].virtual_storage, jobs[i].relative_path,
			 jobs[i].replica_path, jobs[i].target_storage);
}

static const char *lease(const struct store_verify_slot *slots, size_t n, size_t batch, int64_t interval_ms)
{
	store_lease_verifications(F->s, slots, n, batch, interval_ms, 30000, on_leased, reset());
	wait_for(&R);
	assert_int_equal(R.status, 0);
	return R.text;
}

/* rows changed, or the error status */
static int64_t end_verification(int64_t id, const char *storage, enum store_verify_result result, int del)
{
	store_end_verification(F->s, id, storage, result, del, on_val, reset());
	wait_for(&R);
	return R.status < 0 ? R.status : R.val;
}

static void test_verification_leases(void **state)
{
	const struct store_verify_slot s1 = { "vs", "s1", 10 }, s2 = { "vs", "s2", 10 };
	const struct store_verify_slot both[] = { { "vs", "s1", 1 }, { "vs", "s2", 5 } };

	assert_int_equal(create1(1, "a.git"), 0);
	assert_int_equal(create1(2, "b.git"), 0);
	assert_int_equal(create1(3, "c.git"), 0);
	/* c.git verified long ago, b.git a moment ago, a.git never: never first, then the oldest */
	sql_exec("UPDATE storage_repositories SET verified_at = 1000 WHERE repository_id = 3;"
		 "UPDATE storage_repositories SET verified_at = strftime('%s', 'now') * 1000 WHERE repository_id = 2;");
	assert_string_equal(lease(&s1, 1, 25, 3600000),
			    "1 vs/a.git @cluster/repositories/1 s1\n3 vs/c.git @cluster/repositories/3 s1");
	/* leased: not handed out again, by this verifier or another */
	assert_string_equal(lease(&s1, 1, 25, 3600000), "");
	assert_int_equal(sql_int("SELECT COUNT(*) FROM storage_repositories WHERE verification_leased_until IS NOT NULL"), 2);
	/* per-storage maxima and the batch size bound what one call takes; s3 only has an assignment */
	assert_string_equal(lease(both, 2, 25, 3600000), "1 vs/a.git @cluster/repositories/1 s2\n"
							 "3 vs/c.git @cluster/repositories/3 s2");
	assert_string_equal(lease(&s1, 1, 25, 0), "2 vs/b.git @cluster/repositories/2 s1");
	assert_string_equal(lease(&(struct store_verify_slot){ "other", "s1", 10 }, 1, 25, 0), "");

	/* valid: verified now, the lease gone */
	assert_int_equal(end_verification(1, "s1", STORE_VERIFY_VALID, 1), 1);
	assert_true(sql_int("SELECT verified_at FROM storage_repositories WHERE repository_id = 1 AND storage = 's1'")
		    > 1600000000000);
	assert_int_equal(sql_int("SELECT verification_leased_until FROM storage_repositories"
				 " WHERE repository_id = 1 AND storage = 's1'"), -1000);
	/* error: the lease goes, verified_at stays as it was */
	assert_int_equal(end_verification(3, "s1", STORE_VERIFY_ERROR, 1), 1);
	assert_int_equal(sql_int("SELECT verified_at FROM storage_repositories WHERE repository_id = 3 AND storage = 's1'"),
			 1000);
	assert_string_equal(lease(&s1, 1, 25, 3600000), "3 vs/c.git @cluster/repositories/3 s1");
	/* invalid, deletions off: kept and counted verified */
	assert_int_equal(end_verification(3, "s1", STORE_VERIFY_INVALID, 0), 1);
	assert_true(sql_int("SELECT verified_at FROM storage_repositories WHERE repository_id = 3 AND storage = 's1'")
		    > 1600000000000);
	/* invalid, deletions on: the replica row goes, the repository stays */
	assert_int_equal(end_verification(1, "s2", STORE_VERIFY_INVALID, 1), 1);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM storage_repositories WHERE repository_id = 1"), 1);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM repositories WHERE repository_id = 1"), 1);
	/* a stale result (the row holds no lease any more) changes nothing */
	assert_int_equal(end_verification(2, "s2", STORE_VERIFY_INVALID, 1), 0);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM storage_repositories WHERE repository_id = 2"), 2);
	assert_int_equal(end_verification(99, "s1", STORE_VERIFY_VALID, 1), 0);

	/* expired leases: only those past the grace are released */
	sql_exec("UPDATE storage_repositories SET verification_leased_until = 5000 WHERE repository_id = 2 AND storage = 's1';"
		 "UPDATE storage_repositories SET verification_leased_until = 9000000000000 WHERE repository_id = 3"
		 " AND storage = 's2';");
	store_release_verification_leases(F->s, 30000, on_val, reset());
	wait_for(&R);
	assert_int_equal(R.status, 0);
	assert_int_equal(R.val, 1);
	assert_int_equal(sql_int("SELECT COUNT(*) FROM storage_repositories WHERE verification_leased_until IS NOT NULL"), 1);
	/* a replica marked unverified is due again at once, first */
	assert_int_equal(mark_unverified(2, NULL, NULL), 2);
	assert_string_equal(lease(&s2, 1, 1, 3600000), "2 vs/b.git @cluster/repositories/2 s2");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_migrations),
		T(test_open_error),
		T(test_persistence),
		T(test_repository_basics),
		T(test_list_pages),
		T(test_create_with_assignments),
		T(test_increment_generation),
		T(test_set_generation),
		T(test_delete_repository),
		T(test_delete_replicas),
		T(test_set_authoritative),
		T(test_primary_assignments_rename),
		T(test_swap_primary),
		T(test_enqueue_dedup),
		T(test_dequeue),
		T(test_one_job_per_lock_and_change),
		T(test_attempts),
		T(test_acknowledge_completed_supersedes),
		T(test_heartbeat),
		T(test_stale_after_crash),
		T(test_write_intents),
		T(test_recover_writes),
		T(test_write_intents_migration),
		T(test_suspects),
		T(test_forced_jobs),
		T(test_postpone),
		T(test_ordering),
		T(test_batch_errors),
		T(test_close_drains),
		T(test_close_from_callback),
		T(test_loop_exits_when_idle),
		T(test_busy_waits),
		T(test_node_status),
		T(test_mark_unverified),
		T(test_outdated_since),
		T(test_verification_leases),
		T(test_purge_jobs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
