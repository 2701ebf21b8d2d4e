/*
 * license-cost: what FindLicense's classifier costs per file. For each file
 * given, the mean time of one lic_classify() over BENCH_RUNS calls (100 by
 * default) and its ratio to the first file's.
 *
 *   build/bench/license-cost /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0
 */
#include "repository/license_match.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	const char *env = getenv("BENCH_RUNS");
	int runs = env ? (int)strtol(env, NULL, 10) : 100;
	double first = 0;
	static char buf[1 << 20];
	if (argc < 2 || runs < 1) {
		fprintf(stderr, "usage: license-cost FILE...\n");
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		size_t n;
		double conf = 0, start, ms;
		const struct lic_answer *l = NULL;
		if (!f) {
			perror(argv[i]);
			return 1;
		}
		n = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		lic_classify(buf, n, &conf);   /* the table is built on first use */
		start = now_ms();
		for (int r = 0; r < runs; r++)
			l = lic_classify(buf, n, &conf);
		ms = (now_ms() - start) / runs;
		if (i == 1)
			first = ms;
		printf("%-45s %-16s %.3f  %8.3f ms/call  x%.2f of the first\n", argv[i],
		       l ? (l->id[0] ? l->id : "other (carried)") : "-", l ? conf : 0.0, ms, first > 0 ? ms / first : 1.0);
	}
	return 0;
}
