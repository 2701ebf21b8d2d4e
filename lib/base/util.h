/* Small helpers every module uses: checked allocation, array growth, die(). */
#ifndef BASE_UTIL_H
#define BASE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

/*
 * Allocation that never returns NULL: running out of memory is not a condition
 * any caller here can recover from, so these abort with a message (as git's
 * xmalloc does). Everything else reports errors as negative return codes.
 */
void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xmemdup(const void *p, size_t n);

/* Grow array `x` (with `alloc` slots) so that it holds at least `nr` items. */
#define ALLOC_GROW(x, nr, alloc)                                           \
	do {                                                               \
		if ((nr) > (alloc)) {                                      \
			size_t alloc_grow_new_ = (alloc) * 2 + 8;          \
			if (alloc_grow_new_ < (nr))                        \
				alloc_grow_new_ = (nr);                    \
			(alloc) = alloc_grow_new_;                         \
			(x) = xrealloc((x), (alloc) * sizeof(*(x)));       \
		}                                                          \
	} while (0)

/* The value of the hexadecimal digit c (either case), or -1 when it is not one. */
int hex_digit(int c);

/* For start-up and command-line tools only: print "fatal: ..." and exit(1). */
noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Monotonic clock in milliseconds and nanoseconds. */
uint64_t now_ms(void);
uint64_t now_ns(void);

#endif
