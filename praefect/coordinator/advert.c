/* Reading a receive-pack reference advertisement (advert.h). */
#include "coordinator/advert.h"

#include <string.h>

/* The length of the pkt-line at `p` (4 lower-case hex digits, as git writes them), or -1. */
static long pkt_len(const char *p)
{
	long n = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (v < 0)
			return -1;
		n = n * 16 + v;
	}
	return n;
}

int advert_complete(const char *buf, size_t len)
{
	size_t off = 0;
	while (off < len) {
		long n;
		if (len - off < 4 || (n = pkt_len(buf + off)) < 0)
			return 0;
		if (n == 0)
			return off + 4 == len;
		if (n < 4 || (size_t)n > len - off)
			return 0;
		off += (size_t)n;
	}
	return len == 0;
}

int advert_capabilities(const char *buf, size_t len, const char **caps, size_t *caps_len)
{
	long n;
	const char *nul;
	if (len < 4 || (n = pkt_len(buf)) <= 4 || (size_t)n > len || !(nul = memchr(buf + 4, '\0', (size_t)n - 4)))
		return -1;
	*caps = nul + 1;
	*caps_len = (size_t)(buf + n - *caps);
	if (*caps_len && (*caps)[*caps_len - 1] == '\n')
		(*caps_len)--;
	return 0;
}
