/*
 * libFuzzer target for gitaly/hooks/proc_receive_parse.c: any bytes as a proc-receive hook's stdin, fed in
 * two pieces as the stream may cut it. The parser ends in a known state, failed ones with a message, and
 * buffers at most one pkt-line.
 */
#include <stddef.h>
#include <stdint.h>

#include "hooks/proc_receive_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct prc_parser p;
	struct strbuf reply = STRBUF_INIT;
	size_t cut = size ? data[0] % (size + 1) : 0;
	enum prc_state st;

	prc_init(&p);
	st = prc_feed(&p, data, cut, 0);
	if (st == PRC_COMMANDS) {
		prc_version_reply(&p, &reply);
		st = prc_feed(&p, NULL, 0, 0);
	}
	if (st != PRC_DONE && st != PRC_FAILED)
		st = prc_feed(&p, data + cut, size - cut, 1);
	if (st == PRC_COMMANDS)
		st = prc_feed(&p, NULL, 0, 1);
	if (st != PRC_DONE && st != PRC_FAILED)
		__builtin_trap();
	if (st == PRC_FAILED && !p.err.len)
		__builtin_trap();
	if (p.buf.len > size)
		__builtin_trap();
	strbuf_release(&reply);
	prc_release(&p);
	return 0;
}
