/* Unit tests for lib/base/strbuf: growth, formatting, detach, remove_front, JSON strings. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/strbuf.h"

/* The invariants every strbuf keeps, whatever was done to it. */
static void check_invariants(const struct strbuf *sb)
{
	assert_non_null(sb->buf);
	assert_int_equal(sb->buf[sb->len], '\0');
	if (sb->alloc)
		assert_true(sb->len < sb->alloc);
	else
		assert_int_equal(sb->len, 0);
}

static void test_init(void **state)
{
	struct strbuf sb = STRBUF_INIT;

	/* A fresh strbuf is a valid empty string without any allocation. */
	check_invariants(&sb);
	assert_string_equal(sb.buf, "");
	assert_int_equal(sb.alloc, 0);
	strbuf_release(&sb);
	strbuf_release(&sb); /* releasing twice is harmless */
	check_invariants(&sb);

	strbuf_init(&sb, 100);
	check_invariants(&sb);
	assert_true(sb.alloc >= 101);
	assert_int_equal(sb.len, 0);
	assert_string_equal(sb.buf, "");
	strbuf_release(&sb);
	assert_int_equal(sb.alloc, 0);
	assert_int_equal(sb.len, 0);
	check_invariants(&sb);

	strbuf_init(&sb, 0);
	assert_int_equal(sb.alloc, 0);
	check_invariants(&sb);
}

static void test_add(void **state)
{
	struct strbuf sb = STRBUF_INIT;

	strbuf_add(&sb, "", 0);
	check_invariants(&sb);
	assert_int_equal(sb.len, 0);

	strbuf_add(&sb, "abc", 3);
	strbuf_addstr(&sb, "def");
	strbuf_addch(&sb, 'g');
	check_invariants(&sb);
	assert_int_equal(sb.len, 7);
	assert_string_equal(sb.buf, "abcdefg");

	/* Bytes are bytes: NULs are kept and counted. */
	strbuf_add(&sb, "x\0y", 3);
	strbuf_addch(&sb, '\0');
	check_invariants(&sb);
	assert_int_equal(sb.len, 11);
	assert_memory_equal(sb.buf, "abcdefgx\0y\0", 12);

	/* Many small appends reallocate along the way and keep every byte. */
	strbuf_reset(&sb);
	for (int i = 0; i < 10000; i++)
		strbuf_addch(&sb, 'a' + i % 26);
	check_invariants(&sb);
	assert_int_equal(sb.len, 10000);
	for (int i = 0; i < 10000; i++)
		assert_int_equal(sb.buf[i], 'a' + i % 26);
	strbuf_release(&sb);
}

static void test_setlen_reset(void **state)
{
	struct strbuf sb = STRBUF_INIT;

	strbuf_reset(&sb); /* on the shared empty buffer */
	check_invariants(&sb);
	strbuf_addstr(&sb, "hello world");
	strbuf_setlen(&sb, 5);
	check_invariants(&sb);
	assert_string_equal(sb.buf, "hello");
	strbuf_reset(&sb);
	check_invariants(&sb);
	assert_string_equal(sb.buf, "");
	assert_true(sb.alloc > 0); /* the memory is kept for reuse */
	strbuf_release(&sb);
}

static void test_grow(void **state)
{
	struct strbuf sb = STRBUF_INIT;
	char *before;

	strbuf_grow(&sb, 0);
	check_invariants(&sb);
	assert_true(sb.alloc >= 1);

	strbuf_addstr(&sb, "abc");
	strbuf_grow(&sb, 1000);
	check_invariants(&sb);
	assert_string_equal(sb.buf, "abc");
	assert_true(sb.alloc >= 3 + 1000 + 1);

	/* After grow(n), adding up to n bytes does not move the buffer. */
	before = sb.buf;
	for (int i = 0; i < 1000; i++)
		strbuf_addch(&sb, 'x');
	assert_ptr_equal(sb.buf, before);
	assert_int_equal(sb.len, 1003);
	check_invariants(&sb);

	/* Growing less than what is free changes nothing. */
	size_t alloc = sb.alloc;
	strbuf_setlen(&sb, 0);
	strbuf_grow(&sb, 10);
	assert_int_equal(sb.alloc, alloc);
	assert_ptr_equal(sb.buf, before);
	strbuf_release(&sb);
}

