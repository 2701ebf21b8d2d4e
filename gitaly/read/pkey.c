/* OpenSSL public keys from their parameters (see pkey.h). */
#include "read/pkey.h"

#include <stdlib.h>

EVP_PKEY *pkey_from_params(const char *alg, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, alg, NULL);
	EVP_PKEY *pkey = NULL;

	if (params && ctx && EVP_PKEY_fromdata_init(ctx) > 0)
		if (EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
			pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return pkey;
}

unsigned char *pkey_b64_decode(char *clean, size_t n, size_t *out_len)
{
	unsigned char *out;
	size_t pad = 0;
	int dec;

	if (n == 0 || n % 4) {
		free(clean);
		return NULL;
	}
	while (pad < 2 && clean[n - 1 - pad] == '=')
		pad++;
	if (!(out = malloc(n / 4 * 3 + 1))) {
		free(clean);
		return NULL;
	}
	dec = EVP_DecodeBlock(out, (const unsigned char *)clean, (int)n);
	free(clean);
	if (dec < 0 || (size_t)dec < pad) {
		free(out);
		return NULL;
	}
	*out_len = (size_t)dec - pad;
	return out;
}
