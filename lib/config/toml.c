/* TOML 1.0 parser: bytes of a config file to a struct toml_table tree. */
#include "toml_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/strbuf.h"
#include "base/util.h"
#include "base/banned.h"

/* One part of a (possibly dotted) key, with where it was written. */
struct key_part {
	char *s;
	size_t len;
	size_t off;
	unsigned line, col;
};

struct key {
	struct key_part *part;
	size_t nr, alloc;
};

struct parser {
	const char *buf;
	size_t len;
	size_t pos;
	const char *filename;
	struct strbuf *err;

	struct toml_table *root;
	struct toml_table *cur;     /* where key/value lines go */
	struct strbuf cur_path;     /* its path, for messages */
	struct strbuf scratch;      /* string being unescaped */

	/*
	 * Line/column of byte `lc_off`. Positions are asked for in increasing
	 * order, so walking forward from the last answer keeps this linear.
	 */
	size_t lc_off;
	unsigned lc_line, lc_col;
};

/* --- positions and errors ----------------------------------------------- */

static void where(struct parser *p, size_t off, unsigned *line, unsigned *col)
{
	if (off > p->len)
		off = p->len;
	if (off < p->lc_off) {
		p->lc_off = 0;
		p->lc_line = 1;
		p->lc_col = 1;
	}
	for (size_t i = p->lc_off; i < off; i++) {
		unsigned char c = (unsigned char)p->buf[i];
		if (c == '\n') {
			if (p->lc_line < UINT_MAX)
				p->lc_line++;
			p->lc_col = 1;
		} else if ((c & 0xc0) != 0x80 && p->lc_col < UINT_MAX) {
			p->lc_col++;
		}
	}
	p->lc_off = off;
	*line = p->lc_line;
	*col = p->lc_col;
}

static int fail(struct parser *p, size_t off, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct parser *p, size_t off, const char *fmt, ...)
{
	unsigned line, col;
	va_list ap;

	if (!p->err)
		return -EINVAL;
	where(p, off, &line, &col);
	strbuf_addf(p->err, "%s:%u:%u: ", p->filename, line, col);
	va_start(ap, fmt);
	strbuf_vaddf(p->err, fmt, ap);
	va_end(ap);
	p->err = NULL; /* the first error is the one worth reading */
	return -EINVAL;
}

/* What sits at `off`, for "expected X, found Y" messages. */
static const char *describe(struct parser *p, size_t off, char *buf, size_t size)
{
	unsigned char c;
	if (off >= p->len)
		return "end of file";
	c = (unsigned char)p->buf[off];
	if (c == '\n' || (c == '\r' && off + 1 < p->len && p->buf[off + 1] == '\n'))
		return "end of line";
	if (c > 0x20 && c < 0x7f)
		snprintf(buf, size, "'%c'", c);
	else if (c < 0x80)
		snprintf(buf, size, "U+%04X", c);
	else
		snprintf(buf, size, "non-ASCII character");
	return buf;
}

/* Quote the text of a bad token for a message, cut short if it is long. */
static void quote_token(struct strbuf *sb, const char *s, size_t len)
{
	if (len > 40) {
		strbuf_add(sb, s, 40);
		strbuf_addstr(sb, "...");
	} else {
		strbuf_add(sb, s, len);
	}
}

/*
 * Where a value sits, for messages: a chain of stack frames formatted only
 * when an error needs it, so that a long key path is not copied for every
 * value below it. A frame is the root text (`base`), some parts of a key,
 * or an array index.
 */
struct path {
	const struct path *up;
	const char *base;
	const struct key *k;
	size_t nparts;
	size_t index;
};

static void path_format(const struct path *path, struct strbuf *sb)
{
	if (path->up)
		path_format(path->up, sb);
	if (path->base)
		strbuf_addstr(sb, path->base);
	else if (path->k)
		for (size_t i = 0; i < path->nparts; i++)
			toml__path_add_key(sb, path->k->part[i].s, path->k->part[i].len);
	else
		strbuf_addf(sb, "[%zu]", path->index);
}

