/* Unit tests for lib/rpc: the generated method table, and reading and rewriting requests. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/strbuf.h"
#include "rpc/registry.h"
#include "grpc/server.h"

#include "internal.pb-c.h"
#include "objectpool.pb-c.h"
#include "operations.pb-c.h"
#include "remote.pb-c.h"
#include "repository.pb-c.h"
#include "shared.pb-c.h"

/* --- helpers ------------------------------------------------------------ */

struct buf {
	uint8_t *p;
	size_t len;
};

static struct buf pack(const ProtobufCMessage *msg)
{
	struct buf b;

	b.len = protobuf_c_message_get_packed_size(msg);
	b.p = malloc(b.len ? b.len : 1);
	assert_non_null(b.p);
	assert_int_equal(protobuf_c_message_pack(msg, b.p), b.len);
	return b;
}

/* Two encodings back to back: protobuf parses that as one merged message. */
static struct buf concat(struct buf a, struct buf b)
{
	struct buf c = { malloc(a.len + b.len + 1), a.len + b.len };

	assert_non_null(c.p);
	memcpy(c.p, a.p, a.len);
	memcpy(c.p + a.len, b.p, b.len);
	free(a.p);
	free(b.p);
	return c;
}

static const struct rpc_method *lookup(const char *name)
{
	const struct rpc_method *m = rpc_lookup(name, strlen(name));

	if (!m)
		fail_msg("method %s not in the table", name);
	return m;
}

#define assert_slice_equal(ptr, len, str) do { \
	assert_int_equal((len), strlen(str)); \
	assert_memory_equal((ptr), (str), strlen(str)); \
} while (0)

static void assert_repo(const struct rpc_repo *r, const char *storage, const char *path)
{
	assert_slice_equal(r->storage, r->storage_len, storage);
	assert_slice_equal(r->relative_path, r->relative_path_len, path);
}

static void check_method(const char *name, enum rpc_op op, enum rpc_scope scope,
			 int cs, int ss, const char *target, const char *additional,
			 const char *storage)
{
	const struct rpc_method *m = lookup(name);

	assert_string_equal(m->name, name);
	assert_int_equal(m->name_len, strlen(name));
	assert_false(m->intercepted);
	assert_string_equal(rpc_op_name(m->op), rpc_op_name(op));
	assert_string_equal(rpc_scope_name(m->scope), rpc_scope_name(scope));
	assert_int_equal(m->client_streaming, cs);
	assert_int_equal(m->server_streaming, ss);
	assert_int_equal(m->target.nr, target ? 1 : 0);
	if (target)
		assert_string_equal(m->target.v[0].desc, target);
	assert_int_equal(m->additional.nr, additional ? 1 : 0);
	if (additional)
		assert_string_equal(m->additional.v[0].desc, additional);
	assert_int_equal(m->storage.nr, storage ? 1 : 0);
	if (storage)
		assert_string_equal(m->storage.v[0].desc, storage);
}

/* --- the table ---------------------------------------------------------- */

static void test_classification(void **state)
{
	check_method("/gitaly.RepositoryService/CreateRepository", RPC_OP_MUTATOR,
		     RPC_SCOPE_REPOSITORY, 0, 0, "repository(1)", NULL, NULL);
	check_method("/gitaly.OperationService/UserCommitFiles", RPC_OP_MUTATOR,
		     RPC_SCOPE_REPOSITORY, 1, 0, "header(1).repository(1)", NULL, NULL);
	check_method("/gitaly.ObjectPoolService/CreateObjectPool", RPC_OP_MUTATOR,
		     RPC_SCOPE_REPOSITORY, 0, 0, "object_pool(1).repository(1)",
		     "origin(2)", NULL);
	check_method("/gitaly.ObjectPoolService/LinkRepositoryToObjectPool", RPC_OP_MUTATOR,
		     RPC_SCOPE_REPOSITORY, 0, 0, "repository(2)",
		     "object_pool(1).repository(1)", NULL);
	check_method("/gitaly.ObjectPoolService/FetchIntoObjectPool", RPC_OP_MUTATOR,
		     RPC_SCOPE_REPOSITORY, 0, 0, "object_pool(2).repository(1)",
		     "origin(1)", NULL);
	check_method("/gitaly.InternalGitaly/WalkRepos", RPC_OP_ACCESSOR,
		     RPC_SCOPE_STORAGE, 0, 1, NULL, NULL, "storage_name(1)");
	check_method("/gitaly.RemoteService/FindRemoteRepository", RPC_OP_ACCESSOR,
		     RPC_SCOPE_STORAGE, 0, 0, NULL, NULL, "storage_name(2)");
	check_method("/gitaly.RepositoryService/RemoveAll", RPC_OP_MUTATOR,
		     RPC_SCOPE_STORAGE, 0, 0, NULL, NULL, "storage_name(1)");
	check_method("/gitaly.SSHService/SSHUploadPack", RPC_OP_ACCESSOR,
		     RPC_SCOPE_REPOSITORY, 1, 1, "repository(1)", NULL, NULL);
	check_method("/gitaly.SmartHTTPService/PostReceivePack", RPC_OP_MUTATOR,
		     RPC_SCOPE_REPOSITORY, 1, 1, "repository(1)", NULL, NULL);
	check_method("/gitaly.RepositoryService/OptimizeRepository", RPC_OP_MAINTENANCE,
		     RPC_SCOPE_REPOSITORY, 0, 0, "repository(1)", NULL, NULL);
	check_method("/gitaly.RepositoryService/PruneUnreachableObjects", RPC_OP_MAINTENANCE,
		     RPC_SCOPE_REPOSITORY, 0, 0, "repository(1)", NULL, NULL);
	check_method("/gitaly.RemoteService/UpdateRemoteMirror", RPC_OP_ACCESSOR,
		     RPC_SCOPE_REPOSITORY, 1, 0, "repository(1)", NULL, NULL);
	check_method("/gitaly.OperationService/UserRebaseConfirmable", RPC_OP_MUTATOR,
		     RPC_SCOPE_REPOSITORY, 1, 1, "header(1).repository(1)", NULL, NULL);
	check_method("/gitaly.CommitService/FindCommit", RPC_OP_ACCESSOR,
		     RPC_SCOPE_REPOSITORY, 0, 0, "repository(1)", NULL, NULL);

	const struct rpc_method *m = lookup("/gitaly.RepositoryService/CreateRepository");
	assert_string_equal(m->service, "gitaly.RepositoryService");
	assert_string_equal(m->method, "CreateRepository");
	assert_string_equal(m->request_type, "gitaly.CreateRepositoryRequest");
	assert_string_equal(m->response_type, "gitaly.CreateRepositoryResponse");

	/* The ObjectPool wrapper: marked at object_pool, resolved one level in. */
	m = lookup("/gitaly.ObjectPoolService/CreateObjectPool");
	assert_int_equal(m->target.v[0].steps_nr, 2);
	assert_int_equal(m->target.v[0].mark_len, 1);
	assert_int_equal(m->target.v[0].steps[0].field, 1);
	assert_int_equal(m->target.v[0].steps[1].field, 1);

	/* header is a oneof member: an `action` after it clears it. */
	m = lookup("/gitaly.OperationService/UserCommitFiles");
	assert_int_equal(m->target.v[0].steps[0].oneof_nr, 1);
	assert_int_equal(m->target.v[0].steps[0].oneof[0], 2);
	assert_int_equal(m->target.v[0].steps[1].oneof_nr, 0);
}

