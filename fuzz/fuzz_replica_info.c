/* libFuzzer target for gitaly/repository/replica_info_parse.c: any bytes as a replica record; a record that parses, written out again, parses to the same values. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "repository/replica_info.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct replica_record a, b;
	struct strbuf err = STRBUF_INIT, out = STRBUF_INIT;

	replica_record_init(&a);
	replica_record_init(&b);
	if (replica_record_parse((const char *)data, size, &a, &err) == 0) {
		replica_record_format(&a, &out);
		if (replica_record_parse(out.buf, out.len, &b, &err) != 0 ||
		    strcmp(a.virtual_storage.buf, b.virtual_storage.buf) ||
		    strcmp(a.relative_path.buf, b.relative_path.buf) || a.repository_id != b.repository_id ||
		    a.generation != b.generation || strcmp(a.primary.buf, b.primary.buf) ||
		    a.primary_epoch != b.primary_epoch)
			abort();
	}
	replica_record_release(&a);
	replica_record_release(&b);
	strbuf_release(&err);
	strbuf_release(&out);
	return 0;
}
