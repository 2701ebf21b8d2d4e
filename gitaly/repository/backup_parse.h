/*
 * Parsers of bytes that come from bundles and backup sinks: the listing of a
 * bundle's heads, the guess of the branch its HEAD meant, the LATEST
 * pointers and step numbers of upstream's pointer layout
 * (docs/technical/backups.md). They depend on lib/base only, so that
 * fuzz/fuzz_backup_parse.c can build them alone.
 */
#ifndef GITALY_REPOSITORY_BACKUP_PARSE_H
#define GITALY_REPOSITORY_BACKUP_PARSE_H

#include "base/strbuf.h"

#define BACKUP_MAX_STEPS 999

/*
 * The branch a bundle's HEAD (`oid`) meant, from `refs` ("<oid> <refname>"
 * lines in name order; a bundle records no symbolic refs): refs/heads/main,
 * then refs/heads/master, else the first branch at `oid`. 0 with the name
 * appended to `out`, or -1 when none.
 */
int bundle_guess_head(const char *refs, const char *oid, struct strbuf *out);
/* The oid of the "<oid> HEAD" line of `git bundle list-heads` output into `oid` (65 bytes); 0, or -1. */
int bundle_list_head(const char *listing, char *oid);
/*
 * A LATEST pointer's contents in `sb`, cut to its first line, which must be
 * one path component (not "." or ".."). 0, or -1.
 */
int backup_pointer_check(struct strbuf *sb);
/* "001" -> 1: a step number 1..BACKUP_MAX_STEPS, or 0 when `s` is none. */
unsigned backup_step_number(const char *s);

#endif
