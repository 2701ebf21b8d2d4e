/* Unit tests: the libpq parameters praefect connects with (lib/store/pg.c, store_pg_conninfo). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "store/pg-admin.h"

static const char *value_of(const char **keys, const char **values, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(keys[i], key))
			return values[i];
	return NULL;
}

static size_t build(const char **keys, const char **values)
{
	static const struct store_pg_params p = { .host = "db.example", .port = "5433", .user = "praefect",
						  .dbname = "praefect_production", .sslmode = "require" };
	return store_pg_conninfo(&p, keys, values, STORE_PG_CONNINFO_MAX);
}

static void test_keepalives_by_default(void **state)
{
	const char *keys[STORE_PG_CONNINFO_MAX], *values[STORE_PG_CONNINFO_MAX];
	size_t n;

	(void)state;
	unsetenv("PGSERVICE");
	n = build(keys, values);
	assert_null(keys[n]);
	assert_string_equal(value_of(keys, values, n, "host"), "db.example");
	assert_string_equal(value_of(keys, values, n, "port"), "5433");
	assert_string_equal(value_of(keys, values, n, "sslmode"), "require");
	assert_null(value_of(keys, values, n, "password"));   /* unset keys are left to libpq */
	assert_string_equal(value_of(keys, values, n, "keepalives"), "1");
	assert_string_equal(value_of(keys, values, n, "keepalives_idle"), "15");
	assert_string_equal(value_of(keys, values, n, "keepalives_interval"), "5");
	assert_string_equal(value_of(keys, values, n, "keepalives_count"), "3");
	assert_string_equal(value_of(keys, values, n, "tcp_user_timeout"), "30000");
	/* every pair is one libpq knows */
	{
		PQconninfoOption *known = PQconndefaults();
		for (size_t i = 0; i < n; i++) {
			const PQconninfoOption *o = known;
			while (o->keyword && strcmp(o->keyword, keys[i]))
				o++;
			assert_non_null(o->keyword);
		}
		PQconninfoFree(known);
	}
}

static void test_a_service_file_setting_wins(void **state)
{
	const char *keys[STORE_PG_CONNINFO_MAX], *values[STORE_PG_CONNINFO_MAX];
	char path[] = "/tmp/test-pg-service-XXXXXX";
	int fd = mkstemp(path);
	FILE *f;
	size_t n;

	(void)state;
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs("[praefect]\nkeepalives_idle=120\ntcp_user_timeout=0\n", f);
	fclose(f);
	setenv("PGSERVICEFILE", path, 1);
	setenv("PGSERVICE", "praefect", 1);
	n = build(keys, values);
	unsetenv("PGSERVICE");
	unsetenv("PGSERVICEFILE");
	unlink(path);
	assert_null(value_of(keys, values, n, "keepalives_idle"));
	assert_null(value_of(keys, values, n, "tcp_user_timeout"));
	assert_string_equal(value_of(keys, values, n, "keepalives"), "1");
	assert_string_equal(value_of(keys, values, n, "keepalives_count"), "3");
	assert_string_equal(value_of(keys, values, n, "host"), "db.example");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keepalives_by_default),
		cmocka_unit_test(test_a_service_file_setting_wins),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
