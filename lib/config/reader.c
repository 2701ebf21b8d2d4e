/* Typed config getters with file:line errors, and Go duration parsing. */
#include "reader.h"
#include "base/util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

void cfg_reader_init(struct cfg_reader *r, const char *file)
{
	r->file = file;
	strbuf_init(&r->err, 0);
}

void cfg_reader_release(struct cfg_reader *r)
{
	strbuf_release(&r->err);
}

void cfg_errorf(struct cfg_reader *r, struct toml_table *t, const char *key, const char *fmt, ...)
{
	struct toml_value *v = t && key ? toml_get(t, key) : NULL;
	va_list ap;
	if (cfg_failed(r))
		return;
	if (v)
		strbuf_addf(&r->err, "%s:%u: ", r->file, v->line);
	else
		strbuf_addf(&r->err, "%s: ", r->file);
	if (key)
		strbuf_addf(&r->err, "\"%s\": ", key);
	va_start(ap, fmt);
	strbuf_vaddf(&r->err, fmt, ap);
	va_end(ap);
}

int cfg_string(struct cfg_reader *r, struct toml_table *t, const char *key, char **out)
{
	struct toml_value *v;
	const char *s;
	size_t len;
	if (cfg_failed(r) || !t || !(v = toml_get(t, key)))
		return 0;
	if (toml_value_string(v, &s, &len) < 0 || strlen(s) != len) {
		cfg_errorf(r, t, key, "expected a string");
		return -EINVAL;
	}
	free(*out);
	*out = xstrdup(s);
	return 0;
}

int cfg_bool(struct cfg_reader *r, struct toml_table *t, const char *key, bool *out)
{
	struct toml_value *v;
	if (cfg_failed(r) || !t || !(v = toml_get(t, key)))
		return 0;
	if (toml_value_bool(v, out) < 0) {
		cfg_errorf(r, t, key, "expected true or false");
		return -EINVAL;
	}
	return 0;
}

int cfg_int(struct cfg_reader *r, struct toml_table *t, const char *key, int64_t min, int64_t max,
	    int64_t *out)
{
	struct toml_value *v;
	int64_t i;
	if (cfg_failed(r) || !t || !(v = toml_get(t, key)))
		return 0;
	if (toml_value_int(v, &i) < 0) {
		cfg_errorf(r, t, key, "expected an integer");
		return -EINVAL;
	}
	if (i < min || i > max) {
		cfg_errorf(r, t, key, "%lld is out of range (%lld to %lld)", (long long)i,
			   (long long)min, (long long)max);
		return -EINVAL;
	}
	*out = i;
	return 0;
}

int cfg_duration(struct cfg_reader *r, struct toml_table *t, const char *key, uint64_t *out_ms)
{
	struct toml_value *v;
	const char *s;
	size_t len;
	int64_t i;
	uint64_t ns;
	if (cfg_failed(r) || !t || !(v = toml_get(t, key)))
		return 0;
	if (toml_value_int(v, &i) == 0) {
		/* as upstream: a bare number is read as duration text, so only 0 has no unit */
		if (i != 0) {
			cfg_errorf(r, t, key, "missing unit in duration \"%lld\"", (long long)i);
			return -EINVAL;
		}
		*out_ms = 0;
		return 0;
	}
	if (toml_value_string(v, &s, &len) < 0 || parse_go_duration(s, &ns) < 0) {
		cfg_errorf(r, t, key, "expected a duration such as \"30s\" or \"1m\"");
		return -EINVAL;
	}
	*out_ms = ns / 1000000u;
	return 0;
}

struct toml_table *cfg_table(struct cfg_reader *r, struct toml_table *t, const char *key)
{
	struct toml_table *sub;
	if (cfg_failed(r) || !t || !toml_get(t, key))
		return NULL;
	if (toml_get_table(t, key, &sub) < 0) {
		cfg_errorf(r, t, key, "expected a table");
		return NULL;
	}
	return sub;
}

