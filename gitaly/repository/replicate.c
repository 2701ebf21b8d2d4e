/*
 * ReplicateRepository on the target node (docs/technical/gitaly-repository.md): create the repository
 * from the source's snapshot when it is missing or broken, then copy config,
 * info/attributes, refs and objects (git fetch through gitaly-ssh), the
 * default branch and custom hooks, each change voted on as upstream does.
 *
 * One state machine per call. At any moment at most one outbound call to the
 * source, one child process and one creation are in flight; the call ends
 * only once all of them are over, so every callback finds its state alive.
 */
#include "repository/replicate.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/pb.h"
#include "base/util.h"
#include "grpc/auth.h"
#include "grpc/client.h"
#include "objectpool.pb-c.h"
#include "ref.pb-c.h"
#include "repository.pb-c.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/banned.h"


static void repl_release(struct gitaly_call *op)
{
	struct repl *r = container_of(op, struct repl, op);
	cleanup_writer_leave(r->writer);   /* every process of ours exited: its done fired */
	if (r->ch)
		grpc_channel_close(r->ch);
	if (r->hooks_tmp)
		fs_remove_tree(r->hooks_tmp);
	msg_free(r->req);
	free(r->path);
	free(r->tmp_root);
	free(r->address);
	free(r->token);
	free(r->hooks_tmp);
	free(r->pool_rel);
	free(r->pool_path);
	grpc_metadata_release(&r->fwd);
	strbuf_release(&r->call_msg);
	strbuf_release(&r->abort_msg);
	strbuf_release(&r->buf);
	strvec_clear(&r->tar_argv);
	strbuf_release(&r->cmd_err);
	strbuf_release(&r->remote_head);
	free(r);
}

static void repl_cancel(struct gitaly_call *op)
{
	struct repl *r = container_of(op, struct repl, op);
	reposvc_kill(r->cmd);
	if (r->ccall && !r->call_cancelled) {
		r->call_cancelled = 1;
		grpc_client_call_cancel(r->ccall); /* on_close comes later, from the loop */
	}
	reposvc_create_cancel(r->rc);
}

void repl_fail(struct repl *r, enum grpc_code code, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	if (gitaly_call_gone(&r->op))
		code = GRPC_CANCELLED;
	else if (code == GRPC_OK || code == GRPC_UNKNOWN)
		code = GRPC_INTERNAL;
	reposvc_finish(&r->op, code, sb.buf);
	strbuf_release(&sb);
}

/* --- step 10: custom hooks --- */

static void hooks_installed(struct gitaly_call *op, enum grpc_code code, const char *msg)
{
	struct repl *r = container_of(op, struct repl, op);
	if (code != GRPC_OK) {
		repl_fail(r, code, "replicating repository: synchronizing custom hooks: setting custom hooks: %s", msg);
		return;
	}
	if (gitaly_call_gone(op)) {
		repl_fail(r, GRPC_CANCELLED, "context canceled");
		return;
	}
	{
		Gitaly__ReplicateRepositoryResponse resp = GITALY__REPLICATE_REPOSITORY_RESPONSE__INIT;
		reposvc_reply(op, &resp);
	}
}

static void hooks_fed(struct repl *r)
{
	struct strbuf msg = STRBUF_INIT;

	if (gitaly_call_gone(&r->op)) {
		repl_fail(r, GRPC_CANCELLED, "context canceled");
		return;
	}
	if (r->call_code != GRPC_OK) {
		repl_fail(r, r->cmd_status ? GRPC_INTERNAL : r->call_code,
			  "replicating repository: synchronizing custom hooks: getting custom hooks: %s",
			  r->cmd_status ? r->cmd_err.buf : r->call_msg.buf);
		return;
	}
	if (r->cmd_started && r->cmd_status != 0 &&
	    strncmp(r->cmd_err.buf, "tar: custom_hooks: Not found in archive", 39)) {
		strbuf_addstr(&msg, "waiting for tar command completion: ");
		gitaly_describe_status(&msg, r->cmd_status);
		log_msgf(LOG_WARN, "extracting custom hooks failed: %s", r->cmd_err.buf);
		repl_fail(r, GRPC_INTERNAL,
			  "replicating repository: synchronizing custom hooks: setting custom hooks: extracting hooks: %s",
			  msg.buf);
		strbuf_release(&msg);
		return;
	}
	if (reposvc_hooks_install(&r->op, r->path, r->hooks_tmp, hooks_installed, &msg) < 0)
		repl_fail(r, GRPC_INTERNAL, "replicating repository: synchronizing custom hooks: setting custom hooks: %s",
			  msg.buf);
	strbuf_release(&msg);
}