/* The path of table `up` plus the first n parts of key `k`. */
static const char *key_path(struct strbuf *sb, const struct path *up,
			    const struct key *k, size_t n)
{
	struct path here = { .up = up, .k = k, .nparts = n };
	strbuf_reset(sb);
	path_format(&here, sb);
	return sb->buf;
}

static int check_utf8(struct parser *p)
{
	const unsigned char *s = (const unsigned char *)p->buf;
	for (size_t i = 0; i < p->len;) {
		size_t n;
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if (!(n = toml__utf8_len(s + i, p->len - i)))
			return fail(p, i, "invalid UTF-8");
		i += n;
	}
	return 0;
}

/* --- whitespace, comments, newlines ------------------------------------- */

static bool at_eof(const struct parser *p)
{
	return p->pos >= p->len;
}

static int peek(const struct parser *p, size_t ahead)
{
	return p->pos + ahead < p->len ? (unsigned char)p->buf[p->pos + ahead] : -1;
}

static void skip_ws(struct parser *p)
{
	while (!at_eof(p) && (p->buf[p->pos] == ' ' || p->buf[p->pos] == '\t'))
		p->pos++;
}

/* LF or CRLF at pos? Returns its length, or 0. */
static size_t newline_len(const struct parser *p)
{
	if (peek(p, 0) == '\n')
		return 1;
	if (peek(p, 0) == '\r' && peek(p, 1) == '\n')
		return 2;
	return 0;
}

static bool is_control(int c)
{
	return (c >= 0 && c < 0x20) || c == 0x7f;
}

static int control_error(struct parser *p, size_t off, const char *where_)
{
	unsigned char c = (unsigned char)p->buf[off];
	if (c == '\r')
		return fail(p, off, "carriage return not followed by newline in %s", where_);
	return fail(p, off, "control character U+%04X in %s", c, where_);
}

static int skip_comment(struct parser *p)
{
	if (peek(p, 0) != '#')
		return 0;
	p->pos++;
	while (!at_eof(p) && !newline_len(p)) {
		int c = peek(p, 0);
		if (c != '\t' && is_control(c))
			return control_error(p, p->pos, "comment");
		p->pos++;
	}
	return 0;
}

/* After a value or header: optional blanks and comment, then newline or EOF. */
static int expect_eol(struct parser *p, const char *what)
{
	char tmp[32];
	size_t n;
	int ret;

	skip_ws(p);
	if ((ret = skip_comment(p)))
		return ret;
	if (at_eof(p))
		return 0;
	if ((n = newline_len(p))) {
		p->pos += n;
		return 0;
	}
	return fail(p, p->pos, "expected end of line after %s, found %s", what,
		    describe(p, p->pos, tmp, sizeof(tmp)));
}

/* Blanks, comments and newlines, as allowed between array elements. */
static int skip_ws_nl(struct parser *p)
{
	for (;;) {
		size_t n;
		int ret;
		skip_ws(p);
		if ((ret = skip_comment(p)))
			return ret;
		if (!(n = newline_len(p)))
			return 0;
		p->pos += n;
	}
}

/* --- strings ------------------------------------------------------------ */

