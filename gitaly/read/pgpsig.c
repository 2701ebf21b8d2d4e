/*
 * OpenPGP signing keys and signature checks on OpenSSL (pgpsig.h). Packet
 * shapes are RFC 4880's (v4 keys and signatures, RFC 6637 and the EdDSA
 * draft for the curves); the rules upstream's library applies are written
 * down in docs/technical/commit-signing.md.
 */
#include "read/pgpsig.h"
#include "read/pkey.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#define SIG_BEGIN "-----BEGIN PGP SIGNATURE-----"
#define SIG_END "-----END PGP SIGNATURE-----"
/* Neither a key file nor a signature is ever near these; beyond is garbage. */
#define ARMOR_MAX (64u << 10)
#define MAX_SUBKEYS 64

enum { ALG_RSA = 1, ALG_RSA_E = 2, ALG_RSA_S = 3, ALG_ELGAMAL = 16, ALG_DSA = 17,
       ALG_ECDH = 18, ALG_ECDSA = 19, ALG_EDDSA = 22 };
enum { TAG_SIG = 2, TAG_SECKEY = 5, TAG_PUBKEY = 6, TAG_SECSUB = 7, TAG_UID = 13,
       TAG_PUBSUB = 14, TAG_ATTR = 17 };
enum { SP_CREATED = 2, SP_SIG_EXPIRES = 3, SP_KEY_EXPIRES = 9, SP_ISSUER = 16,
       SP_PRIMARY_UID = 25, SP_FLAGS = 27, SP_ISSUER_FPR = 33 };
#define FLAG_SIGN 0x02

/* One key (primary or subkey): its public half and its self-signature's facts. */
struct key {
	uint8_t id[8];         /* the low 64 bits of the v4 fingerprint */
	int algo;
	EVP_PKEY *pkey;        /* NULL: an algorithm we cannot check (never matches) */
	int64_t created;
	int64_t expires;       /* seconds after creation, 0 = never */
	int64_t sig_created;   /* the self- or binding signature in force */
	int64_t sig_expires;
	int has_sig, flags_valid, flags, revoked, primary_uid;
};

struct pgpsig_key {
	struct key primary;
	struct key sub[MAX_SUBKEYS];
	size_t nr_sub;
};

struct rd {
	const uint8_t *p;
	size_t n;
};

static int get(struct rd *r, size_t n, struct rd *out)
{
	if (r->n < n)
		return -1;
	if (out)
		out->p = r->p, out->n = n;
	r->p += n, r->n -= n;
	return 0;
}

static int get_u8(struct rd *r, unsigned *v)
{
	if (!r->n)
		return -1;
	*v = r->p[0];
	r->p++, r->n--;
	return 0;
}

