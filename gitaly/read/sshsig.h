/*
 * Gitaly's own SSH signing key and the check of SSHSIG signatures against it,
 * which tells GetCommitSignatures' SIGNER_SYSTEM from SIGNER_USER
 * (docs/technical/commit-signing.md).
 *
 * A key is parsed from the text of an unencrypted OpenSSH private key file
 * ("-----BEGIN OPENSSH PRIVATE KEY-----"); only its public half is kept.
 * Key types: ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256/384/521.
 * Both parsers take untrusted bytes (fuzz/fuzz_sshsig.c) and never crash.
 */
#ifndef GITALY_READ_SSHSIG_H
#define GITALY_READ_SSHSIG_H

#include <stddef.h>

struct sshsig_key;

/* Text of a key file that is an OpenSSH key (as opposed to a GPG key). */
int sshsig_is_ssh_key(const char *buf, size_t len);

/* Parse; NULL on any error (malformed, unknown key type). */
struct sshsig_key *sshsig_key_parse(const char *buf, size_t len);
void sshsig_key_free(struct sshsig_key *k);

/*
 * 0 when `sig` (an armored "SSH SIGNATURE" block, as a commit's gpgsig
 * header holds it) was made by `k` over `text`; negative otherwise.
 */
int sshsig_verify(const struct sshsig_key *k, const char *sig, size_t sig_len,
		  const char *text, size_t text_len);

#endif
