/*
 * gRPC metadata: an ordered list of (key, value) pairs. Keys are lower case.
 * Values of keys ending in "-bin" are held decoded (raw bytes); they are
 * base64-encoded on the wire by the transport. Every value is also
 * NUL-terminated so ASCII values can be used as C strings.
 */
#ifndef GRPC_METADATA_H
#define GRPC_METADATA_H

#include <stddef.h>
#include "../base/strbuf.h"

struct grpc_md {
	char *key;
	char *value;
	size_t value_len;
};

struct grpc_metadata {
	struct grpc_md *v;
	size_t nr, alloc;
};

#define GRPC_METADATA_INIT { NULL, 0, 0 }

void grpc_metadata_init(struct grpc_metadata *md);
void grpc_metadata_release(struct grpc_metadata *md);
/* Copies key (lower-cased) and value. */
void grpc_metadata_add(struct grpc_metadata *md, const char *key, size_t key_len,
		       const char *value, size_t value_len);
void grpc_metadata_addstr(struct grpc_metadata *md, const char *key, const char *value);
/* Append every entry of `src` to `dst`. */
void grpc_metadata_copy(struct grpc_metadata *dst, const struct grpc_metadata *src);
/* Last entry with this key (gRPC's "last value wins"), or NULL. */
const struct grpc_md *grpc_metadata_get(const struct grpc_metadata *md, const char *key);
/* Value of the last entry with this key as a C string, or NULL. */
const char *grpc_metadata_value(const struct grpc_metadata *md, const char *key);
/* Remove every entry with this key. */
void grpc_metadata_remove(struct grpc_metadata *md, const char *key);

/* 1 for keys ending in "-bin". */
int grpc_metadata_is_binary(const char *key, size_t len);
/*
 * 1 for keys the transport owns and applications may neither set nor see:
 * HTTP/2 pseudo-headers, content-type, te, grpc-timeout, grpc-status,
 * grpc-message, grpc-encoding, grpc-accept-encoding, user-agent and friends.
 */
int grpc_metadata_is_reserved(const char *key, size_t len);

/* Base64 for -bin values: encode without padding; decode with or without. */
void grpc_base64_encode(struct strbuf *out, const void *data, size_t len);
int grpc_base64_decode(struct strbuf *out, const char *s, size_t len);

#endif