static int64_t be(const uint8_t *p, size_t n)
{
	int64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* An MPI: a two-byte bit count, then its bytes, leading zeros stripped. */
static int get_mpi(struct rd *r, struct rd *out)
{
	struct rd h;
	size_t bits;
	if (get(r, 2, &h) < 0)
		return -1;
	bits = (size_t)be(h.p, 2);
	if (get(r, (bits + 7) / 8, out) < 0)
		return -1;
	while (out->n && !out->p[0])
		out->p++, out->n--;
	return 0;
}

/* A one-byte-length field (a curve OID, ECDH's KDF parameters). */
static int get_short(struct rd *r, struct rd *out)
{
	unsigned n;
	if (get_u8(r, &n) < 0 || n == 0 || n == 0xff)
		return -1;
	return get(r, n, out);
}

/* The next packet: old or new format header; partial lengths are refused. */
static int next_packet(struct rd *r, unsigned *tag, struct rd *body)
{
	unsigned b, o;
	size_t len;
	if (get_u8(r, &b) < 0 || !(b & 0x80))
		return -1;
	if (b & 0x40) {
		struct rd l;
		*tag = b & 0x3f;
		if (get_u8(r, &o) < 0)
			return -1;
		if (o < 192) {
			len = o;
		} else if (o < 224) {
			unsigned o2;
			if (get_u8(r, &o2) < 0)
				return -1;
			len = ((size_t)(o - 192) << 8) + o2 + 192;
		} else if (o == 255) {
			if (get(r, 4, &l) < 0)
				return -1;
			len = (size_t)be(l.p, 4);
		} else {
			return -1;
		}
	} else {
		static const size_t widths[] = { 1, 2, 4 };
		struct rd l;
		*tag = (b >> 2) & 0xf;
		if ((b & 3) == 3) {
			len = r->n;
		} else {
			if (get(r, widths[b & 3], &l) < 0)
				return -1;
			len = (size_t)be(l.p, l.n);
		}
	}
	return get(r, len, body);
}

static const uint8_t oid_ed25519[] = { 0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x0f, 0x01 };
static const struct { uint8_t oid[8]; size_t len; const char *group; } curves[] = {
	{ { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 }, 8, "P-256" },
	{ { 0x2b, 0x81, 0x04, 0x00, 0x22 }, 5, "P-384" },
	{ { 0x2b, 0x81, 0x04, 0x00, 0x23 }, 5, "P-521" },
};

static int oid_is(const struct rd *oid, const uint8_t *want, size_t len)
{
	return oid->n == len && !memcmp(oid->p, want, len);
}

/* The OpenSSL key for the algorithm's public fields; NULL when we cannot check it. */
static EVP_PKEY *make_pkey(int algo, const struct rd *a, const struct rd *b)
{
	OSSL_PARAM_BLD *bld;
	EVP_PKEY *pkey = NULL;
	if (algo == ALG_EDDSA) {
		/* the point is 0x40 then the 32-byte key */
		if (!oid_is(a, oid_ed25519, sizeof(oid_ed25519)) || b->n != 33 || b->p[0] != 0x40)
			return NULL;
		return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, b->p + 1, 32);
	}
	if (!(bld = OSSL_PARAM_BLD_new()))
		return NULL;
	if (algo == ALG_RSA || algo == ALG_RSA_S) {
		BIGNUM *n = BN_bin2bn(a->p, (int)a->n, NULL), *e = BN_bin2bn(b->p, (int)b->n, NULL);
		if (n && e && a->n && b->n && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
		    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
			pkey = pkey_from_params("RSA", bld);
		BN_free(n);
		BN_free(e);
	} else if (algo == ALG_ECDSA) {
		for (size_t i = 0; i < sizeof(curves) / sizeof(curves[0]); i++)
			if (oid_is(a, curves[i].oid, curves[i].len) && b->n &&
			    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curves[i].group, 0) &&
			    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, b->p, b->n)) {
				pkey = pkey_from_params("EC", bld);
				break;
			}
	}
	OSSL_PARAM_BLD_free(bld);
	return pkey;
}

/*
 * A v4 public key at the start of a (public or secret) key packet body: its
 * fingerprint covers the public fields only, so their end must be found
 * whatever the algorithm; a secret key's private fields follow and are ignored.
 */
static int parse_key(struct rd body, struct key *k)
{
	struct rd r = body, t, a = { 0 }, b = { 0 }, skip;
	unsigned version, algo;
	uint8_t head[3], fpr[20];
	EVP_MD_CTX *ctx;
	size_t pub_len;
	int ok;
	if (get_u8(&r, &version) < 0 || version != 4 || get(&r, 4, &t) < 0 || get_u8(&r, &algo) < 0)
		return -1;
	k->created = be(t.p, 4);
	k->algo = (int)algo;
	switch (algo) {
	case ALG_RSA: case ALG_RSA_E: case ALG_RSA_S:
		if (get_mpi(&r, &a) < 0 || get_mpi(&r, &b) < 0)
			return -1;
		break;
	case ALG_ELGAMAL:
		if (get_mpi(&r, &skip) < 0 || get_mpi(&r, &skip) < 0 || get_mpi(&r, &skip) < 0)
			return -1;
		break;
	case ALG_DSA:
		for (int i = 0; i < 4; i++)
			if (get_mpi(&r, &skip) < 0)
				return -1;
		break;
	case ALG_ECDSA: case ALG_EDDSA:
		if (get_short(&r, &a) < 0 || get_mpi(&r, &b) < 0)
			return -1;
		break;
	case ALG_ECDH:
		if (get_short(&r, &a) < 0 || get_mpi(&r, &b) < 0 || get_short(&r, &skip) < 0)
			return -1;
		break;
	default:
		return -1;
	}
	pub_len = body.n - r.n;
	head[0] = 0x99, head[1] = (uint8_t)(pub_len >> 8), head[2] = (uint8_t)pub_len;
	if (!(ctx = EVP_MD_CTX_new()))
		return -1;
	ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) > 0 && EVP_DigestUpdate(ctx, head, 3) > 0 &&
	     EVP_DigestUpdate(ctx, body.p, pub_len) > 0 && EVP_DigestFinal_ex(ctx, fpr, NULL) > 0;
	EVP_MD_CTX_free(ctx);
	if (!ok || pub_len > 0xffff)
		return -1;
	memcpy(k->id, fpr + 12, 8);
	if (algo == ALG_RSA || algo == ALG_RSA_S || algo == ALG_ECDSA || algo == ALG_EDDSA)
		k->pkey = make_pkey((int)algo, &a, &b);
	return 0;
}

