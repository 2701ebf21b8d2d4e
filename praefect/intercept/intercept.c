/*
 * RPCs praefect answers itself (docs/technical/praefect-routing.md): RepositoryExists
 * from its records, RemoveRepository (records first, then every replica;
 * DeleteObjectPool, pools.c, shares that),
 * ServerInfo and DiskStatistics aggregated over the nodes, and
 * PraefectInfoService/GetRepositoryMetadata.
 */
#include "intercept/intercept.h"
#include "base/util.h"
#include "base/log.h"
#include "grpc/auth.h"
#include "git/relpath.h"
#include "repository.pb-c.h"
#include "server.pb-c.h"
#include "praefect.pb-c.h"

#include <errno.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int intercept_reply(struct grpc_call *call, const ProtobufCMessage *msg)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = xmalloc(n ? n : 1);
	int rc;
	protobuf_c_message_pack(msg, buf);
	rc = grpc_call_reply(call, buf, n);
	free(buf);
	return rc;
}

static void pending_closed(struct grpc_call *call, enum grpc_code code, void *arg)
{
	((struct intercept_pending *)arg)->call = NULL;
}

void intercept_pending_start(struct intercept_pending *pc, struct praefect *p, struct grpc_call *call)
{
	pc->p = p;
	pc->call = call;
	grpc_call_on_close(call, pending_closed, pc);
}

struct grpc_call *intercept_pending_take(struct intercept_pending *pc)
{
	struct grpc_call *call = pc->call;
	if (call)
		grpc_call_on_close(call, NULL, NULL);
	pc->call = NULL;
	return call;
}

/* Validate the target repository the way the proxy does, with the same messages in the same order. */
static int check_repo(struct praefect *p, struct grpc_call *call, const Gitaly__Repository *r)
{
	if (!r || ((!r->storage_name || !*r->storage_name) && (!r->relative_path || !*r->relative_path))) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "repository not set", NULL);
		return -1;
	}
	if (!r->storage_name || !*r->storage_name) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "storage name not set", NULL);
		return -1;
	}
	if (!r->relative_path || !*r->relative_path) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "repository path not set", NULL);
		return -1;
	}
	if (!praefect_vs(p, r->storage_name, strlen(r->storage_name))) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "storage name not found: \"%s\"", r->storage_name);
		return -1;
	}
	if (git_relpath_check(r->relative_path, strlen(r->relative_path)) < 0) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, GIT_RELPATH_ESCAPES, NULL);
		return -1;
	}
	return 0;
}

/* --- RepositoryExists: answered from the records, no node contacted --- */

static void repository_exists(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct praefect *p = data;
	Gitaly__RepositoryExistsRequest *r = gitaly__repository_exists_request__unpack(NULL, len, req);
	Gitaly__RepositoryExistsResponse resp = GITALY__REPOSITORY_EXISTS_RESPONSE__INIT;
	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		return;
	}
	if (check_repo(p, call, r->repository) == 0) {
		resp.exists = repo_by_path(p, r->repository->storage_name, strlen(r->repository->storage_name),
					   r->repository->relative_path, strlen(r->repository->relative_path)) != NULL;
		intercept_reply(call, &resp.base);
	}
	gitaly__repository_exists_request__free_unpacked(r, NULL);
}

/* --- RemoveRepository: delete the record, then every replica (failures only logged) --- */

struct removal {
	struct intercept_pending pc;
	char *vs;
	Gitaly__Repository *repo;      /* the request's repository, other fields kept */
	ProtobufCMessage *req;         /* RemoveRepository's or DeleteObjectPool's request */
	const struct rpc_method *method;
	int error_on_not_found;
	size_t pending;
};

static void removal_maybe_done(struct removal *rm)
{
	Gitaly__RemoveRepositoryResponse resp = GITALY__REMOVE_REPOSITORY_RESPONSE__INIT;
	if (rm->pending)
		return;
	struct grpc_call *call = intercept_pending_take(&rm->pc);
	if (call)
		intercept_reply(call, &resp.base);
	protobuf_c_message_free_unpacked(rm->req, NULL);
	free(rm->vs);
	free(rm);
}

/* One replica's removal; a failed one is retried by the replicator (a `delete` job). */
struct replica_removal {
	struct removal *rm;
	int64_t repo_id;
	char *storage, *replica_path;
};

