/* Parser for `git diff --raw --patch` output with CommitDiff's limits (docs/technical/diff.md). */
#include "read/diff_parse.h"
#include "base/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Upper bounds of the request's limits (docs/technical/diff.md, "Limits"). */
#define MAX_FILES_BOUND 5000
#define MAX_LINES_BOUND 250000
#define MAX_BYTES_BOUND (5000 * 5120)
#define SAFE_MAX_FILES_BOUND 500
#define SAFE_MAX_LINES_BOUND 25000
#define SAFE_MAX_BYTES_BOUND (500 * 5120)
#define MAX_PATCH_BYTES_BOUND 512000

static int bound(int v, int max)
{
	return v < max ? v : max;
}

static int starts(const char *s, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);
	return len >= n && !memcmp(s, prefix, n);
}

static int fail(struct diff_parser *p, const char *fmt, const char *arg, size_t arg_len)
{
	strbuf_reset(&p->err);
	strbuf_addstr(&p->err, fmt);
	if (arg) {
		strbuf_addstr(&p->err, ": \"");
		strbuf_add(&p->err, arg, MIN(arg_len, (size_t)200));
		strbuf_addch(&p->err, '"');
	}
	p->failed = 1;
	return -1;
}

void diff_parser_init(struct diff_parser *p, size_t hexsz, const struct diff_limits *lim, diff_file_fn fn,
		      void *arg)
{
	memset(p, 0, sizeof(*p));
	p->hexsz = hexsz == 64 ? 64 : 40;
	if (lim)
		p->lim = *lim;
	p->lim.max_files = bound(p->lim.max_files, MAX_FILES_BOUND);
	p->lim.max_lines = bound(p->lim.max_lines, MAX_LINES_BOUND);
	p->lim.max_bytes = bound(p->lim.max_bytes, MAX_BYTES_BOUND);
	p->lim.safe_max_files = bound(p->lim.safe_max_files, SAFE_MAX_FILES_BOUND);
	p->lim.safe_max_lines = bound(p->lim.safe_max_lines, SAFE_MAX_LINES_BOUND);
	p->lim.safe_max_bytes = bound(p->lim.safe_max_bytes, SAFE_MAX_BYTES_BOUND);
	p->lim.max_patch_bytes = bound(p->lim.max_patch_bytes, MAX_PATCH_BYTES_BOUND);
	p->fn = fn;
	p->arg = arg;
	p->in_raw = 1;
	strbuf_init(&p->cur.from_path, 0);
	strbuf_init(&p->cur.to_path, 0);
	strbuf_init(&p->cur.patch, 0);
	strbuf_init(&p->err, 0);
	strbuf_init(&p->held, 0);
}

void diff_parser_release(struct diff_parser *p)
{
	for (size_t i = p->raw_head; i < p->raw_nr; i++)
		strbuf_release(&p->raw[i]);
	free(p->raw);
	strbuf_release(&p->cur.from_path);
	strbuf_release(&p->cur.to_path);
	strbuf_release(&p->cur.patch);
	strbuf_release(&p->err);
	strbuf_release(&p->held);
}

/* --- unescaping --- */

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

void diff_unescape(struct strbuf *out, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\\') {
			if (i + 3 < len && is_digit(s[i + 1]) && is_digit(s[i + 2]) && is_digit(s[i + 3])) {
				/* an octal byte; 8, 9 or a value above 255 fall through to the rules below */
				int ok = 1, v = 0;
				for (int k = 1; k <= 3; k++) {
					if (s[i + k] > '7')
						ok = 0;
					v = v * 8 + (s[i + k] - '0');
				}
				if (ok && v <= 255) {
					strbuf_addch(out, v);
					i += 3;
					continue;
				}
			}
			if (i + 1 < len) {
				char c = s[i + 1];
				switch (c) {
				case '"': case '\\': case '/': case '\'':
					break;
				case 'b': c = '\b'; break;
				case 'f': c = '\f'; break;
				case 'n': c = '\n'; break;
				case 'r': c = '\r'; break;
				case 't': c = '\t'; break;
				default:
					strbuf_addch(out, '\\');
					break;
				}
				strbuf_addch(out, c);
				i++;
				continue;
			}
		}
		strbuf_addch(out, s[i]);
	}
}

