/*
 * OperationService internals shared by the operations/ files: the per-call
 * context every RPC embeds, asynchronous git steps, rich error details, the
 * object quarantine, and "update a reference with hooks" (docs/technical/gitaly-node.md,
 * "Write RPCs"), which runs pre-receive, update, reference-transaction votes and
 * post-receive in-process around `git update-ref`.
 *
 * Lifecycle (core/call.h): an RPC allocates its context with `struct op`
 * embedded, calls op_init(), and moves from step to step with op_git() and
 * friends. At most one asynchronous step is in flight, and it holds the
 * base; when the call closes (finished or cancelled) the op is freed as soon
 * as no step is in flight, and a step that completes after the close never
 * reaches the RPC's callback.
 */
#ifndef GITALY_OPERATIONS_OPERATIONS_H
#define GITALY_OPERATIONS_OPERATIONS_H

#include "core/gitaly.h"
#include "core/call.h"
#include "hooks/hooks.h"
#include "operations.pb-c.h"
#include "errors.pb-c.h"

struct op;
struct op_update;

typedef void (*op_git_fn)(struct op *op, int status, struct strbuf *out, struct strbuf *err);

struct op {
	struct gitaly_call base;           /* holds: the asynchronous step in flight */
	void (*free_ctx)(struct op *op);   /* frees the enclosing context */
	const Gitaly__Repository *repo;    /* the request's repository */
	struct strbuf path;                /* its absolute path */
	size_t hexlen;                     /* object id length: 40 (SHA-1) or 64 */
	/* object quarantine (op_quarantine()) */
	Gitaly__Repository *qrepo;         /* the repository as seen through the quarantine */
	struct strbuf qdir;
	struct op_update *upd;
	op_git_fn pending;                 /* op_git(): the step's callback */
	op_git_fn next;                    /* op_detect_hash(): what follows */
};

/* Set up `op` for `call`; for unary calls it also watches the call's close. */
void op_init(struct op *op, struct gitaly *g, struct grpc_call *call, void (*free_ctx)(struct op *op),
	     int unary);
/* The call closed: stop what runs and free the op once idle (client-streaming RPCs call this). */
void op_closed(struct op *op);
/*
 * An asynchronous step the op was busy with ended. Returns 1 when the call is
 * gone: the op has been freed then and must not be touched.
 */
int op_step_end(struct op *op);

/*
 * Validate and resolve the request repository into op->path. GRPC_OK, or the
 * code with the call finished (upstream wraps validation errors as
 * INVALID_ARGUMENT but keeps the more specific inner code).
 */
enum grpc_code op_locate(struct op *op, const Gitaly__Repository *repo);

