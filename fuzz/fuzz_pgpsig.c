/* libFuzzer target for gitaly/read/pgpsig.c: any bytes as a key file, and as a signature checked against it. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "read/pgpsig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the bytes before the first NUL are a key file, the rest a signature */
	const uint8_t *nul = memchr(data, 0, size);
	size_t klen = nul ? (size_t)(nul - data) : size;
	const char *why = NULL;
	struct pgpsig_key *k = pgpsig_key_parse(data, klen, &why);
	const char *sig = nul ? (const char *)nul + 1 : (const char *)data;
	size_t slen = nul ? size - klen - 1 : size;

	if (!k && !why)
		__builtin_trap();
	if (k)
		(void)pgpsig_verify(k, sig, slen, (const char *)data, klen, 1700000000);
	pgpsig_key_free(k);
	return 0;
}
