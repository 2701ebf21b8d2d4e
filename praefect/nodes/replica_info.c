/*
 * Telling a node what the tracking store now says about its replica
 * (ClusterReplicaService/SetReplicaInfo, ours): sent after the store
 * recorded a replica's generation (a write's bump, a creation, a
 * replication, an election), off the client's path: the caller does not
 * wait for it. Each record names the primary praefect knew then, with
 * praefect's wall clock as its epoch, so a rebuild can restore it.
 * What a lost call leaves behind (a record one generation behind) is
 * described in docs/technical/recovery.md.
 */
#include "praefect.h"
#include "base/log.h"
#include "base/util.h"
#include "internal.pb-c.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "base/banned.h"

#define REPLICA_INFO_TIMEOUT_MS 10000

static void on_replica_info(void *arg, enum grpc_code code, const char *message, const uint8_t *resp,
			    size_t len)
{
	char *storage = arg;
	struct log_entry e;
	(void)resp;
	(void)len;
	if (code != GRPC_OK && log_begin(&e, LOG_WARN, "writing replica info failed")) {
		log_str(&e, "storage", storage);
		log_int(&e, "grpc.code", code);
		log_str(&e, "error", message ? message : "");
		log_end(&e);
	}
	free(storage);
}

/* Milliseconds since 1970: epochs must compare across praefect restarts and praefects. */
static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void replica_info_send(struct praefect *p, const struct repo *r, const char *storage, int64_t generation)
{
	Gitaly__SetReplicaInfoRequest req = GITALY__SET_REPLICA_INFO_REQUEST__INIT;
	Gitaly__ReplicaInfo info = GITALY__REPLICA_INFO__INIT;
	Gitaly__Repository repo = GITALY__REPOSITORY__INIT;
	struct node *n;
	uint8_t *buf;
	size_t len;
	char *arg;

	if (!r || !r->vs || generation < 0 || !p->calls.set_replica_info || !(n = vs_node(r->vs, storage)))
		return;
	repo.storage_name = (char *)n->cfg->storage;
	repo.relative_path = r->replica_path;
	info.virtual_storage = (char *)r->vs->cfg->name;
	info.relative_path = r->relative_path;
	info.repository_id = r->id;
	info.generation = generation;
	if (r->primary) {
		info.primary = r->primary;
		info.primary_epoch = wall_ms();
	}
	req.repository = &repo;
	req.info = &info;
	len = gitaly__set_replica_info_request__get_packed_size(&req);
	buf = xmalloc(len + 1);
	gitaly__set_replica_info_request__pack(&req, buf);
	arg = xstrdup(n->cfg->storage);
	if (node_unary(n, p->calls.set_replica_info->name, buf, len, REPLICA_INFO_TIMEOUT_MS, on_replica_info,
		       arg) < 0)
		free(arg);
	free(buf);
}