static void test_intercepted(void **state)
{
	static const char *const names[] = {
		"/gitaly.ServerService/ServerInfo",
		"/gitaly.ServerService/DiskStatistics",
		"/gitaly.PraefectInfoService/RepositoryReplicas",
		"/gitaly.RefTransaction/VoteTransaction",
		"/grpc.health.v1.Health/Check",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const struct rpc_method *m = lookup(names[i]);

		assert_true(m->intercepted);
		assert_int_equal(m->op, RPC_OP_UNKNOWN);
	}
	/* Not intercepted though answered by praefect: a plain table entry. */
	assert_false(lookup("/gitaly.RepositoryService/RepositoryExists")->intercepted);
}

static void test_lookup(void **state)
{
	static const char name[] = "/gitaly.RepositoryService/CreateRepositoryFromURL";
	const struct rpc_method *m;

	assert_null(rpc_lookup("", 0));
	assert_null(rpc_lookup("/gitaly.RepositoryService/NoSuchMethod", 38));
	assert_null(rpc_lookup("/gitaly.NoSuchService/CreateRepository", 38));
	/* The length counts, not a NUL: a prefix of a name is another name. */
	m = rpc_lookup(name, strlen("/gitaly.RepositoryService/CreateRepository"));
	assert_non_null(m);
	assert_string_equal(m->method, "CreateRepository");
	m = rpc_lookup(name, sizeof(name) - 1);
	assert_non_null(m);
	assert_string_equal(m->method, "CreateRepositoryFromURL");
	assert_null(rpc_lookup(name, sizeof(name) - 2));

	/* Every entry finds itself. */
	for (size_t i = 0; i < rpc_methods_nr; i++)
		assert_ptr_equal(rpc_lookup(rpc_methods[i].name, rpc_methods[i].name_len),
				 &rpc_methods[i]);
}

static void test_table_invariants(void **state)
{
	size_t gitaly = 0;

	assert_true(rpc_methods_nr > 150);
	for (size_t i = 0; i < rpc_methods_nr; i++) {
		const struct rpc_method *m = &rpc_methods[i];

		if (i)
			assert_true(strcmp(rpc_methods[i - 1].name, m->name) < 0);
		assert_int_equal(strlen(m->name), m->name_len);
		if (m->intercepted)
			continue;
		gitaly++;
		assert_memory_equal(m->name, "/gitaly.", 8);
		if (m->op == RPC_OP_UNKNOWN)
			fail_msg("%s has no op", m->name);
		switch (m->scope) {
		case RPC_SCOPE_REPOSITORY:
			assert_int_equal(m->target.nr, 1);
			assert_int_equal(m->storage.nr, 0);
			break;
		case RPC_SCOPE_STORAGE:
			assert_int_equal(m->target.nr, 0);
			assert_int_equal(m->storage.nr, 1);
			assert_int_not_equal(m->op, RPC_OP_MAINTENANCE);
			break;
		default:
			fail_msg("%s has scope %d", m->name, m->scope);
		}
		/* No accessor or maintenance RPC has an additional repository. */
		if (m->op != RPC_OP_MUTATOR)
			assert_int_equal(m->additional.nr, 0);
	}
	assert_true(gitaly >= 140); /* v16.8 proxies 141 */
}

