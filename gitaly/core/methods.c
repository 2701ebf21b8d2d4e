/*
 * Every registration and outbound method path, checked against the generated
 * RPC registry; and the concurrency limiter in front of the handlers that
 * [[concurrency]] names.
 */
#include "core/methods.h"
#include "core/gitaly.h"
#include "core/limit.h"
#include "base/hashmap.h"
#include "base/log.h"
#include "base/util.h"
#include "rpc/registry.h"
#include "errors.pb-c.h"

#include <stdlib.h>
#include <string.h>

const char *const gitaly_out[OUT_METHODS_NR] = {
	[OUT_VOTE_TRANSACTION] = "/gitaly.RefTransaction/VoteTransaction",
	[OUT_STOP_TRANSACTION] = "/gitaly.RefTransaction/StopTransaction",
	[OUT_REPOSITORY_EXISTS] = "/gitaly.RepositoryService/RepositoryExists",
	[OUT_GET_SNAPSHOT] = "/gitaly.RepositoryService/GetSnapshot",
	[OUT_GET_CONFIG] = "/gitaly.RepositoryService/GetConfig",
	[OUT_GET_INFO_ATTRIBUTES] = "/gitaly.RepositoryService/GetInfoAttributes",
	[OUT_GET_OBJECT_POOL] = "/gitaly.ObjectPoolService/GetObjectPool",
	[OUT_FIND_DEFAULT_BRANCH_NAME] = "/gitaly.RefService/FindDefaultBranchName",
	[OUT_GET_CUSTOM_HOOKS] = "/gitaly.RepositoryService/GetCustomHooks",
	[OUT_FIND_COMMIT] = "/gitaly.CommitService/FindCommit",
};

/* Upstream limits ReplicateRepository to one call per repository unless configured otherwise. */
#define REPLICATE_REPOSITORY "/gitaly.RepositoryService/ReplicateRepository"

/* One limited method: its limiter and the handler behind it. */
struct limited_method {
	struct gitaly_limits *ls;
	struct limit *l;
	char *path;
	const struct rpc_method *m;
	grpc_unary_fn fn;          /* one of fn and start, once registered */
	grpc_start_fn start;
	void *data;
};

struct gitaly_limits {
	struct limited_method *v;
	size_t nr;
	struct hashmap calls;      /* struct grpc_call * (as bytes) -> struct limited_call */
};

/* A call of a limited method, from its start to on_call_end. */
struct limited_call {
	struct grpc_call *call;
	struct limited_method *lm;
	struct limit_ticket *ticket;   /* NULL: nothing held or waiting */
	struct limit_info info;
	char *key;                     /* the repository's relative path; NULL: not limited */
	size_t key_len;
	uint8_t *req;                  /* the held request (unary) or first message (streaming) */
	size_t req_len;
	int have_first;                /* streaming: the first message arrived */
	int started;                   /* the real handler runs */
	int refused;                   /* finished with RESOURCE_EXHAUSTED */
	int busy, ended;               /* on_call_end came while we were inside a callback */
};

static const struct rpc_method *known(const char *path, const char *what)
{
	const struct rpc_method *m = path ? rpc_lookup(path, strlen(path)) : NULL;
	if (!m)
		die("%s \"%s\": the RPC registry (proto/) has no such method", what, path ? path : "(null)");
	return m;
}

/* --- limiters --- */

static struct limited_method *find_limited(struct gitaly_limits *ls, const char *path)
{
	for (size_t i = 0; ls && i < ls->nr; i++)
		if (!strcmp(ls->v[i].path, path))
			return &ls->v[i];
	return NULL;
}

struct gitaly_limits *gitaly_limits_new(uv_loop_t *loop, const struct gitaly_config *cfg)
{
	struct gitaly_limits *ls = xcalloc(1, sizeof(*ls));
	struct limit_opts *opts = xcalloc(cfg->nr_concurrency + 1, sizeof(*opts));
	const char **rpcs = xcalloc(cfg->nr_concurrency + 1, sizeof(*rpcs));
	size_t nr = 0;