static void on_retry_queued(void *arg, int status, const char *msg, int64_t id)
{
	if (status < 0 && status != -EEXIST)
		log_msgf(LOG_WARN, "queueing the retry of a replica removal failed: %s", msg ? msg : "store error");
}

static void on_node_removed(struct grpc_client_call *cc, enum grpc_code code, const char *message,
			    const struct grpc_metadata *trailers)
{
	struct replica_removal *rr = grpc_client_call_user(cc);
	struct removal *rm = rr->rm;
	struct vstorage *vs = praefect_vs(rm->pc.p, rm->vs, strlen(rm->vs));

	if (code != GRPC_OK && code != GRPC_NOT_FOUND) {
		struct repl_job j = { 0 };
		log_msgf(LOG_WARN, "removing the replica of %s/%s on %s failed, retried later: %s", rm->vs,
			 rm->repo->relative_path, rr->storage, message ? message : grpc_code_name(code));
		/* the record is gone: the job carries the replica path (replicator.c uses it then) */
		j.change = "delete";
		j.repository_id = rr->repo_id;
		j.virtual_storage = rm->vs;
		j.relative_path = rm->repo->relative_path;
		j.replica_path = rr->replica_path;
		j.source_storage = "";
		j.target_storage = rr->storage;
		j.correlation_id = "remove-repository";
		store_enqueue(rm->pc.p->store, &j, on_retry_queued, NULL);
		if (vs)
			replicator_kick(rm->pc.p, vs, rr->storage);
	}
	free(rr->storage);
	free(rr->replica_path);
	free(rr);
	rm->pending--;
	removal_maybe_done(rm);
}

static const struct grpc_client_ops node_remove_ops = { .on_close = on_node_removed };

static void on_record_deleted(void *arg, int status, const char *msg, const char *replica_path,
			      const char *const *storages, size_t n)
{
	struct removal *rm = arg;
	struct vstorage *vs = praefect_vs(rm->pc.p, rm->vs, strlen(rm->vs));
	struct grpc_call *call;
	struct repo *r;
	int64_t repo_id;

	if (status == -ENOENT) {
		if (rm->error_on_not_found && (call = intercept_pending_take(&rm->pc)))
			grpc_call_finish(call, GRPC_NOT_FOUND, "repository does not exist", NULL);
		rm->pending = 0;
		removal_maybe_done(rm);   /* without the error: an empty answer */
		return;
	}
	if (status < 0) {
		if ((call = intercept_pending_take(&rm->pc)))
			grpc_call_finishf(call, GRPC_INTERNAL, "deleting repository records: %s", msg ? msg : "");
		removal_maybe_done(rm);
		return;
	}
	r = repo_by_path(rm->pc.p, rm->vs, strlen(rm->vs), rm->repo->relative_path, strlen(rm->repo->relative_path));
	repo_id = r ? r->id : 0;
	if (r)
		repo_remove(rm->pc.p, r);
	/* fan out with the replica path on every storage that had a replica, one 10 s deadline */
	rm->pending = 1;
	for (size_t i = 0; vs && i < n; i++) {
		struct node *node = vs_node(vs, storages[i]);
		struct grpc_metadata md = GRPC_METADATA_INIT;
		struct grpc_client_call *cc;
		struct replica_removal *rr;
		size_t len;
		uint8_t *buf;
		if (!node)
			continue;
		{
			/* the same request, rewritten to the node's storage and the replica path */
			char *orig_storage = rm->repo->storage_name, *orig_path = rm->repo->relative_path;
			rm->repo->storage_name = (char *)storages[i];
			rm->repo->relative_path = (char *)replica_path;
			len = protobuf_c_message_get_packed_size(rm->req);
			buf = xmalloc(len ? len : 1);
			protobuf_c_message_pack(rm->req, buf);
			rm->repo->storage_name = orig_storage;
			rm->repo->relative_path = orig_path;
		}
		node_call_metadata(node, rm->pc.call ? grpc_call_metadata(rm->pc.call) : NULL, &md);
		rr = xcalloc(1, sizeof(*rr));
		rr->rm = rm;
		rr->repo_id = repo_id;
		rr->storage = xstrdup(storages[i]);
		rr->replica_path = xstrdup(replica_path);
		if (grpc_channel_call(node->ch, rm->method->name, &md, 10000, 0,
				      &node_remove_ops, rr, &cc) == 0) {
			rm->pending++;
			grpc_client_call_send(cc, buf, len);
			grpc_client_call_close_send(cc);
		} else {
			free(rr->storage);
			free(rr->replica_path);
			free(rr);
		}
		grpc_metadata_release(&md);
		free(buf);
	}
	rm->pending--;
	removal_maybe_done(rm);
}

