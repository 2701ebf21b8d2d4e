/*
 * Reading refs the way git stores them ("files" backend), without running git.
 *
 * A fast path only: every function answers either with certainty or with
 * GIT_REFS_UNSURE, and the caller then asks git itself. UNSURE covers
 * everything unusual: a reftable or worktree repository, a name outside the
 * conservative character set, a loose ref file or packed-refs line that is
 * not in the exact form git writes, a file too large to read on the loop,
 * and any I/O error other than "no such file". See docs/technical/ref-files.md
 * for the storage rules this follows.
 *
 * Rules (as git's files backend): a loose file under the git dir wins over
 * a packed-refs entry of the same name; a name whose path is a directory, or
 * passes through a regular file, is not a loose ref; "<name>.lock" files are
 * ignored (git writes the lock and renames it over the ref, so the loose
 * file is always complete).
 */
#ifndef GIT_REFS_H
#define GIT_REFS_H

#include <stddef.h>

#define GIT_REFS_HEXSZ_MAX 64
#define GIT_REFS_NAME_MAX 1024
/* packed-refs larger than this are left to git (read per call on the loop) */
#define GIT_REFS_PACKED_MAX (4u << 20)
/* symbolic refs followed, as git's SYMREF_MAXDEPTH */
#define GIT_REFS_MAX_DEPTH 5

enum {
	GIT_REFS_FOUND = 0,
	GIT_REFS_MISSING = 1,
	GIT_REFS_UNSURE = -1,
};

struct git_ref {
	char oid[GIT_REFS_HEXSZ_MAX + 1];     /* hex object id; "" for a symbolic ref */
	char target[GIT_REFS_NAME_MAX + 1];   /* what a symbolic ref points at; "" otherwise */
	char peeled[GIT_REFS_HEXSZ_MAX + 1];  /* packed "^" line, "" when none was given */
};

/*
 * 0 when `name` is a ref name this reader handles: "HEAD", or "refs/"
 * followed by components of [A-Za-z0-9_.+-] (no empty component, none
 * starting with '.', none ending in ".lock", no ".."). -1 otherwise (the
 * caller asks git, which may still accept the name).
 */
int git_refs_name_ok(const char *name, size_t len);

/* Parse the content of a loose ref file: "<hex>\n" or "ref: <name>\n". */
int git_refs_parse_loose(const char *buf, size_t len, struct git_ref *out);

/*
 * Look `name` up in the content of a packed-refs file. FOUND fills `out`
 * (oid and, when a "^" line follows, peeled); MISSING; or UNSURE on any line
 * not in the form git writes. When `children` is not NULL it is set to
 * whether some entry lies below "<name>/".
 */
int git_refs_packed_find(const char *buf, size_t len, const char *name, size_t nlen,
			 struct git_ref *out, int *children);

/*
 * Read ref `name` of the repository at `gitdir` without following symbolic
 * refs. When `children` is not NULL it is set to whether any ref (loose or
 * packed) lies below "<name>/" (a for-each-ref pattern would match those).
 */
int git_refs_read(const char *gitdir, const char *name, size_t nlen, struct git_ref *out, int *children);

/*
 * Read `name` following symbolic refs: FOUND fills `out->oid` (and `out->target`
 * with the last name followed when `name` was symbolic); a symbolic ref to a
 * missing ref is MISSING, as git's ref resolution says.
 */
int git_refs_resolve(const char *gitdir, const char *name, size_t nlen, struct git_ref *out);

#endif
