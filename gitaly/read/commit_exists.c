/*
 * CommitService CheckObjectsExist: which of a stream of revisions resolve
 * (docs/technical/gitaly-reads.md, "Checking objects"). Object headers come
 * from the leased cat-file process; one request message is worked on at a
 * time (receiving pauses meanwhile), at most CATFILE_WINDOW lookups in
 * flight, none queued while the send queue is full.
 */
#include "read/read.h"
#include "base/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct exists {
	struct rd_in in;
	Gitaly__CheckObjectsExistRequest *cur;  /* the message being answered */
	size_t issued, done;
	int leased, waiting;
	Gitaly__CheckObjectsExistResponse__RevisionExistence **batch;
	size_t nbatch, alloc, bytes;
};

static void ex_free_batch(struct exists *x)
{
	for (size_t i = 0; i < x->nbatch; i++) {
		free(x->batch[i]->name.data);
		free(x->batch[i]);
	}
	x->nbatch = 0;
	x->bytes = 0;
}

static void ex_free(struct rd *rd)
{
	struct exists *x = (struct exists *)rd;
	ex_free_batch(x);
	free(x->batch);
	if (x->cur != rd->req)
		msg_free(x->cur);
}

static void ex_flush(struct exists *x)
{
	Gitaly__CheckObjectsExistResponse resp = GITALY__CHECK_OBJECTS_EXIST_RESPONSE__INIT;
	if (!x->nbatch)
		return;
	resp.revisions = x->batch;
	resp.n_revisions = x->nbatch;
	rd_send(&x->in.rd, &resp);
	ex_free_batch(x);
}

/* ValidateRevision with path-scoped revisions allowed: the part after ':' may hold anything but NUL. */
static int check_scoped(const ProtobufCBinaryData *r, struct strbuf *msg)
{
	const char *s = (const char *)r->data;
	const char *colon;
	size_t len = r->len;
	if (len && s[0] == '-') {
		strbuf_addstr(msg, "revision can't start with '-'");
		return -1;
	}
	if (rd_has_nul(s, len)) {
		strbuf_addstr(msg, "revision can't contain NUL");
		return -1;
	}
	colon = len ? memchr(s, ':', len) : NULL;
	if (colon)
		len = (size_t)(colon - s);
	return gitaly_check_revision(s, len, msg);
}

static void ex_pump(struct exists *x);

/* The message is answered: take the next one, or end after the last. */
static void ex_next(struct exists *x)
{
	if (x->cur != x->in.rd.req)
		msg_free(x->cur);
	x->cur = NULL;
	if (x->in.half_closed) {
		ex_flush(x);
		rd_ok(&x->in.rd);
		return;
	}
	if (x->in.rd.base.call)
		grpc_call_resume_recv(x->in.rd.base.call);
}

static uint64_t ex_info(void *arg, const struct catfile_info *info)
{
	(void)arg;
	(void)info;
	return 0;
}

static void ex_done(void *arg, int status)
{
	struct exists *x = arg;
	Gitaly__CheckObjectsExistResponse__RevisionExistence *e;
	const ProtobufCBinaryData *name = &x->cur->revisions[x->done++];
	size_t sz;
	if (status < 0) {
		rd_finish(&x->in.rd, GRPC_INTERNAL, "checking object existence: reading object info: %s", strerror(-status));
		return;
	}
	e = xcalloc(1, sizeof(*e));
	gitaly__check_objects_exist_response__revision_existence__init(e);
	e->name.data = xmemdup(name->data, name->len);
	e->name.len = name->len;
	e->exists = status == 0;
	sz = protobuf_c_message_get_packed_size(&e->base);
	/* upstream's chunker: cut before a message reaches 1 MiB */
	if (x->nbatch && x->bytes + sz >= BATCH_BYTES)
		ex_flush(x);
	ALLOC_GROW(x->batch, x->nbatch + 1, x->alloc);
	x->batch[x->nbatch++] = e;
	x->bytes += sz;
	if (x->done == x->cur->n_revisions)
		ex_next(x);
	else
		ex_pump(x);
}

static const struct catfile_read_ops ex_ops = { ex_info, NULL, ex_done };

static void ex_pump(struct exists *x)
{
	if (!x->cur || !x->leased)
		return;
	if (x->done == x->cur->n_revisions) {
		ex_next(x);
		return;
	}
	while (x->in.rd.base.call && x->issued < x->cur->n_revisions && x->issued - x->done < CATFILE_WINDOW) {
		const ProtobufCBinaryData *r = &x->cur->revisions[x->issued];
		if (rd_full(&x->in.rd)) {
			x->waiting = 1;
			return;
		}
		if (!x->in.rd.cf || catfile_info(x->in.rd.cf, (const char *)r->data, r->len, &ex_ops, x) < 0) {
			rd_finish(&x->in.rd, GRPC_INTERNAL, "checking object existence: object reader failed");
			return;
		}
		x->issued++;
	}
}

/* A request message: validated whole, then answered. */
static void ex_take(struct exists *x, Gitaly__CheckObjectsExistRequest *req)
{
	struct strbuf msg = STRBUF_INIT;
	for (size_t i = 0; i < req->n_revisions; i++) {
		if (check_scoped(&req->revisions[i], &msg) < 0) {
			rd_finish(&x->in.rd, GRPC_INVALID_ARGUMENT, "invalid revision: %s", msg.buf);
			strbuf_release(&msg);
			if (req != x->in.rd.req)
				msg_free(req);
			return;
		}
	}
	x->cur = req;
	x->issued = x->done = 0;
	grpc_call_pause_recv(x->in.rd.base.call);
	ex_pump(x);
}

static void ex_leased(struct rd *rd)
{
	struct exists *x = (struct exists *)rd;
	x->leased = 1;
	ex_pump(x);
}

static void ex_writable(struct rd *rd)
{
	struct exists *x = (struct exists *)rd;
	if (x->waiting) {
		x->waiting = 0;
		ex_pump(x);
	}
}

static void ex_request(struct rd_in *in, void *req, int first)
{
	struct exists *x = (struct exists *)in;
	if (first) {
		x->in.rd.on_free = ex_free;
		x->in.rd.on_writable = ex_writable;
		rd_lease(&x->in.rd, ex_leased);
		if (!x->in.rd.base.call)
			return;
	}
	ex_take(x, req);
}

static void ex_half_close(struct rd_in *in)
{
	struct exists *x = (struct exists *)in;
	if (!x->cur) {
		ex_flush(x);
		rd_ok(&x->in.rd);
	}
}

static const Gitaly__Repository *ex_repository(const void *req)
{
	return ((const Gitaly__CheckObjectsExistRequest *)req)->repository;
}

static const struct rd_in_ops ex_in_ops = {
	.desc = &gitaly__check_objects_exist_request__descriptor,
	.size = sizeof(struct exists),
	.repository = ex_repository,
	.on_request = ex_request,
	.on_half_close = ex_half_close,
};

static void check_objects_exist(struct grpc_call *call, void *data)
{
	rd_in_start(call, data, &ex_in_ops);
}

void gitaly_register_commit_exists(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_method(s, "/gitaly.CommitService/CheckObjectsExist", check_objects_exist, g);
}
