/* gRPC status code names, grpc-message percent-encoding, grpc-timeout values. */
#include "status.h"
#include "base/util.h"

#include <errno.h>
#include <stdio.h>

static const char *const code_names[] = {
	"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded",
	"NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted",
	"FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented",
	"Internal", "Unavailable", "DataLoss", "Unauthenticated",
};

const char *grpc_code_name(int code)
{
	if (code < 0 || code > GRPC_UNAUTHENTICATED)
		return "Unknown";
	return code_names[code];
}

void grpc_percent_encode(struct strbuf *out, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c <= 0x7e && c != '%') {
			strbuf_addch(out, c);
		} else {
			char esc[3] = { '%', hex[c >> 4], hex[c & 15] };
			strbuf_add(out, esc, 3);
		}
	}
}

void grpc_percent_decode(struct strbuf *out, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%' && i + 2 < len) {
			int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
			if (hi >= 0 && lo >= 0) {
				strbuf_addch(out, hi << 4 | lo);
				i += 2;
				continue;
			}
		}
		strbuf_addch(out, s[i]);
	}
}

int grpc_timeout_parse(const char *s, size_t len, uint64_t *ns)
{
	uint64_t v = 0, mul;

	if (len < 2 || len > 9)
		return -EINVAL;
	for (size_t i = 0; i + 1 < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	switch (s[len - 1]) {
	case 'H': mul = 3600ull * 1000000000ull; break;
	case 'M': mul = 60ull * 1000000000ull; break;
	case 'S': mul = 1000000000ull; break;
	case 'm': mul = 1000000ull; break;
	case 'u': mul = 1000ull; break;
	case 'n': mul = 1ull; break;
	default: return -EINVAL;
	}
	if (v > UINT64_MAX / mul)
		*ns = UINT64_MAX;
	else
		*ns = v * mul;
	return 0;
}

void grpc_timeout_format(uint64_t ns, char out[16])
{
	static const struct { char unit; uint64_t ns; } units[] = {
		{ 'n', 1ull }, { 'u', 1000ull }, { 'm', 1000000ull },
		{ 'S', 1000000000ull }, { 'M', 60000000000ull }, { 'H', 3600000000000ull },
	};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		uint64_t v = ns / units[i].ns + (ns % units[i].ns ? 1 : 0);
		if (v <= 99999999ull || i + 1 == sizeof(units) / sizeof(units[0])) {
			if (v > 99999999ull)
				v = 99999999ull;
			snprintf(out, 16, "%llu%c", (unsigned long long)v, units[i].unit);
			return;
		}
	}
}
