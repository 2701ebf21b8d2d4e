/*
 * Hook logic shared by HookService (git runs gitaly-hooks, which calls us
 * back on the internal socket) and OperationService (which runs the same
 * logic in-process around its own reference updates); see docs/technical/hooks.md.
 *
 * What a hook does depends on the node's role in the transaction described by
 * the GITALY_HOOKS_PAYLOAD it carries: the primary (or a node without a
 * transaction) asks GitLab ("/allowed", "/pre_receive", "/post_receive") and
 * runs custom hooks; every node then casts a synchronisation vote.
 *
 * A node without "[gitlab] url" skips every GitLab call and the checks that
 * only matter to GitLab (user details, gl_repository, protocol), so that a
 * stand-alone node accepts pushes; custom hooks still run.
 *
 * Everything here is asynchronous and runs on the node's loop: HTTP through
 * libcurl's multi interface driven by uv (gitlab.c), custom hooks as
 * child processes. A run reports exactly once through its `done` callback,
 * never from inside hook_run_start(), unless it was cancelled first.
 */
#ifndef GITALY_HOOKS_H
#define GITALY_HOOKS_H

#include <stdint.h>
#include <time.h>
#include "core/gitaly.h"
#include "core/vote.h"

/* --- GITALY_HOOKS_PAYLOAD (its transaction: lib/txid/txid.h) --- */

struct hook_payload {
	unsigned requested_hooks;          /* 0 in the JSON reads as "all hooks" */
	char *object_format;               /* "sha1" (default) or "sha256" */
	char *runtime_dir, *internal_socket, *internal_socket_token;
	int has_tx;                        /* "transaction" was an object */
	struct txid tx;                    /* lib/txid */
	int has_user;                      /* "user_details" was an object */
	char *username, *userid, *protocol, *remote_ip;
	Gitaly__Repository *repo;          /* never NULL after a successful parse */
	uint64_t transaction_id;           /* "transaction_id": the storage transaction, 0 when none */
};

#define HOOK_PAYLOAD_ENV "GITALY_HOOKS_PAYLOAD"
#define HOOK_ALL_HOOKS 31

/*
 * Decode the base64 JSON payload. 0, or -1 with `err` set (the payload is
 * left released). The embedded repository is protobuf JSON: lowerCamelCase
 * and original field names are both accepted.
 */
int hook_payload_parse(const char *b64, size_t len, struct hook_payload *p, struct strbuf *err);
/* Find GITALY_HOOKS_PAYLOAD (first occurrence) in `env` and parse it. */
int hook_payload_from_env(const char *const *env, size_t nr, struct hook_payload *p,
			  struct strbuf *err);
void hook_payload_release(struct hook_payload *p);
/* The primary runs GitLab calls and custom hooks; so does a node without a transaction. */
int hook_payload_is_primary(const struct hook_payload *p);
/* Object id length of the payload's object format: 40 or 64. */
size_t hook_payload_hexlen(const struct hook_payload *p);
/* The value of `key` in a KEY=VALUE list: the first occurrence, or the last when `last`. */
const char *hook_env_lookup(const char *const *env, size_t nr, const char *key, int last);

/* --- pre-receive, update and post-receive --- */

/* Values match gitaly.CustomHookError.HookType. */
enum hook_kind {
	HOOK_KIND_PRE_RECEIVE = 1,
	HOOK_KIND_UPDATE = 2,
	HOOK_KIND_POST_RECEIVE = 3,
};

enum hook_fail {
	HOOK_FAIL_NONE = 0,
	HOOK_FAIL_CUSTOM,       /* a custom hook exited non-zero */
	HOOK_FAIL_NOT_ALLOWED,  /* GitLab refused the change, or could not be asked */
	HOOK_FAIL_OTHER,        /* anything else (bad input, GitLab errors, votes) */
};

struct hook_result {
	enum hook_fail fail;
	enum grpc_code code;      /* OTHER: the code upstream would give (usually INTERNAL) */
	int exit_code;            /* CUSTOM: the hook's exit status, -1 when a signal killed it */
	struct strbuf msg;        /* the error as upstream words it, e.g. "GitLab: denied" */
	struct strbuf api_msg;    /* NOT_ALLOWED: GitLab's own message */
	const char *user_id;      /* NOT_ALLOWED: from the payload (valid during `done`) */
	const char *protocol;
};

struct hook_run;

struct hook_run_opts {
	enum hook_kind kind;
	/* The repository the hook is for: the request's (HookService) or the quarantined one. */
	const Gitaly__Repository *repo;
	/* The hook's environment; must contain GITALY_HOOKS_PAYLOAD. */
	const char *const *env;
	size_t nr_env;
	const char *const *push_options;
	size_t nr_push_options;
	/* pre-receive and post-receive: the "<old> <new> <ref>\n" lines */
	const char *changes;
	size_t changes_len;
	/* update: its three arguments */
	const char *ref, *old_value, *new_value;
	/*
	 * In-process runs vote in the transaction of the RPC they serve; runs
	 * for HookService (tx_call NULL) vote in the payload's transaction.
	 */
	struct grpc_call *tx_call;
	/* Output of custom hooks and GitLab messages; fd is 1 (stdout) or 2 (stderr). */
	void (*on_output)(void *arg, int fd, const char *buf, size_t len);
	void (*done)(void *arg, const struct hook_result *res);
	void *arg;
};

