/*
 * RepositoryService/ObjectsSize: the revisions of every request message go
 * to `git rev-list --disk-usage --objects --stdin`, one a line, as they
 * arrive; half-close ends its input. The call stops being read while git's
 * stdin is full. docs/technical/gitaly-repository.md, "Repository information".
 */
#include "repository/repository.h"
#include "read/read.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define OUT_MAX 4096

struct objects_size {
	struct gitaly_call base;
	struct strbuf path;
	struct git_cmd *cmd;       /* NULL once git exited */
	int messages, failed, recv_paused;
	struct strbuf out;
};

static void os_release(struct gitaly_call *c)
{
	struct objects_size *x = container_of(c, struct objects_size, base);
	strbuf_release(&x->path);
	strbuf_release(&x->out);
	free(x);
}

static void os_cancel(struct gitaly_call *c)
{
	struct objects_size *x = container_of(c, struct objects_size, base);
	if (x->cmd)
		git_cmd_stop(x->cmd);
}

static void os_fail(struct objects_size *x, enum grpc_code code, const char *fmt, const char *arg)
{
	x->failed = 1;
	gitaly_call_finishf(&x->base, code, fmt, arg);
	if (x->cmd)
		git_cmd_stop(x->cmd);
}

static void os_stdout(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct objects_size *x = git_cmd_user(cmd);
	if (x->out.len + len <= OUT_MAX)
		strbuf_add(&x->out, buf, len);
}

static void os_drained(struct git_cmd *cmd)
{
	struct objects_size *x = git_cmd_user(cmd);
	if (x->recv_paused && x->base.call) {
		x->recv_paused = 0;
		grpc_call_resume_recv(x->base.call);
	}
}

static void os_exit(struct git_cmd *cmd, int status)
{
	struct objects_size *x = git_cmd_user(cmd);
	const struct strbuf *err = git_cmd_stderr(cmd);
	x->cmd = NULL;
	if (x->base.call && !x->failed) {
		static const char bad[] = "fatal: bad revision '";
		if (status != 0) {
			if (err->len > sizeof(bad) - 1 && !memcmp(err->buf, bad, sizeof(bad) - 1) &&
			    memchr(err->buf + sizeof(bad) - 1, '\'', err->len - (sizeof(bad) - 1)))
				gitaly_call_finish(&x->base, GRPC_NOT_FOUND, "revision not found", NULL);
			else
				gitaly_call_finishf(&x->base, GRPC_INTERNAL, "rev-list failed with error code %d", status);
		} else {
			Gitaly__ObjectsSizeResponse resp = GITALY__OBJECTS_SIZE_RESPONSE__INIT;
			char *end;
			while (x->out.len && (x->out.buf[x->out.len - 1] == '\n' || x->out.buf[x->out.len - 1] == ' '))
				strbuf_setlen(&x->out, x->out.len - 1);
			errno = 0;
			resp.size = strtoull(x->out.buf, &end, 10);
			if (!x->out.len || *end || errno || x->out.buf[0] == '-') {
				gitaly_call_finish(&x->base, GRPC_INTERNAL, "parsing object size: invalid syntax", NULL);
			} else {
				gitaly_call_send(&x->base, &resp);
				gitaly_call_finish(&x->base, GRPC_OK, NULL, NULL);
			}
		}
	}
	gitaly_call_drop(&x->base);
}

static const struct git_cmd_ops os_ops = {
	.on_stdout = os_stdout,
	.on_stdin_drained = os_drained,
	.on_exit = os_exit,
};

