/*
 * ReplicateRepository's state, shared by replicate.c (the steps) and
 * replicate_source.c (calls to the source node, streams fed to tar(1)).
 * Private to repository/.
 */
#ifndef GITALY_REPOSITORY_REPLICATE_H
#define GITALY_REPOSITORY_REPLICATE_H

#include "repository/repository.h"
#include "grpc/client.h"
#include "grpc/metadata.h"
#include "repository.pb-c.h"

/* config and info/attributes are buffered whole before the locked write */
#define MAX_FILE (16 * 1024 * 1024)

struct repl {
	struct gitaly_call op;
	Gitaly__ReplicateRepositoryRequest *req;
	char *path;                       /* the target repository */
	struct cleanup_writer *writer;    /* from the start to the release (core/cleanup.h) */
	char *tmp_root;                   /* <storage>/+gitaly/tmp */
	char *address, *token;            /* how to reach the source node */
	struct grpc_channel *ch;
	struct grpc_metadata fwd;         /* incoming metadata passed on (not our token) */

	/* in flight */
	struct grpc_client_call *ccall;
	struct git_cmd *cmd;
	struct reposvc_create *rc;

	/* the outbound call */
	void (*on_msg)(struct repl *r, const uint8_t *msg, size_t len);
	void (*on_done)(struct repl *r);
	int call_cancelled, got_msg;
	enum grpc_code call_code;
	struct strbuf call_msg;
	struct strbuf abort_msg;          /* why we cancelled the call ourselves */
	struct strbuf buf;                /* collected response bytes */

	/* a tar(1) fed by a stream: snapshot or custom hooks */
	struct strvec tar_argv;
	void (*fed_end)(struct repl *r);
	int cmd_started, cmd_status;
	struct strbuf cmd_err;
	int recv_paused;

	/* step 7, object pools (replicate_pool.c) */
	void (*pool_next)(struct repl *r);
	Gitaly__Repository pool_repo;     /* the pool on the target: our storage, the source pool's path */
	char *pool_rel, *pool_path;
	int created_here;                 /* the target came from the source's snapshot in this call */
	uv_work_t pool_work;              /* dropping loose objects the pool has */

	int invalid_source;
	char *hooks_tmp;
	struct strbuf remote_head;
};

/* End the call. Only with nothing in flight. Inner codes win, as in upstream's error wrapping. */
void repl_fail(struct repl *r, enum grpc_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Call `method` on the source with `req`. `forward` passes the incoming
 * metadata on (upstream does so for the sync steps). Returns 0 (on_done will
 * fire) or -1 (nothing started; `r->call_msg` says why).
 */
int repl_call_start(struct repl *r, const char *method, const void *req, int forward,
		    void (*on_msg)(struct repl *r, const uint8_t *msg, size_t len), void (*on_done)(struct repl *r));
/* on_msg that keeps the bytes of field 1 of every message (config, attributes). */
void repl_collect_field1(struct repl *r, const uint8_t *msg, size_t len);
/* on_msg for unary calls: keep the message. */
void repl_collect_message(struct repl *r, const uint8_t *msg, size_t len);
/* Stream `method` into tar with `argv`; `end` runs once both are over. */
int repl_feed_start(struct repl *r, const char *method, const void *req, int forward,
		    const char *const *argv, void (*end)(struct repl *r));

/*
 * Step 7 (replicate_pool.c), when the request asks to replicate pool
 * membership: link the target to the same pool the source uses (creating
 * that pool on this node from the source pool's snapshot when missing), or
 * disconnect it when the source has none; then `next`.
 */
void repl_sync_pool(struct repl *r, void (*next)(struct repl *r));

#endif
