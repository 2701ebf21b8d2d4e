/*
 * The one rule for a repository's relative path, shared by gitaly's locator
 * and praefect's router (docs/technical/gitaly-node.md, "Repositories"):
 * joined lexically to a storage root, with "." and ".." resolved and empty
 * components dropped, the result must be the root itself or lie below it.
 * Nothing here touches the disk; the node adds its own symlink check.
 */
#ifndef GIT_RELPATH_H
#define GIT_RELPATH_H

#include <stddef.h>

struct strbuf;

/* Longer relative paths are refused as escaping (upstream's PATH_MAX-sized cap). */
#define GIT_RELPATH_MAX 4096

/* The message both daemons answer with, as an INVALID_ARGUMENT status. */
#define GIT_RELPATH_ESCAPES "relative path escapes root directory"

/*
 * Append `root` joined with rel[0..len) to `out`, cleaned as above. Returns
 * 0, or -1 when the path leaves `root` or is longer than GIT_RELPATH_MAX
 * (then `out` holds a partial result the caller discards).
 */
int git_relpath_join(const char *root, const char *rel, size_t len, struct strbuf *out);

/* 0 when rel[0..len) stays inside any root, -1 when it escapes (no output). */
int git_relpath_check(const char *rel, size_t len);

#endif