static void sync_hooks(struct repl *r)
{
	Gitaly__GetCustomHooksRequest req = GITALY__GET_CUSTOM_HOOKS_REQUEST__INIT;
	struct strbuf tmp = STRBUF_INIT;
	const char *argv[] = { "tar", "-xf", "-", "-C", NULL, "--strip-components", "0", "custom_hooks", NULL };

	strbuf_addf(&tmp, "%s/hooksXXXXXX", r->tmp_root);
	if (!mkdtemp(tmp.buf)) {
		repl_fail(r, GRPC_INTERNAL, "replicating repository: synchronizing custom hooks: creating temp directory: %s",
			  strerror(errno));
		strbuf_release(&tmp);
		return;
	}
	r->hooks_tmp = strbuf_detach(&tmp, NULL);
	argv[4] = r->hooks_tmp;
	req.repository = r->req->source;
	if (repl_feed_start(r, gitaly_out[OUT_GET_CUSTOM_HOOKS], &req, 1, argv, hooks_fed) < 0)
		repl_fail(r, GRPC_INTERNAL, "replicating repository: synchronizing custom hooks: %s", r->call_msg.buf);
}

/* --- step 9: the default branch --- */

static void head_written(struct gitaly_call *op, enum grpc_code code, const char *msg)
{
	struct repl *r = container_of(op, struct repl, op);
	if (code != GRPC_OK) {
		repl_fail(r, code, "replicating repository: synchronizing references: setting default branch: "
			  "committing temporary HEAD: %s", msg);
		return;
	}
	if (gitaly_call_gone(op)) {
		repl_fail(r, GRPC_CANCELLED, "context canceled");
		return;
	}
	sync_hooks(r);
}

static void local_head_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct repl *r = arg;
	struct strbuf msg = STRBUF_INIT, head = STRBUF_INIT, content = STRBUF_INIT;
	char *nl;

	r->cmd = NULL;
	if (gitaly_call_gone(&r->op)) {
		repl_fail(r, GRPC_CANCELLED, "context canceled");
		goto out;
	}
	nl = memchr(out->buf, '\n', out->len);
	if (status != 0 || !nl || nl + 1 != out->buf + out->len) {
		strbuf_addstr(&msg, "getting local default branch: ");
		gitaly_describe_status(&msg, status);
		repl_fail(r, GRPC_INTERNAL, "replicating repository: synchronizing references: %s", msg.buf);
		goto out;
	}
	strbuf_setlen(out, out->len - 1);
	if (out->len == r->remote_head.len && !memcmp(out->buf, r->remote_head.buf, out->len)) {
		sync_hooks(r);
		goto out;
	}
	if (reposvc_check_refname(r->remote_head.buf, r->remote_head.len, &msg) < 0) {
		repl_fail(r, GRPC_INTERNAL, "replicating repository: synchronizing references: setting default branch: "
			  "\"%s\" is a malformed refname", r->remote_head.buf);
		goto out;
	}
	strbuf_addf(&content, "ref: %s\n", r->remote_head.buf);
	strbuf_addf(&head, "%s/HEAD", r->path);
	if (reposvc_write_locked(&r->op, head.buf, content.buf, content.len, 0644, head_written, &msg) < 0)
		repl_fail(r, GRPC_INTERNAL, "replicating repository: synchronizing references: setting default branch: "
			  "committing temporary HEAD: %s", msg.buf);
out:
	strbuf_release(&msg);
	strbuf_release(&head);
	strbuf_release(&content);
}

static void remote_head_done(struct repl *r)
{
	static const char *const args[] = { "HEAD", NULL };
	Gitaly__FindDefaultBranchNameResponse *resp;
	struct git_call gc = { 0 };
	struct strbuf msg = STRBUF_INIT;

	if (r->call_code != GRPC_OK) {
		repl_fail(r, r->call_code, "replicating repository: synchronizing references: "
			  "getting remote default branch: %s", r->call_msg.buf);
		return;
	}
	resp = gitaly__find_default_branch_name_response__unpack(NULL, r->buf.len, (const uint8_t *)r->buf.buf);
	if (!resp || memchr(resp->name.data, '\0', resp->name.len)) {
		gitaly__find_default_branch_name_response__free_unpacked(resp, NULL);
		repl_fail(r, GRPC_INTERNAL, "replicating repository: synchronizing references: "
			  "getting remote default branch: malformed response");
		return;
	}
	strbuf_reset(&r->remote_head);
	strbuf_add(&r->remote_head, resp->name.data, resp->name.len);
	gitaly__find_default_branch_name_response__free_unpacked(resp, NULL);

	gc.git_dir = r->path;
	gc.repo = r->req->repository;
	gc.subcmd = "symbolic-ref";
	gc.args = args;
	if (gitaly_git_capture(r->op.g, &gc, NULL, 0, 64 * 1024, local_head_done, r, &r->cmd, &msg) < 0)
		repl_fail(r, GRPC_INTERNAL, "replicating repository: synchronizing references: "
			  "getting local default branch: %s", msg.buf);
	strbuf_release(&msg);
}