/* --- raw lines: ":<old mode> <new mode> <old id> <new id> <status>\t<path>[\t<path>]" --- */

static int is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Octal digits as Go's ParseInt(s, 8, 0): -1 on a non-octal digit or an overflow of int64. */
static int parse_mode(const char *s, size_t len, int32_t *out)
{
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '7' || v > (UINT64_C(1) << 60) - 1)
			return -1;
		v = v * 8 + (uint64_t)(s[i] - '0');
	}
	if (v > INT64_MAX)
		return -1;
	*out = (int32_t)(uint32_t)v;   /* Go's int32() conversion truncates */
	return 0;
}

static size_t span_digits(const char *s, size_t i, size_t len)
{
	while (i < len && is_digit(s[i]))
		i++;
	return i;
}

static void add_path(struct strbuf *out, const char *s, size_t len)
{
	/* surrounding quotes go first, then the escapes */
	if (len >= 2 && s[0] == '"' && s[len - 1] == '"') {
		s++;
		len -= 2;
	}
	diff_unescape(out, s, len);
}

static int parse_raw(struct diff_parser *p, const char *s, size_t len, struct diff_file *d)
{
	size_t i = 1, m1, m2, id1, id2, st, rest, tab;
	const char *nl = memchr(s, '\n', len);
	if (nl)   /* a line ends there, as the multi-line pattern upstream matches does */
		len = (size_t)(nl - s);
	if (!len || s[0] != ':')
		return fail(p, "raw line regexp mismatch", NULL, 0);
	m1 = span_digits(s, i, len);
	if (m1 == i || m1 >= len || s[m1] != ' ')
		return fail(p, "raw line regexp mismatch", NULL, 0);
	i = m1 + 1;
	m2 = span_digits(s, i, len);
	if (m2 == i || m2 >= len || s[m2] != ' ')
		return fail(p, "raw line regexp mismatch", NULL, 0);
	id1 = m2 + 1;
	id2 = id1 + p->hexsz + 1;
	st = id2 + p->hexsz + 1;
	if (st >= len || s[id2 - 1] != ' ' || s[st - 1] != ' ')
		return fail(p, "raw line regexp mismatch", NULL, 0);
	for (size_t k = 0; k < p->hexsz; k++)
		if (!is_hex(s[id1 + k]) || !is_hex(s[id2 + k]))
			return fail(p, "raw line regexp mismatch", NULL, 0);
	if (!strchr("ADTUXMRC", s[st]))
		return fail(p, "raw line regexp mismatch", NULL, 0);
	rest = span_digits(s, st + 1, len);
	if (rest >= len || s[rest] != '\t')
		return fail(p, "raw line regexp mismatch", NULL, 0);
	rest++;
	if (parse_mode(s + 1, m1 - 1, &d->old_mode) < 0)
		return fail(p, "raw old mode: invalid syntax", s + 1, m1 - 1);
	if (parse_mode(s + m1 + 1, m2 - m1 - 1, &d->new_mode) < 0)
		return fail(p, "raw new mode: invalid syntax", s + m1 + 1, m2 - m1 - 1);
	memcpy(d->from_id, s + id1, p->hexsz);
	d->from_id[p->hexsz] = '\0';
	memcpy(d->to_id, s + id2, p->hexsz);
	d->to_id[p->hexsz] = '\0';
	d->status = s[st];
	/* the first path ends at the first tab; the second is all that follows */
	tab = rest;
	while (tab < len && s[tab] != '\t')
		tab++;
	add_path(&d->from_path, s + rest, tab - rest);
	if (d->status == 'C' || d->status == 'R') {
		if (tab < len)
			add_path(&d->to_path, s + tab + 1, len - tab - 1);
	} else {
		strbuf_add(&d->to_path, d->from_path.buf, d->from_path.len);
	}
	return 0;
}

/* --- the current file --- */

static void cur_reset(struct diff_file *d)
{
	struct strbuf from = d->from_path, to = d->to_path, patch = d->patch;
	memset(d, 0, sizeof(*d));
	strbuf_reset(&from);
	strbuf_reset(&to);
	strbuf_reset(&patch);
	d->from_path = from;
	d->to_path = to;
	d->patch = patch;
}

