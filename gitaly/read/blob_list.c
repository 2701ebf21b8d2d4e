/* ListBlobs and ListAllBlobs, and the blob walk they share with the LFS pointer RPCs (blob_list.h). */
#include "read/blob_list.h"
#include "base/pb.h"
#include "base/util.h"
#include "blob.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A queued cat-file read, answered in order. */
struct bw_item {
	struct bw_item *next;
	struct blob_walk *w;
	char oid[CATFILE_HEXSZ_MAX + 1];
	uint64_t size;
	int skip, sent_piece;
	size_t path_len;
	char path[];
};

static void bw_free(struct rd *rd)
{
	struct blob_walk *w = (struct blob_walk *)rd;
	while (w->head) {
		struct bw_item *it = w->head;
		w->head = it->next;
		free(it);
	}
	strbuf_release(&w->err);
	strbuf_release(&w->piece);
	strbuf_release(&w->batch);
	strbuf_release(&w->entry);
	strbuf_release(&w->acc);
}

static void bw_flush(struct blob_walk *w)
{
	if (w->batch.len && w->rd.base.call)
		grpc_call_send(w->rd.base.call, w->batch.buf, w->batch.len);
	strbuf_reset(&w->batch);
	w->batch_items = 0;
}

void bw_add_entry(struct blob_walk *w)
{
	/* upstream's chunker: cut before the entries reach 1 MiB */
	if (w->batch_items && w->batch.len + w->entry.len >= BATCH_BYTES)
		bw_flush(w);
	pb_put_bytes(&w->batch, 1, w->entry.buf, w->entry.len);
	w->batch_items++;
	strbuf_reset(&w->entry);
	if (w->rd.cf && !w->cf_paused && w->rd.base.call && rd_full(&w->rd)) {
		w->cf_paused = 1;
		catfile_pause(w->rd.cf);
	}
}

/* Go's %q of git's stderr, as upstream's pipeline errors carry it. */
static void bw_quote(struct strbuf *sb, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	strbuf_addch(sb, '"');
	for (size_t i = 0; i < len && i < 4096; i++) {
		unsigned char c = (unsigned char)s[i];
		switch (c) {
		case '"': strbuf_addstr(sb, "\\\""); break;
		case '\\': strbuf_addstr(sb, "\\\\"); break;
		case '\n': strbuf_addstr(sb, "\\n"); break;
		case '\t': strbuf_addstr(sb, "\\t"); break;
		case '\r': strbuf_addstr(sb, "\\r"); break;
		default:
			if (c < 0x20 || c == 0x7f) {
				strbuf_addstr(sb, "\\x");
				strbuf_addch(sb, hex[c >> 4]);
				strbuf_addch(sb, hex[c & 15]);
			} else {
				strbuf_addch(sb, (char)c);
			}
		}
	}
	strbuf_addch(sb, '"');
}

static void bw_check_end(struct blob_walk *w)
{
	struct strbuf sb = STRBUF_INIT;
	if (w->ended || !w->listing_done || w->inflight || !w->rd.base.call)
		return;
	w->ended = 1;
	if (!w->stopped && w->listing_status != 0) {
		strbuf_addstr(&sb, w->err_prefix);
		if (w->listing_status == -E2BIG) {
			strbuf_addstr(&sb, "scanning rev-list output: token too long");
		} else {
			strbuf_addstr(&sb, w->source == BW_ALL_OBJECTS ? "cat-file --batch-all-objects: " :
					   "rev-list pipeline command: ");
			gitaly_describe_status(&sb, w->listing_status);
			strbuf_addstr(&sb, ", stderr: ");
			bw_quote(&sb, w->err.buf, w->err.len);
		}
		rd_finish(&w->rd, GRPC_INTERNAL, "%s", sb.buf);
		strbuf_release(&sb);
		return;
	}
	bw_flush(w);
	rd_ok(&w->rd);
}

/* Let the listing run while the window and the call have room. */
static void bw_flow(struct blob_walk *w)
{
	if (!w->rd.base.call || w->listing_done || w->source == BW_IDS)
		return;
	if (w->inflight >= CATFILE_WINDOW || rd_full(&w->rd) || w->cf_paused)
		rd_lines_pause(&w->rd);
	else
		rd_lines_resume(&w->rd);
}

static void bw_stop(struct blob_walk *w)
{
	if (w->listing_done)
		return;
	w->stopped = 1;
	w->listing_done = 1;
	if (w->source != BW_IDS)
		rd_lines_stop(&w->rd);
	bw_check_end(w);
}

