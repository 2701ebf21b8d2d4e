/* Unit tests: the string-keyed hash map (growth, removal, tombstones, iteration). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "base/hashmap.h"

static void test_put_get_remove(void **state)
{
	struct hashmap m = HASHMAP_INIT;
	char key[32];
	for (intptr_t i = 0; i < 10000; i++) {
		snprintf(key, sizeof(key), "default\x1f@hashed/%ld.git", (long)i);
		assert_null(hashmap_put(&m, key, strlen(key), (void *)(i + 1)));
	}
	assert_int_equal(m.nr, 10000);
	for (intptr_t i = 0; i < 10000; i += 2) {
		snprintf(key, sizeof(key), "default\x1f@hashed/%ld.git", (long)i);
		assert_ptr_equal(hashmap_remove(&m, key, strlen(key)), (void *)(i + 1));
	}
	for (intptr_t i = 0; i < 10000; i++) {
		snprintf(key, sizeof(key), "default\x1f@hashed/%ld.git", (long)i);
		assert_ptr_equal(hashmap_get(&m, key, strlen(key)), i % 2 ? (void *)(i + 1) : NULL);
	}
	/* replace returns the old value */
	assert_ptr_equal(hashmap_put(&m, key, strlen(key), (void *)7), (void *)10000);
	assert_int_equal(m.nr, 5000);
	/* churn through tombstones without unbounded growth */
	for (intptr_t i = 0; i < 100000; i++) {
		snprintf(key, sizeof(key), "tmp-%ld", (long)i);
		hashmap_put(&m, key, strlen(key), (void *)1);
		hashmap_remove(&m, key, strlen(key));
	}
	assert_true(m.cap <= 16384);
	hashmap_release(&m);
}

static void test_iterate(void **state)
{
	struct hashmap m = HASHMAP_INIT;
	const struct hashmap_entry *e;
	size_t n = 0, sum = 0;
	hashmap_put(&m, "a", 1, (void *)1);
	hashmap_put(&m, "b", 1, (void *)2);
	hashmap_put(&m, "", 0, (void *)4); /* empty key is a key */
	for (size_t i = 0; hashmap_next(&m, &i, &e);) {
		n++;
		sum += (size_t)e->value;
	}
	assert_int_equal(n, 3);
	assert_int_equal(sum, 7);
	assert_ptr_equal(hashmap_get(&m, "", 0), (void *)4);
	hashmap_release(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_remove),
		cmocka_unit_test(test_iterate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
