/*
 * Object pool paths (docs/technical/object-pools.md, "The idea"): what a
 * client-supplied relative path must look like to be a pool, and what a
 * member's alternates file holds for its pool. Pure string functions.
 */
#ifndef GITALY_OBJECTPOOL_POOL_PATH_H
#define GITALY_OBJECTPOOL_POOL_PATH_H

#include "base/strbuf.h"

/* 1 when `rel` ends like a Rails pool path "@pools/ab/cd/<64 hex>.git" (hash starting abcd). */
int objpool_is_rails_path(const char *rel);
/* 1 when `rel` ends like a Rails pool path or praefect's "@cluster/pools/ab/cd/<id>". */
int objpool_is_pool_path(const char *rel);
/*
 * What a member's alternates holds for its pool: the path from
 * `<repo_path>/objects` to `<pool_path>/objects`, relative (filepath.Rel of
 * two clean absolute paths). Appends to `out`.
 */
void objpool_alternate_line(const char *repo_path, const char *pool_path, struct strbuf *out);

#endif