/* At the backslash: append the unescaped character to scratch. */
static int parse_escape(struct parser *p)
{
	size_t start = p->pos;
	int c = peek(p, 1);
	size_t ndigits;
	uint32_t cp = 0;

	switch (c) {
	case 'b': strbuf_addch(&p->scratch, '\b'); break;
	case 't': strbuf_addch(&p->scratch, '\t'); break;
	case 'n': strbuf_addch(&p->scratch, '\n'); break;
	case 'f': strbuf_addch(&p->scratch, '\f'); break;
	case 'r': strbuf_addch(&p->scratch, '\r'); break;
	case '"': strbuf_addch(&p->scratch, '"'); break;
	case '\\': strbuf_addch(&p->scratch, '\\'); break;
	case 'u':
	case 'U':
		ndigits = c == 'u' ? 4 : 8;
		for (size_t i = 0; i < ndigits; i++) {
			int d = hex_digit(peek(p, 2 + i));
			if (d < 0)
				return fail(p, start, "invalid unicode escape: \\%c needs %zu hex digits",
					    c, ndigits);
			cp = (cp << 4) | (uint32_t)d;
		}
		if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return fail(p, start, "invalid unicode escape \"\\%c%.*s\": not a Unicode scalar value",
				    c, (int)ndigits, p->buf + start + 2);
		toml__add_utf8(&p->scratch, cp);
		p->pos += 2 + ndigits;
		return 0;
	default:
		if (c > 0x20 && c < 0x7f)
			return fail(p, start, "invalid escape sequence \"\\%c\"", c);
		return fail(p, start, "invalid escape sequence");
	}
	p->pos += 2;
	return 0;
}

/* "..." on one line; pos is at the opening quote. Result in scratch. */
static int parse_basic_string(struct parser *p)
{
	size_t start = p->pos++;
	strbuf_reset(&p->scratch);
	for (;;) {
		int c = peek(p, 0), ret;
		if (c < 0 || c == '\n' || (c == '\r' && peek(p, 1) == '\n'))
			return fail(p, start, "unterminated string");
		if (c == '"') {
			p->pos++;
			return 0;
		}
		if (c == '\\') {
			if ((ret = parse_escape(p)))
				return ret;
			continue;
		}
		if (c != '\t' && is_control(c))
			return control_error(p, p->pos, "string");
		strbuf_addch(&p->scratch, c);
		p->pos++;
	}
}

/* '...' on one line. */
static int parse_literal_string(struct parser *p)
{
	size_t start = p->pos++;
	strbuf_reset(&p->scratch);
	for (;;) {
		int c = peek(p, 0);
		if (c < 0 || c == '\n' || (c == '\r' && peek(p, 1) == '\n'))
			return fail(p, start, "unterminated string");
		if (c == '\'') {
			p->pos++;
			return 0;
		}
		if (c != '\t' && is_control(c))
			return control_error(p, p->pos, "string");
		strbuf_addch(&p->scratch, c);
		p->pos++;
	}
}

/*
 * """...""" or '''...''' (pos at the first of the three quotes). A newline
 * right after the opening quotes is dropped; CRLF is kept as LF. One or two
 * quotes may sit right before the closing three.
 */
static int parse_multiline_string(struct parser *p, char quote)
{
	size_t start = p->pos, n;
	p->pos += 3;
	strbuf_reset(&p->scratch);
	if ((n = newline_len(p)))
		p->pos += n;
	for (;;) {
		int c = peek(p, 0), ret;
		if (c < 0)
			return fail(p, start, "unterminated multi-line string");
		if (c == quote) {
			size_t run = 0;
			while (peek(p, run) == quote && run < 5)
				run++;
			if (run >= 3) {
				for (size_t i = 3; i < run; i++)
					strbuf_addch(&p->scratch, quote);
				p->pos += run;
				return 0;
			}
			strbuf_add(&p->scratch, p->buf + p->pos, run);
			p->pos += run;
			continue;
		}
		if ((n = newline_len(p))) {
			strbuf_addch(&p->scratch, '\n');
			p->pos += n;
			continue;
		}
		if (c == '\\' && quote == '"') {
			/* A backslash at the end of a line eats the line break and
			 * all blanks up to the next non-blank character. */
			size_t i = 1;
			while (peek(p, i) == ' ' || peek(p, i) == '\t')
				i++;
			if (peek(p, i) == '\n' || (peek(p, i) == '\r' && peek(p, i + 1) == '\n')) {
				p->pos += i;
				for (;;) {
					if ((n = newline_len(p)))
						p->pos += n;
					else if (peek(p, 0) == ' ' || peek(p, 0) == '\t')
						p->pos++;
					else
						break;
				}
				continue;
			}
			if ((ret = parse_escape(p)))
				return ret;
			continue;
		}
		if (c != '\t' && is_control(c))
			return control_error(p, p->pos, "string");
		strbuf_addch(&p->scratch, c);
		p->pos++;
	}
}

