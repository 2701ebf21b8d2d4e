/* ServerService: ServerInfo and DiskStatistics. */
#include "core/gitaly.h"
#include "base/fs.h"
#include "base/util.h"
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

void gitaly_register_server(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.ServerService/ServerInfo", server_info, g);
	gitaly_add_unary(s, "/gitaly.ServerService/DiskStatistics", disk_statistics, g);
}
