/* BlobService reads: GetBlob and GetBlobs, streamed from cat-file with backpressure. */
#include "read/read.h"
#include "base/util.h"
#include "blob.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* --- GetBlob --- */

struct get_blob {
	struct rd rd;
	Gitaly__GetBlobRequest *req;
	struct rd_stream stream;
	int streaming, not_blob;
};

static void gb_free(struct rd *rd)
{
	struct get_blob *x = (struct get_blob *)rd;
	if (x->streaming)
		rd_stream_release(&x->stream);
}

static void gb_writable(struct rd *rd)
{
	struct get_blob *x = (struct get_blob *)rd;
	if (x->streaming)
		rd_stream_writable(rd, &x->stream);
}

static uint64_t gb_info(void *arg, const struct catfile_info *info)
{
	struct get_blob *x = arg;
	Gitaly__GetBlobResponse first = GITALY__GET_BLOB_RESPONSE__INIT;
	uint64_t limit = info->size;

	if (info->type != CATFILE_BLOB) {
		x->not_blob = 1;
		return 0;
	}
	if (x->req->limit >= 0 && (uint64_t)x->req->limit < limit)
		limit = (uint64_t)x->req->limit;
	first.size = (int64_t)info->size;
	first.oid = (char *)info->oid;
	rd_stream_begin(&x->stream, &first, 2);
	x->streaming = 1;
	return limit;
}

static void gb_data(void *arg, const char *buf, size_t len)
{
	struct get_blob *x = arg;
	rd_stream_data(&x->rd, &x->stream, buf, len);
}

static void gb_done(void *arg, int status)
{
	struct get_blob *x = arg;
	if (status == CATFILE_MISSING || (status == 0 && x->not_blob)) {
		/* not found is one empty message, not an error (docs/technical/gitaly-node.md, "Not found") */
		Gitaly__GetBlobResponse empty = GITALY__GET_BLOB_RESPONSE__INIT;
		rd_send(&x->rd, &empty);
		rd_ok(&x->rd);
		return;
	}
	if (status < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "read object: %s", strerror(-status));
		return;
	}
	rd_stream_end(&x->rd, &x->stream);
	rd_ok(&x->rd);
}

static const struct catfile_read_ops gb_ops = { gb_info, gb_data, gb_done };

static void gb_leased(struct rd *rd)
{
	struct get_blob *x = (struct get_blob *)rd;
	const char *oid = x->req->oid;
	int rc;
	/* metadata only: no need to pull the content through the pipe */
	if (x->req->limit == 0)
		rc = catfile_info(rd->cf, oid, strlen(oid), &gb_ops, x);
	else
		rc = catfile_contents(rd->cf, oid, strlen(oid), &gb_ops, x);
	if (rc < 0)
		rd_finish(rd, GRPC_INTERNAL, "read object: %s", strerror(-rc));
}

static void get_blob(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__GetBlobRequest *req = msg_unpack(call, &gitaly__get_blob_request__descriptor, buf, len);
	struct get_blob *x;

	if (!req)
		return;
	x = (struct get_blob *)rd_start(data, call, sizeof(*x), req, req->repository);
	if (!x)
		return;
	x->req = req;
	x->rd.on_free = gb_free;
	x->rd.on_writable = gb_writable;
	if (!req->oid || !*req->oid)
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "empty Oid");
	else
		rd_lease(&x->rd, gb_leased);
}

/* --- GetBlobs --- */

struct get_blobs {
	struct rd rd;
	Gitaly__GetBlobsRequest *req;
	size_t idx;
	struct strbuf path;            /* current path, trailing slashes trimmed */
	struct entry_finder finder;
	struct tree_ent ent;
	struct rd_stream stream;
	int streaming, waiting;
};

static void gbs_free(struct rd *rd)
{
	struct get_blobs *x = (struct get_blobs *)rd;
	strbuf_release(&x->path);
	entry_finder_release(&x->finder);
	if (x->streaming)
		rd_stream_release(&x->stream);
}

static void gbs_next(struct get_blobs *x);

static void gbs_writable(struct rd *rd)
{
	struct get_blobs *x = (struct get_blobs *)rd;
	if (x->streaming)
		rd_stream_writable(rd, &x->stream);
	if (x->waiting) {
		x->waiting = 0;
		gbs_next(x);
	}
}

static void gbs_response(struct get_blobs *x, Gitaly__GetBlobsResponse *r)
{
	Gitaly__GetBlobsRequest__RevisionPath *rp = x->req->revision_paths[x->idx];
	gitaly__get_blobs_response__init(r);
	r->revision = rp->revision;
	r->path.data = (uint8_t *)x->path.buf;
	r->path.len = x->path.len;
}

static uint64_t gbs_info(void *arg, const struct catfile_info *info)
{
	struct get_blobs *x = arg;
	Gitaly__GetBlobsResponse r;
	int64_t limit = x->req->limit;
	uint64_t read_limit;

	gbs_response(x, &r);
	r.mode = x->ent.mode;
	r.oid = x->ent.oid;
	r.size = (int64_t)info->size;
	if (x->ent.type == GITALY__TREE_ENTRY__ENTRY_TYPE__TREE) {
		r.type = GITALY__OBJECT_TYPE__TREE;
		rd_send(&x->rd, &r);
		return 0;
	}
	if (info->type != CATFILE_BLOB) {
		rd_finish(&x->rd, GRPC_INTERNAL, "blob got unexpected type \"%s\"", catfile_type_name(info->type));
		return 0;
	}
	r.type = GITALY__OBJECT_TYPE__BLOB;
	read_limit = limit < 0 || (uint64_t)limit > info->size ? info->size : (uint64_t)limit;
	if (x->streaming)
		rd_stream_release(&x->stream);
	rd_stream_begin(&x->stream, &r, 2);
	x->streaming = 1;
	return read_limit;
}