/* --- keys --------------------------------------------------------------- */

static bool is_bare_char(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '-';
}

static void key_release(struct key *k)
{
	for (size_t i = 0; i < k->nr; i++)
		free(k->part[i].s);
	free(k->part);
	k->part = NULL;
	k->nr = k->alloc = 0;
}

/* A key: parts separated by dots, blanks allowed around the dots. */
static int parse_key(struct parser *p, struct key *k)
{
	for (;;) {
		struct key_part part;
		char tmp[32];
		int c, ret;

		skip_ws(p);
		c = peek(p, 0);
		part.off = p->pos;
		where(p, p->pos, &part.line, &part.col);
		if (k->nr >= TOML_MAX_DEPTH)
			return fail(p, p->pos, "key has more than %d parts", TOML_MAX_DEPTH);
		if (c == '"' || c == '\'') {
			if (peek(p, 1) == c && peek(p, 2) == c)
				return fail(p, p->pos, "a multi-line string cannot be a key");
			ret = c == '"' ? parse_basic_string(p) : parse_literal_string(p);
			if (ret)
				return ret;
			part.len = p->scratch.len;
			part.s = xmemdup(p->scratch.buf, part.len + 1);
		} else if (is_bare_char(c)) {
			size_t start = p->pos;
			while (is_bare_char(peek(p, 0)))
				p->pos++;
			part.len = p->pos - start;
			part.s = xstrndup(p->buf + start, part.len);
		} else {
			return fail(p, p->pos, "expected a key, found %s",
				    describe(p, p->pos, tmp, sizeof(tmp)));
		}
		ALLOC_GROW(k->part, k->nr + 1, k->alloc);
		k->part[k->nr++] = part;
		skip_ws(p);
		if (peek(p, 0) != '.')
			return 0;
		p->pos++;
	}
}

/* --- scalars: booleans, numbers, date-times ------------------------------ */

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static bool is_token_char(int c)
{
	return is_bare_char(c) || c == '+' || c == '.' || c == ':';
}

/* A run of token characters: true, false, a number or a date-time. */
static int parse_bare_value(struct parser *p, struct toml_value *v)
{
	size_t start = p->pos, n;
	const char *s = p->buf + start;
	struct strbuf msg = STRBUF_INIT;
	int ret;

	while (is_token_char(peek(p, 0)))
		p->pos++;
	/* "1979-05-27 07:32:00": a space may separate date and time. */
	if (p->pos - start == 10 && toml__valid_date(s) && peek(p, 0) == ' ' &&
	    is_digit(peek(p, 1)) && is_digit(peek(p, 2)) && peek(p, 3) == ':') {
		p->pos++;
		while (is_token_char(peek(p, 0)))
			p->pos++;
	}
	n = p->pos - start;
	if (!n) {
		char tmp[32];
		return fail(p, start, "expected a value, found %s",
			    describe(p, start, tmp, sizeof(tmp)));
	}
	if (n == 4 && !memcmp(s, "true", 4)) {
		v->type = TOML_BOOL;
		v->u.b = true;
		return 0;
	}
	if (n == 5 && !memcmp(s, "false", 5)) {
		v->type = TOML_BOOL;
		v->u.b = false;
		return 0;
	}
	quote_token(&msg, s, n);
	if (memchr(s, ':', n) || (n >= 5 && is_digit(s[0]) && is_digit(s[1]) &&
				  is_digit(s[2]) && is_digit(s[3]) && s[4] == '-')) {
		enum toml_datetime_kind kind;
		if (!(ret = toml__parse_datetime(s, n, &kind))) {
			v->type = TOML_DATETIME;
			v->datetime_kind = kind;
			v->u.str.ptr = xstrndup(s, n);
			v->u.str.len = n;
		} else {
			ret = fail(p, start, "invalid date-time \"%s\"", msg.buf);
		}
	} else if (is_digit(s[0]) || s[0] == '+' || s[0] == '-' ||
		   (n == 3 && (!memcmp(s, "inf", 3) || !memcmp(s, "nan", 3)))) {
		ret = toml__parse_number(s, n, v);
		if (ret == -ERANGE)
			ret = fail(p, start, "integer \"%s\" out of range", msg.buf);
		else if (ret)
			ret = fail(p, start, "invalid number \"%s\"", msg.buf);
	} else {
		ret = fail(p, start, "invalid value \"%s\"", msg.buf);
	}
	strbuf_release(&msg);
	return ret;
}

