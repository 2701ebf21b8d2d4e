/*
 * The storage node: its run-time context and the helpers every service file
 * uses. One `struct gitaly` exists per process; handlers get it as the `data`
 * pointer they were registered with.
 *
 * Service files (one per service or group of RPCs, in read/, operations/,
 * repository/, hooks/ and transport/) each export one
 * gitaly_register_<service>() that adds their methods to the server.
 * Conventions inside handlers:
 *   - decode with msg_unpack(), which answers INVALID_ARGUMENT itself when the
 *     bytes do not decode;
 *   - resolve repositories with gitaly_locate() and return its code/message
 *     unchanged (validation codes propagate: docs/technical/gitaly-node.md,
 *     "Repositories" and "Errors");
 *   - build git command lines with gitaly_git_spec() only (global and
 *     per-subcommand -c defaults, --end-of-options, safe environment), never
 *     through a shell;
 *   - stream between git and the call with gitaly_pipe (backpressure both ways,
 *     the process killed and reaped when the call is cancelled).
 */
#ifndef GITALY_GITALY_H
#define GITALY_GITALY_H

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>
#include <uv.h>

#include "core/config.h"
#include "core/call.h"
#include "core/cleanup.h"
#include "core/methods.h"
#include "base/strbuf.h"
#include "base/strvec.h"
#include "grpc/server.h"
#include "git/cmd.h"
#include "shared.pb-c.h"

struct catfile_cache;
struct bc_server;
struct gitaly_limits;
struct upgrade;
struct cleanup;
struct housekeeping;
struct cron;
struct pack_cache;

struct gitaly {
	struct gitaly_config cfg;
	uv_loop_t *loop;
	struct grpc_server *server;    /* every listener, the internal socket included */
	char *runtime_dir;             /* <runtime_dir>/gitaly-<pid> */
	char *internal_socket;         /* <runtime dir>/sock.d/intern */
	char *hooks_dir;               /* core.hooksPath for git: symlinks to gitaly-hooks */
	char *git_path;                /* the git executable */
	char *git_version;             /* "2.39.5" */
	struct cleanup *cleanup;       /* writers per repository, stale locks (core/cleanup.h) */
	struct housekeeping *housekeeping; /* optimizations, daily maintenance (housekeeping/) */
	struct cron *cron;             /* the node's periodic tasks (lib/loop/cron.h) */
	struct strvec base_env;        /* allow-listed environment for children */
	struct catfile_cache *catfile; /* long-lived cat-file processes (lib/git/catfile.h) */
	struct pack_cache *pack_cache; /* [pack_objects_cache], NULL when disabled (hooks/pack_cache.h) */
	struct bc_server *bc;          /* backchannel sessions of praefects (lib/backchannel) */
	char *version;                 /* our server version */
	struct gitaly_limits *limits;  /* [[concurrency]] limiters (core/methods.h) */
	struct gitaly_metrics *metrics; /* the Prometheus series and /metrics (core/metrics.h) */
	struct upgrade *upgrade;       /* SIGHUP upgrades, GITALY_PID_FILE (lib/upgrade) */
	uv_signal_t sig_term, sig_int;
};

/* --- requests and replies (core/msg.c) --- */

/* Decode `buf` as `desc`; on failure finish the call with INVALID_ARGUMENT and return NULL. */
void *msg_unpack(struct grpc_call *call, const ProtobufCMessageDescriptor *desc,
		 const uint8_t *buf, size_t len);
void msg_free(void *msg);
/* Pack and send one message (0, or -EPIPE when the call is gone). */
int msg_send(struct grpc_call *call, const void *msg);
/* Pack, send and finish OK: the usual end of a unary handler. */
int msg_reply(struct grpc_call *call, const void *msg);
/* Send `len` bytes as a stream of messages whose field `field` holds ≤128 KiB each. */
int msg_send_chunked(struct grpc_call *call, uint32_t field, const void *data, size_t len);
#define MSG_CHUNK (128 * 1024)

/* --- repositories (docs/technical/gitaly-node.md, "Repositories") --- */

#define LOCATE_NO_EXIST_CHECK 0x1   /* creation RPCs: the repository need not exist yet */

/*
 * Validate `repo` and resolve its absolute path into `path`. Returns GRPC_OK
 * or the code upstream uses, with `msg` set ("repository not set",
 * "storage name not found", "relative path escapes root directory",
 * "repository not found", "repository not valid: \"HEAD\" does not exist"...).
 * Symlinks that lead out of the storage are refused as escapes.
 */
