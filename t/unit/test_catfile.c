/* Unit tests: the cat-file process cache (reuse, bounds, idle expiry) and its reply parser. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <unistd.h>

#include "git/catfile.h"
#include "git/cmd.h"

static char repo[256];
static char blob_oid[64], commit_oid[64];
#define BLOB_SIZE (3u * 1024 * 1024 + 17)

static void sh(const char *cmd)
{
	if (system(cmd) != 0)
		fail_msg("command failed: %s", cmd);
}

static void read_line(const char *cmd, char *out, size_t n)
{
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	assert_non_null(fgets(out, (int)n, f));
	out[strcspn(out, "\n")] = '\0';
	pclose(f);
}

static int setup_repo(void **state)
{
	char cmd[2048];
	FILE *f;
	(void)state;
	snprintf(repo, sizeof(repo), "/tmp/test-catfile-%d", (int)getpid());
	snprintf(cmd, sizeof(cmd),
		 "rm -rf %s && git init -q --bare %s && export GIT_CONFIG_GLOBAL=/dev/null "
		 "GIT_CONFIG_SYSTEM=/dev/null && cd %s && "
		 "t=$(printf 'hello\\n' | git hash-object -w --stdin) && "
		 "tree=$(printf '100644 blob %%s\\thello.txt\\n' $t | git mktree) && "
		 "c=$(GIT_AUTHOR_NAME=A GIT_AUTHOR_EMAIL=a@x GIT_COMMITTER_NAME=A GIT_COMMITTER_EMAIL=a@x "
		 "git commit-tree -m first $tree) && git update-ref refs/heads/main $c",
		 repo, repo, repo);
	sh(cmd);
	/* a blob bigger than any pipe buffer, with a pattern we can check */
	snprintf(cmd, sizeof(cmd), "%s/big.bin", repo);
	f = fopen(cmd, "w");
	assert_non_null(f);
	for (unsigned i = 0; i < BLOB_SIZE; i++)
		fputc((int)(i % 251), f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "cd %s && git hash-object -w big.bin", repo);
	read_line(cmd, blob_oid, sizeof(blob_oid));
	snprintf(cmd, sizeof(cmd), "cd %s && git rev-parse main", repo);
	read_line(cmd, commit_oid, sizeof(commit_oid));
	return 0;
}

static int teardown_repo(void **state)
{
	char cmd[300];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", repo);
	sh(cmd);
	return 0;
}

/* --- harness --- */

struct t {
	uv_loop_t loop;
	struct catfile_cache *c;
	struct catfile *cf;
	int leased, lease_err;
	const char *argv[8];
};

static void t_init(struct t *t, const struct catfile_cache_opts *o)
{
	memset(t, 0, sizeof(*t));
	uv_loop_init(&t->loop);
	t->c = catfile_cache_new(&t->loop, o);
	t->argv[0] = "git";
	t->argv[1] = "--git-dir";
	t->argv[2] = repo;
	t->argv[3] = "cat-file";
	t->argv[4] = "--batch-command";
	t->argv[5] = "--buffer";
	t->argv[6] = "-z";
	t->argv[7] = NULL;
}

static void t_done(struct t *t)
{
	catfile_cache_free(t->c);
	uv_run(&t->loop, UV_RUN_DEFAULT);
	assert_int_equal(git_cmd_live_count(), 0);
	assert_int_equal(uv_loop_close(&t->loop), 0);
}

static void run_until(struct t *t, const int *flag)
{
	while (!*flag)
		uv_run(&t->loop, UV_RUN_ONCE);
}

static void on_leased(void *arg, struct catfile *cf, int err)
{
	struct t *t = arg;
	t->cf = cf;
	t->lease_err = err;
	t->leased = 1;
}

static struct catfile *lease(struct t *t, const char *key)
{
	struct catfile_spec spec = { key, strlen(key), t->argv, NULL, NULL };
	struct catfile_wait *w;
	t->leased = 0;
	assert_int_equal(catfile_lease(t->c, &spec, on_leased, t, &w), 0);
	/* never granted synchronously */
	assert_int_equal(t->leased, 0);
	run_until(t, &t->leased);
	assert_int_equal(t->lease_err, 0);
	assert_non_null(t->cf);
	return t->cf;
}

/* --- a request recorder --- */

struct rec {
	int done, status, got_info;
	struct catfile_info info;
	uint64_t want;
	size_t bytes, chunks, max_chunk;
	int pattern_ok;
	struct catfile *pause_on;   /* pause after every chunk */
	int paused;
	struct catfile *release_on_data;
	struct strbuf data;
	int keep_data;
};

static uint64_t rec_info(void *arg, const struct catfile_info *info)
{
	struct rec *r = arg;
	r->got_info = 1;
	r->info = *info;
	return r->want ? r->want : UINT64_MAX;
}

