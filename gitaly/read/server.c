/* ServerService: ServerInfo, DiskStatistics, ClockSynced, ReadinessCheck. */
#include "core/gitaly.h"
#include "core/call.h"
#include "base/fs.h"
#include "base/pb.h"
#include "base/util.h"
#include "ntp/ntp.h"
#include "server.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

static const char *fs_type_name(long type)
{
	switch ((unsigned long)type) {
	case 0xEF53: return "ext4";
	case 0x58465342: return "xfs";
	case 0x9123683E: return "btrfs";
	case 0x6969: return "nfs";
	case 0x01021994: return "tmpfs";
	case 0x794c7630: return "overlayfs";
	case 0x2FC12FC1: return "zfs";
	default: return "unknown";
	}
}

static char *filesystem_id(const char *storage)
{
	struct strbuf path = STRBUF_INIT, data = STRBUF_INIT;
	json_t *j;
	char *id = NULL;
	strbuf_addf(&path, "%s/.gitaly-metadata", storage);
	if (fs_read_file(path.buf, 65536, &data) == 0 && (j = json_loadb(data.buf, data.len, 0, NULL))) {
		const char *s = json_string_value(json_object_get(j, "gitaly_filesystem_id"));
		if (s)
			id = xstrdup(s);
		json_decref(j);
	}
	strbuf_release(&path);
	strbuf_release(&data);
	return id ? id : xstrdup("");
}

