/* The server's method table: registration, lookup by path, the services it names. */
#include "methods.h"
#include "../base/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int method_cmp(const void *a, const void *b)
{
	return strcmp(((const struct gmethod *)a)->path, ((const struct gmethod *)b)->path);
}

static void remember_service(struct gmethods *t, const char *path)
{
	const char *slash;
	size_t len;
	if (path[0] != '/' || !(slash = strchr(path + 1, '/')))
		return;
	len = (size_t)(slash - path - 1);
	for (size_t i = 0; i < t->nr_services; i++)
		if (strlen(t->services[i]) == len && !memcmp(t->services[i], path + 1, len))
			return;
	ALLOC_GROW(t->services, t->nr_services + 1, t->alloc_services);
	t->services[t->nr_services++] = xstrndup(path + 1, len);
}

int gmethods_add(struct gmethods *t, const char *path, grpc_start_fn start, grpc_unary_fn unary, void *data)
{
	if (path[0] != '/' || !strchr(path + 1, '/'))
		return -EINVAL;
	for (size_t i = 0; i < t->nr; i++)
		if (!strcmp(t->v[i].path, path))
			return -EEXIST;
	ALLOC_GROW(t->v, t->nr + 1, t->alloc);
	t->v[t->nr].path = xstrdup(path);
	t->v[t->nr].start = start;
	t->v[t->nr].unary = unary;
	t->v[t->nr].data = data;
	t->nr++;
	t->sorted = 0;
	remember_service(t, path);
	return 0;
}

const struct gmethod *gmethods_find(struct gmethods *t, const char *path)
{
	struct gmethod key;
	if (!t->nr)
		return NULL;
	if (!t->sorted) {
		qsort(t->v, t->nr, sizeof(*t->v), method_cmp);
		t->sorted = 1;
	}
	key.path = (char *)path;
	return bsearch(&key, t->v, t->nr, sizeof(*t->v), method_cmp);
}

int gmethods_has_service(const struct gmethods *t, const char *name)
{
	for (size_t i = 0; i < t->nr_services; i++)
		if (!strcmp(t->services[i], name))
			return 1;
	return 0;
}

void gmethods_release(struct gmethods *t)
{
	for (size_t i = 0; i < t->nr; i++)
		free(t->v[i].path);
	free(t->v);
	for (size_t i = 0; i < t->nr_services; i++)
		free(t->services[i]);
	free(t->services);
	memset(t, 0, sizeof(*t));
}
