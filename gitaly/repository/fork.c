/*
 * CreateFork: a new repository cloned from a source that may live on
 * another node (found through the gitaly-servers metadata and reached with
 * gitaly-ssh, as ReplicateRepository fetches). With a revision, only that
 * branch is cloned and becomes HEAD. Sharing objects with the source is a
 * separate step: LinkRepositoryToObjectPool (docs/technical/object-pools.md).
 */
#include "repository/repository.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <stdlib.h>
#include <string.h>
#include "base/banned.h"

struct fork_op {
	struct gitaly_call op;
	Gitaly__CreateForkRequest *req;
	struct reposvc_create *rc;
	struct git_cmd *cmd;
	char *tmp_path;
	const Gitaly__Repository *tmp_repo;
	struct strbuf branch;         /* the revision's branch name, empty: every branch */
};

static void fork_release(struct gitaly_call *op)
{
	struct fork_op *f = container_of(op, struct fork_op, op);
	msg_free(f->req);
	free(f->tmp_path);
	strbuf_release(&f->branch);
	free(f);
}

static void fork_cancel(struct gitaly_call *op)
{
	struct fork_op *f = container_of(op, struct fork_op, op);
	reposvc_create_cancel(f->rc);
	reposvc_kill(f->cmd);
}

static void seeded_status(struct fork_op *f, const char *what, int status, const struct strbuf *err)
{
	struct strbuf m = STRBUF_INIT;
	strbuf_addf(&m, "%s: ", what);
	gitaly_describe_status(&m, status);
	if (err)
		strbuf_addf(&m, ", stderr: \"%.*s\"", (int)MIN(err->len, 4096), err->buf);
	reposvc_create_seeded(f->rc, GRPC_INTERNAL, m.buf);
	strbuf_release(&m);
}

static void remove_origin_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct fork_op *f = arg;
	f->cmd = NULL;
	if (status != 0)
		seeded_status(f, "removing origin remote", status, NULL);
	else
		reposvc_create_seeded(f->rc, GRPC_OK, NULL);
}

static void run(struct fork_op *f, const char *subcmd, const char *const *flags, const char *const *args,
		git_capture_fn done)
{
	struct git_call gc = { 0 };
	struct strbuf m = STRBUF_INIT;
	gc.git_dir = f->tmp_path;
	gc.repo = f->tmp_repo;
	gc.subcmd = subcmd;
	gc.flags = flags;
	gc.args = args;
	if (gitaly_git_capture(f->op.g, &gc, NULL, 0, 64 * 1024, done, f, &f->cmd, &m) < 0)
		reposvc_create_seeded(f->rc, GRPC_INTERNAL, m.buf);
	strbuf_release(&m);
}

static void head_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	static const char *const args[] = { "remove", "origin", NULL };
	struct fork_op *f = arg;
	const Gitaly__CreateForkRequest *req = f->req;

	f->cmd = NULL;
	if (status != 0) {
		seeded_status(f, "checking whether HEAD reference is sane", status, err);
		return;
	}
	while (out->len && out->buf[out->len - 1] == '\n')
		strbuf_setlen(out, out->len - 1);
	if (req->revision.len && (out->len != req->revision.len || memcmp(out->buf, req->revision.data, out->len))) {
		reposvc_create_seeded(f->rc, GRPC_INTERNAL, "HEAD points to unexpected reference");
		return;
	}
	run(f, "remote", NULL, args, remove_origin_done);
}

static void clone_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	static const char *const args[] = { "HEAD", NULL };
	struct fork_op *f = arg;

	f->cmd = NULL;
	if (gitaly_call_gone(&f->op)) {
		reposvc_create_seeded(f->rc, GRPC_CANCELLED, "context canceled");
		return;
	}
	if (status != 0) {
		seeded_status(f, "fetching source repo", status, err);
		return;
	}
	run(f, "symbolic-ref", NULL, args, head_done);
}