/* --- step 8: refs and objects through gitaly-ssh --- */

static void fetch_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct repl *r = arg;
	Gitaly__FindDefaultBranchNameRequest req = GITALY__FIND_DEFAULT_BRANCH_NAME_REQUEST__INIT;

	r->cmd = NULL;
	if (gitaly_call_gone(&r->op)) {
		repl_fail(r, GRPC_CANCELLED, "context canceled");
		return;
	}
	if (status != 0) {
		struct strbuf msg = STRBUF_INIT;
		struct log_entry e;
		gitaly_describe_status(&msg, status);
		strbuf_addstr(&msg, ", stderr: ");
		strbuf_add_json_string(&msg, err->buf, err->len);
		if (log_begin(&e, LOG_WARN, "replication fetch failed")) {
			log_strn(&e, "stderr", err->buf, err->len);
			log_end(&e);
		}
		repl_fail(r, GRPC_INTERNAL, "replicating repository: synchronizing references: fetch internal remote: %s",
			  msg.buf);
		strbuf_release(&msg);
		return;
	}
	req.repository = r->req->source;
	req.head_only = 1;
	if (repl_call_start(r, gitaly_out[OUT_FIND_DEFAULT_BRANCH_NAME], &req, 1, repl_collect_message, remote_head_done) < 0)
		repl_fail(r, GRPC_INTERNAL, "replicating repository: synchronizing references: %s", r->call_msg.buf);
}

static void sync_refs(struct repl *r)
{
	static const char *const flags[] = {
		"--no-write-fetch-head", "--quiet", "--prune", "--no-tags", "--atomic", NULL,
	};
	static const char *const args[] = { "ssh://gitaly/internal.git", "+refs/*:refs/*", NULL };
	static const char *const config[] = {
		"advice.fetchShowForcedUpdates=false",
		"fetch.negotiationAlgorithm=skipping",
		"fetch.fsckObjects=false",
	};
	struct strvec env = STRVEC_INIT;
	struct strbuf msg = STRBUF_INIT;
	struct git_call gc = { 0 };

	if (gitaly_call_gone(&r->op)) {
		repl_fail(r, GRPC_CANCELLED, "context canceled");
		return;
	}
	reposvc_ssh_env(r->op.g, r->op.call, r->req->source, r->address, r->token, &env);

	gc.git_dir = r->path;
	gc.repo = r->req->repository;
	gc.subcmd = "fetch";
	gc.flags = flags;
	gc.args = args;
	gc.config = config;
	gc.nr_config = ARRAY_SIZE(config);
	gc.env = env.v;
	gc.hooks = HOOK_REFERENCE_TRANSACTION; /* the fetched ref updates are voted on */
	gc.rpc = r->op.call;
	if (gitaly_git_capture(r->op.g, &gc, NULL, 0, 64 * 1024, fetch_done, r, &r->cmd, &msg) < 0)
		repl_fail(r, GRPC_INTERNAL, "replicating repository: synchronizing references: %s", msg.buf);
	strvec_clear(&env);
	strbuf_release(&msg);
}

/* --- step 7: object pools (replicate_pool.c) --- */

static void after_attributes(struct repl *r)
{
	if (!r->req->replicate_object_deduplication_network_membership) {
		sync_refs(r);
		return;
	}
	repl_sync_pool(r, sync_refs);
}

/* --- steps 5 and 6: config and info/attributes --- */

static void attributes_written(struct gitaly_call *op, enum grpc_code code, const char *msg)
{
	struct repl *r = container_of(op, struct repl, op);
	if (code != GRPC_OK) {
		repl_fail(r, code, "replicating repository: synchronizing gitattributes: %s", msg);
		return;
	}
	if (gitaly_call_gone(op)) {
		repl_fail(r, GRPC_CANCELLED, "context canceled");
		return;
	}
	after_attributes(r);
}

