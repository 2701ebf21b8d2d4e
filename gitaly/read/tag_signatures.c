/*
 * GetTagSignatures: the tags named by revisions, walked like blobs
 * (blob_list.h) with rev-list's tag filter, each split into its signed
 * content and its signature (docs/technical/refs.md, "GetTagSignatures").
 */
#include "read/blob_list.h"
#include "base/pb.h"
#include "base/util.h"
#include "ref.pb-c.h"

#include <string.h>

/* A whole tag is gathered before it is split; larger ones fail the call. */
#define MAX_TAG_SIZE (64u * 1024 * 1024)

/* TagSignature: tag_id = 1, signature = 2, content = 3. */
static int ts_piece(struct blob_walk *w, const struct bw_blob *b, const char *data, size_t len, int first, int last)
{
	const char *raw, *sig = NULL;
	size_t n, siglen = 0, content_len;

	if (first)
		strbuf_reset(&w->acc);
	if (w->acc.len + len > MAX_TAG_SIZE) {
		rd_finish(&w->rd, GRPC_INTERNAL, "reading tag: tag %s is too large", b->oid);
		return 0;
	}
	strbuf_add(&w->acc, data, len);
	if (!last)
		return 0;
	raw = w->acc.buf;
	n = w->acc.len;
	content_len = n;
	/* the signature starts at the first "-----BEGIN", unless that is the very start */
	for (size_t i = 1; i + 10 <= n; i++) {
		if (!memcmp(raw + i, "-----BEGIN", 10)) {
			sig = raw + i;
			siglen = n - i;
			content_len = i;
			if (siglen && sig[siglen - 1] == '\n')
				siglen--;
			break;
		}
	}
	pb_put_bytes(&w->entry, 1, b->oid, strlen(b->oid));
	if (siglen)
		pb_put_bytes(&w->entry, 2, sig, siglen);
	if (content_len)
		pb_put_bytes(&w->entry, 3, raw, content_len);
	bw_add_entry(w);
	strbuf_reset(&w->acc);
	return 1;
}

static void get_tag_signatures(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__GetTagSignaturesRequest *req =
		msg_unpack(call, &gitaly__get_tag_signatures_request__descriptor, buf, len);
	struct strbuf msg = STRBUF_INIT;
	struct blob_walk *w;

	if (!req)
		return;
	w = bw_start(data, call, req, req->repository);
	if (!w)
		return;
	if (!req->n_tag_revisions) {
		rd_finish(&w->rd, GRPC_INVALID_ARGUMENT, "missing revisions");
		return;
	}
	for (size_t i = 0; i < req->n_tag_revisions; i++) {
		const char *r = req->tag_revisions[i] ? req->tag_revisions[i] : "";
		if (rd_check_pseudo_revision(r, strlen(r), &msg) < 0) {
			rd_finish(&w->rd, GRPC_INVALID_ARGUMENT, "invalid revision: %s", msg.buf);
			strbuf_release(&msg);
			return;
		}
	}
	w->source = BW_REVLIST;
	w->revs = (const char *const *)req->tag_revisions;
	w->n_revs = req->n_tag_revisions;
	w->bytes_limit = -1;
	w->want_type = CATFILE_TAG;
	w->filter_type = "tag";
	w->err_prefix = "cat-file iterator stop: ";
	w->on_piece = ts_piece;
	bw_run(w);
}

void gitaly_register_tag_signatures(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.RefService/GetTagSignatures", get_tag_signatures, g);
}
