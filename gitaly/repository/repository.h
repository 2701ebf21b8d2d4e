/*
 * Pieces shared by the RepositoryService files (everything in repository/):
 * the life cycle of one asynchronous RPC, the transactional locked-file
 * writer, the repository creation routine every creator uses, and the
 * handlers each file exports to repository.c for registration.
 */
#ifndef GITALY_REPOSITORY_REPOSITORY_H
#define GITALY_REPOSITORY_REPOSITORY_H

#include <openssl/evp.h>
#include <sys/types.h>
#include "core/gitaly.h"
#include "core/vote.h"
#include "core/call.h"
#include "repository/remote_config.h"

/* --- one asynchronous RPC --- */

/*
 * An RPC whose work outlives the handler (git processes, votes, thread-pool
 * jobs, calls to other nodes) is a struct gitaly_call (core/call.h)
 * embedded in a per-call struct; `release` frees that struct, `cancel` (if
 * set) stops running work when the call closes early.
 *
 * Rules: reposvc_init() makes the work hold the call; the work ends by
 * calling reposvc_finish() exactly once, also when the call was cancelled
 * meanwhile (its completion callbacks see gitaly_call_gone()). The struct is
 * released once the work finished AND the call closed, whichever comes last;
 * so after reposvc_finish() the caller must not touch the op again.
 */
void reposvc_init(struct gitaly_call *op, struct gitaly *g, struct grpc_call *call,
		  void (*release)(struct gitaly_call *op));
