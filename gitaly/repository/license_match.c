/*
 * The license classifier: normalise a text to words, cut it where a license's
 * first line starts, and score each part against each carried license text by
 * word-level edit distance. A shared-word bound skips the licenses that cannot
 * reach the best score so far, so only one or two texts are really compared.
 */
#include "repository/license_match.h"
#include "base/hashmap.h"
#include "base/util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* More parts than this (a file of many license titles) are not scored. */
#define PARTS_MAX 256

struct lic_text {
	const char *key;               /* choosealicense's spdx-id */
	struct lic_answer answer;
	int *words;                    /* word ids */
	size_t nr, first;              /* words; words in the first line */
	uint32_t *uniq;                /* distinct word ids, sorted ... */
	uint32_t *count;               /* ... and how often each occurs */
	size_t nuniq;
	uint8_t *has;                  /* bitset over the vocabulary */
	int variant;                   /* index in variants, -1 */
};

struct lic_variant {
	struct lic_answer answer;
	int *words;
	size_t nr, times;
};

struct lic_db {
	struct hashmap vocab;          /* word -> id + 1 */
	size_t nvocab;
	struct lic_text *texts;
	size_t nr;
	struct lic_variant *variants;
	size_t nvariants;
	size_t min_words;
	/* for each word id, the texts using it and how often: post[post_at[id] .. post_at[id + 1]) */
	size_t *post_at;
	struct lic_post { uint32_t text, count; } *post;
};

struct lic_tok {
	int id;                        /* vocabulary id, -1 for a word no license has */
	uint8_t line_start, title;     /* first word of a line; of a "... license" header line */
};

struct lic_toks {
	struct lic_tok *v;
	size_t nr, alloc;
};

static const char *const spelling[][2] = {
	{ "acknowledgment", "acknowledgement" }, { "analogue", "analog" }, { "analyse", "analyze" },
	{ "artefact", "artifact" }, { "authorisation", "authorization" }, { "authorised", "authorized" },
	{ "calibre", "caliber" }, { "cancelled", "canceled" }, { "capitalisations", "capitalizations" },
	{ "catalogue", "catalog" }, { "categorise", "categorize" }, { "centre", "center" },
	{ "emphasised", "emphasized" }, { "favour", "favor" }, { "favourite", "favorite" }, { "fulfil", "fulfill" },
	{ "fulfilment", "fulfillment" }, { "initialise", "initialize" }, { "judgment", "judgement" },
	{ "labelling", "labeling" }, { "labour", "labor" }, { "licence", "license" }, { "licences", "licenses" },
	{ "licenced", "licensed" }, { "maximise", "maximize" }, { "modelled", "modeled" }, { "modelling", "modeling" },
	{ "offence", "offense" }, { "optimise", "optimize" }, { "organisation", "organization" },
	{ "organise", "organize" }, { "practise", "practice" }, { "programme", "program" }, { "realise", "realize" },
	{ "recognise", "recognize" }, { "signalling", "signaling" }, { "utilisation", "utilization" },
	{ "whilst", "while" }, { "wilful", "wilfull" },
};

static size_t spelling_len[ARRAY_SIZE(spelling)];

static int is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

static int starts_with_ci(const char *s, const char *e, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(e - s) < n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (lower((unsigned char)s[i]) != (unsigned char)word[i])
			return 0;
	return 1;
}

/* A copyright line says who, not what: upstream drops it, and so do we. */
static int is_copyright_line(const char *s, const char *e)
{
	while (s < e && (*s == ' ' || *s == '\t'))
		s++;
	return starts_with_ci(s, e, "copyright") || starts_with_ci(s, e, "(c)") || starts_with_ci(s, e, "\xc2\xa9") ||
	       starts_with_ci(s, e, "all rights reserved");
}

