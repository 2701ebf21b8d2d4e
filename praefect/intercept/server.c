/*
 * ServerService calls praefect answers itself, besides ServerInfo
 * (intercept.c): DiskStatistics gathered from every node, ClockSynced
 * about praefect's own clock (docs/technical/clock-sync.md).
 */
#include "praefect.h"
#include "base/log.h"
#include "base/pb.h"
#include "base/util.h"
#include "grpc/auth.h"
#include "ntp/ntp.h"
#include "server.pb-c.h"

#include <stdlib.h>
#include <string.h>

#define DISK_STATS_TIMEOUT_MS 10000

static int reply(struct grpc_call *call, const ProtobufCMessage *msg)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = xmalloc(n ? n : 1);
	int rc;
	protobuf_c_message_pack(msg, buf);
	rc = grpc_call_reply(call, buf, n);
	free(buf);
	return rc;
}

/* --- DiskStatistics: every node's storages, in configuration order --- */

struct disk_stats {
	struct grpc_call *call;        /* NULL once the client went away */
	size_t pending;
	char *failed;                  /* the first storage that did not answer */
	Gitaly__DiskStatisticsResponse **parts; /* one per node, NULL until it answered */
	size_t nr_parts;
};

struct disk_part {
	struct disk_stats *ds;
	size_t slot;
	char *storage;
	struct strbuf resp;
};

static void ds_client_gone(struct grpc_call *call, enum grpc_code code, void *arg)
{
	(void)call;
	(void)code;
	((struct disk_stats *)arg)->call = NULL;
}

static void ds_maybe_done(struct disk_stats *ds)
{
	Gitaly__DiskStatisticsResponse resp = GITALY__DISK_STATISTICS_RESPONSE__INIT;
	size_t n = 0;
	if (--ds->pending)
		return;
	if (ds->call) {
		grpc_call_on_close(ds->call, NULL, NULL);
		if (ds->failed) {
			grpc_call_finishf(ds->call, GRPC_UNKNOWN,
					  "error when requesting disk statistics from internal storage %s", ds->failed);
		} else {
			for (size_t i = 0; i < ds->nr_parts; i++)
				n += ds->parts[i] ? ds->parts[i]->n_storage_statuses : 0;
			resp.storage_statuses = xcalloc(n ? n : 1, sizeof(*resp.storage_statuses));
			for (size_t i = 0; i < ds->nr_parts; i++)
				for (size_t j = 0; ds->parts[i] && j < ds->parts[i]->n_storage_statuses; j++)
					resp.storage_statuses[resp.n_storage_statuses++] = ds->parts[i]->storage_statuses[j];
			reply(ds->call, &resp.base);
			free(resp.storage_statuses);
		}
	}
	for (size_t i = 0; i < ds->nr_parts; i++)
		if (ds->parts[i])
			gitaly__disk_statistics_response__free_unpacked(ds->parts[i], NULL);
	free(ds->parts);
	free(ds->failed);
	free(ds);
}

static void ds_part_message(struct grpc_client_call *cc, const uint8_t *msg, size_t len)
{
	struct disk_part *dp = grpc_client_call_user(cc);
	strbuf_reset(&dp->resp);
	strbuf_add(&dp->resp, msg, len);
}

static void ds_part_close(struct grpc_client_call *cc, enum grpc_code code, const char *message,
			  const struct grpc_metadata *trailers)
{
	struct disk_part *dp = grpc_client_call_user(cc);
	struct disk_stats *ds = dp->ds;
	Gitaly__DiskStatisticsResponse *r = NULL;
	(void)trailers;
	if (code == GRPC_OK)
		r = gitaly__disk_statistics_response__unpack(NULL, dp->resp.len, (const uint8_t *)dp->resp.buf);
	ds->parts[dp->slot] = r;
	if (!r) {
		log_msgf(LOG_WARN, "DiskStatistics from %s failed: %s", dp->storage, message ? message : "bad response");
		if (!ds->failed)
			ds->failed = xstrdup(dp->storage);
	}
	strbuf_release(&dp->resp);
	free(dp->storage);
	free(dp);
	ds_maybe_done(ds);
}

static const struct grpc_client_ops ds_ops = { .on_message = ds_part_message, .on_close = ds_part_close };