	hashmap_init(&ls->calls);
	for (size_t i = 0; i < cfg->nr_concurrency; i++) {
		const struct gitaly_concurrency *c = &cfg->concurrency[i];
		size_t j;
		for (j = 0; j < nr && strcmp(rpcs[j], c->rpc); j++)
			;
		rpcs[j] = c->rpc;
		opts[j].max = c->adaptive ? c->initial_limit : c->max_per_repo;
		opts[j].max_queue = c->max_queue_size;
		opts[j].max_wait_ms = c->max_queue_wait_ms;
		if (j == nr)
			nr++;
	}
	{
		size_t j;
		for (j = 0; j < nr && strcmp(rpcs[j], REPLICATE_REPOSITORY); j++)
			;
		if (j == nr) {
			rpcs[nr] = REPLICATE_REPOSITORY;
			opts[nr++] = (struct limit_opts){ .max = 1 };
		}
	}
	ls->v = xcalloc(nr + 1, sizeof(*ls->v));
	for (size_t j = 0; j < nr; j++) {
		struct limited_method *lm;
		if (opts[j].max <= 0)
			continue; /* upstream: a limit of 0 does not limit */
		lm = &ls->v[ls->nr++];
		lm->ls = ls;
		lm->path = xstrdup(rpcs[j]);
		lm->l = limit_new(loop, rpcs[j], &opts[j]);
	}
	free(opts);
	free(rpcs);
	return ls;
}

void gitaly_limits_free(struct gitaly_limits *ls)
{
	size_t i = 0;
	const struct hashmap_entry *e;
	if (!ls)
		return;
	while (hashmap_next(&ls->calls, &i, &e)) {
		struct limited_call *lc = e->value;
		free(lc->key);
		free(lc->req);
		free(lc);
	}
	hashmap_release(&ls->calls);
	for (i = 0; i < ls->nr; i++) {
		limit_free(ls->v[i].l);
		free(ls->v[i].path);
	}
	free(ls->v);
	free(ls);
}

static struct limited_call *call_new(struct limited_method *lm, struct grpc_call *call)
{
	struct limited_call *lc = xcalloc(1, sizeof(*lc));
	lc->call = call;
	lc->lm = lm;
	hashmap_put(&lm->ls->calls, &call, sizeof(call), lc);
	return lc;
}

static void call_free(struct limited_call *lc)
{
	free(lc->key);
	free(lc->req);
	free(lc);
}

static void call_hold(struct limited_call *lc)
{
	lc->busy++;
}

/* Returns 1 when the call ended meanwhile (and `lc` is gone). */
static int call_drop(struct limited_call *lc)
{
	if (--lc->busy || !lc->ended)
		return 0;
	call_free(lc);
	return 1;
}

/* The target repository's relative path is the key (upstream's); 0 when the call is not limited. */
static int call_key(struct limited_call *lc, const uint8_t *msg, size_t len)
{
	struct rpc_repo repo;
	if (rpc_find_target(lc->lm->m, msg, len, &repo) < 0 || !repo.relative_path_len)
		return 0;
	lc->key = xstrndup(repo.relative_path, repo.relative_path_len);
	lc->key_len = repo.relative_path_len;
	return 1;
}

/* RESOURCE_EXHAUSTED with a gitaly.LimitError{error_message, retry_after: 0s}, as upstream. */
static void refuse(struct limited_call *lc, int status)
{
	const char *msg = status == LIMIT_EFULL ? "maximum queue size reached"
						: "maximum time in concurrency queue reached";
	Google__Protobuf__Duration retry = GOOGLE__PROTOBUF__DURATION__INIT;
	Gitaly__LimitError le = GITALY__LIMIT_ERROR__INIT;
	struct grpc_metadata md = GRPC_METADATA_INIT;
	struct strbuf st = STRBUF_INIT;

	lc->refused = 1;
	le.error_message = (char *)msg;
	le.retry_after = &retry;
	gitaly_status_details(&st, GRPC_RESOURCE_EXHAUSTED, msg, &le.base);
	grpc_metadata_add(&md, "grpc-status-details-bin", 23, st.buf, st.len);
	grpc_call_finish(lc->call, GRPC_RESOURCE_EXHAUSTED, msg, &md);
	grpc_metadata_release(&md);
	strbuf_release(&st);
}

/* --- unary methods: the request is whole when the limiter is asked --- */

static void unary_granted(struct limit_ticket *t, int status, void *arg)
{
	struct limited_call *lc = arg;
	(void)t;
	if (status < 0) {
		lc->ticket = NULL;
		refuse(lc, status);
		return;
	}
	lc->started = 1;
	lc->lm->fn(lc->call, lc->req, lc->req_len, lc->lm->data);
}

