/*
 * Shared machinery of the read RPCs (RefService, CommitService, BlobService):
 * the node's cat-file process cache, a per-call context that owns every
 * asynchronous step of a read, a line reader for git listings with
 * backpressure, and parsers for commits, tags and trees (docs/technical/gitaly-node.md,
 * "Commits and tags").
 *
 * A read handler embeds `struct rd` first in its own context:
 *
 *	struct my_ctx { struct rd rd; ... };
 *	struct my_ctx *x = (struct my_ctx *)rd_start(g, call, sizeof(*x), req, req->repository);
 *	if (!x) return;              // the call was answered (bad repository)
 *
 * From then on the context lives until the call closed AND every git command
 * started through rd_capture() has reported (core/call.h: captures hold the
 * base); rd->base.call is NULL once the call
 * closed (cancelled, deadline, or finished): callbacks then only clean up.
 * The leased cat-file process and a running rd_lines are released/killed by
 * the context when the call closes, so their callbacks never see a dead call.
 */
#ifndef GITALY_READ_READ_H
#define GITALY_READ_READ_H

#include "core/gitaly.h"
#include "core/call.h"
#include "git/catfile.h"
#include "commit.pb-c.h"

/* Commit and tag messages beyond this are truncated in responses (docs/technical/gitaly-node.md, "Commits and tags"). */
#define MAX_MESSAGE_SIZE 10240
/* Upper bound for tree objects and listings held in memory by one call. */
#define MAX_TREE_SIZE (256u * 1024 * 1024)
/* Item batches are cut before they reach this many bytes (upstream's chunker). */
#define BATCH_BYTES (1024 * 1024)
/* Line-based listings: items per message (upstream's lines sender). */
#define LINES_PER_MESSAGE 20
/* Object reads kept in flight on one cat-file process by pipelines. */
#define CATFILE_WINDOW 64

struct catfile_cache *gitaly_catfile_cache(struct gitaly *g);
/* TreeEntry and GetTreeEntries live in read/tree.c. */
void gitaly_register_commit_tree(struct gitaly *g, struct grpc_server *s);
/* LastCommitForPath, ListLastCommitsForTree: read/commit_last.c. */
void gitaly_register_commit_last(struct gitaly *g, struct grpc_server *s);
/* CountCommits, CountDivergingCommits: read/commit_count.c. */
void gitaly_register_commit_count(struct gitaly *g, struct grpc_server *s);
/* FindCommits, FindAllCommits, CommitsByMessage: read/commit_history.c. */
void gitaly_register_commit_history(struct gitaly *g, struct grpc_server *s);
/* ListCommitsByOid, ListCommitsByRefName, GetCommitMessages: read/commit_lookup.c. */
void gitaly_register_commit_lookup(struct gitaly *g, struct grpc_server *s);
/* CommitStats: read/commit_stats.c. */
void gitaly_register_commit_stats(struct gitaly *g, struct grpc_server *s);
/* CommitLanguages: read/languages.c. */
void gitaly_register_commit_languages(struct gitaly *g, struct grpc_server *s);
/* ListFiles: read/tree_files.c. */
void gitaly_register_tree_files(struct gitaly *g, struct grpc_server *s);
/* CheckObjectsExist: read/commit_exists.c. */
void gitaly_register_commit_exists(struct gitaly *g, struct grpc_server *s);
/* RawBlame: read/blame.c. */
void gitaly_register_blame(struct gitaly *g, struct grpc_server *s);
/* GetCommitSignatures, FilterShasWithSignatures: read/commit_signatures.c. */
void gitaly_register_commit_signatures(struct gitaly *g, struct grpc_server *s);
/* ListAllCommits: read/commit_all.c. */
void gitaly_register_commit_all(struct gitaly *g, struct grpc_server *s);

/* --- per-call context --- */

struct rd_lines;
struct rd_pipe;

struct rd {
	struct gitaly_call base;         /* base.call is NULL once the call closed */
	void *req;                       /* unpacked request, freed with the context */
	const Gitaly__Repository *repo;
	struct strbuf path;              /* absolute repository path */
	struct catfile *cf;              /* leased cat-file process, if any */
	struct catfile_wait *wait;
	struct rd_lines *lines;          /* the running listing, if any */
	struct rd_pipe *pipe;            /* the listing -> cat-file pipeline, if any */
	void (*lease_cb)(struct rd *rd);
	/* optional hooks of the RPC */
	void (*on_writable)(struct rd *rd);
	void (*on_free)(struct rd *rd);
};

