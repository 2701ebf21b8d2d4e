/*
 * The tracking store: praefect's record of repositories, replicas and their
 * generations, assignments, the replication queue and node health, with the
 * semantics of upstream's PostgreSQL schema (docs/technical/store.md).
 *
 * One interface, several backends: sqlite.c (embedded, the default) and pg.c
 * (upstream's PostgreSQL schema; several praefects sharing one database later). Callers only see
 * `struct store` and the functions below.
 *
 * Every operation is asynchronous: it is queued and `cb` fires exactly once,
 * later, on the loop thread that opened the store (never from inside the
 * call). Operations complete in the order they were submitted. Backends do the
 * blocking work elsewhere (sqlite: one worker thread owning the connection), so
 * the event loop never waits on disk. A `status` of 0 means success; errors are
 * negative errno values (-ENOENT not found, -EEXIST already exists, -ESTALE
 * "write to outdated nodes", -EIO backend failure) with a message in `msg`
 * (valid during the callback).
 *
 * Pointers in argument structs are copied before the call returns; results
 * passed to callbacks are valid only during the callback.
 */
#ifndef STORE_STORE_H
#define STORE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define GENERATION_UNKNOWN (-1)

struct store;

struct store_replica {
	const char *storage;
	int64_t generation;          /* GENERATION_UNKNOWN when there is no replica row */
	int assigned;                /* a repository_assignments row exists */
	int64_t verified_at_ms;      /* last metadata verification, Unix ms; 0: unverified */
	int64_t outdated_since_ms;   /* ours: when the replica was first seen behind, Unix ms; 0: in sync or unknown */
};

struct store_repo {
	int64_t id;
	const char *virtual_storage;
	const char *relative_path;
	const char *replica_path;
	const char *primary;         /* NULL when none is stored */
	int64_t generation;
	struct store_replica *replicas;   /* union of replica rows and assignment rows */
	size_t nr_replicas;
};

enum job_state { JOB_READY, JOB_IN_PROGRESS, JOB_COMPLETED, JOB_FAILED, JOB_DEAD, JOB_CANCELLED };

struct repl_job {
	int64_t id;                  /* 0 before enqueue */
	const char *change;          /* "update", "delete_replica", "delete", "create" */
	int64_t repository_id;
	const char *virtual_storage;
	const char *relative_path;
	const char *replica_path;    /* may be empty: workers resolve it */
	const char *source_storage;  /* empty for deletions */
	const char *target_storage;
	const char *correlation_id;
	enum job_state state;
	int attempt;                 /* remaining attempts, 3 on enqueue */
	int64_t created_at_ms;       /* Unix ms */
	int force;                   /* update: verify a target at the source's generation too (params) */
};

/* Other praefects' view of one node (store_node_votes()). */
struct store_node_vote {
	const char *virtual_storage;
	const char *storage;
	int64_t healthy_votes;       /* other praefects whose latest check, within the window, found it healthy */
	int64_t active_praefects;    /* other praefects that checked this virtual storage's nodes in the last minute */
};

/* --- callbacks --- */
typedef void (*store_done_fn)(void *arg, int status, const char *msg);
typedef void (*store_id_fn)(void *arg, int status, const char *msg, int64_t id);
typedef void (*store_gen_fn)(void *arg, int status, const char *msg, int64_t generation);
typedef void (*store_repos_fn)(void *arg, int status, const char *msg,
			       const struct store_repo *repos, size_t n);
typedef void (*store_deleted_fn)(void *arg, int status, const char *msg, const char *replica_path,
				 const char *const *storages, size_t n);
typedef void (*store_jobs_fn)(void *arg, int status, const char *msg,
			      const struct repl_job *jobs, size_t n);
typedef void (*store_count_fn)(void *arg, int status, const char *msg, int64_t count);
typedef void (*store_swap_fn)(void *arg, int status, const char *msg, const char *current);
typedef void (*store_votes_fn)(void *arg, int status, const char *msg, const struct store_node_vote *v, size_t n);

/* --- lifecycle --- */

/*
 * Open (creating if needed) and migrate the SQLite store at `path`, WAL mode.
 * Synchronous: for start-up and command-line tools. 0, or -1 with `err` set.
 */
struct strbuf;
int store_open_sqlite(uv_loop_t *loop, const char *path, struct store **out, struct strbuf *err);
/*
 * Connect to the PostgreSQL store (upstream's schema and [database] keys,
 * store/pg-admin.h). Upstream's migrations are never applied here: -1 with
 * `err` telling the admin to run `praefect sql-migrate` when one is missing;
 * our own (additive) ones are. A connection lost later is re-established with
 * back-off; ops fail with -ENOTCONN meanwhile.
 */
