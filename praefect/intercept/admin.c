/*
 * Our PraefectAdminService (proto/praefect_admin.proto,
 * docs/technical/praefect-cli.md): what upstream's subcommands do straight in
 * PostgreSQL, done by the praefect that owns the store so that its in-memory
 * copy of the records stays exact.
 */
#include "intercept/intercept.h"
#include "base/util.h"
#include "base/log.h"
#include "base/strvec.h"
#include "praefect_admin.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct admin_call {
	struct intercept_pending pc;
	char *vs, *path;
};

static struct admin_call *admin_call_new(struct praefect *p, struct grpc_call *call, const char *vs,
					 const char *path)
{
	struct admin_call *a = xcalloc(1, sizeof(*a));
	intercept_pending_start(&a->pc, p, call);
	a->vs = xstrdup(vs);
	a->path = xstrdup(path);
	return a;
}

static void admin_call_free(struct admin_call *a)
{
	free(a->vs);
	free(a->path);
	free(a);
}

/* A known virtual storage and a relative path, else the call is answered with the error. */
static int check_target(struct grpc_call *call, struct praefect *p, const char *vs, const char *path)
{
	if (!vs || !*vs) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "virtual storage not set", NULL);
		return -1;
	}
	if (!praefect_vs(p, vs, strlen(vs))) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "virtual storage \"%s\" not found", vs);
		return -1;
	}
	if (!path || !*path) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "relative path not set", NULL);
		return -1;
	}
	return 0;
}

/* --- RemoveRepositoryRecords --- */

static void on_records_deleted(void *arg, int status, const char *msg, const char *replica_path,
			       const char *const *storages, size_t n)
{
	struct admin_call *a = arg;
	struct grpc_call *call = intercept_pending_take(&a->pc);
	struct repo *r;

	if (status == 0) {
		r = repo_by_path(a->pc.p, a->vs, strlen(a->vs), a->path, strlen(a->path));
		if (r)
			repo_remove(a->pc.p, r);
		log_msgf(LOG_INFO, "removed the records of %s/%s (replicas left on disk)", a->vs, a->path);
	}
	if (!call) {
		/* nothing to tell */
	} else if (status == -ENOENT) {
		grpc_call_finish(call, GRPC_NOT_FOUND, "repository does not exist", NULL);
	} else if (status < 0) {
		grpc_call_finishf(call, GRPC_INTERNAL, "deleting repository records: %s", msg ? msg : "store error");
	} else {
		Gitaly__RemoveRepositoryRecordsResponse resp = GITALY__REMOVE_REPOSITORY_RECORDS_RESPONSE__INIT;
		resp.replica_path = (char *)(replica_path ? replica_path : "");
		resp.storages = (char **)storages;
		resp.n_storages = n;
		intercept_reply(call, &resp.base);
	}
	admin_call_free(a);
}

static void remove_repository_records(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct praefect *p = data;
	Gitaly__RemoveRepositoryRecordsRequest *q = gitaly__remove_repository_records_request__unpack(NULL, len, req);
	struct admin_call *a;

	if (!q) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		return;
	}
	if (check_target(call, p, q->virtual_storage, q->relative_path) == 0) {
		a = admin_call_new(p, call, q->virtual_storage, q->relative_path);
		store_delete_repository(p->store, a->vs, a->path, on_records_deleted, a);
	}
	gitaly__remove_repository_records_request__free_unpacked(q, NULL);
}

/* --- PurgeReplicationJobs --- */

static void on_purged(void *arg, int status, const char *msg, int64_t in_progress)
{
	struct admin_call *a = arg;
	struct grpc_call *call = intercept_pending_take(&a->pc);

	if (!call) {
		/* nothing to tell */
	} else if (status < 0) {
		grpc_call_finishf(call, GRPC_INTERNAL, "purging replication jobs: %s", msg ? msg : "store error");
	} else {
		Gitaly__PurgeReplicationJobsResponse resp = GITALY__PURGE_REPLICATION_JOBS_RESPONSE__INIT;
		resp.in_progress = in_progress;
		intercept_reply(call, &resp.base);
	}
	admin_call_free(a);
}

static void purge_replication_jobs(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct praefect *p = data;
	Gitaly__PurgeReplicationJobsRequest *q = gitaly__purge_replication_jobs_request__unpack(NULL, len, req);
	struct admin_call *a;

	if (!q) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		return;
	}
	if (check_target(call, p, q->virtual_storage, q->relative_path) == 0) {
		a = admin_call_new(p, call, q->virtual_storage, q->relative_path);
		store_purge_jobs(p->store, a->vs, a->path, on_purged, a);
	}
	gitaly__purge_replication_jobs_request__free_unpacked(q, NULL);
}

