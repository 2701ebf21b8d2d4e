/* Streaming between a gRPC call and a git process, with backpressure both ways. */
#include "core/gitaly.h"
#include "base/pb.h"
#include "base/util.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

struct gitaly_pipe {
	struct grpc_call *call;   /* NULL once the call closed */
	struct git_cmd *cmd;      /* NULL once git exited */
	struct gitaly_pipe_opts opts;
	struct strbuf err;        /* captured stderr when not streamed */
	struct strbuf msg;        /* scratch for encoding */
	int recv_paused;
};

#define STDERR_CAP (64 * 1024)

void *gitaly_pipe_data(const struct gitaly_pipe *p) { return p->opts.data; }

static void pipe_free(struct gitaly_pipe *p)
{
	strbuf_release(&p->err);
	strbuf_release(&p->msg);
	free(p);
}

static void send_field(struct gitaly_pipe *p, uint32_t field, const char *buf, size_t len)
{
	while (len) {
		size_t n = MIN(len, (size_t)MSG_CHUNK);
		strbuf_reset(&p->msg);
		pb_put_bytes(&p->msg, field, buf, n);
		grpc_call_send(p->call, p->msg.buf, p->msg.len);
		buf += n;
		len -= n;
	}
}

/* --- git side --- */

static void cmd_stdout(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct gitaly_pipe *p = git_cmd_user(cmd);
	if (!p->call || !p->opts.stdout_field)
		return;
	send_field(p, p->opts.stdout_field, buf, len);
	if (grpc_call_send_full(p->call))
		git_cmd_pause_stdout(cmd);
}

static void cmd_stderr(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct gitaly_pipe *p = git_cmd_user(cmd);
	if (p->err.len < STDERR_CAP)
		strbuf_add(&p->err, buf, MIN(len, STDERR_CAP - p->err.len));
	if (p->call && p->opts.stderr_field)
		send_field(p, p->opts.stderr_field, buf, len);
}

static void cmd_stdin_drained(struct git_cmd *cmd)
{
	struct gitaly_pipe *p = git_cmd_user(cmd);
	if (p->call && p->recv_paused) {
		p->recv_paused = 0;
		grpc_call_resume_recv(p->call);
	}
}

static void cmd_exit(struct git_cmd *cmd, int status)
{
	struct gitaly_pipe *p = git_cmd_user(cmd);
	p->cmd = NULL;
	if (p->call)
		p->opts.on_exit(p, p->call, status, &p->err);
	/* the call's on_close frees the pipe */
}

static const struct git_cmd_ops pipe_cmd_ops = {
	.on_stdout = cmd_stdout,
	.on_stderr = cmd_stderr,
	.on_stdin_drained = cmd_stdin_drained,
	.on_exit = cmd_exit,
};

/* --- call side --- */

int gitaly_pipe_write(struct gitaly_pipe *p, const void *data, size_t len)
{
	int rc;
	if (!p->cmd)
		return -EPIPE;
	rc = git_cmd_write_stdin(p->cmd, data, len);
	if (rc == 0 && p->call && !p->recv_paused && git_cmd_stdin_queued(p->cmd) >= GIT_CMD_STDIN_HIGH) {
		p->recv_paused = 1;
		grpc_call_pause_recv(p->call);
	}
	return rc;
}

void gitaly_pipe_kill(struct gitaly_pipe *p)
{
	if (p->cmd)
		git_cmd_stop(p->cmd);
}

static void call_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct gitaly_pipe *p = grpc_call_user(call);
	const uint8_t *data;
	size_t dlen;
	int rc;

	if (!p->opts.stdin_field || !p->cmd)
		return;
	rc = pb_find_bytes(msg, len, p->opts.stdin_field, &data, &dlen);
	if (rc < 0) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		git_cmd_detach(p->cmd);
		p->cmd = NULL;
		return;
	}
	if (rc == 1 && dlen && p->opts.on_stdin)
		p->opts.on_stdin(p, data, dlen);
	if (rc == 1 && dlen && p->cmd)
		gitaly_pipe_write(p, data, dlen); /* EPIPE: git stopped reading; its exit says why */
}

static void call_half_close(struct grpc_call *call)
{
	struct gitaly_pipe *p = grpc_call_user(call);
	if (p->cmd)
		git_cmd_close_stdin(p->cmd);
}

static void call_writable(struct grpc_call *call)
{
	struct gitaly_pipe *p = grpc_call_user(call);
	if (p->cmd)
		git_cmd_resume_stdout(p->cmd);
}

static void call_close(struct grpc_call *call, enum grpc_code code)
{
	struct gitaly_pipe *p = grpc_call_user(call);
	p->call = NULL;
	if (p->cmd) {
		/* cancelled or past its deadline while git runs: stop it (SIGTERM first), reap it */
		git_cmd_detach(p->cmd);
		p->cmd = NULL;
	}
	pipe_free(p);
}

static const struct grpc_call_ops pipe_call_ops = {
	.on_message = call_message,
	.on_half_close = call_half_close,
	.on_writable = call_writable,
	.on_close = call_close,
};

enum grpc_code gitaly_pipe_run(struct gitaly *g, struct grpc_call *call, const struct git_call *gc,
			       const struct gitaly_pipe_opts *opts, struct strbuf *msg)
{
	struct gitaly_pipe *p = xcalloc(1, sizeof(*p));
	int rc;

	p->opts = *opts;
	strbuf_init(&p->err, 0);
	strbuf_init(&p->msg, 0);
	rc = gitaly_git_spawn(g, gc, opts->stdin_field != 0, 1, &pipe_cmd_ops, p, &p->cmd, msg);
	if (rc < 0) {
		pipe_free(p);
		return rc == -EINVAL ? GRPC_INVALID_ARGUMENT : GRPC_INTERNAL;
	}
	p->call = call;
	grpc_call_set_ops(call, &pipe_call_ops, p);
	if (!opts->stdin_field)
		git_cmd_close_stdin(p->cmd);
	if (opts->prefix_len && opts->stdout_field)
		send_field(p, opts->stdout_field, opts->prefix, opts->prefix_len);
	return GRPC_OK;
}
