/*
 * A push parser for `git diff --raw --patch` output, with upstream's limits
 * (docs/technical/diff.md, "The diff parser"). It takes git's stdout one line
 * at a time and reports one `struct diff_file` per file of the raw section,
 * as soon as that file's patch is complete, so a caller can stream.
 *
 * Memory: the raw section (one short line per changed file) is held until
 * each file's patch has gone by, as upstream does; one file's patch is
 * held until the file is complete (its limits decide whether the patch is
 * sent at all). Both have hard caps (DIFF_RAW_MAX, DIFF_PATCH_MAX): beyond
 * them the parser fails instead of growing.
 *
 *	struct diff_parser p;
 *	diff_parser_init(&p, 40, &limits, on_file, ctx);
 *	for each line (without its '\n'): rc = diff_parser_line(&p, line, len);
 *	    (a long line may come first in pieces: diff_parser_fragment())
 *	    rc < 0: p.err says why;  rc > 0: done, the rest of git's output is not needed
 *	at EOF: rc = diff_parser_end(&p);
 *	diff_parser_release(&p);
 *
 * `on_file` returning < 0 stops the parser (diff_parser_line() then returns
 * 1 without an error). The file it gets is valid only during the callback.
 */
#ifndef GITALY_READ_DIFF_PARSE_H
#define GITALY_READ_DIFF_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include "base/strbuf.h"

#define DIFF_RAW_MAX (64u * 1024 * 1024)
#define DIFF_PATCH_MAX (128u * 1024 * 1024)
#define DIFF_LINE_MAX (16u * 1024 * 1024)   /* a line that is not patch content (raw, header) */
#define DIFF_HEXSZ_MAX 64

/* Limits as CommitDiffRequest carries them; 0 where the request set nothing. */
struct diff_ext_limit {
	const char *ext;      /* ".rb", or a whole file name without extension ("Makefile") */
	int32_t max;
};

struct diff_limits {
	int enforce;              /* max_* stop the parse (overflow marker) */
	int collapse;             /* safe_max_* empty the patches that follow */
	int collect_all_paths;    /* past max_*: keep reporting files, without patches */
	int max_files, max_lines, max_bytes;
	int safe_max_files, safe_max_lines, safe_max_bytes;
	int max_patch_bytes;
	const struct diff_ext_limit *ext;
	size_t n_ext;
};

struct diff_file {
	int binary, overflow, collapsed, too_large;
	char status;                        /* A, D, M, R, C, T, U, X */
	int line_count;
	char from_id[DIFF_HEXSZ_MAX + 1], to_id[DIFF_HEXSZ_MAX + 1];
	int32_t old_mode, new_mode;
	struct strbuf from_path, to_path;   /* unescaped */
	struct strbuf patch;
};

typedef int (*diff_file_fn)(void *arg, const struct diff_file *f);

struct diff_parser {
	size_t hexsz;                 /* 40 or 64 */
	struct diff_limits lim;       /* upper bounds applied */
	diff_file_fn fn;
	void *arg;
	/* raw lines not yet matched with their patch: a FIFO */
	struct strbuf *raw;
	size_t raw_head, raw_nr, raw_alloc, raw_bytes;
	int in_raw;                   /* still reading the raw section */
	int collecting;               /* `cur` is taking patch lines */
	int finished, failed;
	int stop_patches;             /* collect_all_paths past the limits */
	int64_t files, lines, bytes;       /* Go ints upstream: never overflow here */
	struct diff_file cur;
	int partial;                  /* a line given in pieces is under way (its kind) */
	struct strbuf held;           /* such a line, when it is not patch content */
	struct strbuf err;
};

void diff_parser_init(struct diff_parser *p, size_t hexsz, const struct diff_limits *lim, diff_file_fn fn,
		      void *arg);
/* One line of git's output, its '\n' excluded. 0, 1 (done), or -1 (p->err). */
int diff_parser_line(struct diff_parser *p, const char *line, size_t len);
/*
 * A piece of a line whose end has not come yet: the rest follows through more
 * pieces and then diff_parser_line() (or diff_parser_end()). Same returns.
 * Patch lines of any length are taken this way without being held twice.
 */
int diff_parser_fragment(struct diff_parser *p, const char *s, size_t len);
/* git's output ended. 0, 1 (stopped), or -1 (p->err). */
int diff_parser_end(struct diff_parser *p);
void diff_parser_release(struct diff_parser *p);

/* git's C-style path unescaping as upstream does it (octal triplets, \n, \t, ...). */
void diff_unescape(struct strbuf *out, const char *s, size_t len);

#endif
