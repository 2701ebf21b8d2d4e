/* The metrics registry and its Prometheus text exposition. */
#include "metrics.h"
#include "base/hashmap.h"
#include "base/strbuf.h"
#include "base/util.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct series {
	char *key;              /* label values joined by NUL bytes */
	size_t klen;
	double value;           /* counter, gauge */
	uint64_t *buckets;      /* histogram: per-bucket (not cumulative) counts */
	double sum;
	uint64_t count;
};

struct metric {
	struct metrics *m;
	char *name, *help;
	enum metric_type type;
	char *labels[METRIC_MAX_LABELS];
	size_t nr_labels;
	size_t order[METRIC_MAX_LABELS];   /* label indexes sorted by name: the order Go writes them */
	double *bounds;
	size_t nr_bounds;
	struct hashmap series;  /* key -> struct series */
};

struct collector {
	void (*fn)(struct metrics *m, void *arg);
	void *arg;
	void (*free_arg)(void *arg);
};

struct metrics {
	pthread_mutex_t lock;
	struct collector *collectors;
	size_t nr_collectors, alloc_collectors;
	double default_bounds[METRIC_MAX_BUCKETS];
	size_t nr_default;
	struct metric **fams;
	size_t nr, alloc;
};

struct metrics *metrics_new(const double *buckets, size_t nr_buckets)
{
	struct metrics *m = xcalloc(1, sizeof(*m));
	pthread_mutexattr_t a;

	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&m->lock, &a);
	pthread_mutexattr_destroy(&a);
	m->nr_default = MIN(nr_buckets, (size_t)METRIC_MAX_BUCKETS);
	if (m->nr_default)
		memcpy(m->default_bounds, buckets, m->nr_default * sizeof(double));
	return m;
}

static void series_free(struct series *s)
{
	free(s->key);
	free(s->buckets);
	free(s);
}

void metric_clear(struct metric *f)
{
	const struct hashmap_entry *e;
	metrics_lock(f->m);
	for (size_t i = 0; hashmap_next(&f->series, &i, &e);)
		series_free(e->value);
	hashmap_release(&f->series);
	hashmap_init(&f->series);
	metrics_unlock(f->m);
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->nr; i++) {
		struct metric *f = m->fams[i];
		metric_clear(f);
		hashmap_release(&f->series);
		for (size_t j = 0; j < f->nr_labels; j++)
			free(f->labels[j]);
		free(f->name);
		free(f->help);
		free(f->bounds);
		free(f);
	}
	free(m->fams);
	for (size_t i = 0; i < m->nr_collectors; i++)
		if (m->collectors[i].free_arg)
			m->collectors[i].free_arg(m->collectors[i].arg);
	free(m->collectors);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

void metrics_lock(struct metrics *m)
{
	pthread_mutex_lock(&m->lock);
}

void metrics_unlock(struct metrics *m)
{
	pthread_mutex_unlock(&m->lock);
}

/* The series key: label values joined by NUL bytes, in `buf` when it fits (no allocation per update). */
static const char *series_key(const struct metric *f, const char *const *lv, char *buf, size_t bufsz,
			      struct strbuf *big, size_t *len)
{
	size_t n = 0;
	for (size_t i = 0; i < f->nr_labels; i++)
		n += strlen(lv[i] ? lv[i] : "") + (i > 0);
	*len = n;
	if (n < bufsz) {
		char *p = buf;
		for (size_t i = 0; i < f->nr_labels; i++) {
			const char *v = lv[i] ? lv[i] : "";
			size_t l = strlen(v);
			if (i)
				*p++ = '\0';
			memcpy(p, v, l);
			p += l;
		}
		*p = '\0';
		return buf;
	}
	for (size_t i = 0; i < f->nr_labels; i++) {
		if (i)
			strbuf_addch(big, '\0');
		strbuf_addstr(big, lv[i] ? lv[i] : "");
	}
	return big->buf;
}

static struct series *series_get(struct metric *f, const char *const *lv)
{
	char buf[512];
	struct strbuf big = STRBUF_INIT;
	size_t len;
	const char *key = series_key(f, lv, buf, sizeof(buf), &big, &len);
	struct series *s = hashmap_get(&f->series, key, len);

	if (s) {
		strbuf_release(&big);
		return s;
	}
	s = xcalloc(1, sizeof(*s));
	s->klen = len;
	s->key = xmemdup(key, len + 1);
	strbuf_release(&big);
	if (f->type == METRIC_HISTOGRAM)
		s->buckets = xcalloc(f->nr_bounds + 1, sizeof(*s->buckets));
	hashmap_put(&f->series, s->key, s->klen, s);
	return s;
}