static struct bw_blob bw_blob_of(const struct bw_item *it)
{
	struct bw_blob b = { it->oid, it->size, it->path, it->path_len };
	return b;
}

static int bw_limit_hit(const struct blob_walk *w)
{
	return w->limit && w->counted >= w->limit;
}

static uint64_t bw_on_info(void *arg, const struct catfile_info *info)
{
	struct bw_item *it = arg;
	struct blob_walk *w = it->w;
	uint64_t want = info->size;
	memcpy(it->oid, info->oid, info->oid_len);
	it->oid[info->oid_len] = '\0';
	it->size = info->size;
	if (info->type != w->want_type || (w->max_size && info->size > w->max_size) || bw_limit_hit(w)) {
		it->skip = 1;
		return 0;
	}
	if (w->bytes_limit >= 0 && (uint64_t)w->bytes_limit < want)
		want = (uint64_t)w->bytes_limit;
	strbuf_reset(&w->piece);
	return want;
}

static void bw_on_data(void *arg, const char *buf, size_t len)
{
	struct bw_item *it = arg;
	struct blob_walk *w = it->w;
	struct bw_blob b = bw_blob_of(it);
	while (len && w->rd.base.call) {
		size_t n = MIN(len, (size_t)MSG_CHUNK - w->piece.len);
		strbuf_add(&w->piece, buf, n);
		buf += n;
		len -= n;
		if (w->piece.len == MSG_CHUNK) {
			w->on_piece(w, &b, w->piece.buf, w->piece.len, !it->sent_piece, 0);
			it->sent_piece = 1;
			strbuf_reset(&w->piece);
		}
	}
}

static void bw_feed(struct blob_walk *w);

static void bw_on_done(void *arg, int status)
{
	struct bw_item *it = arg;
	struct blob_walk *w = it->w;
	struct bw_blob b = bw_blob_of(it);

	/* answers come in request order: this is the head */
	w->head = it->next;
	if (!w->head)
		w->tail = NULL;
	w->inflight--;
	if (status == CATFILE_MISSING) {
		rd_finish(&w->rd, GRPC_INTERNAL, "%sretrieving object info for \"%s\": object not found", w->err_prefix,
			  it->oid);
	} else if (status < 0) {
		rd_finish(&w->rd, GRPC_INTERNAL, "%sreading object %s: %s", w->err_prefix, it->oid, strerror(-status));
	} else if (!it->skip && !bw_limit_hit(w)) {
		/* a blob whose content already went out in full pieces still counts */
		if (w->piece.len || !it->sent_piece)
			w->counted += (uint64_t)w->on_piece(w, &b, w->piece.buf, w->piece.len, !it->sent_piece, 1);
		else
			w->counted++;
		strbuf_reset(&w->piece);
		if (bw_limit_hit(w))
			bw_stop(w);
	}
	free(it);
	if (!w->rd.base.call)
		return;
	if (w->source == BW_IDS)
		bw_feed(w);
	else
		bw_flow(w);
	bw_check_end(w);
}

static const struct catfile_read_ops bw_ops = { bw_on_info, bw_on_data, bw_on_done };

/* Queue a read of `oid`; -1 after finishing the call. */
static int bw_request(struct blob_walk *w, const char *oid, size_t oid_len, const char *path, size_t path_len)
{
	struct bw_item *it = xcalloc(1, sizeof(*it) + path_len + 1);
	int rc;
	it->w = w;
	memcpy(it->oid, oid, MIN(oid_len, (size_t)CATFILE_HEXSZ_MAX));
	memcpy(it->path, path, path_len);
	it->path_len = path_len;
	if (w->bytes_limit == 0)
		rc = catfile_info(w->rd.cf, oid, oid_len, &bw_ops, it);
	else
		rc = catfile_contents(w->rd.cf, oid, oid_len, &bw_ops, it);
	if (rc < 0) {
		free(it);
		if (rc == -EINVAL)
			rd_finish(&w->rd, GRPC_INTERNAL, "%sretrieving object info for \"%.*s\": object not found",
				  w->err_prefix, (int)MIN(oid_len, (size_t)200), oid);
		else
			rd_finish(&w->rd, GRPC_INTERNAL, "%srequesting object: %s", w->err_prefix, strerror(-rc));
		return -1;
	}
	if (w->tail)
		w->tail->next = it;
	else
		w->head = it;
	w->tail = it;
	w->inflight++;
	w->requested++;
	return 0;
}