/* The facts of a v4 signature packet that matter here. */
struct sig {
	unsigned type, algo, hash;
	struct rd hashed;      /* version through the hashed subpackets: what the trailer hashes */
	uint8_t left16[2];
	struct rd m1, m2;      /* RSA: m1 only; ECDSA and EdDSA: r and s */
	int64_t created, expires, key_expires;
	int has_issuer, flags_valid, flags, primary_uid;
	uint8_t issuer[8];
};

static int parse_subpackets(struct rd r, struct sig *s, int hashed)
{
	while (r.n) {
		unsigned o, type;
		size_t len;
		struct rd d, l;
		if (get_u8(&r, &o) < 0)
			return -1;
		if (o < 192) {
			len = o;
		} else if (o < 255) {
			unsigned o2;
			if (get_u8(&r, &o2) < 0)
				return -1;
			len = ((size_t)(o - 192) << 8) + o2 + 192;
		} else {
			if (get(&r, 4, &l) < 0)
				return -1;
			len = (size_t)be(l.p, 4);
		}
		if (len == 0 || get(&r, len, &d) < 0)
			return -1;
		type = d.p[0] & 0x7f;
		d.p++, d.n--;
		/* only the issuer may come from the unhashed area, as upstream's library has it */
		if (!hashed && type != SP_ISSUER && type != SP_ISSUER_FPR)
			continue;
		switch (type) {
		case SP_CREATED:
			if (d.n != 4)
				return -1;
			s->created = be(d.p, 4);
			break;
		case SP_SIG_EXPIRES:
			if (d.n != 4)
				return -1;
			s->expires = be(d.p, 4);
			break;
		case SP_KEY_EXPIRES:
			if (d.n != 4)
				return -1;
			s->key_expires = be(d.p, 4);
			break;
		case SP_ISSUER:
			if (d.n != 8)
				return -1;
			memcpy(s->issuer, d.p, 8);
			s->has_issuer = 1;
			break;
		case SP_ISSUER_FPR:
			/* a v4 fingerprint (version 4, 20 bytes) names the key by its last 8 */
			if (d.n == 21 && d.p[0] == 4 && !s->has_issuer) {
				memcpy(s->issuer, d.p + 13, 8);
				s->has_issuer = 1;
			}
			break;
		case SP_FLAGS:
			s->flags_valid = 1;
			s->flags = d.n ? d.p[0] : 0;
			break;
		case SP_PRIMARY_UID:
			s->primary_uid = d.n && d.p[0];
			break;
		}
	}
	return 0;
}

static int parse_sig(struct rd body, struct sig *s)
{
	struct rd r = body, hl, hashed, ul, unhashed, left;
	unsigned version;
	memset(s, 0, sizeof(*s));
	if (get_u8(&r, &version) < 0 || version != 4 || get_u8(&r, &s->type) < 0 ||
	    get_u8(&r, &s->algo) < 0 || get_u8(&r, &s->hash) < 0 || get(&r, 2, &hl) < 0 ||
	    get(&r, (size_t)be(hl.p, 2), &hashed) < 0 || get(&r, 2, &ul) < 0 ||
	    get(&r, (size_t)be(ul.p, 2), &unhashed) < 0 || get(&r, 2, &left) < 0)
		return -1;
	s->hashed.p = body.p, s->hashed.n = (size_t)(hashed.p + hashed.n - body.p);
	memcpy(s->left16, left.p, 2);
	if (parse_subpackets(hashed, s, 1) < 0 || parse_subpackets(unhashed, s, 0) < 0)
		return -1;
	if (s->algo == ALG_RSA || s->algo == ALG_RSA_S)
		return get_mpi(&r, &s->m1);
	if (s->algo == ALG_ECDSA || s->algo == ALG_EDDSA)
		return get_mpi(&r, &s->m1) < 0 || get_mpi(&r, &s->m2) < 0 ? -1 : 0;
	return 0;
}

