/* Unit tests: child processes with piped streams, backpressure, kill and reap. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <cmocka.h>
#include <unistd.h>
#include <sys/stat.h>
#include <time.h>

#include "git/cmd.h"

struct cat_state {
	size_t to_send, sent, received;
	int exit_status, exited;
	int paused_times;
	struct git_cmd *cmd;
	char block[65536];
};

static void cat_feed(struct cat_state *s)
{
	while (s->sent < s->to_send && git_cmd_stdin_queued(s->cmd) < GIT_CMD_STDIN_HIGH) {
		size_t blk = 251 * 256; /* a multiple of the pattern period keeps it continuous */
		size_t n = s->to_send - s->sent < blk ? s->to_send - s->sent : blk;
		assert_int_equal(git_cmd_write_stdin(s->cmd, s->block, n), 0);
		s->sent += n;
	}
	if (s->sent == s->to_send)
		git_cmd_close_stdin(s->cmd);
	else
		s->paused_times++;
}

static void cat_stdout(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct cat_state *s = git_cmd_user(cmd);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)buf[i] != (unsigned char)((s->received + i) % 251))
			fail_msg("byte %zu: got %d want %d (chunk %zu)", s->received + i, (unsigned char)buf[i],
				 (int)((s->received + i) % 251), len);
	s->received += len;
}

static void cat_drained(struct git_cmd *cmd)
{
	cat_feed(git_cmd_user(cmd));
}

static void cat_exit(struct git_cmd *cmd, int status)
{
	struct cat_state *s = git_cmd_user(cmd);
	s->exited = 1;
	s->exit_status = status;
}

static const struct git_cmd_ops cat_ops = {
	.on_stdout = cat_stdout,
	.on_stdin_drained = cat_drained,
	.on_exit = cat_exit,
};

