/*
 * Tracking store benchmark: store_increment_generation() per second on a real
 * SQLite file (WAL, synchronous=FULL), with and without group commit, with one
 * operation in flight (a lone client) or many (a busy praefect).
 *
 *	ninja -C <builddir> lib/store/store-bench
 *	<builddir>/lib/store/store-bench [directory] [seconds-per-case]
 *
 * The directory (default /tmp) decides what fsync costs: use the disk the
 * database will live on; tmpfs makes every number meaningless.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/strbuf.h"
#include "store/backend.h"
#include "store/store.h"

struct run {
	struct store *s;
	uint64_t deadline;
	size_t window, in_flight, done;
	int64_t last_gen;
	int errors;
};

static const char *const storages[] = { "gitaly-1", "gitaly-2", "gitaly-3" };

static void submit(struct run *r);

static void on_gen(void *arg, int status, const char *msg, int64_t gen)
{
	struct run *r = arg;
	r->in_flight--;
	r->done++;
	if (status < 0) {
		if (!r->errors++)
			fprintf(stderr, "increment_generation: %s\n", msg);
	} else {
		if (gen <= r->last_gen)
			r->errors++;  /* completions must come in order */
		r->last_gen = gen;
	}
	if (uv_hrtime() < r->deadline)
		submit(r);
}

static void submit(struct run *r)
{
	while (r->in_flight < r->window) {
		r->in_flight++;
		store_increment_generation(r->s, 1, storages, 3, on_gen, r);
	}
}

static void on_created(void *arg, int status, const char *msg)
{
	if (status < 0) {
		fprintf(stderr, "create: %s\n", msg);
		exit(1);
	}
	*(int *)arg = 1;
}

static double one_case(uv_loop_t *loop, const char *path, size_t batch, size_t window, double seconds)
{
	struct strbuf err = STRBUF_INIT;
	struct run r = { .window = window };
	uint64_t start;
	int created = 0;

	if (store_open_sqlite(loop, path, &r.s, &err) < 0) {
		fprintf(stderr, "%s\n", err.buf);
		exit(1);
	}
	store_create_repository(r.s, 1, "default", "bench.git", "@cluster/repositories/bench", storages[0],
				storages + 1, 2, NULL, 0, 1, 1, on_created, &created);
	while (!created)
		uv_run(loop, UV_RUN_ONCE);
	store_set_max_batch(r.s, batch);

	start = uv_hrtime();
	r.deadline = start + (uint64_t)(seconds * 1e9);
	submit(&r);
	while (r.in_flight)
		uv_run(loop, UV_RUN_ONCE);
	double elapsed = (double)(uv_hrtime() - start) / 1e9;

	store_close(r.s);
	uv_run(loop, UV_RUN_DEFAULT);
	strbuf_release(&err);
	if (r.errors || r.last_gen != (int64_t)r.done) {
		fprintf(stderr, "errors: %d, generation %" PRId64 " after %zu ops\n", r.errors, r.last_gen, r.done);
		exit(1);
	}
	return (double)r.done / elapsed;
}

static void remove_db(const char *path)
{
	static const char *const suffixes[] = { "", "-wal", "-shm" };
	char p[4200];
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
		unlink(p);
	}
}

int main(int argc, char **argv)
{
	const char *base = argc > 1 ? argv[1] : "/tmp";
	double seconds = argc > 2 ? strtod(argv[2], NULL) : 3.0;
	static const struct { size_t batch, window; } cases[] = {
		{ 1, 1 }, { 64, 1 }, { 1, 64 }, { 64, 64 }, { 1, 512 }, { 64, 512 }, { 256, 512 },
	};
	char dir[4096], path[4200];
	uv_loop_t loop;

	if (seconds <= 0)
		seconds = 3.0;
	snprintf(dir, sizeof(dir), "%s/store-bench.XXXXXX", base);
	if (!mkdtemp(dir)) {
		perror(dir);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/praefect.db", dir);
	uv_loop_init(&loop);
	printf("increment_generation on %s, %.1f s per case\n", dir, seconds);
	printf("%10s %10s %12s\n", "max batch", "in flight", "ops/s");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		double rate = one_case(&loop, path, cases[i].batch, cases[i].window, seconds);
		printf("%10zu %10zu %12.0f\n", cases[i].batch, cases[i].window, rate);
		fflush(stdout);
		remove_db(path);
	}
	uv_loop_close(&loop);
	rmdir(dir);
	return 0;
}
