/* Unit tests: lib/git/refs (loose ref and packed-refs parsing, the files-backend lookup rules). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "base/strbuf.h"
#include "git/refs.h"

#define A "1111111111111111111111111111111111111111"
#define B "2222222222222222222222222222222222222222"
#define C "3333333333333333333333333333333333333333"

static int name_ok(const char *n)
{
	return git_refs_name_ok(n, strlen(n));
}

static void test_names(void **state)
{
	(void)state;
	assert_int_equal(name_ok("HEAD"), 0);
	assert_int_equal(name_ok("refs/heads/main"), 0);
	assert_int_equal(name_ok("refs/heads/a+b/x.y_z-1"), 0);
	assert_int_equal(name_ok("refs/"), -1);
	assert_int_equal(name_ok("heads/main"), -1);
	assert_int_equal(name_ok("refs/heads/"), -1);
	assert_int_equal(name_ok("refs/heads//x"), -1);
	assert_int_equal(name_ok("refs/heads/.x"), -1);
	assert_int_equal(name_ok("refs/heads/x."), -1);
	assert_int_equal(name_ok("refs/heads/a..b"), -1);
	assert_int_equal(name_ok("refs/heads/x.lock"), -1);
	assert_int_equal(name_ok("refs/heads/f*"), -1);
	assert_int_equal(name_ok("refs/heads/sp ace"), -1);
	assert_int_equal(name_ok("refs/heads/n\xc3\xa4me"), -1);
	assert_int_equal(name_ok("refs/heads/@{x}"), -1);
}

static int loose(const char *s, struct git_ref *r)
{
	return git_refs_parse_loose(s, strlen(s), r);
}

static void test_loose(void **state)
{
	struct git_ref r;
	(void)state;
	assert_int_equal(loose(A "\n", &r), GIT_REFS_FOUND);
	assert_string_equal(r.oid, A);
	assert_string_equal(r.target, "");
	assert_int_equal(loose("ref: refs/heads/main\n", &r), GIT_REFS_FOUND);
	assert_string_equal(r.target, "refs/heads/main");
	assert_string_equal(r.oid, "");
	/* sha256 ids */
	assert_int_equal(loose(A "111111111111111111111111\n", &r), GIT_REFS_FOUND);
	assert_int_equal(strlen(r.oid), 64);
	/* anything else is for git to judge */
	assert_int_equal(loose("", &r), GIT_REFS_UNSURE);
	assert_int_equal(loose(A, &r), GIT_REFS_UNSURE);             /* no newline: a torn write */
	assert_int_equal(loose("1111\n", &r), GIT_REFS_UNSURE);
	assert_int_equal(loose(A " \n", &r), GIT_REFS_UNSURE);
	assert_int_equal(loose("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n", &r), GIT_REFS_UNSURE);
	assert_int_equal(loose("ref: main\n", &r), GIT_REFS_UNSURE);
	assert_int_equal(loose("ref:refs/heads/main\n", &r), GIT_REFS_UNSURE);
	assert_int_equal(loose(A "\n" A "\n", &r), GIT_REFS_UNSURE);
}

static const char packed[] =
	"# pack-refs with: peeled fully-peeled sorted \n"
	A " refs/heads/main\n"
	B " refs/heads/nested/topic\n"
	C " refs/tags/v1\n"
	"^" A "\n";

static int find(const char *buf, const char *name, struct git_ref *r, int *children)
{
	return git_refs_packed_find(buf, strlen(buf), name, strlen(name), r, children);
}

static void test_packed(void **state)
{
	struct git_ref r;
	int ch;
	(void)state;
	assert_int_equal(find(packed, "refs/heads/main", &r, &ch), GIT_REFS_FOUND);
	assert_string_equal(r.oid, A);
	assert_string_equal(r.peeled, "");
	assert_int_equal(ch, 0);
	assert_int_equal(find(packed, "refs/tags/v1", &r, NULL), GIT_REFS_FOUND);
	assert_string_equal(r.oid, C);
	assert_string_equal(r.peeled, A);
	assert_int_equal(find(packed, "refs/heads/nested", &r, &ch), GIT_REFS_MISSING);
	assert_int_equal(ch, 1);
	assert_int_equal(find(packed, "refs/heads/nes", &r, &ch), GIT_REFS_MISSING);
	assert_int_equal(ch, 0);
	assert_int_equal(find("", "refs/heads/main", &r, &ch), GIT_REFS_MISSING);
	/* lines git does not write */
	assert_int_equal(find("^" A "\n", "refs/heads/main", &r, NULL), GIT_REFS_UNSURE);
	assert_int_equal(find(A " refs/heads/main", "refs/heads/main", &r, NULL), GIT_REFS_UNSURE);
	/* an entry below the name that git would call broken */
	assert_int_equal(find(A " refs/heads/x/ bad\n", "refs/heads/x", &r, &ch), GIT_REFS_UNSURE);
	assert_int_equal(find(A " refs/heads/x/n\xc3\xa4me\n", "refs/heads/x", &r, &ch), GIT_REFS_UNSURE);
	assert_int_equal(find("garbage\n", "refs/heads/main", &r, NULL), GIT_REFS_UNSURE);
	assert_int_equal(find(A " refs/heads/a\n# comment\n", "refs/heads/a", &r, NULL), GIT_REFS_UNSURE);
	assert_int_equal(find(A " refs/heads/a\n" B " refs/heads/a\n", "refs/heads/a", &r, NULL), GIT_REFS_UNSURE);
}