/* End the call with an error. */
void op_fail(struct op *op, enum grpc_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* End the call with an error carrying `detail` in grpc-status-details-bin (google.rpc.Status). */
void op_fail_detail(struct op *op, enum grpc_code code, const char *msg, const ProtobufCMessage *detail);

/* A git call on the op's repository (through the quarantine when there is one). */
void op_git_call(struct op *op, struct git_call *gc, const char *subcmd);
/* Run `gc` capturing at most `max_out` bytes of stdout; `fn` runs when it exits. */
void op_git(struct op *op, const struct git_call *gc, const void *in, size_t inlen, size_t max_out,
	    op_git_fn fn);

/* Object format: sets op->hexlen ("git rev-parse --show-object-format"), then `fn`. */
void op_detect_hash(struct op *op, op_git_fn fn);

/*
 * Read one object with "git cat-file --batch": `rev` as given (callers add
 * "^{commit}" etc.). `fn` gets status 0 with "<oid> <type> <size>\n<data>" in
 * out, or status 1 when the object is missing.
 */
void op_read_object(struct op *op, const char *rev, op_git_fn fn);
/* The same with --batch-check: only "<oid> <type> <size>". */
void op_object_info(struct op *op, const char *rev, op_git_fn fn);
/* "git rev-parse --verify <rev>": status 0 with the object id on stdout, else not found. */
void op_rev_parse(struct op *op, const char *rev, op_git_fn fn);
/* Drop the trailing newlines (and carriage returns) of git's output. */
void op_chomp(struct strbuf *sb);
/* Check expected_old_oid as upstream does (op->hexlen hex digits); 0, or -1 with the call failed. */
int op_check_expected_old(struct op *op, const char *oid);
/* Split cat-file --batch output; 0 or -1. */
int op_parse_batch(const struct strbuf *out, const char **oid, size_t *oidlen, const char **type,
		   size_t *typelen, const char **data, size_t *len);
/* A GitCommit from raw commit data (docs/technical/gitaly-node.md, "Commits and tags"); free with protobuf_c_message_free_unpacked(). */
Gitaly__GitCommit *op_parse_commit(const char *oid, size_t oidlen, const char *data, size_t len);

/* Create the object quarantine (docs/technical/gitaly-node.md, "Write RPCs"; op->qrepo, op->qdir); 0 or -1 with the call failed. */
int op_quarantine(struct op *op);
/* Move quarantined objects into the repository; 0 or -1 with `err` set. */
int op_quarantine_migrate(struct op *op, struct strbuf *err);

/* --- identity and time --- */

/* The signature of `user` at `ts` (NULL: now) as "Name <email> <secs> <+hhmm>" parts. */
struct op_signature {
	struct strbuf name, email;
	int64_t when;
	int tz_minutes;
};
/* 0, or -1 with `err` set ("unknown time zone X"). */
int op_signature(const Gitaly__User *user, const Google__Protobuf__Timestamp *ts, struct op_signature *sig,
		 struct strbuf *err);
void op_signature_release(struct op_signature *sig);
/* "<secs> <+hhmm>" */
void op_signature_date(const struct op_signature *sig, struct strbuf *out);

/* --- updating a reference with hooks --- */

enum op_update_fail {
	UPD_OK = 0,
	UPD_CUSTOM_HOOK,     /* a custom hook refused: CustomHookError */
	UPD_NOT_ALLOWED,     /* GitLab refused in /allowed: AccessCheckError */
	UPD_REF,             /* git update-ref failed: ReferenceUpdateError */
	UPD_OTHER,
};

struct op_update_result {
	enum op_update_fail fail;
	enum grpc_code code;          /* UPD_OTHER */
	struct strbuf msg;            /* the whole error text as upstream words it */
	/* UPD_CUSTOM_HOOK */
	enum hook_kind hook;
	struct strbuf hook_stdout, hook_stderr;
	struct strbuf hook_error;     /* CustomHookError.Error(): stderr, else stdout, else the error */
	/* UPD_NOT_ALLOWED */
	struct strbuf api_msg, user_id, protocol, changes;
	/* UPD_REF */
	struct strbuf cause;          /* "reference already exists" ... */
	const char *ref, *old_oid, *new_oid;
};

typedef void (*op_update_fn)(struct op *op, const struct op_update_result *res);

/*
 * Update `ref` from `old_oid` to `new_oid` as docs/technical/gitaly-node.md, "Write RPCs" describes,
 * moving quarantined objects into the repository once pre-receive passed.
 * `user` (gl_id, gl_username) goes into the hooks payload.
 */
void op_update_ref(struct op *op, const Gitaly__User *user, const char *ref, const char *new_oid,
		   const char *old_oid, op_update_fn done);
/*
 * The same without hooks (UserMergeToRef, as upstream): quarantined objects
 * move in first, then `git update-ref` runs with its votes.
 */
void op_update_ref_plain(struct op *op, const char *ref, const char *new_oid, const char *old_oid,
			 op_update_fn done);
void op_update_cancel(struct op *op);

/* Error details of a failed update, pointing into `r` (valid while it is). */
void op_detail_access_check(const struct op_update_result *r, Gitaly__AccessCheckError *e);
void op_detail_custom_hook(const struct op_update_result *r, Gitaly__CustomHookError *e);
void op_detail_reference_update(const struct op_update_result *r, Gitaly__ReferenceUpdateError *e);

/*
 * Fail `op` for an update refused by a hook, by GitLab's access check or by
 * git update-ref, with `desc`'s error message (an RPC's XxxError, whose
 * oneof has the fields access_check, custom_hook and reference_update) as
 * the detail: PERMISSION_DENIED for the first two, FAILED_PRECONDITION for
 * the last. `msg` is the status message. -1, nothing sent, when r->fail is
 * none of the three or `desc` lacks the field.
 */
int op_fail_update(struct op *op, const struct op_update_result *r, const ProtobufCMessageDescriptor *desc,
		   const char *msg);

/* Zero object id for op->hexlen. */
const char *op_zero_oid(const struct op *op);

/* RPC entry points living in other files. */
void op_register_commit_files(struct gitaly *g, struct grpc_server *s);
void op_register_merge(struct gitaly *g, struct grpc_server *s);
void op_register_squash(struct gitaly *g, struct grpc_server *s);
void op_register_cherry_pick(struct gitaly *g, struct grpc_server *s);
void op_register_rebase(struct gitaly *g, struct grpc_server *s);

#endif