/* The latest signature of a kind decides a key's facts, as with gpg. */
static void take_sig(struct key *k, const struct sig *s, int self_cert)
{
	if (self_cert && k->has_sig && k->primary_uid && !s->primary_uid)
		return;
	if (k->has_sig && s->created < k->sig_created && !(self_cert && s->primary_uid && !k->primary_uid))
		return;
	k->has_sig = 1;
	k->sig_created = s->created, k->sig_expires = s->expires;
	k->expires = s->key_expires;
	k->flags_valid = s->flags_valid, k->flags = s->flags;
	k->primary_uid = s->primary_uid;
}

void pgpsig_key_free(struct pgpsig_key *k)
{
	if (!k)
		return;
	EVP_PKEY_free(k->primary.pkey);
	for (size_t i = 0; i < k->nr_sub; i++)
		EVP_PKEY_free(k->sub[i].pkey);
	free(k);
}

#define INVALID(what) (*why = "openpgp: invalid data: " what, NULL)

static struct pgpsig_key *parse_entity(struct rd r, struct pgpsig_key *k, const char **why)
{
	struct key *cur = &k->primary;
	unsigned tag;
	struct rd body;
	int uids = 0, in_uid = 0;
	if (!r.n)
		return *why = "EOF", NULL;
	if (r.p[0] & 0x80) {
		if (next_packet(&r, &tag, &body) < 0)
			return INVALID("packet truncated");
	} else {
		return INVALID("tag byte does not have MSB set");
	}
	if (tag != TAG_SECKEY && tag != TAG_PUBKEY)
		return INVALID("first packet was not a public/private key");
	if (parse_key(body, &k->primary) < 0)
		return INVALID("malformed or unsupported primary key");
	/* user ids with their self-signatures, then subkeys with their bindings */
	while (r.n) {
		struct sig s;
		if (next_packet(&r, &tag, &body) < 0)
			return INVALID("packet truncated");
		if (tag == TAG_SECKEY || tag == TAG_PUBKEY)
			break; /* the next entity: upstream reads only the first */
		switch (tag) {
		case TAG_UID: case TAG_ATTR:
			uids += tag == TAG_UID;
			in_uid = 1;
			break;
		case TAG_SECSUB: case TAG_PUBSUB:
			in_uid = 0;
			if (k->nr_sub == MAX_SUBKEYS)
				return INVALID("too many subkeys");
			cur = &k->sub[k->nr_sub];
			/* a subkey of an algorithm we do not know is skipped, as upstream does */
			if (parse_key(body, cur) < 0) {
				EVP_PKEY_free(cur->pkey);
				memset(cur, 0, sizeof(*cur));
				cur = NULL;
				break;
			}
			k->nr_sub++;
			break;
		case TAG_SIG:
			if (parse_sig(body, &s) < 0)
				break; /* a signature we cannot read grants nothing */
			if (s.type == 0x20 && cur == &k->primary)
				k->primary.revoked = 1;
			else if (s.type >= 0x10 && s.type <= 0x13 && in_uid)
				take_sig(&k->primary, &s, 1);
			else if (s.type == 0x18 && cur && cur != &k->primary)
				take_sig(cur, &s, 0);
			else if (s.type == 0x28 && cur && cur != &k->primary)
				cur->revoked = 1;
			break;
		default:
			break; /* trust packets and the like */
		}
	}
	if (!uids)
		return INVALID("entity without any identities");
	return k;
}