/* Our router annotations (proto/lint.proto RouterMsg, router_drops). */
static void test_router_facts(void **state)
{
	static const char *const creators[] = {
		"/gitaly.RepositoryService/CreateRepository",
		"/gitaly.RepositoryService/CreateRepositoryFromURL",
		"/gitaly.RepositoryService/CreateRepositoryFromBundle",
		"/gitaly.RepositoryService/CreateRepositoryFromSnapshot",
		"/gitaly.RepositoryService/CreateFork",
		"/gitaly.RepositoryService/RestoreRepository",
		"/gitaly.RepositoryService/ReplicateRepository",
		"/gitaly.ObjectPoolService/CreateObjectPool",
	};
	size_t nr_creators = 0, nr_updates = 0, nr_not_voted = 0, nr_primary_only = 0, nr_drops = 0;
	const struct rpc_method *m;

	for (size_t i = 0; i < sizeof(creators) / sizeof(creators[0]); i++)
		assert_true(lookup(creators[i])->creates_repository);
	assert_true(lookup("/gitaly.RepositoryService/ReplicateRepository")->updates_existing);
	assert_true(lookup("/gitaly.RepositoryService/RestoreRepository")->updates_existing);
	assert_false(lookup("/gitaly.RepositoryService/CreateRepository")->updates_existing);
	assert_false(lookup("/gitaly.ObjectPoolService/CreateObjectPool")->updates_existing);

	assert_true(lookup("/gitaly.ObjectPoolService/CreateObjectPool")->not_voted);
	assert_true(lookup("/gitaly.ObjectPoolService/DeleteObjectPool")->not_voted);
	assert_false(lookup("/gitaly.ObjectPoolService/LinkRepositoryToObjectPool")->not_voted);
	assert_false(lookup("/gitaly.RepositoryService/CreateRepository")->not_voted);

	assert_true(lookup("/gitaly.RepositoryService/RepositorySize")->primary_only);
	assert_true(lookup("/gitaly.RepositoryService/GetObjectDirectorySize")->primary_only);
	assert_false(lookup("/gitaly.RepositoryService/RepositoryInfo")->primary_only);

	m = lookup("/gitaly.RepositoryService/ReplicateRepository");
	assert_int_equal(m->drops_nr, 1);
	assert_int_equal(m->drops[0].field, 3); /* replicate_object_deduplication_network_membership */
	assert_int_equal(m->drops[0].wire, 0);  /* a bool: varint */

	/* Exactly these, and each on the op and scope the generator allows. */
	for (size_t i = 0; i < rpc_methods_nr; i++) {
		m = &rpc_methods[i];
		if (m->creates_repository || m->not_voted) {
			assert_int_equal(m->op, RPC_OP_MUTATOR);
			assert_int_equal(m->scope, RPC_SCOPE_REPOSITORY);
		}
		if (m->updates_existing)
			assert_true(m->creates_repository);
		if (m->primary_only) {
			assert_int_equal(m->op, RPC_OP_ACCESSOR);
			assert_int_equal(m->scope, RPC_SCOPE_REPOSITORY);
		}
		if (m->intercepted)
			assert_false(m->creates_repository || m->not_voted || m->primary_only || m->drops_nr);
		nr_creators += m->creates_repository;
		nr_updates += m->updates_existing;
		nr_not_voted += m->not_voted;
		nr_primary_only += m->primary_only;
		nr_drops += m->drops_nr;
	}
	assert_int_equal(nr_creators, sizeof(creators) / sizeof(creators[0]));
	assert_int_equal(nr_updates, 2);
	assert_int_equal(nr_not_voted, 2);
	assert_int_equal(nr_primary_only, 2);
	assert_int_equal(nr_drops, 1);
}

/* Methods praefect answers itself or calls by name are all in the table. */
static void test_praefect_methods_known(void **state)
{
	static const char *const local[] = {
		"/gitaly.RepositoryService/RepositoryExists",
		"/gitaly.RepositoryService/RemoveRepository",
		"/gitaly.ServerService/ServerInfo",
		"/gitaly.PraefectInfoService/GetRepositoryMetadata",
		"/gitaly.PraefectInfoService/Dataloss",
		"/gitaly.PraefectInfoService/SetAuthoritativeStorage",
		"/gitaly.RefTransaction/VoteTransaction",
		"/gitaly.RefTransaction/StopTransaction",
		"/grpc.health.v1.Health/Check",
		"/gitaly.RepositoryService/ReplicateRepository",
	};
	for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++)
		assert_non_null(lookup(local[i]));
	assert_null(rpc_lookup("/gitaly.RepositoryService/RepositoryExist", 40));
}

/* --- reading and rewriting ---------------------------------------------- */

