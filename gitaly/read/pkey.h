/* OpenSSL public keys from their parameters: shared by the SSH and OpenPGP signature checks. */
#ifndef GITALY_READ_PKEY_H
#define GITALY_READ_PKEY_H

#include <openssl/evp.h>
#include <openssl/param_build.h>

/* The public key of algorithm `alg` ("RSA", "EC", "ED25519") from the parameters in `bld`, or NULL. */
EVP_PKEY *pkey_from_params(const char *alg, OSSL_PARAM_BLD *bld);

#endif
