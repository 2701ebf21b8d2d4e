/*
 * praefect: the router in front of several gitaly nodes. One `struct
 * praefect` per process, passed to every component.
 *
 * Routing never waits on the store: `repos` is an in-memory copy of every
 * repository's record (id, paths, primary, generation, replicas and their
 * generations, assignments), loaded at start-up and updated by the same code
 * paths that write the store, after each write succeeds. With the embedded
 * store one praefect owns the database, so the copy is exact.
 */
#ifndef PRAEFECT_PRAEFECT_H
#define PRAEFECT_PRAEFECT_H

#include <errno.h>
#include <stdint.h>
#include <uv.h>
#include <protobuf-c/protobuf-c.h>

#include "config.h"
#include "base/hashmap.h"
#include "loop/cron.h"
#include "grpc/server.h"
#include "grpc/client.h"
#include "rpc/registry.h"
#include "store/store.h"

struct praefect;
struct vstorage;
struct bc_client;
struct proxy;

/*
 * The replication state of one storage as the metrics task samples it once a
 * second (metrics/status.c, docs/technical/replication-status.md): the queue
 * from the store, the outdated replicas from the in-memory records, the
 * throughput from the jobs the replicator completed.
 */
struct node_repl_status {
	int64_t ready, in_progress, failed;    /* replication jobs targeting it */
	int64_t oldest_job_ms;                 /* creation of the oldest of them, Unix ms; 0: none */
	int64_t outdated;                      /* replicas behind their repository */
	int64_t oldest_outdated_ms;            /* Unix ms; 0: none */
	int64_t oldest_outdated_repo;          /* its repository id */
	uint64_t completed;                    /* jobs completed since start (replicator.c) */
	uint64_t completed_seen;               /* `completed` at the last sample */
	double throughput;                     /* jobs/s, EWMA over about a minute */
	int sampled;                           /* throughput has at least one sample interval */
};

/* One gitaly storage of a virtual storage, and our connection to it. */
struct node {
	struct vstorage *vs;
	const struct praefect_node_cfg *cfg;   /* storage, address, token */
	struct grpc_channel *ch;
	int healthy;                           /* this praefect's latest view */
	int check_in_flight;
	uint64_t last_check_ms;
	uint64_t last_latency_us;              /* of the last finished check (status page) */
	uint64_t last_ok_ms;                   /* last successful check */
	uint64_t last_recorded_ms;             /* last node_status write */
	int recorded_healthy;
	int64_t peer_votes;                    /* other praefects that see it healthy (shared store) */
	int64_t peer_active;                   /* other praefects active on its virtual storage; 0: alone */
	uint64_t routed_reads;                 /* accessor calls sent here (test hook, metrics) */
	uint64_t routed_writes;
	struct hashmap suspects;               /* repository id -> suspect replica here (router/suspect.c) */
	uint64_t scanned_ms;                   /* last check of all its replicas (router/suspect.c) */
	struct node_repl_status repl;          /* metrics/status.c */
};

struct vstorage {
	struct praefect *p;                    /* the praefect it belongs to */
	const struct praefect_vs_cfg *cfg;
	struct node *nodes;
	size_t nr_nodes;
};

/*
 * The model's records (router/repos.c, docs/technical/repository-model.md):
 * one allocation per repository holds the struct, its first replicas and its
 * two paths; storage and primary names are interned (one copy per name per
 * process, never freed one by one); the two indexes are arrays of pointers.
 */
struct replica {
	char *storage;                         /* interned: repos_intern() */
	int64_t generation;                    /* GENERATION_UNKNOWN: no replica */
	int64_t outdated_since_ms;             /* wall clock when first seen behind; 0: in sync (metrics/status.c) */
	uint8_t assigned;
	uint8_t outdated_unsaved;              /* outdated_since_ms differs from what the store holds (or was sent) */
};