/*
 * Allocate a context of `size` bytes for `call`, validate `repo` (gitaly_locate())
 * and take over the call's callbacks. On a validation error the call is
 * finished with upstream's code and NULL returned; `req` is freed with the
 * context either way.
 */
struct rd *rd_start(struct gitaly *g, struct grpc_call *call, size_t size, void *req,
		    const Gitaly__Repository *repo);
/*
 * End the call (no-op once it closed). Releases the cat-file process: when
 * nothing is outstanding it goes back to the cache for the next call.
 */
void rd_finish(struct rd *rd, enum grpc_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Finish with a status detail: google.rpc.Status carrying `detail`. */
void rd_finish_detail(struct rd *rd, enum grpc_code code, const char *msg, const ProtobufCMessage *detail);
void rd_ok(struct rd *rd);
/* Send one message; 0, or -EPIPE once the call is gone. */
int rd_send(struct rd *rd, const void *msg);
int rd_full(const struct rd *rd);

/* Lease a cat-file process into rd->cf, then call `cb` (not when the call closed meanwhile). */
void rd_lease(struct rd *rd, void (*cb)(struct rd *rd));

/* The git_call template every command of this context starts from. */
void rd_git_call(struct rd *rd, struct git_call *gc, const char *subcmd);

/*
 * Run git to completion and collect stdout (at most `max` bytes). `cb` runs
 * only while the call is open; on spawn failure the call is finished INTERNAL.
 */
typedef void (*rd_capture_fn)(struct rd *rd, int status, struct strbuf *out, struct strbuf *err);
void rd_capture(struct rd *rd, const struct git_call *gc, size_t max, rd_capture_fn cb);

/* --- client-streaming requests (stream_in.c) --- */

/*
 * The context of a client-streaming read embeds struct rd_in first. It is
 * made (rd_start(), repository from the first message) when the first
 * message arrives; a stream without any message ends INTERNAL "EOF", as
 * upstream's. on_request gets every message in order: the first one is
 * rd->req (owned by the context), later ones belong to the callee.
 * Receiving can be paused with grpc_call_pause_recv() meanwhile.
 */
struct rd_in;
struct rd_in_ops {
	const ProtobufCMessageDescriptor *desc;
	size_t size;
	const Gitaly__Repository *(*repository)(const void *req);
	void (*on_request)(struct rd_in *in, void *req, int first);
	void (*on_half_close)(struct rd_in *in);
};
struct rd_in {
	struct rd rd;
	const struct rd_in_ops *ops;
	const struct grpc_call_ops *rd_ops;   /* rd_start()'s, which ours forward to */
	int half_closed;
};
void rd_in_start(struct grpc_call *call, struct gitaly *g, const struct rd_in_ops *ops);

/* --- streaming object content into messages --- */

/*
 * The first message carries metadata (packed once) plus the first chunk of
 * data in field `field`; later messages carry only data. When the call's
 * send queue is full the cat-file process is paused; rd_stream_writable()
 * (from on_writable) resumes it.
 */
struct rd_stream {
	struct strbuf first;
	int first_pending;
	uint32_t field;
	int paused;
};
void rd_stream_begin(struct rd_stream *s, const void *first_msg, uint32_t field);
void rd_stream_data(struct rd *rd, struct rd_stream *s, const char *buf, size_t len);
/* Sends the metadata alone when no data came. */
void rd_stream_end(struct rd *rd, struct rd_stream *s);
void rd_stream_writable(struct rd *rd, struct rd_stream *s);
void rd_stream_release(struct rd_stream *s);

/* --- tree entry lookups (upstream's TreeEntryFinder) --- */

struct tree_ent;
typedef void (*rd_entry_fn)(struct rd *rd, const struct tree_ent *e);
struct entry_finder {
	struct strbuf key;          /* "<rev>:<dir>" of the cached listing */
	int have;
	struct tree_ent *ents;
	size_t nr;
	struct strbuf path;         /* the lookup in flight */
	rd_entry_fn cb;
};
#define ENTRY_FINDER_INIT { STRBUF_INIT, 0, NULL, 0, STRBUF_INIT, NULL }
/*
 * Find the entry at `path` of `rev` by listing its parent tree. Returns 1
 * when answered from the cached listing (*out set, NULL when there is no such
 * entry), 0 when a read was queued (`cb` fires later, maybe with NULL), -1
 * after finishing the call on an error.
 */
int entry_find(struct rd *rd, struct entry_finder *f, const char *rev, size_t rev_len,
	       const char *path, size_t path_len, rd_entry_fn cb, const struct tree_ent **out);
void entry_finder_release(struct entry_finder *f);

/* --- line listings with backpressure --- */

/*
 * Start git and hand its stdout to on_line, one line at a time (delimiter
 * excluded; the buffer may be modified). rd_lines_pause() stops delivery
 * (and git, once the pipe fills). on_end fires once, after the last line,
 * with git's exit status and stderr; the reader frees itself after it and
 * rd->lines is cleared. rd_lines_stop() kills git; no callback fires again.
 * Returns 0, or -1 after finishing the call.
 */
typedef void (*rd_line_fn)(struct rd *rd, char *line, size_t len);
typedef void (*rd_end_fn)(struct rd *rd, int status, const struct strbuf *err);
int rd_lines_start(struct rd *rd, const struct git_call *gc, char delim, rd_line_fn on_line,
		   rd_end_fn on_end);
/*
 * After rd_lines_start(): a line still without its delimiter once at least
 * 64 KiB of it are buffered goes to on_fragment as it arrives (any number of
 * pieces), its end to on_line as usual; without this a line over 16 MiB
 * ends the listing with on_end(-E2BIG).
 */
void rd_lines_fragments(struct rd *rd, rd_line_fn on_fragment);
void rd_lines_pause(struct rd *rd);
void rd_lines_resume(struct rd *rd);
void rd_lines_stop(struct rd *rd);

/* --- listing -> cat-file -> batches pipelines --- */

/*
 * Lines of a git listing become object reads on the leased cat-file process
 * (at most CATFILE_WINDOW in flight), whose results arrive in order. The
 * listing is paused while the window is full or the call's send queue is,
 * so memory stays bounded whatever the number of refs or commits.
 */
struct pipe_read;
struct rd_pipe_ops {
	/* One line: queue reads with rd_pipe_read(); return -1 to stop the listing (limit reached). */
	int (*on_line)(struct rd_pipe *p, char *line, size_t len);
	/* A read finished; `item` as given to rd_pipe_read(). */
	void (*on_object)(struct rd_pipe *p, void *item, int status, const struct catfile_info *info,
			  struct strbuf *data);
	/* Listing over, every read done. `status` is git's (0 when we stopped it). */
	void (*on_end)(struct rd_pipe *p, int status, const struct strbuf *err);
	/* Frees an item whose read was abandoned (the call went away). */
	void (*free_item)(void *item);
};

struct rd_pipe {
	struct rd *rd;
	const struct rd_pipe_ops *ops;
	size_t inflight;
	struct pipe_read *head, *tail;
	int listing_done, status, stopped, blocked, ended;
	struct strbuf err;
};

/* Start the listing (the cat-file process must be leased). 0, or -1 after finishing the call. */
int rd_pipe_start(struct rd_pipe *p, struct rd *rd, const struct git_call *gc, char delim,
		  const struct rd_pipe_ops *ops);
/* Read `rev` whole (commits, tags). `owns` marks the last read of an item: it frees it if abandoned. */
int rd_pipe_read(struct rd_pipe *p, const char *rev, size_t len, void *item, int owns);
/* Object info only (no content): on_object gets an empty `data`. */
int rd_pipe_info(struct rd_pipe *p, const char *rev, size_t len, void *item, int owns);
/* Stop the listing early; reads already queued still complete. */
void rd_pipe_stop(struct rd_pipe *p);
/* From the RPC's on_writable. */
void rd_pipe_writable(struct rd_pipe *p);
void rd_pipe_release(struct rd_pipe *p);

/* --- request checks --- */

/* Revision validation allowing rev-list pseudo revisions (--all, --not, --branches=...). */
int rd_check_pseudo_revision(const char *rev, size_t len, struct strbuf *msg);
/*
 * Go's filepath.IsLocal on Unix: not empty, not absolute, and lexically
 * cleaned neither ".." nor under "../" (read/commit_last.c).
 */
int rd_path_is_local(const char *p, size_t len);
/* Bytes headed for argv must not hold NUL (it would silently cut them). */
int rd_has_nul(const void *p, size_t len);

/* --- object parsing (parse.c) --- */

/* A GitCommit from a raw commit object; free with gitaly_commit_free(). */
Gitaly__GitCommit *gitaly_commit_parse(const char *oid, const char *data, size_t len);
void gitaly_commit_free(Gitaly__GitCommit *c);
/* Trailers from `git show --format=%(trailers:unfold,separator=%x00)` output. */
void gitaly_commit_set_trailers(Gitaly__GitCommit *c, const char *out, size_t len);

struct gitaly_tagged {
	char oid[CATFILE_HEXSZ_MAX + 1];
	char type[16];
};
/*
 * A Tag from a raw tag object. `name` (may be NULL) wins over the object's
 * own tag line. The tagged object is reported in `tagged`.
 */
Gitaly__Tag *gitaly_tag_parse(const char *oid, const char *data, size_t len, const char *name,
			      size_t name_len, struct gitaly_tagged *tagged);
/* Trailing newlines off, message_size set, message cut to MAX_MESSAGE_SIZE. */
void gitaly_tag_trim_message(Gitaly__Tag *t);
void gitaly_tag_free(Gitaly__Tag *t);   /* frees target_commit too */
Gitaly__CommitAuthor *gitaly_author_parse(const char *v, size_t len);

/* A tree entry as GetTreeEntries reports it. */
struct tree_ent {
	char *path;        /* full path from the root (Go filepath.Join of root and name) */
	size_t path_len;
	char oid[CATFILE_HEXSZ_MAX + 1];
	int32_t mode;
	int type;          /* Gitaly__TreeEntry__EntryType */
};
/*
 * Parse a raw tree object whose ids are `oid_hexsz` hex digits long,
 * prefixing names with `root` Go-style. 0, or -1 on malformed data.
 */
int tree_parse(const char *data, size_t len, size_t oid_hexsz, const char *root, size_t root_len,
	       struct tree_ent **out, size_t *nr);
void tree_ents_free(struct tree_ent *e, size_t nr);
int tree_type_from_mode(int32_t mode);

/* Go's path.Clean, filepath.Join(a, b) and path.Dir on byte strings. */
void go_path_clean(struct strbuf *out, const char *p, size_t len);
void go_path_join(struct strbuf *out, const char *a, size_t alen, const char *b, size_t blen);
void go_path_dir(struct strbuf *out, const char *p, size_t len);

/* --- commit batches and page tokens, shared by the commit listings --- */

/*
 * Commits queued for a response whose repeated field `commits` carries them
 * (ListCommitsResponse, FindCommitsResponse, ...): a message is cut before it
 * reaches BATCH_BYTES, as upstream's chunker does.
 */
struct rd_commits {
	const ProtobufCMessageDescriptor *resp;
	Gitaly__GitCommit **v;
	size_t n, alloc, bytes;
};

/* Queue `c` (owned from now on), first sending what is queued when `c` would overflow the message. */
void rd_commits_add(struct rd *rd, struct rd_commits *b, Gitaly__GitCommit *c);
/* Send what is queued, if anything, as one `b->resp` message. */
void rd_commits_flush(struct rd *rd, struct rd_commits *b);
void rd_commits_release(struct rd_commits *b);

/*
 * One item of a listing paginated by PaginationParameter: every item up to
 * and including the page token is skipped (*token_seen records passing it),
 * then at most `limit` items are taken (*count counts them). 1: skip this
 * item; 0: take it; -1: the limit is reached, stop the listing.
 */
int rd_page_step(const Gitaly__PaginationParameter *pp, int *token_seen, int32_t *count, const char *id,
		 size_t len);

#endif