static void test_target_repository(void **state)
{
	const struct rpc_method *m = lookup("/gitaly.RepositoryService/CreateRepository");
	Gitaly__Repository repo = GITALY__REPOSITORY__INIT;
	Gitaly__CreateRepositoryRequest req = GITALY__CREATE_REPOSITORY_REQUEST__INIT;
	Gitaly__CreateRepositoryRequest *back;
	struct strbuf out = STRBUF_INIT;
	struct rpc_repo r;
	struct buf b;

	repo.storage_name = (char *)"default";
	repo.relative_path = (char *)"group/project.git";
	repo.gl_repository = (char *)"project-1";
	repo.gl_project_path = (char *)"group/project";
	req.repository = &repo;
	req.default_branch.data = (uint8_t *)"main";
	req.default_branch.len = 4;
	req.object_format = GITALY__OBJECT_FORMAT__OBJECT_FORMAT_SHA256;
	b = pack(&req.base);

	assert_int_equal(rpc_find_target(m, b.p, b.len, &r), 0);
	assert_repo(&r, "default", "group/project.git");
	assert_ptr_equal(r.path, &m->target.v[0]);
	assert_true(r.msg > b.p && r.msg + r.len <= b.p + b.len);
	assert_int_equal(r.len, protobuf_c_message_get_packed_size(&repo.base));
	assert_int_equal(rpc_find_additional(m, b.p, b.len, &r), -ENOENT);

	assert_int_equal(rpc_rewrite_repo(m, RPC_REPO_TARGET, b.p, b.len,
					  "gitaly-1", 8, "@hashed/ab/cd/abcd.git", 22, &out), 0);
	back = gitaly__create_repository_request__unpack(NULL, out.len, (uint8_t *)out.buf);
	assert_non_null(back);
	assert_string_equal(back->repository->storage_name, "gitaly-1");
	assert_string_equal(back->repository->relative_path, "@hashed/ab/cd/abcd.git");
	assert_string_equal(back->repository->gl_repository, "project-1");
	assert_string_equal(back->repository->gl_project_path, "group/project");
	assert_int_equal(back->default_branch.len, 4);
	assert_memory_equal(back->default_branch.data, "main", 4);
	assert_int_equal(back->object_format, GITALY__OBJECT_FORMAT__OBJECT_FORMAT_SHA256);
	gitaly__create_repository_request__free_unpacked(back, NULL);

	/* Same strings back: protobuf-c's canonical encoding, byte for byte. */
	strbuf_reset(&out);
	assert_int_equal(rpc_rewrite_repo(m, RPC_REPO_TARGET, b.p, b.len,
					  "default", 7, "group/project.git", 17, &out), 0);
	assert_int_equal(out.len, b.len);
	assert_memory_equal(out.buf, b.p, b.len);

	/* The rewrite appends; a failed one leaves `out` alone. */
	assert_int_equal(rpc_rewrite_repo(m, RPC_REPO_ADDITIONAL, b.p, b.len,
					  "x", 1, "y", 1, &out), -ENOENT);
	assert_int_equal(out.len, b.len);

	strbuf_release(&out);
	free(b.p);
}

static void test_nested_header(void **state)
{
	const struct rpc_method *m = lookup("/gitaly.OperationService/UserCommitFiles");
	Gitaly__Repository repo = GITALY__REPOSITORY__INIT;
	Gitaly__Repository start = GITALY__REPOSITORY__INIT;
	Gitaly__User user = GITALY__USER__INIT;
	Gitaly__UserCommitFilesRequestHeader hdr = GITALY__USER_COMMIT_FILES_REQUEST_HEADER__INIT;
	Gitaly__UserCommitFilesRequest req = GITALY__USER_COMMIT_FILES_REQUEST__INIT;
	Gitaly__UserCommitFilesRequest *back;
	struct strbuf out = STRBUF_INIT;
	struct rpc_repo r;
	struct buf b;

	repo.storage_name = (char *)"default";
	repo.relative_path = (char *)"a.git";
	start.storage_name = (char *)"default";
	start.relative_path = (char *)"upstream.git";
	user.gl_id = (char *)"user-1";
	hdr.repository = &repo;
	hdr.user = &user;
	hdr.branch_name.data = (uint8_t *)"feature";
	hdr.branch_name.len = 7;
	hdr.start_repository = &start; /* not annotated: left as it is */
	hdr.force = 1;
	req.user_commit_files_request_payload_case =
		GITALY__USER_COMMIT_FILES_REQUEST__USER_COMMIT_FILES_REQUEST_PAYLOAD_HEADER;
	req.header = &hdr;
	b = pack(&req.base);

	assert_int_equal(rpc_find_target(m, b.p, b.len, &r), 0);
	assert_repo(&r, "default", "a.git");

	assert_int_equal(rpc_rewrite_repo(m, RPC_REPO_TARGET, b.p, b.len,
					  "storage-with-a-much-longer-name", 31,
					  "@cluster/repositories/12/34/5678", 32, &out), 0);
	assert_int_equal(out.len, b.len + 24 + 27);
	back = gitaly__user_commit_files_request__unpack(NULL, out.len, (uint8_t *)out.buf);
	assert_non_null(back);
	assert_int_equal(back->user_commit_files_request_payload_case,
			 GITALY__USER_COMMIT_FILES_REQUEST__USER_COMMIT_FILES_REQUEST_PAYLOAD_HEADER);
	assert_string_equal(back->header->repository->storage_name,
			    "storage-with-a-much-longer-name");
	assert_string_equal(back->header->repository->relative_path,
			    "@cluster/repositories/12/34/5678");
	assert_string_equal(back->header->start_repository->storage_name, "default");
	assert_string_equal(back->header->start_repository->relative_path, "upstream.git");
	assert_string_equal(back->header->user->gl_id, "user-1");
	assert_int_equal(back->header->branch_name.len, 7);
	assert_true(back->header->force);
	gitaly__user_commit_files_request__free_unpacked(back, NULL);

	/* A later message of the stream carries an action, not a header. */
	Gitaly__UserCommitFilesAction action = GITALY__USER_COMMIT_FILES_ACTION__INIT;
	Gitaly__UserCommitFilesRequest areq = GITALY__USER_COMMIT_FILES_REQUEST__INIT;
	action.user_commit_files_action_payload_case =
		GITALY__USER_COMMIT_FILES_ACTION__USER_COMMIT_FILES_ACTION_PAYLOAD_CONTENT;
	action.content.data = (uint8_t *)"hello";
	action.content.len = 5;
	areq.user_commit_files_request_payload_case =
		GITALY__USER_COMMIT_FILES_REQUEST__USER_COMMIT_FILES_REQUEST_PAYLOAD_ACTION;
	areq.action = &action;
	struct buf a = pack(&areq.base);
	assert_int_equal(rpc_find_target(m, a.p, a.len, &r), -ENOENT);

	/* header then action: the oneof keeps the action, the header is gone. */
	struct buf ha = concat(pack(&req.base), pack(&areq.base));
	assert_int_equal(rpc_find_target(m, ha.p, ha.len, &r), -ENOENT);
	/* action then header: the header wins. */
	struct buf ah = concat(pack(&areq.base), pack(&req.base));
	assert_int_equal(rpc_find_target(m, ah.p, ah.len, &r), 0);
	assert_repo(&r, "default", "a.git");

	/* A header without a repository. */
	hdr.repository = NULL;
	struct buf norepo = pack(&req.base);
	assert_int_equal(rpc_find_target(m, norepo.p, norepo.len, &r), -ENOENT);

	strbuf_release(&out);
	free(b.p);
	free(a.p);
	free(ha.p);
	free(ah.p);
	free(norepo.p);
}

