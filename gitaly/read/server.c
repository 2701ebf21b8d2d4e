/* ServerService: ServerInfo, DiskStatistics and ClockSynced. */
#include "core/gitaly.h"
#include "base/fs.h"
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

/*
 * ClockSynced: one NTP query (lib/ntp) on the thread pool, so the loop does
 * not wait the up to 5 s it may take. A call closed meanwhile is not answered.
 */
struct clock_op {
	uv_work_t work;
	struct grpc_call *call;     /* NULL once the call closed */
	char *host;
	int64_t threshold_ns;
	int synced;
	struct strbuf err;
};

static void clock_call_closed(struct grpc_call *call, enum grpc_code code, void *arg)
{
	struct clock_op *op = arg;
	op->call = NULL;
}

static void clock_work(uv_work_t *w)
{
	struct clock_op *op = w->data;
	op->synced = ntp_clock_synced(op->host, op->threshold_ns, &op->err);
}

static void clock_after(uv_work_t *w, int status)
{
	struct clock_op *op = w->data;
	if (op->call) {
		grpc_call_on_close(op->call, NULL, NULL);
		if (op->synced < 0) {
			grpc_call_finishf(op->call, GRPC_UNKNOWN, "query ntp host %s: %s",
					  *op->host ? op->host : NTP_DEFAULT_HOST, op->err.buf);
		} else {
			Gitaly__ClockSyncedResponse resp = GITALY__CLOCK_SYNCED_RESPONSE__INIT;
			resp.synced = op->synced == 1;
			msg_reply(op->call, &resp);
		}
	}
	strbuf_release(&op->err);
	free(op->host);
	free(op);
}

static void clock_synced(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__ClockSyncedRequest *req = msg_unpack(call, &gitaly__clock_synced_request__descriptor, buf, len);
	const Google__Protobuf__Duration *d;
	struct clock_op *op;

	if (!req)
		return;
	d = req->drift_threshold;
	/* the checks of upstream's Duration validation */
	if (!d) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "invalid nil Duration", NULL);
	} else if (d->nanos <= -1000000000 || d->nanos >= 1000000000) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "duration (seconds:%lld nanos:%d) has out-of-range nanos",
				  (long long)d->seconds, d->nanos);
	} else if ((d->seconds < 0 && d->nanos > 0) || (d->seconds > 0 && d->nanos < 0)) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT,
				  "duration (seconds:%lld nanos:%d) has seconds and nanos with different signs",
				  (long long)d->seconds, d->nanos);
	} else if (d->seconds > INT64_MAX / 1000000000 - 1 || d->seconds < INT64_MIN / 1000000000 + 1) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "duration (seconds:%lld nanos:%d) exceeds +-10000 years",
				  (long long)d->seconds, d->nanos);
	} else {
		op = xcalloc(1, sizeof(*op));
		op->call = call;
		op->host = xstrdup(req->ntp_host ? req->ntp_host : "");
		op->threshold_ns = d->seconds * 1000000000 + d->nanos;
		if (op->threshold_ns < 0)
			op->threshold_ns = -op->threshold_ns;
		strbuf_init(&op->err, 0);
		op->work.data = op;
		grpc_call_on_close(call, clock_call_closed, op);
		if (uv_queue_work(g->loop, &op->work, clock_work, clock_after) < 0) {
			grpc_call_on_close(call, NULL, NULL);
			grpc_call_finish(call, GRPC_INTERNAL, "cannot queue work", NULL);
			strbuf_release(&op->err);
			free(op->host);
			free(op);
		}
	}
	msg_free(req);
}

void gitaly_register_server(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.ServerService/ServerInfo", server_info, g);
	gitaly_add_unary(s, "/gitaly.ServerService/DiskStatistics", disk_statistics, g);
	gitaly_add_unary(s, "/gitaly.ServerService/ClockSynced", clock_synced, g);
}
