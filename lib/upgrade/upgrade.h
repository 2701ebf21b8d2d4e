/*
 * Zero-downtime upgrades of a daemon (gitaly, praefect): on SIGHUP the
 * running process starts the binary found on disk again, hands it its
 * listening sockets, and steps aside once the new process says it is ready.
 *
 * The protocol between the old process (P1) and the new one (P2):
 *
 *  1. P1 gets SIGHUP while GITALY_UPGRADES_ENABLED is true. It starts P2
 *     with the same executable path and arguments. P2 inherits the
 *     listening sockets shared with upgrade_listen() as plain file
 *     descriptors, described by GITALY_UPGRADE_FDS ("<fd>:<len>:<address>"
 *     entries separated by ','), and the write end of a pipe named by
 *     GITALY_UPGRADE_READY_FD. Both variables are private to this module
 *     and removed from P2's environment as soon as it reads them.
 *  2. P2 calls upgrade_listen() for each configured address: an inherited
 *     socket for the same address is taken over, never bound again (a Unix
 *     socket file is neither removed nor re-created, so clients never see
 *     ECONNREFUSED or ENOENT). Sockets nobody claims are closed.
 *  3. P2 calls upgrade_ready(): it writes its PID to GITALY_PID_FILE, then
 *     writes one byte to the readiness pipe.
 *  4. P1 sees the byte and calls the daemon's on_handover callback, which
 *     stops accepting, lets in-flight calls finish for the grace period and
 *     exits. Connections queued on the shared sockets are accepted by P2.
 *
 * If P2 exits, closes the pipe, or is not ready within the upgrade timeout,
 * P1 logs why, kills what is left of P2, rewrites the PID file with its own
 * PID and keeps serving; a later SIGHUP tries again. Only one upgrade runs at
 * a time: SIGHUPs during an attempt or after a handover are logged and
 * ignored. Without GITALY_UPGRADES_ENABLED a SIGHUP is logged and ignored.
 *
 * All of this runs on the daemon's uv loop. The module's handles are unref'd,
 * so they never keep a loop alive that has nothing else to do.
 */
#ifndef UPGRADE_UPGRADE_H
#define UPGRADE_UPGRADE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct grpc_server;
struct upgrade;

/* Environment: set by gitaly-wrapper, read by the daemons. */
#define UPGRADE_ENV_ENABLED "GITALY_UPGRADES_ENABLED"
#define UPGRADE_ENV_PID_FILE "GITALY_PID_FILE"

/* Default time a new process gets to become ready; tableflip's default. */
#define UPGRADE_DEFAULT_TIMEOUT_MS 60000

/*
 * Read the upgrade environment and what a parent handed over. Call it early
 * in start-up, on the loop the daemon will serve on, and before the daemon
 * starts long-lived child processes (inherited descriptors are made
 * close-on-exec here). Never fails: malformed inherited state is logged and
 * ignored, and the process then binds its addresses itself.
 */
struct upgrade *upgrade_new(uv_loop_t *loop);

/*
 * Kill a new process that is not ready yet, close the module's handles and
 * free it. Unix socket files this process served on are removed here, unless
 * a successor took them over. Call after the daemon's loop has returned.
 */
void upgrade_free(struct upgrade *u);

/*
 * Listen on `addr` (as grpc_server_listen()), taking over the socket a
 * parent passed for the same address when there is one, and remember it so
 * a later upgrade passes it on. Unix sockets are bound here rather than by
 * libuv, which would remove the file when the old process stops listening. Addresses not listened to through this
 * function (gitaly's per-process internal socket) are never handed over.
 * Returns 0 or a negative errno; `bound` as grpc_server_listen().
 */
int upgrade_listen(struct upgrade *u, struct grpc_server *s, const char *addr, char *bound, size_t boundsz);

/*
 * The daemon is serving: close inherited sockets nobody claimed, write
 * GITALY_PID_FILE (when set), tell the parent (if any) that it may step
 * aside, and start answering SIGHUP. `on_handover` runs in this process
 * once a successor started by a later SIGHUP is ready: the daemon must then
 * stop accepting, drain and exit (grpc_server_shutdown() does all three).
 * Returns 0, or a negative errno when the parent could not be told (the
 * process serves anyway; the parent will time the upgrade out).
 */
int upgrade_ready(struct upgrade *u, void (*on_handover)(void *arg), void *arg);

/* 1 when the process was started by an upgrade (it inherited a readiness pipe). */
int upgrade_inherited(const struct upgrade *u);

/* Change the upgrade timeout (default UPGRADE_DEFAULT_TIMEOUT_MS). */
void upgrade_set_timeout(struct upgrade *u, uint64_t ms);

/*
 * Start an upgrade now, as SIGHUP does. Returns 0 when a new process was
 * started, -EPERM when upgrades are disabled, -EBUSY during another attempt
 * or after a handover, -EAGAIN before upgrade_ready(), or the error of
 * starting the process.
 */
int upgrade_start(struct upgrade *u);

/*
 * Write `pid` to `path` atomically (a temporary file renamed over it), as a
 * bare decimal number without a newline, as upstream does.
 */
int upgrade_write_pid_file(const char *path, long pid);

#endif