/*
 * Start a hook run. The strings and arrays in `o` are copied; `o->repo` must
 * stay valid until `done` fires or the run is cancelled.
 */
struct hook_run *hook_run_start(struct gitaly *g, const struct hook_run_opts *o);
/* Stop now: kill custom hooks, abort HTTP requests; `done` never fires. */
void hook_run_cancel(struct hook_run *r);
/*
 * Backpressure for on_output: stop reading custom hooks' stdout until
 * resumed (their stderr is small by nature and keeps flowing).
 */
void hook_run_pause_output(struct hook_run *r);
void hook_run_resume_output(struct hook_run *r);

/*
 * The hooks of `requested` (HOOK_* bits, core/gitaly.h) that a git command
 * run on the repository at `repo_dir` has work for, so that git is not made
 * to start a gitaly-hooks process that would only exit 0 (docs/technical/hooks.md,
 * "Hooks with nothing to do"). In a transaction every hook stays: each node
 * casts the same votes in the same order, synchronisation votes included.
 * Without one, reference-transaction has nothing to vote on, and pre-receive,
 * update and post-receive run only for GitLab or for custom hooks that exist.
 * Other bits (pack-objects) pass through.
 */
unsigned hook_mask_needed(struct gitaly *g, unsigned requested, int has_tx, const char *repo_dir);

/* --- reference-transaction (docs/technical/hooks.md, "reference-transaction") --- */

enum hook_reftx_state { HOOK_REFTX_PREPARED = 0, HOOK_REFTX_COMMITTED = 1, HOOK_REFTX_ABORTED = 2 };

/*
 * Vote on `changes` (git's reference-transaction stdin) in the payload's
 * transaction: nothing for "aborted", for force-deletions only or without a
 * transaction; else SHA-1 of the bytes in the matching phase. `done` always
 * fires from the loop, with GRPC_OK or the vote's failure.
 */
void hook_reftx_vote(struct gitaly *g, const struct hook_payload *p, enum hook_reftx_state state,
		     const char *changes, size_t len, vote_done_fn done, void *arg);
/* 1 when every line is "<zero> <zero> <ref>" (git's packed-refs clean-up transaction). */
int hook_changes_force_deletions_only(const char *changes, size_t len, size_t hexlen);

/*
 * A vote in the transaction named by a payload (hooks run by git carry it
 * there, not in call metadata). Without a transaction it passes.
 */
void hook_payload_vote(struct gitaly *g, const struct hook_payload *p, enum vote_phase phase,
		       const uint8_t hash[20], vote_done_fn done, void *arg);

/* --- GitLab internal API (gitlab.c) --- */

struct gitlab_req;

/*
 * A finished request: `status` is the HTTP status, or 0 when no response
 * came (then `error` says why). `content_type` may be NULL.
 */
typedef void (*gitlab_done_fn)(void *arg, long status, const char *content_type,
	      const struct strbuf *body, const char *error);

/* 1 when "[gitlab] url" is set: access checks and reference counters are on. */
int gitlab_configured(const struct gitaly *g);
/*
 * POST `json` to <url>/api/v4/internal<path> with the JWT header GitLab
 * expects (`json` NULL: a GET, as `gitaly check` sends to /check). `done` fires exactly once from the loop unless the request is
 * cancelled. Returns NULL (and `done` never fires) when the request cannot be
 * set up; `err` says why.
 */
struct gitlab_req *gitlab_post(struct gitaly *g, const char *path, const char *json,
			       gitlab_done_fn done, void *arg, struct strbuf *err);
/*
 * GET <url>/api/v4/internal<path> as gitlab_post() does, the body written to
 * `fd` (a file the caller opened and closes) instead of kept: no cap, and
 * `body` in `done` is empty. A failed write ends the request with an error.
 */
struct gitlab_req *gitlab_get_file(struct gitaly *g, const char *path, int fd, gitlab_done_fn done, void *arg,
				   struct strbuf *err);
void gitlab_cancel(struct gitlab_req *r);
/* The "Gitlab-Shell-Api-Request" token: HS256 JWT, issuer gitlab-shell, valid one minute. */
void gitlab_jwt(const char *secret, time_t now, struct strbuf *out);

/* PackObjectsHookWithSidechannel (pack_objects.c); gitaly_register_hook() calls it. */
void gitaly_register_pack_objects_hook(struct gitaly *g, struct grpc_server *s);

/* --- helpers --- */

/* Append `s` quoted as Go's %q does (the error texts upstream produces). */
void hooks_quote(struct strbuf *out, const char *s, size_t len);
/* `target` relative to `base` (absolute paths, cleaned lexically), as Go's filepath.Rel. */
void hooks_rel_path(const char *base, const char *target, struct strbuf *out);
/* Object id validation with upstream's wording; 0 or -1 with `err` set. */
int hooks_validate_hex(const char *hex, size_t hexlen, struct strbuf *err);

#endif
