/* libFuzzer target for gitaly/read/diff_parse.c: any bytes as `git diff --raw --patch` output, under limits the input picks. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "read/diff_parse.h"
#include "base/strbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
	size_t hexsz;
	int files, stop_after;
	const struct diff_limits *lim;
	struct strbuf log;       /* every file reported, to compare the two runs */
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
	strbuf_addf(&s->log, "%d%d%d%d %s %s %o %o %zu:", f->binary, f->overflow, f->collapsed, f->too_large,
		    f->from_id, f->to_id, (unsigned)f->old_mode, (unsigned)f->new_mode, f->from_path.len);
	strbuf_add(&s->log, f->from_path.buf, f->from_path.len);
	strbuf_addf(&s->log, "%zu:", f->to_path.len);
	strbuf_add(&s->log, f->to_path.buf, f->to_path.len);
	strbuf_addf(&s->log, "%zu:", f->patch.len);
	strbuf_add(&s->log, f->patch.buf, f->patch.len);
	return ++s->files == s->stop_after ? -1 : 0;
}

/* One line to the parser, whole or (piece > 0) as pieces of `piece` bytes and then its end. */
static int feed(struct diff_parser *p, const char *s, size_t len, size_t piece)
{
	while (piece && len > piece) {
		int rc = diff_parser_fragment(p, s, piece);
		if (rc)
			return rc;
		s += piece;
		len -= piece;
	}
	return diff_parser_line(p, s, len);
}

static int run(const uint8_t *data, size_t size, const struct diff_limits *lim, struct seen *s, size_t piece,
	       struct strbuf *err)
{
	struct diff_parser p;
	size_t start = 0;
	int rc = 0;

	diff_parser_init(&p, s->hexsz, lim, on_file, s);
	for (size_t i = 0; i < size && rc == 0; i++) {
		if (data[i] == '\n') {
			rc = feed(&p, (const char *)data + start, i - start, piece);
			start = i + 1;
		}
	}
	if (rc == 0 && start < size)
		rc = feed(&p, (const char *)data + start, size - start, piece);
	if (rc == 0)
		rc = diff_parser_end(&p);
	if (rc < 0 && !p.err.len)
		__builtin_trap();
	strbuf_addf(err, "%d ", rc);
	strbuf_add(err, p.err.buf, p.err.len);
	diff_parser_release(&p);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct diff_ext_limit ext[] = { { ".txt", 40 }, { "Makefile", 0 } };
	struct diff_limits lim = { 0 };
	struct seen whole = { 0 }, pieces = { 0 };
	struct strbuf err1 = STRBUF_INIT, err2 = STRBUF_INIT;
	size_t piece;

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
	/* lines longer than this come a second time in pieces of this size (as a long line does from git) */
	piece = 1 + ((data[2] >> 3) & 15);
	whole.hexsz = pieces.hexsz = data[0] & 16 ? 64 : 40;
	whole.stop_after = pieces.stop_after = data[0] >> 5;
	whole.lim = pieces.lim = &lim;
	strbuf_init(&whole.log, 0);
	strbuf_init(&pieces.log, 0);
	data += 4;
	size -= 4;
	run(data, size, &lim, &whole, 0, &err1);
	run(data, size, &lim, &pieces, piece, &err2);
	/* a line given in pieces is parsed as the same line given whole */
	if (whole.log.len != pieces.log.len || memcmp(whole.log.buf, pieces.log.buf, whole.log.len) ||
	    err1.len != err2.len || memcmp(err1.buf, err2.buf, err1.len))
		__builtin_trap();
	strbuf_release(&whole.log);
	strbuf_release(&pieces.log);
	strbuf_release(&err1);
	strbuf_release(&err2);
	return 0;
}