/* BW_IDS: keep the window full from the request's ids. */
static void bw_feed(struct blob_walk *w)
{
	while (w->rd.base.call && !w->listing_done && w->inflight < CATFILE_WINDOW) {
		const char *id;
		if (w->next_id == w->n_ids) {
			w->listing_done = 1;
			break;
		}
		id = w->ids[w->next_id++];
		if (!id)
			id = "";
		if (bw_request(w, id, strlen(id), "", 0) < 0)
			return;
	}
	bw_check_end(w);
}

static void bw_line(struct rd *rd, char *line, size_t len)
{
	struct blob_walk *w = (struct blob_walk *)rd;
	char *sp = memchr(line, ' ', len);
	size_t oid_len = sp ? (size_t)(sp - line) : len;

	if (w->source == BW_ALL_OBJECTS) {
		/* "<oid> <type> <size>": only blobs within max_size go on */
		char *sp2 = sp ? memchr(sp + 1, ' ', len - oid_len - 1) : NULL;
		uint64_t size = 0;
		struct bw_blob b;
		if (!sp2 || (size_t)(sp2 - sp - 1) != 4 || memcmp(sp + 1, "blob", 4))
			return;
		for (char *p = sp2 + 1; p < line + len; p++) {
			if (*p < '0' || *p > '9' || size > UINT64_MAX / 10 - 1)
				return;
			size = size * 10 + (uint64_t)(*p - '0');
		}
		if (w->max_size && size > w->max_size)
			return;
		if (w->bytes_limit == 0) {
			/* the listing already told all there is to say */
			line[oid_len] = '\0';
			b.oid = line;
			b.size = size;
			b.path = "";
			b.path_len = 0;
			w->counted += (uint64_t)w->on_piece(w, &b, "", 0, 1, 1);
			if (bw_limit_hit(w))
				bw_stop(w);
			else if (rd->base.call && rd_full(rd))
				rd_lines_pause(rd);
			return;
		}
		sp = NULL;
	}
	if (oid_len > CATFILE_HEXSZ_MAX)
		return;
	if (bw_request(w, line, oid_len, sp ? sp + 1 : "", sp ? len - oid_len - 1 : 0) < 0)
		return;
	/* when every blob counts, no more reads than the limit are needed */
	if (w->limit && w->cap_requests && w->requested >= w->limit) {
		bw_stop(w);
		return;
	}
	bw_flow(w);
}

static void bw_end(struct rd *rd, int status, const struct strbuf *err)
{
	struct blob_walk *w = (struct blob_walk *)rd;
	w->listing_done = 1;
	w->listing_status = status;
	strbuf_add(&w->err, err->buf, err->len);
	bw_check_end(w);
}

static void bw_writable(struct rd *rd)
{
	struct blob_walk *w = (struct blob_walk *)rd;
	if (rd_full(rd))
		return;
	if (w->cf_paused && rd->cf) {
		w->cf_paused = 0;
		catfile_resume(rd->cf);
	}
	if (!rd->base.call)
		return;
	if (w->source == BW_IDS)
		bw_feed(w);
	else
		bw_flow(w);
}

static void bw_leased(struct rd *rd)
{
	struct blob_walk *w = (struct blob_walk *)rd;
	static const char *const all_flags[] = { "--batch-all-objects", "--batch-check", "--buffer", "--unordered", NULL };
	struct strvec flags = STRVEC_INIT, args = STRVEC_INIT;
	struct git_call gc;

	if (w->source == BW_IDS) {
		bw_feed(w);
		return;
	}
	if (w->source == BW_ALL_OBJECTS) {
		rd_git_call(rd, &gc, "cat-file");
		gc.flags = all_flags;
		rd_lines_start(rd, &gc, '\n', bw_line, bw_end);
		return;
	}
	strvec_push(&flags, "--in-commit-order");
	strvec_push(&flags, "--objects");
	strvec_push(&flags, "--object-names");
	if (w->max_size)
		strvec_pushf(&flags, "--filter=blob:limit=%llu", (unsigned long long)w->max_size);
	strvec_pushf(&flags, "--filter=object:type=%s", w->filter_type);
	strvec_push(&flags, "--filter-provided-objects");
	for (size_t i = 0; i < w->n_revs; i++)
		strvec_push(&args, w->revs[i]);
	rd_git_call(rd, &gc, "rev-list");
	gc.flags = flags.v;
	gc.args = args.v;
	rd_lines_start(rd, &gc, '\n', bw_line, bw_end);
	strvec_clear(&flags);
	strvec_clear(&args);
}

