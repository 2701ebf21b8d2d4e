/* Unit tests: the metrics registry, its text exposition, [prometheus] and the HTTP endpoint. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/strbuf.h"
#include "config/reader.h"
#include "config/toml.h"
#include "metrics/metrics.h"

static const struct metric_desc tx_desc = {
	"gitaly_praefect_transactions_total", "Total number of transaction actions", METRIC_COUNTER, { "action" },
};

static void test_counter_and_gauge_text(void **state)
{
	static const struct metric_desc g = { "queue_depth", "Jobs \\ waiting\nnow", METRIC_GAUGE,
					      { "virtual_storage", "state" } };
	static const struct metric_desc plain = { "plain_total", "", METRIC_COUNTER };
	struct metrics *m = metrics_new(NULL, 0);
	struct metric *tx = metrics_register(m, &tx_desc), *q = metrics_register(m, &g);
	struct strbuf out = STRBUF_INIT;

	metrics_register(m, &plain);
	assert_ptr_equal(metrics_register(m, &tx_desc), tx);
	metric_inc(tx, METRIC_LV("started"));
	metric_inc(tx, METRIC_LV("started"));
	metric_add(tx, METRIC_LV("registered"), 3);
	metric_set(q, METRIC_LV("vs \"a\"", "ready"), 1500000);
	metric_set(q, METRIC_LV("vs \"a\"", "in_progress"), 0.25);
	assert_true(metric_value(tx, METRIC_LV("started")) == 2);
	assert_true(metric_value(tx, METRIC_LV("failed")) == 0);
	metrics_render(m, &out);
	/* families by name, labels by name, values as Go writes them, help and values escaped */
	assert_string_equal(out.buf,
		"# HELP gitaly_praefect_transactions_total Total number of transaction actions\n"
		"# TYPE gitaly_praefect_transactions_total counter\n"
		"gitaly_praefect_transactions_total{action=\"registered\"} 3\n"
		"gitaly_praefect_transactions_total{action=\"started\"} 2\n"
		"# HELP plain_total \n"
		"# TYPE plain_total counter\n"
		"plain_total 0\n"
		"# HELP queue_depth Jobs \\\\ waiting\\nnow\n"
		"# TYPE queue_depth gauge\n"
		"queue_depth{state=\"in_progress\",virtual_storage=\"vs \\\"a\\\"\"} 0.25\n"
		"queue_depth{state=\"ready\",virtual_storage=\"vs \\\"a\\\"\"} 1.5e+06\n");
	/* a recomputed family loses the series it no longer has */
	metric_clear(q);
	strbuf_reset(&out);
	metrics_render(m, &out);
	assert_null(strstr(out.buf, "queue_depth"));
	strbuf_release(&out);
	metrics_free(m);
}

static void test_histogram_text(void **state)
{
	static const double b[] = { 0.0, 1.0, 2.0, 4.0 };
	static const struct metric_desc fixed = { "subtx", "n", METRIC_HISTOGRAM, { NULL }, b, 4 };
	static const struct metric_desc dflt = { "latency_seconds", "l", METRIC_HISTOGRAM, { "type" } };
	static const double reg[] = { 0.001, 0.5 };
	struct metrics *m = metrics_new(reg, 2);
	struct metric *h = metrics_register(m, &fixed), *l = metrics_register(m, &dflt);
	struct strbuf out = STRBUF_INIT;

	metric_observe(h, NULL, 1);
	metric_observe(h, NULL, 3);
	metric_observe(h, NULL, 100);
	metric_observe(l, METRIC_LV("update"), 0.0005);
	metric_touch(l, METRIC_LV("create"));
	metrics_render(m, &out);
	assert_string_equal(out.buf,
		"# HELP latency_seconds l\n"
		"# TYPE latency_seconds histogram\n"
		"latency_seconds_bucket{type=\"create\",le=\"0.001\"} 0\n"
		"latency_seconds_bucket{type=\"create\",le=\"0.5\"} 0\n"
		"latency_seconds_bucket{type=\"create\",le=\"+Inf\"} 0\n"
		"latency_seconds_sum{type=\"create\"} 0\n"
		"latency_seconds_count{type=\"create\"} 0\n"
		"latency_seconds_bucket{type=\"update\",le=\"0.001\"} 1\n"
		"latency_seconds_bucket{type=\"update\",le=\"0.5\"} 1\n"
		"latency_seconds_bucket{type=\"update\",le=\"+Inf\"} 1\n"
		"latency_seconds_sum{type=\"update\"} 0.0005\n"
		"latency_seconds_count{type=\"update\"} 1\n"
		"# HELP subtx n\n"
		"# TYPE subtx histogram\n"
		"subtx_bucket{le=\"0\"} 0\n"
		"subtx_bucket{le=\"1\"} 1\n"
		"subtx_bucket{le=\"2\"} 1\n"
		"subtx_bucket{le=\"4\"} 2\n"
		"subtx_bucket{le=\"+Inf\"} 3\n"
		"subtx_sum 104\n"
		"subtx_count 3\n");
	strbuf_release(&out);
	metrics_free(m);
}