struct repo {
	int64_t id;
	struct vstorage *vs;
	char *relative_path;                   /* both in the repository's own allocation */
	char *replica_path;
	char *primary;                         /* interned (repo_set_primary()); may be NULL */
	int64_t generation;
	struct replica *replicas;              /* inline ones at first, a heap array once grown */
	uint32_t nr_replicas, alloc_replicas;
	uint32_t path_hash;                    /* of (vs, relative path): the path index */
	/*
	 * Writes forwarded and not finished, and the write barrier: while a
	 * replica that kept falling behind takes its last catch-up, new writes
	 * wait (coordinator/finalize.c) so that it can rejoin them.
	 */
	int writes_in_flight;
	uint64_t barrier_until_ms;             /* loop time; 0: no barrier */
	uint64_t last_barrier_ms;              /* a rejoin barrier last expired */
	uint64_t last_quorum_wait_ms;          /* a quorum wait last expired */
	const char *rejoining;                 /* its storage (config string) */
	int barrier_for_quorum;                /* the barrier is a quorum wait, not a rejoin */
	int electing;                          /* a primary compare-and-set in flight (shared store) */
	struct replica inline_replicas[];      /* the replicas the record had when it was made */
};

/* The two indexes of the repositories: open addressing, linear probing, no tombstones. */
struct repo_index {
	struct repo **by_id, **by_path;        /* `cap` slots each; NULL: empty */
	size_t cap, nr;
};

/* The periodic tasks (schedule.c holds their table). */
enum praefect_task {
	TASK_HEALTH_CHECK,
	TASK_REPL_HEARTBEAT,
	TASK_REPL_STALE,
	TASK_RECONCILE,
	TASK_METRICS,
	TASK_VERIFY_REPLICAS,
	TASK_RECONCILE_SOON,
	TASK_WRITE_BARRIER,
	TASK_VERIFY_BACKGROUND,
	TASK_REPOSITORIES_CLEANUP,
	TASK_REBALANCE,
	PRAEFECT_NR_TASKS
};

enum schedule_phase {
	SCHEDULE_WITH_NODES,    /* once the node connections exist */
	SCHEDULE_WITH_SERVING,  /* once praefect serves */
};

struct praefect {
	struct praefect_config cfg;
	uv_loop_t *loop;
	struct grpc_server *server;
	struct store *store;
	struct vstorage *vs;
	size_t nr_vs;
	struct repo_index repos;               /* every repository (router/repos.c) */
	struct hashmap interned;               /* storage and primary names of the records (repos_intern()) */
	uint64_t model_epoch;                  /* bumped by every change of a record (repo_changed()) */
	struct {                               /* the last periodic reconciler run (reconciler/reconciler.c) */
		int idle;                      /* it found nothing to queue */
		uint64_t epoch, health;        /* what it saw */
	} reconciled;
	struct hashmap reserved_paths;         /* creations in flight: key -> non-NULL */
	char *name;                            /* praefect_name for node_status */
	struct replicator *replicator;
	struct tx_manager *txm;
	struct upgrade *upgrade;               /* SIGHUP upgrades, GITALY_PID_FILE (lib/upgrade) */
	uv_signal_t sig_term, sig_int;
	/* Methods praefect calls on its nodes, checked against the registry at start-up. */
	struct {
		const struct rpc_method *health_check, *replicate_repository, *remove_repository, *server_info;
		const struct rpc_method *get_object_pool, *delete_object_pool, *remove_all;
		const struct rpc_method *set_replica_info;   /* ours: nodes/replica_info.c */
		const struct rpc_method *ssh_upload_pack_sc, *post_upload_pack_sc;
		const struct rpc_method *ssh_receive_pack, *post_receive_pack; /* coordinator/resume.c */
	} calls;
	struct grpc_server *bc_server;         /* serves RefTransaction on streams nodes open back */
	struct bc_client *bc_client;
	struct bc_server *client_bc;           /* clients' backchannel connections (sidechannels) */
	struct hashmap sidechannels;           /* our sidechannel id -> struct scproxy (coordinator/sidechannel.c) */
	uint64_t next_sidechannel_id;
	int transactions;                      /* nodes are dialed with a backchannel and can vote */
	struct cron cron;                      /* runs every periodic task (schedule.c) */
	struct cron_task tasks[PRAEFECT_NR_TASKS];
	uint64_t health_interval_ms;
	uint64_t health_timeout_ms;
	uint64_t unhealthy_after_ms;
	int votes_in_flight;                   /* store_node_votes() pending (nodes.c) */
	uint64_t votes_at_ms;                  /* when the peer votes last arrived */
	int64_t metric_unavailable, metric_queue_depth;
	struct praefect_metrics *metrics;      /* the Prometheus series (metrics/metrics.h) */
	struct proxy *lingering;               /* calls waiting for secondaries (coordinator.c) */
	const struct rpc_method *fsck;         /* RepositoryService/Fsck, verifying suspect replicas */
	struct hashmap reconcile_marked;       /* decimal repository id -> non-NULL (reconciler_soon()) */
	struct proxy *held_writes;             /* writes waiting for a barrier to end (finalize.c) */
	struct proxy *held_reads;              /* reads waiting for a replica's Fsck (router/route.c) */
	struct proxy *held_elections;          /* calls waiting for a primary's compare-and-set (router/route.c) */
	struct verifier *verifier;             /* [background_verification] (verifier/verifier.c) */
	struct cleaner *cleaner;               /* [repositories_cleanup] (cleaner/cleaner.c) */
	struct rebalancer *rebalancer;         /* assignment moves in progress (reconciler/rebalance.c) */
};

