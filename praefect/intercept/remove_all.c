/*
 * RepositoryService/RemoveAll on a virtual storage, answered by praefect as
 * upstream does: every repository record of the virtual storage goes, then
 * every node of it removes everything in its storage; the first node
 * failure is the answer (docs/technical/housekeeping.md, "RemoveAll").
 */
#include "intercept/intercept.h"
#include "base/log.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <stdlib.h>
#include <string.h>

struct remove_all {
	struct praefect *p;
	struct grpc_call *call;
	char *vs;
	size_t pending;
	enum grpc_code code;
	char *msg;
};

static void ra_close(struct grpc_call *call, enum grpc_code code, void *arg)
{
	struct remove_all *ra = arg;
	(void)call;
	(void)code;
	ra->call = NULL;
}

static void ra_maybe_done(struct remove_all *ra)
{
	Gitaly__RemoveAllResponse resp = GITALY__REMOVE_ALL_RESPONSE__INIT;
	if (ra->pending)
		return;
	if (ra->call) {
		grpc_call_on_close(ra->call, NULL, NULL);
		if (ra->code == GRPC_OK)
			intercept_reply(ra->call, &resp.base);
		else
			grpc_call_finish(ra->call, ra->code, ra->msg, NULL);
	}
	free(ra->vs);
	free(ra->msg);
	free(ra);
}

static void on_node_done(struct grpc_client_call *cc, enum grpc_code code, const char *message,
			 const struct grpc_metadata *trailers)
{
	struct remove_all *ra = grpc_client_call_user(cc);
	(void)trailers;
	if (code != GRPC_OK && ra->code == GRPC_OK) {
		ra->code = code;
		ra->msg = xstrdup(message ? message : grpc_code_name(code));
	}
	ra->pending--;
	ra_maybe_done(ra);
}

static const struct grpc_client_ops node_ops = { .on_close = on_node_done };

/* Forget the virtual storage's repositories in the in-memory model too. */
static void forget_repositories(struct praefect *p, struct vstorage *vs)
{
	struct repo **gone = NULL;
	size_t nr = 0, alloc = 0;
	for (size_t i = 0; i < p->repos.cap; i++) {
		struct repo *r = p->repos.by_id[i];
		if (!r)
			continue;
		if (r->vs == vs) {
			ALLOC_GROW(gone, nr + 1, alloc);
			gone[nr++] = r;
		}
	}
	for (size_t i = 0; i < nr; i++)
		repo_remove(p, gone[i]);
	free(gone);
}

static void on_records_deleted(void *arg, int status, const char *msg, int64_t count)
{
	struct remove_all *ra = arg;
	struct vstorage *vs = praefect_vs(ra->p, ra->vs, strlen(ra->vs));

	if (status < 0) {
		ra->code = GRPC_INTERNAL;
		ra->msg = xstrdup(msg ? msg : "delete all db repositories: store error");
		ra->pending = 0;
		ra_maybe_done(ra);
		return;
	}
	log_msgf(LOG_INFO, "removing all %lld repositories of virtual storage \"%s\"", (long long)count, ra->vs);
	ra->pending = 1;
	if (vs) {
		forget_repositories(ra->p, vs);
		for (size_t i = 0; i < vs->nr_nodes; i++) {
			struct node *n = &vs->nodes[i];
			Gitaly__RemoveAllRequest req = GITALY__REMOVE_ALL_REQUEST__INIT;
			struct grpc_metadata md = GRPC_METADATA_INIT;
			struct grpc_client_call *cc;
			size_t len;
			uint8_t *buf;

			req.storage_name = n->cfg->storage;   /* the node's own storage name */
			len = gitaly__remove_all_request__get_packed_size(&req);
			buf = xmalloc(len ? len : 1);
			gitaly__remove_all_request__pack(&req, buf);
			node_call_metadata(n, ra->call ? grpc_call_metadata(ra->call) : NULL, &md);
			if (grpc_channel_call(n->ch, ra->p->calls.remove_all->name, &md, 60000, 0, &node_ops, ra, &cc) == 0) {
				ra->pending++;
				grpc_client_call_send(cc, buf, len);
				grpc_client_call_close_send(cc);
			} else if (ra->code == GRPC_OK) {
				ra->code = GRPC_UNAVAILABLE;
				ra->msg = xstrdup("remove all: node unreachable");
			}
			grpc_metadata_release(&md);
			free(buf);
		}
	}
	ra->pending--;
	ra_maybe_done(ra);
}

static void remove_all(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct praefect *p = data;
	Gitaly__RemoveAllRequest *r = gitaly__remove_all_request__unpack(NULL, len, req);
	struct remove_all *ra;

	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		return;
	}
	ra = xcalloc(1, sizeof(*ra));
	ra->p = p;
	ra->call = call;
	ra->vs = xstrdup(r->storage_name ? r->storage_name : "");
	gitaly__remove_all_request__free_unpacked(r, NULL);
	grpc_call_on_close(call, ra_close, ra);
	store_delete_all_repositories(p->store, ra->vs, on_records_deleted, ra);
}

void intercept_register_remove_all(struct praefect *p)
{
	praefect_add_unary(p->server, "/gitaly.RepositoryService/RemoveAll", remove_all, p);
}
