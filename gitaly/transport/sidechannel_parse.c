/* Parsing what a sidechannel client sends: pkt-line deframing and negotiation statistics. */
#include "transport/sidechannel_parse.h"
#include "base/util.h"

#include <stdio.h>
#include <string.h>

static int hex4(const char *h, size_t *out)
{
	size_t v = 0;
	for (int i = 0; i < 4; i++) {
		int c = (unsigned char)h[i], d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v * 16 + (size_t)d;
	}
	*out = v;
	return 0;
}

/* --- the client's pkt-line framing --- */

size_t sc_deframe_feed(struct sc_deframe *st, const char *buf, size_t len,
		       void (*data)(void *arg, const char *p, size_t n), void *arg)
{
	size_t used = 0, plen;

	while (used < len && st->state == SC_DF_DATA) {
		if (st->left) {
			size_t n = MIN(st->left, len - used);
			data(arg, buf + used, n);
			st->left -= n;
			used += n;
			continue;
		}
		while (st->hdr_len < 4 && used < len)
			st->hdr[st->hdr_len++] = buf[used++];
		if (st->hdr_len < 4)
			break;
		st->hdr_len = 0;
		if (hex4(st->hdr, &plen) < 0) {
			st->state = SC_DF_ERROR;
			snprintf(st->err, sizeof(st->err), "invalid length header");
		} else if (plen == 0) {
			st->state = SC_DF_FLUSHED;
		} else if (plen < 4) {
			/* delim, response-end and 0003 mean nothing here */
			st->state = SC_DF_ERROR;
			snprintf(st->err, sizeof(st->err), "invalid header %c", st->hdr[3]);
		} else if (plen > SC_PKT_MAX) {
			st->state = SC_DF_ERROR;
			snprintf(st->err, sizeof(st->err), "invalid length: %zu", plen);
		} else {
			st->left = plen - 4;
		}
	}
	return used;
}

/* --- negotiation statistics (upstream's PackfileNegotiation) --- */

void sc_stats_init(struct sc_stats *s)
{
	memset(s, 0, sizeof(*s));
	strvec_init(&s->caps);
	strbuf_init(&s->deepen, 0);
	strbuf_init(&s->filter, 0);
	strbuf_init(&s->pkt, 0);
}

void sc_stats_release(struct sc_stats *s)
{
	strvec_clear(&s->caps);
	strbuf_release(&s->deepen);
	strbuf_release(&s->filter);
	strbuf_release(&s->pkt);
}

static void stats_fail(struct sc_stats *s)
{
	s->failed = 1;
	s->stopped = 1;
}

/* One packet's payload (empty for flush and the other special packets). */
static void stats_packet(struct sc_stats *s, const char *p, size_t n)
{
	const char *word, *sp;
	size_t fields = 1, wlen;

	if (s->stopped)
		return;
	if (n && p[n - 1] == '\n')
		n--;
	s->payload_size += (int64_t)n;
	for (size_t i = 0; i < n; i++)
		fields += p[i] == ' ';
	sp = memchr(p, ' ', n);
	word = p;
	wlen = sp ? (size_t)(sp - p) : n;

#define IS(w) (wlen == strlen(w) && !memcmp(word, w, wlen))
	if (IS("want")) {
		if (fields < 2 || (fields > 2 && s->have_caps)) {
			stats_fail(s);
			return;
		}
		s->wants++;
		if (fields > 2) {
			/* everything after the second space, split on spaces */
			const char *c = memchr(sp + 1, ' ', n - (size_t)(sp + 1 - p)) + 1;
			const char *end = p + n;
			s->have_caps = 1;
			while (c <= end) {
				const char *e = memchr(c, ' ', (size_t)(end - c));
				if (!e)
					e = end;
				strvec_pushf(&s->caps, "%.*s", (int)(e - c), c);
				c = e + 1;
			}
		}
	} else if (IS("shallow")) {
		if (fields != 2) {
			stats_fail(s);
			return;
		}
		s->shallows++;
	} else if (IS("deepen") || IS("deepen-since") || IS("deepen-not")) {
		if (fields != 2) {
			stats_fail(s);
			return;
		}
		strbuf_reset(&s->deepen);
		strbuf_add(&s->deepen, p, n);
	} else if (IS("filter")) {
		if (fields != 2) {
			stats_fail(s);
			return;
		}
		strbuf_reset(&s->filter);
		strbuf_add(&s->filter, sp + 1, n - (size_t)(sp + 1 - p));
	} else if (IS("have")) {
		if (fields != 2) {
			stats_fail(s);
			return;
		}
		s->haves++;
	} else if (IS("done")) {
		s->stopped = 1;   /* the "done" packet itself is not counted */
		return;
	}
#undef IS
	s->packets++;
}

void sc_stats_feed(struct sc_stats *s, const char *buf, size_t len)
{
	size_t used = 0, plen;

	while (used < len && !s->broken) {
		if (s->left) {
			size_t n = MIN(s->left, len - used);
			strbuf_add(&s->pkt, buf + used, n);
			s->left -= n;
			used += n;
			if (!s->left) {
				if (s->pkt.len == 5 && !memcmp(s->pkt.buf, "done\n", 5))
					s->saw_done = 1;
				stats_packet(s, s->pkt.buf, s->pkt.len);
				strbuf_reset(&s->pkt);
			}
			continue;
		}
		while (s->hdr_len < 4 && used < len)
			s->hdr[s->hdr_len++] = buf[used++];
		if (s->hdr_len < 4)
			break;
		s->hdr_len = 0;
		if (hex4(s->hdr, &plen) < 0 || plen > SC_PKT_MAX) {
			s->broken = 1;
			if (!s->stopped)
				stats_fail(s);
		} else if (plen <= 4) {
			stats_packet(s, "", 0);
		} else {
			s->left = plen - 4;
		}
	}
}

void sc_stats_finish(struct sc_stats *s)
{
	/* input that ends inside a packet does not parse */
	if (!s->stopped && (s->hdr_len || s->left))
		stats_fail(s);
	if (!s->failed && !s->wants)
		s->failed = 1;
	s->stopped = 1;
}

