/* libFuzzer target for gitaly/read/sshsig.c: any bytes as a key file, and as a signature checked against a fixed key. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "read/sshsig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An ed25519 key made once with ssh-keygen for this target (no secret: a test key). */
static const char fixed_key[] =
	"-----BEGIN OPENSSH PRIVATE KEY-----\n"
	"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
	"QyNTUxOQAAACA8Ci01OyWowMnSFLnGGlFWJU+47pQH9KBsAqoXTB+96AAAAIiDj9U4g4/V\n"
	"OAAAAAtzc2gtZWQyNTUxOQAAACA8Ci01OyWowMnSFLnGGlFWJU+47pQH9KBsAqoXTB+96A\n"
	"AAAECtnmlYhsIrU+pZ5I4jNI79FDhsJGYugms1rB+HHNS1WDwKLTU7JajAydIUucYaUVYl\n"
	"T7julAf0oGwCqhdMH73oAAAABGZ1enoB\n"
	"-----END OPENSSH PRIVATE KEY-----\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the bytes before the first NUL are a key file, the rest a signature */
	const uint8_t *nul = memchr(data, 0, size);
	size_t klen = nul ? (size_t)(nul - data) : size;
	struct sshsig_key *k = sshsig_key_parse((const char *)data, klen);
	static struct sshsig_key *fixed;
	const char *sig = nul ? (const char *)nul + 1 : (const char *)data;
	size_t slen = nul ? size - klen - 1 : size;

	if (!fixed)
		fixed = sshsig_key_parse(fixed_key, sizeof(fixed_key) - 1);
	if (!fixed)
		__builtin_trap();
	(void)sshsig_is_ssh_key((const char *)data, klen);
	/* random bytes never verify */
	if (!sshsig_verify(fixed, sig, slen, "text", 4))
		__builtin_trap();
	if (k)
		(void)sshsig_verify(k, sig, slen, (const char *)data, klen);
	sshsig_key_free(k);
	return 0;
}
