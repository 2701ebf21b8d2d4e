/*
 * SSH signing keys and SSHSIG verification on OpenSSL (sshsig.h). The wire
 * shapes are OpenSSH's PROTOCOL.sshsig and PROTOCOL.key, written down with
 * upstream's quirks in docs/technical/commit-signing.md.
 */
#include "read/sshsig.h"
#include "read/pkey.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#define KEY_BEGIN "-----BEGIN OPENSSH PRIVATE KEY-----"
#define KEY_END "-----END OPENSSH PRIVATE KEY-----"
#define SIG_BEGIN "-----BEGIN SSH SIGNATURE-----"
#define SIG_END "-----END SSH SIGNATURE-----"
/* Neither a key file nor a signature is ever near this; beyond it is garbage. */
#define ARMOR_MAX (64u << 10)

enum key_type { KEY_ED25519, KEY_RSA, KEY_ECDSA };

struct sshsig_key {
	enum key_type type;
	char name[32];          /* the key's type name, e.g. "ssh-ed25519" */
	const EVP_MD *ec_md;    /* ECDSA: the curve's hash */
	EVP_PKEY *pkey;
};

/* A cursor over SSH wire data (RFC 4251 uint32 and string). */
struct rd {
	const uint8_t *p;
	size_t n;
};

static int get_u32(struct rd *r, uint32_t *v)
{
	if (r->n < 4)
		return -1;
	*v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
	r->p += 4, r->n -= 4;
	return 0;
}

static int get_string(struct rd *r, struct rd *out)
{
	uint32_t len;
	if (get_u32(r, &len) < 0 || len > r->n)
		return -1;
	out->p = r->p, out->n = len;
	r->p += len, r->n -= len;
	return 0;
}

static int str_is(const struct rd *s, const char *lit)
{
	return s->n == strlen(lit) && !memcmp(s->p, lit, s->n);
}

static void put_string(uint8_t **w, const void *p, size_t n)
{
	(*w)[0] = (uint8_t)(n >> 24), (*w)[1] = (uint8_t)(n >> 16);
	(*w)[2] = (uint8_t)(n >> 8), (*w)[3] = (uint8_t)n;
	memcpy(*w + 4, p, n);
	*w += 4 + n;
}

static const char *find(const char *hay, size_t n, const char *needle)
{
	size_t m = strlen(needle);
	for (size_t i = 0; i + m <= n; i++)
		if (hay[i] == needle[0] && !memcmp(hay + i, needle, m))
			return hay + i;
	return NULL;
}

/*
 * The base64 body between the begin and end lines, decoded into a fresh
 * buffer. Only whitespace may come before the begin line when `strict`
 * (a signature must be the whole header) and after the end line.
 */
