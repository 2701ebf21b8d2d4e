/* proc-receive protocol input (hooks/proc_receive_parse.h; docs/technical/hooks.md, "proc-receive"). */
#include "hooks/proc_receive_parse.h"

#include <stdio.h>
#include <string.h>

void prc_init(struct prc_parser *p)
{
	memset(p, 0, sizeof(*p));
	strbuf_init(&p->buf, 0);
	strbuf_init(&p->err, 0);
}

void prc_release(struct prc_parser *p)
{
	strbuf_release(&p->buf);
	strbuf_release(&p->err);
}

/* err = `prefix` then `a` (bytes, NUL included); `fmt` is "<prefix>%.*s" */
static enum prc_state fail(struct prc_parser *p, const char *fmt, const char *a, size_t alen)
{
	const char *cut = strstr(fmt, "%.*s");
	strbuf_reset(&p->err);
	strbuf_add(&p->err, fmt, cut ? (size_t)(cut - fmt) : strlen(fmt));
	strbuf_add(&p->err, a, alen);
	p->state = PRC_FAILED;
	return PRC_FAILED;
}

/* Go's %q of a short byte string: quoted, with escapes for what is not printable ASCII */
static void go_quote(struct strbuf *sb, const char *s, size_t n)
{
	strbuf_addch(sb, '"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			strbuf_addf(sb, "\\%c", c);
		else if (c == '\n')
			strbuf_addstr(sb, "\\n");
		else if (c == '\t')
			strbuf_addstr(sb, "\\t");
		else if (c == '\r')
			strbuf_addstr(sb, "\\r");
		else if (c < 0x20 || c >= 0x7f)
			strbuf_addf(sb, "\\x%02x", c);
		else
			strbuf_addch(sb, (char)c);
	}
	strbuf_addch(sb, '"');
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * The length prefix as strconv.ParseInt(s, 16, 0) reads it: an optional
 * sign, then hex digits. 0 with *out set, or -1.
 */
static int parse_len(const char *s, int allow_sign, long *out)
{
	int neg = 0, i = 0;
	long v = 0;
	if (allow_sign && (s[0] == '+' || s[0] == '-'))
		neg = s[0] == '-', i = 1;
	for (; i < 4; i++) {
		int d = hexval(s[i]);
		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	*out = neg ? -v : v;
	return 0;
}

/*
 * Split off the next packet as upstream's scanner does. 1 with pkt and pkt_len
 * set (4 bytes for the magic packets 0000..0003), 0 when more input is
 * needed, -1 after failing the parser.
 */
static int next_pkt(struct prc_parser *p, size_t *off, int eof, const char **pkt, size_t *pkt_len)
{
	const char *d = p->buf.buf + *off;
	size_t avail = p->buf.len - *off;
	struct strbuf q = STRBUF_INIT;
	long n;
	if (avail < 4) {
		if (eof && avail) {
			go_quote(&q, d, avail);
			fail(p, "pktLineSplitter: incomplete length prefix on %.*s", q.buf, q.len);
			strbuf_release(&q);
			return -1;
		}
		return 0;
	}
	if (parse_len(d, 1, &n) < 0) {
		strbuf_addstr(&q, "pktLineSplitter: decode length: strconv.ParseInt: parsing ");
		go_quote(&q, d, 4);
		strbuf_addstr(&q, ": invalid syntax");
		fail(p, "%.*s", q.buf, q.len);
		strbuf_release(&q);
		return -1;
	}
	if (n < 0 || n > PRC_MAX_PKT) {
		char num[32];
		snprintf(num, sizeof(num), "%ld", n);
		fail(p, "pktLineSplitter: invalid length: %.*s", num, strlen(num));
		return -1;
	}
	if (n < 4)
		n = 4;
	if (avail < (size_t)n) {
		if (eof) {
			fail(p, "%.*s", "unexpected EOF", 14);
			return -1;
		}
		return 0;
	}
	*pkt = d;
	*pkt_len = (size_t)n;
	*off += (size_t)n;
	return 1;
}

static int is_flush(const char *pkt, size_t len)
{
	return len == 4 && !memcmp(pkt, "0000", 4);
}

/* pktline.Payload: the data of a packet whose header matches its length; -1 with `why` set */
static int payload(const char *pkt, size_t len, const char **data, size_t *dlen, struct strbuf *why)
{
	long n;
	if (is_flush(pkt, len)) {
		strbuf_addstr(why, "flush packets do not have a payload");
		return -1;
	}
	if (parse_len(pkt, 0, &n) < 0) {
		strbuf_addstr(why, "parsing length header ");
		go_quote(why, pkt, 4);
		strbuf_addstr(why, ": strconv.ParseUint: parsing ");
		go_quote(why, pkt, 4);
		strbuf_addstr(why, ": invalid syntax");
		return -1;
	}
	if ((size_t)n != len) {
		strbuf_addf(why, "packet length %zu does not match header length %ld", len, n);
		return -1;
	}
	*data = pkt + 4;
	*dlen = len - 4;
	return 0;
}

static void features(struct prc_parser *p, const char *s, size_t n)
{
	while (n) {
		const char *sp = memchr(s, ' ', n);
		size_t w = sp ? (size_t)(sp - s) : n;
		if (w == 6 && !memcmp(s, "atomic", 6))
			p->atomic = 1;
		if (!sp)
			break;
		n -= w + 1;
		s = sp + 1;
	}
}

/* "<old> SP <new> SP <ref>": exactly two spaces, as upstream splits it */
static int command_ok(const char *s, size_t n)
{
	size_t spaces = 0;
	for (size_t i = 0; i < n; i++)
		spaces += s[i] == ' ';
	return spaces == 2;
}

/* Go's %s of bytes.Split(data, " "): "[f1 f2 ...]" */
static void split_words(struct strbuf *sb, const char *s, size_t n)
{
	strbuf_addch(sb, '[');
	strbuf_add(sb, s, n);
	strbuf_addch(sb, ']');
}

enum prc_state prc_feed(struct prc_parser *p, const void *in, size_t len, int eof)
{
	struct strbuf why = STRBUF_INIT;
	const char *pkt, *data;
	size_t off = 0, plen, dlen;
	int r;

	if (p->state == PRC_DONE || p->state == PRC_FAILED)
		return p->state;
	strbuf_add(&p->buf, in, len);
	while (p->state != PRC_DONE && p->state != PRC_FAILED) {
		enum prc_state st = p->state;
		r = next_pkt(p, &off, eof, &pkt, &plen);
		if (r < 0) {
			/* the scanner's error, under the step that was reading */
			strbuf_add(&why, p->err.buf, p->err.len);
			if (st == PRC_VERSION)
				fail(p, "expected version negotiation: %.*s", why.buf, why.len);
			else if (st == PRC_VERSION_FLUSH)
				fail(p, "expected flush: %.*s", why.buf, why.len);
			else
				fail(p, "parsing stdin: %.*s", why.buf, why.len);
			break;
		}
		if (r == 0) {
			if (!eof)
				break;
			/* clean end of input */
			if (p->state == PRC_VERSION)
				fail(p, "expected version negotiation: %.*s", "%!w(<nil>)", 10);
			else if (p->state == PRC_VERSION_FLUSH)
				fail(p, "expected flush: %.*s", "%!w(<nil>)", 10);
			else
				p->state = PRC_DONE;
			break;
		}
		if (p->state == PRC_VERSION) {
			if (payload(pkt, plen, &data, &dlen, &why) < 0) {
				fail(p, "receiving header: %.*s", why.buf, why.len);
				break;
			}
			if (dlen < 10 || memcmp(data, "version=1\0", 10)) {
				fail(p, "unsupported version: %.*s", data, dlen);
				break;
			}
			features(p, data + 10, dlen - 10);
			p->state = PRC_VERSION_FLUSH;
		} else if (p->state == PRC_VERSION_FLUSH) {
			if (!is_flush(pkt, plen)) {
				fail(p, "%.*s", "expected pkt flush", 18);
				break;
			}
			p->state = PRC_COMMANDS;
			/* the caller answers the version before commands are read */
			break;
		} else {
			if (is_flush(pkt, plen)) {
				p->state = PRC_DONE;
				break;
			}
			if (payload(pkt, plen, &data, &dlen, &why) < 0) {
				fail(p, "receiving reference update: %.*s", why.buf, why.len);
				break;
			}
			if (!command_ok(data, dlen)) {
				strbuf_addstr(&why, "parse reference update: unknown ref update format: ");
				split_words(&why, data, dlen);
				fail(p, "%.*s", why.buf, why.len);
				break;
			}
			p->commands++;
		}
	}
	strbuf_remove_front(&p->buf, off);
	strbuf_release(&why);
	return p->state;
}

void prc_version_reply(const struct prc_parser *p, struct strbuf *out)
{
	size_t n = 4 + 10 + (p->atomic ? 6 : 0);
	strbuf_addf(out, "%04zx", n);
	strbuf_add(out, "version=1\0", 10);
	if (p->atomic)
		strbuf_addstr(out, "atomic");
	strbuf_addstr(out, "0000");
}