static void rec_data(void *arg, const char *buf, size_t len)
{
	struct rec *r = arg;
	for (size_t i = 0; i < len && r->pattern_ok; i++)
		if ((unsigned char)buf[i] != (r->bytes + i) % 251)
			r->pattern_ok = 0;
	if (r->keep_data)
		strbuf_add(&r->data, buf, len);
	r->bytes += len;
	r->chunks++;
	if (len > r->max_chunk)
		r->max_chunk = len;
	if (r->pause_on) {
		catfile_pause(r->pause_on);
		r->paused = 1;
	}
	if (r->release_on_data) {
		catfile_release(r->release_on_data);
		r->release_on_data = NULL;
		r->done = 2;
	}
}

static void rec_done(void *arg, int status)
{
	struct rec *r = arg;
	r->done = 1;
	r->status = status;
}

static const struct catfile_read_ops rec_ops = { rec_info, rec_data, rec_done };

static void rec_init(struct rec *r)
{
	memset(r, 0, sizeof(*r));
	r->pattern_ok = 1;
	strbuf_init(&r->data, 0);
}

/* --- tests --- */

struct whole_res {
	int done, status;
	struct catfile_info info;
	struct strbuf data;
};

static void on_whole(void *arg, int status, const struct catfile_info *info, struct strbuf *data)
{
	struct whole_res *w = arg;
	w->done = 1;
	w->status = status;
	if (info)
		w->info = *info;
	strbuf_add(&w->data, data->buf, data->len);
}

static void test_read_info_missing(void **state)
{
	struct t t;
	struct rec info, missing, nl;
	struct whole_res w = { 0 };
	const char *nlname = "main:no\nsuch file";
	(void)state;

	t_init(&t, NULL);
	lease(&t, "k");
	strbuf_init(&w.data, 0);
	rec_init(&info);
	rec_init(&missing);
	rec_init(&nl);
	/* pipelined: queued together, answered in order */
	assert_int_equal(catfile_read(t.cf, "main^{commit}", 13, 1 << 20, on_whole, &w), 0);
	assert_int_equal(catfile_info(t.cf, "main:hello.txt", 14, &rec_ops, &info), 0);
	assert_int_equal(catfile_contents(t.cf, "deadbeef", 8, &rec_ops, &missing), 0);
	assert_int_equal(catfile_contents(t.cf, nlname, strlen(nlname), &rec_ops, &nl), 0);
	assert_int_equal(catfile_pending(t.cf), 4);
	assert_int_equal(catfile_contents(t.cf, "a\0b", 3, &rec_ops, &nl), -EINVAL);
	run_until(&t, &nl.done);

	assert_int_equal(w.status, 0);
	assert_string_equal(w.info.oid, commit_oid);
	assert_int_equal(w.info.type, CATFILE_COMMIT);
	assert_int_equal(w.info.size, w.data.len);
	assert_true(w.data.len > 5 && !memcmp(w.data.buf, "tree ", 5));

	assert_int_equal(info.status, 0);
	assert_int_equal(info.info.type, CATFILE_BLOB);
	assert_int_equal(info.info.size, 6);
	assert_int_equal(info.bytes, 0);

	assert_int_equal(missing.status, CATFILE_MISSING);
	assert_int_equal(missing.got_info, 0);
	assert_int_equal(nl.status, CATFILE_MISSING);
	assert_int_equal(catfile_pending(t.cf), 0);

	catfile_release(t.cf);
	assert_int_equal(catfile_cache_idle(t.c), 1);
	strbuf_release(&w.data);
	t_done(&t);
}

static void test_reuse(void **state)
{
	struct t t;
	int pid;
	(void)state;

	t_init(&t, NULL);
	for (int i = 0; i < 20; i++) {
		struct rec r;
		rec_init(&r);
		lease(&t, "k");
		if (i == 0)
			pid = catfile_pid(t.cf);
		assert_int_equal(catfile_pid(t.cf), pid);
		assert_int_equal(catfile_info(t.cf, "main", 4, &rec_ops, &r), 0);
		run_until(&t, &r.done);
		assert_int_equal(r.status, 0);
		catfile_release(t.cf);
	}
	assert_int_equal(catfile_cache_spawned(t.c), 1);
	assert_int_equal(catfile_cache_live(t.c), 1);
	t_done(&t);
}

/* Pausing after every chunk: all bytes arrive, in order, and memory stays at one chunk. */
static void resume_cb(uv_timer_t *h)
{
	struct rec *r = h->data;
	if (r->paused) {
		r->paused = 0;
		catfile_resume(r->pause_on);
	}
}

