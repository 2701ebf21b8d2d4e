/* Parsing rewrite object maps (bfg_map.h). */
#include "cleanup/bfg_map.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

#define FILTER_REPO_HEADER "old                                      new"

static int is_hex(const char *s, size_t n, size_t hexlen)
{
	if (n != hexlen)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!strchr("0123456789abcdefABCDEF", s[i]) || !s[i])
			return 0;
	return 1;
}

int bfg_map_parse(const char *buf, size_t len, size_t hexlen, struct bfg_entry **v, size_t *nr, struct strbuf *err)
{
	const char *p = buf, *end = buf + len;
	size_t alloc = 0, line = 0;
	*v = NULL;
	*nr = 0;
	for (; p < end; line++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *sp;
		struct bfg_entry *e;
		const char *next = p + n + (nl ? 1 : 0);
		if (n && p[n - 1] == '\r')
			n--;   /* lines end in "\n" or "\r\n" */
		if (n == strlen(FILTER_REPO_HEADER) && !memcmp(p, FILTER_REPO_HEADER, n)) {
			p = next;
			continue;
		}
		sp = memchr(p, ' ', n);
		if (!sp) {
			strbuf_addf(err, "object map invalid at line %zu", line);
			goto fail;
		}
		if (!is_hex(p, (size_t)(sp - p), hexlen)) {
			strbuf_addf(err, "invalid old object ID at line %zu", line);
			goto fail;
		}
		if (!is_hex(sp + 1, (size_t)(p + n - sp - 1), hexlen)) {
			strbuf_addf(err, "invalid new object ID at line %zu", line);
			goto fail;
		}
		if (memcmp(p, sp + 1, hexlen)) {
			ALLOC_GROW(*v, *nr + 1, alloc);
			e = &(*v)[(*nr)++];
			memcpy(e->old_oid, p, hexlen);
			e->old_oid[hexlen] = '\0';
			memcpy(e->new_oid, sp + 1, hexlen);
			e->new_oid[hexlen] = '\0';
		}
		p = next;
	}
	return 0;
fail:
	free(*v);
	*v = NULL;
	*nr = 0;
	return -1;
}
