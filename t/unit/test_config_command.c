/* Unit tests: lib/config/command (config_command output merged over a parsed config). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "base/strbuf.h"
#include "config/command.h"
#include "config/toml.h"

static struct toml_table *parse(const char *text)
{
	struct toml_table *t = NULL;
	assert_int_equal(toml_parse(text, strlen(text), "t.toml", &t, NULL), 0);
	return t;
}

static void test_objects_merge_and_scalars_replace(void **state)
{
	struct toml_table *t = parse("a = 1\n[auth]\ntoken = \"old\"\ntransitioning = true\n");
	struct strbuf err = STRBUF_INIT;
	struct toml_table *auth;
	const char *s;
	int64_t i;
	bool b;
	const char *json = "{\"a\": 2, \"Auth\": {\"token\": \"new\"}, \"b\": \"x\", \"c\": null}";
	(void)state;

	assert_int_equal(cfg_merge_json(t, json, strlen(json), &err), 0);
	assert_int_equal(toml_get_int(t, "a", &i), 0);
	assert_int_equal(i, 2);
	assert_int_equal(toml_get_table(t, "auth", &auth), 0);   /* matched case-insensitively */
	assert_int_equal(toml_get_string(auth, "token", &s, NULL), 0);
	assert_string_equal(s, "new");
	assert_int_equal(toml_get_bool(auth, "transitioning", &b), 0);
	assert_true(b);                                          /* untouched */
	assert_int_equal(toml_get_string(t, "b", &s, NULL), 0);
	assert_string_equal(s, "x");
	assert_null(toml_get(t, "c"));                           /* null changes nothing */
	toml_free(t);
}

static void test_arrays_take_the_json_length_and_merge_tables(void **state)
{
	struct toml_table *t = parse("[[storage]]\nname = \"a\"\npath = \"/a\"\n[[storage]]\nname = \"b\"\npath = \"/b\"\n");
	struct strbuf err = STRBUF_INIT;
	struct toml_array *arr;
	const char *s;
	const char *json = "{\"storage\": [{\"path\": \"/c\"}]}";
	(void)state;

	assert_int_equal(cfg_merge_json(t, json, strlen(json), &err), 0);
	assert_int_equal(toml_get_tables(t, "storage", &arr), 0);
	assert_int_equal(toml_array_len(arr), 1);
	assert_int_equal(toml_get_string(toml_array_table(arr, 0), "name", &s, NULL), 0);
	assert_string_equal(s, "a");
	assert_int_equal(toml_get_string(toml_array_table(arr, 0), "path", &s, NULL), 0);
	assert_string_equal(s, "/c");
	toml_free(t);
}

static void test_bad_output_is_an_error(void **state)
{
	struct toml_table *t = parse("a = 1\n");
	struct strbuf err = STRBUF_INIT;
	(void)state;
	assert_int_equal(cfg_merge_json(t, "not json", 8, &err), -1);
	assert_true(!strncmp(err.buf, "unmarshalling generated config: ", 32));
	strbuf_reset(&err);
	assert_int_equal(cfg_merge_json(t, "[1]", 3, &err), -1);
	assert_string_equal(err.buf, "unmarshalling generated config: the output is not a JSON object");
	strbuf_release(&err);
	toml_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_objects_merge_and_scalars_replace),
		cmocka_unit_test(test_arrays_take_the_json_length_and_merge_tables),
		cmocka_unit_test(test_bad_output_is_an_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
