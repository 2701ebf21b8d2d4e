/*
 * Minimal protobuf wire-format helpers for code that handles raw message
 * bytes without a generated decoder: streaming bridges that only need the
 * `stdin` bytes of a request, and encoders of one-field responses.
 */
#ifndef BASE_PB_H
#define BASE_PB_H

#include <stddef.h>
#include <stdint.h>
#include "strbuf.h"

enum pb_wire { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_I32 = 5 };

struct pb_field {
	uint32_t num;
	enum pb_wire wire;
	uint64_t varint;          /* PB_VARINT, PB_I64, PB_I32 */
	const uint8_t *data;      /* PB_LEN */
	size_t len;
};

/* Read a varint at *p (advancing it); -1 on truncation or overlong encoding. */
int pb_read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out);
/*
 * Read the next field at *p. Returns 1 with *f filled, 0 at the end of the
 * buffer, -1 on malformed input (groups are malformed here).
 */
int pb_next_field(const uint8_t **p, const uint8_t *end, struct pb_field *f);
/*
 * Find the last occurrence (proto3 "last one wins") of length-delimited field
 * `num`. Returns 1 found, 0 absent, -1 malformed.
 */
int pb_find_bytes(const uint8_t *msg, size_t len, uint32_t num, const uint8_t **data, size_t *dlen);

void pb_put_varint(struct strbuf *sb, uint64_t v);
void pb_put_tag(struct strbuf *sb, uint32_t num, enum pb_wire wire);
/* Field `num` as length-delimited bytes (also strings and sub-messages). */
void pb_put_bytes(struct strbuf *sb, uint32_t num, const void *data, size_t len);
void pb_put_uint(struct strbuf *sb, uint32_t num, uint64_t v);

/*
 * A google.protobuf.Duration's validity, as protobuf's own CheckValid:
 * present, seconds within +-10000 years, nanos within a second and of the
 * seconds' sign. 0 with the length in *ns (saturated), or -1 with the
 * reason in `why` (upstream's words).
 */
int pb_duration_check(int present, int64_t seconds, int32_t nanos, int64_t *ns, struct strbuf *why);

#endif
