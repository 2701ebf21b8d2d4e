/* What the DiffService files (read/diff.c, read/diff_paths.c) share. */
#ifndef GITALY_READ_DIFF_H
#define GITALY_READ_DIFF_H

#include "read/read.h"

/* Upstream's checks of left/right commit ids: -1 after finishing INVALID_ARGUMENT. */
int diff_check_commits(struct rd *rd, const char *left, const char *right);
/*
 * Upstream refuses a git argument (a revision) that starts with '-' while it
 * builds the command line, before git runs: 0, or -1 with `msg` set to
 * `positional arg "<arg>" cannot start with dash '-': invalid argument`.
 */
int diff_dash_arg(const char *const *args, struct strbuf *msg);
/* Finish with `code` and "<prefix>exit status N" (or "signal: ..."). */
void diff_git_failed(struct rd *rd, enum grpc_code code, const char *prefix, int status);
/* `git rev-parse --show-object-format`; in `cb`, diff_hexsz() turns the result into 40 or 64. */
void diff_object_format(struct rd *rd, rd_capture_fn cb);
/* 40 or 64, or 0 after finishing the call INTERNAL. */
size_t diff_hexsz(struct rd *rd, int status, const struct strbuf *out);
/* FindChangedPaths and GetPatchID. */
void diff_register_paths(struct gitaly *g, struct grpc_server *s);

#endif