static void fork_seed(struct reposvc_create *rc, const char *tmp_path, const Gitaly__Repository *tmp_repo)
{
	struct fork_op *f = reposvc_create_data(rc);
	static const char *const config[] = { "fetch.fsckObjects=false" };
	struct strbuf m = STRBUF_INIT, branch_flag = STRBUF_INIT;
	struct strvec env = STRVEC_INIT;
	struct git_call gc = { 0 };
	const char *flags[6], *args[3];
	char *address = NULL, *token = NULL;
	size_t nf = 0;

	f->rc = rc;
	f->tmp_path = xstrdup(tmp_path);
	f->tmp_repo = tmp_repo;
	if (f->req->revision.len) {
		const char *rev = (const char *)f->req->revision.data;
		size_t len = f->req->revision.len;
		if (len < 11 || memcmp(rev, "refs/heads/", 11)) {
			reposvc_create_seeded(rc, GRPC_INVALID_ARGUMENT, "reference is not a branch");
			goto out;
		}
		if (len == 11) {
			reposvc_create_seeded(rc, GRPC_INVALID_ARGUMENT, "branch name is empty");
			goto out;
		}
		strbuf_add(&f->branch, rev + 11, len - 11);
	}
	if (reposvc_source_server(f->op.call, f->req->source_repository->storage_name, &address, &token, &m) < 0) {
		struct strbuf e = STRBUF_INIT;
		strbuf_addf(&e, "fetching source repo: %s", m.buf);
		reposvc_create_seeded(rc, GRPC_INTERNAL, e.buf);
		strbuf_release(&e);
		goto out;
	}
	reposvc_ssh_env(f->op.g, f->op.call, f->req->source_repository, address, token, &env);
	flags[nf++] = "--bare";
	flags[nf++] = "--quiet";
	if (f->branch.len) {
		strbuf_addf(&branch_flag, "--branch=%s", f->branch.buf);
		flags[nf++] = "--no-tags";
		flags[nf++] = "--single-branch";
		flags[nf++] = branch_flag.buf;
	}
	flags[nf] = NULL;
	args[0] = "ssh://gitaly/internal.git";
	args[1] = tmp_path;
	args[2] = NULL;
	gc.subcmd = "clone";
	gc.flags = flags;
	gc.args = args;
	gc.config = config;
	gc.nr_config = ARRAY_SIZE(config);
	gc.env = env.v;
	/* hooks disabled: nobody sees the repository before it is moved into place */
	if (gitaly_git_capture(f->op.g, &gc, NULL, 0, 64 * 1024, clone_done, f, &f->cmd, &m) < 0)
		reposvc_create_seeded(rc, GRPC_INTERNAL, m.buf);
out:
	free(address);
	free(token);
	strvec_clear(&env);
	strbuf_release(&m);
	strbuf_release(&branch_flag);
}

static void fork_created(struct reposvc_create *rc, enum grpc_code code, const char *msg)
{
	struct fork_op *f = reposvc_create_data(rc);
	f->rc = NULL;
	if (code == GRPC_OK) {
		Gitaly__CreateForkResponse resp = GITALY__CREATE_FORK_RESPONSE__INIT;
		reposvc_reply(&f->op, &resp);
	} else {
		reposvc_finishf(&f->op, gitaly_call_gone(&f->op) ? GRPC_CANCELLED : code, "creating fork: %s", msg);
	}
}

void reposvc_create_fork(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__CreateForkRequest *req = msg_unpack(call, &gitaly__create_fork_request__descriptor, buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	struct reposvc_create_opts opts = { 0 };
	const Gitaly__Repository *src;
	struct fork_op *f;
	enum grpc_code code;

	if (!req)
		return;
	src = req->source_repository;
	if (!src || ((!src->storage_name || !*src->storage_name) && (!src->relative_path || !*src->relative_path))) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "validating source repository: repository not set", NULL);
		goto fail;
	}
	if (!src->relative_path || !*src->relative_path) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "validating source repository: repository path not set",
				 NULL);
		goto fail;
	}
	code = gitaly_locate(g, req->repository, LOCATE_NO_EXIST_CHECK, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto fail;
	}
	f = xcalloc(1, sizeof(*f));
	reposvc_init(&f->op, g, call, fork_release);
	f->op.cancel = fork_cancel;
	f->req = req;
	strbuf_init(&f->branch, 0);
	opts.skip_init = 1;
	opts.seed = fork_seed;
	opts.done = fork_created;
	opts.data = f;
	code = reposvc_create_start(&f->op, req->repository, &opts, &f->rc, &msg);
	if (code != GRPC_OK) {
		grpc_call_finishf(call, code, "creating fork: %s", msg.buf);
		fork_release(&f->op);
		goto out;
	}
	gitaly_call_watch(&f->op);
	goto out;
fail:
	msg_free(req);
out:
	strbuf_release(&path);
	strbuf_release(&msg);
}
