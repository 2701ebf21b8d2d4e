/* The move order of object files (objfiles.h). */
#include "git/objfiles.h"

#include <stdlib.h>
#include <string.h>

static int ends_with(const char *s, size_t n, const char *suffix)
{
	size_t k = strlen(suffix);
	return n >= k && !memcmp(s + n - k, suffix, k);
}

static int rank(const char *name)
{
	size_t n = strlen(name);
	if (strncmp(name, "pack", 4))
		return 0;
	if (ends_with(name, n, ".keep"))
		return 1;
	if (ends_with(name, n, ".pack"))
		return 2;
	if (ends_with(name, n, ".rev"))
		return 3;
	if (ends_with(name, n, ".idx"))
		return 4;
	return 5;
}

static int by_rank(const void *a, const void *b)
{
	const char *x = *(const char *const *)a, *y = *(const char *const *)b;
	int rx = rank(x), ry = rank(y);
	return rx != ry ? rx - ry : strcmp(x, y);
}

void git_objfiles_sort(const char **names, size_t n)
{
	qsort(names, n, sizeof(*names), by_rank);
}
