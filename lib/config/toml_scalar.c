/* TOML scalars that need no parser state: UTF-8, numbers, date-times. */
#include "toml_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"
#include "base/util.h"
#include "base/banned.h"

/* --- UTF-8 -------------------------------------------------------------- */

size_t toml__utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t want;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		want = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		want = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		want = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < want)
		return 0;
	for (size_t i = 1; i < want; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* Overlong forms, UTF-16 surrogates and code points past U+10FFFF. */
	if ((want == 3 && cp < 0x800) || (want == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return want;
}

void toml__add_utf8(struct strbuf *sb, uint32_t cp)
{
	char b[4];
	if (cp < 0x80) {
		strbuf_addch(sb, (int)cp);
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 0x3f));
		strbuf_add(sb, b, 2);
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | (cp >> 12));
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		strbuf_add(sb, b, 3);
	} else {
		b[0] = (char)(0xf0 | (cp >> 18));
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		strbuf_add(sb, b, 4);
	}
}

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

/* --- date-times --------------------------------------------------------- */

static int digits2(const char *s)
{
	if (!is_digit(s[0]) || !is_digit(s[1]))
		return -1;
	return (s[0] - '0') * 10 + (s[1] - '0');
}

/* HH:MM:SS[.fraction] at s (n bytes); returns the bytes used or -1. */
static int parse_time(const char *s, size_t n)
{
	size_t i = 8;
	int h, m, sec;

	if (n < 8 || s[2] != ':' || s[5] != ':')
		return -1;
	h = digits2(s);
	m = digits2(s + 3);
	sec = digits2(s + 6);
	if (h < 0 || h > 23 || m < 0 || m > 59 || sec < 0 || sec > 59)
		return -1;
	if (i < n && s[i] == '.') {
		i++;
		if (i >= n || !is_digit(s[i]))
			return -1;
		while (i < n && is_digit(s[i]))
			i++;
	}
	return (int)i;
}

bool toml__valid_date(const char *s)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, m, d;

	for (int i = 0; i < 4; i++)
		if (!is_digit(s[i]))
			return false;
	if (s[4] != '-' || s[7] != '-')
		return false;
	y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
	m = digits2(s + 5);
	d = digits2(s + 8);
	if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return false;
	if (m == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
		return false;
	return true;
}

int toml__parse_datetime(const char *s, size_t n, enum toml_datetime_kind *kind)
{
	size_t i;
	int t;

	if (n >= 3 && s[2] == ':') {
		*kind = TOML_LOCAL_TIME;
		return parse_time(s, n) == (int)n ? 0 : -EINVAL;
	}
	if (n < 10 || !toml__valid_date(s))
		return -EINVAL;
	if (n == 10) {
		*kind = TOML_LOCAL_DATE;
		return 0;
	}
	if (s[10] != 'T' && s[10] != 't' && s[10] != ' ')
		return -EINVAL;
	if ((t = parse_time(s + 11, n - 11)) < 0)
		return -EINVAL;
	i = 11 + (size_t)t;
	if (i == n) {
		*kind = TOML_LOCAL_DATETIME;
		return 0;
	}
	*kind = TOML_OFFSET_DATETIME;
	if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == n)
		return 0;
	if ((s[i] == '+' || s[i] == '-') && n - i == 6 && s[i + 3] == ':') {
		int h = digits2(s + i + 1), m = digits2(s + i + 4);
		if (h >= 0 && h <= 23 && m >= 0 && m <= 59)
			return 0;
	}
	return -EINVAL;
}

/* --- numbers ------------------------------------------------------------ */

/*
 * Digits of `base` with single underscores only between digits; the digits
 * (without underscores) are appended to `out`.
 */
