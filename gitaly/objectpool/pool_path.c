/*
 * Object pool paths and the alternates line of a member (pool_path.h). Only
 * lib/base: the fuzz target fuzz/fuzz_pool_path.c builds this file alone.
 */
#include "objectpool/pool_path.h"

#include <ctype.h>
#include <string.h>
#include "base/banned.h"

static int hex_run(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!(isdigit((unsigned char)s[i]) || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/* `s` ends with "@pools/ab/cd/<64 hex>.git" where the hash starts with "abcd". */
static int ends_rails_pool(const char *s)
{
	size_t n = strlen(s), tail = 7 + 3 + 3 + 64 + 4;
	const char *p;
	if (n < tail)
		return 0;
	p = s + n - tail;
	return !strncmp(p, "@pools/", 7) && hex_run(p + 7, 2) && p[9] == '/' && hex_run(p + 10, 2) &&
	       p[12] == '/' && hex_run(p + 13, 64) && !strcmp(p + 77, ".git") && !memcmp(p + 13, p + 7, 2) &&
	       !memcmp(p + 15, p + 10, 2);
}

int objpool_is_rails_path(const char *rel)
{
	return rel && ends_rails_pool(rel);   /* upstream's pattern is not anchored at the start */
}

/* `s` ends with "@cluster/pools/ab/cd/<digits>". */
static int ends_praefect_pool(const char *s)
{
	const char *p = strstr(s, "@cluster/pools/");
	while (p) {
		const char *q = p + 15;
		size_t digits;
		if (hex_run(q, 2) && q[2] == '/' && hex_run(q + 3, 2) && q[5] == '/') {
			digits = strspn(q + 6, "0123456789");
			if (digits && q[6 + digits] == '\0')
				return 1;
		}
		p = strstr(p + 1, "@cluster/pools/");
	}
	return 0;
}

int objpool_is_pool_path(const char *rel)
{
	return rel && (objpool_is_rails_path(rel) || ends_praefect_pool(rel));
}

/* filepath.Rel of two clean absolute paths: "../" for each step up from `base`, then the rest of `target`. */
void objpool_alternate_line(const char *repo_path, const char *pool_path, struct strbuf *out)
{
	struct strbuf base = STRBUF_INIT;
	const char *b, *t;
	size_t common = 0, i;

	strbuf_addf(&base, "%s/objects", repo_path);
	/* the longest common prefix that ends at a component boundary */
	for (i = 0; base.buf[i] && base.buf[i] == pool_path[i]; i++)
		if (base.buf[i] == '/')
			common = i;
	if ((!base.buf[i] || base.buf[i] == '/') && (!pool_path[i] || pool_path[i] == '/'))
		common = i;
	b = base.buf + common;
	t = pool_path + common;
	for (; *b; b++)
		if (*b == '/')
			strbuf_addstr(out, "../");
	if (*t == '/')
		t++;
	if (*t)
		strbuf_addf(out, "%s/objects", t);
	else
		strbuf_addstr(out, "objects");
	strbuf_release(&base);
}