static void test_object_pool(void **state)
{
	const struct rpc_method *m = lookup("/gitaly.ObjectPoolService/CreateObjectPool");
	Gitaly__Repository pool_repo = GITALY__REPOSITORY__INIT;
	Gitaly__Repository origin = GITALY__REPOSITORY__INIT;
	Gitaly__ObjectPool pool = GITALY__OBJECT_POOL__INIT;
	Gitaly__CreateObjectPoolRequest req = GITALY__CREATE_OBJECT_POOL_REQUEST__INIT;
	Gitaly__CreateObjectPoolRequest *back;
	struct strbuf tmp = STRBUF_INIT, out = STRBUF_INIT;
	struct rpc_repo r;
	struct buf b;

	pool_repo.storage_name = (char *)"default";
	pool_repo.relative_path = (char *)"@pools/aa/bb/aabb.git";
	pool_repo.gl_repository = (char *)"pool-1";
	origin.storage_name = (char *)"default";
	origin.relative_path = (char *)"group/origin.git";
	pool.repository = &pool_repo;
	req.object_pool = &pool;
	req.origin = &origin;
	b = pack(&req.base);

	assert_int_equal(rpc_find_target(m, b.p, b.len, &r), 0);
	assert_repo(&r, "default", "@pools/aa/bb/aabb.git");
	assert_int_equal(rpc_find_additional(m, b.p, b.len, &r), 0);
	assert_repo(&r, "default", "group/origin.git");

	/* Rewrite both, one after the other, as the router does. */
	assert_int_equal(rpc_rewrite_repo(m, RPC_REPO_TARGET, b.p, b.len, "g1", 2,
					  "@cluster/pools/1", 16, &tmp), 0);
	assert_int_equal(rpc_rewrite_repo(m, RPC_REPO_ADDITIONAL, (uint8_t *)tmp.buf, tmp.len,
					  "g1", 2, "@cluster/repositories/2", 23, &out), 0);
	back = gitaly__create_object_pool_request__unpack(NULL, out.len, (uint8_t *)out.buf);
	assert_non_null(back);
	assert_string_equal(back->object_pool->repository->storage_name, "g1");
	assert_string_equal(back->object_pool->repository->relative_path, "@cluster/pools/1");
	assert_string_equal(back->object_pool->repository->gl_repository, "pool-1");
	assert_string_equal(back->origin->storage_name, "g1");
	assert_string_equal(back->origin->relative_path, "@cluster/repositories/2");
	gitaly__create_object_pool_request__free_unpacked(back, NULL);

	/* An ObjectPool without its repository: found, but nothing to resolve. */
	pool.repository = NULL;
	struct buf empty_pool = pack(&req.base);
	assert_int_equal(rpc_find_target(m, empty_pool.p, empty_pool.len, &r), -ENOENT);
	assert_int_equal(rpc_find_additional(m, empty_pool.p, empty_pool.len, &r), 0);

	/* No origin: the additional repository is simply absent. */
	pool.repository = &pool_repo;
	req.origin = NULL;
	struct buf no_origin = pack(&req.base);
	assert_int_equal(rpc_find_target(m, no_origin.p, no_origin.len, &r), 0);
	assert_int_equal(rpc_find_additional(m, no_origin.p, no_origin.len, &r), -ENOENT);

	/* LinkRepositoryToObjectPool has the roles the other way round. */
	const struct rpc_method *link = lookup("/gitaly.ObjectPoolService/LinkRepositoryToObjectPool");
	Gitaly__LinkRepositoryToObjectPoolRequest lreq = GITALY__LINK_REPOSITORY_TO_OBJECT_POOL_REQUEST__INIT;
	Gitaly__LinkRepositoryToObjectPoolRequest *lback;
	lreq.object_pool = &pool;
	lreq.repository = &origin;
	struct buf l = pack(&lreq.base);
	assert_int_equal(rpc_find_target(link, l.p, l.len, &r), 0);
	assert_repo(&r, "default", "group/origin.git");
	assert_int_equal(rpc_find_additional(link, l.p, l.len, &r), 0);
	assert_repo(&r, "default", "@pools/aa/bb/aabb.git");
	strbuf_reset(&out);
	assert_int_equal(rpc_rewrite_repo(link, RPC_REPO_ADDITIONAL, l.p, l.len, "g2", 2,
					  "@cluster/pools/9", 16, &out), 0);
	lback = gitaly__link_repository_to_object_pool_request__unpack(NULL, out.len,
								       (uint8_t *)out.buf);
	assert_non_null(lback);
	assert_string_equal(lback->object_pool->repository->storage_name, "g2");
	assert_string_equal(lback->object_pool->repository->relative_path, "@cluster/pools/9");
	assert_string_equal(lback->repository->storage_name, "default");
	assert_string_equal(lback->repository->relative_path, "group/origin.git");
	gitaly__link_repository_to_object_pool_request__free_unpacked(lback, NULL);

	strbuf_release(&tmp);
	strbuf_release(&out);
	free(b.p);
	free(empty_pool.p);
	free(no_origin.p);
	free(l.p);
}