struct store_pg_params;
int store_open_pg(uv_loop_t *loop, const struct store_pg_params *p, struct store **out, struct strbuf *err);
/*
 * Finish queued operations, then close. Their callbacks run before this
 * returns; an op submitted from one of them fails with -ECANCELED. The
 * memory goes on the loop's next turn. An idle store does not keep the loop
 * alive; a pending operation does.
 */
void store_close(struct store *s);
/* Applied migration ids, for `praefect sql-migrate-status`-like tools. */
const char *const *store_migrations(size_t *n);
/*
 * Whether several praefects may share this store (PostgreSQL): then health
 * is decided by consensus and elections by compare-and-set
 * (docs/technical/multi-praefect.md). SQLite serves one praefect.
 */
int store_is_shared(const struct store *s);

/* --- repositories (upstream repository_store.go semantics) --- */

/* Every repository with its replicas and assignments (start-up cache fill). */
void store_list_repositories(struct store *s, const char *virtual_storage /* NULL: all */,
			     store_repos_fn cb, void *arg);
/*
 * A page of that listing over every virtual storage: the repositories with
 * ids in (after_id, last_id], in id order, each with its replicas and
 * assignments, read in one transaction (praefect's start-up load,
 * docs/technical/repository-model.md).
 */
void store_list_repositories_page(struct store *s, int64_t after_id, int64_t last_id, store_repos_fn cb, void *arg);
/* How many repositories the store tracks, over every virtual storage (sizing the start-up load). */
void store_count_repositories(struct store *s, store_count_fn cb, void *arg);
/* The highest repository id tracked, 0 when none (where the start-up load's pages end). */
void store_last_repository_id(struct store *s, store_count_fn cb, void *arg);
/* One repository by (virtual storage, relative path); -ENOENT if absent. */
void store_get_repository(struct store *s, const char *vs, const char *relative_path,
			  store_repos_fn cb, void *arg);
/* Reserve a new repository id; -EEXIST if (vs, path) already has a repository. */
void store_reserve_id(struct store *s, const char *vs, const char *relative_path, store_id_fn cb, void *arg);
/*
 * Insert a repository at generation 0 with replica rows at 0 for primary and
 * `updated`; assignment rows for primary ∪ updated ∪ outdated when
 * `store_assignments`. -EEXIST when (vs, path) or the id exists.
 */
void store_create_repository(struct store *s, int64_t id, const char *vs, const char *relative_path,
			     const char *replica_path, const char *primary,
			     const char *const *updated, size_t nr_updated,
			     const char *const *outdated, size_t nr_outdated,
			     int store_primary, int store_assignments, store_done_fn cb, void *arg);
/*
 * +1 on the given storages' replicas that are at the repository generation,
 * and on the repository if any was bumped. -ENOENT, or -ESTALE ("write to
 * outdated nodes") if none was up to date. `cb` gets the new generation.
 */
void store_increment_generation(struct store *s, int64_t id, const char *const *storages, size_t n,
				store_gen_fn cb, void *arg);
/*
 * store_increment_generation() that also deletes write intent `intent`
 * (store_begin_write()) in the same transaction: either both happen or
 * neither. `intent` 0 is plain store_increment_generation().
 */
void store_complete_write(struct store *s, int64_t intent, int64_t id, const char *const *storages, size_t n,
			  store_gen_fn cb, void *arg);
/* Upsert a replica at `generation`, raising the repository's if lower. */
void store_set_generation(struct store *s, int64_t id, const char *storage, const char *relative_path,
			  int64_t generation, store_done_fn cb, void *arg);
/* Delete the repository (cascade); returns its replica path and replica storages. */
void store_delete_repository(struct store *s, const char *vs, const char *relative_path,
			     store_deleted_fn cb, void *arg);
/* Delete every repository of virtual storage `vs` (RemoveAll); `cb` gets how many went. */
void store_delete_all_repositories(struct store *s, const char *vs, store_count_fn cb, void *arg);
/* Delete one replica row (no row is not an error). */
void store_delete_replica(struct store *s, int64_t id, const char *storage, store_done_fn cb, void *arg);
/* Delete a replica and the repository too if no other replica remains. */
void store_delete_invalid_replica(struct store *s, int64_t id, const char *storage,
				  store_done_fn cb, void *arg);
/* Repository generation +1 and `storage` upserted to it (accept-dataloss). */
void store_set_authoritative(struct store *s, const char *vs, const char *relative_path,
			     const char *storage, store_gen_fn cb, void *arg);