static void limited_unary(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct limited_method *lm = data;
	struct limited_call *lc = call_new(lm, call);
	int rc;

	if (!call_key(lc, req, len)) {
		lc->started = 1;
		lm->fn(call, req, len, lm->data);
		return;
	}
	rc = limit_acquire(lm->l, lc->key, lc->key_len, &lc->info, unary_granted, lc, &lc->ticket);
	if (rc == LIMIT_EFULL) {
		refuse(lc, rc);
	} else if (rc == LIMIT_QUEUED) {
		lc->req = xmemdup(req, len);
		lc->req_len = len;
	} else {
		lc->started = 1;
		lm->fn(call, req, len, lm->data);
	}
}

/* --- streaming methods: the first message decides; the handler starts after --- */

static const struct grpc_call_ops gate_ops;

/* Start the real handler and hand it the first message, if one came. */
static void begin_handler(struct limited_call *lc)
{
	const struct grpc_call_ops *ops;
	lc->started = 1;
	lc->lm->start(lc->call, lc->lm->data);
	ops = grpc_call_ops(lc->call);
	if (lc->have_first && ops && ops != &gate_ops && ops->on_message && !grpc_call_is_closed(lc->call))
		ops->on_message(lc->call, lc->req, lc->req_len);
}

static void stream_granted(struct limit_ticket *t, int status, void *arg)
{
	struct limited_call *lc = arg;
	(void)t;
	if (status < 0) {
		lc->ticket = NULL;
		refuse(lc, status);
		return;
	}
	/*
	 * Resuming delivers what the client sent meanwhile to gate_ops, which
	 * start the handler first; if nothing was waiting, start it here.
	 */
	call_hold(lc);
	grpc_call_resume_recv(lc->call);
	if (call_drop(lc))
		return;
	if (!lc->started)
		begin_handler(lc);
}

static void gate_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct limited_call *lc = grpc_call_user(call);
	const struct grpc_call_ops *ops;
	int rc;

	if (lc->refused || lc->started)
		return;
	if (lc->have_first) {
		/* the slot came and this is the second message: the handler goes first */
		call_hold(lc);
		begin_handler(lc);
		ops = grpc_call_ops(call);
		if (!call_drop(lc) && ops != &gate_ops && ops->on_message && !grpc_call_is_closed(call))
			ops->on_message(call, msg, len);
		return;
	}
	lc->have_first = 1;
	lc->req = xmemdup(msg, len);
	lc->req_len = len;
	if (!call_key(lc, msg, len)) {
		begin_handler(lc);
		return;
	}
	rc = limit_acquire(lc->lm->l, lc->key, lc->key_len, &lc->info, stream_granted, lc, &lc->ticket);
	if (rc == LIMIT_EFULL)
		refuse(lc, rc);
	else if (rc == LIMIT_QUEUED)
		grpc_call_pause_recv(call);   /* the rest waits in the stream window */
	else
		begin_handler(lc);
}

static void gate_half_close(struct grpc_call *call)
{
	struct limited_call *lc = grpc_call_user(call);
	const struct grpc_call_ops *ops;

	if (lc->refused || lc->started)
		return;
	/* no message at all, or the slot came after the client was done sending */
	call_hold(lc);
	begin_handler(lc);
	ops = grpc_call_ops(call);
	if (!call_drop(lc) && ops != &gate_ops && ops->on_half_close && !grpc_call_is_closed(call))
		ops->on_half_close(call);
}

static const struct grpc_call_ops gate_ops = {
	.on_message = gate_message,
	.on_half_close = gate_half_close,
};

static void limited_start(struct grpc_call *call, void *data)
{
	struct limited_call *lc = call_new(data, call);
	grpc_call_set_ops(call, &gate_ops, lc);
}

/* --- the end of a call --- */