static void test_long_label_values(void **state)
{
	struct metrics *m = metrics_new(NULL, 0);
	struct metric *tx = metrics_register(m, &tx_desc);
	struct strbuf out = STRBUF_INIT, want = STRBUF_INIT;
	char v[700];

	memset(v, 'x', sizeof(v) - 1);
	v[sizeof(v) - 1] = '\0';
	metric_inc(tx, METRIC_LV(v));
	metric_inc(tx, METRIC_LV(v));
	assert_true(metric_value(tx, METRIC_LV(v)) == 2);
	metrics_render(m, &out);
	strbuf_addf(&want, "gitaly_praefect_transactions_total{action=\"%s\"} 2\n", v);
	assert_non_null(strstr(out.buf, want.buf));
	strbuf_release(&out);
	strbuf_release(&want);
	metrics_free(m);
}

/* The value of an unlabelled sample line "name v" in `text`, or -1. */
static double sample_of(const char *text, const char *name)
{
	struct strbuf k = STRBUF_INIT;
	const char *p;
	double v = -1;
	strbuf_addf(&k, "\n%s ", name);
	p = strstr(text, k.buf);
	if (p)
		v = strtod(p + k.len, NULL);
	strbuf_release(&k);
	return v;
}

static void test_process_series(void **state)
{
	struct metrics *m = metrics_new(NULL, 0);
	struct strbuf out = STRBUF_INIT;

	metrics_register_process(m);
	metrics_render(m, &out);
	assert_true(sample_of(out.buf, "process_start_time_seconds") > 1e9);
	assert_true(sample_of(out.buf, "process_open_fds") >= 3);   /* stdin, stdout, stderr at least */
	assert_true(sample_of(out.buf, "process_max_fds") >= sample_of(out.buf, "process_open_fds"));
	assert_true(sample_of(out.buf, "process_resident_memory_bytes") > 4096);
	assert_true(sample_of(out.buf, "process_virtual_memory_bytes") >= sample_of(out.buf, "process_resident_memory_bytes"));
	assert_true(sample_of(out.buf, "process_cpu_seconds_total") >= 0);
	assert_non_null(strstr(out.buf, "# TYPE process_cpu_seconds_total counter\n"));
	strbuf_release(&out);
	metrics_free(m);
}