static void attributes_done(struct repl *r)
{
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;

	if (r->call_code != GRPC_OK) {
		repl_fail(r, r->call_code, "replicating repository: synchronizing gitattributes: %s",
			  r->call_msg.len ? r->call_msg.buf : "stream failed");
		return;
	}
	strbuf_addf(&path, "%s/info", r->path);
	fs_mkdir_p(path.buf, 0755);
	strbuf_addstr(&path, "/attributes");
	if (reposvc_write_locked(&r->op, path.buf, r->buf.buf, r->buf.len, 0644, attributes_written, &msg) < 0)
		repl_fail(r, GRPC_INTERNAL, "replicating repository: synchronizing gitattributes: %s", msg.buf);
	strbuf_release(&path);
	strbuf_release(&msg);
}

static void config_written(struct gitaly_call *op, enum grpc_code code, const char *msg)
{
	struct repl *r = container_of(op, struct repl, op);
	Gitaly__GetInfoAttributesRequest req = GITALY__GET_INFO_ATTRIBUTES_REQUEST__INIT;

	if (code != GRPC_OK) {
		repl_fail(r, code, "replicating repository: synchronizing gitconfig: %s", msg);
		return;
	}
	if (gitaly_call_gone(op)) {
		repl_fail(r, GRPC_CANCELLED, "context canceled");
		return;
	}
	req.repository = r->req->source;
	if (repl_call_start(r, gitaly_out[OUT_GET_INFO_ATTRIBUTES], &req, 1, repl_collect_field1, attributes_done) < 0)
		repl_fail(r, GRPC_INTERNAL, "replicating repository: synchronizing gitattributes: %s", r->call_msg.buf);
}

static void config_done(struct repl *r)
{
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;

	if (r->call_code != GRPC_OK) {
		repl_fail(r, r->call_code, "replicating repository: synchronizing gitconfig: %s",
			  r->call_msg.len ? r->call_msg.buf : "stream failed");
		return;
	}
	strbuf_addf(&path, "%s/config", r->path);
	if (reposvc_write_locked(&r->op, path.buf, r->buf.buf, r->buf.len, 0644, config_written, &msg) < 0)
		repl_fail(r, GRPC_INTERNAL, "replicating repository: synchronizing gitconfig: %s", msg.buf);
	strbuf_release(&path);
	strbuf_release(&msg);
}

/* --- step 3: the source must exist --- */

static void exists_done(struct repl *r)
{
	Gitaly__RepositoryExistsResponse *resp;
	Gitaly__GetConfigRequest req = GITALY__GET_CONFIG_REQUEST__INIT;
	int exists;

	if (r->call_code != GRPC_OK) {
		repl_fail(r, r->call_code, "checking for repo existence: %s", r->call_msg.buf);
		return;
	}
	resp = gitaly__repository_exists_response__unpack(NULL, r->buf.len, (const uint8_t *)r->buf.buf);
	exists = resp && resp->exists;
	gitaly__repository_exists_response__free_unpacked(resp, NULL);
	if (!exists) {
		repl_fail(r, GRPC_NOT_FOUND, "invalid source repository");
		return;
	}
	req.repository = r->req->source;
	if (repl_call_start(r, gitaly_out[OUT_GET_CONFIG], &req, 1, repl_collect_field1, config_done) < 0)
		repl_fail(r, GRPC_INTERNAL, "replicating repository: synchronizing gitconfig: %s", r->call_msg.buf);
}

static void check_source(struct repl *r)
{
	Gitaly__RepositoryExistsRequest req = GITALY__REPOSITORY_EXISTS_REQUEST__INIT;
	req.repository = r->req->source;
	if (repl_call_start(r, gitaly_out[OUT_REPOSITORY_EXISTS], &req, 0, repl_collect_message, exists_done) < 0)
		repl_fail(r, GRPC_INTERNAL, "new client: %s", r->call_msg.buf);
}

/* --- step 2: create the target from the source's snapshot --- */

