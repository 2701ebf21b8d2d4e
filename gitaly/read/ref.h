/*
 * What the RefService files (ref.c, ref_branches.c, ref_tags.c) share: one
 * call context for every ref RPC, batching of listed items into messages,
 * the default-branch lookup and the for-each-ref pipeline.
 */
#ifndef GITALY_READ_REF_H
#define GITALY_READ_REF_H

#include "read/read.h"
#include "ref.pb-c.h"

/* One context type serves every ref RPC; each uses the fields it needs. */
struct ref_ctx {
	struct rd rd;
	/* default branch resolution */
	struct strbuf head;
	int head_only, found[3], answered;
	void (*defbranch_done)(struct ref_ctx *x, const char *name, size_t len);
	/* pipelines */
	struct rd_pipe pipe;
	int pipe_started;
	struct strvec flags, args;
	const char *token;
	int token_seen;
	int64_t limit, count;
	int kind;                          /* which RPC: REF_KIND_* */
	int fast;                          /* answered from ref files so far (lib/git/refs.h) */
	void **batch;
	size_t nbatch, alloc, bytes;
	/* ListRefs */
	char *head_oid;
	int peel, head_in_batch;
	/* FindTag / FindBranch */
	struct strbuf name;
	Gitaly__Tag *tag;
	struct gitaly_tagged tagged;
	char *oid;
};

enum { REF_KIND_LOCAL_BRANCHES = 1, REF_KIND_ALL_BRANCHES, REF_KIND_ALL_TAGS, REF_KIND_LIST_REFS, REF_KIND_OTHER };

struct ref_ctx *ref_start(struct gitaly *g, struct grpc_call *call, void *req,
			  const Gitaly__Repository *repo, int kind);
/*
 * ref_start() for a context of `size` bytes that embeds struct ref_ctx first
 * (other services reuse the default-branch lookup that way). A caller that
 * sets its own on_free calls ref_ctx_release() from it.
 */
struct ref_ctx *ref_start_size(struct gitaly *g, struct grpc_call *call, size_t size, void *req,
			       const Gitaly__Repository *repo, int kind);
void ref_ctx_release(struct rd *rd);
int ref_check_bytes(struct ref_ctx *x, const ProtobufCBinaryData *b, const char *what);
void ref_git(struct ref_ctx *x, const char *subcmd, const char *const *flags, const char *arg,
	     size_t max, rd_capture_fn cb);
void ref_default_branch(struct ref_ctx *x, int head_only,
			void (*done)(struct ref_ctx *x, const char *name, size_t len));
void ref_flush_batch(struct ref_ctx *x);
void ref_push_batch(struct ref_ctx *x, void *item);
int ref_past_token(struct ref_ctx *x, const char *name, size_t len);
void ref_listing_end(struct rd_pipe *p, int status, const struct strbuf *err);
void ref_start_listing(struct rd *rd, const struct rd_pipe_ops *ops);
int ref_empty_page(struct ref_ctx *x, enum grpc_code code);
void ref_set_pagination(struct ref_ctx *x, const Gitaly__PaginationParameter *p);

/* Handlers living in ref_branches.c and ref_tags.c, registered by ref.c. */
void ref_find_local_branches(struct grpc_call *call, const uint8_t *buf, size_t len, void *data);
void ref_find_all_branches(struct grpc_call *call, const uint8_t *buf, size_t len, void *data);
void ref_find_branch(struct grpc_call *call, const uint8_t *buf, size_t len, void *data);
void ref_find_tag(struct grpc_call *call, const uint8_t *buf, size_t len, void *data);
void ref_find_all_tags(struct grpc_call *call, const uint8_t *buf, size_t len, void *data);

#endif
