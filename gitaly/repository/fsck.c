/*
 * Fsck: `git fsck --no-progress --no-dangling` over the repository. A
 * repository that fails the check is an answer, not an error: OK with git's
 * output (stdout and stderr, in the order they arrived) in `error`; an empty
 * `error` means the check passed. See docs/technical/gitaly-repository.md, "Fsck".
 */
#include "repository/repository.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <stdlib.h>
#include <string.h>
#include "base/banned.h"

/* What git may print before the rest is dropped (a broken repository can list every object). */
#define FSCK_OUTPUT_CAP (1024 * 1024)

struct fsck_op {
	struct gitaly_call op;
	char *path;
	struct git_cmd *cmd;
	struct strbuf out;
};

static void fsck_release(struct gitaly_call *op)
{
	struct fsck_op *f = container_of(op, struct fsck_op, op);
	free(f->path);
	strbuf_release(&f->out);
	free(f);
}

static void fsck_cancel(struct gitaly_call *op)
{
	reposvc_kill(container_of(op, struct fsck_op, op)->cmd);
}

static void fsck_output(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct fsck_op *f = git_cmd_user(cmd);
	if (f->out.len < FSCK_OUTPUT_CAP)
		strbuf_add(&f->out, buf, MIN(len, FSCK_OUTPUT_CAP - f->out.len));
}

static void fsck_exit(struct git_cmd *cmd, int status)
{
	struct fsck_op *f = git_cmd_user(cmd);
	Gitaly__FsckResponse resp = GITALY__FSCK_RESPONSE__INIT;

	f->cmd = NULL;
	if (gitaly_call_gone(&f->op)) {
		reposvc_finish(&f->op, GRPC_CANCELLED, "context canceled");
		return;
	}
	if (status != 0) {
		if (!f->out.len)
			gitaly_describe_status(&f->out, status);   /* never an empty error for a failed check */
		resp.error.data = (uint8_t *)f->out.buf;
		resp.error.len = f->out.len;
	}
	reposvc_reply(&f->op, &resp);
}

static const struct git_cmd_ops fsck_ops = {
	.on_stdout = fsck_output,
	.on_stderr = fsck_output,
	.on_exit = fsck_exit,
};

void reposvc_fsck(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	static const char *const flags[] = { "--no-progress", "--no-dangling", NULL };
	struct gitaly *g = data;
	Gitaly__FsckRequest *req = msg_unpack(call, &gitaly__fsck_request__descriptor, buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	struct git_call gc = { 0 };
	struct fsck_op *f;
	enum grpc_code code;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto out;
	}
	f = xcalloc(1, sizeof(*f));
	reposvc_init(&f->op, g, call, fsck_release);
	f->op.cancel = fsck_cancel;
	f->path = strbuf_detach(&path, NULL);
	strbuf_init(&f->out, 0);
	gc.git_dir = f->path;
	gc.repo = req->repository;
	gc.subcmd = "fsck";
	gc.flags = flags;
	if (gitaly_git_spawn(g, &gc, 0, 1, &fsck_ops, f, &f->cmd, &msg) < 0) {
		grpc_call_finishf(call, GRPC_INTERNAL, "%s", msg.buf);
		fsck_release(&f->op);
		goto out;
	}
	gitaly_call_watch(&f->op);
out:
	msg_free(req);
	strbuf_release(&path);
	strbuf_release(&msg);
}
