/* libFuzzer: an SNTP server reply (lib/ntp ntp_parse_reply()). */
#include "ntp/ntp.h"
#include "base/strbuf.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strbuf err = STRBUF_INIT;
	int64_t offset;
	uint64_t t1 = 0;
	/* let the input echo our timestamp sometimes, so the arithmetic runs */
	if (size >= 32)
		for (int i = 0; i < 8; i++)
			t1 = t1 << 8 | data[24 + i];
	ntp_parse_reply(data, size, t1, t1 + ((uint64_t)1 << 32), &offset, &err);
	strbuf_release(&err);
	return 0;
}
