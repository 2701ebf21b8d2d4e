/* libFuzzer target for gitaly/repository/backup_parse.c: bundle head listings, branch guesses, LATEST pointers. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "repository/backup_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strbuf text = STRBUF_INIT, branch = STRBUF_INIT;
	char oid[65];

	strbuf_add(&text, data, size);   /* what a file or git's output gives: NUL-terminated text */
	if (bundle_list_head(text.buf, oid) == 0) {
		if (strlen(oid) != 40 && strlen(oid) != 64)
			__builtin_trap();
		if (bundle_guess_head(text.buf, oid, &branch) == 0 && !branch.len)
			; /* an empty name after "<oid> " is possible and harmless */
	}
	bundle_guess_head(text.buf, "0123456789012345678901234567890123456789", &branch);
	backup_step_number(text.buf);
	if (backup_pointer_check(&text) == 0 && (!text.len || memchr(text.buf, '/', text.len)))
		__builtin_trap();
	strbuf_release(&text);
	strbuf_release(&branch);
	return 0;
}
