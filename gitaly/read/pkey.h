/* OpenSSL public keys from their parameters, and base64: shared by the SSH and OpenPGP signature checks. */
#ifndef GITALY_READ_PKEY_H
#define GITALY_READ_PKEY_H

#include <openssl/evp.h>
#include <openssl/param_build.h>

/* The public key of algorithm `alg` ("RSA", "EC", "ED25519") from the parameters in `bld`, or NULL. */
EVP_PKEY *pkey_from_params(const char *alg, OSSL_PARAM_BLD *bld);

/*
 * Base64 `clean` (`n` characters, no whitespace) decoded into a fresh buffer,
 * its length in `out_len`; NULL when it is no whole base64. Frees `clean`.
 */
unsigned char *pkey_b64_decode(char *clean, size_t n, size_t *out_len);

#endif