static void snapshot_fed(struct repl *r)
{
	struct reposvc_create *rc = r->rc;
	struct strbuf msg = STRBUF_INIT;
	const char *m = r->call_msg.buf;

	if (gitaly_call_gone(&r->op)) {
		reposvc_create_seeded(rc, GRPC_CANCELLED, "context canceled");
		return;
	}
	if (!r->got_msg && r->call_code != GRPC_OK) {
		/* the source has no such repository: praefect then forgets that replica */
		if ((r->call_code == GRPC_NOT_FOUND && (strstr(m, "repository not found") ||
							 strstr(m, "GetRepoPath: not a git repository:"))) ||
		    (r->call_code == GRPC_FAILED_PRECONDITION && strstr(m, "repository not valid"))) {
			r->invalid_source = 1;
			reposvc_create_seeded(rc, GRPC_NOT_FOUND, "invalid source repository");
			return;
		}
		strbuf_addf(&msg, "extracting snapshot: first snapshot read: %s", m);
		reposvc_create_seeded(rc, r->call_code, msg.buf);
	} else if (!r->got_msg) {
		reposvc_create_seeded(rc, GRPC_INTERNAL, "extracting snapshot: first snapshot read: EOF");
	} else if (r->cmd_status != 0 || !r->cmd_started) {
		log_msgf(LOG_WARN, "extracting snapshot failed: %s", r->cmd_err.buf);
		strbuf_addstr(&msg, "extracting snapshot: wait for tar: ");
		if (r->cmd_started)
			gitaly_describe_status(&msg, r->cmd_status);
		else
			strbuf_addstr(&msg, "empty snapshot");
		reposvc_create_seeded(rc, GRPC_INTERNAL, msg.buf);
	} else if (r->call_code != GRPC_OK) {
		strbuf_addf(&msg, "extracting snapshot: %s", m);
		reposvc_create_seeded(rc, r->call_code, msg.buf);
	} else {
		reposvc_create_seeded(rc, GRPC_OK, NULL);
	}
	strbuf_release(&msg);
}

static void snapshot_seed(struct reposvc_create *rc, const char *tmp_path, const Gitaly__Repository *tmp_repo)
{
	struct repl *r = reposvc_create_data(rc);
	Gitaly__GetSnapshotRequest req = GITALY__GET_SNAPSHOT_REQUEST__INIT;
	const char *argv[] = { "tar", "-C", tmp_path, "-xvf", "-", NULL };
	struct strbuf msg = STRBUF_INIT;

	r->rc = rc;
	req.repository = r->req->source;
	if (repl_feed_start(r, gitaly_out[OUT_GET_SNAPSHOT], &req, 0, argv, snapshot_fed) < 0) {
		strbuf_addf(&msg, "extracting snapshot: %s", r->call_msg.buf);
		reposvc_create_seeded(rc, GRPC_INTERNAL, msg.buf);
	}
	strbuf_release(&msg);
}

static void created(struct reposvc_create *rc, enum grpc_code code, const char *msg)
{
	struct repl *r = reposvc_create_data(rc);
	r->rc = NULL;
	if (code == GRPC_OK) {
		r->created_here = 1;
		if (gitaly_call_gone(&r->op))
			repl_fail(r, GRPC_CANCELLED, "context canceled");
		else
			check_source(r);
		return;
	}
	if (r->invalid_source)
		repl_fail(r, GRPC_NOT_FOUND, "invalid source repository");
	else
		repl_fail(r, code, "could not create repository from snapshot: creating repository: %s", msg);
}

struct stale_dir {
	uv_work_t work;
	char *path;
};

static void stale_remove(uv_work_t *w)
{
	fs_remove_tree(container_of(w, struct stale_dir, work)->path);
}

static void stale_removed(uv_work_t *w, int status)
{
	struct stale_dir *d = container_of(w, struct stale_dir, work);
	free(d->path);
	free(d);
}

/* Something that is not a valid repository is in the way: move it aside, delete it later. */
static int move_invalid(struct repl *r, struct strbuf *msg)
{
	struct strbuf tmp = STRBUF_INIT;
	struct stat st;
	const char *base = strrchr(r->path, '/');
	struct stale_dir *d;

	if (lstat(r->path, &st) < 0)
		return 0;
	strbuf_addf(&tmp, "%s/invalidXXXXXX", r->tmp_root);
	if (!mkdtemp(tmp.buf)) {
		strbuf_addf(msg, "error deleting invalid repo: %s", strerror(errno));
		strbuf_release(&tmp);
		return -1;
	}
	d = xcalloc(1, sizeof(*d));
	d->path = xstrdup(tmp.buf);
	strbuf_addf(&tmp, "/%s", base ? base + 1 : r->path);
	if (rename(r->path, tmp.buf) < 0) {
		strbuf_addf(msg, "error deleting invalid repo: %s", strerror(errno));
		rmdir(d->path);
		free(d->path);
		free(d);
		strbuf_release(&tmp);
		return -1;
	}
	log_msgf(LOG_WARN, "removed invalid repository \"%s\"", r->path);
	if (uv_queue_work(r->op.g->loop, &d->work, stale_remove, stale_removed) < 0) {
		free(d->path);
		free(d);
	}
	strbuf_release(&tmp);
	return 0;
}

