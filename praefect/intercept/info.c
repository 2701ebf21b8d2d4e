/*
 * PraefectInfoService RPCs for operators (docs/technical/praefect-routing.md):
 * Dataloss (repositories with replicas that cannot serve as primary) and
 * SetAuthoritativeStorage (accept data loss: make one replica the latest).
 */
#include "intercept/intercept.h"
#include "base/util.h"
#include "base/log.h"
#include "praefect.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DATALOSS_CHUNK 50   /* repositories per response message */

static int send_msg(struct grpc_call *call, const ProtobufCMessage *msg, int finish)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = xmalloc(n ? n : 1);
	int rc;
	protobuf_c_message_pack(msg, buf);
	rc = finish ? grpc_call_reply(call, buf, n) : grpc_call_send(call, buf, n);
	free(buf);
	return rc;
}

/* Valid primary with one praefect: healthy here, up to date, assigned. */
static int valid_primary(struct repo *r, const char *storage)
{
	struct node *n = vs_node(r->vs, storage);
	return n && n->healthy && repo_up_to_date(r, storage) && repo_assigned(r, storage);
}

static int cmp_repo_path(const void *a, const void *b)
{
	return strcmp((*(struct repo *const *)a)->relative_path, (*(struct repo *const *)b)->relative_path);
}

/* The storages reported for a repository: configured ones with a replica or an assignment, by name. */
static size_t repo_storages(struct repo *r, const char **out)
{
	size_t n = 0;
	for (size_t i = 0; i < r->vs->nr_nodes; i++) {
		const char *s = r->vs->nodes[i].cfg->storage;
		struct replica *rep = repo_replica(r, s);
		if ((rep && rep->generation >= 0) || repo_assigned(r, s))
			out[n++] = s;
	}
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(out[j - 1], out[j]) > 0; j--) {
			const char *t = out[j];
			out[j] = out[j - 1];
			out[j - 1] = t;
		}
	return n;
}

static void send_dataloss_chunk(struct grpc_call *call, struct repo **repos, size_t n)
{
	Gitaly__DatalossResponse resp = GITALY__DATALOSS_RESPONSE__INIT;
	Gitaly__DatalossResponse__Repository *rr = xcalloc(n, sizeof(*rr));
	Gitaly__DatalossResponse__Repository **rrp = xcalloc(n, sizeof(*rrp));
	void **allocs = xcalloc(2 * n + 1, sizeof(void *));
	size_t na = 0;

	for (size_t i = 0; i < n; i++) {
		struct repo *r = repos[i];
		const char **names = xcalloc(r->vs->nr_nodes + 1, sizeof(*names));
		size_t ns = repo_storages(r, names);
		Gitaly__DatalossResponse__Repository__Storage *st = xcalloc(ns ? ns : 1, sizeof(*st));
		Gitaly__DatalossResponse__Repository__Storage **stp = xcalloc(ns ? ns : 1, sizeof(*stp));
		int any_valid = 0;
		allocs[na++] = st;
		allocs[na++] = stp;
		gitaly__dataloss_response__repository__init(&rr[i]);
		for (size_t k = 0; k < ns; k++) {
			struct replica *rep = repo_replica(r, names[k]);
			struct node *node = vs_node(r->vs, names[k]);
			gitaly__dataloss_response__repository__storage__init(&st[k]);
			st[k].name = (char *)names[k];
			st[k].behind_by = r->generation - (rep ? rep->generation : GENERATION_UNKNOWN);
			st[k].assigned = repo_assigned(r, names[k]);
			st[k].healthy = node && node->healthy;
			st[k].valid_primary = valid_primary(r, names[k]);
			any_valid |= st[k].valid_primary;
			stp[k] = &st[k];
		}
		free(names);
		rr[i].relative_path = r->relative_path;
		rr[i].storages = stp;
		rr[i].n_storages = ns;
		rr[i].unavailable = !any_valid;
		rr[i].primary = r->primary ? r->primary : (char *)"";
		rrp[i] = &rr[i];
	}
	resp.repositories = rrp;
	resp.n_repositories = n;
	send_msg(call, &resp.base, 0);
	for (size_t i = 0; i < na; i++)
		free(allocs[i]);
	free(allocs);
	free(rr);
	free(rrp);
}