static int os_spawn(struct objects_size *x, const Gitaly__Repository *repo)
{
	static const char *const flags[] = { "--disk-usage", "--objects", "--stdin", NULL };
	struct strbuf msg = STRBUF_INIT;
	struct git_call gc = { 0 };
	enum grpc_code code = gitaly_locate(x->base.g, repo, 0, &x->path, &msg);
	if (code != GRPC_OK) {
		x->failed = 1;
		gitaly_call_finish(&x->base, code, msg.buf, NULL);
		strbuf_release(&msg);
		return -1;
	}
	gc.git_dir = x->path.buf;
	gc.repo = repo;
	gc.subcmd = "rev-list";
	gc.flags = flags;
	gc.rpc = x->base.call;
	gitaly_call_hold(&x->base);
	if (gitaly_git_spawn(x->base.g, &gc, 1, 1, &os_ops, x, &x->cmd, &msg) < 0) {
		x->cmd = NULL;
		x->base.holds--;
		os_fail(x, GRPC_INTERNAL, "start rev-list command: %s", msg.buf);
		strbuf_release(&msg);
		return -1;
	}
	strbuf_release(&msg);
	return 0;
}

static void os_message(struct grpc_call *call, const uint8_t *buf, size_t len)
{
	struct objects_size *x = grpc_call_user(call);
	Gitaly__ObjectsSizeRequest *req;
	struct strbuf msg = STRBUF_INIT, line = STRBUF_INIT;

	if (x->failed)
		return;
	if (!(req = msg_unpack(call, &gitaly__objects_size_request__descriptor, buf, len))) {
		x->failed = 1;
		if (x->cmd)
			git_cmd_stop(x->cmd);
		return;
	}
	if (x->messages++ == 0) {
		if (os_spawn(x, req->repository) < 0)
			goto out;
	} else if (req->repository) {
		os_fail(x, GRPC_INVALID_ARGUMENT, "%s", "subsequent requests must not contain repository");
		goto out;
	}
	if (!req->n_revisions) {
		os_fail(x, GRPC_INVALID_ARGUMENT, "%s", "no revisions specified");
		goto out;
	}
	for (size_t i = 0; i < req->n_revisions; i++) {
		const ProtobufCBinaryData *r = &req->revisions[i];
		strbuf_reset(&msg);
		if (rd_check_pseudo_revision((const char *)r->data, r->len, &msg) < 0) {
			os_fail(x, GRPC_INVALID_ARGUMENT, "validating revision: %s", msg.buf);
			goto out;
		}
		strbuf_add(&line, r->data, r->len);
		strbuf_addch(&line, '\n');
	}
	if (x->cmd && git_cmd_write_stdin(x->cmd, line.buf, line.len) == 0 &&
	    git_cmd_stdin_queued(x->cmd) > GIT_CMD_STDIN_HIGH && !x->recv_paused) {
		x->recv_paused = 1;
		grpc_call_pause_recv(call);
	}
out:
	strbuf_release(&msg);
	strbuf_release(&line);
	msg_free(req);
}

static void os_half_close(struct grpc_call *call)
{
	struct objects_size *x = grpc_call_user(call);
	if (x->failed)
		return;
	if (!x->messages) {
		x->failed = 1;
		gitaly_call_finish(&x->base, GRPC_INTERNAL, "receiving initial request: EOF", NULL);
		return;
	}
	if (x->cmd)
		git_cmd_close_stdin(x->cmd);
}

static void os_close(struct grpc_call *call, enum grpc_code code)
{
	struct objects_size *x = grpc_call_user(call);
	(void)code;
	gitaly_call_closed(&x->base);
}

static const struct grpc_call_ops os_call_ops = {
	.on_message = os_message,
	.on_half_close = os_half_close,
	.on_close = os_close,
};

static void objects_size(struct grpc_call *call, void *data)
{
	struct objects_size *x = xcalloc(1, sizeof(*x));
	gitaly_call_init(&x->base, data, call, os_release);
	x->base.cancel = os_cancel;
	strbuf_init(&x->path, 0);
	strbuf_init(&x->out, 0);
	grpc_call_set_ops(call, &os_call_ops, x);
}

void reposvc_register_objects_size(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_method(s, "/gitaly.RepositoryService/ObjectsSize", objects_size, g);
}
