/* Protobuf wire-format reading and writing for raw message handling. */
#include "pb.h"

#include <stdint.h>

int pb_read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
	uint64_t v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		uint8_t b;
		if (*p >= end)
			return -1;
		b = *(*p)++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return 0;
		}
	}
	return -1;
}

int pb_next_field(const uint8_t **p, const uint8_t *end, struct pb_field *f)
{
	uint64_t key, v;
	if (*p >= end)
		return 0;
	if (pb_read_varint(p, end, &key) < 0 || (key >> 3) == 0 || (key >> 3) > 0x1fffffff)
		return -1;
	f->num = (uint32_t)(key >> 3);
	f->wire = (enum pb_wire)(key & 7);
	f->data = NULL;
	f->len = 0;
	switch (f->wire) {
	case PB_VARINT:
		return pb_read_varint(p, end, &f->varint) < 0 ? -1 : 1;
	case PB_I64:
		if (end - *p < 8)
			return -1;
		v = 0;
		for (int i = 7; i >= 0; i--)
			v = v << 8 | (*p)[i];
		f->varint = v;
		*p += 8;
		return 1;
	case PB_I32:
		if (end - *p < 4)
			return -1;
		f->varint = (uint64_t)(*p)[0] | (uint64_t)(*p)[1] << 8 | (uint64_t)(*p)[2] << 16 |
			    (uint64_t)(*p)[3] << 24;
		*p += 4;
		return 1;
	case PB_LEN:
		if (pb_read_varint(p, end, &v) < 0 || v > (uint64_t)(end - *p))
			return -1;
		f->data = *p;
		f->len = (size_t)v;
		*p += v;
		return 1;
	default:
		return -1;
	}
}

int pb_find_bytes(const uint8_t *msg, size_t len, uint32_t num, const uint8_t **data, size_t *dlen)
{
	const uint8_t *p = msg, *end = msg + len;
	struct pb_field f;
	int found = 0, rc;
	while ((rc = pb_next_field(&p, end, &f)) == 1) {
		if (f.num == num && f.wire == PB_LEN) {
			*data = f.data;
			*dlen = f.len;
			found = 1;
		}
	}
	return rc < 0 ? -1 : found;
}

void pb_put_varint(struct strbuf *sb, uint64_t v)
{
	uint8_t buf[10];
	size_t n = 0;
	do {
		buf[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	strbuf_add(sb, buf, n);
}

void pb_put_tag(struct strbuf *sb, uint32_t num, enum pb_wire wire)
{
	pb_put_varint(sb, (uint64_t)num << 3 | wire);
}

void pb_put_bytes(struct strbuf *sb, uint32_t num, const void *data, size_t len)
{
	pb_put_tag(sb, num, PB_LEN);
	pb_put_varint(sb, len);
	strbuf_add(sb, data, len);
}

void pb_put_uint(struct strbuf *sb, uint32_t num, uint64_t v)
{
	pb_put_tag(sb, num, PB_VARINT);
	pb_put_varint(sb, v);
}

int pb_duration_check(int present, int64_t seconds, int32_t nanos, int64_t *ns, struct strbuf *why)
{
	const int64_t max_s = 315576000000LL; /* 10000 years */
	struct strbuf v = STRBUF_INIT;
	if (!present) {
		strbuf_addstr(why, "invalid nil Duration");
		return -1;
	}
	/* the message as Go's %v prints it */
	if (seconds)
		strbuf_addf(&v, "seconds:%lld", (long long)seconds);
	if (nanos)
		strbuf_addf(&v, "%snanos:%d", seconds ? " " : "", (int)nanos);
	if (seconds < -max_s || seconds > max_s)
		strbuf_addf(why, "duration (%s) exceeds -10000 or +10000 years", v.buf);
	else if (nanos <= -1000000000 || nanos >= 1000000000)
		strbuf_addf(why, "duration (%s) has out-of-range nanos", v.buf);
	else if ((seconds > 0 && nanos < 0) || (seconds < 0 && nanos > 0))
		strbuf_addf(why, "duration (%s) has seconds and nanos with different signs", v.buf);
	strbuf_release(&v);
	if (why->len)
		return -1;
	/* 10000 years do not fit in int64 nanoseconds: saturate */
	if (seconds > INT64_MAX / 1000000000 - 1)
		*ns = INT64_MAX;
	else if (seconds < INT64_MIN / 1000000000 + 1)
		*ns = INT64_MIN;
	else
		*ns = seconds * 1000000000 + nanos;
	return 0;
}
