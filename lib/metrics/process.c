/*
 * The process_* series Go's client library registers by default, read from
 * /proc/self when a page is rendered (metrics_add_collector()).
 */
#include "metrics.h"
#include "base/strbuf.h"
#include "base/util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

enum { CPU, OPEN_FDS, MAX_FDS, VSIZE, VMAX, RSS, START, NR };

static const struct metric_desc families[NR] = {
	[CPU] = { "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", METRIC_COUNTER },
	[OPEN_FDS] = { "process_open_fds", "Number of open file descriptors.", METRIC_GAUGE },
	[MAX_FDS] = { "process_max_fds", "Maximum number of open file descriptors.", METRIC_GAUGE },
	[VSIZE] = { "process_virtual_memory_bytes", "Virtual memory size in bytes.", METRIC_GAUGE },
	[VMAX] = { "process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.",
		   METRIC_GAUGE },
	[RSS] = { "process_resident_memory_bytes", "Resident memory size in bytes.", METRIC_GAUGE },
	[START] = { "process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
		    METRIC_GAUGE },
};

struct process_collector {
	struct metric *f[NR];
};

/* Seconds since the epoch the machine booted (the "btime" line of /proc/stat). */
static double boot_time(void)
{
	char line[256];
	double t = 0;
	FILE *f = fopen("/proc/stat", "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "btime ", 6)) {
			t = strtod(line + 6, NULL);
			break;
		}
	fclose(f);
	return t;
}

static double limit_value(rlim_t v)
{
	return v == RLIM_INFINITY ? 1.8446744073709552e19 : (double)v;   /* Go reports the raw all-ones value */
}

static void collect(struct metrics *m, void *arg)
{
	struct process_collector *pc = arg;
	char buf[1024];
	struct rlimit rl;
	FILE *f;
	DIR *d;

	/* /proc/self/stat: field 2 is "(comm)", which may hold spaces; the rest follows the last ')' */
	f = fopen("/proc/self/stat", "re");
	if (f) {
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		char *p;
		buf[n] = '\0';
		fclose(f);
		p = strrchr(buf, ')');
		if (p) {
			unsigned long long v[24] = { 0 };
			char *end;
			long tick = sysconf(_SC_CLK_TCK);
			size_t k = 0;
			p += 2; /* ") " then field 3, the state */
			p = strchr(p, ' ');
			/* fields 4.. : ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
			 * cutime cstime priority nice threads itrealvalue starttime vsize rss */
			while (p && k < ARRAY_SIZE(v)) {
				v[k++] = strtoull(p, &end, 10);
				p = end == p ? NULL : end;
			}
			if (k >= 21 && tick > 0) {
				metric_set(pc->f[CPU], NULL, (double)(v[10] + v[11]) / (double)tick);
				metric_set(pc->f[START], NULL, boot_time() + (double)v[18] / (double)tick);
				metric_set(pc->f[VSIZE], NULL, (double)v[19]);
				metric_set(pc->f[RSS], NULL, (double)v[20] * (double)sysconf(_SC_PAGESIZE));
			}
		}
	}
	d = opendir("/proc/self/fd");
	if (d) {
		size_t n = 0;
		struct dirent *e;
		while ((e = readdir(d)))
			n += e->d_name[0] != '.';
		closedir(d);
		metric_set(pc->f[OPEN_FDS], NULL, (double)(n ? n - 1 : 0));   /* not the one opendir() holds */
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		metric_set(pc->f[MAX_FDS], NULL, limit_value(rl.rlim_cur));
	if (getrlimit(RLIMIT_AS, &rl) == 0)
		metric_set(pc->f[VMAX], NULL, limit_value(rl.rlim_cur));
}

void metrics_register_process(struct metrics *m)
{
	struct process_collector *pc = xcalloc(1, sizeof(*pc));
	metrics_register_all(m, families, NR, pc->f);
	metrics_add_collector(m, collect, pc, free);
}
