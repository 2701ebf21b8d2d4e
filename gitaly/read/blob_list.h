/*
 * The blob walk behind ListBlobs, ListAllBlobs, the LFS pointer RPCs and
 * GetTagSignatures (which walks tags the same way)
 * (docs/technical/blobs.md): a listing (rev-list --objects, cat-file
 * --batch-all-objects, or the request's own ids) feeds reads on the leased
 * cat-file process, whose answers come back in order and are handed to the
 * RPC in pieces. Entries are packed into `repeated ... = 1` batches cut
 * before 1 MiB, upstream's chunker.
 *
 * Memory is bounded by CATFILE_WINDOW queued reads plus one batch: the
 * listing is paused while the window is full, and cat-file is paused while
 * the call's send queue is.
 */
#ifndef GITALY_READ_BLOB_LIST_H
#define GITALY_READ_BLOB_LIST_H

#include "read/read.h"

enum bw_source {
	BW_REVLIST,      /* `rev-list --objects` lines: "<oid>[ <path>]" */
	BW_ALL_OBJECTS,  /* `cat-file --batch-all-objects --batch-check`: "<oid> <type> <size>" */
	BW_IDS,          /* the ids in bw->ids */
};

struct bw_blob {
	const char *oid;
	uint64_t size;
	const char *path;      /* rev-list's object name, may be empty */
	size_t path_len;
};

struct blob_walk;
/*
 * One piece of a blob's content (at most MSG_CHUNK bytes; len 0 for a blob
 * read without content). `first` marks the blob's first piece, `last` its
 * last. Returns 1 when the blob counts towards the limit (on the last
 * piece), 0 otherwise.
 */
typedef int (*bw_piece_fn)(struct blob_walk *w, const struct bw_blob *b, const char *data, size_t len,
			   int first, int last);

struct bw_item;
struct blob_walk {
	struct rd rd;                  /* must be first */
	/* set by the RPC before bw_run() */
	enum bw_source source;
	const char *const *revs;       /* BW_REVLIST */
	size_t n_revs;
	char *const *ids;              /* BW_IDS */
	size_t n_ids;
	uint64_t max_size;             /* blobs above this are skipped; 0: none */
	uint64_t limit;                /* blobs that count; 0: no limit */
	int64_t bytes_limit;           /* content bytes per blob: 0 none, negative all */
	const char *err_prefix;        /* prefixed to pipeline errors */
	int cap_requests;              /* every blob counts: read no more than `limit` */
	int with_paths;                /* ListBlobs: send rev-list's object names */
	bw_piece_fn on_piece;
	enum catfile_type want_type;   /* objects of other types are skipped (default blobs) */
	const char *filter_type;       /* rev-list's --filter=object:type= (default "blob") */
	struct strbuf acc;             /* the RPC's own: a whole object gathered from pieces */
	/* state */
	struct bw_item *head, *tail;
	size_t inflight, next_id;
	uint64_t requested, counted;
	int listing_done, listing_status, stopped, ended, cf_paused, listing_blocked;
	struct strbuf err, piece, batch, entry;
	size_t batch_items;
};

/* Start a walk context (rd_start() plus the walk's hooks); NULL when the call was answered. */
struct blob_walk *bw_start(struct gitaly *g, struct grpc_call *call, void *req, const Gitaly__Repository *repo);
/* Run the walk; the call is finished when it ends. */
void bw_run(struct blob_walk *w);
/* Append the packed entry in w->entry (reset after) to the batch, flushing before 1 MiB. */
void bw_add_entry(struct blob_walk *w);

/* Revisions as ListBlobs and ListLFSPointers check them; -1 after finishing the call. */
int bw_check_revisions(struct blob_walk *w, char *const *revs, size_t n);

#endif