struct metric *metrics_register(struct metrics *m, const struct metric_desc *d)
{
	struct metric *f;
	const double *b = d->nr_buckets ? d->buckets : m->default_bounds;
	size_t nb = d->nr_buckets ? d->nr_buckets : m->nr_default;

	metrics_lock(m);
	for (size_t i = 0; i < m->nr; i++)
		if (!strcmp(m->fams[i]->name, d->name)) {
			metrics_unlock(m);
			return m->fams[i];
		}
	f = xcalloc(1, sizeof(*f));
	f->m = m;
	f->name = xstrdup(d->name);
	f->help = xstrdup(d->help ? d->help : "");
	f->type = d->type;
	for (; f->nr_labels < METRIC_MAX_LABELS && d->labels[f->nr_labels]; f->nr_labels++)
		f->labels[f->nr_labels] = xstrdup(d->labels[f->nr_labels]);
	for (size_t i = 0; i < f->nr_labels; i++) {
		size_t j = i;
		for (; j > 0 && strcmp(f->labels[f->order[j - 1]], f->labels[i]) > 0; j--)
			f->order[j] = f->order[j - 1];
		f->order[j] = i;
	}
	if (f->type == METRIC_HISTOGRAM) {
		nb = MIN(nb, (size_t)METRIC_MAX_BUCKETS);
		f->bounds = xcalloc(nb ? nb : 1, sizeof(double));
		/* an explicit +Inf bound is implied anyway */
		for (size_t i = 0; i < nb; i++)
			if (!isinf(b[i]))
				f->bounds[f->nr_bounds++] = b[i];
	}
	hashmap_init(&f->series);
	if (!f->nr_labels)
		series_get(f, NULL);
	ALLOC_GROW(m->fams, m->nr + 1, m->alloc);
	m->fams[m->nr++] = f;
	metrics_unlock(m);
	return f;
}

void metrics_register_all(struct metrics *m, const struct metric_desc *table, size_t nr, struct metric **out)
{
	for (size_t i = 0; i < nr; i++)
		out[i] = metrics_register(m, &table[i]);
}

void metric_add(struct metric *f, const char *const *lv, double v)
{
	metrics_lock(f->m);
	series_get(f, lv)->value += v;
	metrics_unlock(f->m);
}

void metric_set(struct metric *f, const char *const *lv, double v)
{
	metrics_lock(f->m);
	series_get(f, lv)->value = v;
	metrics_unlock(f->m);
}

void metric_observe(struct metric *f, const char *const *lv, double v)
{
	struct series *s;
	size_t i = 0;

	if (f->type != METRIC_HISTOGRAM)
		return;
	metrics_lock(f->m);
	s = series_get(f, lv);
	while (i < f->nr_bounds && v > f->bounds[i])
		i++;
	s->buckets[i]++;
	s->sum += v;
	s->count++;
	metrics_unlock(f->m);
}

void metric_touch(struct metric *f, const char *const *lv)
{
	metrics_lock(f->m);
	series_get(f, lv);
	metrics_unlock(f->m);
}

double metric_value(struct metric *f, const char *const *lv)
{
	char buf[512];
	struct strbuf big = STRBUF_INIT;
	size_t len;
	const char *key = series_key(f, lv, buf, sizeof(buf), &big, &len);
	struct series *s;
	double v;

	metrics_lock(f->m);
	s = hashmap_get(&f->series, key, len);
	v = s ? (f->type == METRIC_HISTOGRAM ? (double)s->count : s->value) : 0;
	metrics_unlock(f->m);
	strbuf_release(&big);
	return v;
}

/* --- the text format --- */