static void test_stream_backpressure(void **state)
{
	struct t t;
	struct rec r, after;
	uv_timer_t timer;
	(void)state;

	t_init(&t, NULL);
	lease(&t, "k");
	rec_init(&r);
	rec_init(&after);
	r.pause_on = t.cf;
	uv_timer_init(&t.loop, &timer);
	timer.data = &r;
	uv_timer_start(&timer, resume_cb, 1, 1);
	assert_int_equal(catfile_contents(t.cf, blob_oid, strlen(blob_oid), &rec_ops, &r), 0);
	assert_int_equal(catfile_info(t.cf, "main", 4, &rec_ops, &after), 0);
	run_until(&t, &after.done);
	uv_close((uv_handle_t *)&timer, NULL);

	assert_int_equal(r.status, 0);
	assert_int_equal(r.bytes, BLOB_SIZE);
	assert_true(r.pattern_ok);
	assert_true(r.chunks > 10);
	assert_true(r.max_chunk <= 128 * 1024);
	assert_int_equal(after.status, 0);
	catfile_release(t.cf);
	assert_int_equal(catfile_cache_idle(t.c), 1);
	t_done(&t);
}

/* A limit: the owner gets `want` bytes, the rest is skipped, the process stays usable. */
static void test_limit(void **state)
{
	struct t t;
	struct rec r, after;
	(void)state;

	t_init(&t, NULL);
	lease(&t, "k");
	rec_init(&r);
	rec_init(&after);
	r.want = 1000;
	assert_int_equal(catfile_contents(t.cf, blob_oid, strlen(blob_oid), &rec_ops, &r), 0);
	assert_int_equal(catfile_contents(t.cf, "main:hello.txt", 14, &rec_ops, &after), 0);
	after.keep_data = 1;
	run_until(&t, &after.done);
	assert_int_equal(r.bytes, 1000);
	assert_true(r.pattern_ok);
	assert_int_equal(r.info.size, BLOB_SIZE);
	assert_int_equal(after.data.len, 6);
	assert_memory_equal(after.data.buf, "hello\n", 6);
	strbuf_release(&after.data);
	catfile_release(t.cf);
	assert_int_equal(catfile_cache_idle(t.c), 1);
	t_done(&t);
}

/* Released in the middle of an object: the process is killed, never handed out again. */
static void test_release_mid_read(void **state)
{
	struct t t;
	struct rec r;
	int pid;
	(void)state;

	t_init(&t, NULL);
	lease(&t, "k");
	pid = catfile_pid(t.cf);
	rec_init(&r);
	r.release_on_data = t.cf;
	assert_int_equal(catfile_contents(t.cf, blob_oid, strlen(blob_oid), &rec_ops, &r), 0);
	while (r.done != 2)
		uv_run(&t.loop, UV_RUN_ONCE);
	assert_int_equal(catfile_cache_live(t.c), 0);
	assert_int_equal(catfile_cache_idle(t.c), 0);
	lease(&t, "k");
	assert_int_not_equal(catfile_pid(t.cf), pid);
	assert_int_equal(catfile_cache_spawned(t.c), 2);
	catfile_release(t.cf);
	t_done(&t);
}

/* Released with a request still queued: killed too, and its callback never fires. */
static void test_release_pending(void **state)
{
	struct t t;
	struct whole_res w = { 0 };
	(void)state;

	t_init(&t, NULL);
	lease(&t, "k");
	strbuf_init(&w.data, 0);
	assert_int_equal(catfile_read(t.cf, "main", 4, 1 << 20, on_whole, &w), 0);
	catfile_release(t.cf);
	assert_int_equal(catfile_cache_live(t.c), 0);
	for (int i = 0; i < 20; i++)
		uv_run(&t.loop, UV_RUN_NOWAIT);
	assert_int_equal(w.done, 0);
	strbuf_release(&w.data);
	t_done(&t);
}

struct waiter {
	int leased;
	struct catfile *cf;
};

static void on_waiter(void *arg, struct catfile *cf, int err)
{
	struct waiter *w = arg;
	assert_int_equal(err, 0);
	w->leased = 1;
	w->cf = cf;
}

