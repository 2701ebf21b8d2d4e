/*
 * AnalysisService/CheckBlobsGenerated: for each (revision, path) of the
 * request stream, read the blob's first bytes from the leased cat-file
 * process and apply the generated-file rules (read/generated.h). One request
 * message is worked on at a time, the call not read meanwhile; its answers
 * are sent, cut as upstream's chunker cuts them, before the next message is
 * taken. docs/technical/gitaly-repository.md, "Generated files".
 */
#include "read/read.h"
#include "read/generated.h"
#include "base/pb.h"
#include "base/util.h"
#include "analysis.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct check_generated {
	struct rd rd;
	Gitaly__CheckBlobsGeneratedRequest *cur;     /* the message being worked on */
	size_t next;                                 /* its next blob to answer */
	int is_blob;
	struct strbuf content;
	Gitaly__CheckBlobsGeneratedResponse__Blob *out;
	Gitaly__CheckBlobsGeneratedResponse__Blob **ptrs;
	size_t nout, alloc, bytes;
	int half_closed, failed, recv_paused;
};

static void cg_free(struct rd *rd)
{
	struct check_generated *x = (struct check_generated *)rd;
	if (x->cur != rd->req)
		msg_free(x->cur);
	strbuf_release(&x->content);
	free(x->out);
	free(x->ptrs);
}

static void cg_fail(struct check_generated *x, enum grpc_code code, const char *fmt, const char *arg)
{
	x->failed = 1;
	rd_finish(&x->rd, code, fmt, arg);
}

static void cg_flush(struct check_generated *x)
{
	Gitaly__CheckBlobsGeneratedResponse resp = GITALY__CHECK_BLOBS_GENERATED_RESPONSE__INIT;
	if (!x->nout)
		return;
	for (size_t i = 0; i < x->nout; i++)
		x->ptrs[i] = &x->out[i];
	resp.blobs = x->ptrs;
	resp.n_blobs = x->nout;
	rd_send(&x->rd, &resp);
	x->nout = 0;
	x->bytes = 0;
}

/* Take the next request message, or end the call when the client is done. */
static void cg_next(struct check_generated *x)
{
	if (!x->rd.base.call || x->failed)
		return;
	if (x->half_closed) {
		rd_ok(&x->rd);
		return;
	}
	if (x->recv_paused && !rd_full(&x->rd)) {
		x->recv_paused = 0;
		grpc_call_resume_recv(x->rd.base.call);
	}
}

static uint64_t cg_info(void *arg, const struct catfile_info *info)
{
	struct check_generated *x = arg;
	x->is_blob = info->type == CATFILE_BLOB;
	strbuf_reset(&x->content);
	return x->is_blob ? MIN(info->size, (uint64_t)GENERATED_SNIFF_LEN) : 0;
}

static void cg_data(void *arg, const char *buf, size_t len)
{
	struct check_generated *x = arg;
	if (x->content.len + len <= GENERATED_SNIFF_LEN)
		strbuf_add(&x->content, buf, len);
}

static void cg_done(void *arg, int status)
{
	struct check_generated *x = arg;
	const Gitaly__CheckBlobsGeneratedRequest__Blob *b;
	Gitaly__CheckBlobsGeneratedResponse__Blob *o;
	struct strbuf path = STRBUF_INIT;
	size_t size;

	if (!x->rd.base.call || x->failed)
		return;
	if (status == CATFILE_MISSING) {
		cg_fail(x, GRPC_INTERNAL, "reading object: %s", "object not found");
		return;
	}
	if (status < 0) {
		cg_fail(x, GRPC_INTERNAL, "reading object: %s", strerror(-status));
		return;
	}
	if (!x->is_blob) {
		cg_fail(x, GRPC_INVALID_ARGUMENT, "%s", "object is not a blob");
		return;
	}
	b = x->cur->blobs[x->next++];
	ALLOC_GROW(x->out, x->nout + 1, x->alloc);
	x->ptrs = xrealloc(x->ptrs, x->alloc * sizeof(*x->ptrs));
	o = &x->out[x->nout];
	gitaly__check_blobs_generated_response__blob__init(o);
	o->revision = b->revision;
	strbuf_add(&path, b->path.data, b->path.len);
	o->generated = gen_is_generated(path.buf, x->content.buf, x->content.len);
	strbuf_release(&path);
	/* upstream's chunker: a blob that would fill the message goes into the next one */
	size = protobuf_c_message_get_packed_size(&o->base);
	if (x->nout && x->bytes + size >= BATCH_BYTES) {
		Gitaly__CheckBlobsGeneratedResponse__Blob keep = *o;
		cg_flush(x);
		x->out[0] = keep;
	}
	x->nout++;
	x->bytes += size;
	if (x->next < x->cur->n_blobs)
		return;
	/* every request message gets at least one answer message */
	cg_flush(x);
	cg_next(x);
}

static const struct catfile_read_ops cg_ops = { cg_info, cg_data, cg_done };

