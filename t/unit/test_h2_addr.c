/* Unit tests: listen and dial address forms. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <cmocka.h>

#include "h2/io.h"

static void test_unix_forms(void **state)
{
	struct addr a;
	assert_int_equal(addr_parse("unix:/run/gitaly.socket", &a), 0);
	assert_int_equal(a.kind, ADDR_UNIX);
	assert_string_equal(a.path, "/run/gitaly.socket");
	assert_int_equal(addr_parse("unix:///run/gitaly.socket", &a), 0);
	assert_string_equal(a.path, "/run/gitaly.socket");
	assert_int_equal(addr_parse("unix:relative.sock", &a), 0);
	assert_string_equal(a.path, "relative.sock");
	assert_int_equal(addr_parse("unix:", &a), -EINVAL);
	char longp[200];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = 0;
	memcpy(longp, "unix:/", 6);
	assert_int_equal(addr_parse(longp, &a), -EINVAL); /* longer than sun_path */
}

static void test_tcp_forms(void **state)
{
	struct addr a;
	assert_int_equal(addr_parse("tcp://gitaly-1.internal:8075", &a), 0);
	assert_int_equal(a.kind, ADDR_TCP);
	assert_string_equal(a.host, "gitaly-1.internal");
	assert_int_equal(a.port, 8075);
	assert_int_equal(addr_parse("127.0.0.1:0", &a), 0);
	assert_string_equal(a.host, "127.0.0.1");
	assert_int_equal(a.port, 0);
	assert_int_equal(addr_parse("[::1]:2305", &a), 0);
	assert_string_equal(a.host, "::1");
	assert_int_equal(a.port, 2305);
	assert_int_equal(addr_parse(":9999", &a), 0);
	assert_string_equal(a.host, "0.0.0.0");
	assert_int_equal(addr_parse("tls://praefect:3305", &a), 0);
	assert_int_equal(a.kind, ADDR_TLS);
}

static void test_bad(void **state)
{
	struct addr a;
	assert_int_equal(addr_parse("localhost", &a), -EINVAL);
	assert_int_equal(addr_parse("host:99999", &a), -EINVAL);
	assert_int_equal(addr_parse("host:12x", &a), -EINVAL);
	assert_int_equal(addr_parse("host:", &a), -EINVAL);
	assert_int_equal(addr_parse("::1:80", &a), -EINVAL);
	assert_int_equal(addr_parse("http://host:80", &a), -EINVAL);
	assert_int_equal(addr_parse("[::1:80", &a), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unix_forms),
		cmocka_unit_test(test_tcp_forms),
		cmocka_unit_test(test_bad),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
