/* Unit tests: lib/git/relpath (the relative-path rule gitaly and praefect share). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "base/strbuf.h"
#include "git/relpath.h"

static int check(const char *rel)
{
	return git_relpath_check(rel, strlen(rel));
}

static void test_paths_inside_the_root_pass(void **state)
{
	(void)state;
	assert_int_equal(check("group/project.git"), 0);
	assert_int_equal(check("a/../b"), 0);
	assert_int_equal(check("a/.."), 0);          /* the root itself */
	assert_int_equal(check("./a//b/"), 0);
	assert_int_equal(check("/etc/passwd"), 0);   /* joined below the root, as upstream joins it */
	assert_int_equal(check("a/b/../../c"), 0);
}

static void test_paths_leaving_the_root_fail(void **state)
{
	char long_path[GIT_RELPATH_MAX + 2];
	(void)state;
	assert_int_equal(check(".."), -1);
	assert_int_equal(check("../../etc"), -1);
	assert_int_equal(check("a/../../x"), -1);
	assert_int_equal(check("a/b/../../../x"), -1);
	assert_int_equal(check("./../x"), -1);
	memset(long_path, 'a', sizeof(long_path) - 1);
	long_path[sizeof(long_path) - 1] = '\0';
	assert_int_equal(check(long_path), -1);
}

static void test_join_cleans_the_path(void **state)
{
	struct strbuf sb = STRBUF_INIT;
	(void)state;
	assert_int_equal(git_relpath_join("/srv/st/", "a/./b/../c.git", 14, &sb), 0);
	assert_string_equal(sb.buf, "/srv/st/a/c.git");
	strbuf_reset(&sb);
	assert_int_equal(git_relpath_join("/srv/st", "x/..", 4, &sb), 0);
	assert_string_equal(sb.buf, "/srv/st");
	strbuf_reset(&sb);
	/* the length bounds the path: "a/.." cut to "a/." stays inside */
	assert_int_equal(git_relpath_join("/srv/st", "a/..", 3, &sb), 0);
	assert_string_equal(sb.buf, "/srv/st/a");
	strbuf_release(&sb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paths_inside_the_root_pass),
		cmocka_unit_test(test_paths_leaving_the_root_fail),
		cmocka_unit_test(test_join_cleans_the_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