/* --- UntrackedReplicas: answered from the in-memory records, which are exact --- */

#define UNTRACKED_MAX_PATHS 4096   /* per request: the CLI sends 256 */

static void untracked_replicas(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct praefect *p = data;
	Gitaly__UntrackedReplicasRequest *q = gitaly__untracked_replicas_request__unpack(NULL, len, req);
	Gitaly__UntrackedReplicasResponse resp = GITALY__UNTRACKED_REPLICAS_RESPONSE__INIT;
	struct vstorage *vs;
	char **untracked;
	size_t n = 0;

	if (!q) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		return;
	}
	vs = q->virtual_storage ? praefect_vs(p, q->virtual_storage, strlen(q->virtual_storage)) : NULL;
	if (!vs) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "virtual storage \"%s\" not found",
				  q->virtual_storage ? q->virtual_storage : "");
		goto out;
	}
	if (q->n_replica_paths > UNTRACKED_MAX_PATHS) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "at most %d replica paths per request",
				  UNTRACKED_MAX_PATHS);
		goto out;
	}
	untracked = xcalloc(q->n_replica_paths + 1, sizeof(*untracked));
	if (q->storage)
		n = repos_untracked(p, vs, q->storage, (const char *const *)q->replica_paths, q->n_replica_paths,
				    untracked);
	else
		for (n = 0; n < q->n_replica_paths; n++)
			untracked[n] = q->replica_paths[n]; /* no storage: nothing of it is tracked */
	resp.replica_paths = untracked;
	resp.n_replica_paths = n;
	intercept_reply(call, &resp.base);
	free(untracked);
out:
	gitaly__untracked_replicas_request__free_unpacked(q, NULL);
}

/* --- TrackRepository --- */

struct track {
	struct admin_call a;
	char *replica_path, *primary;
	struct strvec secondaries;
	int store_assignments, already;
	int64_t id;
	size_t queued;
};

static void track_free(struct track *t)
{
	strvec_clear(&t->secondaries);
	free(t->replica_path);
	free(t->primary);
	free(t->a.vs);
	free(t->a.path);
	free(t);
}

static void track_reply(struct track *t)
{
	struct grpc_call *call = intercept_pending_take(&t->a.pc);
	if (call) {
		Gitaly__TrackRepositoryResponse resp = GITALY__TRACK_REPOSITORY_RESPONSE__INIT;
		resp.repository_id = t->id;
		resp.already_tracked = t->already;
		resp.secondaries = (char **)t->secondaries.v;
		resp.n_secondaries = t->secondaries.nr;
		resp.queued = (int32_t)t->queued;
		intercept_reply(call, &resp.base);
	}
	track_free(t);
}

static void track_fail(struct track *t, enum grpc_code code, const char *fmt, const char *what)
{
	struct grpc_call *call = intercept_pending_take(&t->a.pc);
	if (call)
		grpc_call_finishf(call, code, fmt, what ? what : "store error");
	track_free(t);
}

static void track_enqueue_next(struct track *t);

static void on_track_job(void *arg, int status, const char *msg, int64_t id)
{
	struct track *t = arg;
	struct vstorage *vs = praefect_vs(t->a.pc.p, t->a.vs, strlen(t->a.vs));
	if (status == -EEXIST) {
		track_reply(t); /* an identical job waits already: upstream stops here */
		return;
	}
	if (status < 0) {
		track_fail(t, GRPC_INTERNAL, "queueing replication job: %s", msg);
		return;
	}
	replicator_kick(t->a.pc.p, vs, t->secondaries.v[t->queued]);
	t->queued++;
	track_enqueue_next(t);
}

static void track_enqueue_next(struct track *t)
{
	struct repo *r = repo_by_id(t->a.pc.p, t->id);
	struct repl_job j;

	if (t->queued == t->secondaries.nr) {
		track_reply(t);
		return;
	}
	if (!r) {
		track_fail(t, GRPC_ABORTED, "repository \"%s\" was removed meanwhile", t->a.path);
		return;
	}
	replicator_job_for(&j, r, "update", t->primary, t->secondaries.v[t->queued], "track-repository");
	store_enqueue(t->a.pc.p->store, &j, on_track_job, t);
}

