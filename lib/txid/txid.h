/*
 * txid: the transaction identity, one codec for the three binaries that
 * carry it (praefect sends it, gitaly votes with it, gitaly-hooks forwards
 * it to gitaly inside the hooks payload). See docs/technical/transactions.md,
 * "The transaction identity".
 *
 * Contract:
 *
 *  - The identity is praefect's transaction id, the voter name praefect
 *    gave the node (its storage name), and whether the node is the primary.
 *    The connection the votes go back over (`backchannel_id`) is known only
 *    to the node that received the call; it travels in the hooks payload,
 *    never in call metadata.
 *  - On a call, it is the value of metadata "gitaly-reference-transaction":
 *    standard base64, padded, of the compact JSON object
 *    {"id":<uint64>,"node":"<name>","primary":<bool>}, in that key order.
 *    txid_decode() accepts the value with or without padding and requires
 *    an integer "id" and a string "node" shorter than TXID_NODE_MAX; a
 *    missing or non-true "primary" reads as a secondary.
 *  - In GITALY_HOOKS_PAYLOAD, it is the object under "transaction":
 *    {"backchannel_id":<uint64>,"id":...,"node":...,"primary":...}, with
 *    "backchannel_id" left out when it is 0. txid_from_json() is lenient as
 *    upstream's decoder is: absent or mistyped fields read as 0, "" or false.
 *  - Both travel in the same envelope: padded standard base64 of compact
 *    JSON (txid_envelope_encode(), txid_envelope_decode()); the hooks payload
 *    is such an envelope around an object with more keys.
 *  - Decoders never read outside [value, value + len) and leave `out`
 *    zeroed on failure. Errors are negative errno values.
 */
#ifndef TXID_TXID_H
#define TXID_TXID_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct strbuf;

#define TXID_NODE_MAX 256
/* The call metadata key the identity rides in. */
#define TXID_METADATA_KEY "gitaly-reference-transaction"

struct txid {
	uint64_t id;
	char node[TXID_NODE_MAX];    /* the voter name, NUL-terminated */
	int primary;
	uint64_t backchannel_id;     /* 0: unknown, or not carried (metadata) */
};

/* --- the metadata value --- */

/* Append the metadata value of `t` (backchannel_id is not part of it) to `out`. */
void txid_encode(const struct txid *t, struct strbuf *out);
/* 0, or -EINVAL when `value` is not a valid identity (bad base64, JSON, fields). */
int txid_decode(const char *value, size_t len, struct txid *out);

/* --- the hooks payload's "transaction" object --- */

/* A new reference. */
json_t *txid_to_json(const struct txid *t);
/* 0, or -EINVAL when `o` is not an object. */
int txid_from_json(const json_t *o, struct txid *out);

/* --- the envelope --- */

/* Append padded standard base64 of compact `o` to `out`. */
void txid_envelope_encode(const json_t *o, struct strbuf *out);
/*
 * Decode an envelope into a new object reference. 0; -EINVAL when the base64
 * is malformed; -EBADMSG when the bytes are not a JSON object (`why`, may be
 * NULL, then says "not an object" or the parser's message).
 */
int txid_envelope_decode(const char *b64, size_t len, json_t **out, struct strbuf *why);

#endif