static void raw_push_front(struct diff_parser *p, struct strbuf *line)
{
	if (p->raw_head) {
		p->raw[--p->raw_head] = *line;
	} else {
		ALLOC_GROW(p->raw, p->raw_nr + 1, p->raw_alloc);
		memmove(p->raw + 1, p->raw, p->raw_nr * sizeof(*p->raw));
		p->raw[0] = *line;
		p->raw_nr++;
	}
	p->raw_bytes += line->len;
}

/*
 * Take the next raw line into `cur`. A type change becomes a deletion here
 * and an addition (a raw line made up for it) next, the way GitLab shows it.
 */
static int next_file(struct diff_parser *p)
{
	struct strbuf line = p->raw[p->raw_head];
	int rc;
	p->raw_head++;
	p->raw_bytes -= line.len;
	if (p->raw_head == p->raw_nr)
		p->raw_head = p->raw_nr = 0;
	cur_reset(&p->cur);
	rc = parse_raw(p, line.buf, line.len, &p->cur);
	strbuf_release(&line);
	if (rc < 0)
		return -1;
	if (p->cur.status == 'T') {
		struct strbuf add = STRBUF_INIT;
		strbuf_addf(&add, ":%o %o ", 0, (unsigned)p->cur.new_mode);
		for (size_t i = 0; i < p->hexsz; i++)
			strbuf_addch(&add, '0');
		strbuf_addf(&add, " %s A\t", p->cur.to_id);
		strbuf_add(&add, p->cur.from_path.buf, p->cur.from_path.len);
		raw_push_front(p, &add);
		p->cur.new_mode = 0;
		memset(p->cur.to_id, '0', p->hexsz);
		p->cur.to_id[p->hexsz] = '\0';
	}
	p->files++;
	return 0;
}

static int emit(struct diff_parser *p)
{
	if (p->fn(p->arg, &p->cur) < 0) {
		p->finished = 1;
		return 1;
	}
	return p->finished ? 1 : 0;
}

static void prune(struct diff_parser *p)
{
	p->lines -= p->cur.line_count;
	p->bytes -= (int64_t)p->cur.patch.len;
	strbuf_reset(&p->cur.patch);
}

static int over_safe_limits(const struct diff_parser *p)
{
	return p->files > p->lim.safe_max_files || p->lines > p->lim.safe_max_lines ||
	       p->bytes > p->lim.safe_max_bytes;
}

/* Go's filepath.Ext(filepath.Base(path)), or the base name itself when it has no extension. */
static int max_patch_bytes_for(const struct diff_parser *p, const struct strbuf *to)
{
	const char *s = to->buf, *base, *dot;
	size_t len = to->len, blen;
	if (!p->lim.n_ext)
		return p->lim.max_patch_bytes;
	while (len > 1 && s[len - 1] == '/')
		len--;
	base = s;
	for (size_t i = 0; i < len; i++)
		if (s[i] == '/' && i + 1 < len)
			base = s + i + 1;
	blen = len - (size_t)(base - s);
	if (!blen) {
		base = ".";
		blen = 1;
	}
	dot = NULL;
	for (size_t i = blen; i > 0; i--) {
		if (base[i - 1] == '/')
			break;
		if (base[i - 1] == '.') {
			dot = base + i - 1;
			break;
		}
	}
	if (dot) {
		blen -= (size_t)(dot - base);
		base = dot;
	}
	for (size_t i = 0; i < p->lim.n_ext; i++) {
		const char *e = p->lim.ext[i].ext ? p->lim.ext[i].ext : "";
		if (strlen(e) == blen && !memcmp(e, base, blen))
			return p->lim.ext[i].max;
	}
	return p->lim.max_patch_bytes;
}

