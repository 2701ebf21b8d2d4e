/*
 * metrics: a Prometheus registry (counters, gauges, histograms with labels)
 * and its text exposition format (version 0.0.4), served over HTTP by
 * metrics_http (http.c) from a thread of libmicrohttpd's own.
 *
 * Invariants:
 *
 *  - Every family is declared once, in a `struct metric_desc` table of the
 *    daemon that owns it (lib/metrics/grpc.c, gitaly/core/metrics.c,
 *    praefect/metrics/defs.c): name, help, type, label names, buckets. Code
 *    that counts holds the `struct metric *` the registry returned.
 *  - Updates come from the loop thread, rendering from the HTTP thread: the
 *    registry has one mutex, taken by every call here. It is recursive, so a
 *    batch of updates that must appear together (a gauge family recomputed
 *    from scratch) runs between metrics_lock() and metrics_unlock().
 *  - Label values are given as an array of exactly as many strings as the
 *    family has label names (METRIC_LV("a", "b")); a family without labels
 *    takes NULL. A series exists from its first update on; a family without
 *    labels has its one series from registration, at 0.
 *  - Output is sorted (families by name, series by label values) and
 *    numbers are written as Go's client library writes them (shortest
 *    round-trip form, "+Inf"), so a scrape reads like upstream's.
 */
#ifndef METRICS_METRICS_H
#define METRICS_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct strbuf;

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

#define METRIC_MAX_LABELS 4
#define METRIC_MAX_BUCKETS 64

struct metric_desc {
	const char *name;
	const char *help;
	enum metric_type type;
	const char *labels[METRIC_MAX_LABELS + 1];    /* NULL-terminated */
	/* Histograms: upper bounds, ascending; nr_buckets 0 = the registry's default buckets */
	const double *buckets;
	size_t nr_buckets;
};

struct metrics;
struct metric;

#define METRIC_LV(...) ((const char *const[]){ __VA_ARGS__ })

/* A registry whose histograms default to `buckets` (upstream's grpc_latency_buckets). */
struct metrics *metrics_new(const double *buckets, size_t nr_buckets);
void metrics_free(struct metrics *m);

/* Register a family; registering a name twice returns the first family. */
struct metric *metrics_register(struct metrics *m, const struct metric_desc *d);
/* Register every entry of a table; out[i] receives table[i]'s family. */
void metrics_register_all(struct metrics *m, const struct metric_desc *table, size_t nr, struct metric **out);

/* --- updates (any thread; each takes the registry lock) --- */
void metric_add(struct metric *f, const char *const *lv, double v);   /* counter or gauge */
static inline void metric_inc(struct metric *f, const char *const *lv) { metric_add(f, lv, 1); }
void metric_set(struct metric *f, const char *const *lv, double v);   /* gauge (or a counter mirrored from a running total) */
void metric_observe(struct metric *f, const char *const *lv, double v); /* histogram */
/* Create the series with its zero value if it does not exist (upstream's pre-registered label values). */
void metric_touch(struct metric *f, const char *const *lv);
/* Drop every series (a family recomputed from scratch; pair with metrics_lock()). */
void metric_clear(struct metric *f);
/* The current value of a counter or gauge series, 0 when it does not exist (tests). */
double metric_value(struct metric *f, const char *const *lv);

void metrics_lock(struct metrics *m);
void metrics_unlock(struct metrics *m);

/*
 * Run `fn` before each rendering, with the registry locked, on the thread
 * that renders: for values any thread may read (/proc/self). `free_arg`
 * (may be NULL) runs on `arg` in metrics_free().
 */
void metrics_add_collector(struct metrics *m, void (*fn)(struct metrics *m, void *arg), void *arg,
			   void (*free_arg)(void *arg));
/* Go's default process_* series (CPU, memory, file descriptors, start time) from /proc/self. */
void metrics_register_process(struct metrics *m);

/* Append the text exposition of every family to `out`. */
void metrics_render(struct metrics *m, struct strbuf *out);
/* A double as Go's strconv.FormatFloat(v, 'g', -1, 64) writes it ("+Inf", "NaN"). */
void metrics_format_double(struct strbuf *out, double v);

/* --- the [prometheus] section, as upstream reads it --- */

struct cfg_reader;
struct toml_table;
struct metrics_config {
	uint64_t scrape_timeout_ms;            /* default 10 s */
	double buckets[METRIC_MAX_BUCKETS];    /* grpc_latency_buckets */
	size_t nr_buckets;
};
void metrics_config_default(struct metrics_config *c);
/* Read `[prometheus]` from the root table; errors go to `r` (unsorted buckets, negative timeout). */
void metrics_config_read(struct cfg_reader *r, struct toml_table *root, struct metrics_config *c);

/* --- the HTTP endpoint --- */

struct metrics_http;
struct uv_loop_s;

#define METRICS_HTTP_MAX_PATHS 4

struct metrics_http_opts {
	const char *addr;                          /* "host:port", ":port" */
	const char *paths[METRICS_HTTP_MAX_PATHS]; /* GET paths[i] renders regs[i] */
	struct metrics *regs[METRICS_HTTP_MAX_PATHS];
	size_t nr;
	uint64_t timeout_ms;                       /* scrape_timeout */
	/*
	 * The socket is bound with SO_REUSEPORT so that the process taking over
	 * on SIGHUP can bind it while the old one serves. `shared` says this is
	 * that process; otherwise the port must be free (a plain bind is tried
	 * first), so that two daemons configured with one port fail as upstream.
	 */
	int shared;
	/*
	 * Optional: before a page is rendered, `refresh` runs on `loop` (woken
	 * with a uv_async) to bring sampled values up to date, and calls
	 * metrics_http_refreshed() when they are, at once or from a later
	 * callback. A scrape waits for that at most timeout_ms, then is served
	 * the values it has (upstream's collectors give up after scrape_timeout
	 * too). Scrapes arriving while a refresh runs share it.
	 */
	struct uv_loop_s *loop;
	void (*refresh)(struct metrics_http *h, void *arg);
	void *arg;
	/*
	 * Optional: GET page_path serves, as text/html, the last page given to
	 * metrics_http_set_page() (after a refresh, as the registries). The page
	 * is built on the loop thread, so it reads the loop's data without locks.
	 */
	const char *page_path;
};

/*
 * Serve the registries in a thread of libmicrohttpd's; any other path gets
 * 404, any method but GET and HEAD 405. The listening socket is bound before
 * this returns, so a bad address is reported at start-up. A connection idle
 * longer than timeout_ms is closed. The actual address is written to
 * `bound`. Returns NULL with `err` set on failure.
 */
struct metrics_http *metrics_http_start(const struct metrics_http_opts *o, char *bound, size_t boundsz,
					struct strbuf *err);
/* From the loop thread: replace the page served at page_path (copied). */
void metrics_http_set_page(struct metrics_http *h, const char *html, size_t len);
/* From the loop thread: the refresh asked for is done. */
void metrics_http_refreshed(struct metrics_http *h);
/*
 * Stop the thread and close the socket (on the loop thread, while the loop
 * still runs: the uv_async is closed here). NULL is a no-op.
 */
void metrics_http_stop(struct metrics_http *h);

#endif
