/* libFuzzer target for lib/ntp: any bytes as a server's reply; a reply judged valid has an offset its timestamps allow. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ntp/ntp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ntp_time sent = { 0, 0 }, recvd;
	const char *stage = NULL, *err;
	int64_t off = 0;

	/* the first 16 bytes choose when we sent and received; the rest is the reply */
	if (size < 16)
		return 0;
	memcpy(&sent, data, 8);
	memcpy(&recvd, data + 8, 8);
	err = ntp_check_reply(data + 16, size - 16, sent, recvd, &off, &stage);
	if (!stage || (strcmp(stage, "query") && strcmp(stage, "validate")))
		__builtin_trap();
	if (!err && size - 16 < NTP_PACKET_SIZE)
		__builtin_trap();
	return 0;
}
