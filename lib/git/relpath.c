/* Lexical validation of repository relative paths (see relpath.h). */
#include "git/relpath.h"
#include "base/strbuf.h"

#include <string.h>

int git_relpath_join(const char *root, const char *rel, size_t len, struct strbuf *out)
{
	const char *p = rel, *end = rel + len;
	size_t base;

	if (len > GIT_RELPATH_MAX)
		return -1;
	strbuf_addstr(out, root);
	while (out->len > 1 && out->buf[out->len - 1] == '/')
		strbuf_setlen(out, out->len - 1);
	base = out->len;
	while (p < end) {
		const char *slash = memchr(p, '/', (size_t)(end - p));
		size_t n = slash ? (size_t)(slash - p) : (size_t)(end - p);
		if (n == 0 || (n == 1 && p[0] == '.')) {
			/* an empty or "." component changes nothing */
		} else if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (out->len <= base)
				return -1;
			while (out->len > base && out->buf[out->len - 1] != '/')
				strbuf_setlen(out, out->len - 1);
			strbuf_setlen(out, out->len - 1);
		} else {
			strbuf_addch(out, '/');
			strbuf_add(out, p, n);
		}
		p += n;
		if (p < end && *p == '/')
			p++;
	}
	return 0;
}

int git_relpath_check(const char *rel, size_t len)
{
	struct strbuf sb = STRBUF_INIT;
	int rc = git_relpath_join("/", rel, len, &sb);
	strbuf_release(&sb);
	return rc;
}
