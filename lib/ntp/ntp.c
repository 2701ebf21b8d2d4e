/* ntp: the packets. Field layout from RFC 5905 section 7.3. */
#include "ntp/ntp.h"

#include <string.h>
#include <time.h>

#define UNIX_TO_NTP 2208988800u                 /* seconds from 1900 to 1970 */
#define MAX_STRATUM 16                          /* 16: unsynchronized */
#define MAX_DISPERSION_NS (16LL * 1000000000)   /* root delay / 2 + root dispersion */
#define MAX_POLL_NS ((1LL << 17) * 1000000000)  /* a reference older than this is stale */
#define LEAP_NOT_IN_SYNC 3
#define MODE_CLIENT 3
#define MODE_SERVER 4

struct ntp_time ntp_from_unix_ns(int64_t ns)
{
	struct ntp_time t;
	int64_t s = ns / 1000000000, r = ns % 1000000000;
	if (r < 0) {
		r += 1000000000;
		s--;
	}
	t.sec = (uint32_t)(s + UNIX_TO_NTP);
	t.frac = (uint32_t)(((uint64_t)r << 32) / 1000000000);
	return t;
}

struct ntp_time ntp_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ntp_from_unix_ns((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
}

/* Nanoseconds since the NTP era 0 epoch, as a signed 64-bit number (fine until 2192). */
static int64_t to_ns(struct ntp_time t)
{
	return (int64_t)t.sec * 1000000000 + (int64_t)(((uint64_t)t.frac * 1000000000) >> 32);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static struct ntp_time get_time(const uint8_t *p)
{
	struct ntp_time t = { be32(p), be32(p + 4) };
	return t;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

void ntp_request(uint8_t pkt[NTP_PACKET_SIZE], struct ntp_time xmit)
{
	memset(pkt, 0, NTP_PACKET_SIZE);
	pkt[0] = 4 << 3 | MODE_CLIENT; /* leap 0, version 4, client */
	put32(pkt + 40, xmit.sec);
	put32(pkt + 44, xmit.frac);
}

/* A 32-bit NTP short format (16.16 seconds) in nanoseconds. */
static int64_t short_ns(uint32_t v)
{
	return (int64_t)(v >> 16) * 1000000000 + (int64_t)(((uint64_t)(v & 0xffff) * 1000000000) >> 16);
}

const char *ntp_check_reply(const uint8_t *buf, size_t len, struct ntp_time sent, struct ntp_time recvd,
			    int64_t *offset_ns, const char **stage)
{
	struct ntp_time origin, rx, tx, ref;
	int64_t t1, t2, t3, t4;
	unsigned leap, mode, stratum;

	*stage = "query";
	if (len < NTP_PACKET_SIZE)
		return "short response";
	leap = buf[0] >> 6;
	mode = buf[0] & 7;
	stratum = buf[1];
	ref = get_time(buf + 16);
	origin = get_time(buf + 24);
	rx = get_time(buf + 32);
	tx = get_time(buf + 40);
	if (mode != MODE_SERVER)
		return "invalid mode in response";
	/* the server echoes our transmit time: anything else answers someone else */
	if (origin.sec != sent.sec || origin.frac != sent.frac)
		return "server response didn't match request";
	if (tx.sec == 0 && tx.frac == 0)
		return "invalid transmit time in response";
	t1 = to_ns(sent);
	t2 = to_ns(rx);
	t3 = to_ns(tx);
	t4 = to_ns(recvd);
	if (t3 < t2)
		return "server clock ticked backwards";
	/* a well-formed answer: is it worth believing? */
	*stage = "validate";
	if (stratum == 0)
		return "kiss of death received";
	if (stratum >= MAX_STRATUM)
		return "invalid stratum in response";
	if (t3 - to_ns(ref) > MAX_POLL_NS)
		return "server clock not fresh";
	if (short_ns(be32(buf + 4)) / 2 + short_ns(be32(buf + 8)) > MAX_DISPERSION_NS)
		return "invalid dispersion in response";
	if (t3 < to_ns(ref))
		return "invalid time reported";
	if (leap == LEAP_NOT_IN_SYNC)
		return "invalid leap second in response";
	/* RFC 5905: offset = ((T2 - T1) + (T3 - T4)) / 2 */
	*offset_ns = ((t2 - t1) + (t3 - t4)) / 2;
	return NULL;
}