static void on_track_created(void *arg, int status, const char *msg)
{
	struct track *t = arg;
	struct store_repo sr = { 0 };
	struct store_replica *reps;

	if (status == -EEXIST) {
		track_fail(t, GRPC_ALREADY_EXISTS, "repository \"%s\" was created meanwhile", t->a.path);
		return;
	}
	if (status < 0) {
		track_fail(t, GRPC_INTERNAL, "CreateRepository: %s", msg);
		return;
	}
	/* the in-memory copy of what the store now holds */
	reps = xcalloc(t->secondaries.nr + 1, sizeof(*reps));
	reps[0].storage = t->primary;
	reps[0].generation = 0;
	reps[0].assigned = t->store_assignments;
	sr.nr_replicas = 1;
	for (size_t i = 0; t->store_assignments && i < t->secondaries.nr; i++) {
		reps[sr.nr_replicas].storage = t->secondaries.v[i];
		reps[sr.nr_replicas].generation = GENERATION_UNKNOWN;
		reps[sr.nr_replicas++].assigned = 1;
	}
	sr.id = t->id;
	sr.virtual_storage = t->a.vs;
	sr.relative_path = t->a.path;
	sr.replica_path = t->replica_path;
	sr.primary = t->primary;
	sr.generation = 0;
	sr.replicas = reps;
	repo_insert(t->a.pc.p, &sr);
	free(reps);
	log_msgf(LOG_INFO, "tracking %s/%s (replica path %s) from %s", t->a.vs, t->a.path, t->replica_path,
		 t->primary);
	track_enqueue_next(t);
}

static void on_track_reserved(void *arg, int status, const char *msg, int64_t id)
{
	struct track *t = arg;
	struct repo *r;

	if (status == -EEXIST) {
		r = repo_by_path(t->a.pc.p, t->a.vs, strlen(t->a.vs), t->a.path, strlen(t->a.path));
		if (!r) {
			track_fail(t, GRPC_INTERNAL, "GetRepositoryID: %s", "repository not found");
			return;
		}
		t->already = 1;
		t->id = r->id;
		track_enqueue_next(t);
		return;
	}
	if (status < 0) {
		track_fail(t, GRPC_INTERNAL, "ReserveRepositoryID: %s", msg);
		return;
	}
	t->id = id;
	store_create_repository(t->a.pc.p->store, id, t->a.vs, t->a.path, t->replica_path, t->primary, NULL, 0,
				(const char *const *)t->secondaries.v, t->secondaries.nr, 1, t->store_assignments,
				on_track_created, t);
}

static void shuffle(const char **v, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)rand() % i;
		const char *x = v[i - 1];
		v[i - 1] = v[j];
		v[j] = x;
	}
}

static void track_repository(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct praefect *p = data;
	Gitaly__TrackRepositoryRequest *q = gitaly__track_repository_request__unpack(NULL, len, req);
	struct vstorage *vs;
	struct track *t;
	int64_t rf;

	if (!q) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		return;
	}
	if (check_target(call, p, q->virtual_storage, q->relative_path) < 0)
		goto out;
	vs = praefect_vs(p, q->virtual_storage, strlen(q->virtual_storage));
	if (!q->authoritative_storage || !vs_node(vs, q->authoritative_storage)) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "node \"%s\" not found",
				  q->authoritative_storage ? q->authoritative_storage : "");
		goto out;
	}
	t = xcalloc(1, sizeof(*t));
	intercept_pending_start(&t->a.pc, p, call);
	t->a.vs = xstrdup(q->virtual_storage);
	t->a.path = xstrdup(q->relative_path);
	t->replica_path = xstrdup(q->replica_path && *q->replica_path ? q->replica_path : q->relative_path);
	t->primary = xstrdup(q->authoritative_storage);
	strvec_init(&t->secondaries);
	for (size_t i = 0; i < vs->nr_nodes; i++)
		if (strcmp(vs->nodes[i].cfg->storage, t->primary))
			strvec_push(&t->secondaries, vs->nodes[i].cfg->storage);
	rf = vs->cfg->default_replication_factor;
	if (rf > 0) {
		t->store_assignments = 1;
		shuffle(t->secondaries.v, t->secondaries.nr);
		while (t->secondaries.nr > (size_t)(rf - 1)) {
			free((char *)t->secondaries.v[--t->secondaries.nr]);
			t->secondaries.v[t->secondaries.nr] = NULL;
		}
	}
	store_reserve_id(p->store, t->a.vs, t->a.path, on_track_reserved, t);
out:
	gitaly__track_repository_request__free_unpacked(q, NULL);
}

void admin_register(struct praefect *p)
{
	praefect_add_unary(p->server, "/gitaly.PraefectAdminService/TrackRepository", track_repository, p);
	praefect_add_unary(p->server, "/gitaly.PraefectAdminService/UntrackedReplicas", untracked_replicas, p);
	praefect_add_unary(p->server, "/gitaly.PraefectAdminService/RemoveRepositoryRecords",
			   remove_repository_records, p);
	praefect_add_unary(p->server, "/gitaly.PraefectAdminService/PurgeReplicationJobs",
			   purge_replication_jobs, p);
	rstatus_register(p);
}
