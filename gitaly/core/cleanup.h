/*
 * What interrupted writes leave in a storage, and when it is removed
 * (docs/technical/gitaly-node.md, "Interrupted writes").
 *
 * A git we stop gets SIGTERM and removes its own locks (lib/git/cmd.h). What
 * remains comes from processes that died harder: gitaly or git SIGKILLed,
 * the machine lost. Leftovers, per repository:
 *   - lock files: `*.lock` below `refs/`, `HEAD.lock`, `config.lock`,
 *     `packed-refs.lock`, `packed-refs.new`, `shallow.lock`,
 *     `info/attributes.lock`, `custom_hooks.lock`: they block every later
 *     update of what they lock ("cannot lock ref ... File exists");
 *   - quarantine directories `objects/tmp_objdir-*` (git >= 2.35) and
 *     `objects/incoming-*` (older git), from receive-pack;
 *   - temporary packs `objects/pack/tmp_*` and `objects/pack/.tmp-*`
 *     (fetch, index-pack) and, at start-up only, loose `objects/xx/tmp_obj_*`;
 * and per storage, whatever is in `+gitaly/tmp` (User* quarantines,
 * repositories being created or removed, custom hooks being swapped).
 *
 * Writers. Every command of ours that may take a lock in a repository
 * (receive-pack, update-ref, the replication fetch, our own locked-file
 * writes) enters the repository first with cleanup_writer_enter() and leaves
 * once its processes are gone and its locks released. The first writer to
 * enter a repository in which no other writer of ours runs makes a pass over
 * it in the thread pool first, removing leftovers older than
 * CLEANUP_MIN_AGE_S (a belt and braces against a process that is not ours);
 * every writer that enters meanwhile waits for that pass too, so no pass
 * ever runs while a writer of ours may hold a lock there.
 *
 * Upgrades. While the previous gitaly of a graceful upgrade may still run
 * (it is this process's parent until it exits), its writers may hold locks
 * that our count does not know about: passes then only remove what is older
 * than graceful_restart_timeout, and the start-up pass waits until that
 * process has exited.
 *
 * Start-up. gitaly_cleanup_start() queues one pass over every storage in
 * the thread pool, concurrent with serving: it removes leftovers created
 * before this process started (nothing of ours could hold them), walking at
 * most CLEANUP_MAX_DEPTH directories deep to find repositories.
 */
#ifndef GITALY_CORE_CLEANUP_H
#define GITALY_CORE_CLEANUP_H

struct gitaly;
struct git_cmd;
struct cleanup_writer;

#define CLEANUP_MIN_AGE_S 5
#define CLEANUP_MAX_DEPTH 8

/*
 * Set up the writer registry (g->cleanup) and queue the start-up pass.
 * `upgraded`: this process was started by a graceful upgrade (its parent
 * is the previous gitaly). Call once, before serving.
 */
void gitaly_cleanup_start(struct gitaly *g, int upgraded);
/* After the loop stopped (no writer left, no pass running): free the registry. */
void gitaly_cleanup_free(struct gitaly *g);

/*
 * Enter `repo_path` (an absolute repository path as gitaly_locate() gives
 * it; it need not exist) as a writer. `ready(arg)` fires exactly once, from
 * the loop and never synchronously, when the writer may start: after the
 * pass over the repository when one was needed. Until then the writer must
 * not touch the repository; it must not leave before `ready` either.
 */
struct cleanup_writer *cleanup_writer_enter(struct gitaly *g, const char *repo_path,
					    void (*ready)(void *arg), void *arg);
/* The writer is done: its processes exited and its locks are released. NULL is ignored. */
void cleanup_writer_leave(struct cleanup_writer *w);
/* Leave when `cmd` has been reaped (git_cmd_on_reaped(): also after a detach). */
void cleanup_writer_leave_on_reap(struct cleanup_writer *w, struct git_cmd *cmd);

#endif
