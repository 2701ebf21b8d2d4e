/*
 * unary-load: a closed-loop unary gRPC load generator on our client channel.
 * Keeps CONCURRENCY calls in flight on one HTTP/2 connection for SECONDS and
 * prints "calls_per_s p50_us p99_us errors". Each call carries a fresh v2
 * token when a secret is given.
 *
 * usage: unary-load ADDRESS METHOD REQUEST_FILE SECONDS CONCURRENCY [SECRET]
 */
#include "grpc/client.h"
#include "grpc/auth.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct load {
	uv_loop_t *loop;
	struct grpc_channel *ch;
	const char *method, *secret;
	char *req;
	size_t req_len;
	uint64_t end_ns;
	uint64_t *lat;
	size_t nr_lat, alloc_lat;
	size_t errors, inflight;
	struct grpc_metadata md;
	uint64_t md_at;
};

static void start_one(struct load *l);

struct one {
	struct load *l;
	uint64_t t0;
};

static void on_close(struct grpc_client_call *call, enum grpc_code code, const char *msg,
		     const struct grpc_metadata *tr)
{
	struct one *o = grpc_client_call_user(call);
	struct load *l = o->l;
	uint64_t now = now_ns();
	if (code != GRPC_OK) {
		if (l->errors++ == 0)
			fprintf(stderr, "first error: %s: %s\n", grpc_code_name(code), msg);
	} else {
		ALLOC_GROW(l->lat, l->nr_lat + 1, l->alloc_lat);
		l->lat[l->nr_lat++] = now - o->t0;
	}
	free(o);
	l->inflight--;
	if (now < l->end_ns)
		start_one(l);
}

static const struct grpc_client_ops ops = { .on_close = on_close };

static void start_one(struct load *l)
{
	struct one *o = xcalloc(1, sizeof(*o));
	struct grpc_client_call *call;
	uint64_t now = now_ns();
	if (l->secret && now - l->md_at > 5000000000ull) { /* tokens are good for 30 s */
		grpc_metadata_release(&l->md);
		auth_v2_add(&l->md, l->secret);
		l->md_at = now;
	}
	o->l = l;
	o->t0 = now;
	if (grpc_channel_call(l->ch, l->method, &l->md, 10000, 0, &ops, o, &call) < 0) {
		free(o);
		l->errors++;
		return;
	}
	l->inflight++;
	grpc_client_call_send(call, l->req, l->req_len);
	grpc_client_call_close_send(call);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	struct load l = { 0 };
	FILE *f;
	double secs;
	int conc;
	uint64_t t0;
	char buf[65536];

	if (argc < 6) {
		fprintf(stderr, "usage: unary-load ADDRESS METHOD REQUEST_FILE SECONDS CONCURRENCY [SECRET]\n");
		return 2;
	}
	l.loop = uv_default_loop();
	l.method = argv[2];
	f = fopen(argv[3], "rb");
	if (!f)
		die("cannot open %s", argv[3]);
	l.req_len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	l.req = xmemdup(buf, l.req_len);
	secs = strtod(argv[4], NULL);
	conc = (int)strtol(argv[5], NULL, 10);
	l.secret = argc > 6 ? argv[6] : NULL;
	if (grpc_channel_new(l.loop, argv[1], NULL, &l.ch) < 0)
		die("bad address %s", argv[1]);

	/* one warm-up call so connection set-up is not measured */
	l.end_ns = now_ns() + 1;
	start_one(&l);
	while (l.inflight)
		uv_run(l.loop, UV_RUN_ONCE);
	l.nr_lat = 0;
	l.errors = 0;

	t0 = now_ns();
	l.end_ns = t0 + (uint64_t)(secs * 1e9);
	for (int i = 0; i < conc; i++)
		start_one(&l);
	while (l.inflight)
		uv_run(l.loop, UV_RUN_ONCE);
	{
		double el = (double)(now_ns() - t0) / 1e9;
		uint64_t p50 = 0, p99 = 0;
		if (l.nr_lat) {
			qsort(l.lat, l.nr_lat, sizeof(*l.lat), cmp_u64);
			p50 = l.lat[l.nr_lat / 2];
			p99 = l.lat[(size_t)((double)l.nr_lat * 0.99)];
		}
		printf("%.0f %.0f %.0f %zu\n", (double)l.nr_lat / el, (double)p50 / 1e3, (double)p99 / 1e3, l.errors);
	}
	grpc_channel_close(l.ch);
	uv_run(l.loop, UV_RUN_DEFAULT);
	grpc_metadata_release(&l.md);
	free(l.lat);
	free(l.req);
	return 0;
}