static void dataloss(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct praefect *p = data;
	Gitaly__DatalossRequest *q = gitaly__dataloss_request__unpack(NULL, len, req);
	struct vstorage *vs;
	struct repo **list = NULL;
	size_t n = 0, alloc = 0;
	int partial;

	if (!q) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		return;
	}
	vs = q->virtual_storage ? praefect_vs(p, q->virtual_storage, strlen(q->virtual_storage)) : NULL;
	partial = q->include_partially_replicated;
	if (!vs) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "unknown virtual storage: \"%s\"",
				  q->virtual_storage ? q->virtual_storage : "");
		gitaly__dataloss_request__free_unpacked(q, NULL);
		return;
	}
	gitaly__dataloss_request__free_unpacked(q, NULL);

	for (size_t i = 0; i < p->repos.cap; i++) {
		struct repo *r = p->repos.by_id[i];
		if (!r)
			continue;
		int assigned_invalid = 0, any_valid = 0;
		if (r->vs != vs)
			continue;
		for (size_t k = 0; k < vs->nr_nodes; k++) {
			const char *s = vs->nodes[k].cfg->storage;
			int v = valid_primary(r, s);
			any_valid |= v;
			if (repo_assigned(r, s) && !v)
				assigned_invalid = 1;
		}
		if (!assigned_invalid || (!partial && any_valid))
			continue;
		ALLOC_GROW(list, n + 1, alloc);
		list[n++] = r;
	}
	if (n)
		qsort(list, n, sizeof(*list), cmp_repo_path);
	for (size_t off = 0; off < n; off += DATALOSS_CHUNK)
		send_dataloss_chunk(call, list + off, MIN((size_t)DATALOSS_CHUNK, n - off));
	free(list);
	grpc_call_finish(call, GRPC_OK, NULL, NULL);
}

/* --- SetAuthoritativeStorage --- */

struct authoritative {
	struct praefect *p;
	struct grpc_call *call;
	char *vs, *path, *storage;
};

static void auth_close(struct grpc_call *call, enum grpc_code code, void *arg)
{
	((struct authoritative *)arg)->call = NULL;
}

static void on_authoritative(void *arg, int status, const char *msg, int64_t gen)
{
	struct authoritative *a = arg;
	struct repo *r = repo_by_path(a->p, a->vs, strlen(a->vs), a->path, strlen(a->path));
	if (status == 0 && r) {
		struct replica *rep = repo_replica_add(r, a->storage);
		r->generation = gen;
		rep->generation = gen;
		log_msgf(LOG_INFO, "accepted data loss: %s/%s is authoritative on %s at generation %lld", a->vs,
			 a->path, a->storage, (long long)gen);
		/* every other replica is outdated now: repair them from the authoritative one */
		praefect_node_health_changed(a->p, vs_node(r->vs, a->storage));
	}
	if (a->call) {
		grpc_call_on_close(a->call, NULL, NULL);
		if (status == -ENOENT) {
			grpc_call_finishf(a->call, GRPC_INVALID_ARGUMENT, "repository \"%s\"/\"%s\" not found", a->vs,
					  a->path);
		} else if (status < 0) {
			grpc_call_finishf(a->call, GRPC_INTERNAL, "set authoritative storage: %s", msg ? msg : "");
		} else {
			Gitaly__SetAuthoritativeStorageResponse resp = GITALY__SET_AUTHORITATIVE_STORAGE_RESPONSE__INIT;
			send_msg(a->call, &resp.base, 1);
		}
	}
	free(a->vs);
	free(a->path);
	free(a->storage);
	free(a);
}

static void set_authoritative_storage(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct praefect *p = data;
	Gitaly__SetAuthoritativeStorageRequest *q = gitaly__set_authoritative_storage_request__unpack(NULL, len, req);
	struct vstorage *vs;
	struct authoritative *a;

	if (!q) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		return;
	}
	vs = q->virtual_storage ? praefect_vs(p, q->virtual_storage, strlen(q->virtual_storage)) : NULL;
	if (!vs) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "unknown virtual storage: \"%s\"",
				  q->virtual_storage ? q->virtual_storage : "");
	} else if (!q->authoritative_storage || !vs_node(vs, q->authoritative_storage)) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "unknown authoritative storage: \"%s\"",
				  q->authoritative_storage ? q->authoritative_storage : "");
	} else if (!q->relative_path || !*q->relative_path) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "repository path not set", NULL);
	} else {
		a = xcalloc(1, sizeof(*a));
		a->p = p;
		a->call = call;
		a->vs = xstrdup(q->virtual_storage);
		a->path = xstrdup(q->relative_path);
		a->storage = xstrdup(q->authoritative_storage);
		grpc_call_on_close(call, auth_close, a);
		store_set_authoritative(p->store, a->vs, a->path, a->storage, on_authoritative, a);
	}
	gitaly__set_authoritative_storage_request__free_unpacked(q, NULL);
}

void info_register(struct praefect *p)
{
	praefect_add_unary(p->server, "/gitaly.PraefectInfoService/Dataloss", dataloss, p);
	praefect_add_unary(p->server, "/gitaly.PraefectInfoService/SetAuthoritativeStorage",
			      set_authoritative_storage, p);
	info_admin_register(p);
	admin_register(p);
}