static int storage_writeable(const char *storage)
{
	struct strbuf path = STRBUF_INIT;
	int fd, ok;
	strbuf_addf(&path, "%s/+testWrite", storage);
	fd = open(path.buf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ok = fd >= 0 && write(fd, "ok", 2) == 2;
	if (fd >= 0)
		close(fd);
	ok = ok && unlink(path.buf) == 0;
	strbuf_release(&path);
	return ok;
}

static void server_info(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__ServerInfoResponse resp = GITALY__SERVER_INFO_RESPONSE__INIT;
	Gitaly__ServerInfoResponse__StorageStatus *st, **stp;
	size_t n = g->cfg.nr_storages;

	st = xcalloc(n ? n : 1, sizeof(*st));
	stp = xcalloc(n ? n : 1, sizeof(*stp));
	for (size_t i = 0; i < n; i++) {
		const char *path = g->cfg.storages[i].path;
		struct stat sb;
		struct statfs fs;
		gitaly__server_info_response__storage_status__init(&st[i]);
		st[i].storage_name = g->cfg.storages[i].name;
		st[i].readable = stat(path, &sb) == 0;
		st[i].writeable = st[i].readable && storage_writeable(path);
		st[i].fs_type = (char *)(statfs(path, &fs) == 0 ? fs_type_name((long)fs.f_type) : "unknown");
		st[i].filesystem_id = filesystem_id(path);
		st[i].replication_factor = 1;
		stp[i] = &st[i];
	}
	resp.server_version = g->version;
	resp.git_version = g->git_version;
	resp.n_storage_statuses = n;
	resp.storage_statuses = stp;
	msg_reply(call, &resp);
	for (size_t i = 0; i < n; i++)
		free(st[i].filesystem_id);
	free(st);
	free(stp);
}

static void disk_statistics(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__DiskStatisticsResponse resp = GITALY__DISK_STATISTICS_RESPONSE__INIT;
	Gitaly__DiskStatisticsResponse__StorageStatus *st, **stp;
	size_t n = g->cfg.nr_storages;

	st = xcalloc(n ? n : 1, sizeof(*st));
	stp = xcalloc(n ? n : 1, sizeof(*stp));
	for (size_t i = 0; i < n; i++) {
		struct statfs fs;
		gitaly__disk_statistics_response__storage_status__init(&st[i]);
		st[i].storage_name = g->cfg.storages[i].name;
		if (statfs(g->cfg.storages[i].path, &fs) == 0) {
			st[i].available = (int64_t)fs.f_bavail * (int64_t)fs.f_bsize;
			st[i].used = (int64_t)(fs.f_blocks - fs.f_bfree) * (int64_t)fs.f_bsize;
		}
		stp[i] = &st[i];
	}
	resp.n_storage_statuses = n;
	resp.storage_statuses = stp;
	msg_reply(call, &resp);
	free(st);
	free(stp);
}

/* --- ClockSynced: one NTP exchange (docs/technical/clock-sync.md) --- */

struct clock_synced {
	struct gitaly_call c;
	struct ntp_query *q;
	char *host;
	int64_t threshold_ns;
};

static void cs_release(struct gitaly_call *c)
{
	struct clock_synced *x = (struct clock_synced *)c;
	free(x->host);
	free(x);
}

static void cs_cancel(struct gitaly_call *c)
{
	struct clock_synced *x = (struct clock_synced *)c;
	if (x->q)
		ntp_query_cancel(x->q);
}

static void cs_done(void *arg, const char *stage, const char *err, int64_t offset_ns)
{
	struct clock_synced *x = arg;
	x->q = NULL;
	if (!gitaly_call_gone(&x->c)) {
		if (err && !strcmp(stage, "validate")) {
			gitaly_call_finishf(&x->c, GRPC_UNKNOWN, "validate ntp response: %s", err);
		} else if (err) {
			gitaly_call_finishf(&x->c, GRPC_UNKNOWN, "query ntp host %s: %s", x->host, err);
		} else {
			Gitaly__ClockSyncedResponse resp = GITALY__CLOCK_SYNCED_RESPONSE__INIT;
			resp.synced = offset_ns <= x->threshold_ns && offset_ns >= -x->threshold_ns;
			gitaly_call_send(&x->c, &resp);
			gitaly_call_finish(&x->c, GRPC_OK, NULL, NULL);
		}
	}
	gitaly_call_drop(&x->c);
}

static void clock_synced(struct grpc_call *call, const uint8_t *data, size_t len, void *arg)
{
	struct gitaly *g = arg;
	Gitaly__ClockSyncedRequest *req = msg_unpack(call, &gitaly__clock_synced_request__descriptor, data, len);
	struct strbuf why = STRBUF_INIT;
	struct clock_synced *x;
	int64_t ns;

	if (!req)
		return;
	if (pb_duration_check(req->drift_threshold != NULL, req->drift_threshold ? req->drift_threshold->seconds : 0,
			      req->drift_threshold ? req->drift_threshold->nanos : 0, &ns, &why) < 0) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, why.buf, NULL);
		strbuf_release(&why);
		msg_free(req);
		return;
	}
	x = xcalloc(1, sizeof(*x));
	gitaly_call_init(&x->c, g, call, cs_release);
	x->c.cancel = cs_cancel;
	x->host = xstrdup(*req->ntp_host ? req->ntp_host : NTP_DEFAULT_HOST);
	x->threshold_ns = ns;
	msg_free(req);
	gitaly_call_hold(&x->c);
	x->q = ntp_query(g->loop, x->host, NTP_TIMEOUT_MS, cs_done, x);
	gitaly_call_watch(&x->c);
}

/* Upstream's gitaly has nothing to check: the RPC exists so gitaly and praefect answer alike. */
static void readiness_check(struct grpc_call *call, const uint8_t *data, size_t len, void *arg)
{
	Gitaly__ReadinessCheckRequest *req = msg_unpack(call, &gitaly__readiness_check_request__descriptor, data, len);
	Gitaly__ReadinessCheckResponse resp = GITALY__READINESS_CHECK_RESPONSE__INIT;
	Gitaly__ReadinessCheckResponse__Ok ok = GITALY__READINESS_CHECK_RESPONSE__OK__INIT;
	(void)arg;
	if (!req)
		return;
	msg_free(req);
	resp.result_case = GITALY__READINESS_CHECK_RESPONSE__RESULT_OK_RESPONSE;
	resp.ok_response = &ok;
	msg_reply(call, &resp);
}

void gitaly_register_server(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.ServerService/ServerInfo", server_info, g);
	gitaly_add_unary(s, "/gitaly.ServerService/DiskStatistics", disk_statistics, g);
	gitaly_add_unary(s, "/gitaly.ServerService/ClockSynced", clock_synced, g);
	gitaly_add_unary(s, "/gitaly.ServerService/ReadinessCheck", readiness_check, g);
}