/* --- methods by name (praefect.c) --- */
/*
 * The registry entry of `path` ("/gitaly.RepositoryService/RemoveRepository").
 * For start-up only: dies with a clear message when the registry (proto/)
 * does not know the method, so a misspelt name never reaches a request.
 */
const struct rpc_method *praefect_method(const char *path);
/* Answer `path` on `s` locally, after checking it with praefect_method(). */
void praefect_add_unary(struct grpc_server *s, const char *path, grpc_unary_fn fn, void *data);

/* --- configuration lookups --- */
struct vstorage *praefect_vs(struct praefect *p, const char *name, size_t len);
struct node *vs_node(struct vstorage *vs, const char *storage);

/* --- the repository model (repos.c) --- */
struct repo *repo_by_path(struct praefect *p, const char *vs, size_t vslen, const char *path, size_t plen);
struct repo *repo_by_id(struct praefect *p, int64_t id);
/* Every repository, in no particular order: `for (size_t i = 0; (r = repos_next(p, &i));)`. No removal meanwhile. */
struct repo *repos_next(struct praefect *p, size_t *i);
static inline size_t repos_count(const struct praefect *p) { return p->repos.nr; }
/* Free every repository and the indexes (shutdown). */
void repos_free(struct praefect *p);
/* The process's one copy of the name `s` (storages, primaries): never freed before repos_free(). */
char *repos_intern(struct praefect *p, const char *s);
/* Set (or clear: NULL) the primary of `r`. */
void repo_set_primary(struct repo *r, const char *storage);
/*
 * A record's generations, assignments, primary or health inputs changed
 * outside repos.c: what is derived from the whole model (metrics/metrics.c)
 * is computed again at its next sample. repos.c calls it for its own changes.
 */
static inline void repo_changed(struct praefect *p) { p->model_epoch++; }
/* Folds every node's health: what a walk of the model saw beside p->model_epoch. */
uint64_t praefect_health_signature(const struct praefect *p);
/* Take the store's primary, generations and assignments of a repository (another praefect changed them). */
void repo_refresh(struct repo *r, const struct store_repo *sr);
/*
 * The store's record of (vs, relative path) -- NULL: none -- replaces the
 * model's, unless a write, election or creation of this praefect on it is in
 * flight (docs/technical/multi-praefect.md).
 */
void repo_adopt(struct praefect *p, const char *vs, const char *relative_path, const struct store_repo *sr);
/* Take over a store record (copies it). */
struct repo *repo_insert(struct praefect *p, const struct store_repo *r);
void repo_remove(struct praefect *p, struct repo *r);
struct replica *repo_replica(struct repo *r, const char *storage);
struct replica *repo_replica_add(struct repo *r, const char *storage);
int repo_up_to_date(const struct repo *r, const char *storage);
/* Assigned storages: assignment rows among configured storages, else every configured storage. */
int repo_assigned(const struct repo *r, const char *storage);
/* Load every repository from the store (start-up; runs the loop until done). */
int repos_load(struct praefect *p, struct strbuf *err);
/* 1 when `path` ends like a Rails object pool path "@pools/aa/bb/<64 hex>.git" (hash starting aabb). */
int repos_is_rails_pool(const char *path);
/* "@cluster/repositories/6b/86/1" for id 1 (or the pool form for Rails pool paths). */
void replica_path_for(int64_t id, const char *relative_path, struct strbuf *out);

