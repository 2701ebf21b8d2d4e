/*
 * Gitaly's own OpenPGP (GPG) signing key and the check of OpenPGP signatures
 * against it, which tells GetCommitSignatures' SIGNER_SYSTEM from SIGNER_USER
 * (docs/technical/commit-signing.md, "OpenPGP keys").
 *
 * A key is parsed from a binary (not armored) transferable key, secret or
 * public, as `gpg --export-secret-keys` writes it; only the public halves of
 * the primary key and its subkeys are kept, with the facts of their self- and
 * binding signatures (usage flags, expiry, revocation). Signatures are v4
 * packets in a "PGP SIGNATURE" armor, checked on OpenSSL. Key algorithms:
 * RSA, ECDSA on P-256/384/521 and EdDSA on Ed25519.
 * Both parsers take untrusted bytes (fuzz/fuzz_pgpsig.c) and never crash.
 */
#ifndef GITALY_READ_PGPSIG_H
#define GITALY_READ_PGPSIG_H

#include <stddef.h>
#include <stdint.h>

struct pgpsig_key;

/*
 * Parse; NULL on any error, with `why` (if not NULL) set to a static text in
 * upstream's words ("EOF", "openpgp: invalid data: ...").
 */
struct pgpsig_key *pgpsig_key_parse(const uint8_t *buf, size_t len, const char **why);
void pgpsig_key_free(struct pgpsig_key *k);

/*
 * 0 when `sig` (an armored "PGP SIGNATURE" block, as a commit's gpgsig header
 * holds it) was made over `text` by a signing-capable key of `k` that is
 * neither revoked nor expired at `now` (seconds since the epoch), and the
 * signature itself has not expired; negative otherwise.
 */
int pgpsig_verify(const struct pgpsig_key *k, const char *sig, size_t sig_len,
		  const char *text, size_t text_len, int64_t now);

#endif