static uint8_t *unarmor(const char *buf, size_t len, const char *begin, const char *end,
			int strict, size_t *out_len)
{
	const char *b, *e, *p, *tail;
	char *clean;
	size_t n = 0;
	if (len > ARMOR_MAX || !(b = find(buf, len, begin)))
		return NULL;
	if (strict)
		for (p = buf; p < b; p++)
			if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t')
				return NULL;
	b += strlen(begin);
	if (!(e = find(b, len - (size_t)(b - buf), end)))
		return NULL;
	for (tail = e + strlen(end); tail < buf + len; tail++)
		if (*tail != ' ' && *tail != '\n' && *tail != '\r' && *tail != '\t')
			return NULL;
	clean = malloc((size_t)(e - b) + 1);
	if (!clean)
		return NULL;
	for (p = b; p < e; p++) {
		if (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
			continue;
		clean[n++] = *p;
	}
	return pkey_b64_decode(clean, n, out_len);
}

static BIGNUM *mpint(const struct rd *s)
{
	/* SSH mpints are two's complement; key and signature values are positive */
	if (s->n && (s->p[0] & 0x80))
		return NULL;
	return BN_bin2bn(s->p, (int)s->n, NULL);
}

/* A public key blob (string type, then the type's fields, nothing after). */
static struct sshsig_key *parse_public(struct rd blob)
{
	struct sshsig_key *k;
	struct rd type, a, b;
	OSSL_PARAM_BLD *bld;
	if (get_string(&blob, &type) < 0 || type.n >= sizeof(k->name))
		return NULL;
	k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	memcpy(k->name, type.p, type.n);
	if (str_is(&type, "ssh-ed25519")) {
		k->type = KEY_ED25519;
		if (!get_string(&blob, &a) && a.n == 32 && !blob.n)
			k->pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, a.p, a.n);
	} else if (str_is(&type, "ssh-rsa")) {
		k->type = KEY_RSA;
		if (!get_string(&blob, &a) && !get_string(&blob, &b) && !blob.n && (bld = OSSL_PARAM_BLD_new())) {
			BIGNUM *e = mpint(&a), *n = mpint(&b);
			if (e && n && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
			    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
				k->pkey = pkey_from_params("RSA", bld);
			BN_free(e);
			BN_free(n);
			OSSL_PARAM_BLD_free(bld);
		}
	} else if (type.n > 11 && !memcmp(type.p, "ecdsa-sha2-", 11)) {
		static const struct { const char *ssh, *group; int bits; } curves[] = {
			{ "nistp256", "P-256", 256 }, { "nistp384", "P-384", 384 }, { "nistp521", "P-521", 521 },
		};
		k->type = KEY_ECDSA;
		if (!get_string(&blob, &a) && !get_string(&blob, &b) && !blob.n &&
		    a.n == type.n - 11 && !memcmp(a.p, type.p + 11, a.n))
			for (size_t i = 0; i < sizeof(curves) / sizeof(curves[0]); i++) {
				if (!str_is(&a, curves[i].ssh) || !(bld = OSSL_PARAM_BLD_new()))
					continue;
				k->ec_md = curves[i].bits == 256 ? EVP_sha256() : curves[i].bits == 384 ? EVP_sha384() : EVP_sha512();
				if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curves[i].group, 0) &&
				    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, b.p, b.n))
					k->pkey = pkey_from_params("EC", bld);
				OSSL_PARAM_BLD_free(bld);
			}
	}
	if (!k->pkey) {
		free(k);
		return NULL;
	}
	return k;
}

int sshsig_is_ssh_key(const char *buf, size_t len)
{
	/* upstream's rule: the file starts with the OpenSSH armor, else it is GPG */
	return len >= 18 && !memcmp(buf, "-----BEGIN OPENSSH", 18);
}

struct sshsig_key *sshsig_key_parse(const char *buf, size_t len)
{
	size_t n;
	uint8_t *raw = unarmor(buf, len, KEY_BEGIN, KEY_END, 1, &n);
	struct rd r, cipher, kdf, kdfopts, pub;
	struct sshsig_key *k = NULL;
	uint32_t nkeys;
	if (!raw)
		return NULL;
	r.p = raw, r.n = n;
	/* "openssh-key-v1\0", cipher, kdf, kdf options, key count, public keys */
	if (r.n >= 15 && !memcmp(r.p, "openssh-key-v1", 15)) {
		r.p += 15, r.n -= 15;
		/* an encrypted key needs a passphrase gitaly does not have: refused, as upstream */
		if (!get_string(&r, &cipher) && str_is(&cipher, "none") && !get_string(&r, &kdf) &&
		    !get_string(&r, &kdfopts) && !get_u32(&r, &nkeys) && nkeys == 1 && !get_string(&r, &pub))
			k = parse_public(pub);
	}
	free(raw);
	return k;
}

void sshsig_key_free(struct sshsig_key *k)
{
	if (!k)
		return;
	EVP_PKEY_free(k->pkey);
	free(k);
}