static void test_storage(void **state)
{
	const struct rpc_method *walk = lookup("/gitaly.InternalGitaly/WalkRepos");
	const struct rpc_method *find = lookup("/gitaly.RemoteService/FindRemoteRepository");
	Gitaly__WalkReposRequest wreq = GITALY__WALK_REPOS_REQUEST__INIT;
	Gitaly__FindRemoteRepositoryRequest freq = GITALY__FIND_REMOTE_REPOSITORY_REQUEST__INIT;
	Gitaly__FindRemoteRepositoryRequest *fback;
	Gitaly__WalkReposRequest *wback;
	struct strbuf out = STRBUF_INIT;
	struct rpc_repo r;
	const char *s;
	size_t slen;

	wreq.storage_name = (char *)"virtual";
	struct buf w = pack(&wreq.base);
	assert_int_equal(rpc_find_storage(walk, w.p, w.len, &s, &slen), 0);
	assert_slice_equal(s, slen, "virtual");
	assert_int_equal(rpc_find_target(walk, w.p, w.len, &r), -ENOENT);
	assert_int_equal(rpc_rewrite_storage(walk, w.p, w.len, "gitaly-2", 8, &out), 0);
	wback = gitaly__walk_repos_request__unpack(NULL, out.len, (uint8_t *)out.buf);
	assert_non_null(wback);
	assert_string_equal(wback->storage_name, "gitaly-2");
	gitaly__walk_repos_request__free_unpacked(wback, NULL);

	freq.remote = (char *)"https://example.com/a.git";
	freq.storage_name = (char *)"virtual";
	struct buf f = pack(&freq.base);
	assert_int_equal(rpc_find_storage(find, f.p, f.len, &s, &slen), 0);
	assert_slice_equal(s, slen, "virtual");
	strbuf_reset(&out);
	assert_int_equal(rpc_rewrite_storage(find, f.p, f.len, "gitaly-2", 8, &out), 0);
	fback = gitaly__find_remote_repository_request__unpack(NULL, out.len, (uint8_t *)out.buf);
	assert_non_null(fback);
	assert_string_equal(fback->remote, "https://example.com/a.git");
	assert_string_equal(fback->storage_name, "gitaly-2");
	gitaly__find_remote_repository_request__free_unpacked(fback, NULL);

	/* proto3: an empty storage name is no storage name. */
	static const uint8_t empty[] = { 0x0a, 0x00 };
	assert_int_equal(rpc_find_storage(walk, empty, sizeof(empty), &s, &slen), -ENOENT);
	assert_int_equal(rpc_find_storage(walk, empty, 0, &s, &slen), -ENOENT);
	/* Repository-scoped methods have no storage field. */
	assert_int_equal(rpc_find_storage(lookup("/gitaly.RepositoryService/CreateRepository"),
					  w.p, w.len, &s, &slen), -ENOENT);

	/* Repeated: the last value wins, and only it survives the rewrite. */
	static const uint8_t twice[] = { 0x0a, 0x01, 'a', 0x0a, 0x01, 'b' };
	assert_int_equal(rpc_find_storage(walk, twice, sizeof(twice), &s, &slen), 0);
	assert_slice_equal(s, slen, "b");
	strbuf_reset(&out);
	assert_int_equal(rpc_rewrite_storage(walk, twice, sizeof(twice), "cc", 2, &out), 0);
	assert_int_equal(out.len, 4);
	assert_memory_equal(out.buf, "\x0a\x02" "cc", 4);

	strbuf_release(&out);
	free(w.p);
	free(f.p);
}

static void test_not_found(void **state)
{
	const struct rpc_method *m = lookup("/gitaly.RepositoryService/RepositorySize");
	struct rpc_repo r;

	assert_int_equal(rpc_find_target(m, (const uint8_t *)"", 0, &r), -ENOENT);
	/* Unknown fields only. */
	static const uint8_t unknown[] = { 0x10, 0x05, 0x1a, 0x01, 'x', 0x7d, 1, 2, 3, 4 };
	assert_int_equal(rpc_find_target(m, unknown, sizeof(unknown), &r), -ENOENT);
	/* Field 1 with the wrong wire type is an unknown field to a decoder. */
	static const uint8_t varint1[] = { 0x08, 0x05 };
	assert_int_equal(rpc_find_target(m, varint1, sizeof(varint1), &r), -ENOENT);

	/* An empty Repository is present: found, with empty strings. */
	static const uint8_t empty_repo[] = { 0x0a, 0x00 };
	assert_int_equal(rpc_find_target(m, empty_repo, sizeof(empty_repo), &r), 0);
	assert_repo(&r, "", "");
	assert_int_equal(r.len, 0);
	struct strbuf out = STRBUF_INIT;
	assert_int_equal(rpc_rewrite_repo(m, RPC_REPO_TARGET, empty_repo, sizeof(empty_repo),
					  "s", 1, "p", 1, &out), 0);
	assert_int_equal(out.len, 8);
	assert_memory_equal(out.buf, "\x0a\x06\x12\x01s\x1a\x01p", 8);
	strbuf_release(&out);
}

