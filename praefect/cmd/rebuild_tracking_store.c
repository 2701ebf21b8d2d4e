/*
 * `praefect rebuild-tracking-store` (ours, issue 19): rebuild the tracking
 * store's repositories, replicas, generations, assignments and primaries
 * from the records the nodes keep beside every replica (gitaly-cluster.json,
 * docs/technical/recovery.md). Every node of a virtual storage is walked
 * (InternalGitaly/WalkRepos) and each replica's record read
 * (ClusterReplicaService/GetReplicaInfo), straight to the node; praefect
 * must be stopped, the store is opened directly. Dry run unless -apply.
 */
#include "cmd/cmd.h"
#include "base/fs.h"
#include "base/strvec.h"
#include "base/util.h"
#include "grpc/auth.h"
#include "grpc/client.h"
#include "internal.pb-c.h"
#include "server.pb-c.h"
#include "store/pg-admin.h"
#include "store/store.h"

#include <inttypes.h>
#include <jansson.h>
#include <libgen.h>
#include <protobuf-c/protobuf-c.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REBUILD_CALL_TIMEOUT_MS 30000

/* One replica found on a node, with the record it carries. */
struct found {
	const char *storage;          /* the node's storage (config, not owned) */
	size_t node_index;            /* its place in the virtual storage's node list */
	char *replica_path;           /* where it sits on the node */
	char *relative_path;          /* from the record */
	int64_t id, generation;
	char *primary;                /* the primary its record names; NULL: none */
	int64_t primary_epoch;
	int skip;                     /* part of a conflict */
};

struct rebuild {
	struct praefect_config *cfg;
	const struct praefect_vs_cfg *vs;
	uv_loop_t *loop;
	struct found *found;
	size_t nr_found, alloc_found;
	struct strvec conflicts;      /* one line each */
	size_t untracked, unreachable;
};

/* --- talking to one node --- */

struct call_wait {
	int done;
	enum grpc_code code;
	struct strbuf msg, last;
	struct strvec *paths;         /* WalkRepos: every path goes here */
};

static void cw_message(struct grpc_client_call *cc, const uint8_t *msg, size_t len)
{
	struct call_wait *w = grpc_client_call_user(cc);
	if (w->paths) {
		Gitaly__WalkReposResponse *r = gitaly__walk_repos_response__unpack(NULL, len, msg);
		if (r && r->relative_path && *r->relative_path)
			strvec_push(w->paths, r->relative_path);
		if (r)
			gitaly__walk_repos_response__free_unpacked(r, NULL);
		return;
	}
	strbuf_reset(&w->last);
	strbuf_add(&w->last, msg, len);
}

static void cw_close(struct grpc_client_call *cc, enum grpc_code code, const char *message,
		     const struct grpc_metadata *trailers)
{
	struct call_wait *w = grpc_client_call_user(cc);
	(void)trailers;
	w->done = 1;
	w->code = code;
	strbuf_addstr(&w->msg, message ? message : "");
}

static const struct grpc_client_ops cw_ops = { .on_message = cw_message, .on_close = cw_close };

/* One call on the node's channel, run to its end; the status's message goes to w->msg. */
static enum grpc_code node_call(struct rebuild *rb, struct grpc_channel *ch, const struct praefect_node_cfg *node,
				const char *method, const ProtobufCMessage *req, struct call_wait *w)
{
	struct grpc_metadata md = GRPC_METADATA_INIT;
	struct grpc_client_call *cc;
	size_t len = protobuf_c_message_get_packed_size(req);
	uint8_t *buf = xmalloc(len ? len : 1);

	protobuf_c_message_pack(req, buf);
	w->done = 0;
	strbuf_reset(&w->msg);
	auth_v2_add(&md, node->token);
	if (grpc_channel_call(ch, method, &md, REBUILD_CALL_TIMEOUT_MS, 0, &cw_ops, w, &cc) < 0) {
		w->done = 1;
		w->code = GRPC_INTERNAL;
		strbuf_addstr(&w->msg, "cannot start call");
	} else {
		grpc_client_call_send(cc, buf, len);
		grpc_client_call_close_send(cc);
	}
	while (!w->done)
		uv_run(rb->loop, UV_RUN_ONCE);
	grpc_metadata_release(&md);
	free(buf);
	return w->code;
}

