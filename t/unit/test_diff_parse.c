/* Unit tests for gitaly/read/diff_parse.c: raw lines, headers, type changes, unescaping, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "read/diff_parse.h"

#define A40 "1111111111111111111111111111111111111111"
#define B40 "2222222222222222222222222222222222222222"
#define Z40 "0000000000000000000000000000000000000000"

struct got {
	int n;
	struct diff_file f[8];
};

static int keep(void *arg, const struct diff_file *f)
{
	struct got *g = arg;
	struct diff_file *d = &g->f[g->n++];
	*d = *f;
	strbuf_init(&d->from_path, 0);
	strbuf_init(&d->to_path, 0);
	strbuf_init(&d->patch, 0);
	strbuf_add(&d->from_path, f->from_path.buf, f->from_path.len);
	strbuf_add(&d->to_path, f->to_path.buf, f->to_path.len);
	strbuf_add(&d->patch, f->patch.buf, f->patch.len);
	return 0;
}

static void got_release(struct got *g)
{
	for (int i = 0; i < g->n; i++) {
		strbuf_release(&g->f[i].from_path);
		strbuf_release(&g->f[i].to_path);
		strbuf_release(&g->f[i].patch);
	}
}

/* Feed `text` line by line; returns the last result. */
static int run(const char *text, const struct diff_limits *lim, struct got *g, struct strbuf *err)
{
	struct diff_parser p;
	const char *s = text;
	int rc = 0;
	diff_parser_init(&p, 40, lim, keep, g);
	while (*s && rc == 0) {
		const char *nl = strchr(s, '\n');
		size_t len = nl ? (size_t)(nl - s) : strlen(s);
		rc = diff_parser_line(&p, s, len);
		s += len + (nl ? 1 : 0);
	}
	if (rc == 0)
		rc = diff_parser_end(&p);
	if (err)
		strbuf_add(err, p.err.buf, p.err.len);
	diff_parser_release(&p);
	return rc;
}

static void test_modify_and_rename(void **state)
{
	struct got g = { 0 };
	(void)state;
	assert_int_equal(run(":100644 100644 " A40 " " B40 " M\tm.txt\n"
			     ":100644 100755 " A40 " " B40 " R090\told name\tnew\n"
			     "\n"
			     "diff --git a/m.txt b/m.txt\n"
			     "index 1111..2222 100644\n"
			     "--- a/m.txt\n"
			     "+++ b/m.txt\n"
			     "@@ -1 +1 @@\n"
			     "-a\n"
			     "+b\n"
			     "diff --git a/old name b/new\n"
			     "similarity index 90%\n",
			     NULL, &g, NULL), 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.f[0].patch.buf, "@@ -1 +1 @@\n-a\n+b\n");
	assert_int_equal(g.f[0].line_count, 2);
	assert_string_equal(g.f[1].from_path.buf, "old name");
	assert_string_equal(g.f[1].to_path.buf, "new");
	assert_int_equal(g.f[1].new_mode, 0100755);
	assert_int_equal(g.f[1].patch.len, 0);
	got_release(&g);
}

static void test_type_change_is_deletion_then_addition(void **state)
{
	struct got g = { 0 };
	(void)state;
	assert_int_equal(run(":100644 120000 " A40 " " B40 " T\tt\n", NULL, &g, NULL), 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.f[0].to_id, Z40);
	assert_int_equal(g.f[0].new_mode, 0);
	assert_string_equal(g.f[1].from_id, Z40);
	assert_string_equal(g.f[1].to_id, B40);
	assert_int_equal(g.f[1].old_mode, 0);
	assert_int_equal(g.f[1].new_mode, 0120000);
	assert_int_equal(g.f[1].status, 'A');
	got_release(&g);
}

static void test_quoted_paths_are_unescaped(void **state)
{
	struct got g = { 0 };
	struct strbuf sb = STRBUF_INIT;
	(void)state;
	assert_int_equal(run(":100644 100644 " A40 " " B40 " M\t\"f\\303\\251\\t.txt\"\n\n"
			     "diff --git \"a/f\\303\\251\\t.txt\" \"b/f\\303\\251\\t.txt\"\n"
			     "@@ -1 +1 @@\n-x\n+y\n", NULL, &g, NULL), 0);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.f[0].from_path.buf, "f\xc3\xa9\t.txt");
	assert_string_equal(g.f[0].patch.buf, "@@ -1 +1 @@\n-x\n+y\n");
	diff_unescape(&sb, "\\q\\999\\\\", 8);
	assert_string_equal(sb.buf, "\\q\\999\\");
	strbuf_release(&sb);
	got_release(&g);
}