static void test_malformed(void **state)
{
	const struct rpc_method *m = lookup("/gitaly.RepositoryService/RepositorySize");
	const struct rpc_method *cf = lookup("/gitaly.OperationService/UserCommitFiles");
	struct strbuf out = STRBUF_INIT;
	struct rpc_repo r;
	const struct {
		const char *what;
		const uint8_t *p;
		size_t len;
	} cases[] = {
#define CASE(what, ...) { what, (const uint8_t[]){ __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ }) }
		CASE("length past the end", 0x0a, 0x05, 0x12, 0x01, 's'),
		CASE("truncated tag", 0x80),
		CASE("truncated length", 0x0a, 0x80),
		CASE("varint overflow", 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02),
		CASE("eleven-byte varint", 0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00),
		CASE("field number 0", 0x02, 0x00),
		CASE("wire type 6", 0x0e),
		CASE("wire type 7", 0x0f),
		CASE("stray end group", 0x0c),
		CASE("unterminated group", 0x13, 0x08, 0x01),
		CASE("mismatched end group", 0x13, 0x1c),
		CASE("truncated fixed64", 0x09, 1, 2, 3),
		CASE("truncated fixed32", 0x0d, 1, 2),
		CASE("bad repository inside", 0x0a, 0x02, 0x12, 0x05),
		CASE("storage not UTF-8", 0x0a, 0x03, 0x12, 0x01, 0xff),
		CASE("overlong UTF-8", 0x0a, 0x04, 0x1a, 0x02, 0xc0, 0xaf),
		CASE("surrogate in UTF-8", 0x0a, 0x05, 0x1a, 0x03, 0xed, 0xa0, 0x80),
		CASE("garbage after the repository", 0x0a, 0x00, 0x12),
		CASE("field number too large", 0xf8, 0xff, 0xff, 0xff, 0x7f, 0x00),
#undef CASE
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int ret = rpc_find_target(m, cases[i].p, cases[i].len, &r);

		if (ret != -EINVAL)
			fail_msg("%s: got %d", cases[i].what, ret);
		assert_int_equal(rpc_rewrite_repo(m, RPC_REPO_TARGET, cases[i].p, cases[i].len,
						  "s", 1, "p", 1, &out), -EINVAL);
		assert_int_equal(out.len, 0);
	}

	/* Groups are skipped like any unknown field; valid UTF-8 passes. */
	static const uint8_t group[] = { 0x13, 0x08, 0x01, 0x23, 0x24, 0x14,
					 0x0a, 0x06, 0x12, 0x04, 0xc3, 0xa9, 0xe2, 0x82 };
	assert_int_equal(rpc_find_target(m, group, sizeof(group), &r), -EINVAL);
	static const uint8_t group_ok[] = { 0x13, 0x08, 0x01, 0x23, 0x24, 0x14,
					    0x0a, 0x07, 0x12, 0x05, 0xc3, 0xa9, 0xe2, 0x82, 0xac };
	assert_int_equal(rpc_find_target(m, group_ok, sizeof(group_ok), &r), 0);
	assert_slice_equal(r.storage, r.storage_len, "\xc3\xa9\xe2\x82\xac");
	assert_int_equal(rpc_rewrite_repo(m, RPC_REPO_TARGET, group_ok, sizeof(group_ok),
					  "s", 1, "", 0, &out), 0);
	assert_int_equal(out.len, 6 + 5);
	assert_memory_equal(out.buf, "\x13\x08\x01\x23\x24\x14\x0a\x03\x12\x01s", 11);

	/* Deep group nesting is refused, not recursed into. */
	uint8_t deep[2 * 40];
	for (size_t i = 0; i < 40; i++) {
		deep[i] = 0x13;
		deep[79 - i] = 0x14;
	}
	assert_int_equal(rpc_find_target(m, deep, sizeof(deep), &r), -EINVAL);

	/* Malformed bytes inside a header occurrence. */
	static const uint8_t bad_header[] = { 0x0a, 0x03, 0x0a, 0x05, 0x00 };
	assert_int_equal(rpc_find_target(cf, bad_header, sizeof(bad_header), &r), -EINVAL);

	strbuf_release(&out);
}