/* a throw-away git dir with the given files */
static void put(const char *dir, const char *rel, const char *content)
{
	struct strbuf p = STRBUF_INIT;
	FILE *f;
	char *slash;
	strbuf_addf(&p, "%s/%s", dir, rel);
	for (slash = strchr(p.buf + strlen(dir) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		mkdir(p.buf, 0700);
		*slash = '/';
	}
	f = fopen(p.buf, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
	strbuf_release(&p);
}

static void test_files(void **state)
{
	char dir[] = "/tmp/test-git-refs.XXXXXX";
	struct git_ref r;
	int ch;
	(void)state;
	assert_non_null(mkdtemp(dir));
	/* not a git dir yet: no HEAD */
	assert_int_equal(git_refs_read(dir, "refs/heads/main", 15, &r, NULL), GIT_REFS_UNSURE);
	put(dir, "HEAD", "ref: refs/heads/main\n");
	put(dir, "packed-refs", "# pack-refs with: peeled fully-peeled sorted \n" A " refs/heads/main\n" B " refs/heads/old\n");
	put(dir, "refs/heads/main", C "\n");
	put(dir, "refs/heads/main.lock", "torn");
	put(dir, "refs/heads/link", "ref: refs/heads/old\n");
	put(dir, "refs/heads/dangling", "ref: refs/heads/none\n");
	put(dir, "refs/heads/d/x", A "\n");

	assert_int_equal(git_refs_read(dir, "HEAD", 4, &r, NULL), GIT_REFS_FOUND);
	assert_string_equal(r.target, "refs/heads/main");
	/* loose wins over packed, the lock file is not looked at */
	assert_int_equal(git_refs_read(dir, "refs/heads/main", 15, &r, &ch), GIT_REFS_FOUND);
	assert_string_equal(r.oid, C);
	assert_int_equal(git_refs_read(dir, "refs/heads/old", 14, &r, NULL), GIT_REFS_FOUND);
	assert_string_equal(r.oid, B);
	assert_int_equal(git_refs_resolve(dir, "HEAD", 4, &r), GIT_REFS_FOUND);
	assert_string_equal(r.oid, C);
	assert_int_equal(git_refs_resolve(dir, "refs/heads/link", 15, &r), GIT_REFS_FOUND);
	assert_string_equal(r.oid, B);
	assert_string_equal(r.target, "refs/heads/old");
	assert_int_equal(git_refs_resolve(dir, "refs/heads/dangling", 19, &r), GIT_REFS_MISSING);
	/* a directory is not a ref, but there are refs below it */
	assert_int_equal(git_refs_read(dir, "refs/heads/d", 12, &r, &ch), GIT_REFS_MISSING);
	assert_int_equal(ch, 1);
	/* through a file: not a ref */
	assert_int_equal(git_refs_read(dir, "refs/heads/main/x", 17, &r, &ch), GIT_REFS_MISSING);
	/* a malformed loose file, or a reftable repository: ask git */
	put(dir, "refs/heads/bad", "nonsense\n");
	assert_int_equal(git_refs_read(dir, "refs/heads/bad", 14, &r, NULL), GIT_REFS_UNSURE);
	put(dir, "refs/heads/self", "ref: refs/heads/self\n");
	assert_int_equal(git_refs_resolve(dir, "refs/heads/self", 15, &r), GIT_REFS_UNSURE);
	put(dir, "reftable/tables.list", "");
	assert_int_equal(git_refs_read(dir, "refs/heads/main", 15, &r, NULL), GIT_REFS_UNSURE);
	{
		struct strbuf cmd = STRBUF_INIT;
		strbuf_addf(&cmd, "rm -rf '%s'", dir);
		assert_int_equal(system(cmd.buf), 0);
		strbuf_release(&cmd);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_loose),
		cmocka_unit_test(test_packed),
		cmocka_unit_test(test_files),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
