/* libFuzzer target for gitaly/read/diff_parse.c: any bytes as `git diff --raw --patch` output, under limits the input picks. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "read/diff_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
	size_t hexsz;
	int files, stop_after;
	const struct diff_limits *lim;
};

static int on_file(void *arg, const struct diff_file *f)
{
	struct seen *s = arg;
	/* what the parser promises of every file it reports */
	if ((f->collapsed || f->too_large) && f->patch.len)
		__builtin_trap();
	if (f->overflow && !s->lim->collect_all_paths && (f->patch.len || f->from_path.len || f->from_id[0]))
		__builtin_trap();
	if (!f->overflow && strlen(f->from_id) != s->hexsz)
		__builtin_trap();
	if (f->patch.len > DIFF_PATCH_MAX)
		__builtin_trap();
	return ++s->files == s->stop_after ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct diff_ext_limit ext[] = { { ".txt", 40 }, { "Makefile", 0 } };
	struct diff_limits lim = { 0 };
	struct diff_parser p;
	struct seen s = { 0 };
	size_t start;
	int rc = 0;

	if (size < 4)
		return 0;
	/* four bytes of settings, then git's output */
	lim.enforce = data[0] & 1;
	lim.collapse = data[0] & 2;
	lim.collect_all_paths = data[0] & 4;
	lim.max_files = data[1] & 15;
	lim.max_lines = data[1] >> 2;
	lim.max_bytes = data[2] * 4;
	lim.safe_max_files = data[2] & 7;
	lim.safe_max_lines = data[3] & 31;
	lim.safe_max_bytes = data[3] * 2;
	lim.max_patch_bytes = data[1] * 3;
	if (data[0] & 8) {
		lim.ext = ext;
		lim.n_ext = 2;
	}
	s.hexsz = data[0] & 16 ? 64 : 40;
	s.stop_after = data[0] >> 5;
	s.lim = &lim;
	diff_parser_init(&p, s.hexsz, &lim, on_file, &s);
	data += 4;
	size -= 4;
	start = 0;
	for (size_t i = 0; i < size && rc == 0; i++) {
		if (data[i] == '\n') {
			rc = diff_parser_line(&p, (const char *)data + start, i - start);
			start = i + 1;
		}
	}
	if (rc == 0 && start < size)
		rc = diff_parser_line(&p, (const char *)data + start, size - start);
	if (rc == 0)
		rc = diff_parser_end(&p);
	if (rc < 0 && !p.err.len)
		__builtin_trap();
	diff_parser_release(&p);
	return 0;
}
