/*
 * rpc: the table of every gRPC method we serve or proxy, and where its target
 * repository, additional repository and storage name sit in a request.
 *
 * Invariants:
 *
 *  - The table is generated at build time from the annotations in
 *    the proto/ files (tools/gen-registry.py; see docs/technical/rpc-registry.md)
 *    and never changes at run time. It is sorted by `name` (byte order).
 *  - Every method of a service that is not `intercepted` has an op other than
 *    RPC_OP_UNKNOWN. A REPOSITORY-scoped method has exactly one target path
 *    and no storage path; a STORAGE-scoped one has exactly one storage path
 *    and no target path; MAINTENANCE methods are REPOSITORY scoped. The build
 *    fails if the .proto files say otherwise.
 *  - The extraction and rewrite functions read raw protobuf wire bytes, never
 *    decode the whole message, never read outside [msg, msg + len), and never
 *    write to `msg`. Slices they return point into `msg`.
 *  - Errors are negative errno values: -ENOENT (field not set), -ENOTUNIQ
 *    (more than one candidate field set: "field is ambiguous"), -EINVAL
 *    (malformed protobuf, or a string that is not UTF-8).
 */
#ifndef RPC_REGISTRY_H
#define RPC_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

struct strbuf;

enum rpc_op {
	RPC_OP_UNKNOWN = 0,
	RPC_OP_MUTATOR = 1,     /* changes the repository */
	RPC_OP_ACCESSOR = 2,    /* reads only */
	RPC_OP_MAINTENANCE = 3, /* housekeeping, best effort on every replica */
};

enum rpc_scope {
	RPC_SCOPE_REPOSITORY = 0, /* acts on the target repository */
	RPC_SCOPE_STORAGE = 2,    /* acts on a whole storage */
};

/* Which repository of a request a function works on. */
enum rpc_repo_kind {
	RPC_REPO_TARGET,
	RPC_REPO_ADDITIONAL,
};

/* Longest field path the generator accepts. */
#define RPC_PATH_MAX 8

/*
 * One field on the way from the request message to an annotated field.
 * `oneof` lists the other members of the oneof this field belongs to (a
 * later one on the wire clears this one); empty when it is in none.
 */
struct rpc_step {
	uint32_t field;
	uint32_t oneof_nr;
	const uint32_t *oneof;
};

/*
 * A path of field numbers from the request message down to a gitaly.Repository
 * (target, additional) or a string (storage). `mark_len` counts the steps up
 * to the annotated field: it is shorter than `steps_nr` when the annotated
 * field is a wrapper (gitaly.ObjectPool) whose inner Repository is the result.
 * `desc` spells the path as "header(1).repository(1)".
 */
struct rpc_path {
	const struct rpc_step *steps;
	uint8_t steps_nr;
	uint8_t mark_len;
	const char *desc;
};

struct rpc_paths {
	const struct rpc_path *v;
	size_t nr;
};

/* A top-level request field by number and wire type (0 varint, 1 i64, 2 len, 5 i32). */
struct rpc_field {
	uint32_t field;
	uint8_t wire;
};

struct rpc_method {
	const char *name;          /* "/gitaly.RepositoryService/CreateRepository" */
	size_t name_len;
	const char *service;       /* "gitaly.RepositoryService" */
	const char *method;        /* "CreateRepository" */
	const char *request_type;  /* "gitaly.CreateRepositoryRequest" */
	const char *response_type;
	enum rpc_op op;
	enum rpc_scope scope;
	unsigned client_streaming : 1;
	unsigned server_streaming : 1;
	/* Answered by the router itself (whole service marked `intercepted`, or
	 * a service outside package gitaly such as grpc.health.v1). */
	unsigned intercepted : 1;
	/* Every place the annotation may be; at most one may be set at run time. */
	struct rpc_paths target;
	struct rpc_paths additional;
	struct rpc_paths storage;

	/*
	 * Our router's facts (proto/lint.proto, RouterMsg and router_drops; the
	 * generator checks the op and scope each needs):
	 *  creates_repository  REPOSITORY MUTATOR that creates its target: the
	 *                      router reserves an id and picks the nodes; if the
	 *                      repository exists the call fails AlreadyExists,
	 *  updates_existing    ...unless this is set: then it is routed as any mutator;
	 *  not_voted           REPOSITORY MUTATOR without a reference transaction;
	 *  primary_only        REPOSITORY ACCESSOR always served by the primary;
	 *  drops               top-level scalar fields the router removes from the
	 *                      first request message (matched by number and wire type).
	 */
	unsigned creates_repository : 1;
	unsigned updates_existing : 1;
	unsigned not_voted : 1;
	unsigned primary_only : 1;
	const struct rpc_field *drops;
	size_t drops_nr;
};