void store_set_primary(struct store *s, int64_t id, const char *primary, store_done_fn cb, void *arg);
/*
 * Compare-and-set of a repository's primary: `primary` becomes the primary
 * only if the stored one is still `expected` (NULL: none). Status 0 when it
 * did; -EAGAIN when another praefect changed it first, and `current` (NULL:
 * none) is the primary stored now; -ENOENT without the repository.
 */
void store_swap_primary(struct store *s, int64_t id, const char *expected, const char *primary,
			store_swap_fn cb, void *arg);
/* Replace the assignment rows of a repository. */
void store_set_assignments(struct store *s, int64_t id, const char *const *storages, size_t n,
			   store_done_fn cb, void *arg);
/*
 * Mark replicas unverified (verified_at cleared): every replica of repository
 * `id` when `id` > 0, else those of virtual storage `vs`, only on `storage`
 * when it is not NULL. `cb` gets how many replicas had been verified.
 */
void store_mark_unverified(struct store *s, int64_t id, const char *vs, const char *storage,
			   store_count_fn cb, void *arg);
/*
 * Ours (docs/technical/replication-status.md): record when `storage`'s
 * replica of repository `id` was first seen behind, Unix ms, or clear it
 * with 0. A missing replica row is not an error (nothing to record on).
 */
void store_set_outdated_since(struct store *s, int64_t id, const char *storage, int64_t since_ms,
			      store_done_fn cb, void *arg);
/* Rename a repository (relative path), keeping its id and replica path. */
void store_rename_repository(struct store *s, const char *vs, const char *from, const char *to,
			     store_done_fn cb, void *arg);

/* --- write intents (ours: a praefect killed mid-write leaves a trace) --- */

/*
 * Record that a write to repository `id` is about to be forwarded; `cb` gets
 * the intent's id once it is durable. A write that ends deletes its intent,
 * with the generation bump (store_complete_write()) or alone
 * (store_end_write()). Intents left over were writes in flight when the
 * process died: their replicas may differ at equal generations.
 */
void store_begin_write(struct store *s, const char *praefect_name, int64_t id, store_id_fn cb, void *arg);
/* Delete intent `intent` (no row is not an error). */
void store_end_write(struct store *s, int64_t intent, store_done_fn cb, void *arg);
/*
 * Start-up: turn every leftover intent of praefect `praefect_name` (and those
 * recorded without a name, before the column existed) into forced `update`
 * jobs (verify) from the repository's primary, or the first replica at the
 * repository's generation when the primary is not, to every other replica;
 * then delete those intents. Other praefects' intents are writes they may
 * still have in flight and are left alone; a NULL `praefect_name` takes every
 * intent (the embedded store, whose one praefect wrote them all under
 * whatever name each of its runs had). One transaction. `cb` gets the
 * number of jobs queued.
 */
void store_recover_writes(struct store *s, const char *praefect_name, store_count_fn cb, void *arg);

/* --- suspect replicas (ours: docs/technical/praefect-health.md, "Suspect replicas") --- */

/* A replica to verify: `avoid`, reads stay away from it until it is verified. */
struct store_suspect {
	int64_t repository_id;
	const char *storage;
	int avoid;
};
typedef void (*store_suspects_fn)(void *arg, int status, const char *msg,
				  const struct store_suspect *suspects, size_t n);
/*
 * Record replica (`id`, `storage`) as suspect, or change its `avoid`; kept
 * until store_suspect_remove() or the repository's deletion, so a restarted
 * praefect still verifies it. -ENOENT when the repository is gone.
 */
void store_suspect_add(struct store *s, int64_t id, const char *storage, int avoid, store_done_fn cb, void *arg);
/* Forget it (verified clean, repaired, or its replica gone); no row is not an error. */
void store_suspect_remove(struct store *s, int64_t id, const char *storage, store_done_fn cb, void *arg);
/* Every recorded suspect, by repository id and storage (start-up). */
void store_list_suspects(struct store *s, store_suspects_fn cb, void *arg);

/* --- background verification (upstream verifier.go's queries, docs/technical/praefect-health.md) --- */

/* Where to take verifications from: at most `max` replicas on (virtual storage, storage). */
struct store_verify_slot {
	const char *virtual_storage;
	const char *storage;
	size_t max;
};

/*
 * Lease replicas due for verification: on each slot's storage, those with
 * no lease whose verified_at is NULL or older than `interval_ms`, never
 * verified first, then the oldest; at most `batch` in all. Each one's
 * verification_leased_until is set `lease_ms` from now, so no other
 * verifier (another praefect) takes it meanwhile. `cb` gets them as jobs:
 * change "verify", repository_id, virtual_storage, relative_path,
 * replica_path and target_storage (the replica's storage).
 */