/* --- the periodic tasks (schedule.c) --- */
void schedule_init(struct praefect *p);
/* Schedule the tasks of `phase` (running those marked to run at once). */
void schedule_start(struct praefect *p, enum schedule_phase phase);
/* One extra run of `task` after its table delay (a pending one stays). */
void schedule_kick(struct praefect *p, enum praefect_task task);
/* The same, `delay_ms` from now (the earlier of two pending runs stays). */
void schedule_kick_in(struct praefect *p, enum praefect_task task, uint64_t delay_ms);
/* Stop every task, the replication workers' included. */
void schedule_stop(struct praefect *p);

/* --- nodes and health (nodes/nodes.c) --- */
/* Build the virtual storages and their nodes from the config (no connections yet). */
void nodes_init(struct praefect *p);
/* Dial every node (each connection is a backchannel the node can vote over). */
int nodes_start(struct praefect *p, struct strbuf *err);
/* Send a health check to every node without one in flight (task health-check). */
void nodes_check_all(struct praefect *p);
void nodes_stop(struct praefect *p);
/* Free the virtual storages and nodes (after nodes_stop() and the loop's end). */
void nodes_free(struct praefect *p);
/* Outgoing metadata for a call to `n`: the given metadata + n's v2 token. */
void node_call_metadata(struct node *n, const struct grpc_metadata *in, struct grpc_metadata *out);
/*
 * One unary call to `n` with its token: `req` (`len` packed bytes), at most
 * `timeout_ms`. `done` runs once, on the loop, with the status and the
 * response message (NULL, 0 unless the call ended OK with one). Returns 0,
 * or -1 when the call could not start; `done` then never runs.
 */
typedef void node_unary_done(void *arg, enum grpc_code code, const char *message, const uint8_t *resp,
			     size_t len);
int node_unary(struct node *n, const char *method, const void *req, size_t len, uint64_t timeout_ms,
	       node_unary_done *done, void *arg);
/*
 * The same for a request that names only a repository: a message of `req`
 * (RepositoryExistsRequest, CalculateChecksumRequest, FsckRequest...) whose
 * `repository` is `n`'s replica at `replica_path`.
 */
int node_unary_repo(struct node *n, const char *method, const ProtobufCMessageDescriptor *req,
		    const char *replica_path, uint64_t timeout_ms, node_unary_done *done, void *arg);

/*
 * Tell `storage`'s node that its replica of `r` is at `generation` now
 * (nodes/replica_info.c): written beside the replica for rebuilding the
 * tracking store (docs/technical/recovery.md). Fire and forget.
 */
void replica_info_send(struct praefect *p, const struct repo *r, const char *storage, int64_t generation);

/* Health changed (nodes.c calls it): wakes replication and the reconciler. */
void praefect_node_health_changed(struct praefect *p, struct node *n);

/* --- suspect replicas (router/suspect.c, docs/technical/praefect-health.md) --- */
/*
 * A read on `n`'s replica of `r` failed as if objects were corrupt or
 * missing: reads avoid it until Fsck on `n` says it is clean; if it is not,
 * it is deleted and replicated again. Every other replica of `r` is checked
 * too, without being avoided meanwhile.
 */
void suspect_mark(struct praefect *p, struct repo *r, struct node *n, const char *why);
/*
 * `n`'s replica of `r` was found corrupt by other means (the background
 * verifier's Fsck; `why` says what it found): reads avoid it at once and it
 * is deleted and rebuilt as a suspect found corrupt; its siblings are
 * checked as for suspect_mark(). Nothing changes for a replica already
 * being verified or repaired here.
 */
void suspect_found_corrupt(struct praefect *p, struct repo *r, struct node *n, const char *why);
/* Reads avoid `n`'s replica of repository `repo_id`. */
int suspect_avoided(const struct node *n, int64_t repo_id);
/*
 * The replicator deleted `n`'s replica of `repo_id` (a delete_replica job
 * completed): a corrupt replica being repaired moves on to its rebuild even
 * when the reconciler re-created it before verify-replicas looked.
 */
void suspect_replica_deleted(struct node *n, int64_t repo_id);
/*
 * How far reads can trust `n`'s replica of `r`: READ_TRUSTED (nothing against
 * it, or its Fsck passed), READ_UNVERIFIED (another replica of `r` is avoided
 * and this one's own Fsck has not ended yet), READ_AVOIDED. A repository none
 * of whose replicas is avoided has only READ_TRUSTED ones.
 */
