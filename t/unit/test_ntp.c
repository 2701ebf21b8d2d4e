/* Unit tests for lib/ntp's packets and lib/base's Duration check. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "base/pb.h"
#include "base/strbuf.h"
#include "ntp/ntp.h"

static void put_time(uint8_t *p, struct ntp_time t)
{
	uint32_t v[2] = { t.sec, t.frac };
	for (int i = 0; i < 2; i++) {
		p[4 * i] = (uint8_t)(v[i] >> 24);
		p[4 * i + 1] = (uint8_t)(v[i] >> 16);
		p[4 * i + 2] = (uint8_t)(v[i] >> 8);
		p[4 * i + 3] = (uint8_t)v[i];
	}
}

/* A server reply to a request sent at t1 (unix ns): received at t2, sent at t3 (server clock). */
static void reply(uint8_t pkt[NTP_PACKET_SIZE], int64_t t1, int64_t t2, int64_t t3)
{
	memset(pkt, 0, NTP_PACKET_SIZE);
	pkt[0] = 4 << 3 | 4;
	pkt[1] = 2;
	put_time(pkt + 16, ntp_from_unix_ns(t3 - 60000000000LL));
	put_time(pkt + 24, ntp_from_unix_ns(t1));
	put_time(pkt + 32, ntp_from_unix_ns(t2));
	put_time(pkt + 40, ntp_from_unix_ns(t3));
}

#define T0 1800000000000000000LL /* 2027 */

static void test_offset(void **state)
{
	uint8_t pkt[NTP_PACKET_SIZE];
	const char *stage;
	int64_t off = 0;
	(void)state;
	/* server 2 s ahead, 10 ms each way */
	reply(pkt, T0, T0 + 2010000000LL, T0 + 2011000000LL);
	assert_null(ntp_check_reply(pkt, sizeof(pkt), ntp_from_unix_ns(T0), ntp_from_unix_ns(T0 + 21000000LL), &off,
				    &stage));
	assert_true(off > 1999000000LL && off < 2001000000LL);
	/* and 3 s behind */
	reply(pkt, T0, T0 - 2990000000LL, T0 - 2989000000LL);
	assert_null(ntp_check_reply(pkt, sizeof(pkt), ntp_from_unix_ns(T0), ntp_from_unix_ns(T0 + 21000000LL), &off,
				    &stage));
	assert_true(off < -2999000000LL && off > -3001000000LL);
}

static void test_refusals(void **state)
{
	uint8_t pkt[NTP_PACKET_SIZE];
	struct ntp_time sent = ntp_from_unix_ns(T0), now = ntp_from_unix_ns(T0 + 1000000);
	const char *stage;
	int64_t off;
	(void)state;

	reply(pkt, T0, T0, T0);
	assert_string_equal(ntp_check_reply(pkt, 47, sent, now, &off, &stage), "short response");
	assert_string_equal(stage, "query");
	pkt[0] = 4 << 3 | 3;
	assert_string_equal(ntp_check_reply(pkt, sizeof(pkt), sent, now, &off, &stage), "invalid mode in response");
	reply(pkt, T0 + 1, T0, T0);
	assert_string_equal(ntp_check_reply(pkt, sizeof(pkt), sent, now, &off, &stage),
			    "server response didn't match request");
	reply(pkt, T0, T0 + 5000, T0);
	assert_string_equal(ntp_check_reply(pkt, sizeof(pkt), sent, now, &off, &stage),
			    "server clock ticked backwards");
	reply(pkt, T0, T0, T0);
	pkt[1] = 0;
	assert_string_equal(ntp_check_reply(pkt, sizeof(pkt), sent, now, &off, &stage), "kiss of death received");
	assert_string_equal(stage, "validate");
	pkt[1] = 16;
	assert_string_equal(ntp_check_reply(pkt, sizeof(pkt), sent, now, &off, &stage), "invalid stratum in response");
	reply(pkt, T0, T0, T0);
	pkt[0] |= 3 << 6;
	assert_string_equal(ntp_check_reply(pkt, sizeof(pkt), sent, now, &off, &stage),
			    "invalid leap second in response");
	reply(pkt, T0, T0, T0);
	pkt[8] = 0;
	pkt[9] = 17; /* root dispersion 17 s */
	assert_string_equal(ntp_check_reply(pkt, sizeof(pkt), sent, now, &off, &stage),
			    "invalid dispersion in response");
	reply(pkt, T0, T0, T0);
	put_time(pkt + 16, ntp_from_unix_ns(T0 - 200000LL * 1000000000));
	assert_string_equal(ntp_check_reply(pkt, sizeof(pkt), sent, now, &off, &stage), "server clock not fresh");
	reply(pkt, T0, T0, T0);
	put_time(pkt + 16, ntp_from_unix_ns(T0 + 1000000000));
	assert_string_equal(ntp_check_reply(pkt, sizeof(pkt), sent, now, &off, &stage), "invalid time reported");
}

static void test_request(void **state)
{
	uint8_t pkt[NTP_PACKET_SIZE];
	struct ntp_time t = { 0x01020304, 0x05060708 };
	(void)state;
	ntp_request(pkt, t);
	assert_int_equal(pkt[0], 0x23); /* leap 0, version 4, client */
	assert_memory_equal(pkt + 40, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
	for (int i = 1; i < 40; i++)
		assert_int_equal(pkt[i], 0);
}

static void test_duration(void **state)
{
	struct strbuf why = STRBUF_INIT;
	int64_t ns;
	(void)state;
	assert_int_equal(pb_duration_check(1, 2, 500, &ns, &why), 0);
	assert_int_equal(ns, 2000000500LL);
	assert_int_equal(pb_duration_check(1, 0, 0, &ns, &why), 0);
	assert_int_equal(ns, 0);
	assert_int_equal(pb_duration_check(0, 0, 0, &ns, &why), -1);
	assert_string_equal(why.buf, "invalid nil Duration");
	strbuf_reset(&why);
	assert_int_equal(pb_duration_check(1, -1, 5, &ns, &why), -1);
	assert_string_equal(why.buf, "duration (seconds:-1 nanos:5) has seconds and nanos with different signs");
	strbuf_reset(&why);
	assert_int_equal(pb_duration_check(1, 0, 1000000000, &ns, &why), -1);
	assert_string_equal(why.buf, "duration (nanos:1000000000) has out-of-range nanos");
	strbuf_reset(&why);
	assert_int_equal(pb_duration_check(1, 315576000001LL, 0, &ns, &why), -1);
	assert_string_equal(why.buf, "duration (seconds:315576000001) exceeds -10000 or +10000 years");
	strbuf_reset(&why);
	assert_int_equal(pb_duration_check(1, 315576000000LL, 0, &ns, &why), 0);
	assert_int_equal(ns, INT64_MAX);
	strbuf_release(&why);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_offset),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_request),
		cmocka_unit_test(test_duration),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
