/* Unit tests: gRPC status names, grpc-message percent-encoding, grpc-timeout. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <cmocka.h>

#include "grpc/status.h"

static void test_code_names(void **state)
{
	assert_string_equal(grpc_code_name(GRPC_OK), "OK");
	assert_string_equal(grpc_code_name(GRPC_CANCELLED), "Canceled");
	assert_string_equal(grpc_code_name(GRPC_UNAUTHENTICATED), "Unauthenticated");
	assert_string_equal(grpc_code_name(99), "Unknown");
	assert_string_equal(grpc_code_name(-1), "Unknown");
}

static void test_percent_roundtrip(void **state)
{
	struct strbuf enc = STRBUF_INIT, dec = STRBUF_INIT;
	const char *msg = "repo \"a/b\" 100% gone: \xc3\xa9t\xc3\xa9\n";

	grpc_percent_encode(&enc, msg, strlen(msg));
	assert_string_equal(enc.buf, "repo \"a/b\" 100%25 gone: %C3%A9t%C3%A9%0A");
	grpc_percent_decode(&dec, enc.buf, enc.len);
	assert_string_equal(dec.buf, msg);
	strbuf_release(&enc);
	strbuf_release(&dec);
}

static void test_percent_decode_lenient(void **state)
{
	struct strbuf dec = STRBUF_INIT;
	grpc_percent_decode(&dec, "50%zz%4", 7);
	assert_string_equal(dec.buf, "50%zz%4"); /* malformed escapes kept verbatim */
	strbuf_reset(&dec);
	grpc_percent_decode(&dec, "%41%62", 6);
	assert_string_equal(dec.buf, "Ab");
	strbuf_release(&dec);
}

static void test_timeout_parse(void **state)
{
	uint64_t ns;
	assert_int_equal(grpc_timeout_parse("100m", 4, &ns), 0);
	assert_int_equal(ns, 100000000ull);
	assert_int_equal(grpc_timeout_parse("1H", 2, &ns), 0);
	assert_int_equal(ns, 3600ull * 1000000000ull);
	assert_int_equal(grpc_timeout_parse("2M", 2, &ns), 0);
	assert_int_equal(ns, 120ull * 1000000000ull);
	assert_int_equal(grpc_timeout_parse("7S", 2, &ns), 0);
	assert_int_equal(ns, 7000000000ull);
	assert_int_equal(grpc_timeout_parse("5u", 2, &ns), 0);
	assert_int_equal(ns, 5000ull);
	assert_int_equal(grpc_timeout_parse("99999999n", 9, &ns), 0);
	assert_int_equal(ns, 99999999ull);
	assert_int_equal(grpc_timeout_parse("99999999H", 9, &ns), 0);
	assert_true(ns > 0);

	assert_int_equal(grpc_timeout_parse("", 0, &ns), -EINVAL);
	assert_int_equal(grpc_timeout_parse("m", 1, &ns), -EINVAL);
	assert_int_equal(grpc_timeout_parse("10x", 3, &ns), -EINVAL);
	assert_int_equal(grpc_timeout_parse("1a0m", 4, &ns), -EINVAL);
	assert_int_equal(grpc_timeout_parse("123456789m", 10, &ns), -EINVAL); /* 9 digits */
	assert_int_equal(grpc_timeout_parse("-1S", 3, &ns), -EINVAL);
}

static void test_timeout_format(void **state)
{
	char buf[16];
	uint64_t ns;

	grpc_timeout_format(1500000ull, buf);
	assert_string_equal(buf, "1500000n");
	grpc_timeout_format(1000000000ull, buf);
	assert_string_equal(buf, "1000000u");
	grpc_timeout_format(3600ull * 24 * 1000000000ull, buf); /* a day */
	assert_string_equal(buf, "86400000m");
	grpc_timeout_format(UINT64_MAX, buf);
	assert_int_equal(grpc_timeout_parse(buf, strlen(buf), &ns), 0);

	/* formatting never shortens a deadline */
	for (uint64_t v = 1; v < UINT64_MAX / 7; v = v * 7 + 3) {
		grpc_timeout_format(v, buf);
		assert_true(strlen(buf) <= 9);
		assert_int_equal(grpc_timeout_parse(buf, strlen(buf), &ns), 0);
		assert_true(ns >= v);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_code_names),
		cmocka_unit_test(test_percent_roundtrip),
		cmocka_unit_test(test_percent_decode_lenient),
		cmocka_unit_test(test_timeout_parse),
		cmocka_unit_test(test_timeout_format),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
