/* libFuzzer target for gitaly/transport/sidechannel_parse.c: any client bytes, fed in pieces the input picks. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "transport/sidechannel_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
	size_t bytes;
};

static void on_data(void *arg, const char *p, size_t n)
{
	struct seen *s = arg;
	if (!n)
		__builtin_trap();   /* empty pieces are never reported */
	s->bytes += n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sc_deframe df;
	struct sc_stats whole, split;
	struct seen s = { 0 };
	size_t step, used = 0;

	if (size < 1)
		return 0;
	step = (size_t)data[0] % 17 + 1;
	data++;
	size--;

	memset(&df, 0, sizeof(df));
	for (size_t at = 0; at < size && df.state == SC_DF_DATA; at += step) {
		size_t n = size - at < step ? size - at : step;
		used += sc_deframe_feed(&df, (const char *)data + at, n, on_data, &s);
	}
	/* payload never exceeds what came in, headers excluded */
	if (used > size || s.bytes > used)
		__builtin_trap();

	/* the statistics do not depend on how the input was split */
	sc_stats_init(&whole);
	sc_stats_init(&split);
	sc_stats_feed(&whole, (const char *)data, size);
	for (size_t at = 0; at < size; at += step)
		sc_stats_feed(&split, (const char *)data + at, size - at < step ? size - at : step);
	sc_stats_finish(&whole);
	sc_stats_finish(&split);
	if (whole.packets != split.packets || whole.payload_size != split.payload_size ||
	    whole.wants != split.wants || whole.haves != split.haves || whole.failed != split.failed ||
	    whole.caps.nr != split.caps.nr || whole.saw_done != split.saw_done)
		__builtin_trap();
	if (whole.pkt.len > SC_PKT_MAX)
		__builtin_trap();
	sc_stats_release(&whole);
	sc_stats_release(&split);
	return 0;
}