static void add_conflict(struct rebuild *rb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_conflict(struct rebuild *rb, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	strvec_push(&rb->conflicts, sb.buf);
	strbuf_release(&sb);
}

/* Read the record of one replica; untracked and invalid ones are reported. */
static void read_record(struct rebuild *rb, struct grpc_channel *ch, size_t ni, const char *path,
			struct call_wait *w)
{
	const struct praefect_node_cfg *node = &rb->vs->nodes[ni];
	Gitaly__GetReplicaInfoRequest req = GITALY__GET_REPLICA_INFO_REQUEST__INIT;
	Gitaly__Repository repo = GITALY__REPOSITORY__INIT;
	Gitaly__GetReplicaInfoResponse *r;
	enum grpc_code code;
	struct found *f;

	repo.storage_name = node->storage;
	repo.relative_path = (char *)path;
	req.repository = &repo;
	code = node_call(rb, ch, node, "/gitaly.ClusterReplicaService/GetReplicaInfo", &req.base, w);
	if (code == GRPC_NOT_FOUND) {
		json_t *o = json_pack("{s:s, s:s, s:s}", "relative_path", path, "storage", node->storage,
				      "virtual_storage", rb->vs->name);
		char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
		if (!rb->untracked++)
			printf("Untracked replicas (no gitaly-cluster.json), skipped; see track-repository:\n");
		printf("%s\n", s);
		free(s);
		json_decref(o);
		return;
	}
	if (code != GRPC_OK) {
		add_conflict(rb, "replica \"%s\" on \"%s\": cannot read its record: rpc error: code = %s desc = %s", path,
			     node->storage, grpc_code_name(code), w->msg.buf);
		return;
	}
	r = gitaly__get_replica_info_response__unpack(NULL, w->last.len, (const uint8_t *)w->last.buf);
	if (!r || !r->info) {
		add_conflict(rb, "replica \"%s\" on \"%s\": cannot decode its record", path, node->storage);
	} else if (strcmp(r->info->virtual_storage, rb->vs->name)) {
		add_conflict(rb, "replica \"%s\" on \"%s\": its record names virtual storage \"%s\"", path,
			     node->storage, r->info->virtual_storage);
	} else {
		ALLOC_GROW(rb->found, rb->nr_found + 1, rb->alloc_found);
		f = &rb->found[rb->nr_found++];
		memset(f, 0, sizeof(*f));
		f->storage = node->storage;
		f->node_index = ni;
		f->replica_path = xstrdup(path);
		f->relative_path = xstrdup(r->info->relative_path);
		f->id = r->info->repository_id;
		f->generation = r->info->generation;
		if (r->info->primary && *r->info->primary) {
			f->primary = xstrdup(r->info->primary);
			f->primary_epoch = r->info->primary_epoch;
		}
	}
	if (r)
		gitaly__get_replica_info_response__free_unpacked(r, NULL);
}

/* Walk one node: 0, or -1 when it could not be walked (reported). */
static int walk_node(struct rebuild *rb, size_t ni)
{
	const struct praefect_node_cfg *node = &rb->vs->nodes[ni];
	Gitaly__WalkReposRequest req = GITALY__WALK_REPOS_REQUEST__INIT;
	struct call_wait w = { 0 };
	struct strvec paths = STRVEC_INIT;
	struct grpc_channel *ch;
	enum grpc_code code;
	int rc = -1;

	strbuf_init(&w.msg, 0);
	strbuf_init(&w.last, 0);
	if (grpc_channel_new(rb->loop, node->address, NULL, &ch) < 0) {
		fprintf(stderr, "storage \"%s\" of \"%s\": bad address \"%s\"\n", node->storage, rb->vs->name,
			node->address);
		goto out;
	}
	req.storage_name = node->storage;
	w.paths = &paths;
	code = node_call(rb, ch, node, "/gitaly.InternalGitaly/WalkRepos", &req.base, &w);
	w.paths = NULL;
	if (code != GRPC_OK) {
		fprintf(stderr, "storage \"%s\" of \"%s\" cannot be walked: rpc error: code = %s desc = %s\n",
			node->storage, rb->vs->name, grpc_code_name(code), w.msg.buf);
	} else {
		for (size_t i = 0; i < paths.nr; i++)
			read_record(rb, ch, ni, paths.v[i], &w);
		rc = 0;
	}
	grpc_channel_close(ch);
	uv_run(rb->loop, UV_RUN_DEFAULT);
out:
	strvec_clear(&paths);
	strbuf_release(&w.msg);
	strbuf_release(&w.last);
	return rc;
}

/* --- grouping the records into repositories --- */

/* One repository to record: found[first .. first+n), sorted by node order. */
struct rebuilt {
	size_t first, n;
	int64_t generation;
	const struct found *primary;
};

static int by_id(const void *a, const void *b)
{
	const struct found *x = a, *y = b;
	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->node_index < y->node_index ? -1 : x->node_index > y->node_index;
}

static int by_path(const void *a, const void *b)
{
	const struct found *const *x = a, *const *y = b;
	int c = strcmp((*x)->relative_path, (*y)->relative_path);
	if (c)
		return c;
	return (*x)->id < (*y)->id ? -1 : (*x)->id > (*y)->id;
}

/*
 * Mark the conflicts: one id at two relative paths, replica paths or twice
 * on a storage; one relative path claimed by two ids. Every replica of a
 * repository in conflict is skipped, nothing is guessed.
 */
static void find_conflicts(struct rebuild *rb)
{
	struct found **p;
	size_t i, j;

	qsort(rb->found, rb->nr_found, sizeof(*rb->found), by_id);
	for (i = 0; i < rb->nr_found; i = j) {
		const struct found *a = &rb->found[i];
		int bad = 0;
		for (j = i + 1; j < rb->nr_found && rb->found[j].id == a->id; j++) {
			const struct found *b = &rb->found[j];
			if (!bad && strcmp(a->relative_path, b->relative_path)) {
				add_conflict(rb, "repository id %" PRId64 " at two relative paths: \"%s\" on \"%s\", \"%s\" on \"%s\"",
					     a->id, a->relative_path, a->storage, b->relative_path, b->storage);
				bad = 1;
			} else if (!bad && strcmp(a->replica_path, b->replica_path)) {
				add_conflict(rb, "repository id %" PRId64 " at two replica paths: \"%s\" on \"%s\", \"%s\" on \"%s\"",
					     a->id, a->replica_path, a->storage, b->replica_path, b->storage);
				bad = 1;
			} else if (!bad && b->node_index == rb->found[j - 1].node_index) {
				add_conflict(rb, "repository id %" PRId64 " twice on \"%s\": \"%s\" and \"%s\"", a->id,
					     b->storage, rb->found[j - 1].replica_path, b->replica_path);
				bad = 1;
			}
		}
		for (size_t k = i; bad && k < j; k++)
			rb->found[k].skip = 1;
	}
	p = xcalloc(rb->nr_found ? rb->nr_found : 1, sizeof(*p));
	for (i = 0; i < rb->nr_found; i++)
		p[i] = &rb->found[i];
	qsort(p, rb->nr_found, sizeof(*p), by_path);
	for (i = 0; i < rb->nr_found; i = j) {
		int bad = 0;
		for (j = i + 1; j < rb->nr_found && !strcmp(p[j]->relative_path, p[i]->relative_path); j++)
			if (p[j]->id != p[i]->id && !bad) {
				add_conflict(rb, "relative path \"%s\" claimed by two repository ids: %" PRId64 " on \"%s\", %" PRId64 " on \"%s\"",
					     p[i]->relative_path, p[i]->id, p[i]->storage, p[j]->id, p[j]->storage);
				bad = 1;
			}
		/* skip every replica of the ids involved, on any storage */
		for (size_t k = i; bad && k < j; k++)
			for (size_t m = 0; m < rb->nr_found; m++)
				if (rb->found[m].id == p[k]->id)
					rb->found[m].skip = 1;
	}
	free(p);
}

/*
 * The primary among the replicas [i, j) at generation `gen`: the one named by
 * the latest record (highest epoch) among them, when it is itself up to date;
 * else the first of them in the configuration's node order (every node
 * answered, so every one is healthy). docs/technical/recovery.md.
 */
static const struct found *pick_primary(const struct rebuild *rb, size_t i, size_t j, int64_t gen)
{
	const struct found *claim = NULL, *first = NULL;

	for (size_t k = i; k < j; k++) {
		const struct found *f = &rb->found[k];
		if (f->generation != gen)
			continue;
		if (!first)
			first = f;
		if (f->primary && (!claim || f->primary_epoch > claim->primary_epoch))
			claim = f;
	}
	if (claim)
		for (size_t k = i; k < j; k++)
			if (rb->found[k].generation == gen && !strcmp(rb->found[k].storage, claim->primary))
				return &rb->found[k];
	return first;
}

/* The repositories to record. The generation is the highest of the records. */
static size_t group(struct rebuild *rb, struct rebuilt **out)
{
	struct rebuilt *r = NULL;
	size_t n = 0, alloc = 0, j;

	for (size_t i = 0; i < rb->nr_found; i = j) {
		struct rebuilt *x;
		for (j = i + 1; j < rb->nr_found && rb->found[j].id == rb->found[i].id; j++)
			;
		if (rb->found[i].skip)
			continue;
		ALLOC_GROW(r, n + 1, alloc);
		x = &r[n++];
		x->first = i;
		x->n = j - i;
		x->generation = -1;
		for (size_t k = i; k < j; k++)
			if (rb->found[k].generation > x->generation)
				x->generation = rb->found[k].generation;
		x->primary = pick_primary(rb, i, j, x->generation);
	}
	*out = r;
	return n;
}

static void print_repo(const struct rebuild *rb, const struct rebuilt *x, int assign)
{
	const struct found *f = &rb->found[x->first];
	printf("Repository ID: %" PRId64 "\n", f->id);
	printf("Virtual Storage: \"%s\"\n", rb->vs->name);
	printf("Relative Path: \"%s\"\n", f->relative_path);
	printf("Replica Path: \"%s\"\n", f->replica_path);
	printf("Primary: \"%s\"\n", x->primary->storage);
	printf("Generation: %" PRId64 "\n", x->generation);
	printf("Replicas:\n");
	for (size_t k = 0; k < x->n; k++) {
		const struct found *r = &f[k];
		printf("- Storage: \"%s\"\n", r->storage);
		/* without assignment rows every configured storage counts as assigned, as `metadata` shows */
		printf("  Assigned: %s\n", assign ? "true" : "true (no assignments recorded)");
		if (r->generation < x->generation)
			printf("  Generation: %" PRId64 ", behind by %" PRId64 " changes\n", r->generation,
			       x->generation - r->generation);
		else
			printf("  Generation: %" PRId64 ", fully up to date\n", r->generation);
	}
}

/* --- the store, driven synchronously on our own loop --- */

struct wait_op {
	int done, status;
	struct strbuf msg;
	struct store_repo *repos;     /* store_list_repositories: a deep copy */
	size_t nr_repos;
};

static void on_done(void *arg, int status, const char *msg)
{
	struct wait_op *w = arg;
	w->done = 1;
	w->status = status;
	strbuf_addstr(&w->msg, msg ? msg : "");
}

static void on_deleted(void *arg, int status, const char *msg, const char *replica_path,
		       const char *const *storages, size_t n)
{
	(void)replica_path;
	(void)storages;
	(void)n;
	on_done(arg, status, msg);
}

static void on_listed(void *arg, int status, const char *msg, const struct store_repo *repos, size_t n)
{
	struct wait_op *w = arg;
	on_done(arg, status, msg);
	if (status < 0)
		return;
	w->repos = xcalloc(n ? n : 1, sizeof(*w->repos));
	w->nr_repos = n;
	for (size_t i = 0; i < n; i++) {
		struct store_repo *c = &w->repos[i];
		*c = repos[i];
		c->virtual_storage = xstrdup(repos[i].virtual_storage);
		c->relative_path = xstrdup(repos[i].relative_path);
		c->replica_path = xstrdup(repos[i].replica_path ? repos[i].replica_path : "");
		c->primary = repos[i].primary ? xstrdup(repos[i].primary) : NULL;
		c->replicas = xcalloc(repos[i].nr_replicas ? repos[i].nr_replicas : 1, sizeof(*c->replicas));
		for (size_t k = 0; k < repos[i].nr_replicas; k++) {
			c->replicas[k] = repos[i].replicas[k];
			c->replicas[k].storage = xstrdup(repos[i].replicas[k].storage);
		}
	}
}

static void free_listed(struct wait_op *w)
{
	for (size_t i = 0; i < w->nr_repos; i++) {
		struct store_repo *c = &w->repos[i];
		free((char *)c->virtual_storage);
		free((char *)c->relative_path);
		free((char *)c->replica_path);
		free((char *)c->primary);
		for (size_t k = 0; k < c->nr_replicas; k++)
			free((char *)c->replicas[k].storage);
		free(c->replicas);
	}
	free(w->repos);
	w->repos = NULL;
	w->nr_repos = 0;
}

static int wait_for(uv_loop_t *loop, struct wait_op *w)
{
	while (!w->done)
		uv_run(loop, UV_RUN_ONCE);
	return w->status;
}

static int open_store(struct praefect_config *cfg, uv_loop_t *loop, struct store **s, struct strbuf *err)
{
	if (cfg->db_postgres) {
		struct store_pg_params params;
		char port[16];
		praefect_config_pg_params(cfg, &params, port);
		return store_open_pg(loop, &params, s, err);
	} else {
		char *dir = xstrdup(cfg->sqlite_path);
		fs_mkdir_p(dirname(dir), 0700);
		free(dir);
		return store_open_sqlite(loop, cfg->sqlite_path, s, err);
	}
}

static const struct store_repo *tracked_by_path(const struct wait_op *w, const char *vs, const char *path)
{
	for (size_t i = 0; i < w->nr_repos; i++)
		if (!strcmp(w->repos[i].virtual_storage, vs) && !strcmp(w->repos[i].relative_path, path))
			return &w->repos[i];
	return NULL;
}

static const struct store_repo *tracked_by_id(const struct wait_op *w, int64_t id)
{
	for (size_t i = 0; i < w->nr_repos; i++)
		if (w->repos[i].id == id)
			return &w->repos[i];
	return NULL;
}

/* -force: how the tracked record differs from the disks (printed); the record is left alone. */
static void report_differences(const struct rebuild *rb, const struct rebuilt *x, const struct store_repo *t)
{
	const struct found *f = &rb->found[x->first];
	const char *pre = "  differs: ";

	printf("Already tracked, left alone: \"%s\" (repository id %" PRId64 ")\n", t->relative_path, t->id);
	if (t->id != f->id)
		printf("%sthe store has repository id %" PRId64 ", the disks %" PRId64 "\n", pre, t->id, f->id);
	if (strcmp(t->relative_path, f->relative_path))
		printf("%sthe store has relative path \"%s\", the disks \"%s\"\n", pre, t->relative_path,
		       f->relative_path);
	if (strcmp(t->replica_path, f->replica_path))
		printf("%sthe store has replica path \"%s\", the disks \"%s\"\n", pre, t->replica_path,
		       f->replica_path);
	if (t->generation != x->generation)
		printf("%sthe store has generation %" PRId64 ", the disks %" PRId64 "\n", pre, t->generation,
		       x->generation);
	for (size_t k = 0; k < x->n; k++) {
		int64_t g = GENERATION_UNKNOWN;
		for (size_t m = 0; m < t->nr_replicas; m++)
			if (!strcmp(t->replicas[m].storage, f[k].storage))
				g = t->replicas[m].generation;
		if (g != f[k].generation)
			printf("%sreplica on \"%s\": the store has generation %" PRId64 ", the disk %" PRId64 "\n", pre,
			       f[k].storage, g, f[k].generation);
	}
}

/* Record one repository: the row with its primary and assignments, then each replica's generation. */
static int record(struct store *s, uv_loop_t *loop, const struct rebuild *rb, const struct rebuilt *x, int assign,
		  struct strbuf *err)
{
	const struct found *f = &rb->found[x->first];
	struct wait_op w = { 0 };
	const char **others = xcalloc(x->n, sizeof(*others));
	size_t nr_others = 0;
	int rc, created;

	strbuf_init(&w.msg, 0);
	for (size_t k = 0; k < x->n; k++)
		if (&f[k] != x->primary)
			others[nr_others++] = f[k].storage;
	store_create_repository(s, f->id, rb->vs->name, f->relative_path, f->replica_path, x->primary->storage,
				others, nr_others, NULL, 0, 1, assign, on_done, &w);
	rc = wait_for(loop, &w);
	created = !rc;
	for (size_t k = 0; !rc && k < x->n; k++) {
		w.done = 0;
		store_set_generation(s, f->id, f[k].storage, f->relative_path, f[k].generation, on_done, &w);
		rc = wait_for(loop, &w);
	}
	if (rc < 0)
		strbuf_addf(err, "recording \"%s\" (repository id %" PRId64 "): %s", f->relative_path, f->id, w.msg.buf);
	if (rc < 0 && created) {
		/* no half-recorded repository left behind: a later -apply -force adds it whole */
		w.done = 0;
		store_delete_repository(s, rb->vs->name, f->relative_path, on_deleted, &w);
		wait_for(loop, &w);
	}
	strbuf_release(&w.msg);
	free(others);
	return rc < 0 ? -1 : 0;
}

/* Does a praefect answer on this configuration's address? */
static int praefect_answers(struct praefect_config *cfg)
{
	Gitaly__ServerInfoRequest req = GITALY__SERVER_INFO_REQUEST__INIT;
	struct strbuf resp = STRBUF_INIT, msg = STRBUF_INIT;
	enum grpc_code code;
	uint8_t buf[1];
	size_t len = gitaly__server_info_request__pack(&req, buf);

	code = cmd_call_praefect(cfg, "/gitaly.ServerService/ServerInfo", buf, len, cmd_keep_message, &resp, &msg);
	strbuf_release(&resp);
	strbuf_release(&msg);
	return code == GRPC_OK;
}

static void rebuild_release(struct rebuild *rb)
{
	for (size_t i = 0; i < rb->nr_found; i++) {
		free(rb->found[i].replica_path);
		free(rb->found[i].relative_path);
		free(rb->found[i].primary);
	}
	free(rb->found);
	rb->found = NULL;
	rb->nr_found = rb->alloc_found = 0;
}

int cmd_rebuild_tracking_store(int argc, char **argv, void *ctx)
{
	struct praefect_config *cfg = ctx;
	const char *only = NULL;
	int apply = 0, force = 0, next, rc;
	const struct cli_flag flags[] = {
		{ .name = "virtual-storage", .type = CLI_STRING, .str = &only, .arg = "NAME",
		  .help = "rebuild only this virtual storage's repositories" },
		{ .name = "apply", .type = CLI_BOOL, .on = &apply, .help = "write into the tracking store (default: dry run)" },
		{ .name = "force", .type = CLI_BOOL, .on = &force,
		  .help = "with -apply: merge into a store that already tracks repositories" },
	};
	size_t nr_conflicts = 0, untracked = 0, unreachable = 0;
	struct rebuilt **per_vs;
	size_t *nr_per_vs, total = 0, recorded = 0, kept = 0;
	struct wait_op listed = { 0 };
	struct strbuf err = STRBUF_INIT;
	struct store *s = NULL;
	uv_loop_t loop;
	struct rebuild *all;

	if (cmd_flags("rebuild-tracking-store", flags, ARRAY_SIZE(flags), 0, argc, argv, &next, &rc) < 0)
		return rc;
	if (force && !apply)
		return cmd_fatal("-force only goes with -apply");
	if (only && !praefect_config_vs(cfg, only, strlen(only)))
		return cmd_fatal("virtual storage \"%s\" not found", only);

	/* 1. read every node's records, one virtual storage at a time */
	uv_loop_init(&loop);
	all = xcalloc(cfg->nr_vs, sizeof(*all));
	per_vs = xcalloc(cfg->nr_vs, sizeof(*per_vs));
	nr_per_vs = xcalloc(cfg->nr_vs, sizeof(*nr_per_vs));
	rc = 0;
	for (size_t v = 0; v < cfg->nr_vs; v++) {
		struct rebuild *r = &all[v];
		r->cfg = cfg;
		r->vs = &cfg->vs[v];
		r->loop = &loop;
		strvec_init(&r->conflicts);
		if (only && strcmp(only, r->vs->name))
			continue;
		for (size_t ni = 0; ni < r->vs->nr_nodes; ni++)
			if (walk_node(r, ni) < 0)
				r->unreachable++;
		find_conflicts(r);
		nr_per_vs[v] = group(r, &per_vs[v]);
		total += nr_per_vs[v];
	}

	/* 2. what would be recorded, and what is skipped */
	for (size_t v = 0; v < cfg->nr_vs; v++) {
		int assign = all[v].vs->default_replication_factor > 0;
		for (size_t i = 0; i < nr_per_vs[v]; i++)
			print_repo(&all[v], &per_vs[v][i], assign);
	}
	for (size_t v = 0; v < cfg->nr_vs; v++) {
		for (size_t i = 0; i < all[v].conflicts.nr; i++) {
			if (!nr_conflicts++)
				printf("Conflicts, skipped:\n");
			printf("- \"%s\": %s\n", all[v].vs->name, all[v].conflicts.v[i]);
		}
		untracked += all[v].untracked;
		unreachable += all[v].unreachable;
	}
	if (unreachable) {
		rc = cmd_fatal("%zu storage(s) could not be walked: nothing can be rebuilt without every replica's record",
			       unreachable);
		goto out;
	}
	if (!apply) {
		printf("Dry run: %zu repositories found, nothing written. Run with -apply to record them.\n", total);
		goto done;
	}

	/* 3. write them, praefect stopped: a running one would not see the rows and would write its own */
	if (praefect_answers(cfg)) {
		rc = cmd_fatal("praefect is running (it answers on its configured address): stop it before -apply");
		goto out;
	}
	if (open_store(cfg, &loop, &s, &err) < 0) {
		rc = cmd_fatal("opening the tracking store: %s", err.buf);
		goto out;
	}
	strbuf_init(&listed.msg, 0);
	store_list_repositories(s, only, on_listed, &listed);
	if (wait_for(&loop, &listed) < 0) {
		rc = cmd_fatal("reading the tracking store: %s", listed.msg.buf);
		goto out;
	}
	if (listed.nr_repos && !force) {
		rc = cmd_fatal("the tracking store already tracks %zu repositories: refusing to rebuild into it; "
			       "-force merges (adds the missing ones, leaves the others alone)", listed.nr_repos);
		goto out;
	}
	for (size_t v = 0; v < cfg->nr_vs; v++) {
		int assign = all[v].vs->default_replication_factor > 0;
		for (size_t i = 0; i < nr_per_vs[v]; i++) {
			const struct rebuilt *x = &per_vs[v][i];
			const struct found *f = &all[v].found[x->first];
			const struct store_repo *t = tracked_by_path(&listed, all[v].vs->name, f->relative_path);
			if (!t)
				t = tracked_by_id(&listed, f->id);
			if (t) {
				report_differences(&all[v], x, t);
				kept++;
				continue;
			}
			if (record(s, &loop, &all[v], x, assign, &err) < 0) {
				rc = cmd_fatal("%s", err.buf);
				goto out;
			}
			recorded++;
		}
	}
	printf("Recorded %zu repositories in the tracking store", recorded);
	if (kept)
		printf(", %zu already tracked left alone", kept);
	printf(".\n");
done:
	/* anything skipped leaves the store incomplete: say so in the exit code */
	rc = nr_conflicts || untracked ? 2 : 0;
out:
	fflush(stdout);
	if (s) {
		store_close(s);
		uv_run(&loop, UV_RUN_DEFAULT);
	}
	free_listed(&listed);
	strbuf_release(&listed.msg);
	for (size_t v = 0; v < cfg->nr_vs; v++) {
		rebuild_release(&all[v]);
		strvec_clear(&all[v].conflicts);
		free(per_vs[v]);
	}
	free(all);
	free(per_vs);
	free(nr_per_vs);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	strbuf_release(&err);
	return rc;
}
