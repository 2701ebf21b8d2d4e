/*
 * git_cmd: a child process (usually git) on the uv loop, with its standard
 * streams as pipes that carry backpressure both ways.
 *
 * Lifecycle: git_cmd_spawn() starts the process; on_stdout/on_stderr fire as
 * output arrives; on_exit fires exactly once, after the process has exited AND
 * its stdout and stderr pipes reached EOF (so no output is lost), with the exit
 * code, or -signal when a signal killed it. The cmd frees itself after
 * on_exit returns.
 *
 * The child is the leader of a new process group, so a signal reaches every
 * helper git started (hooks, index-pack, ...).
 *
 * Stopping: git_cmd_stop() is how a command we no longer want ends: SIGTERM
 * to the group, EOF on its stdin at once (queued bytes are dropped), and
 * SIGKILL to the group only if it has not exited after the grace period
 * (GIT_CMD_STOP_GRACE_MS, or the spec's stop_grace_ms). git removes its lock
 * files, temporary files and quarantine directories on SIGTERM before it
 * dies (its tempfile and tmp-objdir code); on SIGKILL they stay behind and
 * block every later update of those refs. So nothing here SIGKILLs a git
 * first: cancelled calls, deadlines, output caps all go through
 * git_cmd_stop(). git_cmd_kill() sends one signal of the caller's choice
 * to the group; on_exit reports whatever ended the process.
 * git_cmd_detach() is for owners that go away first (a cancelled RPC): it
 * drops every callback and stops the command as git_cmd_stop() does; the
 * cmd reaps the process and frees itself in the background. No zombies,
 * no leaked descriptors.
 *
 * git_cmd_on_reaped() is the one callback a detach keeps: bookkeeping that
 * must know when the process is really gone (gitaly counts the writers
 * running in each repository) even after its owner left.
 *
 * Backpressure: git_cmd_write_stdin() copies and queues; when
 * git_cmd_stdin_queued() passes GIT_CMD_STDIN_HIGH the owner should stop
 * feeding (e.g. pause its gRPC call) until on_stdin_drained. Stdout reading
 * is paused with git_cmd_pause_stdout() while the consumer is full.
 *
 * stderr: when on_stderr is NULL it is captured (up to `stderr_cap` bytes,
 * default 64 KiB; the rest is discarded) and available via git_cmd_stderr()
 * inside on_exit.
 */
#ifndef GIT_CMD_H
#define GIT_CMD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "base/strbuf.h"

#define GIT_CMD_STDIN_HIGH (1024 * 1024)
#define GIT_CMD_STDIN_LOW (256 * 1024)
/* SIGTERM to SIGKILL in git_cmd_stop(): git needs milliseconds, a hook may need a few seconds. */
#define GIT_CMD_STOP_GRACE_MS 10000

struct git_cmd;

struct git_cmd_ops {
	void (*on_stdout)(struct git_cmd *cmd, const char *buf, size_t len);
	void (*on_stderr)(struct git_cmd *cmd, const char *buf, size_t len);
	void (*on_stdin_drained)(struct git_cmd *cmd);
	/* exit code >= 0, or -signal number; -errno-like values are never used here */
	void (*on_exit)(struct git_cmd *cmd, int status);
};

struct git_cmd_spec {
	const char *const *argv;   /* argv[0]: the program (absolute or looked up in PATH) */
	const char *const *env;    /* the complete environment; NULL inherits ours */
	const char *cwd;
	int pipe_stdin;            /* else stdin is /dev/null */
	int pipe_stdout;           /* else stdout is /dev/null */
	size_t stderr_cap;         /* 0: 64 KiB */
	uint64_t stop_grace_ms;    /* git_cmd_stop()'s grace; 0: GIT_CMD_STOP_GRACE_MS */
};

/* 0 or a negative uv error (then no callback fires). */
int git_cmd_spawn(uv_loop_t *loop, const struct git_cmd_spec *spec, const struct git_cmd_ops *ops,
		  void *user, struct git_cmd **out);

void *git_cmd_user(const struct git_cmd *cmd);
int git_cmd_pid(const struct git_cmd *cmd);
const struct strbuf *git_cmd_stderr(const struct git_cmd *cmd);

/* Queue bytes for the child's stdin (copied). -EPIPE after close or exit. */
int git_cmd_write_stdin(struct git_cmd *cmd, const void *buf, size_t len);
size_t git_cmd_stdin_queued(const struct git_cmd *cmd);
/* EOF for the child once queued bytes are written. */
void git_cmd_close_stdin(struct git_cmd *cmd);

void git_cmd_pause_stdout(struct git_cmd *cmd);
void git_cmd_resume_stdout(struct git_cmd *cmd);

/* Send `sig` to the process group (nothing once the process exited). */
void git_cmd_kill(struct git_cmd *cmd, int sig);
/*
 * Stop the command (see above): SIGTERM, stdin closed, SIGKILL after the
 * grace period. on_exit still fires, with the status the process ended with
 * (-SIGTERM, or whatever git's handler re-raised or exited with). Repeated
 * calls do nothing more; after on_exit, nothing at all.
 */
void git_cmd_stop(struct git_cmd *cmd);
/* Drop every callback (but on_reaped) and stop the command in the background. */
void git_cmd_detach(struct git_cmd *cmd);
/*
 * `fn(arg, status)` runs once when the process has exited and its output
 * pipes reached EOF: right after on_exit, or in the background after a
 * detach. One per cmd (a second call replaces the first); set it right
 * after the spawn.
 */
void git_cmd_on_reaped(struct git_cmd *cmd, void (*fn)(void *arg, int status), void *arg);

/* Processes spawned and not yet reaped (tests use it to check for leaks). */
size_t git_cmd_live_count(void);

/*
 * Run to completion, feeding `stdin_data` and collecting stdout (at most
 * `max_stdout` bytes: more kills the process and reports status -E2BIG).
 * `done` gets the exit status (as on_exit, or a negative errno when the
 * spawn itself failed: then it fires from the loop, never synchronously).
 * `done` always fires: to abandon a capture, git_cmd_stop() it (never
 * detach) and ignore the result.
 */
typedef void (*git_capture_fn)(void *arg, int status, struct strbuf *out, struct strbuf *err);
int git_cmd_capture(uv_loop_t *loop, const struct git_cmd_spec *spec, const void *stdin_data,
		    size_t stdin_len, size_t max_stdout, git_capture_fn done, void *arg,
		    struct git_cmd **out);

#endif
