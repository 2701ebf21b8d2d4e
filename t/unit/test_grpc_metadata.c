/* Unit tests: metadata lists, reserved keys, base64 for -bin values. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "grpc/metadata.h"

static void test_add_get_last_wins(void **state)
{
	struct grpc_metadata md = GRPC_METADATA_INIT;
	grpc_metadata_addstr(&md, "X-Gitlab-Correlation-Id", "abc");
	grpc_metadata_addstr(&md, "gitaly-feature-foo", "true");
	grpc_metadata_addstr(&md, "x-gitlab-correlation-id", "def");
	assert_int_equal(md.nr, 3);
	assert_string_equal(md.v[0].key, "x-gitlab-correlation-id"); /* lower-cased */
	assert_string_equal(grpc_metadata_value(&md, "x-gitlab-correlation-id"), "def");
	assert_null(grpc_metadata_value(&md, "missing"));
	grpc_metadata_remove(&md, "x-gitlab-correlation-id");
	assert_int_equal(md.nr, 1);
	assert_string_equal(md.v[0].key, "gitaly-feature-foo");
	grpc_metadata_release(&md);
	assert_int_equal(md.nr, 0);
}

static void test_binary_values(void **state)
{
	struct grpc_metadata md = GRPC_METADATA_INIT, copy = GRPC_METADATA_INIT;
	const char raw[] = { 0, 1, 2, (char)0xff };
	grpc_metadata_add(&md, "trace-bin", 9, raw, sizeof(raw));
	grpc_metadata_copy(&copy, &md);
	assert_int_equal(copy.v[0].value_len, 4);
	assert_memory_equal(copy.v[0].value, raw, 4);
	assert_true(grpc_metadata_is_binary("trace-bin", 9));
	assert_false(grpc_metadata_is_binary("bin", 3));
	grpc_metadata_release(&md);
	grpc_metadata_release(&copy);
}

static void test_reserved(void **state)
{
	assert_true(grpc_metadata_is_reserved(":path", 5));
	assert_true(grpc_metadata_is_reserved("grpc-status", 11));
	assert_true(grpc_metadata_is_reserved("content-type", 12));
	assert_true(grpc_metadata_is_reserved("te", 2));
	assert_false(grpc_metadata_is_reserved("authorization", 13));
	assert_false(grpc_metadata_is_reserved("gitaly-servers", 14));
}

static void check_b64(const char *in, size_t len, const char *want)
{
	struct strbuf enc = STRBUF_INIT, dec = STRBUF_INIT;
	grpc_base64_encode(&enc, in, len);
	assert_string_equal(enc.buf, want);
	assert_int_equal(grpc_base64_decode(&dec, enc.buf, enc.len), 0);
	assert_int_equal(dec.len, len);
	assert_memory_equal(dec.buf, in, len);
	strbuf_release(&enc);
	strbuf_release(&dec);
}

static void test_base64(void **state)
{
	struct strbuf dec = STRBUF_INIT;
	check_b64("", 0, "");
	check_b64("f", 1, "Zg");
	check_b64("fo", 2, "Zm8");
	check_b64("foo", 3, "Zm9v");
	check_b64("foob", 4, "Zm9vYg");
	check_b64("\xfb\xff", 2, "+/8");
	/* padded input is accepted too, as are URL-safe characters */
	assert_int_equal(grpc_base64_decode(&dec, "Zm8=", 4), 0);
	assert_string_equal(dec.buf, "fo");
	strbuf_reset(&dec);
	assert_int_equal(grpc_base64_decode(&dec, "-_8", 3), 0);
	assert_memory_equal(dec.buf, "\xfb\xff", 2);
	strbuf_reset(&dec);
	assert_int_equal(grpc_base64_decode(&dec, "Zm9v!", 5), -1);
	strbuf_reset(&dec);
	assert_int_equal(grpc_base64_decode(&dec, "Z", 1), -1);
	strbuf_release(&dec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_get_last_wins),
		cmocka_unit_test(test_binary_values),
		cmocka_unit_test(test_reserved),
		cmocka_unit_test(test_base64),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