static void disk_statistics(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct praefect *p = data;
	struct disk_stats *ds = xcalloc(1, sizeof(*ds));
	const struct rpc_method *m = praefect_method("/gitaly.ServerService/DiskStatistics");
	(void)req;
	(void)len;
	for (size_t i = 0; i < p->nr_vs; i++)
		ds->nr_parts += p->vs[i].nr_nodes;
	ds->parts = xcalloc(ds->nr_parts ? ds->nr_parts : 1, sizeof(*ds->parts));
	ds->call = call;
	ds->pending = 1;
	grpc_call_on_close(call, ds_client_gone, ds);
	for (size_t i = 0, slot = 0; i < p->nr_vs; i++) {
		for (size_t j = 0; j < p->vs[i].nr_nodes; j++, slot++) {
			struct node *n = &p->vs[i].nodes[j];
			struct grpc_metadata md = GRPC_METADATA_INIT;
			struct grpc_client_call *cc;
			struct disk_part *dp = xcalloc(1, sizeof(*dp));
			dp->ds = ds;
			dp->slot = slot;
			dp->storage = xstrdup(n->cfg->storage);
			strbuf_init(&dp->resp, 0);
			auth_v2_add(&md, n->cfg->token);
			if (grpc_channel_call(n->ch, m->name, &md, DISK_STATS_TIMEOUT_MS, 0, &ds_ops, dp, &cc) == 0) {
				ds->pending++;
				grpc_client_call_send(cc, "", 0);
				grpc_client_call_close_send(cc);
			} else {
				if (!ds->failed)
					ds->failed = xstrdup(n->cfg->storage);
				strbuf_release(&dp->resp);
				free(dp->storage);
				free(dp);
			}
			grpc_metadata_release(&md);
		}
	}
	ds_maybe_done(ds);
}

/* --- ClockSynced: praefect's own clock, as gitaly's (read/server.c) --- */

struct clock_synced {
	struct grpc_call *call;        /* NULL once the client went away */
	struct ntp_query *q;
	char *host;
	int64_t threshold_ns;
};

static void cs_client_gone(struct grpc_call *call, enum grpc_code code, void *arg)
{
	struct clock_synced *x = arg;
	(void)call;
	(void)code;
	x->call = NULL;
	ntp_query_cancel(x->q);
}

static void cs_done(void *arg, const char *stage, const char *err, int64_t offset_ns)
{
	struct clock_synced *x = arg;
	if (x->call) {
		grpc_call_on_close(x->call, NULL, NULL);
		if (err && !strcmp(stage, "validate")) {
			grpc_call_finishf(x->call, GRPC_UNKNOWN, "validate ntp response: %s", err);
		} else if (err) {
			grpc_call_finishf(x->call, GRPC_UNKNOWN, "query ntp host %s: %s", x->host, err);
		} else {
			Gitaly__ClockSyncedResponse resp = GITALY__CLOCK_SYNCED_RESPONSE__INIT;
			resp.synced = offset_ns <= x->threshold_ns && offset_ns >= -x->threshold_ns;
			reply(x->call, &resp.base);
		}
	}
	free(x->host);
	free(x);
}

static void clock_synced(struct grpc_call *call, const uint8_t *data, size_t len, void *arg)
{
	struct praefect *p = arg;
	Gitaly__ClockSyncedRequest *req = gitaly__clock_synced_request__unpack(NULL, len, data);
	struct strbuf why = STRBUF_INIT;
	struct clock_synced *x;
	int64_t ns;

	if (!req) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		return;
	}
	if (pb_duration_check(req->drift_threshold != NULL, req->drift_threshold ? req->drift_threshold->seconds : 0,
			      req->drift_threshold ? req->drift_threshold->nanos : 0, &ns, &why) < 0) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, why.buf, NULL);
		strbuf_release(&why);
		gitaly__clock_synced_request__free_unpacked(req, NULL);
		return;
	}
	x = xcalloc(1, sizeof(*x));
	x->call = call;
	x->host = xstrdup(*req->ntp_host ? req->ntp_host : NTP_DEFAULT_HOST);
	x->threshold_ns = ns;
	gitaly__clock_synced_request__free_unpacked(req, NULL);
	x->q = ntp_query(p->loop, x->host, NTP_TIMEOUT_MS, cs_done, x);
	grpc_call_on_close(call, cs_client_gone, x);
}

void intercept_register_server(struct praefect *p)
{
	praefect_add_unary(p->server, "/gitaly.ServerService/DiskStatistics", disk_statistics, p);
	praefect_add_unary(p->server, "/gitaly.ServerService/ClockSynced", clock_synced, p);
}