enum suspect_trust { READ_TRUSTED, READ_UNVERIFIED, READ_AVOIDED };
enum suspect_trust suspect_trust(const struct repo *r, const struct node *n);
/* Does a read's failure (code, status message) look like corrupt or missing objects? */
int suspect_read_error(enum grpc_code code, const char *msg);
/* Move every suspect replica on by one step (task verify-replicas). */
void suspects_verify(struct praefect *p);
/*
 * Route the reads held while the siblings of a corrupt replica are verified
 * (router/route.c) again: those with a verified replica now, or whose hold
 * ran out, go; the others wait on. `all`: every one goes (shutdown).
 */
void route_release_held_reads(struct praefect *p, int all);
/*
 * Start-up, after the repositories: the suspects recorded in the store by a
 * previous run are verified again (0, or -1 with `err` set).
 */
int suspects_load(struct praefect *p, struct strbuf *err);
/* Route again the calls held while repository `id`'s election was stored (0: every one). */
void route_release_held_elections(struct praefect *p, int64_t id);
/* Free `n`'s suspects (nodes_free()). */
void suspects_release(struct node *n);

/* --- the repositories cleaner (cleaner/cleaner.c, docs/technical/praefect-health.md) --- */
struct cleaner;
/* Set up the cleaner (run_interval 0: off, as upstream says in the log). */
void cleaner_init(struct praefect *p);
/* Walk the next storage due and log what is on disk but not tracked (task repositories-cleanup). */
void cleaner_run(struct praefect *p);
void cleaner_free(struct praefect *p);
/*
 * Of the replica paths `paths` on `storage` of `vs`, those no repository
 * record has a replica of there, in order, into `out` (room for `n`);
 * returns how many (router/repos.c).
 */
size_t repos_untracked(struct praefect *p, const struct vstorage *vs, const char *storage, const char *const *paths,
		       size_t n, char **out);

/* --- the background verifier (verifier/verifier.c, docs/technical/praefect-health.md) --- */
struct verifier;
/* Set up the verifier (nothing runs before its task does; disabled: interval 0). */
void verifier_init(struct praefect *p);
/* Lease the replicas due and verify them, each node within its budget (task verify-background). */
void verifier_run(struct praefect *p);
/* Stop starting verifications; those in flight end without recording a result. */
void verifier_stop(struct praefect *p);
/* Free it (after the loop's end). */
void verifier_free(struct praefect *p);

/* --- primary election (election/election.c) --- */
/*
 * The primary for a request that needs one: the stored primary while it is
 * healthy, assigned and up to date, else a random valid one, stored as the
 * new primary. NULL or an invalid node: none is valid (the caller says why).
 */
struct node *elect_primary(struct praefect *p, struct repo *r);
/*
 * Healthy by the cluster's majority (docs/technical/multi-praefect.md): this
 * praefect's live view plus the other praefects' latest ones; with no other
 * praefect (SQLite, or alone on the database) the live view alone.
 */
int node_consensus_healthy(const struct node *n);
/*
 * The kernel said `n` is gone (a call to it was refused or its connection
 * reset before anything was written): unhealthy now, without waiting for a
 * health check; the next successful check makes it healthy again.
 */
void node_mark_dead(struct praefect *p, struct node *n, const char *why);

/* --- the proxy (coordinator/) --- */
void coordinator_register(struct praefect *p);
/*
 * `n` turned unhealthy (nodes.c): calls whose primary already committed stop
 * waiting for their secondaries on `n` (cancelled, then outdated and repaired).
 */
void coordinator_node_unhealthy(struct praefect *p, struct node *n);
/*
 * Write barrier (coordinator/finalize.c). `storage` keeps falling behind
 * repository `r` under a stream of writes: hold new writes to `r` for at
 * most `ms` so that the writes in flight drain and its next catch-up ends at
 * the repository's generation. Returns 1 if a barrier was raised.
 */
int coordinator_raise_barrier(struct praefect *p, struct repo *r, const char *storage, uint64_t ms);
/*
 * A write to `r` lacks its quorum only because the healthy replica on
 * `storage` is still catching up: hold the writes to `r` for at most `ms`
 * (the same barrier) and hurry its catch-up. Returns 1 when the write should
 * wait, 0 when it should be refused now (a wait just ran out without help).
 */
