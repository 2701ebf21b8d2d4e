/* libFuzzer target for gitaly/read/generated.c: any bytes as a path and a blob's first bytes; the answer is 0 or 1 and the same twice. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "read/generated.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the bytes before the first NUL are the path, the rest the content */
	const uint8_t *nul = memchr(data, 0, size);
	size_t plen = nul ? (size_t)(nul - data) : size;
	char *path = malloc(plen + 1);
	const char *content = nul ? (const char *)nul + 1 : "";
	size_t clen = nul ? size - plen - 1 : 0;
	int a, b;

	memcpy(path, data, plen);
	path[plen] = '\0';
	if (clen > GENERATED_SNIFF_LEN)
		clen = GENERATED_SNIFF_LEN;
	a = gen_is_generated(path, content, clen);
	b = gen_is_generated(path, content, clen);
	if ((a != 0 && a != 1) || a != b)
		__builtin_trap();
	free(path);
	return 0;
}
