/* libFuzzer target for lib/git/refs: any bytes as a loose ref file and as packed-refs; what is found is well formed. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "git/refs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void oid_or_trap(const char *oid)
{
	size_t n = strlen(oid);
	if (n && n != 40 && n != 64)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct git_ref r;
	int children;
	/* the name looked up: the first line of the input, the rest is the file */
	const char *nl = memchr(buf, '\n', size);
	size_t nlen = nl ? (size_t)(nl - buf) : 0;

	if (git_refs_parse_loose(buf, size, &r) == GIT_REFS_FOUND) {
		oid_or_trap(r.oid);
		if (!r.oid[0] == !r.target[0])
			__builtin_trap();
		if (r.target[0] && git_refs_name_ok(r.target, strlen(r.target)) < 0)
			__builtin_trap();
	}
	(void)git_refs_name_ok(buf, size);
	if (nl && git_refs_packed_find(nl + 1, size - nlen - 1, buf, nlen, &r, &children) == GIT_REFS_FOUND) {
		oid_or_trap(r.oid);
		oid_or_trap(r.peeled);
		if (!r.oid[0])
			__builtin_trap();
	}
	return 0;
}