int coordinator_wait_for_quorum(struct praefect *p, struct repo *r, const char *storage, uint64_t ms);
/*
 * A replica of `r` was just replicated onto `storage`: if it belongs to a
 * pool that praefect tracks and that has no up-to-date replica there, the
 * pool is assigned there too and replicated (object-pools.md, "A member
 * moves"). Asynchronous; nothing happens for a pool or a repository without one.
 */
void coordinator_pool_follows(struct praefect *p, struct repo *r, const char *storage);
/* The barrier of `r` is over (the replica caught up, or time ran out): forward what waited. */
void coordinator_lower_barrier(struct praefect *p, struct repo *r);
/* Task write-barrier: release the writes whose barrier ended or expired. */
void coordinator_release_held(struct praefect *p);
/* Shutdown: every barrier drops and what waited is released (or freed, its call gone). */
void coordinator_stop(struct praefect *p);

/* --- replication (replicator/replicator.c) --- */
/* Renew the leases of the jobs being worked on (task replication-heartbeat). */
void replicator_heartbeat(struct praefect *p);
/* Release jobs whose lease ran out and wake the workers (task replication-stale). */
void replicator_release_stale(struct praefect *p);
int replicator_start(struct praefect *p);
void replicator_stop(struct praefect *p);
/* Free the workers (after replicator_stop() and the loop's end). */
void replicator_free(struct praefect *p);
/* A job of kind `change` for replica `target` of `r` (source NULL: none, e.g. deletions). */
void replicator_job_for(struct repl_job *j, const struct repo *r, const char *change, const char *source,
			const char *target, const char *correlation_id);
/*
 * Node `n` turned unhealthy: a ReplicateRepository reading from it is
 * cancelled and retried from another up-to-date replica once `n` has been
 * silent for 2 s (docs/technical/praefect-replication.md).
 */
void replicator_node_unhealthy(struct praefect *p, struct node *n);
/* A job for (vs, target) was queued: wake that worker now. */
void replicator_kick(struct praefect *p, struct vstorage *vs, const char *target);
/*
 * Queue update jobs from `source` to each of `targets` (finalizer);
 * done(status) after all. `force`: verification jobs (a target at the
 * source's generation is compared with it and repaired if it differs).
 */
void replicator_enqueue_jobs(struct praefect *p, struct repo *r, const char *source,
			     const char *const *targets, size_t n, int force, const char *correlation_id,
			     void (*done)(void *arg, int status), void *arg);

/* --- the database listener (listener/listener.c, docs/technical/multi-praefect.md) --- */
/* On a shared store: LISTEN for other praefects' repository changes and apply them to the model. */
void listener_start(struct praefect *p);
void listener_stop(struct praefect *p);

/* --- the reconciler (reconciler/reconciler.c) --- */
/* Queue the repairs the in-memory model calls for (task reconcile). */
void reconciler_run(struct praefect *p);
/* Move assignments towards balanced storages (task rebalance, reconciler/rebalance.c). */
void rebalancer_run(struct praefect *p);
void rebalancer_free(struct praefect *p);
/* Reconcile repository `id` soon (task reconcile-soon): a job for it died or ended behind. */
void reconciler_soon(struct praefect *p, int64_t id);
/* The repositories marked by reconciler_soon() (task reconcile-soon). */
void reconciler_run_marked(struct praefect *p);

/* --- operator numbers logged on change (metrics/metrics.c) --- */
/* Log the numbers that changed since the last run (task metrics). */
void metrics_tick(struct praefect *p);

/* --- RPCs praefect answers itself (intercept.c) --- */
void intercept_register(struct praefect *p);
/* ServerService DiskStatistics and ClockSynced (intercept/server.c). */
void intercept_register_server(struct praefect *p);
/* RepositoryService/RemoveAll on a virtual storage (intercept/remove_all.c). */
void intercept_register_remove_all(struct praefect *p);
/* PraefectInfoService Dataloss and SetAuthoritativeStorage (info.c). */
void info_register(struct praefect *p);

/*
 * The gRPC code for a failed store op that has no code of its own: a store
 * that lost its database (-ENOTCONN, PostgreSQL reconnecting) is
 * UNAVAILABLE, anything else INTERNAL (docs/technical/store.md).
 */
static inline int praefect_store_code(int status)
{
	return status == -ENOTCONN ? GRPC_UNAVAILABLE : GRPC_INTERNAL;
}

#endif
