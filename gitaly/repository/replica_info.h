/*
 * The replica record <repo>/gitaly-cluster.json (docs/technical/recovery.md):
 * a flat JSON object with the string members virtual_storage and
 * relative_path and the integer members repository_id and generation.
 */
#ifndef GITALY_REPOSITORY_REPLICA_INFO_H
#define GITALY_REPOSITORY_REPLICA_INFO_H

#include <stddef.h>
#include <stdint.h>
#include "base/strbuf.h"

struct replica_record {
	struct strbuf virtual_storage, relative_path;
	int64_t repository_id, generation;
};

void replica_record_init(struct replica_record *r);
void replica_record_release(struct replica_record *r);
/* Parse `len` bytes: 0, or -1 with a reason in `err` (every member required, no others). */
int replica_record_parse(const char *buf, size_t len, struct replica_record *r, struct strbuf *err);

#endif
