/*
 * Internal to lib/grpc: the server's method table. Paths are
 * "/pkg.Service/Method"; lookups are binary searches over the table, sorted
 * lazily after additions. The table also remembers every service a method
 * was added for (grpc_server_has_service()).
 */
#ifndef GRPC_METHODS_H
#define GRPC_METHODS_H

#include <stddef.h>
#include "server.h"

struct gmethod {
	char *path;
	grpc_start_fn start;      /* exactly one of start and unary is set */
	grpc_unary_fn unary;
	void *data;
};

struct gmethods {
	struct gmethod *v;
	size_t nr, alloc;
	int sorted;
	char **services;          /* "pkg.Service" */
	size_t nr_services, alloc_services;
};

/* 0, -EINVAL for a malformed path, -EEXIST for one already added. */
int gmethods_add(struct gmethods *t, const char *path, grpc_start_fn start, grpc_unary_fn unary, void *data);
const struct gmethod *gmethods_find(struct gmethods *t, const char *path);
int gmethods_has_service(const struct gmethods *t, const char *name);
void gmethods_release(struct gmethods *t);

#endif