static void remove_repository(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct praefect *p = data;
	Gitaly__RemoveRepositoryRequest *r = gitaly__remove_repository_request__unpack(NULL, len, req);
	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		return;
	}
	if (check_repo(p, call, r->repository) < 0) {
		gitaly__remove_repository_request__free_unpacked(r, NULL);
		return;
	}
	intercept_remove(p, call, &r->base, r->repository, p->calls.remove_repository, 1);
}

void intercept_remove(struct praefect *p, struct grpc_call *call, ProtobufCMessage *req, Gitaly__Repository *repo,
		      const struct rpc_method *m, int error_on_not_found)
{
	struct removal *rm = xcalloc(1, sizeof(*rm));
	intercept_pending_start(&rm->pc, p, call);
	rm->req = req;
	rm->repo = repo;
	rm->method = m;
	rm->error_on_not_found = error_on_not_found;
	rm->vs = xstrdup(repo->storage_name ? repo->storage_name : "");
	store_delete_repository(p->store, rm->vs, rm->repo->relative_path, on_record_deleted, rm);
}

/* --- ServerInfo: one node per virtual storage, renamed to the virtual storage --- */

struct info {
	struct praefect *p;
	struct grpc_call *call;
	size_t pending;
	Gitaly__ServerInfoResponse__StorageStatus **st;
	size_t nr;
	char *server_version, *git_version;
};

struct info_part {
	struct info *info;
	struct vstorage *vs;
	struct node *node;
};

static void info_close(struct grpc_call *call, enum grpc_code code, void *arg)
{
	((struct info *)arg)->call = NULL;
}

/* UUIDv5 (SHA-1 name-based) of the virtual storage name, as upstream derives filesystem_id. */
static void uuid5(const char *name, char out[37])
{
	static const unsigned char ns[16] = { 0x1e, 0xf1, 0xa8, 0xc6, 0xcf, 0x52, 0x4d, 0x0a,
					      0x92, 0xa6, 0xca, 0x64, 0x3e, 0x8b, 0xc7, 0xc5 };
	unsigned char h[SHA_DIGEST_LENGTH];
	size_t n = strlen(name);
	unsigned char *buf = xmalloc(sizeof(ns) + n);
	memcpy(buf, ns, sizeof(ns));
	memcpy(buf + sizeof(ns), name, n);
	SHA1(buf, sizeof(ns) + n, h);
	free(buf);
	h[6] = (h[6] & 0x0f) | 0x50;
	h[8] = (h[8] & 0x3f) | 0x80;
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", h[0], h[1],
		 h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]);
}

static void info_maybe_done(struct info *in)
{
	Gitaly__ServerInfoResponse resp = GITALY__SERVER_INFO_RESPONSE__INIT;
	if (--in->pending)
		return;
	resp.server_version = in->server_version ? in->server_version : (char *)"";
	resp.git_version = in->git_version ? in->git_version : (char *)"";
	resp.storage_statuses = in->st;
	resp.n_storage_statuses = in->nr;
	if (in->call) {
		grpc_call_on_close(in->call, NULL, NULL);
		intercept_reply(in->call, &resp.base);
	}
	for (size_t i = 0; i < in->nr; i++) {
		free(in->st[i]->storage_name);
		free(in->st[i]->fs_type);
		free(in->st[i]->filesystem_id);
		free(in->st[i]);
	}
	free(in->st);
	free(in->server_version);
	free(in->git_version);
	free(in);
}

