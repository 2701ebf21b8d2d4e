/*
 * libFuzzer target for lib/store/pg-notify-parse.c: any bytes as a
 * notification payload. A payload that parses has non-NULL strings without
 * NUL bytes, and the entries written out as JSON again parse to the same.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pg-notify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void write_out(const struct pg_notify_entry *e, size_t n, struct strbuf *out)
{
	strbuf_addch(out, '[');
	for (size_t i = 0; i < n; i++) {
		strbuf_addstr(out, i ? ",{\"virtual_storage\":" : "{\"virtual_storage\":");
		strbuf_add_json_string(out, e[i].virtual_storage, strlen(e[i].virtual_storage));
		strbuf_addstr(out, ",\"relative_paths\":[");
		for (size_t j = 0; j < e[i].nr_paths; j++) {
			if (j)
				strbuf_addch(out, ',');
			strbuf_add_json_string(out, e[i].relative_paths[j], strlen(e[i].relative_paths[j]));
		}
		strbuf_addstr(out, "]}");
	}
	strbuf_addch(out, ']');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_notify_entry *a, *b;
	size_t na, nb;
	struct strbuf err = STRBUF_INIT, out = STRBUF_INIT;

	if (pg_notify_parse((const char *)data, size, &a, &na, &err) == 0) {
		write_out(a, na, &out);
		if (pg_notify_parse(out.buf, out.len, &b, &nb, &err) != 0 || na != nb)
			abort();
		for (size_t i = 0; i < na; i++) {
			if (strcmp(a[i].virtual_storage, b[i].virtual_storage) || a[i].nr_paths != b[i].nr_paths)
				abort();
			for (size_t j = 0; j < a[i].nr_paths; j++)
				if (strcmp(a[i].relative_paths[j], b[i].relative_paths[j]))
					abort();
		}
		pg_notify_entries_free(b, nb);
		pg_notify_entries_free(a, na);
	}
	strbuf_release(&err);
	strbuf_release(&out);
	return 0;
}