/* --- values ------------------------------------------------------------- */

static int parse_value(struct parser *p, struct toml_value *v, unsigned depth,
		       const struct path *path);

static int check_depth(struct parser *p, unsigned depth)
{
	if (depth > TOML_MAX_DEPTH)
		return fail(p, p->pos, "nesting deeper than %d levels", TOML_MAX_DEPTH);
	return 0;
}

/* [ v, v, ... ] with newlines and comments allowed, trailing comma too. */
static int parse_array(struct parser *p, struct toml_value *v, unsigned depth,
		       const struct path *path)
{
	struct path elem_path = { .up = path };
	int ret;

	if ((ret = check_depth(p, depth)))
		return ret;
	v->type = TOML_ARRAY;
	v->u.arr = toml__array_new(depth, TOML_ARR_STATIC);
	p->pos++;
	for (;;) {
		char tmp[32];
		if ((ret = skip_ws_nl(p)))
			break;
		if (peek(p, 0) == ']') {
			p->pos++;
			break;
		}
		elem_path.index = v->u.arr->nr;
		if ((ret = parse_value(p, toml__array_push(v->u.arr), depth + 1, &elem_path)))
			break;
		if ((ret = skip_ws_nl(p)))
			break;
		if (peek(p, 0) == ',') {
			p->pos++;
			continue;
		}
		if (peek(p, 0) == ']') {
			p->pos++;
			break;
		}
		ret = fail(p, p->pos, "expected ',' or ']' in array, found %s",
			   describe(p, p->pos, tmp, sizeof(tmp)));
		break;
	}
	return ret;
}

static int set_keyval(struct parser *p, struct toml_table *t, const struct path *base,
		      struct key *k);

/* { k = v, ... } on one line, no trailing comma; sealed once closed. */
static int parse_inline_table(struct parser *p, struct toml_value *v, unsigned depth,
			      const struct path *path)
{
	struct toml_table *t;
	int ret = 0;

	if ((ret = check_depth(p, depth)))
		return ret;
	t = toml__table_new(depth, TOML_TAB_HEADER);
	v->type = TOML_TABLE;
	v->u.tab = t;
	p->pos++;
	skip_ws(p);
	if (peek(p, 0) == '}') {
		p->pos++;
		goto out;
	}
	for (;;) {
		struct key k = { 0 };
		char tmp[32];

		ret = set_keyval(p, t, path, &k);
		key_release(&k);
		if (ret)
			break;
		skip_ws(p);
		if (peek(p, 0) == ',') {
			p->pos++;
			skip_ws(p);
			if (peek(p, 0) == '}') {
				ret = fail(p, p->pos, "trailing comma in inline table");
				break;
			}
			continue;
		}
		if (peek(p, 0) == '}') {
			p->pos++;
			break;
		}
		ret = fail(p, p->pos, "expected ',' or '}' in inline table, found %s",
			   describe(p, p->pos, tmp, sizeof(tmp)));
		break;
	}
out:
	t->flags = TOML_TAB_INLINE;
	return ret;
}

