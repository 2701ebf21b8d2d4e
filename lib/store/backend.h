/*
 * Internals of the tracking store shared by store.c and the backends: the
 * operation record and the backend vtable. Callers use store.h only.
 *
 * Division of labour. store.c owns everything asynchronous: it copies the
 * caller's arguments into a `struct store_op`, queues it, runs one worker
 * thread that hands batches of operations to the backend, and posts results
 * back to the loop with uv_async. A backend only implements synchronous
 * functions that run on that worker thread and never see the loop:
 *
 *	begin(writes)                        once per batch
 *	  savepoint / op function / release  per operation (rollback_to on error)
 *	commit (or rollback)
 *
 * so a batch of queued writes shares one commit (group commit) while each
 * operation keeps its own all-or-nothing effect and its own status. A batch of
 * one skips the savepoint. An operation function returns 0 or a negative
 * errno value and, on error, leaves a message in op->msg (store_op_fail()).
 * It fills the result fields of `op` named below; strings it returns must be
 * owned by the op (store_op_keep()).
 *
 * pg.c opens a libpq connection, fills the same vtable with blocking libpq
 * calls (BEGIN / SAVEPOINT / COMMIT work the same way) and calls
 * store_start(); nothing in store.c or in callers differs.
 */
#ifndef STORE_BACKEND_H
#define STORE_BACKEND_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "base/strbuf.h"
#include "base/strvec.h"
#include "store.h"

enum store_op_kind {
	STORE_OP_LIST_REPOSITORIES,
	STORE_OP_GET_REPOSITORY,
	STORE_OP_RESERVE_ID,
	STORE_OP_CREATE_REPOSITORY,
	STORE_OP_INCREMENT_GENERATION,
	STORE_OP_SET_GENERATION,
	STORE_OP_DELETE_REPOSITORY,
	STORE_OP_DELETE_REPLICA,
	STORE_OP_DELETE_INVALID_REPLICA,
	STORE_OP_SET_AUTHORITATIVE,
	STORE_OP_SET_PRIMARY,
	STORE_OP_SET_ASSIGNMENTS,
	STORE_OP_RENAME_REPOSITORY,
	STORE_OP_ENQUEUE,
	STORE_OP_DEQUEUE,
	STORE_OP_ACKNOWLEDGE,
	STORE_OP_HEARTBEAT,
	STORE_OP_ACKNOWLEDGE_STALE,
	STORE_OP_COUNT_JOBS,
	STORE_OP_LIST_JOBS,
	STORE_OP_RECORD_NODE_STATUS,
	STORE_OP_BEGIN_WRITE,
	STORE_OP_END_WRITE,
	STORE_OP_RECOVER_WRITES,
	STORE_OP_POSTPONE,
	STORE_OP_MARK_UNVERIFIED,
	STORE_OP_PURGE_JOBS,
	STORE_OP_LEASE_VERIFICATIONS,
	STORE_OP_END_VERIFICATION,
	STORE_OP_RELEASE_VERIFICATION_LEASES,
	STORE_OP_DELETE_ALL_REPOSITORIES,
	STORE_OP_SUSPECT_ADD,
	STORE_OP_SUSPECT_REMOVE,
	STORE_OP_LIST_SUSPECTS,
	STORE_OP_SWAP_PRIMARY,
	STORE_OP_NODE_VOTES,
	STORE_OP_COUNT_REPOSITORIES,
	STORE_OP_LAST_REPOSITORY_ID,
	STORE_OP_SET_OUTDATED_SINCE,
	STORE_OP__NR
};

/*
 * One queued operation. Arguments (`in`) are filled on the loop thread before
 * the op is queued and are read-only afterwards; results are written by the
 * backend on the worker thread and read by the loop thread after the hand-off
 * (the queue mutex orders the two).
 */
struct store_op {
	struct store_op *next;
	enum store_op_kind kind;
	union {
		store_done_fn done;
		store_id_fn id;
		store_gen_fn gen;
		store_repos_fn repos;
		store_deleted_fn deleted;
		store_jobs_fn jobs;
		store_count_fn count;
		store_suspects_fn suspects;
		store_swap_fn swap;
		store_votes_fn votes;
	} cb;
	void *arg;

