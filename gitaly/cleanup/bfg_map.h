/*
 * The object map of a history rewrite (BFG's object-id-map.old-new.txt or
 * git filter-repo's commit-map), as ApplyBfgObjectMapStream reads it
 * (docs/technical/operations-write.md, "ApplyBfgObjectMapStream"). Stands
 * alone (lib/base only) so that fuzz/ drives it directly.
 */
#ifndef GITALY_CLEANUP_BFG_MAP_H
#define GITALY_CLEANUP_BFG_MAP_H

#include <stddef.h>
#include "base/strbuf.h"

struct bfg_entry {
	char old_oid[65], new_oid[65];
};

/*
 * Parse `len` bytes of "<old> <new>" lines of `hexlen`-digit object ids.
 * filter-repo's header line is skipped, and so are entries whose old and new
 * ids are equal (the object was looked at, not rewritten). 0 with the
 * entries in *v (free() it), or -1 with `err` set to upstream's message
 * ("object map invalid at line <n>", counting from 0).
 */
int bfg_map_parse(const char *buf, size_t len, size_t hexlen, struct bfg_entry **v, size_t *nr, struct strbuf *err);

#endif
