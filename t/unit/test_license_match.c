/* Unit tests for gitaly/repository/license_match.c: the word edit distance, what normalising ignores, the threshold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "repository/license_match.h"

static const char mit[] =
	"MIT License\n\nCopyright (c) 2020 Example\n\n"
	"Permission is hereby granted, free of charge, to any person obtaining a copy\n"
	"of this software and associated documentation files (the \"Software\"), to deal\n"
	"in the Software without restriction, including without limitation the rights\n"
	"to use, copy, modify, merge, publish, distribute, sublicense, and/or sell\n"
	"copies of the Software, and to permit persons to whom the Software is\n"
	"furnished to do so, subject to the following conditions:\n\n"
	"The above copyright notice and this permission notice shall be included in all\n"
	"copies or substantial portions of the Software.\n\n"
	"THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR\n"
	"IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,\n"
	"FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE\n"
	"AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER\n"
	"LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,\n"
	"OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE\n"
	"SOFTWARE.\n";

/* The textbook dynamic programme, to check the bit-parallel one against. */
static size_t plain(const int *a, size_t n, const int *b, size_t m)
{
	size_t *row = calloc(m + 1, sizeof(*row)), d;
	for (size_t j = 0; j <= m; j++)
		row[j] = j;
	for (size_t i = 1; i <= n; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= m; j++) {
			size_t up = row[j], v = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < v)
				v = up + 1;
			if (row[j - 1] + 1 < v)
				v = row[j - 1] + 1;
			diag = up;
			row[j] = v;
		}
	}
	d = row[m];
	free(row);
	return d;
}

static void test_edit_distance(void **state)
{
	const int kitten[] = { 1, 2, 3, 3, 4, 5 }, sitting[] = { 6, 2, 3, 3, 2, 5, 7 };
	int a[700], b[700];
	(void)state;
	assert_int_equal(lic_edit_distance(kitten, 6, sitting, 7), 3);
	assert_int_equal(lic_edit_distance(kitten, 0, sitting, 7), 7);
	assert_int_equal(lic_edit_distance(kitten, 6, sitting, 0), 6);
	/* -1 in a matches nothing */
	assert_int_equal(lic_edit_distance((const int[]){ -1, 2 }, 2, (const int[]){ 1, 2 }, 2), 1);
	/* across 64-word blocks: substitutions, deletions, insertions, and random pairs */
	srand(1);
	for (int round = 0; round < 200; round++) {
		size_t m = 1 + (size_t)rand() % 690, n = 0;
		for (size_t j = 0; j < m; j++)
			b[j] = rand() % 9;
		for (size_t j = 0; j < m && n < 700; j++) {
			int r = rand() % 20;
			if (r == 0)
				continue;                        /* deleted */
			a[n++] = r == 1 ? 9 : b[j];              /* substituted */
			if (r == 2 && n < 700)
				a[n++] = rand() % 10;            /* inserted */
		}
		if (round % 4 == 3)
			for (size_t i = 0; i < n; i++)
				a[i] = rand() % 9;
		assert_int_equal(lic_edit_distance(a, n, b, m), plain(a, n, b, m));
	}
}

static const struct lic_answer *classify(const char *text, double *conf)
{
	return lic_classify(text, strlen(text), conf);
}

static char *replace(const char *s, const char *from, const char *to)
{
	const char *at = strstr(s, from);
	size_t head, tl = strlen(to), rest;
	char *out;
	assert_non_null(at);
	head = (size_t)(at - s);
	rest = strlen(at + strlen(from));
	out = malloc(head + tl + rest + 1);
	memcpy(out, s, head);
	memcpy(out + head, to, tl);
	memcpy(out + head + tl, at + strlen(from), rest + 1);
	return out;
}

static void test_what_normalising_ignores(void **state)
{
	double conf = 0;
	const struct lic_answer *l;
	char *a, *b, *c;
	(void)state;
	l = classify(mit, &conf);
	assert_non_null(l);
	assert_string_equal(l->id, "mit");
	assert_string_equal(l->url, "https://opensource.org/licenses/MIT");
	assert_true(conf == 1.0);
	/* another copyright line, British spelling, quotes and dashes, list markers, CR LF: all the same text */
	a = replace(mit, "Copyright (c) 2020 Example", "\xc2\xa9 1999-2024 Somebody <s@example.org>\r\nAll rights reserved.");
	b = replace(a, "sublicense", "sub-licence");
	c = replace(b, "The above copyright", "1. The above copyright");
	l = classify(c, &conf);
	assert_non_null(l);
	assert_string_equal(l->id, "mit");
	/* "sub-licence" is two words where MIT has one: one substitution, one insertion */
	assert_true(conf < 1.0 && conf > 0.98);
	free(a);
	free(b);
	free(c);
}

static void test_threshold(void **state)
{
	double conf = 0;
	char text[4096];
	size_t w = 0;
	const struct lic_answer *l;
	(void)state;
	assert_null(classify("", &conf));
	assert_null(classify("this doesn't match any known license", &conf));
	/* every third word of MIT replaced: under 0.75 */
	for (const char *s = mit; *s && w < sizeof(text) - 16;) {
		static int k;
		const char *e = s + strcspn(s, " \n");
		if (++k % 3 == 0)
			w += (size_t)snprintf(text + w, sizeof(text) - w, "zz%d ", k);
		else {
			memcpy(text + w, s, (size_t)(e - s) + (*e != 0));
			w += (size_t)(e - s) + (*e != 0);
		}
		s = *e ? e + 1 : e;
	}
	text[w] = '\0';
	l = classify(text, &conf);
	assert_null(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_edit_distance),
		cmocka_unit_test(test_what_normalising_ignores),
		cmocka_unit_test(test_threshold),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