	/* Arguments; which fields an op uses is listed next to store_*() in store.c. */
	struct {
		int64_t id;                     /* repository id */
		const char *vs;                 /* virtual storage, NULL for "all" */
		const char *path;               /* relative path ("from" for rename) */
		const char *path2;              /* "to" for rename */
		const char *replica_path;
		const char *primary;
		const char *expected;           /* swap_primary: the primary it replaces (NULL: none) */
		const char *storage;
		const char *praefect;
		struct strvec storages;         /* storages / updated secondaries */
		struct strvec storages2;        /* outdated secondaries */
		int store_primary, store_assignments, healthy;
		int64_t generation;
		int64_t stale_ms;
		size_t max;
		enum job_state state;
		struct repl_job job;
		int64_t *ids;
		size_t nr_ids;
		int64_t intent;                 /* write intent id (0: none) */
		int64_t last_id;                /* list_repositories_page: ids in (id, last_id] */
		int64_t delay_ms;               /* postpone */
		int refund;                     /* postpone */
		/* background verification: storages = virtual storages, storages2 = storages, ids = maxima */
		int64_t interval_ms, lease_ms;
		int verify_result, delete_invalid;
		int avoid;                      /* suspect_add */
		int64_t since_ms;               /* set_outdated_since (0: clear) */
	} in;

	/* Results. */
	int status;
	struct strbuf msg;
	int64_t value;                          /* id, generation or count */
	struct store_repo *repos;
	size_t nr_repos, alloc_repos;
	struct repl_job *jobs;
	size_t nr_jobs, alloc_jobs;
	const char *deleted_replica_path;
	struct strvec deleted_storages;
	struct store_suspect *suspects;         /* list_suspects */
	size_t nr_suspects, alloc_suspects;
	const char *current;                    /* swap_primary: the stored primary after a lost race */
	struct store_node_vote *votes;          /* node_votes */
	size_t nr_votes, alloc_votes;

	struct strvec keep;                     /* every string the op owns */
};

/* Copy `s` into storage owned by `op` (NULL stays NULL). */
const char *store_op_keep(struct store_op *op, const char *s);
/* Set op->msg from a format and return `status` (a negative errno value). */
int store_op_fail(struct store_op *op, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Free the results of `op` (repos, jobs, deletion lists), keeping arguments. */
void store_op_clear_result(struct store_op *op);
/* Append a zeroed repository / job to the op's result and return it. */
struct store_repo *store_op_add_repo(struct store_op *op);
struct repl_job *store_op_add_job(struct store_op *op);
struct store_suspect *store_op_add_suspect(struct store_op *op);
struct store_node_vote *store_op_add_vote(struct store_op *op);
/* "ready", "in_progress", ...; NULL for an unknown value. */
const char *store_job_state_name(enum job_state state);
int store_job_state_parse(const char *s, enum job_state *out);

struct store_backend;
typedef int (*store_op_fn)(struct store_backend *b, struct store_op *op);

struct store_backend_ops {
	const char *name;
	int shared;     /* several praefects may use one store (store_is_shared()) */

	/*
	 * Transaction bracket around a batch. `writes` is 0 when every op of
	 * the batch only reads. Failures return a negative errno value with a
	 * message in `err`. in_transaction() tells store.c whether an error
	 * inside an op also ended the outer transaction (then the batch's
	 * earlier successes are lost and reported as failures).
	 */
	int (*begin)(struct store_backend *b, int writes, struct strbuf *err);
	int (*commit)(struct store_backend *b, struct strbuf *err);
	void (*rollback)(struct store_backend *b);
	int (*savepoint)(struct store_backend *b, struct strbuf *err);
	int (*release)(struct store_backend *b, struct strbuf *err);
	void (*rollback_to)(struct store_backend *b);
	int (*in_transaction)(struct store_backend *b);

	/*
	 * One function per operation, indexed by enum store_op_kind. Results:
	 * repos (list/get), value (reserve_id: id; increment_generation and
	 * set_authoritative: generation; enqueue and begin_write: id;
	 * acknowledge_stale, count_jobs, recover_writes, mark_unverified,
	 * purge_jobs, end_verification and release_verification_leases:
	 * count), suspects (list_suspects), deleted_*
	 * (delete_repository), jobs (dequeue, list_jobs, lease_verifications).
	 */
	store_op_fn op[STORE_OP__NR];

	/* Release the connection; the worker has stopped. */
	void (*close)(struct store_backend *b);
};

/* Backends embed this as their first member. */
struct store_backend {
	const struct store_backend_ops *ops;
};

/*
 * Start the worker thread for an opened backend and return the store. On
 * failure returns -1 with `err` set and closes the backend.
 */
int store_start(uv_loop_t *loop, struct store_backend *b, struct store **out, struct strbuf *err);

/*
 * Most operations one transaction may carry (group commit); 1 turns group
 * commit off. For benchmarks and tests; the default is STORE_MAX_BATCH.
 */
#define STORE_MAX_BATCH 64
void store_set_max_batch(struct store *s, size_t n);

#endif
