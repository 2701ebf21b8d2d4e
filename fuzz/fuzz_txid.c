/* libFuzzer target for lib/txid: decode any bytes as a metadata value and as a hooks payload; what decodes re-encodes to the same identity. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/strbuf.h"
#include "txid/txid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_or_trap(const struct txid *a, const struct txid *b)
{
	if (a->id != b->id || strcmp(a->node, b->node) || !a->primary != !b->primary ||
	    a->backchannel_id != b->backchannel_id)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strbuf enc = STRBUF_INIT, why = STRBUF_INIT;
	struct txid t, back;
	json_t *o = NULL;

	/* the metadata value praefect sends */
	if (txid_decode((const char *)data, size, &t) == 0) {
		if (memchr(t.node, '\0', sizeof(t.node)) == NULL || t.backchannel_id)
			__builtin_trap();
		txid_encode(&t, &enc);
		if (txid_decode(enc.buf, enc.len, &back) != 0)
			__builtin_trap();
		same_or_trap(&t, &back);
	} else if (t.id || t.node[0] || t.primary) {
		__builtin_trap();   /* zeroed on failure */
	}

	/* the hooks payload: an envelope, its "transaction" object */
	if (txid_envelope_decode((const char *)data, size, &o, &why) == 0) {
		json_t *tx = json_object_get(o, "transaction");
		if (!o || why.len)
			__builtin_trap();
		if (txid_from_json(tx, &t) == 0) {
			json_t *j = txid_to_json(&t);
			if (txid_from_json(j, &back) != 0)
				__builtin_trap();
			/* a node with NUL inside is cut there; the rest must survive */
			same_or_trap(&t, &back);
			json_decref(j);
		}
		strbuf_reset(&enc);
		txid_envelope_encode(o, &enc);
		json_decref(o);
		if (txid_envelope_decode(enc.buf, enc.len, &o, NULL) != 0)
			__builtin_trap();
		json_decref(o);
	} else if (o) {
		__builtin_trap();
	}
	strbuf_release(&enc);
	strbuf_release(&why);
	return 0;
}
