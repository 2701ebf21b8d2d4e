/*
 * Lookups over read/languages.def: one table, sorted by the generator, so
 * extensions and file names are found by binary search. The vendored and
 * documentation patterns are POSIX extended regular expressions, compiled
 * once on first use (docs/technical/languages.md, "Path rules").
 */
#include "read/languages.h"
#include "read/generated.h"

#include <openssl/evp.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROGRAMMING LANG_PROGRAMMING
#define MARKUP LANG_MARKUP
#define DATA LANG_DATA
#define PROSE LANG_PROSE

struct lang_def { const char *name; enum lang_type type; const char *color; };
struct lang_key { const char *key; const char *lang; };

static const struct lang_def langs[] = {
#define LANGUAGE(n, t, c) { n, t, c },
#include "read/languages.def"
};

static const struct lang_key exts[] = {
#define EXTENSION(e, l) { e, l },
#include "read/languages.def"
};

static const struct lang_key files[] = {
#define FILENAME(f, l) { f, l },
#include "read/languages.def"
};

static const char *const vendor_pats[] = {
#define VENDOR(p) p,
#include "read/languages.def"
};

static const char *const doc_pats[] = {
#define DOCUMENTATION(p) p,
#include "read/languages.def"
};


#define N(a) (sizeof(a) / sizeof((a)[0]))

static int key_cmp(const void *k, const void *e)
{
	return strcmp(k, ((const struct lang_key *)e)->key);
}

static const char *lookup(const struct lang_key *v, size_t n, const char *key)
{
	const struct lang_key *e = bsearch(key, v, n, sizeof(*v), key_cmp);
	return e ? e->lang : NULL;
}

const char *lang_by_path(const char *path, size_t len)
{
	const char *base = memrchr(path, '/', len), *lang = NULL;
	char *low;
	size_t blen;
	base = base ? base + 1 : path;
	blen = len - (size_t)(base - path);
	low = malloc(blen + 1);
	if (!low)
		return NULL;
	memcpy(low, base, blen);
	low[blen] = '\0';
	if ((lang = lookup(files, N(files), low)))
		goto out;
	/* extensions are compared lower-cased, the longest dotted suffix first ("a.d.ts": ".d.ts", ".ts") */
	for (size_t i = 0; i < blen; i++)
		if (low[i] >= 'A' && low[i] <= 'Z')
			low[i] = (char)(low[i] - 'A' + 'a');
	for (size_t i = 0; i < blen && !lang; i++)
		if (low[i] == '.')
			lang = lookup(exts, N(exts), low + i);
out:
	free(low);
	return lang;
}

static const struct lang_def *find_lang(const char *name)
{
	for (size_t i = 0; i < N(langs); i++)
		if (!strcmp(langs[i].name, name))
			return &langs[i];
	return NULL;
}

enum lang_type lang_type(const char *name)
{
	const struct lang_def *d = find_lang(name);
	return d ? d->type : LANG_UNKNOWN;
}

void lang_color(const char *name, char out[8])
{
	const struct lang_def *d = find_lang(name);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (d && d->color) {
		snprintf(out, 8, "%s", d->color);
		return;
	}
	EVP_Digest(name, strlen(name), md, &mdlen, EVP_sha256(), NULL);
	snprintf(out, 8, "#%02x%02x%02x", md[0], md[1], md[2]);
}

struct pat_set {
	const char *const *src;
	size_t n;
	regex_t *re;
	int *ok;
};

static int pat_match(struct pat_set *s, const char *path)
{
	if (!s->re) {
		s->re = calloc(s->n, sizeof(*s->re));
		s->ok = calloc(s->n, sizeof(*s->ok));
		if (!s->re || !s->ok) {
			free(s->re), free(s->ok);
			s->re = NULL, s->ok = NULL;
			return 0;
		}
		/* the generator keeps only patterns regcomp accepts */
		for (size_t i = 0; i < s->n; i++)
			s->ok[i] = regcomp(&s->re[i], s->src[i], REG_EXTENDED | REG_NOSUB) == 0;
	}
	for (size_t i = 0; i < s->n; i++)
		if (s->ok[i] && regexec(&s->re[i], path, 0, NULL, 0) == 0)
			return 1;
	return 0;
}

static struct pat_set vendor_set = { vendor_pats, N(vendor_pats), NULL, NULL };
static struct pat_set doc_set = { doc_pats, N(doc_pats), NULL, NULL };

int lang_is_vendored(const char *path)
{
	return pat_match(&vendor_set, path);
}

int lang_is_documentation(const char *path)
{
	return pat_match(&doc_set, path);
}

int lang_is_generated(const char *path)
{
	/* go-enry's rules with no content: only those that look at the path apply */
	return gen_is_generated(path, "", 0);
}