static void gbs_data(void *arg, const char *buf, size_t len)
{
	struct get_blobs *x = arg;
	rd_stream_data(&x->rd, &x->stream, buf, len);
}

static void gbs_done(void *arg, int status)
{
	struct get_blobs *x = arg;
	if (status == CATFILE_MISSING) {
		rd_finish(&x->rd, GRPC_INTERNAL, "read object info: object not found: %s", x->ent.oid);
		return;
	}
	if (status < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "read object: %s", strerror(-status));
		return;
	}
	if (x->streaming) {
		rd_stream_end(&x->rd, &x->stream);
		rd_stream_release(&x->stream);
		x->streaming = 0;
	}
	x->idx++;
	gbs_next(x);
}

static const struct catfile_read_ops gbs_ops = { gbs_info, gbs_data, gbs_done };

/* 1 when the entry was answered at once, 0 when a read is under way, -1 when the call ended. */
static int gbs_entry(struct get_blobs *x, const struct tree_ent *e)
{
	Gitaly__GetBlobsResponse r;
	int rc;

	gbs_response(x, &r);
	if (!e || !e->oid[0]) {
		rd_send(&x->rd, &r);
		return 1;
	}
	if (e->type == GITALY__TREE_ENTRY__ENTRY_TYPE__COMMIT) {
		r.mode = e->mode;
		r.oid = (char *)e->oid;
		r.is_submodule = 1;
		r.type = GITALY__OBJECT_TYPE__COMMIT;
		rd_send(&x->rd, &r);
		return 1;
	}
	x->ent = *e;
	x->ent.path = NULL;
	if (e->type == GITALY__TREE_ENTRY__ENTRY_TYPE__TREE || x->req->limit == 0)
		rc = catfile_info(x->rd.cf, x->ent.oid, strlen(x->ent.oid), &gbs_ops, x);
	else
		rc = catfile_contents(x->rd.cf, x->ent.oid, strlen(x->ent.oid), &gbs_ops, x);
	if (rc < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "read object: %s", strerror(-rc));
		return -1;
	}
	return 0;
}

static void gbs_on_entry(struct rd *rd, const struct tree_ent *e)
{
	struct get_blobs *x = (struct get_blobs *)rd;
	if (gbs_entry(x, e) == 1) {
		x->idx++;
		gbs_next(x);
	}
}

static void gbs_next(struct get_blobs *x)
{
	while (x->rd.base.call) {
		Gitaly__GetBlobsRequest__RevisionPath *rp;
		const struct tree_ent *e;
		const char *rev;
		size_t n;
		int rc;

		if (x->idx == x->req->n_revision_paths) {
			rd_ok(&x->rd);
			return;
		}
		if (rd_full(&x->rd)) {
			x->waiting = 1;
			return;
		}
		rp = x->req->revision_paths[x->idx];
		rev = rp->revision ? rp->revision : "";
		n = rp->path.len;
		if (n > 1)
			while (n && rp->path.data[n - 1] == '/')
				n--;
		strbuf_reset(&x->path);
		strbuf_add(&x->path, rp->path.data, n);
		rc = entry_find(&x->rd, &x->finder, rev, strlen(rev), x->path.buf, x->path.len, gbs_on_entry, &e);
		if (rc != 1)
			return;
		if (gbs_entry(x, e) != 1)
			return;
		x->idx++;
	}
}

static void gbs_leased(struct rd *rd)
{
	gbs_next((struct get_blobs *)rd);
}

static void get_blobs(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__GetBlobsRequest *req = msg_unpack(call, &gitaly__get_blobs_request__descriptor, buf, len);
	struct get_blobs *x;
	struct strbuf msg = STRBUF_INIT;

	if (!req)
		return;
	x = (struct get_blobs *)rd_start(data, call, sizeof(*x), req, req->repository);
	if (!x)
		return;
	x->req = req;
	x->rd.on_free = gbs_free;
	x->rd.on_writable = gbs_writable;
	strbuf_init(&x->path, 0);
	x->finder = (struct entry_finder)ENTRY_FINDER_INIT;
	if (!req->n_revision_paths) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "empty RevisionPaths");
		return;
	}
	for (size_t i = 0; i < req->n_revision_paths; i++) {
		const char *rev = req->revision_paths[i]->revision ? req->revision_paths[i]->revision : "";
		if (gitaly_check_revision(rev, strlen(rev), &msg) < 0) {
			rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "%s", msg.buf);
			strbuf_release(&msg);
			return;
		}
	}
	rd_lease(&x->rd, gbs_leased);
}

void gitaly_register_blob(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.BlobService/GetBlob", get_blob, g);
	gitaly_add_unary(s, "/gitaly.BlobService/GetBlobs", get_blobs, g);
}
