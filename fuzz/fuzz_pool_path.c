/*
 * libFuzzer target for gitaly/objectpool/pool_path.c: any bytes as a relative
 * path for the pool-path checks (a Rails pool path is always a pool path),
 * and two lines as a member's and a pool's clean absolute paths: the
 * alternates line, joined under the member's objects/ and resolved, must
 * lead to the pool's objects/.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"
#include "objectpool/pool_path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A clean absolute path from the components of `s` (no empty, ".", ".." or NUL parts). */
static void clean_abs(struct strbuf *out, const char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && s[j] != '/')
			j++;
		if (j > i && !(j - i == 1 && s[i] == '.') && !(j - i == 2 && s[i] == '.' && s[i + 1] == '.') &&
		    !memchr(s + i, '\0', j - i)) {
			strbuf_addch(out, '/');
			strbuf_add(out, s + i, j - i);
		}
		i = j + 1;
	}
	if (!out->len)
		strbuf_addstr(out, "/r");
}

/* Resolve "." and ".." of an absolute path lexically (".." at the root stays at the root). */
static void resolve(struct strbuf *out, const char *p)
{
	const char *c = p;
	while (*c) {
		const char *e;
		size_t n;
		while (*c == '/')
			c++;
		e = strchrnul(c, '/');
		n = (size_t)(e - c);
		if (n == 2 && c[0] == '.' && c[1] == '.') {
			char *slash = strrchr(out->buf, '/');
			strbuf_setlen(out, slash ? (size_t)(slash - out->buf) : 0);
		} else if (n && !(n == 1 && c[0] == '.')) {
			strbuf_addch(out, '/');
			strbuf_add(out, c, n);
		}
		c = e;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strbuf a = STRBUF_INIT, repo = STRBUF_INIT, pool = STRBUF_INIT, line = STRBUF_INIT;
	struct strbuf joined = STRBUF_INIT, got = STRBUF_INIT, want = STRBUF_INIT;
	const char *nl = memchr(data, '\n', size);
	size_t first = nl ? (size_t)(nl - (const char *)data) : size;

	strbuf_add(&a, data, size);
	if (objpool_is_rails_path(a.buf) && !objpool_is_pool_path(a.buf))
		__builtin_trap();

	clean_abs(&repo, (const char *)data, first);
	clean_abs(&pool, nl ? nl + 1 : "", nl ? size - first - 1 : 0);
	/* a pool inside the member's objects/ is not a case that exists */
	strbuf_addf(&want, "%s/objects", repo.buf);
	if (strncmp(pool.buf, want.buf, want.len) || (pool.buf[want.len] && pool.buf[want.len] != '/')) {
		objpool_alternate_line(repo.buf, pool.buf, &line);
		strbuf_addf(&joined, "%s/objects/%s", repo.buf, line.buf);
		resolve(&got, joined.buf);
		strbuf_reset(&want);
		strbuf_addf(&want, "%s/objects", pool.buf);
		if (strcmp(got.buf, want.buf))
			__builtin_trap();
	}
	strbuf_release(&a);
	strbuf_release(&repo);
	strbuf_release(&pool);
	strbuf_release(&line);
	strbuf_release(&joined);
	strbuf_release(&got);
	strbuf_release(&want);
	return 0;
}