struct pgpsig_key *pgpsig_key_parse(const uint8_t *buf, size_t len, const char **why)
{
	struct pgpsig_key *k;
	const char *dummy;
	struct rd r = { buf, len };
	if (!why)
		why = &dummy;
	if (len > ARMOR_MAX)
		return INVALID("key file too large");
	if (!(k = calloc(1, sizeof(*k))))
		return *why = "out of memory", NULL;
	if (!parse_entity(r, k, why)) {
		pgpsig_key_free(k);
		return NULL;
	}
	return k;
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
 * The packets in a signature armor: header lines up to an empty line, then
 * base64 up to the optional "=" checksum line and the end line.
 */
static uint8_t *unarmor(const char *buf, size_t len, size_t *out_len)
{
	const char *b, *e, *p;
	char *clean;
	size_t n = 0;
	if (len > ARMOR_MAX || !(b = find(buf, len, SIG_BEGIN)))
		return NULL;
	b += strlen(SIG_BEGIN);
	if (!(e = find(b, len - (size_t)(b - buf), SIG_END)))
		return NULL;
	/* the rest of the begin line, then "Key: value" headers up to an empty line */
	for (int first = 1;; first = 0) {
		const char *nl = memchr(b, '\n', (size_t)(e - b));
		size_t ll;
		if (!nl)
			return NULL;
		ll = (size_t)(nl - b);
		if (ll && b[ll - 1] == '\r')
			ll--;
		if (!first && !ll) {
			b = nl + 1;
			break;
		}
		if (!first && !memchr(b, ':', ll))
			return NULL;
		if (first && ll)
			return NULL;
		b = nl + 1;
	}
	if (!(clean = malloc((size_t)(e - b) + 1)))
		return NULL;
	for (p = b; p < e; p++) {
		if (*p == '=' && (p == b || p[-1] == '\n') && p + 1 < e && p[1] != '=')
			break; /* the checksum line */
		if (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
			continue;
		clean[n++] = *p;
	}
	return pkey_b64_decode(clean, n, out_len);
}

static const EVP_MD *hash_md(unsigned id)
{
	switch (id) {
	case 2: return EVP_sha1();
	case 8: return EVP_sha256();
	case 9: return EVP_sha384();
	case 10: return EVP_sha512();
	case 11: return EVP_sha224();
	default: return NULL;
	}
}

/* The digest of the text (canonical line endings for a text signature) and the trailer. */
static int digest(const struct sig *s, const char *text, size_t text_len, uint8_t *out, unsigned *out_len)
{
	const EVP_MD *md = hash_md(s->hash);
	EVP_MD_CTX *ctx;
	uint8_t trailer[6];
	int ok;
	if (!md || (s->type != 0x00 && s->type != 0x01) || !(ctx = EVP_MD_CTX_new()))
		return -1;
	ok = EVP_DigestInit_ex(ctx, md, NULL) > 0;
	if (s->type == 0x00) {
		ok = ok && EVP_DigestUpdate(ctx, text, text_len) > 0;
	} else {
		size_t start = 0;
		for (size_t i = 0; ok && i < text_len; i++) {
			if (text[i] != '\n' || (i && text[i - 1] == '\r'))
				continue;
			ok = EVP_DigestUpdate(ctx, text + start, i - start) > 0 &&
			     EVP_DigestUpdate(ctx, "\r\n", 2) > 0;
			start = i + 1;
		}
		ok = ok && EVP_DigestUpdate(ctx, text + start, text_len - start) > 0;
	}
	trailer[0] = 4, trailer[1] = 0xff;
	trailer[2] = (uint8_t)(s->hashed.n >> 24), trailer[3] = (uint8_t)(s->hashed.n >> 16);
	trailer[4] = (uint8_t)(s->hashed.n >> 8), trailer[5] = (uint8_t)s->hashed.n;
	ok = ok && EVP_DigestUpdate(ctx, s->hashed.p, s->hashed.n) > 0 &&
	     EVP_DigestUpdate(ctx, trailer, 6) > 0 && EVP_DigestFinal_ex(ctx, out, out_len) > 0;
	EVP_MD_CTX_free(ctx);
	return ok && *out_len >= 2 ? 0 : -1;
}

/* Left-pad an MPI to `n` bytes. */
static int pad_to(const struct rd *m, uint8_t *out, size_t n)
{
	if (m->n > n)
		return -1;
	memset(out, 0, n - m->n);
	memcpy(out + n - m->n, m->p, m->n);
	return 0;
}

static int check(const struct key *k, const struct sig *s, const uint8_t *dg, unsigned dlen)
{
	EVP_PKEY_CTX *pctx = NULL;
	EVP_MD_CTX *mctx = NULL;
	unsigned char *der = NULL;
	uint8_t raw[1024];
	int ok = 0;
	if (!k->pkey || (int)s->algo != k->algo)
		return -1;
	if (k->algo == ALG_EDDSA) {
		if (pad_to(&s->m1, raw, 32) < 0 || pad_to(&s->m2, raw + 32, 32) < 0 || !(mctx = EVP_MD_CTX_new()))
			return -1;
		if (EVP_DigestVerifyInit(mctx, NULL, NULL, NULL, k->pkey) > 0)
			ok = EVP_DigestVerify(mctx, raw, 64, dg, dlen) == 1;
		EVP_MD_CTX_free(mctx);
		return ok ? 0 : -1;
	}
	if (!(pctx = EVP_PKEY_CTX_new(k->pkey, NULL)) || EVP_PKEY_verify_init(pctx) <= 0)
		goto out;
	if (k->algo == ALG_ECDSA) {
		ECDSA_SIG *es = ECDSA_SIG_new();
		BIGNUM *br = BN_bin2bn(s->m1.p, (int)s->m1.n, NULL), *bs = BN_bin2bn(s->m2.p, (int)s->m2.n, NULL);
		int dl;
		if (!es || !br || !bs || !ECDSA_SIG_set0(es, br, bs)) {
			BN_free(br), BN_free(bs), ECDSA_SIG_free(es);
			goto out;
		}
		dl = i2d_ECDSA_SIG(es, &der);
		ECDSA_SIG_free(es);
		if (dl > 0)
			ok = EVP_PKEY_verify(pctx, der, (size_t)dl, dg, dlen) == 1;
	} else {
		size_t n = (size_t)EVP_PKEY_get_size(k->pkey);
		if (n > sizeof(raw) || pad_to(&s->m1, raw, n) < 0 ||
		    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0 ||
		    EVP_PKEY_CTX_set_signature_md(pctx, hash_md(s->hash)) <= 0)
			goto out;
		ok = EVP_PKEY_verify(pctx, raw, n, dg, dlen) == 1;
	}
out:
	EVP_PKEY_CTX_free(pctx);
	OPENSSL_free(der);
	return ok ? 0 : -1;
}

static int expired(int64_t created, int64_t lifetime, int64_t now)
{
	return created > now || (lifetime && now > created + lifetime);
}

int pgpsig_verify(const struct pgpsig_key *k, const char *armor, size_t armor_len,
		  const char *text, size_t text_len, int64_t now)
{
	size_t n;
	uint8_t *raw = unarmor(armor, armor_len, &n);
	struct rd r;
	int ret = -1;
	if (!k || !raw)
		goto out;
	r.p = raw, r.n = n;
	/* the first signature packet whose issuer is one of our signing keys decides */
	while (r.n) {
		const struct key *cands[1 + MAX_SUBKEYS];
		size_t nc = 0;
		uint8_t dg[EVP_MAX_MD_SIZE];
		unsigned dlen, tag;
		struct rd body;
		struct sig s;
		if (next_packet(&r, &tag, &body) < 0 || tag != TAG_SIG || parse_sig(body, &s) < 0 || !s.has_issuer)
			goto out;
		for (size_t i = 0; i <= k->nr_sub; i++) {
			const struct key *c = i ? &k->sub[i - 1] : &k->primary;
			if (!memcmp(c->id, s.issuer, 8) && c->flags_valid && (c->flags & FLAG_SIGN))
				cands[nc++] = c;
		}
		if (!nc)
			continue;
		if (digest(&s, text, text_len, dg, &dlen) < 0 || memcmp(dg, s.left16, 2))
			goto out;
		for (size_t i = 0; i < nc; i++) {
			const struct key *c = cands[i];
			if (check(c, &s, dg, dlen) < 0)
				continue;
			/* a good signature, then upstream's checks of the keys' state */
			if (k->primary.revoked || c->revoked ||
			    expired(k->primary.created, k->primary.expires, now) ||
			    expired(c->created, c->expires, now) || expired(s.created, s.expires, now) ||
			    expired(k->primary.sig_created, k->primary.sig_expires, now) ||
			    (c != &k->primary && expired(c->sig_created, c->sig_expires, now)))
				goto out;
			ret = 0;
			goto out;
		}
		goto out;
	}
out:
	free(raw);
	return ret;
}