/* Past a leading list marker ("-", "*", "1.", "(a)", "iv)"), as the SPDX matching guidelines ignore them. */
static const char *skip_bullet(const char *s, const char *e)
{
	const char *p = s, *q;
	while (p < e && (*p == ' ' || *p == '\t'))
		p++;
	q = p;
	if (p < e && (*p == '-' || *p == '*' || *p == '+'))
		q = p + 1;
	else if (e - p >= 3 && !memcmp(p, "\xe2\x80\xa2", 3))
		q = p + 3;
	else {
		if (q < e && (*q == '(' || *q == '[' || *q == '{'))
			q++;
		if (q < e && *q >= '0' && *q <= '9') {
			while (q < e && *q >= '0' && *q <= '9')
				q++;
		} else if (q < e && lower((unsigned char)*q) == 'i') {
			while (q < e && lower((unsigned char)*q) == 'i')
				q++;
		} else if (q < e && lower((unsigned char)*q) >= 'a' && lower((unsigned char)*q) <= 'z') {
			q++;
		} else
			return s;
		if (q >= e || !strchr(".)]}", *q))
			return s;
		q++;
	}
	if (q < e && *q != ' ' && *q != '\t')
		return s;
	return q;
}

static int word_id(const struct hashmap *vocab, const char *w, size_t len)
{
	void *v = hashmap_get(vocab, w, len);
	return v ? (int)((uintptr_t)v - 1) : -1;
}

/*
 * Calls `fn` for every word of `text` in order: lower case, ASCII letters and
 * digits (anything else separates words), British spellings made American,
 * copyright lines and list markers left out.
 */
typedef void (*word_fn)(void *arg, const char *w, size_t len, int line_start, int title);

static void lic_words(const char *text, size_t len, word_fn fn, void *arg)
{
	const char *s = text, *end = text + len;
	char w[64];
	while (s < end) {
		const char *e = s, *p, *next, *t, *u;
		int first = 1, title = 0;
		while (e < end && *e != '\n' && *e != '\r')
			e++;
		next = e < end ? e + 1 + (*e == '\r' && e + 1 < end && e[1] == '\n') : end;
		/* the line's text without the punctuation around it */
		for (t = s; t < e && !is_alnum((unsigned char)*t); t++)
			;
		for (u = e; u > t && !is_alnum((unsigned char)u[-1]); u--)
			;
		/* copyright lines, and a line that only says "License", are left out as upstream leaves them */
		if (is_copyright_line(s, e) ||
		    (u - t == 7 && (starts_with_ci(t, u, "license") || starts_with_ci(t, u, "licence")))) {
			s = next;
			continue;
		}
		/* "... license" followed by a blank line heads a license: upstream cuts there */
		if (u - t >= 7 && (starts_with_ci(u - 7, u, "license") || starts_with_ci(u - 7, u, "licence"))) {
			const char *b = next;
			while (b < end && (*b == ' ' || *b == '\t'))
				b++;
			title = b >= end || *b == '\n' || *b == '\r';
		}
		p = skip_bullet(s, e);
		while (p < e) {
			size_t n = 0;
			const char *word;
			size_t wl;
			while (p < e && !is_alnum((unsigned char)*p))
				p++;
			if (p >= e)
				break;
			word = p;
			while (p < e && is_alnum((unsigned char)*p))
				p++;
			wl = (size_t)(p - word);
			if (wl < sizeof(w)) {
				for (n = 0; n < wl; n++)
					w[n] = (char)lower((unsigned char)word[n]);
				for (size_t k = 0; n >= 5 && k < ARRAY_SIZE(spelling); k++)
					if (spelling_len[k] == n && !memcmp(w, spelling[k][0], n)) {
						n = strlen(spelling[k][1]);
						memcpy(w, spelling[k][1], n);
						break;
					}
				fn(arg, w, n, first, title && first);
			} else {
				/* no license has a word this long */
				fn(arg, "", 0, first, title && first);
			}
			first = 0;
		}
		s = next;
	}
}

/* --- the table --- */

static struct lic_db db;
static int db_built;

struct ids {
	struct lic_db *db;
	int add;                       /* add unknown words to the vocabulary */
	int *v;
	size_t nr, alloc;
};