static void test_format_double(void **state)
{
	static const struct { double v; const char *s; } cases[] = {
		{ 0, "0" }, { 1, "1" }, { -1, "-1" }, { 0.1, "0.1" }, { 1e-05, "1e-05" }, { 0.0001, "0.0001" },
		{ 123456, "123456" }, { 1234567, "1.234567e+06" }, { 1.0 / 3, "0.3333333333333333" },
		{ 1500, "1500" }, { INFINITY, "+Inf" }, { -INFINITY, "-Inf" }, { NAN, "NaN" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct strbuf sb = STRBUF_INIT;
		metrics_format_double(&sb, cases[i].v);
		assert_string_equal(sb.buf, cases[i].s);
		strbuf_release(&sb);
	}
}

static int read_config(const char *text, struct metrics_config *c, struct strbuf *err)
{
	struct toml_table *root = NULL;
	struct cfg_reader r;
	int rc;

	metrics_config_default(c);
	if (toml_parse(text, strlen(text), "config.toml", &root, err) < 0)
		return -1;
	cfg_reader_init(&r, "config.toml");
	metrics_config_read(&r, root, c);
	rc = cfg_failed(&r) ? -1 : 0;
	strbuf_addstr(err, r.err.buf);
	cfg_reader_release(&r);
	toml_free(root);
	return rc;
}

static void test_config(void **state)
{
	struct metrics_config c;
	struct strbuf err = STRBUF_INIT;

	assert_int_equal(read_config("", &c, &err), 0);
	assert_int_equal(c.nr_buckets, 11);
	assert_true(c.buckets[10] == 1500.0);
	assert_int_equal(c.scrape_timeout_ms, 10000);
	assert_int_equal(read_config("[prometheus]\nscrape_timeout = \"2s\"\ngrpc_latency_buckets = [0.5, 1, 2.5]\n",
				     &c, &err), 0);
	assert_int_equal(c.scrape_timeout_ms, 2000);
	assert_int_equal(c.nr_buckets, 3);
	assert_true(c.buckets[1] == 1.0);
	assert_int_equal(read_config("[prometheus]\ngrpc_latency_buckets = []\n", &c, &err), 0);
	assert_int_equal(c.nr_buckets, 0);
	assert_int_equal(read_config("[prometheus]\ngrpc_latency_buckets = [1.0, 0.5]\n", &c, &err), -1);
	assert_non_null(strstr(err.buf, "expected asc"));
	strbuf_reset(&err);
	assert_int_equal(read_config("[prometheus]\ngrpc_latency_buckets = [\"a\"]\n", &c, &err), -1);
	strbuf_reset(&err);
	assert_int_equal(read_config("[prometheus]\nscrape_timeout = \"soon\"\n", &c, &err), -1);
	strbuf_release(&err);
}

/* One HTTP/1.1 request over a plain socket; returns the whole response. */
static void http_get(int port, const char *req, struct strbuf *out)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	char buf[4096];
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		strbuf_add(out, buf, (size_t)n);
	close(fd);
}

static void test_http(void **state)
{
	struct metrics *a = metrics_new(NULL, 0), *b = metrics_new(NULL, 0);
	struct metrics_http_opts o = { "nonsense", { "/metrics", "/db_metrics" }, { a, b }, 2, 1000 };
	struct strbuf err = STRBUF_INIT, resp = STRBUF_INIT;
	char bound[64];
	struct metrics_http *h;
	const char *colon;
	int port;

	metric_add(metrics_register(a, &tx_desc), METRIC_LV("committed"), 7);
	assert_null(metrics_http_start(&o, bound, sizeof(bound), &err));
	assert_non_null(strstr(err.buf, "invalid prometheus listen address"));
	strbuf_reset(&err);
	o.addr = "127.0.0.1:0";
	h = metrics_http_start(&o, bound, sizeof(bound), &err);
	assert_non_null(h);
	colon = strrchr(bound, ':');
	assert_non_null(colon);
	port = (int)strtol(colon + 1, NULL, 10);

	http_get(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &resp);
	assert_non_null(strstr(resp.buf, "HTTP/1.1 200"));
	assert_non_null(strstr(resp.buf, "text/plain; version=0.0.4"));
	assert_non_null(strstr(resp.buf, "\r\n\r\n# HELP gitaly_praefect_transactions_total"));
	assert_non_null(strstr(resp.buf, "gitaly_praefect_transactions_total{action=\"committed\"} 7\n"));
	strbuf_reset(&resp);
	http_get(port, "GET /db_metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &resp);
	assert_non_null(strstr(resp.buf, "HTTP/1.1 200"));
	assert_null(strstr(resp.buf, "transactions_total"));
	strbuf_reset(&resp);
	http_get(port, "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &resp);
	assert_non_null(strstr(resp.buf, "HTTP/1.1 404"));
	strbuf_reset(&resp);
	http_get(port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
		 &resp);
	assert_non_null(strstr(resp.buf, "HTTP/1.1 405"));
	metrics_http_stop(h);
	strbuf_release(&resp);
	strbuf_release(&err);
	metrics_free(a);
	metrics_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counter_and_gauge_text),
		cmocka_unit_test(test_histogram_text),
		cmocka_unit_test(test_long_label_values),
		cmocka_unit_test(test_process_series),
		cmocka_unit_test(test_format_double),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_http),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
