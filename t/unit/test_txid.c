/* Unit tests for lib/txid: the transaction identity round-trips through every form it travels in. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"
#include "grpc/metadata.h"
#include "txid/txid.h"

static void make(struct txid *t, uint64_t id, const char *node, int primary, uint64_t bc)
{
	memset(t, 0, sizeof(*t));
	t->id = id;
	snprintf(t->node, sizeof(t->node), "%s", node);
	t->primary = primary;
	t->backchannel_id = bc;
}

static void assert_same(const struct txid *a, const struct txid *b)
{
	assert_int_equal(a->id, b->id);
	assert_string_equal(a->node, b->node);
	assert_int_equal(!!a->primary, !!b->primary);
	assert_int_equal(a->backchannel_id, b->backchannel_id);
}

/* What praefect encodes, gitaly decodes: id, node and role; never a backchannel. */
static void test_metadata_round_trip(void **state)
{
	static const struct { uint64_t id; const char *node; int primary; } cases[] = {
		{ 0, "", 0 },
		{ 1, "gitaly-1", 1 },
		{ 42, "storage with \"quotes\" and \\ and \xc3\xa9", 0 },
		{ INT64_MAX, "praefect-internal-0", 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct txid in, out;
		struct strbuf v = STRBUF_INIT;
		make(&in, cases[i].id, cases[i].node, cases[i].primary, 99);
		txid_encode(&in, &v);
		assert_int_equal(v.len % 4, 0);             /* padded, as upstream writes it */
		assert_int_equal(txid_decode(v.buf, v.len, &out), 0);
		in.backchannel_id = 0;                      /* not part of the metadata value */
		assert_same(&in, &out);
		strbuf_release(&v);
	}
}

/* The exact bytes upstream's decoder expects: compact JSON, keys in order. */
static void test_metadata_wire_form(void **state)
{
	struct txid t;
	struct strbuf v = STRBUF_INIT, dec = STRBUF_INIT;
	make(&t, 7, "gitaly-2", 1, 0);
	txid_encode(&t, &v);
	assert_int_equal(grpc_base64_decode(&dec, v.buf, v.len), 0);
	assert_string_equal(dec.buf, "{\"id\":7,\"node\":\"gitaly-2\",\"primary\":true}");
	strbuf_release(&v);
	strbuf_release(&dec);
}

static void decode_str(const char *json, int want_rc, struct txid *out)
{
	struct strbuf v = STRBUF_INIT;
	grpc_base64_encode(&v, json, strlen(json));   /* unpadded: accepted too */
	assert_int_equal(txid_decode(v.buf, v.len, out), want_rc);
	strbuf_release(&v);
}

static void test_metadata_rejects(void **state)
{
	struct txid out;
	char big[TXID_NODE_MAX + 40];

	assert_int_equal(txid_decode("!!!!", 4, &out), -EINVAL);          /* not base64 */
	decode_str("not json", -EINVAL, &out);
	decode_str("[1,2]", -EINVAL, &out);
	decode_str("{\"node\":\"n\"}", -EINVAL, &out);                     /* no id */
	decode_str("{\"id\":\"1\",\"node\":\"n\"}", -EINVAL, &out);        /* id not an integer */
	decode_str("{\"id\":1}", -EINVAL, &out);                           /* no node */
	assert_int_equal(out.id, 0);                                        /* zeroed on failure */
	snprintf(big, sizeof(big), "{\"id\":1,\"node\":\"%0*d\"}", TXID_NODE_MAX, 0);
	decode_str(big, -EINVAL, &out);                                    /* node too long */
	/* a missing primary is a secondary */
	decode_str("{\"id\":5,\"node\":\"n\"}", 0, &out);
	assert_int_equal(out.id, 5);
	assert_false(out.primary);
}

/* The hooks payload keeps the backchannel; an envelope carries it through git. */
static void test_payload_round_trip(void **state)
{
	struct txid in, out;
	struct strbuf env = STRBUF_INIT, why = STRBUF_INIT;
	json_t *payload = json_object(), *back = NULL;

	make(&in, 12345, "gitaly-3", 0, 77);
	json_object_set_new(payload, "requested_hooks", json_integer(1));
	json_object_set_new(payload, "transaction", txid_to_json(&in));
	txid_envelope_encode(payload, &env);
	assert_int_equal(env.len % 4, 0);
	assert_int_equal(txid_envelope_decode(env.buf, env.len, &back, &why), 0);
	assert_int_equal(txid_from_json(json_object_get(back, "transaction"), &out), 0);
	assert_same(&in, &out);
	/* no backchannel: the key is left out, and reads back as 0 */
	make(&in, 1, "n", 1, 0);
	json_decref(back);
	back = txid_to_json(&in);
	assert_null(json_object_get(back, "backchannel_id"));
	assert_int_equal(txid_from_json(back, &out), 0);
	assert_same(&in, &out);
	json_decref(back);
	json_decref(payload);
	strbuf_release(&env);
	strbuf_release(&why);
}

static void test_payload_lenient(void **state)
{
	struct txid out;
	json_t *o = json_loads("{\"id\":\"x\",\"node\":3,\"primary\":1}", 0, NULL);
	assert_int_equal(txid_from_json(o, &out), 0);   /* mistyped fields read as zero */
	assert_int_equal(out.id, 0);
	assert_string_equal(out.node, "");
	assert_false(out.primary);
	json_decref(o);
	assert_int_equal(txid_from_json(NULL, &out), -EINVAL);
	o = json_null();
	assert_int_equal(txid_from_json(o, &out), -EINVAL);
	json_decref(o);
}

static void test_envelope_errors(void **state)
{
	struct strbuf why = STRBUF_INIT, v = STRBUF_INIT;
	json_t *o = (json_t *)1;
	assert_int_equal(txid_envelope_decode("*", 1, &o, &why), -EINVAL);
	assert_null(o);
	grpc_base64_encode(&v, "[]", 2);
	assert_int_equal(txid_envelope_decode(v.buf, v.len, &o, &why), -EBADMSG);
	assert_string_equal(why.buf, "not an object");
	strbuf_reset(&why);
	strbuf_reset(&v);
	grpc_base64_encode(&v, "{", 1);
	assert_int_equal(txid_envelope_decode(v.buf, v.len, &o, &why), -EBADMSG);
	assert_true(why.len > 0);                        /* the parser's own words */
	strbuf_release(&why);
	strbuf_release(&v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_metadata_round_trip),
		cmocka_unit_test(test_metadata_wire_form),
		cmocka_unit_test(test_metadata_rejects),
		cmocka_unit_test(test_payload_round_trip),
		cmocka_unit_test(test_payload_lenient),
		cmocka_unit_test(test_envelope_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