static void test_max_files_overflow_ends_the_parse(void **state)
{
	struct diff_limits lim = { .enforce = 1, .max_files = 1, .max_lines = 100, .max_bytes = 1000,
				   .max_patch_bytes = 1000 };
	struct got g = { 0 };
	(void)state;
	assert_int_equal(run(":100644 100644 " A40 " " B40 " M\ta\n"
			     ":100644 100644 " A40 " " B40 " M\tb\n"
			     ":100644 100644 " A40 " " B40 " M\tc\n\n"
			     "diff --git a/a b/a\n@@ -1 +1 @@\n-1\n+2\n"
			     "diff --git a/b b/b\n@@ -1 +1 @@\n-1\n+2\n"
			     "diff --git a/c b/c\n@@ -1 +1 @@\n-1\n+2\n", &lim, &g, NULL), 1);
	assert_int_equal(g.n, 2);
	assert_false(g.f[0].overflow);
	assert_true(g.f[1].overflow);
	assert_int_equal(g.f[1].from_path.len, 0);
	assert_string_equal(g.f[1].from_id, "");
	got_release(&g);
}

static void test_extension_limit_by_base_name(void **state)
{
	static const struct diff_ext_limit ext[] = { { "Makefile", 1 }, { ".c", 1000 } };
	struct diff_limits lim = { .enforce = 1, .max_files = 10, .max_lines = 100, .max_bytes = 1000,
				   .max_patch_bytes = 1, .ext = ext, .n_ext = 2 };
	struct got g = { 0 };
	(void)state;
	assert_int_equal(run(":100644 100644 " A40 " " B40 " M\tdir/Makefile\n"
			     ":100644 100644 " A40 " " B40 " M\tsrc/x.c\n\n"
			     "diff --git a/dir/Makefile b/dir/Makefile\n@@ -1 +1 @@\n-1\n+2\n"
			     "diff --git a/src/x.c b/src/x.c\n@@ -1 +1 @@\n-1\n+2\n", &lim, &g, NULL), 0);
	assert_int_equal(g.n, 2);
	assert_true(g.f[0].too_large);
	assert_int_equal(g.f[0].patch.len, 0);
	assert_false(g.f[1].too_large);
	got_release(&g);
}

static void test_bad_input_fails(void **state)
{
	struct strbuf err = STRBUF_INIT;
	struct got g = { 0 };
	(void)state;
	assert_int_equal(run(":100644 100644 short ids M\tx\n", NULL, &g, &err), -1);
	assert_string_equal(err.buf, "raw line regexp mismatch");
	strbuf_reset(&err);
	assert_int_equal(run(":100644 100644 " A40 " " B40 " M\tx\n\nnot a header\n", NULL, &g, &err), -1);
	assert_string_equal(err.buf, "diff header regexp mismatch");
	strbuf_reset(&err);
	assert_int_equal(run(":100894 100644 " A40 " " B40 " M\tx\n", NULL, &g, &err), -1);
	assert_non_null(strstr(err.buf, "raw old mode"));
	strbuf_release(&err);
	got_release(&g);
}

/* Like run(), but every line longer than `piece` comes in pieces of `piece` bytes first. */
static int run_pieces(const char *text, size_t piece, const struct diff_limits *lim, struct got *g,
		      struct strbuf *err)
{
	struct diff_parser p;
	const char *s = text;
	int rc = 0;
	diff_parser_init(&p, 40, lim, keep, g);
	while (*s && rc == 0) {
		const char *nl = strchr(s, '\n');
		size_t len = nl ? (size_t)(nl - s) : strlen(s), off = 0;
		while (rc == 0 && len - off > piece) {
			rc = diff_parser_fragment(&p, s + off, piece);
			off += piece;
		}
		if (rc == 0)
			rc = diff_parser_line(&p, s + off, len - off);
		s += len + (nl ? 1 : 0);
	}
	if (rc == 0)
		rc = diff_parser_end(&p);
	if (err)
		strbuf_add(err, p.err.buf, p.err.len);
	diff_parser_release(&p);
	return rc;
}