static void info_part_done(void *arg, enum grpc_code code, const char *message, const uint8_t *msg, size_t len)
{
	struct info_part *ip = arg;
	struct info *in = ip->info;
	Gitaly__ServerInfoResponse *r = msg ? gitaly__server_info_response__unpack(NULL, len, msg) : NULL;

	(void)code;
	if (!r) {
		log_msgf(LOG_WARN, "ServerInfo from %s/%s failed: %s", ip->vs->cfg->name, ip->node->cfg->storage,
			 message ? message : "bad response");
	} else {
		if (!in->server_version && r->server_version)
			in->server_version = xstrdup(r->server_version);
		if (!in->git_version && r->git_version)
			in->git_version = xstrdup(r->git_version);
		for (size_t i = 0; i < r->n_storage_statuses; i++) {
			Gitaly__ServerInfoResponse__StorageStatus *s = r->storage_statuses[i], *o;
			char fsid[37];
			if (!s->storage_name || strcmp(s->storage_name, ip->node->cfg->storage))
				continue;
			o = xcalloc(1, sizeof(*o));
			gitaly__server_info_response__storage_status__init(o);
			o->storage_name = xstrdup(ip->vs->cfg->name);
			o->readable = s->readable;
			o->writeable = s->writeable;
			o->fs_type = xstrdup(s->fs_type ? s->fs_type : "");
			if (ip->vs->nr_nodes > 1) {
				uuid5(ip->vs->cfg->name, fsid);
				o->filesystem_id = xstrdup(fsid);
			} else {
				o->filesystem_id = xstrdup(s->filesystem_id ? s->filesystem_id : "");
			}
			o->replication_factor = (uint32_t)ip->vs->nr_nodes;
			in->st = xrealloc(in->st, (in->nr + 1) * sizeof(*in->st));
			in->st[in->nr++] = o;
		}
		gitaly__server_info_response__free_unpacked(r, NULL);
	}
	free(ip);
	info_maybe_done(in);
}

static void server_info(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct praefect *p = data;
	struct info *in = xcalloc(1, sizeof(*in));
	in->p = p;
	in->call = call;
	in->pending = 1;
	grpc_call_on_close(call, info_close, in);
	for (size_t i = 0; i < p->nr_vs; i++) {
		struct vstorage *vs = &p->vs[i];
		struct node *n = &vs->nodes[0];
		struct info_part *ip;
		for (size_t j = 0; j < vs->nr_nodes; j++)
			if (vs->nodes[j].healthy) {
				n = &vs->nodes[j];
				break;
			}
		ip = xcalloc(1, sizeof(*ip));
		ip->info = in;
		ip->vs = vs;
		ip->node = n;
		if (node_unary(n, p->calls.server_info->name, "", 0, 10000, info_part_done, ip) == 0)
			in->pending++;
		else
			free(ip);
	}
	info_maybe_done(in);
}

/* --- GetRepositoryMetadata --- */

static int node_healthy(struct repo *r, const char *storage)
{
	struct node *n = vs_node(r->vs, storage);
	return n && n->healthy;
}

/*
 * The answer comes from the in-memory records, but verification times are
 * kept only in the store: read them there, then answer.
 */
struct metadata_call {
	struct praefect *p;
	struct grpc_call *call;
	int64_t id;
};

static void metadata_close(struct grpc_call *call, enum grpc_code code, void *arg)
{
	((struct metadata_call *)arg)->call = NULL;
}