static int parse_value(struct parser *p, struct toml_value *v, unsigned depth,
		       const struct path *path)
{
	int c = peek(p, 0), ret;

	where(p, p->pos, &v->line, &v->col);
	if (c == '"' || c == '\'') {
		if (peek(p, 1) == c && peek(p, 2) == c)
			ret = parse_multiline_string(p, (char)c);
		else if (c == '"')
			ret = parse_basic_string(p);
		else
			ret = parse_literal_string(p);
		if (ret)
			return ret;
		v->type = TOML_STRING;
		v->u.str.len = p->scratch.len;
		v->u.str.ptr = xmemdup(p->scratch.buf, p->scratch.len + 1);
		return 0;
	}
	if (c == '[')
		return parse_array(p, v, depth, path);
	if (c == '{')
		return parse_inline_table(p, v, depth, path);
	return parse_bare_value(p, v);
}

/* --- key/value pairs ---------------------------------------------------- */

/*
 * Parse `key = value` into table `t` (whose path is `base`). Dotted keys walk
 * or create tables, but TOML forbids using them to add to a table defined by
 * a [header] or to an inline table.
 */
static int set_keyval(struct parser *p, struct toml_table *t, const struct path *base,
		      struct key *k)
{
	struct strbuf path = STRBUF_INIT;
	struct toml_keyval *kv;
	struct key_part *last;
	char tmp[32];
	int ret;

	if ((ret = parse_key(p, k)))
		goto out;
	for (size_t i = 0; i + 1 < k->nr; i++) {
		struct key_part *part = &k->part[i];
		kv = toml__table_find(t, part->s, part->len);
		if (!kv) {
			if (t->depth + 1 > TOML_MAX_DEPTH) {
				ret = fail(p, part->off, "nesting deeper than %d levels", TOML_MAX_DEPTH);
				goto out;
			}
			/* Copied: the parts still name the path in messages. */
			kv = toml__table_add(t, xmemdup(part->s, part->len + 1), part->len,
					     part->line, part->col);
			kv->val.type = TOML_TABLE;
			kv->val.line = part->line;
			kv->val.col = part->col;
			kv->val.u.tab = toml__table_new(t->depth + 1, TOML_TAB_DOTTED);
		} else if (kv->val.type != TOML_TABLE) {
			ret = fail(p, part->off, "key \"%s\" is not a table",
				   key_path(&path, base, k, i + 1));
			goto out;
		} else if (kv->val.u.tab->flags & TOML_TAB_INLINE) {
			ret = fail(p, part->off, "cannot add to inline table \"%s\"",
				   key_path(&path, base, k, i + 1));
			goto out;
		} else if (kv->val.u.tab->flags & TOML_TAB_HEADER) {
			ret = fail(p, part->off, "table \"%s\" already defined",
				   key_path(&path, base, k, i + 1));
			goto out;
		} else {
			/* A prefix of some [header] was never defined itself,
			 * so dotted keys may claim it (after which a header
			 * may not). */
			kv->val.u.tab->flags = TOML_TAB_DOTTED;
		}
		t = kv->val.u.tab;
	}
	last = &k->part[k->nr - 1];
	if (toml__table_find(t, last->s, last->len)) {
		ret = fail(p, last->off, "duplicate key \"%s\"",
			   key_path(&path, base, k, k->nr));
		goto out;
	}
	if (peek(p, 0) != '=') {
		ret = fail(p, p->pos, "expected '=' after key \"%s\", found %s",
			   key_path(&path, base, k, k->nr), describe(p, p->pos, tmp, sizeof(tmp)));
		goto out;
	}
	p->pos++;
	skip_ws(p);
	if (at_eof(p) || newline_len(p) || peek(p, 0) == '#') {
		ret = fail(p, p->pos, "missing value for key \"%s\"",
			   key_path(&path, base, k, k->nr));
		goto out;
	}
	{
		struct toml_value val = { 0 };
		struct path here = { .up = base, .k = k, .nparts = k->nr };
		ret = parse_value(p, &val, t->depth + 1, &here);
		if (ret) {
			toml__value_release(&val);
			goto out;
		}
		kv = toml__table_add(t, last->s, last->len, last->line, last->col);
		last->s = NULL;
		kv->val = val;
	}
out:
	strbuf_release(&path);
	return ret;
}

/* --- [table] and [[array of tables]] headers ---------------------------- */

