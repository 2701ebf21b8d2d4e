/*
 * The order in which object files are moved into an object directory so
 * that a reader never sees a pack without what makes it usable
 * (docs/technical/gitaly-node.md, "Write RPCs"): loose objects first, then
 * a pack's .keep, the .pack, its .rev, its .idx (git finds a pack through
 * its index, so the index comes last), then anything else.
 */
#ifndef GIT_OBJFILES_H
#define GIT_OBJFILES_H

#include <stddef.h>

/* Sort `n` file names (relative to an objects directory, e.g. "pack/pack-1.idx" or "ab/cdef...") into that order. */
void git_objfiles_sort(const char **names, size_t n);

#endif