/* The current file's patch is complete: apply the limits and report it. */
static int finish_file(struct diff_parser *p)
{
	struct diff_file *d = &p->cur;
	p->collecting = 0;
	if (p->lim.collapse && over_safe_limits(p) && d->line_count > 0) {
		prune(p);
		d->collapsed = 1;
	}
	if (p->lim.enforce) {
		if ((long long)d->patch.len >= (long long)max_patch_bytes_for(p, &d->to_path)) {
			prune(p);
			d->too_large = 1;
		}
		if (p->lines - p->lim.max_lines >= 0 || p->bytes - p->lim.max_bytes >= 0 ||
		    p->files - p->lim.max_files > 0) {
			if (p->lim.collect_all_paths) {
				strbuf_reset(&d->patch);
				p->stop_patches = 1;
			} else {
				p->finished = 1;
				cur_reset(d);
			}
			d->overflow = 1;
		}
	}
	return emit(p);
}

/*
 * "diff --git a/<from> b/<to>" with optional quotes: the from path is the
 * shortest run after "a/" that a ` b/` (quotes allowed around the space)
 * follows. Returns 0 with `out` set (unescaped), or -1.
 */
static int parse_header(const char *s, size_t len, struct strbuf *out)
{
	size_t i = 11, start;
	if (!starts(s, len, "diff --git "))
		return -1;
	if (i < len && s[i] == '"')
		i++;
	if (i + 2 > len || s[i] != 'a' || s[i + 1] != '/')
		return -1;
	start = i + 2;
	for (i = start; i < len; i++) {
		size_t j = i;
		if (s[j] == '"')
			j++;
		if (j >= len || s[j] != ' ')
			continue;
		j++;
		if (j < len && s[j] == '"' && j + 2 < len && s[j + 1] == 'b' && s[j + 2] == '/')
			break;
		if (j + 1 < len && s[j] == 'b' && s[j + 1] == '/')
			break;
	}
	if (i >= len)
		return -1;
	strbuf_reset(out);
	diff_unescape(out, s + start, i - start);
	return 0;
}

static int raw_empty(const struct diff_parser *p)
{
	return p->raw_head == p->raw_nr;
}

/*
 * A file header while no file is collecting: files of the raw section whose
 * path differs had no patch (reported as they are, without limits), the one
 * that matches takes the lines that follow.
 */
static int on_header(struct diff_parser *p, const char *line, size_t len)
{
	struct strbuf from = STRBUF_INIT;
	int rc = 0;
	if (raw_empty(p)) {
		p->finished = 1;
		return 1;
	}
	if (next_file(p) < 0)
		return -1;
	if (parse_header(line, len, &from) < 0) {
		strbuf_release(&from);
		return fail(p, "diff header regexp mismatch", NULL, 0);
	}
	for (;;) {
		if (from.len == p->cur.from_path.len && !memcmp(from.buf, p->cur.from_path.buf, from.len)) {
			p->collecting = 1;
			break;
		}
		if ((rc = emit(p)) != 0)
			break;
		if (raw_empty(p)) {
			p->finished = 1;
			rc = 1;
			break;
		}
		if ((rc = next_file(p)) < 0)
			break;
	}
	strbuf_release(&from);
	return rc;
}

/* What a patch line is: not kept, kept (a hunk header), or kept and counted towards the limits. */
enum line_kind { LINE_DROP = 1, LINE_KEEP, LINE_COUNT, LINE_HELD };

static enum line_kind classify(struct diff_parser *p, const char *line, size_t len)
{
	if (starts(line, len, "@@"))
		return LINE_KEEP;
	if ((starts(line, len, "---") || starts(line, len, "+++")) && !p->cur.patch.len)
		return LINE_DROP;
	if (len == 1 && line[0] == '~')
		return LINE_COUNT;
	if (starts(line, len, "Binary")) {
		p->cur.binary = 1;
		return LINE_COUNT;
	}
	if (len && (line[0] == '-' || line[0] == '+' || line[0] == ' ' || line[0] == '\\'))
		return LINE_COUNT;
	/* extended header lines (index, modes, similarity) are not part of the patch */
	return LINE_DROP;
}

/* Bytes of a patch line (all of it, or a piece); its end is line_end(). */
static int line_bytes(struct diff_parser *p, enum line_kind kind, const char *s, size_t len)
{
	struct diff_file *d = &p->cur;
	if (kind == LINE_DROP)
		return 0;
	if (!p->stop_patches) {
		if (d->patch.len + len + 1 > DIFF_PATCH_MAX)
			return fail(p, "patch too large", d->from_path.buf, d->from_path.len);
		strbuf_add(&d->patch, s, len);
	}
	if (kind == LINE_COUNT)
		p->bytes += (int64_t)len;
	return 0;
}

