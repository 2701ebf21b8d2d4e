/* The transaction identity codec: metadata value, hooks payload object, and their envelope. */
#include "txid/txid.h"
#include "base/strbuf.h"
#include "grpc/metadata.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void txid_envelope_encode(const json_t *o, struct strbuf *out)
{
	char *s = json_dumps(o, JSON_COMPACT);
	size_t start = out->len;
	grpc_base64_encode(out, s, strlen(s));
	while ((out->len - start) % 4)
		strbuf_addch(out, '=');
	free(s);
}

int txid_envelope_decode(const char *b64, size_t len, json_t **out, struct strbuf *why)
{
	struct strbuf dec = STRBUF_INIT;
	json_error_t je;
	json_t *o;

	*out = NULL;
	if (grpc_base64_decode(&dec, b64, len) < 0) {
		strbuf_release(&dec);
		return -EINVAL;
	}
	o = json_loadb(dec.buf, dec.len, 0, &je);
	strbuf_release(&dec);
	if (!json_is_object(o)) {
		if (why)
			strbuf_addstr(why, o ? "not an object" : je.text);
		json_decref(o);
		return -EBADMSG;
	}
	*out = o;
	return 0;
}

void txid_encode(const struct txid *t, struct strbuf *out)
{
	json_t *o = json_object();
	json_object_set_new(o, "id", json_integer((json_int_t)t->id));
	json_object_set_new(o, "node", json_string(t->node));
	json_object_set_new(o, "primary", json_boolean(t->primary));
	txid_envelope_encode(o, out);
	json_decref(o);
}

int txid_decode(const char *value, size_t len, struct txid *out)
{
	json_t *o, *id;
	const char *node;
	int rc = -EINVAL;

	memset(out, 0, sizeof(*out));
	if (txid_envelope_decode(value, len, &o, NULL) < 0)
		return -EINVAL;
	id = json_object_get(o, "id");
	node = json_string_value(json_object_get(o, "node"));
	if (json_is_integer(id) && node && strlen(node) < sizeof(out->node)) {
		out->id = (uint64_t)json_integer_value(id);
		memcpy(out->node, node, strlen(node) + 1);
		out->primary = json_is_true(json_object_get(o, "primary"));
		rc = 0;
	}
	json_decref(o);
	return rc;
}

json_t *txid_to_json(const struct txid *t)
{
	json_t *o = json_object();
	if (t->backchannel_id)
		json_object_set_new(o, "backchannel_id", json_integer((json_int_t)t->backchannel_id));
	json_object_set_new(o, "id", json_integer((json_int_t)t->id));
	json_object_set_new(o, "node", json_string(t->node));
	json_object_set_new(o, "primary", json_boolean(t->primary));
	return o;
}

int txid_from_json(const json_t *o, struct txid *out)
{
	json_t *id, *bc;
	const char *node;

	memset(out, 0, sizeof(*out));
	if (!json_is_object(o))
		return -EINVAL;
	id = json_object_get(o, "id");
	bc = json_object_get(o, "backchannel_id");
	node = json_string_value(json_object_get(o, "node"));
	out->id = json_is_integer(id) ? (uint64_t)json_integer_value(id) : 0;
	out->backchannel_id = json_is_integer(bc) ? (uint64_t)json_integer_value(bc) : 0;
	/* a longer name was cut at the vote before; cut it here, once */
	if (node)
		snprintf(out->node, sizeof(out->node), "%s", node);
	out->primary = json_is_true(json_object_get(o, "primary"));
	return 0;
}
