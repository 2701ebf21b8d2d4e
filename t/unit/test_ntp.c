/* Unit tests: lib/ntp (an SNTP reply checked and turned into a clock offset). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "base/strbuf.h"
#include "ntp/ntp.h"

#define SEC ((uint64_t)1 << 32)

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static void reply(unsigned char *r, uint64_t origin, uint64_t recv, uint64_t xmit)
{
	memset(r, 0, 48);
	r[0] = 0x24;   /* version 4, server */
	r[1] = 2;
	put64(r + 24, origin);
	put64(r + 32, recv);
	put64(r + 40, xmit);
}

static void test_offset_is_the_mean_of_both_legs(void **state)
{
	unsigned char r[48];
	struct strbuf err = STRBUF_INIT;
	int64_t off = 0;
	uint64_t t1 = 3900000000ull * SEC;
	(void)state;

	/* the server is 10 s ahead; 1 s each way on the wire */
	reply(r, t1, t1 + 11 * SEC, t1 + 11 * SEC);
	assert_int_equal(ntp_parse_reply(r, 48, t1, t1 + 2 * SEC, &off, &err), 0);
	assert_true(off == 10000000000ll);
	/* behind by half a second */
	reply(r, t1, t1 - SEC / 2, t1 - SEC / 2);
	assert_int_equal(ntp_parse_reply(r, 48, t1, t1, &off, &err), 0);
	assert_true(off == -500000000ll);
	strbuf_release(&err);
}

static void test_unusable_replies_are_refused(void **state)
{
	unsigned char r[48];
	struct strbuf err = STRBUF_INIT;
	int64_t off;
	uint64_t t1 = 3900000000ull * SEC;
	(void)state;

	reply(r, t1, t1, t1);
	assert_int_equal(ntp_parse_reply(r, 47, t1, t1, &off, &err), -1);
	assert_string_equal(err.buf, "invalid response: too short");
	strbuf_reset(&err);
	assert_int_equal(ntp_parse_reply(r, 48, t1 + 1, t1, &off, &err), -1);
	assert_string_equal(err.buf, "invalid response: it answers another request");
	strbuf_reset(&err);
	r[1] = 0;
	memcpy(r + 12, "RATE", 4);
	assert_int_equal(ntp_parse_reply(r, 48, t1, t1, &off, &err), -1);
	assert_string_equal(err.buf, "kiss of death received: RATE");
	strbuf_reset(&err);
	reply(r, t1, t1, t1);
	r[0] = 0xe4;   /* leap indicator 3: unsynchronised */
	assert_int_equal(ntp_parse_reply(r, 48, t1, t1, &off, &err), -1);
	assert_string_equal(err.buf, "invalid leap second");
	strbuf_reset(&err);
	reply(r, t1, t1, t1);
	r[0] = 0x23;   /* a client's packet */
	assert_int_equal(ntp_parse_reply(r, 48, t1, t1, &off, &err), -1);
	strbuf_release(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_offset_is_the_mean_of_both_legs),
		cmocka_unit_test(test_unusable_replies_are_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