/* --- the table --------------------------------------------------------- */

/* All methods, sorted by name; iterate with `for (i = 0; i < rpc_methods_nr; i++)`. */
extern const struct rpc_method rpc_methods[];
extern const size_t rpc_methods_nr;

/*
 * Find a method by its full name (the HTTP/2 :path, "/pkg.Service/Method").
 * NULL if unknown. Binary search: O(log n) comparisons, no allocation.
 */
const struct rpc_method *rpc_lookup(const char *path, size_t len);

/* "ACCESSOR", "MUTATOR", "MAINTENANCE", "UNKNOWN"; "REPOSITORY", "STORAGE". */
const char *rpc_op_name(enum rpc_op op);
const char *rpc_scope_name(enum rpc_scope scope);

/* --- reading a request ------------------------------------------------- */

/*
 * Where a repository sits in a request. All pointers point into the request
 * (or at a static "" for an unset string). `msg`/`len` is the encoded
 * gitaly.Repository, its last occurrence should the field appear more than
 * once; `storage` and `relative_path` are the merged values of its fields 2
 * and 3 (each the last one on the wire, which may lie in an earlier
 * occurrence); `path` is the table path that matched.
 */
struct rpc_repo {
	const uint8_t *msg;
	size_t len;
	const char *storage;
	size_t storage_len;
	const char *relative_path;
	size_t relative_path_len;
	const struct rpc_path *path;
};

/*
 * Find the target or additional repository of `m` in the encoded request
 * `msg`. Follows protobuf merge semantics: occurrences of the same singular
 * message field are merged, the last value of a string wins, and a oneof
 * member counts only if no other member of its oneof follows it.
 *
 * Returns 0 and fills `out`; -ENOENT if no path of `m` is set (or the method
 * has none, or a set ObjectPool has no repository); -ENOTUNIQ if more than
 * one is set; -EINVAL if the bytes walked are not valid protobuf or a value
 * read is not UTF-8. The bytes walked are the request's top level and every
 * message on a path; the contents of other fields are skipped unchecked. A Repository sent as an empty message is found (with empty
 * storage and path): message fields have presence.
 */
int rpc_find_repo(const struct rpc_method *m, enum rpc_repo_kind kind,
		  const uint8_t *msg, size_t len, struct rpc_repo *out);

static inline int rpc_find_target(const struct rpc_method *m, const uint8_t *msg,
				  size_t len, struct rpc_repo *out)
{
	return rpc_find_repo(m, RPC_REPO_TARGET, msg, len, out);
}

static inline int rpc_find_additional(const struct rpc_method *m, const uint8_t *msg,
				      size_t len, struct rpc_repo *out)
{
	return rpc_find_repo(m, RPC_REPO_ADDITIONAL, msg, len, out);
}

/*
 * Find the storage name of a storage-scoped request: `*storage` points into
 * `msg`. An empty string counts as unset (proto3 strings have no presence).
 * Same errors as rpc_find_repo().
 */
int rpc_find_storage(const struct rpc_method *m, const uint8_t *msg, size_t len,
		     const char **storage, size_t *storage_len);

/* --- rewriting a request ----------------------------------------------- */

/*
 * Append to `out` a copy of request `msg` in which the repository found by
 * rpc_find_repo() has storage_name `storage` and relative_path `relpath`.
 * Every other byte is kept as it was, except the length prefixes of the
 * messages enclosing the repository, which are re-encoded. The old fields 2
 * and 3 are removed from every occurrence of the Repository along the
 * matched path and the new ones are put first (canonical order) in its last
 * occurrence, so merging yields the new values and a request with many
 * occurrences cannot make the output grow by more than the new strings plus
 * a few length bytes. An empty value is left out, as proto3 encoders do.
 *
 * Returns 0, or the error of rpc_find_repo(); `out` is unchanged on error.
 */
int rpc_rewrite_repo(const struct rpc_method *m, enum rpc_repo_kind kind,
		     const uint8_t *msg, size_t len,
		     const char *storage, size_t storage_len,
		     const char *relpath, size_t relpath_len,
		     struct strbuf *out);

/*
 * Append to `out` a copy of the storage-scoped request `msg` with its storage
 * field set to `storage`: the last occurrence of the field gets the new value
 * in place, earlier ones are dropped. Same rules and errors as
 * rpc_rewrite_repo().
 */
int rpc_rewrite_storage(const struct rpc_method *m, const uint8_t *msg, size_t len,
			const char *storage, size_t storage_len, struct strbuf *out);

#endif