static void collect_id(void *arg, const char *w, size_t len, int line_start, int title)
{
	struct ids *x = arg;
	int id = len ? word_id(&x->db->vocab, w, len) : -1;
	(void)line_start;
	(void)title;
	if (id < 0 && x->add && len) {
		id = (int)x->db->nvocab++;
		hashmap_put(&x->db->vocab, w, len, (void *)(uintptr_t)(id + 1));
	}
	ALLOC_GROW(x->v, x->nr + 1, x->alloc);
	x->v[x->nr++] = id;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

#define LICENSE_TEXT(key, id, name, url, nick, first, words) { key, { id, name, url, nick }, first, words },
#define LICENSE_VARIANT(key, id, name, url, nick, marker, times)
static const struct {
	const char *key;
	struct lic_answer answer;
	size_t first;
	const char *words;
} text_rows[] = {
#include "repository/licenses.def"
};
#undef LICENSE_TEXT
#undef LICENSE_VARIANT
#define LICENSE_TEXT(key, id, name, url, nick, first, words)
#define LICENSE_VARIANT(key, id, name, url, nick, marker, times) { key, { id, name, url, nick }, marker, times },
static const struct {
	const char *key;
	struct lic_answer answer;
	const char *marker;
	size_t times;
} variant_rows[] = {
#include "repository/licenses.def"
};
#undef LICENSE_TEXT
#undef LICENSE_VARIANT

static void db_build(void)
{
	for (size_t k = 0; k < ARRAY_SIZE(spelling); k++)
		spelling_len[k] = strlen(spelling[k][0]);
	hashmap_init(&db.vocab);
	db.nr = ARRAY_SIZE(text_rows);
	db.texts = xcalloc(db.nr, sizeof(*db.texts));
	for (size_t i = 0; i < db.nr; i++) {
		struct lic_text *t = &db.texts[i];
		struct ids x = { &db, 1, NULL, 0, 0 };
		lic_words(text_rows[i].words, strlen(text_rows[i].words), collect_id, &x);
		t->key = text_rows[i].key;
		t->answer = text_rows[i].answer;
		t->words = x.v;
		t->nr = x.nr;
		/* a first line of one word (MulanPSL's, its Chinese gone) would cut anywhere */
		t->first = text_rows[i].first >= 2 ? MIN(text_rows[i].first, x.nr) : 0;
		t->variant = -1;
		if (!db.min_words || t->nr < db.min_words)
			db.min_words = t->nr;
	}
	for (size_t i = 0; i < db.nr; i++) {
		struct lic_text *t = &db.texts[i];
		uint32_t *sorted = xmalloc((t->nr + 1) * sizeof(*sorted));
		t->has = xcalloc(db.nvocab / 8 + 1, 1);
		for (size_t k = 0; k < t->nr; k++)
			sorted[k] = (uint32_t)t->words[k];
		qsort(sorted, t->nr, sizeof(*sorted), cmp_u32);
		t->uniq = xmalloc((t->nr + 1) * sizeof(*t->uniq));
		t->count = xmalloc((t->nr + 1) * sizeof(*t->count));
		for (size_t k = 0; k < t->nr; k++) {
			if (t->nuniq && t->uniq[t->nuniq - 1] == sorted[k]) {
				t->count[t->nuniq - 1]++;
				continue;
			}
			t->uniq[t->nuniq] = sorted[k];
			t->count[t->nuniq++] = 1;
			t->has[sorted[k] / 8] |= (uint8_t)(1u << (sorted[k] % 8));
		}
		free(sorted);
	}
	db.post_at = xcalloc(db.nvocab + 2, sizeof(*db.post_at));
	for (size_t i = 0; i < db.nr; i++)
		for (size_t u = 0; u < db.texts[i].nuniq; u++)
			db.post_at[db.texts[i].uniq[u] + 2]++;
	for (size_t v = 2; v <= db.nvocab + 1; v++)
		db.post_at[v] += db.post_at[v - 1];
	db.post = xmalloc((db.post_at[db.nvocab + 1] + 1) * sizeof(*db.post));
	for (size_t i = 0; i < db.nr; i++)
		for (size_t u = 0; u < db.texts[i].nuniq; u++) {
			struct lic_post *q = &db.post[db.post_at[db.texts[i].uniq[u] + 1]++];
			q->text = (uint32_t)i;
			q->count = db.texts[i].count[u];
		}
	db.nvariants = ARRAY_SIZE(variant_rows);
	db.variants = xcalloc(db.nvariants + 1, sizeof(*db.variants));
	for (size_t i = 0; i < db.nvariants; i++) {
		struct ids x = { &db, 0, NULL, 0, 0 };
		lic_words(variant_rows[i].marker, strlen(variant_rows[i].marker), collect_id, &x);
		db.variants[i].answer = variant_rows[i].answer;
		db.variants[i].words = x.v;
		db.variants[i].nr = x.nr;
		db.variants[i].times = variant_rows[i].times;
		for (size_t k = 0; k < db.nr; k++)
			if (!strcmp(db.texts[k].key, variant_rows[i].key))
				db.texts[k].variant = (int)i;
	}
	db_built = 1;
}

static int has_word(const struct lic_text *t, int id)
{
	return id >= 0 && (t->has[(unsigned)id / 8] >> ((unsigned)id % 8) & 1);
}

/* --- scoring --- */

static void collect_tok(void *arg, const char *w, size_t len, int line_start, int title)
{
	struct lic_toks *x = arg;
	ALLOC_GROW(x->v, x->nr + 1, x->alloc);
	x->v[x->nr].id = len ? word_id(&db.vocab, w, len) : -1;
	x->v[x->nr].line_start = (uint8_t)line_start;
	x->v[x->nr].title = (uint8_t)title;
	x->nr++;
}

/* Where vocabulary id `id` is in t->uniq, -1 when t does not use it. */
static long uniq_index(const struct lic_text *t, int id)
{
	size_t lo = 0, hi = t->nuniq;
	if (id < 0)
		return -1;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (t->uniq[mid] == (uint32_t)id)
			return (long)mid;
		if (t->uniq[mid] < (uint32_t)id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/*
 * Edit distance (insert, delete or substitute one word) between `a` (n words,
 * -1 matching nothing) and the text t, with Myers' bit-parallel algorithm in
 * 64-row blocks (Hyyro's formulation): t's words are the rows, so a column
 * costs t->nr / 64 word operations. `peq` has room for t->nuniq * blocks words.
 */
static size_t edit_distance(const int *a, size_t n, const struct lic_text *t, uint64_t *peq, uint64_t *pv,
			    uint64_t *mv)
{
	const int *w = t->words;
	size_t m = t->nr, blocks, dist;
	unsigned last;
	/* a common beginning and end cost nothing: only the middle is computed */
	while (n && m && a[0] == w[0])
		a++, w++, n--, m--;
	while (n && m && a[n - 1] == w[m - 1])
		n--, m--;
	if (!n || !m)
		return n + m;
	blocks = (m + 63) / 64;
	dist = m;
	last = (unsigned)((m + 63) % 64);
	memset(peq, 0, t->nuniq * blocks * sizeof(*peq));
	for (size_t i = 0; i < m; i++)
		peq[(size_t)uniq_index(t, w[i]) * blocks + i / 64] |= UINT64_C(1) << (i % 64);
	for (size_t b = 0; b < blocks; b++)
		pv[b] = ~UINT64_C(0), mv[b] = 0;
	for (size_t j = 0; j < n; j++) {
		long u = uniq_index(t, a[j]);
		const uint64_t *eqs = u >= 0 ? peq + (size_t)u * blocks : NULL;
		int h = 1;                     /* the top row counts up by one */
		for (size_t b = 0; b < blocks; b++) {
			uint64_t eq = eqs ? eqs[b] : 0, neg = h < 0, up = h > 0, xv, xh, ph, mh;
			unsigned top = b + 1 == blocks ? last : 63;
			xv = eq | mv[b];
			eq |= neg;
			xh = (((eq & pv[b]) + pv[b]) ^ pv[b]) | eq;
			ph = mv[b] | ~(xh | pv[b]);
			mh = pv[b] & xh;
			h = (int)((ph >> top) & 1) - (int)((mh >> top) & 1);
			ph = ph << 1 | up;
			mh = mh << 1 | neg;
			pv[b] = mh | ~(xv | ph);
			mv[b] = ph & xv;
		}
		dist = (size_t)((long)dist + h);
	}
	return dist;
}

size_t lic_edit_distance(const int *a, size_t n, const int *b, size_t m)
{
	struct lic_text t = { 0 };
	uint32_t *sorted;
	uint64_t *peq;
	size_t blocks = (m + 63) / 64, d;
	int *bb;
	if (!m)
		return n;
	/* word ids here are any ints: shift them to be >= 0, with -1 (matching nothing) kept apart */
	bb = xmalloc(m * sizeof(*bb));
	sorted = xmalloc(m * sizeof(*sorted));
	for (size_t i = 0; i < m; i++)
		sorted[i] = (uint32_t)b[i];
	qsort(sorted, m, sizeof(*sorted), cmp_u32);
	t.uniq = xmalloc(m * sizeof(*t.uniq));
	for (size_t i = 0; i < m; i++)
		if (!t.nuniq || t.uniq[t.nuniq - 1] != sorted[i])
			t.uniq[t.nuniq++] = sorted[i];
	for (size_t i = 0; i < m; i++)
		bb[i] = (int)uniq_index(&t, b[i]);
	/* the rows are now indices into uniq: map a the same way */
	{
		int *aa = xmalloc((n + 1) * sizeof(*aa));
		for (size_t j = 0; j < n; j++)
			aa[j] = (int)uniq_index(&t, a[j]);
		for (size_t i = 0; i < t.nuniq; i++)
			t.uniq[i] = (uint32_t)i;
		t.words = bb;
		t.nr = m;
		peq = xmalloc((t.nuniq * blocks + 2 * blocks) * sizeof(*peq));
		d = edit_distance(aa, n, &t, peq, peq + t.nuniq * blocks, peq + t.nuniq * blocks + blocks);
		free(aa);
	}
	free(peq);
	free(t.uniq);
	free(sorted);
	free(bb);
	return d;
}

struct best {
	const struct lic_text *text;
	double conf;
};

static int better(const struct lic_text *t, double conf, const struct best *b)
{
	const char *x, *y;
	if (!b->text || conf > b->conf)
		return 1;
	if (conf < b->conf || t == b->text)
		return 0;
	/* equal confidence: the smaller id, as upstream sorts */
	x = t->answer.id[0] ? t->answer.id : t->key;
	y = b->text->answer.id[0] ? b->text->answer.id : b->text->key;
	return strcmp(x, y) < 0;
}

struct bound {
	size_t text;
	double ub;                     /* the best confidence the text could reach */
};

static int by_bound(const void *a, const void *b)
{
	const struct bound *x = a, *y = b;
	return x->ub > y->ub ? -1 : x->ub < y->ub ? 1 : x->text < y->text ? -1 : x->text > y->text;
}

/* The part [b, e) as `t` sees it: a run of words it does not use is one word. */
static size_t part_seq(const struct lic_toks *toks, size_t b, size_t e, const struct lic_text *t, int *seq)
{
	size_t n = 0;
	for (size_t i = b; i < e; i++) {
		int id = toks->v[i].id;
		if (has_word(t, id))
			seq[n++] = id;
		else if (!n || seq[n - 1] != -1)
			seq[n++] = -1;
	}
	return n;
}

/*
 * Score the part [b, e) of `toks` against the texts [from, to) that can still
 * beat `best`, the most promising first: max(m, words of the part t uses)
 * minus the words both share is a lower bound of the distance, so most texts
 * are never compared.
 */
static void score_part(const struct lic_toks *toks, size_t b, size_t e, uint32_t *counts, struct best *best,
		       size_t from, size_t to)
{
	struct bound *bounds = xmalloc((to - from + 1) * sizeof(*bounds));
	size_t nb = 0, ndistinct = 0, *overlap = xcalloc(db.nr, sizeof(*overlap)), *used = xcalloc(db.nr, sizeof(*used));
	int *seq = xmalloc((e - b + 1) * sizeof(*seq)), *distinct = xmalloc((e - b + 1) * sizeof(*distinct));
	for (size_t i = b; i < e; i++)
		if (toks->v[i].id >= 0 && !counts[toks->v[i].id]++)
			distinct[ndistinct++] = toks->v[i].id;
	for (size_t k = 0; k < ndistinct; k++) {
		uint32_t c = counts[distinct[k]];
		for (size_t q = db.post_at[distinct[k]]; q < db.post_at[distinct[k] + 1]; q++) {
			overlap[db.post[q].text] += MIN(db.post[q].count, c);
			used[db.post[q].text] += c;
		}
	}
	for (size_t l = from; l < to; l++) {
		const struct lic_text *t = &db.texts[l];
		/* the part has used[l] words t knows and at most one other between two of them */
		size_t n = MIN(e - b, 2 * used[l] + 1), lb = MAX(t->nr, used[l]) - overlap[l];
		bounds[nb].text = l;
		bounds[nb].ub = n ? 1.0 - (double)lb / (double)n : 0;
		if (bounds[nb].ub >= LIC_THRESHOLD)
			nb++;
	}
	for (size_t k = 0; k < ndistinct; k++)
		counts[distinct[k]] = 0;
	free(distinct);
	free(overlap);
	free(used);
	qsort(bounds, nb, sizeof(*bounds), by_bound);
	for (size_t k = 0; k < nb; k++) {
		const struct lic_text *t = &db.texts[bounds[k].text];
		size_t blocks = (t->nr + 63) / 64, n, d;
		uint64_t *peq, *pv;
		double conf;
		if (best->text && bounds[k].ub < best->conf)
			break;
		n = part_seq(toks, b, e, t, seq);
		peq = xmalloc((t->nuniq * blocks + 2 * blocks) * sizeof(*peq));
		pv = peq + t->nuniq * blocks;
		d = edit_distance(seq, n, t, peq, pv, pv + blocks);
		free(peq);
		conf = d >= n ? 0 : 1.0 - (double)d / (double)n;
		if (conf >= LIC_THRESHOLD && better(t, conf, best)) {
			best->text = t;
			best->conf = conf;
		}
	}
	free(seq);
	free(bounds);
}

/* Does `t`'s first line start at word `i`? */
static int first_line_at(const struct lic_toks *toks, size_t i, const struct lic_text *t)
{
	if (!t->first || toks->nr - i < t->first)
		return 0;
	for (size_t k = 0; k < t->first; k++)
		if (toks->v[i + k].id != t->words[k])
			return 0;
	return 1;
}

static size_t count_phrase(const struct lic_toks *toks, const int *w, size_t n)
{
	size_t times = 0;
	for (size_t i = 0; n && i + n <= toks->nr; i++) {
		size_t k = 0;
		while (k < n && toks->v[i + k].id == w[k])
			k++;
		times += k == n;
	}
	return times;
}

/* Score the whole text and each part against the texts [from, to). */
static void score_all(const struct lic_toks *toks, const size_t *cuts, size_t ncuts, uint32_t *counts,
		      struct best *best, size_t from, size_t to)
{
	if (toks->nr)
		score_part(toks, 0, toks->nr, counts, best, from, to);
	for (size_t c = 0; c < ncuts; c++) {
		size_t b = cuts[c], e = c + 1 < ncuts ? cuts[c + 1] : toks->nr;
		if ((b == 0 && e == toks->nr) || (double)(e - b) < (double)db.min_words * LIC_THRESHOLD)
			continue;
		score_part(toks, b, e, counts, best, from, to);
	}
}

const struct lic_answer *lic_classify(const char *text, size_t len, double *confidence)
{
	struct lic_toks toks = { NULL, 0, 0 };
	struct best best = { NULL, 0 };
	size_t *cuts = NULL, ncuts = 0, alloc = 0;
	const struct lic_answer *found = NULL;
	uint32_t *counts;
	if (!db_built)
		db_build();
	lic_words(text, len, collect_tok, &toks);
	counts = xcalloc(db.nvocab + 1, sizeof(*counts));
	/* the parts start where a license's first line (or a "... license" header) does */
	for (size_t i = 0; i < toks.nr && ncuts < PARTS_MAX; i++) {
		int cut = toks.v[i].title;
		if (!toks.v[i].line_start)
			continue;
		for (size_t l = 0; l < db.nr && !cut; l++)
			cut = first_line_at(&toks, i, &db.texts[l]);
		if (cut) {
			ALLOC_GROW(cuts, ncuts + 1, alloc);
			cuts[ncuts++] = i;
		}
	}
	score_all(&toks, cuts, ncuts, counts, &best, 0, db.nr);
	/* a license whose URL the text holds and that scored under the threshold counts as certain */
	for (size_t l = 0; l < db.nr; l++) {
		const struct lic_text *t = &db.texts[l];
		const char *u = t->answer.url, *s;
		struct best own = { NULL, 0 };
		if (!u[0] || t == best.text)
			continue;
		if ((s = strstr(u, "://")) != NULL)
			u = s + 3;
		if (!memmem(text, len, u, strlen(u)))
			continue;
		score_all(&toks, cuts, ncuts, counts, &own, l, l + 1);
		if (!own.text && better(t, 1.0, &best)) {
			best.text = t;
			best.conf = 1.0;
		}
	}
	if (best.text) {
		const struct lic_variant *v = best.text->variant >= 0 ? &db.variants[best.text->variant] : NULL;
		*confidence = best.conf;
		found = v && count_phrase(&toks, v->words, v->nr) >= v->times ? &v->answer : &best.text->answer;
	}
	free(cuts);
	free(counts);
	free(toks.v);
	return found;
}
