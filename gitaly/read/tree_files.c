/*
 * CommitService ListFiles: every blob path of a revision's tree
 * (docs/technical/gitaly-reads.md, "Listing files"). One `git ls-tree -r`
 * per call (a recursive listing has no cat-file form that stays cheap on
 * big trees), read with backpressure: the listing pauses while the call's
 * send queue is full.
 */
#include "read/ref.h"
#include "base/pb.h"
#include "base/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct list_files {
	struct ref_ctx ref;                /* the empty revision means the default branch */
	struct strbuf rev;
	struct strbuf out;                 /* the ListFilesResponse being filled, packed */
	int listing;
};

static void lf_free(struct rd *rd)
{
	struct list_files *x = (struct list_files *)rd;
	strbuf_release(&x->rev);
	strbuf_release(&x->out);
	ref_ctx_release(rd);
}

static void lf_flush(struct list_files *x)
{
	if (!x->out.len || !x->ref.rd.base.call)
		return;
	grpc_call_send(x->ref.rd.base.call, x->out.buf, x->out.len);
	strbuf_reset(&x->out);
}

static void lf_writable(struct rd *rd)
{
	struct list_files *x = (struct list_files *)rd;
	if (x->listing && !rd_full(rd))
		rd_lines_resume(rd);
}

static size_t varint_size(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80)
		v >>= 7, n++;
	return n;
}

/* "<mode> SP <type> SP <oid> TAB <path>": blobs only */
static void lf_line(struct rd *rd, char *line, size_t len)
{
	struct list_files *x = (struct list_files *)rd;
	char *tab = memchr(line, '\t', len);
	char *sp = memchr(line, ' ', len);
	size_t plen, item;
	if (!tab || !sp || sp > tab) {
		rd_finish(rd, GRPC_INTERNAL, "invalid ls-tree output");
		return;
	}
	if (tab - sp < 6 || memcmp(sp + 1, "blob ", 5))
		return;
	plen = len - (size_t)(tab + 1 - line);
	/* one repeated bytes field: tag, length, bytes (upstream's 1 MiB chunker) */
	item = 1 + varint_size(plen) + plen;
	if (x->out.len && x->out.len + item >= BATCH_BYTES)
		lf_flush(x);
	pb_put_bytes(&x->out, 1, tab + 1, plen);
	if (rd_full(rd))
		rd_lines_pause(rd);
}

static void lf_end(struct rd *rd, int status, const struct strbuf *err)
{
	struct list_files *x = (struct list_files *)rd;
	(void)err;
	x->listing = 0;
	if (!rd->base.call)
		return;
	/* as upstream, git's exit status is not looked at (a revision naming a blob lists nothing) */
	if (status == -E2BIG) {
		rd_finish(rd, GRPC_INTERNAL, "ls-tree entry too long");
		return;
	}
	lf_flush(x);
	rd_ok(rd);
}

static void lf_list(struct list_files *x)
{
	static const char *const flags[] = { "-z", "-r", "--full-tree", "--full-name", NULL };
	const char *args[] = { x->rev.buf, NULL };
	struct git_call gc;
	rd_git_call(&x->ref.rd, &gc, "ls-tree");
	gc.flags = flags;
	gc.args = args;
	x->listing = 1;
	if (rd_lines_start(&x->ref.rd, &gc, '\0', lf_line, lf_end) < 0)
		x->listing = 0;
}

static uint64_t lf_info(void *arg, const struct catfile_info *info)
{
	(void)arg;
	(void)info;
	return 0;
}

static void lf_exists(void *arg, int status)
{
	struct list_files *x = arg;
	if (status < 0) {
		rd_finish(&x->ref.rd, GRPC_INTERNAL, "reading object: %s", strerror(-status));
		return;
	}
	if (status == CATFILE_MISSING) {
		/* an unknown revision answers one empty message */
		Gitaly__ListFilesResponse resp = GITALY__LIST_FILES_RESPONSE__INIT;
		rd_send(&x->ref.rd, &resp);
		rd_ok(&x->ref.rd);
		return;
	}
	/* the reader is not needed for the listing: back to the cache */
	catfile_release(x->ref.rd.cf);
	x->ref.rd.cf = NULL;
	lf_list(x);
}

static const struct catfile_read_ops lf_exists_ops = { lf_info, NULL, lf_exists };

static void lf_check(struct rd *rd)
{
	struct list_files *x = (struct list_files *)rd;
	struct strbuf peeled = STRBUF_INIT;
	strbuf_add(&peeled, x->rev.buf, x->rev.len);
	strbuf_addstr(&peeled, "^{}");
	if (catfile_info(rd->cf, peeled.buf, peeled.len, &lf_exists_ops, x) < 0)
		rd_finish(rd, GRPC_INTERNAL, "reading object: object reader failed");
	strbuf_release(&peeled);
}

static void lf_on_default(struct ref_ctx *r, const char *name, size_t len)
{
	struct list_files *x = (struct list_files *)r;
	if (!len) {
		rd_finish(&r->rd, GRPC_FAILED_PRECONDITION, "repository does not have a default branch");
		return;
	}
	strbuf_add(&x->rev, name, len);
	if (r->rd.cf)
		lf_check(&r->rd);
	else
		rd_lease(&r->rd, lf_check);
}

static void list_files(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__ListFilesRequest *req = msg_unpack(call, &gitaly__list_files_request__descriptor, buf, len);
	struct strbuf msg = STRBUF_INIT;
	struct list_files *x;
	if (!req)
		return;
	x = (struct list_files *)ref_start_size(data, call, sizeof(*x), req, req->repository, REF_KIND_OTHER);
	if (!x)
		return;
	x->ref.rd.on_free = lf_free;
	x->ref.rd.on_writable = lf_writable;
	strbuf_init(&x->rev, 0);
	strbuf_init(&x->out, 0);
	if (req->revision.len &&
	    gitaly_check_revision((const char *)req->revision.data, req->revision.len, &msg) < 0) {
		rd_finish(&x->ref.rd, GRPC_INVALID_ARGUMENT, "%s", msg.buf);
	} else if (req->revision.len) {
		strbuf_add(&x->rev, req->revision.data, req->revision.len);
		rd_lease(&x->ref.rd, lf_check);
	} else {
		ref_default_branch(&x->ref, 0, lf_on_default);
	}
	strbuf_release(&msg);
}

void gitaly_register_tree_files(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.CommitService/ListFiles", list_files, g);
}
