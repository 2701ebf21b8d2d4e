/* Parsing of listen and dial addresses in the forms upstream Gitaly accepts. */
#include "io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int parse_port(const char *s, int *port)
{
	char *end;
	long v;
	if (!*s)
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < 0 || v > 65535)
		return -EINVAL;
	*port = (int)v;
	return 0;
}

static int parse_hostport(const char *s, struct addr *out)
{
	const char *colon;
	size_t hlen;

	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return -EINVAL;
		hlen = (size_t)(close - s - 1);
		if (hlen == 0 || hlen >= sizeof(out->host))
			return -EINVAL;
		memcpy(out->host, s + 1, hlen);
		out->host[hlen] = '\0';
		return parse_port(close + 2, &out->port);
	}
	colon = strrchr(s, ':');
	if (!colon)
		return -EINVAL;
	hlen = (size_t)(colon - s);
	if (memchr(s, ':', hlen))
		return -EINVAL; /* bare IPv6 needs brackets */
	if (hlen >= sizeof(out->host))
		return -EINVAL;
	memcpy(out->host, s, hlen);
	out->host[hlen] = '\0';
	if (hlen == 0) {
		/* ":port" means every interface, as Go's net.Listen does */
		memcpy(out->host, "0.0.0.0", 8);
	}
	return parse_port(colon + 1, &out->port);
}

int addr_parse(const char *s, struct addr *out)
{
	memset(out, 0, sizeof(*out));
	if (!strncmp(s, "unix:", 5)) {
		const char *p = s + 5;
		if (!strncmp(p, "//", 2))
			p += 2;
		if (!*p || strlen(p) >= sizeof(out->path))
			return -EINVAL;
		out->kind = ADDR_UNIX;
		memcpy(out->path, p, strlen(p) + 1);
		return 0;
	}
	if (!strncmp(s, "tcp://", 6)) {
		out->kind = ADDR_TCP;
		return parse_hostport(s + 6, out);
	}
	if (!strncmp(s, "tls://", 6)) {
		out->kind = ADDR_TLS;
		return parse_hostport(s + 6, out);
	}
	if (strstr(s, "://"))
		return -EINVAL;
	out->kind = ADDR_TCP;
	return parse_hostport(s, out);
}