struct toml_array *cfg_tables(struct cfg_reader *r, struct toml_table *t, const char *key)
{
	struct toml_array *a;
	if (cfg_failed(r) || !t || !toml_get(t, key))
		return NULL;
	if (toml_get_tables(t, key, &a) < 0) {
		cfg_errorf(r, t, key, "expected an array of tables ([[%s]])", key);
		return NULL;
	}
	return a;
}

int parse_go_duration(const char *s, uint64_t *out_ns)
{
	static const struct { const char *unit; double ns; } units[] = {
		{ "ns", 1 }, { "us", 1e3 }, { "\xc2\xb5s", 1e3 }, { "\xce\xbcs", 1e3 },
		{ "ms", 1e6 }, { "s", 1e9 }, { "m", 60e9 }, { "h", 3600e9 },
	};
	double total = 0;

	if (!s || !*s)
		return -EINVAL;
	if (!strcmp(s, "0")) {
		*out_ns = 0;
		return 0;
	}
	while (*s) {
		char *end;
		double v;
		size_t best = 0, bestlen = 0;
		const char *num = s;
		if (!((*s >= '0' && *s <= '9') || *s == '.'))
			return -EINVAL;
		/* digits and at most one point: strtod would also take exponents and hex */
		while ((*s >= '0' && *s <= '9') || *s == '.')
			s++;
		v = strtod(num, &end);
		if (end != s || v < 0)
			return -EINVAL;
		for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
			size_t ul = strlen(units[i].unit);
			if (!strncmp(s, units[i].unit, ul) && ul > bestlen) {
				best = i;
				bestlen = ul;
			}
		}
		if (!bestlen)
			return -EINVAL;
		total += v * units[best].ns;
		s += bestlen;
	}
	if (!isfinite(total) || total > 9.2e18)
		return -EINVAL;
	*out_ns = (uint64_t)total;
	return 0;
}

void cfg_error_line_column(const char *err, struct strbuf *out)
{
	unsigned line = 0, col = 0;
	int n = 0;
	const char *p = strchr(err, ':');

	if (p && sscanf(p + 1, "%u:%u: %n", &line, &col, &n) == 2 && n)
		strbuf_addf(out, "line %u column %u: %s", line, col, p + 1 + n);
	else if (p && (n = 0, sscanf(p + 1, "%u: %n", &line, &n) == 1) && n)
		strbuf_addf(out, "line %u: %s", line, p + 1 + n);
	else
		strbuf_addstr(out, err);
}

/* Go's time.Duration.String() of `ns` nanoseconds: "1m0s", "1.5s", "500ms", "-2m0s". */
void format_go_duration(struct strbuf *sb, int64_t ns)
{
	uint64_t u = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
	const char *unit = "s";
	uint64_t div = 1000000000u, whole, frac;
	int digits = 9;

	if (ns < 0)
		strbuf_addch(sb, '-');
	if (u == 0) {
		strbuf_addstr(sb, "0s");
		return;
	}
	if (u < 1000000000u) {
		if (u < 1000u) {
			strbuf_addf(sb, "%lluns", (unsigned long long)u);
			return;
		}
		unit = u < 1000000u ? "\xc2\xb5s" : "ms";
		div = u < 1000000u ? 1000u : 1000000u;
		digits = u < 1000000u ? 3 : 6;
	} else {
		uint64_t h = u / 3600000000000u, m = u / 60000000000u % 60;
		if (h)
			strbuf_addf(sb, "%lluh", (unsigned long long)h);
		if (h || m)
			strbuf_addf(sb, "%llum", (unsigned long long)m);
		u %= 60000000000u;
	}
	whole = u / div;
	frac = u % div;
	strbuf_addf(sb, "%llu", (unsigned long long)whole);
	if (frac) {
		char buf[16];
		int n = snprintf(buf, sizeof(buf), "%0*llu", digits, (unsigned long long)frac);
		while (n > 0 && buf[n - 1] == '0')
			buf[--n] = '\0';
		strbuf_addf(sb, ".%s", buf);
	}
	strbuf_addstr(sb, unit);
}

int cfg_blank(const char *s)
{
	if (!s)
		return 1;
	while (*s == ' ' || *s == '\t')
		s++;
	return !*s;
}
