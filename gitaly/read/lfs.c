/*
 * GetLFSPointers, ListLFSPointers and ListAllLFSPointers: blob walks
 * (blob_list.h) that keep the blobs of at most LFS_POINTER_MAX_SIZE bytes
 * that read as Git LFS pointers (docs/technical/blobs.md, "LFS pointers").
 */
#include "read/blob_list.h"
#include "base/pb.h"
#include "base/util.h"
#include "blob.pb-c.h"

#include <string.h>

/* Blobs above this size are never pointers (upstream's limit). */
#define LFS_POINTER_MAX_SIZE 200

static int is_hex_lower(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/*
 * A pointer starts with the spec's version line prefix and has, each on a
 * line of its own, "oid sha256:" with 64 lower-case hex digits and
 * "size " with decimal digits. A line ends at "\n" or at the end of the
 * data (multi-line regular expressions: "\r\n" does not end one).
 */
static int lfs_is_pointer(const char *b, size_t len)
{
	static const char version[] = "version https://git-lfs.github.com/spec";
	int oid = 0, size = 0;
	size_t pos = 0;

	if (len < sizeof(version) - 1 || memcmp(b, version, sizeof(version) - 1))
		return 0;
	while (pos <= len && !(oid && size)) {
		const char *nl = memchr(b + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - b) : len, n = end - pos;
		const char *l = b + pos;
		if (n == 11 + 64 && !memcmp(l, "oid sha256:", 11) && is_hex_lower(l + 11, 64))
			oid = 1;
		if (n > 5 && !memcmp(l, "size ", 5)) {
			size_t i = 5;
			while (i < n && l[i] >= '0' && l[i] <= '9')
				i++;
			if (i == n)
				size = 1;
		}
		if (!nl)
			break;
		pos = end + 1;
	}
	return oid && size;
}

/* LFSPointer: size = 1, data = 2, oid = 3. Pointers are small: they come in one piece. */
static int lfs_piece(struct blob_walk *w, const struct bw_blob *b, const char *data, size_t len, int first, int last)
{
	if (!first || !last || !lfs_is_pointer(data, len))
		return 0;
	if (len)
		pb_put_uint(&w->entry, 1, len);
	pb_put_bytes(&w->entry, 2, data, len);
	pb_put_bytes(&w->entry, 3, b->oid, strlen(b->oid));
	bw_add_entry(w);
	return 1;
}

static void lfs_setup(struct blob_walk *w, enum bw_source source, int32_t limit)
{
	w->source = source;
	w->max_size = LFS_POINTER_MAX_SIZE;
	w->limit = limit > 0 ? (uint64_t)limit : 0;
	w->bytes_limit = -1;
	w->on_piece = lfs_piece;
}

static void get_lfs_pointers(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__GetLFSPointersRequest *req = msg_unpack(call, &gitaly__get_lfspointers_request__descriptor, buf, len);
	struct blob_walk *w;

	if (!req)
		return;
	w = bw_start(data, call, req, req->repository);
	if (!w)
		return;
	if (!req->n_blob_ids) {
		rd_finish(&w->rd, GRPC_INVALID_ARGUMENT, "empty BlobIds");
		return;
	}
	lfs_setup(w, BW_IDS, 0);
	w->ids = req->blob_ids;
	w->n_ids = req->n_blob_ids;
	bw_run(w);
}

static void list_lfs_pointers(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__ListLFSPointersRequest *req = msg_unpack(call, &gitaly__list_lfspointers_request__descriptor, buf, len);
	struct blob_walk *w;

	if (!req)
		return;
	w = bw_start(data, call, req, req->repository);
	if (!w)
		return;
	if (bw_check_revisions(w, req->revisions, req->n_revisions) < 0)
		return;
	lfs_setup(w, BW_REVLIST, req->limit);
	w->revs = (const char *const *)req->revisions;
	w->n_revs = req->n_revisions;
	bw_run(w);
}

static void list_all_lfs_pointers(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__ListAllLFSPointersRequest *req =
		msg_unpack(call, &gitaly__list_all_lfspointers_request__descriptor, buf, len);
	struct blob_walk *w;

	if (!req)
		return;
	w = bw_start(data, call, req, req->repository);
	if (!w)
		return;
	lfs_setup(w, BW_ALL_OBJECTS, req->limit);
	bw_run(w);
}

void gitaly_register_lfs(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.BlobService/GetLFSPointers", get_lfs_pointers, g);
	gitaly_add_unary(s, "/gitaly.BlobService/ListLFSPointers", list_lfs_pointers, g);
	gitaly_add_unary(s, "/gitaly.BlobService/ListAllLFSPointers", list_all_lfs_pointers, g);
}
