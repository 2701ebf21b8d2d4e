/* Unit tests: gRPC message framing and reassembly. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <stdlib.h>
#include <cmocka.h>

#include "grpc/frame.h"

static void push_msg(struct strbuf *wire, const char *m, size_t len)
{
	uint8_t h[GRPC_FRAME_HEADER];
	grpc_frame_header(h, len);
	strbuf_add(wire, h, sizeof(h));
	strbuf_add(wire, m, len);
}

static void test_header(void **state)
{
	uint8_t h[5];
	grpc_frame_header(h, 0x01020304);
	assert_memory_equal(h, "\x00\x01\x02\x03\x04", 5);
}

/* Messages split at every possible byte boundary come out whole and in order. */
static void test_reassembly_any_split(void **state)
{
	struct strbuf wire = STRBUF_INIT;
	push_msg(&wire, "hello", 5);
	push_msg(&wire, "", 0);
	push_msg(&wire, "world!", 6);

	for (size_t step = 1; step <= wire.len; step++) {
		struct grpc_framer f;
		const char *want[] = { "hello", "", "world!" };
		size_t got = 0;
		grpc_framer_init(&f, 1024);
		for (size_t off = 0; off < wire.len; off += step) {
			const uint8_t *msg;
			size_t len;
			grpc_framer_push(&f, wire.buf + off, off + step > wire.len ? wire.len - off : step);
			while (grpc_framer_peek(&f, &msg, &len) == 1) {
				assert_true(got < 3);
				assert_int_equal(len, strlen(want[got]));
				assert_memory_equal(msg, want[got], len);
				assert_int_equal(grpc_framer_consume(&f), 5 + len);
				got++;
			}
		}
		assert_int_equal(got, 3);
		assert_int_equal(grpc_framer_buffered(&f), 0);
		grpc_framer_release(&f);
	}
	strbuf_release(&wire);
}

static void test_too_large(void **state)
{
	struct grpc_framer f;
	const uint8_t *msg;
	size_t len = 0;
	uint8_t h[5];

	grpc_framer_init(&f, 100);
	grpc_frame_header(h, 101);
	grpc_framer_push(&f, h, 5);
	/* refused from the header alone, before any payload is buffered */
	assert_int_equal(grpc_framer_peek(&f, &msg, &len), -EMSGSIZE);
	assert_int_equal(len, 101);
	grpc_framer_release(&f);

	grpc_framer_init(&f, 100);
	grpc_frame_header(h, 100);
	grpc_framer_push(&f, h, 5);
	assert_int_equal(grpc_framer_peek(&f, &msg, &len), 0);
	grpc_framer_release(&f);
}

static void test_compressed_refused(void **state)
{
	struct grpc_framer f;
	const uint8_t *msg;
	size_t len;
	grpc_framer_init(&f, 100);
	grpc_framer_push(&f, "\x01\x00\x00\x00\x01x", 6);
	assert_int_equal(grpc_framer_peek(&f, &msg, &len), -EPROTO);
	grpc_framer_release(&f);
}

/* A long stream of messages never accumulates consumed bytes. */
static void test_memory_stays_bounded(void **state)
{
	struct grpc_framer f;
	char payload[1000];
	struct strbuf one = STRBUF_INIT;
	memset(payload, 'x', sizeof(payload));
	push_msg(&one, payload, sizeof(payload));
	grpc_framer_init(&f, 4096);
	for (int i = 0; i < 10000; i++) {
		const uint8_t *msg;
		size_t len;
		grpc_framer_push(&f, one.buf, 700);
		grpc_framer_push(&f, one.buf + 700, one.len - 700);
		assert_int_equal(grpc_framer_peek(&f, &msg, &len), 1);
		grpc_framer_consume(&f);
		assert_true(f.buf.alloc < 8192);
	}
	grpc_framer_release(&f);
	strbuf_release(&one);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header),
		cmocka_unit_test(test_reassembly_any_split),
		cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_compressed_refused),
		cmocka_unit_test(test_memory_stays_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
