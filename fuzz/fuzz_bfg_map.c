/* libFuzzer target for gitaly/cleanup/bfg_map.c: any bytes as an object map, SHA-1 or SHA-256 by the first byte. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup/bfg_map.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bfg_entry *v;
	size_t nr, hexlen;
	struct strbuf err = STRBUF_INIT;
	if (!size)
		return 0;
	hexlen = data[0] & 1 ? 64 : 40;
	if (bfg_map_parse((const char *)data + 1, size - 1, hexlen, &v, &nr, &err) == 0) {
		for (size_t i = 0; i < nr; i++)
			if (strlen(v[i].old_oid) != hexlen || strlen(v[i].new_oid) != hexlen ||
			    !strcmp(v[i].old_oid, v[i].new_oid))
				__builtin_trap();
		free(v);
		if (err.len)
			__builtin_trap();
	} else if (!err.len || v || nr) {
		__builtin_trap();
	}
	strbuf_release(&err);
	return 0;
}