void store_lease_verifications(struct store *s, const struct store_verify_slot *slots, size_t n, size_t batch,
			       int64_t interval_ms, int64_t lease_ms, store_jobs_fn cb, void *arg);

enum store_verify_result {
	STORE_VERIFY_VALID,          /* the replica is there (and, ours, its content is right) */
	STORE_VERIFY_INVALID,        /* the replica does not exist on its node */
	STORE_VERIFY_ERROR,          /* could not tell: verify again soon */
};

/*
 * End the lease of `storage`'s replica of repository `id`. VALID sets
 * verified_at to now; INVALID deletes the replica row when `delete_invalid`
 * (the repository row stays, so that the loss shows), else counts as VALID;
 * ERROR only drops the lease. Nothing happens to a row that holds no lease
 * any more (its lease was released, or the row was deleted and re-created
 * meanwhile): the result is stale. `cb` gets how many rows changed (0 or 1).
 */
void store_end_verification(struct store *s, int64_t id, const char *storage, enum store_verify_result result,
			    int delete_invalid, store_count_fn cb, void *arg);
/*
 * Drop leases that ran out more than `grace_ms` ago (a verifier that died
 * or hung); `cb` gets how many.
 */
void store_release_verification_leases(struct store *s, int64_t grace_ms, store_count_fn cb, void *arg);

/* --- replication queue (upstream queue.go semantics) --- */

/*
 * Enqueue `job` (state ready, attempt 3). When a ready job with the same
 * (virtual storage, relative path, target, change) exists, nothing is inserted
 * and status is -EEXIST (callers treat that as success); also -EEXIST for a
 * second live delete_replica job of one repository. A forced job only
 * counts a forced ready job as its duplicate (an unforced one would skip the
 * verification). `cb` gets the new id.
 */
void store_enqueue(struct store *s, const struct repl_job *job, store_id_fn cb, void *arg);
/* Take up to `max` jobs for one target storage, as upstream Dequeue does. */
void store_dequeue(struct store *s, const char *vs, const char *target, size_t max,
		   store_jobs_fn cb, void *arg);
/* Acknowledge in_progress jobs as completed, failed or dead (see the spec). */
void store_acknowledge(struct store *s, enum job_state state, const int64_t *ids, size_t n,
		       store_done_fn cb, void *arg);
/*
 * Give in_progress jobs back for a later run: not dequeued before
 * `delay_ms` from now. `refund` 0: state failed (the attempt is spent, a
 * retry with back-off); 1: state ready with the attempt given back (the job
 * could not run, e.g. no healthy source).
 */
void store_postpone(struct store *s, const int64_t *ids, size_t n, int64_t delay_ms, int refund,
		    store_done_fn cb, void *arg);
/* Keep the locks of running jobs fresh; -ENOENT once none is held (stop refreshing). */
void store_heartbeat(struct store *s, const int64_t *ids, size_t n, store_done_fn cb, void *arg);
/* Release jobs whose lock was not refreshed for `stale_ms` (crashed workers); `cb` gets how many. */
void store_acknowledge_stale(struct store *s, int64_t stale_ms, store_count_fn cb, void *arg);
/*
 * Delete every job of (vs, relative path) that is not in_progress (a removed
 * repository's), except `delete` jobs: those retry a replica's removal. `cb` gets how many in_progress jobs of it remain: callers
 * repeat until none does.
 */
void store_purge_jobs(struct store *s, const char *vs, const char *relative_path,
		      store_count_fn cb, void *arg);
/* Jobs not yet finished (ready, in_progress, failed), for metrics and tests. */
void store_count_jobs(struct store *s, store_count_fn cb, void *arg);
/* Every job (any state), for tools and tests. */
void store_list_jobs(struct store *s, store_jobs_fn cb, void *arg);

/* --- node health (node_status) --- */

void store_record_node_status(struct store *s, const char *praefect_name, const char *vs,
			      const char *storage, int healthy, store_done_fn cb, void *arg);
/*
 * What every praefect but `praefect_name` saw of the nodes: for each
 * (virtual storage, storage) in node_status, how many of the others found it
 * healthy at their latest check, that check no older than `window_ms`, and
 * how many others checked that virtual storage in the last minute. Nodes
 * that no other praefect checked are absent (docs/technical/multi-praefect.md).
 */
void store_node_votes(struct store *s, const char *praefect_name, int64_t window_ms, store_votes_fn cb, void *arg);

#endif
