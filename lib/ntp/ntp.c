/* A single SNTP client query (see ntp.h). */
#include "ntp/ntp.h"
#include "base/strbuf.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NTP_PACKET 48
#define NTP_UNIX_EPOCH 2208988800ull   /* seconds from 1900 to 1970 */

static uint64_t now_ntp(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ((uint64_t)ts.tv_sec + NTP_UNIX_EPOCH) << 32 | (uint64_t)(((uint64_t)ts.tv_nsec << 32) / 1000000000u);
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

/* A difference of two NTP timestamps in nanoseconds (wrap-around safe for close times). */
static int64_t diff_ns(uint64_t a, uint64_t b)
{
	int64_t d = (int64_t)(a - b);     /* 32.32 fixed point */
	return (int64_t)(((__int128)d * 1000000000) >> 32);
}

static int split_host(const char *host, char *name, size_t size, const char **port)
{
	const char *colon;
	size_t n;
	*port = "123";
	if (host[0] == '[') {
		const char *end = strchr(host, ']');
		if (!end)
			return -1;
		n = (size_t)(end - host - 1);
		if (end[1] == ':')
			*port = end + 2;
		host++;
	} else if ((colon = strchr(host, ':')) && !strchr(colon + 1, ':')) {
		n = (size_t)(colon - host);
		*port = colon + 1;
	} else {
		n = strlen(host);
	}
	if (n + 1 > size)
		return -1;
	memcpy(name, host, n);
	name[n] = '\0';
	return 0;
}

int ntp_parse_reply(const unsigned char *resp, size_t n, uint64_t t1, uint64_t t4, int64_t *offset_ns,
		    struct strbuf *err)
{
	uint64_t t2, t3;
	if (n < NTP_PACKET) {
		strbuf_addstr(err, "invalid response: too short");
		return -1;
	}
	if ((resp[0] & 7) != 4 && (resp[0] & 7) != 5) {
		strbuf_addstr(err, "invalid response: not from a server");
		return -1;
	}
	if (resp[1] == 0) {
		strbuf_addf(err, "kiss of death received: %.4s", (const char *)resp + 12);
		return -1;
	}
	if (resp[1] > 15) {
		strbuf_addf(err, "invalid stratum in response: %u", resp[1]);
		return -1;
	}
	if ((resp[0] >> 6) == 3) {
		strbuf_addstr(err, "invalid leap second");
		return -1;
	}
	if (get64(resp + 24) != t1) {
		strbuf_addstr(err, "invalid response: it answers another request");
		return -1;
	}
	t2 = get64(resp + 32);
	t3 = get64(resp + 40);
	if (!t3) {
		strbuf_addstr(err, "invalid time reported");
		return -1;
	}
	*offset_ns = (diff_ns(t2, t1) + diff_ns(t3, t4)) / 2;
	return 0;
}

int ntp_clock_offset(const char *host, uint64_t timeout_ms, int64_t *offset_ns, struct strbuf *err)
{
	struct addrinfo hints = { 0 }, *ai = NULL;
	unsigned char pkt[NTP_PACKET] = { 0 }, resp[NTP_PACKET];
	char name[256];
	const char *port;
	uint64_t t1, t4;
	struct pollfd pfd;
	ssize_t n;
	int fd = -1, rc = -1, gai;

	if (!host || !*host)
		host = NTP_DEFAULT_HOST;
	if (split_host(host, name, sizeof(name), &port) < 0) {
		strbuf_addf(err, "invalid address \"%s\"", host);
		return -1;
	}
	hints.ai_socktype = SOCK_DGRAM;
	if ((gai = getaddrinfo(name, port, &hints, &ai)) != 0) {
		strbuf_addf(err, "lookup %s: %s", name, gai_strerror(gai));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		strbuf_addf(err, "dial udp %s: %s", host, strerror(errno));
		goto out;
	}
	pkt[0] = 0x23;   /* leap 0, version 4, mode 3 (client) */
	t1 = now_ntp();
	put64(pkt + 40, t1);
	if (send(fd, pkt, sizeof(pkt), 0) != (ssize_t)sizeof(pkt)) {
		strbuf_addf(err, "write udp %s: %s", host, strerror(errno));
		goto out;
	}
	pfd.fd = fd;
	pfd.events = POLLIN;
	for (;;) {
		int p = poll(&pfd, 1, (int)timeout_ms);
		if (p < 0 && errno == EINTR)
			continue;
		if (p <= 0) {
			strbuf_addf(err, "read udp %s: i/o timeout", host);
			goto out;
		}
		break;
	}
	n = recv(fd, resp, sizeof(resp), 0);
	t4 = now_ntp();
	if (n < 0) {
		strbuf_addf(err, "read udp %s: %s", host, strerror(errno));
		goto out;
	}
	if (ntp_parse_reply(resp, (size_t)n, t1, t4, offset_ns, err) < 0)
		goto out;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return rc;
}

int ntp_clock_synced(const char *host, int64_t threshold_ns, struct strbuf *err)
{
	int64_t offset;
	if (ntp_clock_offset(host, NTP_TIMEOUT_MS, &offset, err) < 0)
		return -1;
	return offset <= threshold_ns && offset >= -threshold_ns;
}
