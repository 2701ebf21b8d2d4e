/*
 * gRPC status codes, grpc-message percent-encoding and grpc-timeout values.
 * Pure functions: no I/O, no allocation beyond the strbuf passed in.
 */
#ifndef GRPC_STATUS_H
#define GRPC_STATUS_H

#include <stddef.h>
#include <stdint.h>
#include "../base/strbuf.h"

enum grpc_code {
	GRPC_OK = 0,
	GRPC_CANCELLED = 1,
	GRPC_UNKNOWN = 2,
	GRPC_INVALID_ARGUMENT = 3,
	GRPC_DEADLINE_EXCEEDED = 4,
	GRPC_NOT_FOUND = 5,
	GRPC_ALREADY_EXISTS = 6,
	GRPC_PERMISSION_DENIED = 7,
	GRPC_RESOURCE_EXHAUSTED = 8,
	GRPC_FAILED_PRECONDITION = 9,
	GRPC_ABORTED = 10,
	GRPC_OUT_OF_RANGE = 11,
	GRPC_UNIMPLEMENTED = 12,
	GRPC_INTERNAL = 13,
	GRPC_UNAVAILABLE = 14,
	GRPC_DATA_LOSS = 15,
	GRPC_UNAUTHENTICATED = 16,
};

/* "OK", "Canceled", "InvalidArgument"... as grpc-go spells them in logs. */
const char *grpc_code_name(int code);

/*
 * grpc-message is percent-encoded: bytes outside 0x20..0x7e, and '%' itself,
 * become %XX. Decoding is lenient: a malformed escape is kept verbatim (what
 * receivers must do: docs/technical/grpc-core.md, "Wire format").
 */
void grpc_percent_encode(struct strbuf *out, const char *s, size_t len);
void grpc_percent_decode(struct strbuf *out, const char *s, size_t len);

/*
 * grpc-timeout: 1-8 ASCII digits followed by a unit H, M, S, m, u or n.
 * grpc_timeout_parse() stores the value in nanoseconds (saturating) and returns
 * 0, or -EINVAL for a malformed value. grpc_timeout_format() writes the
 * shortest exact encoding of `ns` that fits in 8 digits (rounding up).
 */
int grpc_timeout_parse(const char *s, size_t len, uint64_t *ns);
void grpc_timeout_format(uint64_t ns, char out[16]);

#endif
