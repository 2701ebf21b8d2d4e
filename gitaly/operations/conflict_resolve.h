/*
 * Conflict resolutions as GitLab sends them to ResolveConflicts, and the
 * resolution of one conflicted blob (docs/technical/operations-write.md,
 * "ResolveConflicts"). Stands alone (lib/base and jansson) so that fuzz/
 * drives it directly.
 *
 * A resolution names a conflicted file (old_path: its path on our side,
 * new_path: on theirs) and either picks a side for every conflict section
 * ("sections": section id -> "head" or "origin") or replaces the whole file
 * ("content").
 */
#ifndef GITALY_OPERATIONS_CONFLICT_RESOLVE_H
#define GITALY_OPERATIONS_CONFLICT_RESOLVE_H

#include <stddef.h>
#include "base/strbuf.h"

/* git merge-tree's conflicted blobs larger than this are not resolved (upstream's limit) */
#define CONFLICT_FILE_LIMIT (200 * 1024)

struct conflict_section {
	char *id, *side;
};

struct conflict_resolution {
	char *old_path, *new_path;
	struct conflict_section *sections;
	size_t nr_sections;
	char *content;
	size_t content_len;
};

struct conflict_resolutions {
	struct conflict_resolution *v;
	size_t nr;
};

enum conflict_parse_err {
	CR_OK = 0,
	CR_BAD_JSON = -1,     /* not JSON, or not an array of resolution objects */
	CR_NO_RESOLUTION = -2, /* an element has neither "sections" nor "content" */
};

/* Parse the concatenated files_json; on error `err` says why. */
enum conflict_parse_err conflict_resolutions_parse(const char *json, size_t len, struct conflict_resolutions *out,
						   struct strbuf *err);
void conflict_resolutions_release(struct conflict_resolutions *r);

/*
 * Resolve the conflicted blob `data` (markers labelled with the `ours` and
 * `theirs` commit ids, as merge-tree writes them) for `path`, whose SHA-1 in
 * hex is `path_sha1` (section ids are "<path_sha1>_<our line>_<their line>").
 * `append_newline` adds a final newline after resolved sections. 0 with the
 * result in `out`, or -1 with `err` set to upstream's message.
 */
int conflict_resolve(const char *data, size_t len, const char *ours, const char *theirs, const char *path,
		     const char *path_sha1, const struct conflict_resolution *r, int append_newline,
		     struct strbuf *out, struct strbuf *err);

#endif