/* Repeated occurrences of a singular message merge, as protobuf says. */
static void test_merge(void **state)
{
	const struct rpc_method *m = lookup("/gitaly.RepositoryService/CreateRepository");
	Gitaly__Repository r1 = GITALY__REPOSITORY__INIT, r2 = GITALY__REPOSITORY__INIT;
	Gitaly__CreateRepositoryRequest q1 = GITALY__CREATE_REPOSITORY_REQUEST__INIT;
	Gitaly__CreateRepositoryRequest q2 = GITALY__CREATE_REPOSITORY_REQUEST__INIT;
	Gitaly__CreateRepositoryRequest *back;
	struct strbuf out = STRBUF_INIT;
	struct rpc_repo r;

	r1.storage_name = (char *)"first-storage";
	r1.relative_path = (char *)"first.git";
	r1.gl_repository = (char *)"project-1";
	r2.relative_path = (char *)"second.git";
	q1.repository = &r1;
	q2.repository = &r2;
	struct buf b = concat(pack(&q1.base), pack(&q2.base));

	/* The merged Repository: storage from the first, path from the second. */
	assert_int_equal(rpc_find_target(m, b.p, b.len, &r), 0);
	assert_repo(&r, "first-storage", "second.git");

	assert_int_equal(rpc_rewrite_repo(m, RPC_REPO_TARGET, b.p, b.len,
					  "new", 3, "new.git", 7, &out), 0);
	back = gitaly__create_repository_request__unpack(NULL, out.len, (uint8_t *)out.buf);
	assert_non_null(back);
	assert_string_equal(back->repository->storage_name, "new");
	assert_string_equal(back->repository->relative_path, "new.git");
	assert_string_equal(back->repository->gl_repository, "project-1");
	gitaly__create_repository_request__free_unpacked(back, NULL);
	/* No old value is left anywhere for a decoder to merge back in. */
	assert_null(memmem(out.buf, out.len, "first", 5));
	assert_null(memmem(out.buf, out.len, "second", 6));

	/* A hostile number of occurrences does not multiply the new strings. */
	static const char big[200] = { 0 };
	size_t n = 10000;
	uint8_t *many = malloc(2 * n);
	assert_non_null(many);
	for (size_t i = 0; i < n; i++) {
		many[2 * i] = 0x0a;
		many[2 * i + 1] = 0x00;
	}
	strbuf_reset(&out);
	assert_int_equal(rpc_rewrite_repo(m, RPC_REPO_TARGET, many, 2 * n,
					  big, sizeof(big), big, sizeof(big), &out), 0);
	assert_true(out.len <= 2 * n + 2 * sizeof(big) + 16);
	free(many);

	strbuf_release(&out);
	free(b.p);
}

/* A table entry with two possible targets, to exercise ambiguity. */
static void test_ambiguous(void **state)
{
	static const struct rpc_step s_repo[] = { { 2, 0, NULL } };
	static const struct rpc_step s_pool[] = { { 1, 0, NULL }, { 1, 0, NULL } };
	static const struct rpc_path paths[] = {
		{ s_repo, 1, 1, "repository(2)" },
		{ s_pool, 2, 1, "object_pool(1).repository(1)" },
	};
	static const struct rpc_method m = {
		.name = "/test.Ambiguous/Method",
		.target = { paths, 2 },
	};
	Gitaly__Repository repo = GITALY__REPOSITORY__INIT;
	Gitaly__ObjectPool pool = GITALY__OBJECT_POOL__INIT;
	Gitaly__LinkRepositoryToObjectPoolRequest req = GITALY__LINK_REPOSITORY_TO_OBJECT_POOL_REQUEST__INIT;
	struct strbuf out = STRBUF_INIT;
	struct rpc_repo r;

	repo.storage_name = (char *)"s";
	repo.relative_path = (char *)"p";
	pool.repository = &repo;
	req.object_pool = &pool;
	req.repository = &repo;
	struct buf both = pack(&req.base);
	assert_int_equal(rpc_find_target(&m, both.p, both.len, &r), -ENOTUNIQ);
	assert_int_equal(rpc_rewrite_repo(&m, RPC_REPO_TARGET, both.p, both.len,
					  "x", 1, "y", 1, &out), -ENOTUNIQ);
	assert_int_equal(out.len, 0);

	/* An ObjectPool without repository still counts as set. */
	pool.repository = NULL;
	struct buf pool_only_empty = pack(&req.base);
	assert_int_equal(rpc_find_target(&m, pool_only_empty.p, pool_only_empty.len, &r),
			 -ENOTUNIQ);

	req.object_pool = NULL;
	struct buf one = pack(&req.base);
	assert_int_equal(rpc_find_target(&m, one.p, one.len, &r), 0);
	assert_ptr_equal(r.path, &paths[0]);

	free(both.p);
	free(pool_only_empty.p);
	free(one.p);
	strbuf_release(&out);
}

/* lib/grpc registers the health service itself, by these paths: the registry must know them. */
static void test_health_paths_are_registered(void **state)
{
	const struct rpc_method *m = rpc_lookup(GRPC_HEALTH_CHECK, strlen(GRPC_HEALTH_CHECK));
	assert_non_null(m);
	assert_false(m->client_streaming);
	assert_false(m->server_streaming);
	m = rpc_lookup(GRPC_HEALTH_WATCH, strlen(GRPC_HEALTH_WATCH));
	assert_non_null(m);
	assert_true(m->server_streaming);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classification),
		cmocka_unit_test(test_intercepted),
		cmocka_unit_test(test_lookup),
		cmocka_unit_test(test_table_invariants),
		cmocka_unit_test(test_router_facts),
		cmocka_unit_test(test_praefect_methods_known),
		cmocka_unit_test(test_target_repository),
		cmocka_unit_test(test_nested_header),
		cmocka_unit_test(test_object_pool),
		cmocka_unit_test(test_storage),
		cmocka_unit_test(test_not_found),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_ambiguous),
		cmocka_unit_test(test_health_paths_are_registered),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
