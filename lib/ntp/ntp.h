/*
 * ntp: one SNTP query (RFC 4330) to tell how far this machine's clock is
 * from a time server's, for `praefect check`'s clock synchronization check
 * and gitaly's ServerService/ClockSynced (docs/technical/praefect-cli.md,
 * "check"). Blocking: call it from a command-line tool or a worker thread.
 */
#ifndef NTP_NTP_H
#define NTP_NTP_H

#include <stddef.h>
#include <stdint.h>

struct strbuf;

#define NTP_DEFAULT_HOST "pool.ntp.org"
#define NTP_TIMEOUT_MS 5000

/*
 * Ask `host` ("name", "name:port", "[v6]:port"; NULL or "" for
 * NTP_DEFAULT_HOST; port 123 by default) for the time, waiting at most
 * timeout_ms. 0 with the clock offset in *offset_ns (positive: the server is
 * ahead of us), or -1 with why in `err`: the query failed, or the answer is
 * not usable (not from a server, kiss-o'-death, unsynchronised, a reply to
 * another request).
 */
int ntp_clock_offset(const char *host, uint64_t timeout_ms, int64_t *offset_ns, struct strbuf *err);

/*
 * The reply half of the above: check the 48-byte server reply resp[0..n) to
 * our request sent at NTP time t1 (32.32 fixed point) and received at t4,
 * and compute the offset. 0, or -1 with why in `err`. Exposed for the tests
 * and fuzz/fuzz_ntp.c: the bytes come from the network.
 */
int ntp_parse_reply(const unsigned char *resp, size_t n, uint64_t t1, uint64_t t4, int64_t *offset_ns,
		    struct strbuf *err);

/* ntp_clock_offset() within ±threshold_ns: 1 synced, 0 not, -1 error (in `err`). */
int ntp_clock_synced(const char *host, int64_t threshold_ns, struct strbuf *err);

#endif
