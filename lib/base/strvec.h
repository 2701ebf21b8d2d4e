/*
 * strvec: a NULL-terminated array of owned strings (git's strvec), for argv
 * and environment lists. `v` is never NULL; v[nr] == NULL.
 */
#ifndef BASE_STRVEC_H
#define BASE_STRVEC_H

#include <stddef.h>

struct strvec {
	const char **v;
	size_t nr, alloc;
};

extern const char *strvec_empty[];
#define STRVEC_INIT { strvec_empty, 0, 0 }

void strvec_init(struct strvec *sv);
void strvec_clear(struct strvec *sv);
const char *strvec_push(struct strvec *sv, const char *s);
const char *strvec_pushf(struct strvec *sv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strvec_pushl(struct strvec *sv, ...); /* NULL-terminated list */
void strvec_pushv(struct strvec *sv, const char *const *items);
/* Remove every entry starting with `prefix` (e.g. "GIT_DIR="). */
void strvec_remove_prefix(struct strvec *sv, const char *prefix);

#endif
