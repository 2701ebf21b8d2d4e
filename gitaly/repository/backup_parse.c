/* Parsers of what bundles and backup sinks hold (backup_parse.h); lib/base only, for fuzz/. */
#include "repository/backup_parse.h"
#include "base/util.h"

#include <string.h>
#include "base/banned.h"

int bundle_guess_head(const char *refs, const char *oid, struct strbuf *out)
{
	static const char *const preferred[] = { "refs/heads/main", "refs/heads/master" };
	size_t ol = strlen(oid);

	for (size_t pass = 0; pass <= ARRAY_SIZE(preferred); pass++) {
		for (const char *p = refs; *p;) {
			size_t n = strcspn(p, "\n");
			const char *sp = memchr(p, ' ', n);
			if (sp && (size_t)(sp - p) == ol && !memcmp(p, oid, ol)) {
				const char *name = sp + 1;
				size_t nlen = n - (size_t)(name - p);
				if (pass == ARRAY_SIZE(preferred) ||
				    (nlen == strlen(preferred[pass]) && !memcmp(name, preferred[pass], nlen))) {
					strbuf_add(out, name, nlen);
					return 0;
				}
			}
			p += n;
			if (*p)
				p++;
		}
	}
	return -1;
}

int bundle_list_head(const char *listing, char *oid)
{
	for (const char *p = listing; *p;) {
		size_t n = strcspn(p, "\n");
		const char *sp = memchr(p, ' ', n);
		if (sp && n - (size_t)(sp - p) == 5 && !memcmp(sp + 1, "HEAD", 4) && ((sp - p) == 40 || (sp - p) == 64)) {
			memcpy(oid, p, (size_t)(sp - p));
			oid[sp - p] = '\0';
			return 0;
		}
		p += n;
		if (*p)
			p++;
	}
	return -1;
}

int backup_pointer_check(struct strbuf *sb)
{
	strbuf_setlen(sb, strcspn(sb->buf, "\r\n"));
	if (!sb->len || memchr(sb->buf, '/', sb->len) || !strcmp(sb->buf, ".") || !strcmp(sb->buf, ".."))
		return -1;
	return 0;
}

unsigned backup_step_number(const char *s)
{
	unsigned v = 0;
	if (!*s)
		return 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > BACKUP_MAX_STEPS)
			return 0;
		v = v * 10 + (unsigned)(*s - '0');
	}
	return v <= BACKUP_MAX_STEPS ? v : 0;
}
