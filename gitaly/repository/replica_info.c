/*
 * ClusterReplicaService/SetReplicaInfo (ours): praefect's record of a replica
 * (virtual storage, relative path, repository id, generation, the primary it
 * knew and when) written beside
 * it as <repo>/gitaly-cluster.json, through a temporary file, fsync and
 * rename, so a reader sees the old record or the new one, never a mix.
 * GetReplicaInfo reads it back (replica_info_parse.c parses it).
 * Format and guarantees: docs/technical/recovery.md.
 */
#include "repository/repository.h"
#include "repository/replica_info.h"
#include "base/fs.h"
#include "base/util.h"
#include "internal.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "base/banned.h"

#define REPLICA_INFO_FILE "gitaly-cluster.json"
#define REPLICA_INFO_MAX (64 * 1024)

/* The write runs on the thread pool: fsync must not hold up the event loop. */
struct replica_info_op {
	struct gitaly_call op;
	uv_work_t work;
	struct strbuf path, content;
	int err;
};

static void replica_info_work(uv_work_t *w)
{
	struct replica_info_op *r = w->data;
	r->err = fs_write_atomic(r->path.buf, r->content.buf, r->content.len, 0644);
}

static void replica_info_written(uv_work_t *w, int status)
{
	struct replica_info_op *r = w->data;
	Gitaly__SetReplicaInfoResponse resp = GITALY__SET_REPLICA_INFO_RESPONSE__INIT;
	(void)status;
	if (r->err < 0)
		reposvc_finishf(&r->op, GRPC_INTERNAL, "writing replica info: %s", strerror(-r->err));
	else
		reposvc_reply(&r->op, &resp);
}

static void replica_info_release(struct gitaly_call *op)
{
	struct replica_info_op *r = container_of(op, struct replica_info_op, op);
	strbuf_release(&r->path);
	strbuf_release(&r->content);
	free(r);
}

static void set_replica_info(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__SetReplicaInfoRequest *req = msg_unpack(call, &gitaly__set_replica_info_request__descriptor,
							buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT, out = STRBUF_INIT;
	const Gitaly__ReplicaInfo *in;
	struct replica_record rec;
	struct replica_info_op *r;
	enum grpc_code code;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto out;
	}
	in = req->info;
	if (!in || !in->virtual_storage || !*in->virtual_storage || !in->relative_path ||
	    !*in->relative_path || in->repository_id <= 0 || in->generation < 0 || in->primary_epoch < 0) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT,
				 "replica info needs a virtual storage, a relative path, a positive repository id "
				 "and a generation of 0 or more", NULL);
		goto out;
	}
	replica_record_init(&rec);
	strbuf_addstr(&rec.virtual_storage, in->virtual_storage);
	strbuf_addstr(&rec.relative_path, in->relative_path);
	rec.repository_id = in->repository_id;
	rec.generation = in->generation;
	if (in->primary && *in->primary) {
		strbuf_addstr(&rec.primary, in->primary);
		rec.primary_epoch = in->primary_epoch;
	}
	replica_record_format(&rec, &out);
	replica_record_release(&rec);
	strbuf_addstr(&path, "/" REPLICA_INFO_FILE);
	r = xcalloc(1, sizeof(*r));
	reposvc_init(&r->op, g, call, replica_info_release);
	r->path = path;
	r->content = out;
	strbuf_init(&path, 0);
	strbuf_init(&out, 0);
	r->work.data = r;
	gitaly_call_watch(&r->op);
	if (uv_queue_work(g->loop, &r->work, replica_info_work, replica_info_written) < 0)
		reposvc_finish(&r->op, GRPC_INTERNAL, "cannot queue work");
out:
	strbuf_release(&path);
	strbuf_release(&msg);
	strbuf_release(&out);
	msg_free(req);
}

static void get_replica_info(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__GetReplicaInfoRequest *req = msg_unpack(call, &gitaly__get_replica_info_request__descriptor,
							buf, len);
	Gitaly__GetReplicaInfoResponse resp = GITALY__GET_REPLICA_INFO_RESPONSE__INIT;
	Gitaly__ReplicaInfo info = GITALY__REPLICA_INFO__INIT;
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT, content = STRBUF_INIT;
	struct replica_record rec;
	enum grpc_code code;
	int rc;

	if (!req)
		return;
	replica_record_init(&rec);
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto out;
	}
	strbuf_addstr(&path, "/" REPLICA_INFO_FILE);
	rc = fs_read_file(path.buf, REPLICA_INFO_MAX, &content);
	if (rc == -ENOENT) {
		grpc_call_finish(call, GRPC_NOT_FOUND, "replica has no replica info", NULL);
	} else if (rc < 0) {
		grpc_call_finishf(call, GRPC_INTERNAL, "reading replica info: %s", strerror(-rc));
	} else if (replica_record_parse(content.buf, content.len, &rec, &msg) < 0) {
		grpc_call_finishf(call, GRPC_DATA_LOSS, "reading replica info: %s", msg.buf);
	} else {
		info.virtual_storage = rec.virtual_storage.buf;
		info.relative_path = rec.relative_path.buf;
		info.repository_id = rec.repository_id;
		info.generation = rec.generation;
		info.primary = rec.primary.buf;
		info.primary_epoch = rec.primary_epoch;
		resp.info = &info;
		msg_reply(call, &resp);
	}
out:
	replica_record_release(&rec);
	strbuf_release(&path);
	strbuf_release(&msg);
	strbuf_release(&content);
	msg_free(req);
}

void reposvc_register_replica_info(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.ClusterReplicaService/SetReplicaInfo", set_replica_info, g);
	gitaly_add_unary(s, "/gitaly.ClusterReplicaService/GetReplicaInfo", get_replica_info, g);
}