struct blob_walk *bw_start(struct gitaly *g, struct grpc_call *call, void *req, const Gitaly__Repository *repo)
{
	struct blob_walk *w = (struct blob_walk *)rd_start(g, call, sizeof(*w), req, repo);
	if (!w)
		return NULL;
	w->rd.on_free = bw_free;
	w->rd.on_writable = bw_writable;
	w->err_prefix = "";
	strbuf_init(&w->err, 0);
	strbuf_init(&w->piece, 0);
	strbuf_init(&w->batch, 0);
	strbuf_init(&w->entry, 0);
	strbuf_init(&w->acc, 0);
	w->want_type = CATFILE_BLOB;
	w->filter_type = "blob";
	return w;
}

void bw_run(struct blob_walk *w)
{
	/* ListAllBlobs without content needs no reads at all */
	if (w->source == BW_ALL_OBJECTS && w->bytes_limit == 0)
		bw_leased(&w->rd);
	else
		rd_lease(&w->rd, bw_leased);
}

int bw_check_revisions(struct blob_walk *w, char *const *revs, size_t n)
{
	struct strbuf msg = STRBUF_INIT;
	if (!n) {
		rd_finish(&w->rd, GRPC_INVALID_ARGUMENT, "missing revisions");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const char *r = revs[i] ? revs[i] : "";
		size_t len = strlen(r), cut;
		const char *colon;
		if (!rd_check_pseudo_revision(r, len, &msg))
			continue;
		strbuf_reset(&msg);
		/* a path-scoped revision ("<rev>:<path>") is checked up to the colon */
		colon = memchr(r, ':', len);
		cut = colon ? (size_t)(colon - r) : len;
		if (r[0] == '-')
			strbuf_addstr(&msg, "revision can't start with '-'");
		else if (gitaly_check_revision(r, cut, &msg) == 0)
			continue;
		rd_finish(&w->rd, GRPC_INVALID_ARGUMENT, "invalid revision: %s", msg.buf);
		strbuf_release(&msg);
		return -1;
	}
	strbuf_release(&msg);
	return 0;
}

/* --- ListBlobs and ListAllBlobs --- */

/* Blob entries: oid = 1, size = 2, data = 3, path = 4 (ListBlobs only); the header only on the first piece. */
static int lb_piece(struct blob_walk *w, const struct bw_blob *b, const char *data, size_t len, int first, int last)
{
	(void)last;
	if (first) {
		pb_put_bytes(&w->entry, 1, b->oid, strlen(b->oid));
		if (b->size)
			pb_put_uint(&w->entry, 2, b->size);
	}
	if (len)
		pb_put_bytes(&w->entry, 3, data, len);
	if (w->with_paths && b->path_len)
		pb_put_bytes(&w->entry, 4, b->path, b->path_len);
	bw_add_entry(w);
	return 1;
}

static void list_blobs(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__ListBlobsRequest *req = msg_unpack(call, &gitaly__list_blobs_request__descriptor, buf, len);
	struct blob_walk *w;

	if (!req)
		return;
	w = bw_start(data, call, req, req->repository);
	if (!w)
		return;
	if (bw_check_revisions(w, req->revisions, req->n_revisions) < 0)
		return;
	w->source = BW_REVLIST;
	w->revs = (const char *const *)req->revisions;
	w->n_revs = req->n_revisions;
	w->limit = req->limit;
	w->cap_requests = 1;
	w->bytes_limit = req->bytes_limit;
	w->err_prefix = "processing blobs: ";
	w->on_piece = lb_piece;
	w->with_paths = req->with_paths;
	bw_run(w);
}

static void list_all_blobs(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__ListAllBlobsRequest *req = msg_unpack(call, &gitaly__list_all_blobs_request__descriptor, buf, len);
	struct blob_walk *w;

	if (!req)
		return;
	w = bw_start(data, call, req, req->repository);
	if (!w)
		return;
	w->source = BW_ALL_OBJECTS;
	w->limit = req->limit;
	w->cap_requests = 1;
	w->bytes_limit = req->bytes_limit;
	w->err_prefix = "processing blobs: ";
	w->on_piece = lb_piece;
	bw_run(w);
}

void gitaly_register_blob_list(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.BlobService/ListBlobs", list_blobs, g);
	gitaly_add_unary(s, "/gitaly.BlobService/ListAllBlobs", list_all_blobs, g);
}