/* 64 MiB through cat: every byte arrives in order, stdin never queues unboundedly. */
static void test_pipe_roundtrip(void **state)
{
	uv_loop_t loop;
	struct cat_state *s = calloc(1, sizeof(*s));
	const char *argv[] = { "cat", NULL };
	struct git_cmd_spec spec = { .argv = argv, .pipe_stdin = 1, .pipe_stdout = 1 };

	for (size_t i = 0; i < sizeof(s->block); i++)
		s->block[i] = (char)(i % 251);
	s->to_send = 64u * 1024 * 1024 / (251 * 256) * (251 * 256);
	uv_loop_init(&loop);
	assert_int_equal(git_cmd_spawn(&loop, &spec, &cat_ops, s, &s->cmd), 0);
	cat_feed(s);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(s->exited, 1);
	assert_true(s->paused_times > 0); /* backpressure really happened */
	assert_int_equal(s->exit_status, 0);
	assert_int_equal(s->received, s->to_send);
	assert_int_equal(git_cmd_live_count(), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	free(s);
}

struct capture_result {
	int done, status;
	struct strbuf out, err;
};

static void on_capture(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct capture_result *r = arg;
	r->done = 1;
	r->status = status;
	strbuf_add(&r->out, out->buf, out->len);
	strbuf_add(&r->err, err->buf, err->len);
}

static void run_capture(const char *const *argv, const char *in, size_t max, struct capture_result *r)
{
	uv_loop_t loop;
	struct git_cmd_spec spec = { .argv = argv };
	memset(r, 0, sizeof(*r));
	strbuf_init(&r->out, 0);
	strbuf_init(&r->err, 0);
	uv_loop_init(&loop);
	assert_int_equal(git_cmd_capture(&loop, &spec, in, in ? strlen(in) : 0, max, on_capture, r, NULL), 0);
	assert_int_equal(r->done, 0); /* never synchronous */
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_int_equal(r->done, 1);
}

static void test_capture(void **state)
{
	struct capture_result r;
	const char *sh[] = { "/bin/sh", "-c", "cat; echo oops >&2; exit 3", NULL };
	run_capture(sh, "hello\n", 1024, &r);
	assert_int_equal(r.status, 3);
	assert_string_equal(r.out.buf, "hello\n");
	assert_string_equal(r.err.buf, "oops\n");
	strbuf_release(&r.out);
	strbuf_release(&r.err);

	const char *yes[] = { "yes", NULL };
	run_capture(yes, NULL, 4096, &r); /* endless output is cut off, the process killed */
	assert_int_equal(r.status, -E2BIG);
	assert_true(r.out.len <= 4096);
	strbuf_release(&r.out);
	strbuf_release(&r.err);

	const char *missing[] = { "/nonexistent/program", NULL };
	run_capture(missing, NULL, 10, &r);
	assert_true(r.status < 0);
	strbuf_release(&r.out);
	strbuf_release(&r.err);
	assert_int_equal(git_cmd_live_count(), 0);
}

static void never_exit(struct git_cmd *cmd, int status)
{
	fail_msg("a detached command must not call back");
}

static const struct git_cmd_ops detach_ops = { .on_exit = never_exit };

/* Detaching kills the whole process group and reaps it: nothing is left behind. */
static void test_detach_kills_group(void **state)
{
	uv_loop_t loop;
	struct git_cmd *cmd;
	const char *argv[] = { "/bin/sh", "-c", "sleep 1000 & sleep 1000; wait", NULL };
	struct git_cmd_spec spec = { .argv = argv, .pipe_stdin = 1, .pipe_stdout = 1 };
	int pid;

	uv_loop_init(&loop);
	assert_int_equal(git_cmd_spawn(&loop, &spec, &detach_ops, NULL, &cmd), 0);
	pid = git_cmd_pid(cmd);
	uv_run(&loop, UV_RUN_NOWAIT);
	git_cmd_detach(cmd);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(git_cmd_live_count(), 0);
	/* the group is gone: signalling it fails (grandchildren are reaped by init, give it 5 s) */
	for (int i = 0; i < 500 && kill(-pid, 0) == 0; i++)
		usleep(10000);
	assert_int_equal(kill(-pid, 0), -1);
	assert_int_equal(uv_loop_close(&loop), 0);
}


struct stop_state {
	int exited, status, reaped, reaped_status;
};

static void stop_exit(struct git_cmd *cmd, int status)
{
	struct stop_state *s = git_cmd_user(cmd);
	assert_int_equal(s->reaped, 0);   /* on_exit first, then on_reaped */
	s->exited = 1;
	s->status = status;
}

static void stop_reaped(void *arg, int status)
{
	struct stop_state *s = arg;
	s->reaped++;
	s->reaped_status = status;
}

static const struct git_cmd_ops stop_ops = { .on_exit = stop_exit };

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run `script` (it creates $F once it is ready), stop it, return how long the stop took. */
static double run_stopped(const char *script, uint64_t grace_ms, int detach, struct stop_state *s, char *file)
{
	uv_loop_t loop;
	struct git_cmd *cmd;
	char env_f[128];
	const char *argv[] = { "/bin/sh", "-c", script, NULL };
	const char *env[] = { env_f, "PATH=/usr/bin:/bin", NULL };
	struct git_cmd_spec spec = { .argv = argv, .env = env, .pipe_stdin = 1, .pipe_stdout = 1,
				     .stop_grace_ms = grace_ms };
	struct stat st;
	double t0;

	snprintf(env_f, sizeof(env_f), "F=%s", file);
	memset(s, 0, sizeof(*s));
	uv_loop_init(&loop);
	assert_int_equal(git_cmd_spawn(&loop, &spec, &stop_ops, s, &cmd), 0);
	git_cmd_on_reaped(cmd, stop_reaped, s);
	for (int i = 0; i < 1000 && stat(file, &st) < 0; i++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(5000);
	}
	assert_int_equal(stat(file, &st), 0);
	t0 = now_s();
	if (detach)
		git_cmd_detach(cmd);
	else
		git_cmd_stop(cmd);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(git_cmd_live_count(), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_int_equal(s->reaped, 1);
	return now_s() - t0;
}

/* A child that cleans up on SIGTERM (as git's lockfile code does) gets to, long before the grace ends. */
static void test_stop_lets_the_child_clean_up(void **state)
{
	char file[] = "/tmp/test_git_cmd_lockXXXXXX";
	struct stop_state s;
	double took;
	int fd = mkstemp(file);
	assert_true(fd >= 0);
	close(fd);
	unlink(file);
	took = run_stopped("trap 'rm -f \"$F\"; exit 7' TERM; : > \"$F\"; while :; do sleep 0.05; done",
			   5000, 0, &s, file);
	assert_int_equal(s.exited, 1);
	assert_int_equal(s.status, 7);            /* the trap ran: it was SIGTERM, not SIGKILL */
	assert_int_equal(s.reaped_status, 7);
	assert_int_equal(access(file, F_OK), -1); /* and the file is gone */
	assert_true(took < 4.0);
}

/* Detached, the same: callbacks are dropped, the clean-up still happens, on_reaped still fires. */
static void test_detach_stops_gracefully(void **state)
{
	char file[] = "/tmp/test_git_cmd_lockXXXXXX";
	struct stop_state s;
	int fd = mkstemp(file);
	assert_true(fd >= 0);
	close(fd);
	unlink(file);
	run_stopped("trap 'rm -f \"$F\"; exit 7' TERM; : > \"$F\"; while :; do sleep 0.05; done", 5000, 1, &s, file);
	assert_int_equal(s.exited, 0);
	assert_int_equal(s.reaped_status, 7);
	assert_int_equal(access(file, F_OK), -1);
}

/* A child that ignores SIGTERM is SIGKILLed once the grace period is over, not before. */
static void test_stop_kills_after_the_grace(void **state)
{
	char file[] = "/tmp/test_git_cmd_lockXXXXXX";
	struct stop_state s;
	double took;
	int fd = mkstemp(file);
	assert_true(fd >= 0);
	close(fd);
	unlink(file);
	took = run_stopped("trap '' TERM; : > \"$F\"; while :; do sleep 0.05; done", 600, 0, &s, file);
	assert_int_equal(s.exited, 1);
	assert_int_equal(s.status, -SIGKILL);
	assert_int_equal(access(file, F_OK), 0);  /* nobody cleaned up */
	assert_true(took >= 0.55);
	assert_true(took < 5.0);
	unlink(file);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pipe_roundtrip),
		cmocka_unit_test(test_capture),
		cmocka_unit_test(test_detach_kills_group),
		cmocka_unit_test(test_stop_lets_the_child_clean_up),
		cmocka_unit_test(test_detach_stops_gracefully),
		cmocka_unit_test(test_stop_kills_after_the_grace),
	};
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