void metrics_format_double(struct strbuf *out, double v)
{
	char buf[64], probe[64];
	int prec, exp;

	if (isnan(v)) {
		strbuf_addstr(out, "NaN");
		return;
	}
	if (isinf(v)) {
		strbuf_addstr(out, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	if (v == 0) {
		strbuf_addstr(out, "0");
		return;
	}
	/* the fewest significant digits that read back as the same double */
	for (prec = 1; prec < 17; prec++) {
		snprintf(probe, sizeof(probe), "%.*e", prec - 1, v);
		if (strtod(probe, NULL) == v)
			break;
	}
	snprintf(probe, sizeof(probe), "%.*e", prec - 1, v);
	exp = (int)strtol(strchr(probe, 'e') + 1, NULL, 10);
	/* Go's 'g' with the shortest precision: the exponent form below 1e-4 and from 1e6 on */
	if (exp < -4 || exp >= 6)
		snprintf(buf, sizeof(buf), "%s", probe);
	else
		snprintf(buf, sizeof(buf), "%.*f", prec - 1 - exp > 0 ? prec - 1 - exp : 0, v);
	strbuf_addstr(out, buf);
}

static void add_escaped(struct strbuf *out, const char *s, int quotes)
{
	for (; *s; s++) {
		if (*s == '\\')
			strbuf_addstr(out, "\\\\");
		else if (*s == '\n')
			strbuf_addstr(out, "\\n");
		else if (*s == '"' && quotes)
			strbuf_addstr(out, "\\\"");
		else
			strbuf_addch(out, *s);
	}
}

/* name{a="x",b="y"[,le="..."]} */
static void add_series_name(struct strbuf *out, const struct metric *f, const char *suffix,
			    const struct series *s, const char *le)
{
	const char *v[METRIC_MAX_LABELS], *p = s->key;
	size_t n = 0;

	strbuf_addstr(out, f->name);
	strbuf_addstr(out, suffix);
	if (!f->nr_labels && !le)
		return;
	for (size_t i = 0; i < f->nr_labels; i++) {
		v[i] = p;
		p += strlen(p) + 1;
	}
	strbuf_addch(out, '{');
	for (size_t i = 0; i < f->nr_labels; i++) {
		size_t k = f->order[i];
		if (n++)
			strbuf_addch(out, ',');
		strbuf_addf(out, "%s=\"", f->labels[k]);
		add_escaped(out, v[k], 1);
		strbuf_addch(out, '"');
	}
	if (le) {
		if (n)
			strbuf_addch(out, ',');
		strbuf_addf(out, "le=\"%s\"", le);
	}
	strbuf_addch(out, '}');
}

static int cmp_series(const void *a, const void *b)
{
	const struct series *x = *(const struct series *const *)a, *y = *(const struct series *const *)b;
	int c = memcmp(x->key, y->key, MIN(x->klen, y->klen));
	return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

static int cmp_family(const void *a, const void *b)
{
	return strcmp((*(struct metric *const *)a)->name, (*(struct metric *const *)b)->name);
}

static void render_family(struct strbuf *out, struct metric *f)
{
	static const char *const types[] = { "counter", "gauge", "histogram" };
	const struct hashmap_entry *e;
	struct series **v;
	size_t n = 0;

	if (!f->series.nr)
		return;
	v = xcalloc(f->series.nr, sizeof(*v));
	for (size_t i = 0; hashmap_next(&f->series, &i, &e);)
		v[n++] = e->value;
	qsort(v, n, sizeof(*v), cmp_series);
	strbuf_addf(out, "# HELP %s ", f->name);
	add_escaped(out, f->help, 0);
	strbuf_addf(out, "\n# TYPE %s %s\n", f->name, types[f->type]);
	for (size_t i = 0; i < n; i++) {
		struct series *s = v[i];
		if (f->type != METRIC_HISTOGRAM) {
			add_series_name(out, f, "", s, NULL);
			strbuf_addch(out, ' ');
			metrics_format_double(out, s->value);
			strbuf_addch(out, '\n');
			continue;
		}
		{
			uint64_t cum = 0;
			for (size_t b = 0; b <= f->nr_bounds; b++) {
				struct strbuf le = STRBUF_INIT;
				metrics_format_double(&le, b < f->nr_bounds ? f->bounds[b] : INFINITY);
				cum += s->buckets[b];
				add_series_name(out, f, "_bucket", s, le.buf);
				strbuf_addf(out, " %llu\n", (unsigned long long)cum);
				strbuf_release(&le);
			}
		}
		add_series_name(out, f, "_sum", s, NULL);
		strbuf_addch(out, ' ');
		metrics_format_double(out, s->sum);
		strbuf_addch(out, '\n');
		add_series_name(out, f, "_count", s, NULL);
		strbuf_addf(out, " %llu\n", (unsigned long long)s->count);
	}
	free(v);
}

void metrics_add_collector(struct metrics *m, void (*fn)(struct metrics *m, void *arg), void *arg,
			   void (*free_arg)(void *arg))
{
	metrics_lock(m);
	ALLOC_GROW(m->collectors, m->nr_collectors + 1, m->alloc_collectors);
	m->collectors[m->nr_collectors++] = (struct collector){ fn, arg, free_arg };
	metrics_unlock(m);
}

void metrics_render(struct metrics *m, struct strbuf *out)
{
	struct metric **fams;

	metrics_lock(m);
	for (size_t i = 0; i < m->nr_collectors; i++)
		m->collectors[i].fn(m, m->collectors[i].arg);
	fams = xcalloc(m->nr ? m->nr : 1, sizeof(*fams));
	if (m->nr)
		memcpy(fams, m->fams, m->nr * sizeof(*fams));
	qsort(fams, m->nr, sizeof(*fams), cmp_family);
	for (size_t i = 0; i < m->nr; i++)
		render_family(out, fams[i]);
	metrics_unlock(m);
	free(fams);
}