static bool scan_digits(const char *s, size_t n, int base, struct strbuf *out)
{
	bool prev_digit = false;

	if (!n)
		return false;
	for (size_t i = 0; i < n; i++) {
		int d = hex_digit((unsigned char)s[i]);
		if (s[i] == '_') {
			if (!prev_digit || i + 1 == n)
				return false;
			prev_digit = false;
			continue;
		}
		if (d < 0 || d >= base)
			return false;
		strbuf_addch(out, s[i]);
		prev_digit = true;
	}
	return true;
}

static int to_int64(const char *digits, int base, bool neg, int64_t *out)
{
	/* Accumulate as a negative number: INT64_MIN has no positive twin. */
	int64_t v = 0;
	for (const char *d = digits; *d; d++) {
		int x = hex_digit((unsigned char)*d);
		if (v < (INT64_MIN + x) / base)
			return -ERANGE;
		v = v * base - x;
	}
	if (!neg) {
		if (v == INT64_MIN)
			return -ERANGE;
		v = -v;
	}
	*out = v;
	return 0;
}

/* Length of a run of decimal digits and underscores. */
static size_t digit_run(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n && (is_digit(s[i]) || s[i] == '_'))
		i++;
	return i;
}

static int parse_number(const char *s, size_t n, struct toml_value *v, struct strbuf *clean)
{
	const char *r = s;
	size_t rn = n, i, j;
	bool neg = false, is_float = false;

	if (rn && (r[0] == '+' || r[0] == '-')) {
		neg = r[0] == '-';
		r++;
		rn--;
	}
	if (rn == 3 && (!memcmp(r, "inf", 3) || !memcmp(r, "nan", 3))) {
		v->type = TOML_FLOAT;
		v->u.f = r[0] == 'i' ? (double)INFINITY : (double)NAN;
		if (neg)
			v->u.f = -v->u.f;
		return 0;
	}
	if (rn > 2 && r[0] == '0' && (r[1] == 'x' || r[1] == 'o' || r[1] == 'b')) {
		int base = r[1] == 'x' ? 16 : r[1] == 'o' ? 8 : 2;
		if (r != s || !scan_digits(r + 2, rn - 2, base, clean))
			return -EINVAL; /* no sign allowed on these */
		v->type = TOML_INTEGER;
		return to_int64(clean->buf, base, false, &v->u.i);
	}

	/* Integer part, no leading zeros; then .fraction and/or exponent. */
	i = digit_run(r, rn);
	if (!scan_digits(r, i, 10, clean) || (clean->len > 1 && clean->buf[0] == '0'))
		return -EINVAL;
	if (i < rn && r[i] == '.') {
		is_float = true;
		strbuf_addch(clean, '.');
		j = ++i;
		i += digit_run(r + i, rn - i);
		if (!scan_digits(r + j, i - j, 10, clean))
			return -EINVAL;
	}
	if (i < rn && (r[i] == 'e' || r[i] == 'E')) {
		is_float = true;
		strbuf_addch(clean, 'e');
		i++;
		if (i < rn && (r[i] == '+' || r[i] == '-'))
			strbuf_addch(clean, r[i++]);
		j = i;
		i += digit_run(r + i, rn - i);
		if (!scan_digits(r + j, i - j, 10, clean)) /* leading zeros are fine here */
			return -EINVAL;
	}
	if (i != rn)
		return -EINVAL;
	if (is_float) {
		/* The text is now plain C syntax; strtod assumes the "C" locale,
		 * which our programs never change. Too large rounds to inf. */
		v->type = TOML_FLOAT;
		v->u.f = strtod(clean->buf, NULL);
		if (neg)
			v->u.f = -v->u.f;
		return 0;
	}
	v->type = TOML_INTEGER;
	return to_int64(clean->buf, 10, neg, &v->u.i);
}

int toml__parse_number(const char *s, size_t n, struct toml_value *v)
{
	struct strbuf clean = STRBUF_INIT;
	int ret = parse_number(s, n, v, &clean);
	strbuf_release(&clean);
	if (ret)
		v->type = 0;
	return ret;
}
