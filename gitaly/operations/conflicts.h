/* ConflictsService internals shared by conflicts.c and resolve_conflicts.c. */
#ifndef GITALY_OPERATIONS_CONFLICTS_H
#define GITALY_OPERATIONS_CONFLICTS_H

#include "operations/operations.h"
#include "conflicts.pb-c.h"

/* ResolveConflicts (resolve_conflicts.c): the client-streaming handler. */
void conflicts_resolve_start(struct grpc_call *call, void *data);

/*
 * The conflicting files of `git merge-tree -z --write-tree` output (without
 * --name-only), one entry per path in the order git lists them: each stage's
 * path is set when git lists that stage (1 ancestor, 2 ours, 3 theirs).
 * Returns the merged tree id length (0: unparsable).
 */
struct conflict_entry {
	char *path;
	int has_ancestor, has_ours, has_theirs;
	unsigned our_mode;
};
size_t conflicts_parse(const struct strbuf *out, struct conflict_entry **v, size_t *nr);
void conflicts_free(struct conflict_entry *v, size_t nr);

#endif
