/*
 * libFuzzer target for gitaly/operations/conflict_resolve.c: the input is
 * split at its first NUL into ResolveConflicts' files_json and a conflicted
 * blob, and every parsed resolution is applied to the blob.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "operations/conflict_resolve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OURS "1111111111111111111111111111111111111111"
#define THEIRS "2222222222222222222222222222222222222222"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *json = (const char *)data;
	const uint8_t *nul = memchr(data, '\0', size);
	size_t jlen = nul ? (size_t)(nul - data) : size;
	const char *blob = nul ? (const char *)nul + 1 : "";
	size_t blen = nul ? size - jlen - 1 : 0;
	struct conflict_resolutions res;
	struct strbuf err = STRBUF_INIT, out = STRBUF_INIT;

	if (conflict_resolutions_parse(json, jlen, &res, &err) == CR_OK) {
		for (size_t i = 0; i < res.nr; i++) {
			const struct conflict_resolution *r = &res.v[i];
			strbuf_reset(&err);
			if (conflict_resolve(blob, blen, OURS, THEIRS, r->old_path, "da39a3ee5e6b4b0d3255bfef95601890afd80709",
					     r, (int)(i & 1), &out, &err) == 0) {
				/* a resolved section never adds bytes the blob or the resolution did not have */
				if (!r->nr_sections && out.len != r->content_len)
					__builtin_trap();
				if (r->nr_sections && out.len > blen + 1)
					__builtin_trap();
			} else if (!err.len) {
				__builtin_trap();
			}
		}
		conflict_resolutions_release(&res);
	} else if (!err.len) {
		__builtin_trap();
	}
	strbuf_release(&err);
	strbuf_release(&out);
	return 0;
}
