/*
 * libFuzzer target for praefect/coordinator/advert.c: any bytes as a node's
 * receive-pack advertisement. A complete one ends with a flush-pkt; the
 * capabilities found lie inside the first pkt-line, after its NUL.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/advert.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1);
	const char *caps;
	size_t len;

	memcpy(buf, data, size);
	if (advert_complete(buf, size) && size && (size < 4 || memcmp(buf + size - 4, "0000", 4)))
		abort();
	if (advert_capabilities(buf, size, &caps, &len) == 0) {
		if (caps <= buf + 4 || caps[-1] != '\0' || caps + len > buf + size)
			abort();
	}
	free(buf);
	return 0;
}