static void log_limit_fields(struct log_entry *e, void *arg)
{
	const struct limited_call *lc = arg;
	const struct limit_info *i = &lc->info;

	if (!lc->key || (!i->queued && !i->dropped))
		return;
	log_str(e, "limit.limiting_type", "per-rpc");
	log_strn(e, "limit.limiting_key", lc->key, lc->key_len);
	log_int(e, "limit.concurrency_queue_length", i->queue_length);
	if (i->entered || i->dropped) {
		log_int(e, "limit.concurrency_queue_ms", (int64_t)i->queue_ms);
		log_int(e, "limit.concurrency_in_progress", i->in_progress);
		/* the name GitLab's documentation tells administrators to look for */
		log_int(e, "acquire_ms", (int64_t)i->queue_ms);
	}
	if (i->dropped)
		log_str(e, "limit.concurrency_dropped", i->dropped);
}

void gitaly_limits_each(struct gitaly_limits *ls, void (*fn)(struct limit *l, const char *method, void *arg),
			void *arg)
{
	for (size_t i = 0; ls && i < ls->nr; i++)
		fn(ls->v[i].l, ls->v[i].path, arg);
}

void gitaly_limits_call_end(struct gitaly_limits *ls, struct grpc_call *call, enum grpc_code code,
			    uint64_t duration_ns)
{
	struct limited_call *lc = ls ? hashmap_remove(&ls->calls, &call, sizeof(call)) : NULL;

	if (!lc) {
		grpc_log_call(call, code, duration_ns);
		return;
	}
	if (lc->ticket) {
		limit_done(lc->ticket);
		lc->ticket = NULL;
	}
	grpc_log_call_extra(call, code, duration_ns, log_limit_fields, lc);
	lc->call = NULL;
	lc->ended = 1;
	if (!lc->busy)
		call_free(lc);
}

/* --- registration --- */

void gitaly_add_unary(struct grpc_server *s, const char *path, grpc_unary_fn fn, struct gitaly *data)
{
	const struct rpc_method *m = known(path, "handler for");
	struct limited_method *lm = find_limited(data->limits, path);
	int rc;
	if (m->client_streaming)
		die("handler for \"%s\": a client-streaming method cannot take a unary handler", path);
	if (lm) {
		lm->m = m;
		lm->fn = fn;
		lm->data = data;
		rc = grpc_server_add_unary(s, path, limited_unary, lm);
	} else {
		rc = grpc_server_add_unary(s, path, fn, data);
	}
	if (rc < 0)
		die("cannot register \"%s\"", path);
}

void gitaly_add_method(struct grpc_server *s, const char *path, grpc_start_fn start, struct gitaly *data)
{
	const struct rpc_method *m = known(path, "handler for");
	struct limited_method *lm = find_limited(data->limits, path);
	int rc;
	if (lm) {
		lm->m = m;
		lm->start = start;
		lm->data = data;
		rc = grpc_server_add_method(s, path, limited_start, lm);
	} else {
		rc = grpc_server_add_method(s, path, start, data);
	}
	if (rc < 0)
		die("cannot register \"%s\"", path);
}

void gitaly_register_services(struct gitaly *g, struct grpc_server *s)
{
	struct gitaly_limits *limits = g->limits;
	for (size_t i = 0; i < OUT_METHODS_NR; i++)
		known(gitaly_out[i], "outbound call to");
	gitaly_register_server(g, s);
	gitaly_register_repository(g, s);
	gitaly_register_ssh(g, s);
	gitaly_register_smarthttp(g, s);
	gitaly_register_ref(g, s);
	gitaly_register_ref_contains(g, s);
	gitaly_register_tag_messages(g, s);
	gitaly_register_tag_signatures(g, s);
	gitaly_register_ref_remote(g, s);
	gitaly_register_delete_refs(g, s);
	gitaly_register_update_references(g, s);
	gitaly_register_commit(g, s);
	gitaly_register_blob(g, s);
	gitaly_register_blob_list(g, s);
	gitaly_register_lfs(g, s);
	gitaly_register_diff(g, s);
	gitaly_register_operations(g, s);
	gitaly_register_analysis(g, s);
	gitaly_register_hook(g, s);
	gitaly_register_proc_receive(g, s);
	gitaly_register_objectpool(g, s);
	gitaly_register_bfg(g, s);
	gitaly_register_remote(g, s);
	for (size_t i = 0; limits && i < limits->nr; i++)
		if (!limits->v[i].fn && !limits->v[i].start)
			log_msgf(LOG_WARN, "[[concurrency]] rpc \"%s\": this node serves no such method, not limited",
				 limits->v[i].path);
}
