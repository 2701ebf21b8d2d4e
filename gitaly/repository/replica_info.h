/*
 * The replica record <repo>/gitaly-cluster.json (docs/technical/recovery.md):
 * a flat JSON object with the string members virtual_storage and
 * relative_path and the integer members repository_id and generation, and
 * optionally the string primary with the integer primary_epoch (both or
 * neither; records written before they existed have neither).
 */
#ifndef GITALY_REPOSITORY_REPLICA_INFO_H
#define GITALY_REPOSITORY_REPLICA_INFO_H

#include <stddef.h>
#include <stdint.h>
#include "base/strbuf.h"

struct replica_record {
	struct strbuf virtual_storage, relative_path;
	int64_t repository_id, generation;
	struct strbuf primary;                 /* empty: the record names none */
	int64_t primary_epoch;                 /* 0 when it names none */
};

void replica_record_init(struct replica_record *r);
void replica_record_release(struct replica_record *r);
/* Parse `len` bytes: 0, or -1 with a reason in `err` (every required member once, no others). */
int replica_record_parse(const char *buf, size_t len, struct replica_record *r, struct strbuf *err);
/* Append the record's JSON text (what replica_record_parse() reads back) and a newline. */
void replica_record_format(const struct replica_record *r, struct strbuf *out);

#endif
