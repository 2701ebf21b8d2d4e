/* gRPC metadata lists and the base64 used for -bin values. */
#include "metadata.h"
#include "../base/util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

void grpc_metadata_init(struct grpc_metadata *md)
{
	md->v = NULL;
	md->nr = md->alloc = 0;
}

void grpc_metadata_release(struct grpc_metadata *md)
{
	for (size_t i = 0; i < md->nr; i++) {
		free(md->v[i].key);
		free(md->v[i].value);
	}
	free(md->v);
	grpc_metadata_init(md);
}

void grpc_metadata_add(struct grpc_metadata *md, const char *key, size_t key_len,
		       const char *value, size_t value_len)
{
	struct grpc_md *e;
	ALLOC_GROW(md->v, md->nr + 1, md->alloc);
	e = &md->v[md->nr++];
	e->key = xstrndup(key, key_len);
	for (size_t i = 0; i < key_len; i++)
		e->key[i] = (char)tolower((unsigned char)e->key[i]);
	e->value = xstrndup(value, value_len);
	e->value_len = value_len;
}

void grpc_metadata_addstr(struct grpc_metadata *md, const char *key, const char *value)
{
	grpc_metadata_add(md, key, strlen(key), value, strlen(value));
}

void grpc_metadata_copy(struct grpc_metadata *dst, const struct grpc_metadata *src)
{
	if (!src)
		return;
	for (size_t i = 0; i < src->nr; i++)
		grpc_metadata_add(dst, src->v[i].key, strlen(src->v[i].key),
				  src->v[i].value, src->v[i].value_len);
}

const struct grpc_md *grpc_metadata_get(const struct grpc_metadata *md, const char *key)
{
	if (!md)
		return NULL;
	for (size_t i = md->nr; i-- > 0;)
		if (!strcmp(md->v[i].key, key))
			return &md->v[i];
	return NULL;
}

const char *grpc_metadata_value(const struct grpc_metadata *md, const char *key)
{
	const struct grpc_md *e = grpc_metadata_get(md, key);
	return e ? e->value : NULL;
}

void grpc_metadata_remove(struct grpc_metadata *md, const char *key)
{
	size_t j = 0;
	for (size_t i = 0; i < md->nr; i++) {
		if (!strcmp(md->v[i].key, key)) {
			free(md->v[i].key);
			free(md->v[i].value);
		} else {
			md->v[j++] = md->v[i];
		}
	}
	md->nr = j;
}

int grpc_metadata_is_binary(const char *key, size_t len)
{
	return len >= 4 && !memcmp(key + len - 4, "-bin", 4);
}

int grpc_metadata_is_reserved(const char *key, size_t len)
{
	static const char *const reserved[] = {
		"content-type", "te", "grpc-timeout", "grpc-status", "grpc-message",
		"grpc-encoding", "grpc-accept-encoding", "user-agent", "host",
		"connection", "content-length", "transfer-encoding", "keep-alive",
		"upgrade", "proxy-connection", "grpc-status-details-bin-unused",
	};
	if (len && key[0] == ':')
		return 1;
	for (size_t i = 0; i < ARRAY_SIZE(reserved); i++)
		if (strlen(reserved[i]) == len && !memcmp(reserved[i], key, len))
			return 1;
	return 0;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void grpc_base64_encode(struct strbuf *out, const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t i = 0;
	for (; i + 3 <= len; i += 3) {
		unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
		char q[4] = { b64[v >> 18], b64[(v >> 12) & 63], b64[(v >> 6) & 63], b64[v & 63] };
		strbuf_add(out, q, 4);
	}
	if (len - i == 1) {
		unsigned v = (unsigned)p[i] << 16;
		char q[2] = { b64[v >> 18], b64[(v >> 12) & 63] };
		strbuf_add(out, q, 2);
	} else if (len - i == 2) {
		unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
		char q[3] = { b64[v >> 18], b64[(v >> 12) & 63], b64[(v >> 6) & 63] };
		strbuf_add(out, q, 3);
	}
}

static int b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+' || c == '-') return 62;
	if (c == '/' || c == '_') return 63;
	return -1;
}

int grpc_base64_decode(struct strbuf *out, const char *s, size_t len)
{
	unsigned acc = 0;
	int bits = 0;

	while (len && s[len - 1] == '=')
		len--;
	for (size_t i = 0; i < len; i++) {
		int v = b64val((unsigned char)s[i]);
		if (v < 0)
			return -1;
		acc = acc << 6 | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			strbuf_addch(out, (acc >> bits) & 0xff);
		}
	}
	return bits >= 6 ? -1 : 0; /* a lone trailing sextet cannot encode a byte */
}