/* The SSH signature blob (string format, string bytes) checked over `msg`. */
static int verify_raw(const struct sshsig_key *k, struct rd sig, const uint8_t *msg, size_t msg_len)
{
	struct rd format, bytes, r, s;
	const EVP_MD *md = NULL;
	unsigned char *der = NULL;
	const unsigned char *vsig;
	size_t vlen;
	EVP_MD_CTX *ctx;
	int ok = 0;
	if (get_string(&sig, &format) < 0 || get_string(&sig, &bytes) < 0 || sig.n)
		return -1;
	switch (k->type) {
	case KEY_ED25519:
		if (!str_is(&format, "ssh-ed25519"))
			return -1;
		vsig = bytes.p, vlen = bytes.n;
		break;
	case KEY_RSA:
		if (str_is(&format, "rsa-sha2-512"))
			md = EVP_sha512();
		else if (str_is(&format, "rsa-sha2-256"))
			md = EVP_sha256();
		else if (str_is(&format, "ssh-rsa"))
			md = EVP_sha1();
		else
			return -1;
		vsig = bytes.p, vlen = bytes.n;
		break;
	case KEY_ECDSA: {
		ECDSA_SIG *es;
		BIGNUM *br, *bs;
		int dl;
		if (!str_is(&format, k->name) || get_string(&bytes, &r) < 0 || get_string(&bytes, &s) < 0 || bytes.n)
			return -1;
		br = mpint(&r), bs = mpint(&s);
		es = ECDSA_SIG_new();
		if (!br || !bs || !es || !ECDSA_SIG_set0(es, br, bs)) {
			BN_free(br), BN_free(bs), ECDSA_SIG_free(es);
			return -1;
		}
		dl = i2d_ECDSA_SIG(es, &der);
		ECDSA_SIG_free(es);
		if (dl <= 0)
			return -1;
		md = k->ec_md;
		vsig = der, vlen = (size_t)dl;
		break;
	}
	default:
		return -1;
	}
	ctx = EVP_MD_CTX_new();
	if (ctx && EVP_DigestVerifyInit(ctx, NULL, md, NULL, k->pkey) > 0)
		ok = EVP_DigestVerify(ctx, vsig, vlen, msg, msg_len) == 1;
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(der);
	return ok ? 0 : -1;
}

int sshsig_verify(const struct sshsig_key *k, const char *sig, size_t sig_len,
		  const char *text, size_t text_len)
{
	size_t n;
	uint8_t *raw = unarmor(sig, sig_len, SIG_BEGIN, SIG_END, 1, &n);
	struct rd r, pub, ns, reserved, halg, blob;
	uint32_t version;
	unsigned char hash[64];
	uint8_t *msg, *w;
	int ret = -1;
	if (!k || !raw)
		goto out;
	r.p = raw, r.n = n;
	/* "SSHSIG", version, public key, namespace, reserved, hash algorithm, signature */
	if (r.n < 6 || memcmp(r.p, "SSHSIG", 6))
		goto out;
	r.p += 6, r.n -= 6;
	if (get_u32(&r, &version) < 0 || get_string(&r, &pub) < 0 || get_string(&r, &ns) < 0 ||
	    get_string(&r, &reserved) < 0 || get_string(&r, &halg) < 0 || get_string(&r, &blob) < 0 || r.n)
		goto out;
	/*
	 * What was signed: the magic, the signature's own namespace, reserved and
	 * hash name, and the message's hash, which upstream always takes with
	 * SHA-512 whatever the name says (docs/technical/commit-signing.md).
	 */
	if (!EVP_Digest(text, text_len, hash, NULL, EVP_sha512(), NULL))
		goto out;
	msg = malloc(6 + 16 + ns.n + reserved.n + halg.n + sizeof(hash));
	if (!msg)
		goto out;
	memcpy(msg, "SSHSIG", 6);
	w = msg + 6;
	put_string(&w, ns.p, ns.n);
	put_string(&w, reserved.p, reserved.n);
	put_string(&w, halg.p, halg.n);
	put_string(&w, hash, sizeof(hash));
	ret = verify_raw(k, blob, msg, (size_t)(w - msg));
	free(msg);
out:
	free(raw);
	return ret;
}