enum grpc_code gitaly_locate(struct gitaly *g, const Gitaly__Repository *repo, unsigned flags,
			     struct strbuf *path, struct strbuf *msg);
/* Resolve a storage by name (INVALID_ARGUMENT "storage name not found" when unknown). */
enum grpc_code gitaly_storage(struct gitaly *g, const char *name, const struct gitaly_storage **out,
			      struct strbuf *msg);
/* <storage>/+gitaly/tmp, created on demand. */
int gitaly_tmp_dir(struct gitaly *g, const struct gitaly_storage *s, struct strbuf *out);

/*
 * Move every file below the object directory `src` into `dst`, in
 * lib/git/objfiles.h's order (no reader sees a pack index before what it
 * indexes); objects `dst` has already stay. `src` is removed. 0, or -1
 * with `err` set.
 */
int gitaly_migrate_objects(const char *src, const char *dst, struct strbuf *err);

/* Revision validation (docs/technical/gitaly-node.md, "Revisions"): 0, or -1 with msg set. */
int gitaly_check_revision(const char *rev, size_t len, struct strbuf *msg);

/* --- git command lines (docs/technical/gitaly-node.md, "Git command lines") --- */

/* Hooks git may run (GITALY_HOOKS_PAYLOAD requested_hooks bits). */
#define HOOK_REFERENCE_TRANSACTION 1
#define HOOK_UPDATE 2
#define HOOK_PRE_RECEIVE 4
#define HOOK_POST_RECEIVE 8
#define HOOK_RECEIVE_PACK 15
#define HOOK_PACK_OBJECTS 16

struct gitaly_user_details {
	const char *userid, *username, *protocol, *remote_ip;
};

struct git_call {
	const char *git_dir;               /* --git-dir (NULL: none, e.g. init/clone) */
	const Gitaly__Repository *repo;    /* object directory env, hooks payload */
	const char *subcmd;
	const char *const *flags;          /* options, before --end-of-options */
	const char *const *args;           /* positional, after --end-of-options */
	const char *const *paths;          /* after "--" */
	const char *const *config;         /* per-call "key=value" (validated) */
	size_t nr_config;
	const char *const *env;            /* extra "K=V" for the child */
	const char *git_protocol;          /* request git_protocol: only "version=1/2" honoured */
	unsigned hooks;                    /* requested hooks; 0 = hooks disabled */
	const struct gitaly_user_details *user;
	struct grpc_call *rpc;             /* for transaction and feature-flag metadata */
	const char *cwd;
};

/*
 * Build argv and env for `c`. Returns 0, or -1 with `msg` set when a per-call
 * config entry is invalid (the caller answers INVALID_ARGUMENT).
 */
int gitaly_git_spec(struct gitaly *g, const struct git_call *c, struct strvec *argv,
		    struct strvec *env, struct strbuf *msg);

/* Spawn `c`: gitaly_git_spec() + git_cmd_spawn(). */
int gitaly_git_spawn(struct gitaly *g, const struct git_call *c, int pipe_stdin, int pipe_stdout,
		     const struct git_cmd_ops *ops, void *user, struct git_cmd **out, struct strbuf *msg);

/*
 * Run `c` to completion capturing stdout (git_cmd_capture(): `done` always
 * fires, a failed start included). `*cmd`, when `cmd` is not NULL, gets the
 * process, so that a cancelled RPC can git_cmd_stop() it. Returns 0, or
 * -EINVAL with `msg` set when the command line is refused (then `done`
 * never fires and `*cmd` is NULL).
 */
int gitaly_git_capture(struct gitaly *g, const struct git_call *c, const void *stdin_data,
		       size_t stdin_len, size_t max_out, git_capture_fn done, void *arg, struct git_cmd **cmd,
		       struct strbuf *msg);

/* "exit status 1" / "signal: killed": how upstream words the end of a failed command. */
void gitaly_describe_status(struct strbuf *sb, int status);

/*
 * Protobuf-JSON of a Repository (lowerCamelCase keys, empty fields omitted;
 * NULL gives {}), as hook and gitaly-ssh payloads carry it. A new reference.
 */
struct json_t *gitaly_repository_json(const Gitaly__Repository *r);

/* --- streaming between a call and a git process --- */

struct gitaly_pipe;

