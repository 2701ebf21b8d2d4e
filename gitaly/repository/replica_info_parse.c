/* Parsing the replica record (replica_info.h): read from disk, so any bytes are refused cleanly. */
#include "repository/replica_info.h"

#include <inttypes.h>
#include <string.h>
#include "base/banned.h"

struct rd {
	const char *p, *end;
};

static void skip_ws(struct rd *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

static int expect(struct rd *r, char c)
{
	skip_ws(r);
	if (r->p >= r->end || *r->p != c)
		return -1;
	r->p++;
	return 0;
}

static int hex4(const char *s, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = s[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

/* A JSON string into `out`: NUL and surrogate escapes are refused (the record never holds them). */
static int parse_string(struct rd *r, struct strbuf *out)
{
	strbuf_reset(out);
	if (expect(r, '"') < 0)
		return -1;
	while (r->p < r->end) {
		unsigned char c = (unsigned char)*r->p++;
		unsigned u;
		if (c == '"')
			return 0;
		if (c < 0x20)
			return -1;
		if (c != '\\') {
			strbuf_addch(out, (char)c);
			continue;
		}
		if (r->p >= r->end)
			return -1;
		switch (*r->p++) {
		case '"': strbuf_addch(out, '"'); break;
		case '\\': strbuf_addch(out, '\\'); break;
		case '/': strbuf_addch(out, '/'); break;
		case 'b': strbuf_addch(out, '\b'); break;
		case 'f': strbuf_addch(out, '\f'); break;
		case 'n': strbuf_addch(out, '\n'); break;
		case 'r': strbuf_addch(out, '\r'); break;
		case 't': strbuf_addch(out, '\t'); break;
		case 'u':
			if (r->end - r->p < 4 || hex4(r->p, &u) < 0 || u == 0 || (u >= 0xd800 && u <= 0xdfff))
				return -1;
			r->p += 4;
			if (u < 0x80) {
				strbuf_addch(out, (char)u);
			} else if (u < 0x800) {
				strbuf_addch(out, (char)(0xc0 | (u >> 6)));
				strbuf_addch(out, (char)(0x80 | (u & 0x3f)));
			} else {
				strbuf_addch(out, (char)(0xe0 | (u >> 12)));
				strbuf_addch(out, (char)(0x80 | ((u >> 6) & 0x3f)));
				strbuf_addch(out, (char)(0x80 | (u & 0x3f)));
			}
			break;
		default:
			return -1;
		}
	}
	return -1;
}

/* A non-negative decimal integer that fits int64_t. */
static int parse_int(struct rd *r, int64_t *out)
{
	int64_t v = 0;
	skip_ws(r);
	if (r->p >= r->end || *r->p < '0' || *r->p > '9')
		return -1;
	while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
		int d = *r->p++ - '0';
		if (v > (INT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

void replica_record_init(struct replica_record *r)
{
	memset(r, 0, sizeof(*r));
	strbuf_init(&r->virtual_storage, 0);
	strbuf_init(&r->relative_path, 0);
	strbuf_init(&r->primary, 0);
}

void replica_record_release(struct replica_record *r)
{
	strbuf_release(&r->virtual_storage);
	strbuf_release(&r->relative_path);
	strbuf_release(&r->primary);
}

int replica_record_parse(const char *buf, size_t len, struct replica_record *rec, struct strbuf *err)
{
	struct rd r = { buf, buf + len };
	struct strbuf key = STRBUF_INIT;
	unsigned seen = 0, bit;
	int rc = -1;

	if (expect(&r, '{') < 0)
		goto bad;
	for (;;) {
		if (parse_string(&r, &key) < 0 || expect(&r, ':') < 0)
			goto bad;
		if (!strcmp(key.buf, "virtual_storage")) {
			bit = 1;
			if (parse_string(&r, &rec->virtual_storage) < 0)
				goto bad;
		} else if (!strcmp(key.buf, "relative_path")) {
			bit = 2;
			if (parse_string(&r, &rec->relative_path) < 0)
				goto bad;
		} else if (!strcmp(key.buf, "repository_id")) {
			bit = 4;
			if (parse_int(&r, &rec->repository_id) < 0)
				goto bad;
		} else if (!strcmp(key.buf, "generation")) {
			bit = 8;
			if (parse_int(&r, &rec->generation) < 0)
				goto bad;
		} else if (!strcmp(key.buf, "primary")) {
			bit = 16;
			if (parse_string(&r, &rec->primary) < 0)
				goto bad;
		} else if (!strcmp(key.buf, "primary_epoch")) {
			bit = 32;
			if (parse_int(&r, &rec->primary_epoch) < 0)
				goto bad;
		} else {
			goto bad;
		}
		if (seen & bit)
			goto bad;
		seen |= bit;
		skip_ws(&r);
		if (r.p < r.end && *r.p == ',') {
			r.p++;
			continue;
		}
		break;
	}
	if (expect(&r, '}') < 0)
		goto bad;
	skip_ws(&r);
	/* the primary comes with its epoch, or neither is there */
	if (r.p != r.end || (seen != 15 && seen != 63) || !rec->virtual_storage.len || !rec->relative_path.len ||
	    rec->repository_id <= 0 || (seen == 63 && !rec->primary.len))
		goto bad;
	rc = 0;
	goto out;
bad:
	strbuf_addstr(err, "replica record is not valid");
out:
	strbuf_release(&key);
	return rc;
}

void replica_record_format(const struct replica_record *r, struct strbuf *out)
{
	strbuf_addstr(out, "{\"virtual_storage\":");
	strbuf_add_json_string(out, r->virtual_storage.buf, r->virtual_storage.len);
	strbuf_addstr(out, ",\"relative_path\":");
	strbuf_add_json_string(out, r->relative_path.buf, r->relative_path.len);
	strbuf_addf(out, ",\"repository_id\":%" PRId64 ",\"generation\":%" PRId64, r->repository_id,
		    r->generation);
	if (r->primary.len) {
		strbuf_addstr(out, ",\"primary\":");
		strbuf_add_json_string(out, r->primary.buf, r->primary.len);
		strbuf_addf(out, ",\"primary_epoch\":%" PRId64, r->primary_epoch);
	}
	strbuf_addstr(out, "}\n");
}
