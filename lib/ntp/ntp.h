/*
 * ntp: how far this machine's clock is from an NTP server's (SNTP, RFC 4330,
 * one client-mode exchange), for ServerService/ClockSynced on gitaly and on
 * praefect. docs/technical/clock-sync.md has what upstream checks and says.
 *
 * Two halves: ntp_request()/ntp_check_reply() build and judge the 48-byte
 * packets and never block (the reply is untrusted bytes: fuzz/fuzz_ntp.c);
 * ntp_query() does one exchange on a libuv loop.
 */
#ifndef NTP_NTP_H
#define NTP_NTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define NTP_PACKET_SIZE 48
#define NTP_DEFAULT_HOST "pool.ntp.org"
#define NTP_DEFAULT_PORT "123"
#define NTP_TIMEOUT_MS 5000

/* NTP's 64-bit timestamp: seconds since 1900 and a binary fraction. */
struct ntp_time {
	uint32_t sec;
	uint32_t frac;
};

struct ntp_time ntp_from_unix_ns(int64_t ns);
/* The wall clock now as an NTP timestamp. */
struct ntp_time ntp_now(void);

/* A client-mode, version-4 request whose transmit time is `xmit`. */
void ntp_request(uint8_t pkt[NTP_PACKET_SIZE], struct ntp_time xmit);

/*
 * Judge `buf`, the reply to a request sent at `sent` and received at
 * `recvd`. NULL when it is a valid answer, with the clock offset (server
 * minus us, nanoseconds) in *offset_ns; else the reason it is not, in
 * upstream's words ("kiss of death received", "invalid stratum in
 * response", ...), with *stage "query" (not an answer to our request) or
 * "validate" (an answer not to be believed).
 */
const char *ntp_check_reply(const uint8_t *buf, size_t len, struct ntp_time sent, struct ntp_time recvd,
			    int64_t *offset_ns, const char **stage);

/*
 * One exchange with `host` ("name" or "name:port", port 123 by default).
 * `done` runs exactly once, on the loop, never from inside ntp_query():
 * `err` NULL and the offset, or the reason. `stage` says which half failed:
 * "query" (name, socket, no answer in time) or "validate" (the answer).
 * ntp_query_cancel() makes it report "canceled" soon (`done` still runs).
 */
struct ntp_query;
typedef void ntp_done_fn(void *arg, const char *stage, const char *err, int64_t offset_ns);
struct ntp_query *ntp_query(uv_loop_t *loop, const char *host, uint64_t timeout_ms, ntp_done_fn *done,
			    void *arg);
void ntp_query_cancel(struct ntp_query *q);

/*
 * ntp_query() on a loop of its own, for command-line tools: 1 when the
 * offset is within +-threshold_ns, 0 when not, -1 with upstream's message in
 * `err` ("query ntp host HOST: ..." or "validate ntp response: ...").
 */
struct strbuf;
int ntp_clock_synced(const char *host, int64_t threshold_ns, struct strbuf *err);

#endif
