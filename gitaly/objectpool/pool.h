/*
 * ObjectPoolService (docs/technical/object-pools.md): what its files share.
 * A pool is a bare repository at a pool path whose objects its members
 * borrow through objects/info/alternates. Used by objectpool/ and by
 * ReplicateRepository (repository/replicate_pool.c), which carries pool
 * membership between nodes.
 *
 * Every ObjectPoolService call is one struct objpool_call: the call base,
 * the resolved pool and member paths, the one git process or thread-pool
 * job in flight, and the request. Steps chain through git's exit or a
 * vote's answer; the last one ends the call with objpool_end().
 */
#ifndef GITALY_OBJECTPOOL_POOL_H
#define GITALY_OBJECTPOOL_POOL_H

#include "repository/repository.h"
#include "objectpool/pool_path.h"
#include "objectpool.pb-c.h"

struct hk_run;

struct objpool_call {
	struct gitaly_call op;
	void *req;                       /* the decoded request (msg_free) */
	char *pool_path;                 /* absolute path of the pool */
	char *repo_path;                 /* absolute path of the member or origin */
	const Gitaly__Repository *pool_repo, *repo;  /* point into req */
	struct git_cmd *cmd;
	struct hk_run *hk;               /* FetchIntoObjectPool: the pool's optimization */
	struct reposvc_create *rc;
	uv_work_t work;
	int work_rc;
	struct strbuf msg;               /* error text of a failed step */
	struct strbuf aux;               /* step data: dangling refs, backup path... */
	char *tmp_path;                  /* CreateObjectPool: the repository being seeded */
	const Gitaly__Repository *tmp_repo;
};

/* Allocate the call (watched by the caller once set up); takes `req`. */
struct objpool_call *objpool_call_new(struct gitaly *g, struct grpc_call *call, void *req);
/* Before objpool_call_watch(): give up at once (finishes the call with `code`/`msg`). */
void objpool_call_abort(struct objpool_call *c, enum grpc_code code, const char *msg);
void objpool_call_watch(struct objpool_call *c);
/* End the call: `resp` (a message) on GRPC_OK, else `code` and `msg`. */
void objpool_end(struct objpool_call *c, enum grpc_code code, const char *msg, const void *resp);

#define OBJPOOL_MISSING_OK 0x1   /* a pool that is not a valid repository is no error */
/*
 * Resolve the pool of a request, in upstream's order: INVALID_ARGUMENT "no
 * object pool repository" without one; the locator's answer for a bad
 * storage or path; INVALID_ARGUMENT "invalid object pool directory" for a
 * path that is neither a pool path nor under the storage's temporary
 * directory; FAILED_PRECONDITION "object pool is not a valid git
 * repository" (with OBJPOOL_MISSING_OK: GRPC_NOT_FOUND, msg empty).
 */
enum grpc_code objpool_locate(struct gitaly *g, const Gitaly__ObjectPool *pool, unsigned flags,
			      struct strbuf *path, struct strbuf *msg);
/*
 * The relative path of the pool `repo` (at `repo_path`) is linked to, or
 * NULL (no alternates, a comment, a directory that is no pool).
 */
char *objpool_of(struct gitaly *g, const Gitaly__Repository *repo, const char *repo_path);

/*
 * 1 when the member at `repo_path` is linked to the pool at `pool_path`
 * already (its alternates hold exactly `line`, objpool_alternate_line()),
 * 0 when the alternates are to be written (none, a comment, or the pool's
 * absolute object directory), -1 with `msg` set when it is linked elsewhere:
 * `unexpected alternates content: "<line>"`.
 */
int objpool_link_state(const char *repo_path, const char *pool_path, const char *line, struct strbuf *msg);

/*
 * Disconnect the repository at `repo_path` from its alternates, with the
 * votes of DisconnectGitAlternates, for `op` (which must stay held until
 * `done`). `*cmd` holds the git process while one runs, for op's cancel
 * hook. `done` fires exactly once: from the loop, or at once with
 * CANCELLED when the call is already gone. The strings must outlive it.
 */
typedef void (*objpool_disconnected_fn)(void *arg, enum grpc_code code, const char *msg);
void objpool_disconnect_start(struct gitaly_call *op, const char *repo_path, const Gitaly__Repository *repo,
			      struct git_cmd **cmd, objpool_disconnected_fn done, void *arg);

/* Handlers (registered by gitaly_register_objectpool(), get.c). */
void objpool_create(struct grpc_call *call, const uint8_t *buf, size_t len, void *data);
void objpool_delete(struct grpc_call *call, const uint8_t *buf, size_t len, void *data);
void objpool_link(struct grpc_call *call, const uint8_t *buf, size_t len, void *data);
void objpool_disconnect(struct grpc_call *call, const uint8_t *buf, size_t len, void *data);
void objpool_fetch(struct grpc_call *call, const uint8_t *buf, size_t len, void *data);

#endif