void reposvc_finish(struct gitaly_call *op, enum grpc_code code, const char *msg);
void reposvc_finishf(struct gitaly_call *op, enum grpc_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Send `msg` (a protobuf-c message) and finish OK. */
void reposvc_reply(struct gitaly_call *op, const void *msg);

/* --- small helpers --- */

/* Stop a process we own (git_cmd_stop()) and make sure its on_exit can still fire. */
void reposvc_kill(struct git_cmd *cmd);
/* fsync every file and directory below `path` (thread pool only). 0 or -errno. */
int reposvc_fsync_tree(const char *path);
/* fsync `path` and every directory above it up to and including `root`. */
int reposvc_fsync_hierarchy(const char *root, const char *path);
/* git's refname rules as upstream checks them for HEAD targets; 0 or -1 with msg. */
int reposvc_check_refname(const char *name, size_t len, struct strbuf *msg);
/*
 * The names in directory `path` ("." and ".." aside) in byte order, the order
 * of Go's directory walks; free with reposvc_free_names(). 0 or -errno.
 */
int reposvc_list_dir(const char *path, char ***names, size_t *nr);
void reposvc_free_names(char **names, size_t nr);
/* Feed the contents of file `path` (symlinks followed) to `ctx`. 0 or -errno. */
int reposvc_hash_file(EVP_MD_CTX *ctx, const char *path);
/* The lower-case hex of 20 bytes into `out` (41 bytes). */
void reposvc_hex(const uint8_t *in, size_t len, char *out);

/* --- a repository on another node (node_source.c) --- */

/*
 * The address and token of `storage` from the call's gitaly-servers metadata
 * (base64 of {"<storage>":{"address":...,"token":...}}). 0, or -1 with `msg`
 * set ("empty gitaly-servers metadata", "storage name not found"...).
 */
int reposvc_source_server(struct grpc_call *call, const char *storage, char **address, char **token,
			  struct strbuf *msg);
/* The channel target for an upstream-style address (tcp://, unix:, dns:[//auth/]host:port). */
const char *reposvc_channel_target(const char *address);
/*
 * Environment for `git fetch/clone ssh://gitaly/internal.git` that reaches
 * `repo`'s upload-pack at `address` through gitaly-ssh (feature flags and
 * correlation id of `call` passed on). Appends to `env`.
 */
void reposvc_ssh_env(struct gitaly *g, struct grpc_call *call, const Gitaly__Repository *repo, const char *address,
		     const char *token, struct strvec *env);

/* --- locked-file writes with votes (docs/technical/gitaly-node.md, "Votes") --- */

/*
 * Replace `path` with `data`: take `<path>.lock` (O_EXCL), write and fsync
 * it, vote PREPARED on SHA-1(data), rename it over `path`, fsync the
 * directory, vote COMMITTED with the same hash. The lock is always released.
 * Returns 0 when started (`done` fires exactly once, from the loop) or -1
 * with `msg` set (nothing happened, `done` never fires). A cancelled call
 * stops the write before the rename (`done` gets CANCELLED).
 */
typedef void (*reposvc_written_fn)(struct gitaly_call *op, enum grpc_code code, const char *msg);
int reposvc_write_locked(struct gitaly_call *op, const char *path, const void *data, size_t len,
			 mode_t mode, reposvc_written_fn done, struct strbuf *msg);

/* --- creating a repository, shared by every creator (docs/technical/gitaly-repository.md) --- */

struct reposvc_create;
/*
 * Seed the temporary repository at `tmp_path` (for CreateRepository there is
 * nothing to do); end with reposvc_create_seeded(). `tmp_repo` addresses the
 * temporary repository (same storage, relative path under +gitaly/tmp).
 */
typedef void (*reposvc_seed_fn)(struct reposvc_create *rc, const char *tmp_path,
	      const Gitaly__Repository *tmp_repo);
/* The creation ended; `rc` is freed when this returns. */
typedef void (*reposvc_created_fn)(struct reposvc_create *rc, enum grpc_code code, const char *msg);

struct reposvc_create_opts {
	const char *initial_branch;   /* git init --initial-branch (NULL: none) */
	const char *object_format;    /* git init --object-format (NULL: none) */
	int skip_init;                /* seeding creates the directory itself (git clone) */
	reposvc_seed_fn seed;            /* NULL: no seeding */
	reposvc_created_fn done;
	void *data;
};

/*
 * Start creating `repo` for `op`. Returns GRPC_OK when started (`done` fires
 * exactly once, never synchronously) or an error code with `msg` set
 * ("repository exists already", validation errors...). Error messages given
 * to `done` carry no "creating repository" prefix: callers add their own.
 */
enum grpc_code reposvc_create_start(struct gitaly_call *op, const Gitaly__Repository *repo,
				    const struct reposvc_create_opts *opts, struct reposvc_create **out,
				    struct strbuf *msg);
void reposvc_create_seeded(struct reposvc_create *rc, enum grpc_code code, const char *msg);
void *reposvc_create_data(const struct reposvc_create *rc);
struct gitaly_call *reposvc_create_op(const struct reposvc_create *rc);
/* From the op's cancel hook: stop git init if it runs. */
void reposvc_create_cancel(struct reposvc_create *rc);

/* --- custom hooks (custom_hooks.c) --- */

/*
 * The custom_hooks vote (docs/technical/gitaly-node.md, "Votes"): a lexical walk of `dir` feeding each
 * entry's relative path ("." for the root), its Go FileMode (4 bytes, big
 * endian) and, for files, the contents. 0 or -errno.
 */
int reposvc_hooks_vote_hash(const char *dir, uint8_t out[20]);

/*
 * Make `<tmp_dir>/custom_hooks` (created empty if absent: no hooks) the
 * repository's custom_hooks: lock `<repo>/custom_hooks.lock`, vote PREPARED
 * on the new directory, swap it in (the old one goes to
 * `<tmp_dir>/previous_hooks`), vote COMMITTED, unlock. The caller removes
 * `tmp_dir` afterwards. Returns 0 when started (`done` fires exactly once,
 * from the loop) or -1 with `msg` set.
 */
typedef void (*reposvc_hooks_installed_fn)(struct gitaly_call *op, enum grpc_code code, const char *msg);
int reposvc_hooks_install(struct gitaly_call *op, const char *repo_path, const char *tmp_dir,
			  reposvc_hooks_installed_fn done, struct strbuf *msg);

/* --- remotes given by URL: repository/remote_config.h --- */

/* --- handlers (registered by repository.c) --- */

/* Bytes of every file under `path` (a file removed meanwhile counts 0). 0 or -errno. */
int reposvc_dir_size(const char *path, int64_t *total);
/* RepositoryInfo, GetObjectDirectorySize, ObjectFormat, HasLocalBranches, FindMergeBase (info.c). */
void reposvc_register_info(struct gitaly *g, struct grpc_server *s);
/* ObjectsSize (objects_size.c), registered by reposvc_register_info(). */
void reposvc_register_objects_size(struct gitaly *g, struct grpc_server *s);
/* SetCustomHooks and RestoreCustomHooks (set_custom_hooks.c). */
void reposvc_register_set_custom_hooks(struct gitaly *g, struct grpc_server *s);
/* CreateBundle, CreateBundleFromRefList, FetchBundle, CreateRepositoryFromBundle (bundle.c). */
/* BackupRepository, RestoreRepository (backup.c): server-side backups into [backup] go_cloud_url. */
void reposvc_register_backup(struct gitaly *g, struct grpc_server *s);
void reposvc_register_bundle(struct gitaly *g, struct grpc_server *s);

void reposvc_create_repository(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
void reposvc_create_from_url(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
void reposvc_remove_repository(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
void reposvc_calculate_checksum(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
void reposvc_get_snapshot(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
/* RemoveAll (remove_all.c). */
void reposvc_remove_all(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
/* CreateRepositoryFromSnapshot (from_snapshot.c). */
void reposvc_create_from_snapshot(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
void reposvc_get_custom_hooks(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
void reposvc_write_ref(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
void reposvc_replicate_repository(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
void reposvc_fsck(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
/* InternalGitaly/WalkRepos (walk_repos.c), registered with RepositoryService. */
void reposvc_register_walk_repos(struct gitaly *g, struct grpc_server *s);
/* ClusterReplicaService/SetReplicaInfo (replica_info.c, ours). */
void reposvc_register_replica_info(struct gitaly *g, struct grpc_server *s);
/* GetArchive (archive.c). */
void reposvc_get_archive(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
/* SearchFilesByName, SearchFilesByContent (search.c). */
void reposvc_search_files_by_name(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
void reposvc_search_files_by_content(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
/* GetFileAttributes (attributes.c). */
void reposvc_get_file_attributes(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
/* FullPath, SetFullPath (fullpath.c). */
void reposvc_full_path(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
void reposvc_set_full_path(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
/* GetRawChanges (raw_changes.c). */
void reposvc_get_raw_changes(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
/* FetchRemote (fetch_remote.c), FetchSourceBranch (fetch_source_branch.c). */
void reposvc_fetch_remote(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
void reposvc_fetch_source_branch(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
/* UpdateRemoteMirror (remote_mirror.c), registered by gitaly_register_remote() (remote.c). */
void reposvc_register_remote_mirror(struct gitaly *g, struct grpc_server *s);
/* CreateFork (fork.c), ApplyGitattributes (gitattributes.c). */
void reposvc_create_fork(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
void reposvc_apply_gitattributes(struct grpc_call *call, const uint8_t *req, size_t len, void *data);
/* OptimizeRepository, PruneUnreachableObjects, RemoveAll (optimize.c; the work: housekeeping/). */
void reposvc_register_housekeeping(struct gitaly *g, struct grpc_server *s);
/* FindLicense (license.c). */
void reposvc_find_license(struct grpc_call *call, const uint8_t *req, size_t len, void *data);

#endif