static void on_metadata_read(void *arg, int status, const char *msg, const struct store_repo *srepos, size_t nr)
{
	struct metadata_call *mc = arg;
	struct repo *r = repo_by_id(mc->p, mc->id);
	Gitaly__GetRepositoryMetadataResponse resp = GITALY__GET_REPOSITORY_METADATA_RESPONSE__INIT;
	Gitaly__GetRepositoryMetadataResponse__Replica *reps, **repp;
	Google__Protobuf__Timestamp *ts;
	const struct store_repo *sr = status == 0 && nr == 1 ? &srepos[0] : NULL;
	struct grpc_call *call = mc->call;
	size_t n = 0;

	free(mc);
	if (!call)
		return;
	grpc_call_on_close(call, NULL, NULL);
	if (!r) {
		grpc_call_finish(call, GRPC_NOT_FOUND, "repository not found", NULL);
		return;
	}
	if (status < 0 && status != -ENOENT) {
		grpc_call_finishf(call, GRPC_INTERNAL, "reading repository metadata: %s", msg ? msg : "store error");
		return;
	}
	/* every configured storage that has a replica or an assignment, sorted by name */
	reps = xcalloc(r->vs->nr_nodes + r->nr_replicas + 1, sizeof(*reps));
	repp = xcalloc(r->vs->nr_nodes + r->nr_replicas + 1, sizeof(*repp));
	ts = xcalloc(r->vs->nr_nodes + r->nr_replicas + 1, sizeof(*ts));
	for (size_t i = 0; i < r->vs->nr_nodes; i++) {
		const char *s = r->vs->nodes[i].cfg->storage;
		struct replica *rep = repo_replica(r, s);
		int assigned = repo_assigned(r, s);
		if ((!rep || rep->generation < 0) && !assigned)
			continue;
		gitaly__get_repository_metadata_response__replica__init(&reps[n]);
		reps[n].storage = (char *)s;
		reps[n].assigned = assigned;
		reps[n].generation = rep ? rep->generation : GENERATION_UNKNOWN;
		reps[n].healthy = node_healthy(r, s);
		reps[n].valid_primary = reps[n].healthy && assigned && repo_up_to_date(r, s);
		for (size_t k = 0; sr && k < sr->nr_replicas; k++)
			if (!strcmp(sr->replicas[k].storage, s) && sr->replicas[k].verified_at_ms > 0) {
				google__protobuf__timestamp__init(&ts[n]);
				ts[n].seconds = sr->replicas[k].verified_at_ms / 1000;
				ts[n].nanos = (int32_t)(sr->replicas[k].verified_at_ms % 1000) * 1000000;
				reps[n].verified_at = &ts[n];
			}
		repp[n] = &reps[n];
		n++;
	}
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(repp[j - 1]->storage, repp[j]->storage) > 0; j--) {
			Gitaly__GetRepositoryMetadataResponse__Replica *t = repp[j];
			repp[j] = repp[j - 1];
			repp[j - 1] = t;
		}
	resp.repository_id = r->id;
	resp.virtual_storage = (char *)r->vs->cfg->name;
	resp.relative_path = r->relative_path;
	resp.replica_path = r->replica_path;
	resp.primary = r->primary ? r->primary : (char *)"";
	resp.generation = r->generation;
	resp.replicas = repp;
	resp.n_replicas = n;
	intercept_reply(call, &resp.base);
	free(reps);
	free(repp);
	free(ts);
}

static void get_repository_metadata(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct praefect *p = data;
	Gitaly__GetRepositoryMetadataRequest *q = gitaly__get_repository_metadata_request__unpack(NULL, len, req);
	struct metadata_call *mc;
	struct repo *r = NULL;

	if (!q) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		return;
	}
	if (q->query_case == GITALY__GET_REPOSITORY_METADATA_REQUEST__QUERY_REPOSITORY_ID)
		r = repo_by_id(p, q->repository_id);
	else if (q->query_case == GITALY__GET_REPOSITORY_METADATA_REQUEST__QUERY_PATH && q->path &&
		 q->path->virtual_storage && q->path->relative_path)
		r = repo_by_path(p, q->path->virtual_storage, strlen(q->path->virtual_storage),
				 q->path->relative_path, strlen(q->path->relative_path));
	gitaly__get_repository_metadata_request__free_unpacked(q, NULL);
	if (!r) {
		grpc_call_finish(call, GRPC_NOT_FOUND, "repository not found", NULL);
		return;
	}
	mc = xcalloc(1, sizeof(*mc));
	mc->p = p;
	mc->call = call;
	mc->id = r->id;
	grpc_call_on_close(call, metadata_close, mc);
	store_get_repository(p->store, r->vs->cfg->name, r->relative_path, on_metadata_read, mc);
}

void intercept_register(struct praefect *p)
{
	praefect_add_unary(p->server, "/gitaly.RepositoryService/RepositoryExists", repository_exists, p);
	praefect_add_unary(p->server, "/gitaly.RepositoryService/RemoveRepository", remove_repository, p);
	praefect_add_unary(p->server, "/gitaly.ObjectPoolService/DeleteObjectPool", intercept_delete_object_pool, p);
	praefect_add_unary(p->server, "/gitaly.ServerService/ServerInfo", server_info, p);
	praefect_add_unary(p->server, "/gitaly.PraefectInfoService/GetRepositoryMetadata",
			      get_repository_metadata, p);
}