static int validate(struct check_generated *x, const Gitaly__CheckBlobsGeneratedRequest *req)
{
	struct strbuf msg = STRBUF_INIT;
	if (!req->n_blobs) {
		cg_fail(x, GRPC_INVALID_ARGUMENT, "validating request: %s", "empty blobs");
		return -1;
	}
	for (size_t i = 0; i < req->n_blobs; i++) {
		const ProtobufCBinaryData *r = &req->blobs[i]->revision;
		const char *colon = r->len ? memchr(r->data, ':', r->len) : NULL;
		size_t head = colon ? (size_t)(colon - (const char *)r->data) : r->len;
		strbuf_reset(&msg);
		/* a path-scoped revision: only the part before ':' is checked, the path only for NUL */
		if (r->len && r->data[0] == '-')
			strbuf_addstr(&msg, "revision can't start with '-'");
		else if (rd_has_nul(r->data, r->len))
			strbuf_addstr(&msg, "revision can't contain NUL");
		else if (r->len && memchr(r->data, '\n', r->len))
			/* cat-file reads one name a line: a newline cannot be asked for */
			strbuf_addstr(&msg, "revision can't contain whitespace");
		else
			gitaly_check_revision((const char *)r->data, head, &msg);
		if (msg.len) {
			cg_fail(x, GRPC_INVALID_ARGUMENT, "validating request: %s", msg.buf);
			strbuf_release(&msg);
			return -1;
		}
		if (!req->blobs[i]->path.len) {
			cg_fail(x, GRPC_INVALID_ARGUMENT, "validating request: %s", "empty path");
			return -1;
		}
	}
	strbuf_release(&msg);
	return 0;
}

/* Queue the message's reads; answers come back in order through cg_done(). */
static void cg_process(struct check_generated *x)
{
	for (size_t i = 0; i < x->cur->n_blobs; i++) {
		const ProtobufCBinaryData *r = &x->cur->blobs[i]->revision;
		if (catfile_contents(x->rd.cf, (const char *)r->data, r->len, &cg_ops, x) < 0) {
			cg_fail(x, GRPC_INTERNAL, "requesting object: %s", "object reader is gone");
			return;
		}
	}
}

static void cg_leased(struct rd *rd)
{
	cg_process((struct check_generated *)rd);
}

static void cg_message(struct grpc_call *call, const uint8_t *buf, size_t len)
{
	struct check_generated *x = grpc_call_user(call);
	Gitaly__CheckBlobsGeneratedRequest *req;
	if (x->failed || !x->rd.base.call)
		return;
	if (!(req = msg_unpack(call, &gitaly__check_blobs_generated_request__descriptor, buf, len))) {
		x->failed = 1;
		return;
	}
	if (x->cur != x->rd.req)
		msg_free(x->cur);
	x->cur = req;
	x->next = 0;
	if (validate(x, req) < 0)
		return;
	grpc_call_pause_recv(call);
	x->recv_paused = 1;
	cg_process(x);
}

static void cg_half_close(struct grpc_call *call)
{
	struct check_generated *x = grpc_call_user(call);
	x->half_closed = 1;
	/* between messages: nothing is being worked on */
	if (!x->recv_paused && !x->failed)
		rd_ok(&x->rd);
}

static void cg_writable(struct grpc_call *call)
{
	struct check_generated *x = grpc_call_user(call);
	if (x->recv_paused && x->cur && x->next >= x->cur->n_blobs)
		cg_next(x);
}

static void cg_close(struct grpc_call *call, enum grpc_code code)
{
	struct check_generated *x = grpc_call_user(call);
	(void)code;
	/* what read.c does when a call of a plain read closes */
	if (x->rd.wait) {
		catfile_wait_cancel(x->rd.wait);
		x->rd.wait = NULL;
	}
	if (x->rd.cf) {
		catfile_release(x->rd.cf);
		x->rd.cf = NULL;
	}
	gitaly_call_closed(&x->rd.base);
}

static const struct grpc_call_ops cg_call_ops = {
	.on_message = cg_message,
	.on_half_close = cg_half_close,
	.on_writable = cg_writable,
	.on_close = cg_close,
};

/* --- before the first message: no context yet --- */

static void first_message(struct grpc_call *call, const uint8_t *buf, size_t len)
{
	struct gitaly *g = grpc_call_user(call);
	Gitaly__CheckBlobsGeneratedRequest *req =
		msg_unpack(call, &gitaly__check_blobs_generated_request__descriptor, buf, len);
	struct check_generated *x;
	if (!req)
		return;
	if (!(x = (struct check_generated *)rd_start(g, call, sizeof(*x), req, req->repository)))
		return;
	strbuf_init(&x->content, 0);
	x->rd.on_free = cg_free;
	x->cur = req;
	grpc_call_set_ops(call, &cg_call_ops, x);
	if (validate(x, req) < 0)
		return;
	grpc_call_pause_recv(call);
	x->recv_paused = 1;
	rd_lease(&x->rd, cg_leased);
}

static void first_half_close(struct grpc_call *call)
{
	grpc_call_finish(call, GRPC_UNKNOWN, "receiving first request: EOF", NULL);
}

static void first_close(struct grpc_call *call, enum grpc_code code)
{
	(void)call;
	(void)code;
}

static const struct grpc_call_ops first_ops = {
	.on_message = first_message,
	.on_half_close = first_half_close,
	.on_close = first_close,
};

static void check_blobs_generated(struct grpc_call *call, void *data)
{
	grpc_call_set_ops(call, &first_ops, data);
}

void gitaly_register_analysis(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_method(s, "/gitaly.AnalysisService/CheckBlobsGenerated", check_blobs_generated, g);
}
