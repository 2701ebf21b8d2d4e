/* ConflictsService internals shared by conflicts.c and resolve_conflicts.c. */
#ifndef GITALY_OPERATIONS_CONFLICTS_H
#define GITALY_OPERATIONS_CONFLICTS_H

#include "operations/operations.h"
#include "conflicts.pb-c.h"

/* ResolveConflicts (resolve_conflicts.c): the client-streaming handler. */
void conflicts_resolve_start(struct grpc_call *call, void *data);

/*
 * Every `from` in `sb` replaced by `to`: git labels conflict markers with the
 * commit ids it merged, GitLab knows them labelled with the paths.
 */
void conflicts_replace_all(struct strbuf *sb, const char *from, const char *to);

#endif