/* --- the handler --- */

/* Our turn as a writer in the target (core/cleanup.h). */
static void repl_go(void *arg)
{
	struct repl *r = arg;
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	enum grpc_code code;

	if (gitaly_call_gone(&r->op)) {
		repl_fail(r, GRPC_CANCELLED, "context canceled");
		goto out;
	}
	if (gitaly_locate(r->op.g, r->req->repository, 0, &path, &msg) == GRPC_OK) {
		check_source(r);
		goto out;
	}
	/* absent or broken: (re)create it from the source's snapshot */
	strbuf_reset(&msg);
	if (move_invalid(r, &msg) < 0) {
		repl_fail(r, GRPC_INTERNAL, "%s", msg.buf);
		goto out;
	}
	{
		struct reposvc_create_opts opts = { 0 };
		opts.seed = snapshot_seed;
		opts.done = created;
		opts.data = r;
		strbuf_reset(&msg);
		code = reposvc_create_start(&r->op, r->req->repository, &opts, &r->rc, &msg);
		if (code != GRPC_OK)
			repl_fail(r, code, "could not create repository from snapshot: creating repository: %s", msg.buf);
	}
out:
	strbuf_release(&path);
	strbuf_release(&msg);
}

void reposvc_replicate_repository(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__ReplicateRepositoryRequest *req =
		msg_unpack(call, &gitaly__replicate_repository_request__descriptor, buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT, tmp = STRBUF_INIT;
	const struct gitaly_storage *st;
	const struct grpc_metadata *in;
	enum grpc_code code;
	struct repl *r;
	int rc;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, LOCATE_NO_EXIST_CHECK, &path, &msg);
	if (code == GRPC_OK)
		code = gitaly_storage(g, req->repository->storage_name, &st, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto fail;
	}
	if (!req->source) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "source repository cannot be empty", NULL);
		goto fail;
	}
	if (!strcmp(req->repository->storage_name ? req->repository->storage_name : "",
		    req->source->storage_name ? req->source->storage_name : "")) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "repository and source have the same storage", NULL);
		goto fail;
	}
	if ((rc = gitaly_tmp_dir(g, st, &tmp)) < 0) {
		grpc_call_finishf(call, GRPC_INTERNAL, "temporary directory: %s", strerror(-rc));
		goto fail;
	}

	r = xcalloc(1, sizeof(*r));
	reposvc_init(&r->op, g, call, repl_release);
	r->op.cancel = repl_cancel;
	r->req = req;
	r->path = strbuf_detach(&path, NULL);
	r->tmp_root = strbuf_detach(&tmp, NULL);
	grpc_metadata_init(&r->fwd);
	strbuf_init(&r->call_msg, 0);
	strbuf_init(&r->abort_msg, 0);
	strbuf_init(&r->buf, 0);
	strvec_init(&r->tar_argv);
	strbuf_init(&r->cmd_err, 0);
	strbuf_init(&r->remote_head, 0);

	if (reposvc_source_server(call, req->source->storage_name, &r->address, &r->token, &msg) < 0 ||
	    grpc_channel_new(g->loop, reposvc_channel_target(r->address), NULL, &r->ch) < 0) {
		if (!msg.len)
			strbuf_addf(&msg, "cannot dial \"%s\"", r->address);
		grpc_call_finishf(call, GRPC_INTERNAL, "new client: %s", msg.buf);
		r->ch = NULL;
		repl_release(&r->op);
		goto out;
	}
	/* what the source is told: our caller's metadata, minus our own credentials */
	in = grpc_call_metadata(call);
	for (size_t i = 0; i < in->nr; i++) {
		const struct grpc_md *m = &in->v[i];
		if (strcmp(m->key, "authorization") && !grpc_metadata_is_reserved(m->key, strlen(m->key)))
			grpc_metadata_add(&r->fwd, m->key, strlen(m->key), m->value, m->value_len);
	}
	gitaly_call_watch(&r->op);
	/* the fetch and our locked-file writes take locks in the target: stale ones go first */
	r->writer = cleanup_writer_enter(g, r->path, repl_go, r);
	goto out;
fail:
	msg_free(req);
out:
	strbuf_release(&path);
	strbuf_release(&msg);
	strbuf_release(&tmp);
}