static int parse_header(struct parser *p)
{
	struct key k = { 0 };
	struct strbuf *path = &p->cur_path;
	struct toml_table *t = p->root;
	struct toml_keyval *kv;
	struct key_part *last;
	bool aot = peek(p, 1) == '[';
	char tmp[32];
	int ret;

	p->pos += aot ? 2 : 1;
	if ((ret = parse_key(p, &k)))
		goto out;
	if (peek(p, 0) != ']' || (aot && peek(p, 1) != ']')) {
		ret = fail(p, p->pos, "expected '%s' to close table header, found %s",
			   aot ? "]]" : "]", describe(p, p->pos, tmp, sizeof(tmp)));
		goto out;
	}
	p->pos += aot ? 2 : 1;

	strbuf_reset(path);
	for (size_t i = 0; i + 1 < k.nr; i++) {
		struct key_part *part = &k.part[i];
		toml__path_add_key(path, part->s, part->len);
		kv = toml__table_find(t, part->s, part->len);
		if (!kv) {
			if (t->depth + 1 > TOML_MAX_DEPTH) {
				ret = fail(p, part->off, "nesting deeper than %d levels", TOML_MAX_DEPTH);
				goto out;
			}
			kv = toml__table_add(t, part->s, part->len, part->line, part->col);
			part->s = NULL;
			kv->val.type = TOML_TABLE;
			kv->val.line = part->line;
			kv->val.col = part->col;
			kv->val.u.tab = toml__table_new(t->depth + 1, TOML_TAB_IMPLICIT);
			t = kv->val.u.tab;
		} else if (kv->val.type == TOML_TABLE) {
			if (kv->val.u.tab->flags & TOML_TAB_INLINE) {
				ret = fail(p, part->off, "cannot add to inline table \"%s\"", path->buf);
				goto out;
			}
			t = kv->val.u.tab;
		} else if (kv->val.type == TOML_ARRAY && (kv->val.u.arr->flags & TOML_ARR_TABLES)) {
			/* [a.b] after [[a]]: b goes into the latest element of a. */
			struct toml_array *a = kv->val.u.arr;
			strbuf_addf(path, "[%zu]", a->nr - 1);
			t = a->v[a->nr - 1].u.tab;
		} else {
			ret = fail(p, part->off, "key \"%s\" is not a table", path->buf);
			goto out;
		}
	}

	last = &k.part[k.nr - 1];
	toml__path_add_key(path, last->s, last->len);
	kv = toml__table_find(t, last->s, last->len);
	if (t->depth + 1 > TOML_MAX_DEPTH ||
	    (aot && t->depth + 2 > TOML_MAX_DEPTH)) {
		ret = fail(p, last->off, "nesting deeper than %d levels", TOML_MAX_DEPTH);
		goto out;
	}
	if (!aot) {
		if (!kv) {
			kv = toml__table_add(t, last->s, last->len, last->line, last->col);
			last->s = NULL;
			kv->val.type = TOML_TABLE;
			kv->val.line = last->line;
			kv->val.col = last->col;
			kv->val.u.tab = toml__table_new(t->depth + 1, TOML_TAB_HEADER);
		} else if (kv->val.type == TOML_TABLE &&
			   kv->val.u.tab->flags == TOML_TAB_IMPLICIT) {
			kv->val.u.tab->flags = TOML_TAB_HEADER;
		} else if (kv->val.type == TOML_TABLE || kv->val.type == TOML_ARRAY) {
			ret = fail(p, last->off, "table \"%s\" already defined", path->buf);
			goto out;
		} else {
			ret = fail(p, last->off, "key \"%s\" is not a table", path->buf);
			goto out;
		}
		p->cur = kv->val.u.tab;
	} else {
		struct toml_value *elem;
		if (!kv) {
			kv = toml__table_add(t, last->s, last->len, last->line, last->col);
			last->s = NULL;
			kv->val.type = TOML_ARRAY;
			kv->val.line = last->line;
			kv->val.col = last->col;
			kv->val.u.arr = toml__array_new(t->depth + 1, TOML_ARR_TABLES);
		} else if (kv->val.type == TOML_ARRAY && (kv->val.u.arr->flags & TOML_ARR_STATIC)) {
			ret = fail(p, last->off, "cannot append to static array \"%s\"", path->buf);
			goto out;
		} else if (kv->val.type != TOML_ARRAY) {
			ret = fail(p, last->off, "key \"%s\" is not an array of tables", path->buf);
			goto out;
		}
		strbuf_addf(path, "[%zu]", kv->val.u.arr->nr);
		elem = toml__array_push(kv->val.u.arr);
		elem->type = TOML_TABLE;
		elem->line = last->line;
		elem->col = last->col;
		elem->u.tab = toml__table_new(t->depth + 2, TOML_TAB_HEADER);
		p->cur = elem->u.tab;
	}
	ret = expect_eol(p, "table header");
out:
	key_release(&k);
	return ret;
}