/* With max_per_key = 2 a third lease waits for a release, then gets that process. */
static void test_per_key_bound(void **state)
{
	struct catfile_cache_opts o = { .max_per_key = 2 };
	struct t t;
	struct catfile *a, *b;
	struct waiter w3 = { 0 }, w4 = { 0 };
	struct catfile_wait *wait3, *wait4;
	struct catfile_spec spec;
	(void)state;

	t_init(&t, &o);
	spec = (struct catfile_spec){ "k", 1, t.argv, NULL, NULL };
	a = lease(&t, "k");
	b = lease(&t, "k");
	assert_ptr_not_equal(a, b);
	assert_int_equal(catfile_lease(t.c, &spec, on_waiter, &w3, &wait3), 0);
	assert_int_equal(catfile_lease(t.c, &spec, on_waiter, &w4, &wait4), 0);
	for (int i = 0; i < 10; i++)
		uv_run(&t.loop, UV_RUN_NOWAIT);
	assert_int_equal(w3.leased, 0);
	assert_int_equal(catfile_cache_live(t.c), 2);
	catfile_wait_cancel(wait4);
	catfile_release(a);
	run_until(&t, &w3.leased);
	assert_ptr_equal(w3.cf, a);
	assert_int_equal(w4.leased, 0);
	/* another key is not limited by this one */
	lease(&t, "other");
	assert_int_equal(catfile_cache_spawned(t.c), 3);
	catfile_release(t.cf);
	catfile_release(b);
	catfile_release(w3.cf);
	assert_int_equal(catfile_cache_idle(t.c), 3);
	t_done(&t);
}

/* LRU: at most max_idle idle processes are kept, the oldest goes first. */
static void test_lru(void **state)
{
	struct catfile_cache_opts o = { .max_idle = 2 };
	struct t t;
	struct catfile *a, *b, *c;
	(void)state;

	t_init(&t, &o);
	a = lease(&t, "a");
	b = lease(&t, "b");
	c = lease(&t, "c");
	catfile_release(a);
	catfile_release(b);
	catfile_release(c);
	assert_int_equal(catfile_cache_idle(t.c), 2);
	assert_int_equal(catfile_cache_live(t.c), 2);
	lease(&t, "a"); /* evicted: spawns */
	assert_int_equal(catfile_cache_spawned(t.c), 4);
	catfile_release(t.cf);
	lease(&t, "c"); /* kept */
	assert_int_equal(catfile_cache_spawned(t.c), 4);
	catfile_release(t.cf);
	t_done(&t);
}

/* Idle processes are closed by the timer, and nothing keeps the loop running afterwards. */
static void test_idle_expiry(void **state)
{
	struct catfile_cache_opts o = { .idle_ms = 50 };
	struct t t;
	uint64_t start;
	(void)state;

	t_init(&t, &o);
	lease(&t, "k");
	catfile_release(t.cf);
	assert_int_equal(catfile_cache_idle(t.c), 1);
	start = uv_now(&t.loop);
	/* returns once the idle process is gone: the timer itself is unreferenced */
	uv_run(&t.loop, UV_RUN_DEFAULT);
	uv_update_time(&t.loop);
	assert_int_equal(catfile_cache_idle(t.c), 0);
	assert_int_equal(catfile_cache_live(t.c), 0);
	assert_true(uv_now(&t.loop) - start >= 50);
	assert_int_equal(git_cmd_live_count(), 0);
	t_done(&t);
}

/* drain: idle ones close now, released ones are not kept. */
static void test_drain(void **state)
{
	struct t t;
	struct catfile *a, *b;
	(void)state;

	t_init(&t, NULL);
	a = lease(&t, "k");
	b = lease(&t, "k");
	catfile_release(a);
	catfile_cache_drain(t.c);
	assert_int_equal(catfile_cache_live(t.c), 1);
	catfile_release(b);
	assert_int_equal(catfile_cache_live(t.c), 0);
	uv_run(&t.loop, UV_RUN_DEFAULT);
	t_done(&t);
}

/* git dying under a lease fails the queued requests instead of hanging them. */
static void test_process_dies(void **state)
{
	struct t t;
	struct rec r;
	(void)state;

	t_init(&t, NULL);
	lease(&t, "k");
	rec_init(&r);
	assert_int_equal(kill(catfile_pid(t.cf), SIGKILL), 0);
	usleep(20000);
	if (catfile_contents(t.cf, "main", 4, &rec_ops, &r) == 0)
		run_until(&t, &r.done);
	else
		r.status = -EPIPE;
	while (catfile_pid(t.cf) > 0)
		uv_run(&t.loop, UV_RUN_ONCE);
	assert_true(r.status < 0);
	assert_int_equal(catfile_contents(t.cf, "main", 4, &rec_ops, &r), -EPIPE);
	catfile_release(t.cf);
	assert_int_equal(catfile_cache_live(t.c), 0);
	t_done(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_info_missing),
		cmocka_unit_test(test_reuse),
		cmocka_unit_test(test_stream_backpressure),
		cmocka_unit_test(test_limit),
		cmocka_unit_test(test_release_mid_read),
		cmocka_unit_test(test_release_pending),
		cmocka_unit_test(test_per_key_bound),
		cmocka_unit_test(test_lru),
		cmocka_unit_test(test_idle_expiry),
		cmocka_unit_test(test_drain),
		cmocka_unit_test(test_process_dies),
	};
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup_repo, teardown_repo);
}