/* Run `fn` in a child; return its wait status (killed by SIGALRM if it hangs). */
static int run_in_child(void (*fn)(void))
{
	int status = 0;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		/* die() writes "fatal: ..." to stderr; keep the test output clean. */
		int devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0)
			dup2(devnull, 2);
		alarm(5);
		fn();
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static void grow_huge_nonempty(void)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, "hello");
	strbuf_grow(&sb, SIZE_MAX - 10);
}

static void grow_wrapping_nonempty(void)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, "hello");
	strbuf_grow(&sb, SIZE_MAX - 2); /* len + extra + 1 wraps to 3 */
}

static void grow_wrapping_empty(void)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_grow(&sb, SIZE_MAX); /* len + extra + 1 wraps to 0 */
}

/*
 * A size that cannot be allocated must stop the program ("strbuf overflow"
 * via die(), or out of memory via abort()), never return a buffer smaller
 * than asked for, and never hang.
 */
static void test_grow_overflow(void **state)
{
	int status;

	status = run_in_child(grow_wrapping_nonempty);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);

	status = run_in_child(grow_wrapping_empty);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		print_message("strbuf_grow(SIZE_MAX) on an empty strbuf returned\n");
	assert_false(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	status = run_in_child(grow_huge_nonempty);
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
		print_message("strbuf_grow(SIZE_MAX - 10) did not return within 5 s\n");
	assert_false(WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM);
	assert_false(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_addf(void **state)
{
	struct strbuf sb = STRBUF_INIT;
	char big[5000];

	strbuf_addf(&sb, "%d-%s-%c", 42, "abc", 'z');
	check_invariants(&sb);
	assert_string_equal(sb.buf, "42-abc-z");
	strbuf_addf(&sb, "%s", "");
	assert_string_equal(sb.buf, "42-abc-z");
	assert_int_equal(sb.len, 8);

	/* Longer than the first guess: formatted a second time into a bigger buffer. */
	memset(big, 'q', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	strbuf_addf(&sb, "[%s]", big);
	check_invariants(&sb);
	assert_int_equal(sb.len, 8 + 2 + 4999);
	assert_memory_equal(sb.buf, "42-abc-z[qqq", 12);
	assert_int_equal(sb.buf[sb.len - 1], ']');
	assert_int_equal(sb.buf[sb.len - 2], 'q');

	/* Output that exactly fills the free space, then one byte more. */
	strbuf_release(&sb);
	strbuf_grow(&sb, 0);
	{
		size_t room = sb.alloc - 1;
		memset(big, 'r', room);
		big[room] = '\0';
		strbuf_addf(&sb, "%s", big);
		check_invariants(&sb);
		assert_int_equal(sb.len, room);
		strbuf_addf(&sb, "%s", "s");
		check_invariants(&sb);
		assert_int_equal(sb.len, room + 1);
		assert_int_equal(sb.buf[room], 's');
	}
	strbuf_release(&sb);

	/* Many formatted appends in a row. */
	for (int i = 0; i < 1000; i++)
		strbuf_addf(&sb, "%04d,", i);
	check_invariants(&sb);
	assert_int_equal(sb.len, 5000);
	assert_memory_equal(sb.buf + 4995, "0999,", 5);
	strbuf_release(&sb);
}

static void test_detach(void **state)
{
	struct strbuf sb = STRBUF_INIT;
	size_t len = 99;
	char *s;

	strbuf_addstr(&sb, "owned");
	s = strbuf_detach(&sb, &len);
	assert_string_equal(s, "owned");
	assert_int_equal(len, 5);
	/* The strbuf is empty and usable again; the string is the caller's. */
	check_invariants(&sb);
	assert_int_equal(sb.len, 0);
	assert_int_equal(sb.alloc, 0);
	strbuf_addstr(&sb, "again");
	assert_string_equal(s, "owned");
	free(s);

	/* Detaching a never-allocated strbuf still hands out freeable memory. */
	strbuf_release(&sb);
	s = strbuf_detach(&sb, &len);
	assert_non_null(s);
	assert_string_equal(s, "");
	assert_int_equal(len, 0);
	assert_true(s != strbuf_slopbuf);
	free(s);

	strbuf_addstr(&sb, "no len");
	s = strbuf_detach(&sb, NULL);
	assert_string_equal(s, "no len");
	free(s);
	check_invariants(&sb);
}

static void test_remove_front(void **state)
{
	struct strbuf sb = STRBUF_INIT;

	strbuf_remove_front(&sb, 0);
	strbuf_remove_front(&sb, 5); /* nothing to remove */
	check_invariants(&sb);

	strbuf_addstr(&sb, "0123456789");
	strbuf_remove_front(&sb, 0);
	assert_string_equal(sb.buf, "0123456789");
	strbuf_remove_front(&sb, 3);
	check_invariants(&sb);
	assert_int_equal(sb.len, 7);
	assert_string_equal(sb.buf, "3456789");
	strbuf_remove_front(&sb, 6);
	assert_string_equal(sb.buf, "9");
	strbuf_remove_front(&sb, 1);
	check_invariants(&sb);
	assert_int_equal(sb.len, 0);

	strbuf_addstr(&sb, "abc");
	strbuf_remove_front(&sb, 100);
	check_invariants(&sb);
	assert_int_equal(sb.len, 0);

	/* As a consumed-input queue: binary data, partial removals. */
	strbuf_add(&sb, "a\0b\0c", 5);
	strbuf_remove_front(&sb, 2);
	assert_int_equal(sb.len, 3);
	assert_memory_equal(sb.buf, "b\0c", 4);
	strbuf_release(&sb);
}

static void check_json(const char *in, size_t len, const char *want)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_add_json_string(&sb, in, len);
	check_invariants(&sb);
	assert_string_equal(sb.buf, want);
	strbuf_release(&sb);
}

static void test_json_string(void **state)
{
	check_json("", 0, "\"\"");
	check_json("plain text", 10, "\"plain text\"");
	check_json("say \"hi\"", 8, "\"say \\\"hi\\\"\"");
	check_json("C:\\dir", 6, "\"C:\\\\dir\"");
	check_json("a\nb\rc\td", 7, "\"a\\nb\\rc\\td\"");
	/* Other control characters as \u00XX, lower-case hex. */
	check_json("\x01\x08\x0c\x1b\x1f", 5, "\"\\u0001\\u0008\\u000c\\u001b\\u001f\"");
	/* A NUL inside the length is data, not the end. */
	check_json("a\0b", 3, "\"a\\u0000b\"");
	/* Space, DEL and '/' need no escaping in JSON. */
	check_json(" \x7f/", 3, "\" \x7f/\"");
	/* UTF-8 passes through unchanged. */
	check_json("caf\xc3\xa9 \xf0\x9f\x98\x80", 10, "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"");

	/* Appends to what is already there. */
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, "{\"k\":");
	strbuf_add_json_string(&sb, "v", 1);
	strbuf_addch(&sb, '}');
	assert_string_equal(sb.buf, "{\"k\":\"v\"}");
	strbuf_release(&sb);

	/* Every byte below 0x20 is escaped: the output never holds a raw control character. */
	char all[32];
	for (int i = 0; i < 32; i++)
		all[i] = (char)i;
	strbuf_add_json_string(&sb, all, sizeof(all));
	for (size_t i = 0; i < sb.len; i++)
		assert_true((unsigned char)sb.buf[i] >= 0x20);
	assert_int_equal(sb.len, 2 + 3 * 2 + 29 * 6); /* only \t, \n and \r have short forms */
	strbuf_release(&sb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_add),
		cmocka_unit_test(test_setlen_reset),
		cmocka_unit_test(test_grow),
		cmocka_unit_test(test_grow_overflow),
		cmocka_unit_test(test_addf),
		cmocka_unit_test(test_detach),
		cmocka_unit_test(test_remove_front),
		cmocka_unit_test(test_json_string),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
