/*
 * `praefect list-untracked-repositories`: repositories on the gitaly nodes'
 * disks that no record tracks. Every node's storage is walked
 * (InternalGitaly/WalkRepos, straight to the node, as upstream does); the
 * paths old enough go to the running praefect in batches (our
 * PraefectAdminService/UntrackedReplicas) and the untracked ones are printed
 * as JSON objects. The walk is paused while a batch is being checked, so
 * memory holds one batch whatever the size of the storage.
 */
#include "cmd/cmd.h"
#include "base/log.h"
#include "base/strvec.h"
#include "base/util.h"
#include "config/reader.h"
#include "grpc/auth.h"
#include "grpc/client.h"
#include "internal.pb-c.h"
#include "praefect_admin.pb-c.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK_BATCH 256

struct untracked {
	struct praefect_config *cfg;
	const char *vs, *storage, *delimiter;
	int64_t cutoff_ns;                /* repositories modified after this are skipped */
	int header_printed;
	struct grpc_channel *praefect;
	struct grpc_client_call *walk;    /* NULL once closed */
	int walk_done, checking, failed, done;
	struct strbuf error, resp;
	struct strvec batch;
};

static void maybe_check(struct untracked *u);

static void print_untracked(struct untracked *u, const char *replica_path)
{
	json_t *o = json_pack("{s:s, s:s, s:s}", "relative_path", replica_path, "storage", u->storage,
			      "virtual_storage", u->vs);
	char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	if (!u->header_printed) {
		printf("The following repositories were found on disk, but missing from the tracking database:\n");
		u->header_printed = 1;
	}
	printf("%s%s", s, u->delimiter);
	free(s);
	json_decref(o);
}

static void fail(struct untracked *u, const char *fmt, const char *what)
{
	if (!u->failed)
		strbuf_addf(&u->error, fmt, what);
	u->failed = 1;
}

static void check_message(struct grpc_client_call *cc, const uint8_t *msg, size_t len)
{
	struct untracked *u = grpc_client_call_user(cc);
	strbuf_reset(&u->resp);
	strbuf_add(&u->resp, msg, len);
}

static void check_close(struct grpc_client_call *cc, enum grpc_code code, const char *message,
			const struct grpc_metadata *trailers)
{
	struct untracked *u = grpc_client_call_user(cc);
	Gitaly__UntrackedReplicasResponse *r = NULL;

	u->checking = 0;
	if (code == GRPC_OK)
		r = gitaly__untracked_replicas_response__unpack(NULL, u->resp.len, (const uint8_t *)u->resp.buf);
	if (!r) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "rpc error: code = %s desc = %s", grpc_code_name(code),
			    code == GRPC_OK ? "cannot decode the response" : message ? message : "");
		fail(u, "existence check: %s", m.buf);
		strbuf_release(&m);
		if (u->walk)
			grpc_client_call_cancel(u->walk);
	} else {
		for (size_t i = 0; i < r->n_replica_paths; i++)
			print_untracked(u, r->replica_paths[i]);
		gitaly__untracked_replicas_response__free_unpacked(r, NULL);
		fflush(stdout);
	}
	strvec_clear(&u->batch);
	strvec_init(&u->batch);
	if (u->walk && !u->failed)
		grpc_client_call_resume_recv(u->walk);
	maybe_check(u);
}

static const struct grpc_client_ops check_ops = { .on_message = check_message, .on_close = check_close };

/* A full batch, or the rest once the walk is over, goes to praefect; the walk waits meanwhile. */
static void maybe_check(struct untracked *u)
{
	Gitaly__UntrackedReplicasRequest req = GITALY__UNTRACKED_REPLICAS_REQUEST__INIT;
	struct grpc_metadata md = GRPC_METADATA_INIT;
	struct grpc_client_call *cc;
	uint8_t *buf;
	size_t len;

	if (u->checking)
		return;
	if (u->failed || (u->walk_done && !u->batch.nr)) {
		u->done = u->walk_done;
		return;
	}
	if (u->batch.nr < CHECK_BATCH && !u->walk_done)
		return;
	req.virtual_storage = (char *)u->vs;
	req.storage = (char *)u->storage;
	req.replica_paths = (char **)u->batch.v;
	req.n_replica_paths = u->batch.nr;
	len = gitaly__untracked_replicas_request__get_packed_size(&req);
	buf = xmalloc(len ? len : 1);
	gitaly__untracked_replicas_request__pack(&req, buf);
	auth_v2_add(&md, u->cfg->auth_token);
	if (grpc_channel_call(u->praefect, "/gitaly.PraefectAdminService/UntrackedReplicas", &md, 10000, 0,
			      &check_ops, u, &cc) < 0) {
		fail(u, "existence check: %s", "cannot start call");
		if (u->walk)
			grpc_client_call_cancel(u->walk);
		u->done = u->walk_done;
	} else {
		u->checking = 1;
		if (u->walk)
			grpc_client_call_pause_recv(u->walk);
		grpc_client_call_send(cc, buf, len);
		grpc_client_call_close_send(cc);
	}
	grpc_metadata_release(&md);
	free(buf);
}

static void walk_message(struct grpc_client_call *cc, const uint8_t *msg, size_t len)
{
	struct untracked *u = grpc_client_call_user(cc);
	Gitaly__WalkReposResponse *r = gitaly__walk_repos_response__unpack(NULL, len, msg);
	if (!r) {
		fail(u, "%s", "cannot decode a WalkRepos response");
		grpc_client_call_cancel(cc);
		return;
	}
	if (r->relative_path && r->modification_time &&
	    r->modification_time->seconds * 1000000000LL + r->modification_time->nanos <= u->cutoff_ns)
		strvec_push(&u->batch, r->relative_path);
	gitaly__walk_repos_response__free_unpacked(r, NULL);
	maybe_check(u);
}

