/* The [prometheus] config section (docs/technical/metrics.md, "Configuration"). */
#include "metrics.h"
#include "config/reader.h"
#include "config/toml.h"

#include <string.h>

/* upstream's defaults for grpc_latency_buckets, in seconds */
static const double default_buckets[] = { 0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 10.0, 30.0, 60.0, 300.0, 1500.0 };

void metrics_config_default(struct metrics_config *c)
{
	memset(c, 0, sizeof(*c));
	c->scrape_timeout_ms = 10000;
	memcpy(c->buckets, default_buckets, sizeof(default_buckets));
	c->nr_buckets = sizeof(default_buckets) / sizeof(default_buckets[0]);
}

void metrics_config_read(struct cfg_reader *r, struct toml_table *root, struct metrics_config *c)
{
	struct toml_table *t = cfg_table(r, root, "prometheus");
	struct toml_value *v;
	struct toml_array *a;

	if (!t || cfg_failed(r))
		return;
	cfg_duration(r, t, "scrape_timeout", &c->scrape_timeout_ms);
	if (cfg_failed(r) || !(v = toml_get(t, "grpc_latency_buckets")))
		return;
	if (toml_get_array(t, "grpc_latency_buckets", &a) < 0) {
		cfg_errorf(r, t, "grpc_latency_buckets", "expected an array of numbers");
		return;
	}
	if (toml_array_len(a) > METRIC_MAX_BUCKETS) {
		cfg_errorf(r, t, "grpc_latency_buckets", "more than %d buckets", METRIC_MAX_BUCKETS);
		return;
	}
	c->nr_buckets = 0;
	for (size_t i = 0; i < toml_array_len(a); i++) {
		struct toml_value *e = toml_array_at(a, i);
		double d;
		int64_t n;
		if (toml_value_float(e, &d) < 0) {
			if (toml_value_int(e, &n) < 0) {
				cfg_errorf(r, t, "grpc_latency_buckets", "expected an array of numbers");
				return;
			}
			d = (double)n;
		}
		/* upstream: "expected asc" when the list is not sorted */
		if (c->nr_buckets && d < c->buckets[c->nr_buckets - 1]) {
			cfg_errorf(r, t, "grpc_latency_buckets", "bad order: expected asc");
			return;
		}
		c->buckets[c->nr_buckets++] = d;
	}
}
