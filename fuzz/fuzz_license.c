/*
 * libFuzzer target for gitaly/repository/license_match.c. Any bytes as a
 * license file: an answer is a carried text's with a confidence in
 * [LIC_THRESHOLD, 1], and asking again gives the same. The bytes also make two
 * short word sequences whose bit-parallel edit distance must equal the
 * textbook dynamic programme's.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "repository/license_match.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t plain_distance(const int *a, size_t n, const int *b, size_t m)
{
	size_t *row = malloc((m + 1) * sizeof(*row)), d;
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	double c1 = 0, c2 = 0;
	const struct lic_answer *l1 = lic_classify((const char *)data, size, &c1);
	const struct lic_answer *l2 = lic_classify((const char *)data, size, &c2);
	size_t half = size / 2, n = half < 300 ? half : 300, m = size - half < 300 ? size - half : 300;
	int *a = malloc((n + 1) * sizeof(*a)), *b = malloc((m + 1) * sizeof(*b));

	if (l1 != l2 || c1 != c2)
		__builtin_trap();
	if (l1 && (c1 < LIC_THRESHOLD || c1 > 1 || !l1->id || !l1->name || !l1->url || !l1->nickname))
		__builtin_trap();
	/* small alphabets, so that words repeat and match */
	for (size_t i = 0; i < n; i++)
		a[i] = data[i] % 7 == 6 ? -1 : data[i] % 7;
	for (size_t j = 0; j < m; j++)
		b[j] = data[half + j] % 6;
	if (lic_edit_distance(a, n, b, m) != plain_distance(a, n, b, m))
		__builtin_trap();
	free(a);
	free(b);
	return 0;
}
