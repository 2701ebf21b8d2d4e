/* v2 HMAC token authentication, as Gitaly clients and servers use it. */
#include "auth.h"
#include "server.h"
#include "../base/log.h"
#include "../base/util.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/*
 * HMAC-SHA256 of a token's timestamp. The timestamp moves once a second, so
 * every call in that second signs or checks the same message with the same
 * secret: a few remembered results per thread save praefect two HMACs per
 * proxied call (checking the client's token with its own secret, signing
 * the node's with the node's) and a node one. Entries are keyed on the exact
 * secret and message; secrets longer than an entry holds are not remembered.
 */
#define HMAC_MEMO 4
struct hmac_memo {
	char secret[256];
	size_t secret_len;         /* 0: empty */
	char ts[20];
	size_t ts_len;
	unsigned char mac[32];
};

static void hmac_ts(const char *secret, size_t secret_len, const char *ts, size_t ts_len,
		    unsigned char mac[32])
{
	static __thread struct hmac_memo memo[HMAC_MEMO];
	static __thread unsigned next;
	unsigned char full[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	struct hmac_memo *m;

	for (unsigned i = 0; i < HMAC_MEMO; i++) {
		m = &memo[i];
		if (m->secret_len && m->secret_len == secret_len && m->ts_len == ts_len &&
		    !memcmp(m->ts, ts, ts_len) && !memcmp(m->secret, secret, secret_len)) {
			memcpy(mac, m->mac, 32);
			return;
		}
	}
	HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)ts, ts_len, full, &maclen);
	memcpy(mac, full, 32);
	if (!secret_len || secret_len > sizeof(m->secret) || ts_len > sizeof(m->ts))
		return;
	/* the same secret's older second, if there is one, else round robin */
	m = &memo[next];
	for (unsigned i = 0; i < HMAC_MEMO; i++)
		if (memo[i].secret_len == secret_len && !memcmp(memo[i].secret, secret, secret_len))
			m = &memo[i];
	if (m == &memo[next])
		next = (next + 1) % HMAC_MEMO;
	memcpy(m->secret, secret, secret_len);
	m->secret_len = secret_len;
	memcpy(m->ts, ts, ts_len);
	m->ts_len = ts_len;
	memcpy(m->mac, full, 32);
}

static void hmac_hex(const char *secret, size_t secret_len, const char *msg, char hex[65])
{
	unsigned char mac[32];
	static const char digits[] = "0123456789abcdef";

	hmac_ts(secret, secret_len, msg, strlen(msg), mac);
	for (unsigned i = 0; i < 32; i++) {
		hex[2 * i] = digits[mac[i] >> 4];
		hex[2 * i + 1] = digits[mac[i] & 15];
	}
	hex[64] = '\0';
}

void auth_v2_token(const char *secret, size_t secret_len, time_t now, char out[128])
{
	char ts[32], hex[65];
	snprintf(ts, sizeof(ts), "%lld", (long long)now);
	hmac_hex(secret, secret_len, ts, hex);
	snprintf(out, 128, "v2.%s.%s", hex, ts);
}

void auth_v2_add(struct grpc_metadata *md, const char *secret)
{
	char tok[128], hdr[160];
	if (!secret || !*secret)
		return;
	auth_v2_token(secret, strlen(secret), time(NULL), tok);
	snprintf(hdr, sizeof(hdr), "Bearer %s", tok);
	grpc_metadata_addstr(md, "authorization", hdr);
}

/* Decode hex into out (at most max bytes); -1 when not valid hex. */
static int unhex(const char *s, size_t len, unsigned char *out, size_t max)
{
	if (len == 0 || len % 2 || len / 2 > max)
		return -1;
	for (size_t i = 0; i < len; i += 2) {
		int hi = hex_digit(s[i]), lo = hex_digit(s[i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i / 2] = (unsigned char)(hi << 4 | lo);
	}
	return (int)(len / 2);
}

enum grpc_code auth_v2_check(const char *secret, size_t secret_len, const char *authorization,
			     time_t now, const char **msg)
{
	const char *tok, *dot1, *dot2, *ts;
	unsigned char sig[64], mac[32];
	int siglen;
	long long t = 0;

	*msg = "authentication required";
	if (!authorization || strncasecmp(authorization, "bearer ", 7))
		return GRPC_UNAUTHENTICATED;
	tok = authorization + 7;
	while (*tok == ' ')
		tok++;
	if (!(dot1 = strchr(tok, '.')) || !(dot2 = strchr(dot1 + 1, '.')))
		return GRPC_UNAUTHENTICATED;
	siglen = unhex(dot1 + 1, (size_t)(dot2 - dot1 - 1), sig, sizeof(sig));
	if (siglen < 0)
		return GRPC_UNAUTHENTICATED;

	*msg = "permission denied";
	if (dot1 - tok != 2 || strncmp(tok, "v2", 2))
		return GRPC_PERMISSION_DENIED;
	ts = dot2 + 1;
	if (!*ts || strlen(ts) > 18)
		return GRPC_PERMISSION_DENIED;
	for (const char *p = ts; *p; p++) {
		if (*p < '0' || *p > '9')
			return GRPC_PERMISSION_DENIED;
		t = t * 10 + (*p - '0');
	}
	hmac_ts(secret, secret_len, ts, strlen(ts), mac);
	if (siglen != 32 || CRYPTO_memcmp(sig, mac, 32) != 0)
		return GRPC_PERMISSION_DENIED;
	if (t < (long long)now - AUTH_V2_SKEW || t > (long long)now + AUTH_V2_SKEW)
		return GRPC_PERMISSION_DENIED;
	*msg = NULL;
	return GRPC_OK;
}

enum grpc_code auth_check_call(struct grpc_call *call, const char *secret, int transitioning,
			       struct strbuf *msg)
{
	const char *why;
	enum grpc_code code;
	if (!secret || !*secret)
		return GRPC_OK;
	code = auth_v2_check(secret, strlen(secret),
			     grpc_metadata_value(grpc_call_metadata(call), "authorization"), time(NULL), &why);
	if (code == GRPC_OK)
		return GRPC_OK;
	if (transitioning) {
		log_msgf(LOG_WARN, "authentication failed for %s (transitioning: allowed)", grpc_call_method(call));
		return GRPC_OK;
	}
	strbuf_addstr(msg, why);
	return code;
}