/* --- document ----------------------------------------------------------- */

static int parse_document(struct parser *p)
{
	int ret;

	if ((ret = check_utf8(p)))
		return ret;
	if (p->len >= 3 && !memcmp(p->buf, "\xef\xbb\xbf", 3))
		p->pos = 3; /* a byte order mark some editors write */
	while (!at_eof(p)) {
		size_t n;
		skip_ws(p);
		if (at_eof(p))
			break;
		if ((n = newline_len(p))) {
			p->pos += n;
			continue;
		}
		if (peek(p, 0) == '#') {
			if ((ret = expect_eol(p, "comment")))
				return ret;
			continue;
		}
		if (peek(p, 0) == '[') {
			if ((ret = parse_header(p)))
				return ret;
			continue;
		}
		if (peek(p, 0) == '\r')
			return control_error(p, p->pos, "document");
		{
			struct key k = { 0 };
			struct path root = { .base = p->cur_path.buf };
			ret = set_keyval(p, p->cur, &root, &k);
			key_release(&k);
			if (ret)
				return ret;
		}
		if ((ret = expect_eol(p, "value")))
			return ret;
	}
	return 0;
}

int toml_parse(const char *buf, size_t len, const char *filename,
	       struct toml_table **out, struct strbuf *err)
{
	struct parser p = {
		.buf = buf,
		.len = len,
		.filename = filename ? filename : "<config>",
		.err = err,
		.cur_path = STRBUF_INIT,
		.scratch = STRBUF_INIT,
		.lc_line = 1,
		.lc_col = 1,
	};
	int ret;

	*out = NULL;
	p.root = p.cur = toml__table_new(0, TOML_TAB_HEADER);
	ret = parse_document(&p);
	strbuf_release(&p.cur_path);
	strbuf_release(&p.scratch);
	if (ret) {
		toml_free(p.root);
		return ret;
	}
	*out = p.root;
	return 0;
}

int toml_parse_file(const char *path, size_t max_size,
		    struct toml_table **out, struct strbuf *err)
{
	struct strbuf sb = STRBUF_INIT;
	int fd, ret = 0;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		goto fail;
	}
	for (;;) {
		ssize_t n;
		strbuf_grow(&sb, 8192);
		n = read(fd, sb.buf + sb.len, sb.alloc - sb.len - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			break;
		}
		if (n == 0)
			break;
		strbuf_setlen(&sb, sb.len + (size_t)n);
		if (sb.len > max_size) {
			ret = -EFBIG;
			break;
		}
	}
	close(fd);
	if (ret)
		goto fail;
	ret = toml_parse(sb.buf, sb.len, path, out, err);
	strbuf_release(&sb);
	return ret;
fail:
	if (err) {
		if (ret == -EFBIG)
			strbuf_addf(err, "cannot read \"%s\": file is larger than %zu bytes",
				    path, max_size);
		else
			strbuf_addf(err, "cannot read \"%s\": %s", path, strerror(-ret));
	}
	strbuf_release(&sb);
	return ret;
}