static void walk_close(struct grpc_client_call *cc, enum grpc_code code, const char *message,
		       const struct grpc_metadata *trailers)
{
	struct untracked *u = grpc_client_call_user(cc);
	u->walk = NULL;
	u->walk_done = 1;
	if (code != GRPC_OK && !u->failed) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "rpc error: code = %s desc = %s", grpc_code_name(code), message ? message : "");
		fail(u, "%s", m.buf);
		strbuf_release(&m);
	}
	maybe_check(u);
}

static const struct grpc_client_ops walk_ops = { .on_message = walk_message, .on_close = walk_close };

/* One storage: 0, or -1 with the error in u->error. */
static int walk_storage(struct untracked *u, const struct praefect_node_cfg *node)
{
	uv_loop_t *loop = uv_default_loop();
	Gitaly__WalkReposRequest req = GITALY__WALK_REPOS_REQUEST__INIT;
	struct grpc_metadata md = GRPC_METADATA_INIT;
	struct grpc_channel *ch;
	uint8_t buf[512];
	size_t len;

	u->storage = node->storage;
	u->walk_done = u->done = u->checking = 0;
	req.storage_name = (char *)node->storage;
	if (gitaly__walk_repos_request__get_packed_size(&req) > sizeof(buf)) {
		fail(u, "%s", "storage name too long");
		return -1;
	}
	len = gitaly__walk_repos_request__pack(&req, buf);
	if (grpc_channel_new(loop, node->address, NULL, &ch) < 0) {
		strbuf_addf(&u->error, "dial nodes: dial with \"%s\" gitaly at \"%s\"", node->storage, node->address);
		u->failed = 1;
		return -1;
	}
	auth_v2_add(&md, node->token);
	if (grpc_channel_call(ch, "/gitaly.InternalGitaly/WalkRepos", &md, 0, 0, &walk_ops, u, &u->walk) < 0) {
		fail(u, "%s", "cannot start WalkRepos");
		u->walk_done = u->done = 1;
	} else {
		grpc_client_call_send(u->walk, buf, len);
		grpc_client_call_close_send(u->walk);
	}
	while (!u->done)
		uv_run(loop, UV_RUN_ONCE);
	grpc_metadata_release(&md);
	grpc_channel_close(ch);
	return u->failed ? -1 : 0;
}

int cmd_list_untracked_repositories(int argc, char **argv, void *ctx)
{
	struct praefect_config *cfg = ctx;
	const char *older = NULL, *delimiter = NULL;
	const struct cli_flag flags[] = {
		{ .name = "older-than", .type = CLI_STRING, .str = &older },
		{ .name = "delimiter", .type = CLI_STRING, .str = &delimiter },
	};
	struct untracked u = { 0 };
	struct strbuf err = STRBUF_INIT;
	struct timespec now;
	uint64_t older_ns = 6ULL * 3600 * 1000000000ULL;
	char *addr;
	int rc = 1, next;

	if (cli_parse("list-untracked-repositories", flags, ARRAY_SIZE(flags), 0, argc, argv, &next, &err) < 0) {
		fprintf(stderr, "%s\n", err.buf);
		strbuf_release(&err);
		return 1;
	}
	strbuf_release(&err);
	if (older && parse_go_duration(older, &older_ns) < 0) {
		fprintf(stderr, "invalid value \"%s\" for flag -older-than: parse error\n", older);
		return 1;
	}
	addr = praefect_config_dial_address(cfg);
	if (!addr)
		return cmd_fatal("no Praefect address configured");
	clock_gettime(CLOCK_REALTIME, &now);
	u.cfg = cfg;
	u.delimiter = delimiter ? delimiter : "\n";
	u.cutoff_ns = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec - (int64_t)older_ns;
	strbuf_init(&u.error, 0);
	strbuf_init(&u.resp, 0);
	strvec_init(&u.batch);
	if (grpc_channel_new(uv_default_loop(), addr, NULL, &u.praefect) < 0) {
		rc = cmd_fatal("error dialing: bad address \"%s\"", addr);
		goto out;
	}
	rc = 0;
	for (size_t i = 0; !rc && i < cfg->nr_vs; i++) {
		u.vs = cfg->vs[i].name;
		for (size_t j = 0; !rc && j < cfg->vs[i].nr_nodes; j++) {
			log_msgf(LOG_DEBUG, "checking storage repositories of %s/%s", u.vs, cfg->vs[i].nodes[j].storage);
			if (walk_storage(&u, &cfg->vs[i].nodes[j]) < 0)
				rc = !strncmp(u.error.buf, "dial nodes: ", 12)
					     ? cmd_fatal("%s", u.error.buf)
					     : cmd_fatal("exec on \"%s\"/\"%s\": %s", u.vs, cfg->vs[i].nodes[j].storage,
							 u.error.buf);
		}
	}
	grpc_channel_close(u.praefect);
	uv_run(uv_default_loop(), UV_RUN_DEFAULT);
out:
	fflush(stdout);
	free(addr);
	strvec_clear(&u.batch);
	strbuf_release(&u.error);
	strbuf_release(&u.resp);
	return rc;
}