static void line_end(struct diff_parser *p, enum line_kind kind)
{
	if (kind == LINE_DROP)
		return;
	if (!p->stop_patches)
		strbuf_addch(&p->cur.patch, '\n');
	if (kind == LINE_COUNT) {
		p->bytes++;
		p->cur.line_count++;
		p->lines++;
	}
}

static int one_line(struct diff_parser *p, const char *line, size_t len)
{
	enum line_kind kind;
	if (p->in_raw) {
		struct strbuf raw;
		if (!len || line[0] != ':') {
			/* the blank line between the raw section and the patches */
			p->in_raw = 0;
			if (raw_empty(p)) {
				p->finished = 1;
				return 1;
			}
			return 0;
		}
		if (p->raw_bytes + len > DIFF_RAW_MAX)
			return fail(p, "too many changed files", NULL, 0);
		strbuf_init(&raw, len + 1);
		strbuf_add(&raw, line, len);
		ALLOC_GROW(p->raw, p->raw_nr + 1, p->raw_alloc);
		p->raw[p->raw_nr++] = raw;
		p->raw_bytes += len;
		return 0;
	}
	if (!p->collecting)
		return on_header(p, line, len);
	if (starts(line, len, "diff --git")) {
		int rc = finish_file(p);
		if (rc != 0)
			return rc;
		return on_header(p, line, len);
	}
	kind = classify(p, line, len);
	if (line_bytes(p, kind, line, len) < 0)
		return -1;
	line_end(p, kind);
	return 0;
}

int diff_parser_line(struct diff_parser *p, const char *line, size_t len)
{
	enum line_kind kind = p->partial;
	int rc;
	if (p->failed)
		return -1;
	if (p->finished)
		return 1;
	if (!kind)
		return one_line(p, line, len);
	p->partial = 0;
	if (kind != LINE_HELD) {
		if (line_bytes(p, kind, line, len) < 0)
			return -1;
		line_end(p, kind);
		return 0;
	}
	if (p->held.len + len > DIFF_LINE_MAX)
		return fail(p, "line too long", NULL, 0);
	strbuf_add(&p->held, line, len);
	rc = one_line(p, p->held.buf, p->held.len);
	strbuf_reset(&p->held);
	return rc;
}

/*
 * A piece of a long line. A patch line goes into the patch as it comes, once
 * its first 10 bytes tell its kind; any other line is held whole, up to
 * DIFF_LINE_MAX, and parsed when it ends.
 */
int diff_parser_fragment(struct diff_parser *p, const char *s, size_t len)
{
	int rc;
	if (p->failed)
		return -1;
	if (p->finished)
		return 1;
	if (p->partial && p->partial != LINE_HELD)
		return line_bytes(p, p->partial, s, len);
	p->partial = LINE_HELD;
	if (p->held.len + len > DIFF_LINE_MAX)
		return fail(p, "line too long", NULL, 0);
	strbuf_add(&p->held, s, len);
	if (p->in_raw || !p->collecting || p->held.len < 10 || starts(p->held.buf, p->held.len, "diff --git"))
		return 0;
	p->partial = classify(p, p->held.buf, p->held.len);
	rc = line_bytes(p, p->partial, p->held.buf, p->held.len);
	strbuf_reset(&p->held);
	return rc;
}

int diff_parser_end(struct diff_parser *p)
{
	int rc;
	if (p->failed)
		return -1;
	if (p->finished)
		return 1;
	if (p->partial && (rc = diff_parser_line(p, "", 0)) != 0)
		return rc;   /* a last line without its newline */
	if (p->collecting && (rc = finish_file(p)) != 0)
		return rc;
	/* files left had no patch at all */
	while (!raw_empty(p)) {
		if (next_file(p) < 0)
			return -1;
		/* an empty path equals the missing header, so its (empty) patch goes through the limits */
		rc = p->cur.from_path.len ? emit(p) : finish_file(p);
		if (rc != 0)
			return rc;
	}
	return 0;
}