struct gitaly_pipe_opts {
	uint32_t stdin_field;      /* request field carrying stdin bytes (0: no stdin) */
	int stdin_lines;           /* stdin_field is repeated: every occurrence, each plus "\n" */
	uint32_t stdout_field;     /* response field for stdout chunks (0: discard) */
	uint32_t stderr_field;     /* response field for stderr chunks (0: capture only) */
	const void *prefix;        /* sent as stdout before git's output (e.g. info/refs header) */
	size_t prefix_len;
	/*
	 * git exited (status as git_cmd on_exit) and every byte of its output was
	 * queued on the call. The callback finishes the call (it may send a last
	 * message first). `stderr` holds captured stderr when stderr_field is 0.
	 * Not called when the call was cancelled first.
	 */
	void (*on_exit)(struct gitaly_pipe *p, struct grpc_call *call, int status,
			const struct strbuf *stderr_text);
	void *data;
	/* Optional: sees each stdin chunk before git does (upload-pack's negotiation watch). */
	void (*on_stdin)(struct gitaly_pipe *p, const uint8_t *data, size_t len);
	/*
	 * git may write refs (receive-pack): it enters gc->git_dir as a writer
	 * (core/cleanup.h) and starts once stale locks are gone; the call's
	 * messages wait meanwhile.
	 */
	int writer;
};

/*
 * Spawn `gc` and connect it to `call`: further request messages feed git's
 * stdin (field opts->stdin_field), half-close closes it, stdout/stderr become
 * response messages, with backpressure both ways; cancellation or a deadline
 * kills and reaps git. Returns GRPC_OK once started (the pipe then owns the
 * call's callbacks and frees itself; grpc_call_user(call) is then the pipe
 * until the call closes), or an error code with `msg` set (nothing was
 * started; the caller finishes the call).
 */
enum grpc_code gitaly_pipe_run(struct gitaly *g, struct grpc_call *call, const struct git_call *gc,
			       const struct gitaly_pipe_opts *opts, struct strbuf *msg);
void *gitaly_pipe_data(const struct gitaly_pipe *p);
/* Feed bytes to git's stdin from the handler (e.g. stdin in the first message). */
int gitaly_pipe_write(struct gitaly_pipe *p, const void *data, size_t len);
/* Stop git (git_cmd_stop(), e.g. a timeout); on_exit still fires, with the signal status. */
void gitaly_pipe_kill(struct gitaly_pipe *p);

/* --- service registration --- */

void gitaly_register_server(struct gitaly *g, struct grpc_server *s);
void gitaly_register_repository(struct gitaly *g, struct grpc_server *s);
void gitaly_register_ssh(struct gitaly *g, struct grpc_server *s);
void gitaly_register_smarthttp(struct gitaly *g, struct grpc_server *s);
void gitaly_register_ref(struct gitaly *g, struct grpc_server *s);
void gitaly_register_commit(struct gitaly *g, struct grpc_server *s);
void gitaly_register_blob(struct gitaly *g, struct grpc_server *s);
/* ListBlobs, ListAllBlobs (read/blob_list.c) and the LFS pointer RPCs (read/lfs.c). */
void gitaly_register_blob_list(struct gitaly *g, struct grpc_server *s);
void gitaly_register_lfs(struct gitaly *g, struct grpc_server *s);
/* Ref name listings: ...NamesContainingCommit, FindRefsByOID (read/ref_contains.c). */
void gitaly_register_ref_contains(struct gitaly *g, struct grpc_server *s);
/* GetTagMessages (read/tag_messages.c). */
void gitaly_register_tag_messages(struct gitaly *g, struct grpc_server *s);
/* GetTagSignatures (read/tag_signatures.c). */
void gitaly_register_tag_signatures(struct gitaly *g, struct grpc_server *s);
/* FindAllRemoteBranches (read/ref_remote.c). */
void gitaly_register_ref_remote(struct gitaly *g, struct grpc_server *s);
/* DeleteRefs (repository/delete_refs.c). */
void gitaly_register_delete_refs(struct gitaly *g, struct grpc_server *s);
/* UpdateReferences (repository/update_references.c). */
void gitaly_register_update_references(struct gitaly *g, struct grpc_server *s);
void gitaly_register_diff(struct gitaly *g, struct grpc_server *s);
void gitaly_register_operations(struct gitaly *g, struct grpc_server *s);
void gitaly_register_hook(struct gitaly *g, struct grpc_server *s);
/* HookService/ProcReceiveHook: hooks/proc_receive.c. */
void gitaly_register_proc_receive(struct gitaly *g, struct grpc_server *s);
void gitaly_register_objectpool(struct gitaly *g, struct grpc_server *s);
void gitaly_register_bfg(struct gitaly *g, struct grpc_server *s);
/* RemoteService (repository/remote.c, repository/remote_mirror.c). */
void gitaly_register_remote(struct gitaly *g, struct grpc_server *s);
void gitaly_register_analysis(struct gitaly *g, struct grpc_server *s);

#endif