static void test_lines_in_pieces(void **state)
{
	static const char text[] =
		":100644 100644 " A40 " " B40 " M\tsome/long/path/name.txt\n"
		":000000 100644 " Z40 " " B40 " A\tbin\n"
		"\n"
		"diff --git a/some/long/path/name.txt b/some/long/path/name.txt\n"
		"index 1111..2222 100644\n"
		"--- a/some/long/path/name.txt\n"
		"+++ b/some/long/path/name.txt\n"
		"@@ -1,2 +1,2 @@ a function context\n"
		" a context line that is long enough\n"
		"-a removed line that is long enough\n"
		"+an added line that is long enough too\n"
		"diff --git a/bin b/bin\n"
		"Binary files /dev/null and b/bin differ\n";
	struct diff_limits lim = { .enforce = 1, .max_files = 10, .max_lines = 4, .max_bytes = 1000,
				   .max_patch_bytes = 1000 };
	struct got whole = { 0 };
	(void)state;
	assert_int_equal(run(text, NULL, &whole, NULL), 0);
	assert_int_equal(whole.n, 2);
	for (size_t piece = 1; piece <= 12; piece++) {
		struct got g = { 0 }, gl = { 0 }, wl = { 0 };
		assert_int_equal(run_pieces(text, piece, NULL, &g, NULL), 0);
		assert_int_equal(g.n, 2);
		for (int i = 0; i < 2; i++) {
			assert_string_equal(g.f[i].to_path.buf, whole.f[i].to_path.buf);
			assert_int_equal(g.f[i].patch.len, whole.f[i].patch.len);
			assert_memory_equal(g.f[i].patch.buf, whole.f[i].patch.buf, whole.f[i].patch.len);
			assert_int_equal(g.f[i].binary, whole.f[i].binary);
		}
		assert_true(g.f[1].binary);
		/* the counts are the same: the binary line is the fourth counted line, an overflow */
		assert_int_equal(run(text, &lim, &wl, NULL), 1);
		assert_int_equal(run_pieces(text, piece, &lim, &gl, NULL), 1);
		assert_int_equal(gl.n, wl.n);
		assert_true(gl.f[gl.n - 1].overflow && wl.f[wl.n - 1].overflow);
		got_release(&g);
		got_release(&gl);
		got_release(&wl);
	}
	got_release(&whole);
}

static void test_long_lines(void **state)
{
	size_t big = DIFF_LINE_MAX + 10, piece = 64 * 1024;
	struct diff_parser p;
	struct got g = { 0 };
	char *fill = malloc(piece);
	int rc = 0;
	(void)state;
	memset(fill, 'x', piece);
	diff_parser_init(&p, 40, NULL, keep, &g);
	const char *raw = ":100644 100644 " A40 " " B40 " M\tf";
	assert_int_equal(diff_parser_line(&p, raw, strlen(raw)), 0);
	assert_int_equal(diff_parser_line(&p, "", 0), 0);
	assert_int_equal(diff_parser_line(&p, "diff --git a/f b/f", 18), 0);
	assert_int_equal(diff_parser_line(&p, "@@ -1 +1 @@", 11), 0);
	/* a patch line far over DIFF_LINE_MAX is taken: it goes into the patch as it comes */
	assert_int_equal(diff_parser_fragment(&p, "+", 1), 0);
	for (size_t n = 0; n < big; n += piece)
		assert_int_equal(diff_parser_fragment(&p, fill, piece), 0);
	assert_int_equal(diff_parser_line(&p, "end", 3), 0);
	assert_int_equal(diff_parser_end(&p), 0);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.f[0].patch.len, 12 + 1 + ((big + piece - 1) / piece) * piece + 3 + 1);
	assert_int_equal(g.f[0].patch.buf[g.f[0].patch.len - 1], '\n');
	diff_parser_release(&p);
	got_release(&g);
	/* a raw line is held whole: over DIFF_LINE_MAX it fails */
	g.n = 0;
	diff_parser_init(&p, 40, NULL, keep, &g);
	assert_int_equal(diff_parser_fragment(&p, ":", 1), 0);
	for (size_t n = 0; n < big && rc == 0; n += piece)
		rc = diff_parser_fragment(&p, fill, piece);
	assert_int_equal(rc, -1);
	assert_string_equal(p.err.buf, "line too long");
	diff_parser_release(&p);
	free(fill);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_modify_and_rename),
		cmocka_unit_test(test_type_change_is_deletion_then_addition),
		cmocka_unit_test(test_quoted_paths_are_unescaped),
		cmocka_unit_test(test_max_files_overflow_ends_the_parse),
		cmocka_unit_test(test_extension_limit_by_base_name),
		cmocka_unit_test(test_bad_input_fails),
		cmocka_unit_test(test_lines_in_pieces),
		cmocka_unit_test(test_long_lines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
