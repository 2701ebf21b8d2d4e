/* Unit tests for gitaly/transport/sidechannel_parse.c: deframing and negotiation statistics, whole and byte by byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "transport/sidechannel_parse.h"

#define OID "1111111111111111111111111111111111111111"

static void collect(void *arg, const char *p, size_t n)
{
	strbuf_add(arg, p, n);
}

/* Deframe `in` fed in pieces of `step` bytes; returns the bytes consumed in all. */
static size_t deframe(const char *in, size_t len, size_t step, struct sc_deframe *st, struct strbuf *out)
{
	size_t used = 0;
	memset(st, 0, sizeof(*st));
	for (size_t at = 0; at < len; at += step) {
		size_t n = len - at < step ? len - at : step;
		size_t u = sc_deframe_feed(st, in + at, n, collect, out);
		used += u;
		if (u < n)
			break;
	}
	return used;
}

static void test_deframe_data_then_flush(void **state)
{
	static const char in[] = "0009hello0004000aworld!0000trailing";
	for (size_t step = 1; step <= sizeof(in); step++) {
		struct sc_deframe st;
		struct strbuf out = STRBUF_INIT;
		size_t used = deframe(in, sizeof(in) - 1, step, &st, &out);
		assert_int_equal(st.state, SC_DF_FLUSHED);
		assert_int_equal(used, strlen("0009hello0004000aworld!0000"));
		assert_int_equal(out.len, 11);
		assert_memory_equal(out.buf, "helloworld!", 11);
		strbuf_release(&out);
	}
}

static void test_deframe_errors(void **state)
{
	static const char *const bad[] = { "zzzz", "0001", "0002", "0003", "fff1", "0005x000g" };
	static const char *const why[] = { "invalid length header", "invalid header 1", "invalid header 2",
					   "invalid header 3", "invalid length: 65521", "invalid length header" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sc_deframe st;
		struct strbuf out = STRBUF_INIT;
		deframe(bad[i], strlen(bad[i]), 1, &st, &out);
		assert_int_equal(st.state, SC_DF_ERROR);
		assert_string_equal(st.err, why[i]);
		strbuf_release(&out);
	}
}

static void stats_of(const char *in, size_t step, struct sc_stats *s)
{
	size_t len = strlen(in);
	sc_stats_init(s);
	for (size_t at = 0; at < len; at += step)
		sc_stats_feed(s, in + at, len - at < step ? len - at : step);
	sc_stats_finish(s);
}

static void pkt(struct strbuf *sb, const char *line)
{
	strbuf_addf(sb, "%04zx%s", strlen(line) + 4, line);
}

static void test_stats_v0_fetch(void **state)
{
	struct strbuf in = STRBUF_INIT;
	pkt(&in, "want " OID " multi_ack side-band-64k\n");
	pkt(&in, "want " OID "\n");
	pkt(&in, "shallow " OID "\n");
	pkt(&in, "deepen 3\n");
	pkt(&in, "filter blob:none\n");
	strbuf_addstr(&in, "0000");
	pkt(&in, "have " OID "\n");
	pkt(&in, "done\n");
	pkt(&in, "have " OID "\n");   /* after done: not counted */
	for (size_t step = 1; step <= in.len; step += 3) {
		struct sc_stats s;
		stats_of(in.buf, step, &s);
		assert_false(s.failed);
		assert_true(s.saw_done);
		assert_int_equal(s.wants, 2);
		assert_int_equal(s.haves, 1);
		assert_int_equal(s.shallows, 1);
		assert_int_equal(s.packets, 7);   /* done is not counted; the flush is */
		/* payloads without their newline; done's included */
		assert_int_equal(s.payload_size, 69 + 45 + 48 + 8 + 16 + 0 + 45 + 4);
		assert_int_equal(s.caps.nr, 2);
		assert_string_equal(s.caps.v[0], "multi_ack");
		assert_string_equal(s.caps.v[1], "side-band-64k");
		assert_string_equal(s.deepen.buf, "deepen 3");
		assert_string_equal(s.filter.buf, "blob:none");
		sc_stats_release(&s);
	}
	strbuf_release(&in);
}

static void test_stats_failures(void **state)
{
	static const char *const bad[] = {
		"0000",                                   /* no want */
		"0009want\n0000",                         /* want without an id */
		"0010want x cap1\n0010want y cap2\n",    /* capabilities twice */
		"000fdeepen 1 2\n",                       /* deepen with two arguments */
		"zzzz",                                   /* not pkt-line */
		("0032want " OID),                        /* ends inside a packet */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sc_stats s;
		stats_of(bad[i], 1, &s);
		assert_true(s.failed);
		sc_stats_release(&s);
	}
}

static void test_stats_done_must_be_a_whole_packet(void **state)
{
	struct sc_stats s;
	stats_of("0032want " OID "\n000adone\n\n", 1, &s);
	assert_false(s.saw_done);
	sc_stats_release(&s);
	stats_of("0032want " OID "\n0008done", 2, &s);
	assert_false(s.saw_done);
	assert_true(s.stopped);   /* but "done" without newline still ends the counting, as upstream's chomp */
	sc_stats_release(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_deframe_data_then_flush),
		cmocka_unit_test(test_deframe_errors),
		cmocka_unit_test(test_stats_v0_fetch),
		cmocka_unit_test(test_stats_failures),
		cmocka_unit_test(test_stats_done_must_be_a_whole_packet),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
