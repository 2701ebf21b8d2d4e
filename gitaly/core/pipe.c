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
	/* a writer waits for its turn in the repository (core/cleanup.h) with the call paused */
	struct gitaly *g;
	struct strvec argv, env;
	char *cwd;
	struct strbuf prefix;     /* opts.prefix, copied: the caller's is gone by then */
	struct cleanup_writer *writer;
	int waiting;
};

#define STDERR_CAP (64 * 1024)

void *gitaly_pipe_data(const struct gitaly_pipe *p) { return p->opts.data; }

static void pipe_free(struct gitaly_pipe *p)
{
	strbuf_release(&p->err);
	strbuf_release(&p->msg);
	strvec_clear(&p->argv);
	strvec_clear(&p->env);
	strbuf_release(&p->prefix);
	free(p->cwd);
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

/* Every occurrence of a repeated bytes field, one line each (CreateBundleFromRefList's patterns). */
static void write_lines(struct gitaly_pipe *p, struct grpc_call *call, const uint8_t *msg, size_t len)
{
	const uint8_t *cur = msg, *end = msg + len;
	struct pb_field f;
	int rc;

	while ((rc = pb_next_field(&cur, end, &f)) == 1 && p->cmd) {
		if (f.num != p->opts.stdin_field || f.wire != PB_LEN)
			continue;
		gitaly_pipe_write(p, f.data, f.len);
		if (p->cmd)
			gitaly_pipe_write(p, "\n", 1);
	}
	if (rc < 0 && p->cmd) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		git_cmd_detach(p->cmd);
		p->cmd = NULL;
	}
}

static void call_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct gitaly_pipe *p = grpc_call_user(call);
	const uint8_t *data;
	size_t dlen;
	int rc;

	if (!p->opts.stdin_field || !p->cmd)
		return;
	if (p->opts.stdin_lines) {
		write_lines(p, call, msg, len);
		return;
	}
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
	if (p->waiting)
		return;   /* writer_ready() frees the pipe */
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

/* git runs: the call's messages flow to it, the prefix goes out first. */
static void pipe_started(struct gitaly_pipe *p)
{
	if (!p->opts.stdin_field)
		git_cmd_close_stdin(p->cmd);
	if (p->opts.prefix_len && p->opts.stdout_field)
		send_field(p, p->opts.stdout_field, p->opts.prefix, p->opts.prefix_len);
}

static void writer_ready(void *arg)
{
	struct gitaly_pipe *p = arg;
	struct git_cmd_spec spec = { 0 };
	int rc;

	p->waiting = 0;
	if (!p->call) {
		cleanup_writer_leave(p->writer);
		pipe_free(p);
		return;
	}
	spec.argv = p->argv.v;
	spec.env = p->env.v;
	spec.cwd = p->cwd;
	spec.pipe_stdin = p->opts.stdin_field != 0;
	spec.pipe_stdout = 1;
	rc = git_cmd_spawn(p->g->loop, &spec, &pipe_cmd_ops, p, &p->cmd);
	if (rc < 0) {
		p->cmd = NULL;
		cleanup_writer_leave(p->writer);
		grpc_call_finishf(p->call, GRPC_INTERNAL, "cannot start git: %s", uv_strerror(rc));
		return;
	}
	cleanup_writer_leave_on_reap(p->writer, p->cmd);   /* even if the call goes first */
	p->writer = NULL;
	pipe_started(p);
	grpc_call_resume_recv(p->call);   /* may deliver queued messages right away */
}

enum grpc_code gitaly_pipe_run(struct gitaly *g, struct grpc_call *call, const struct git_call *gc,
			       const struct gitaly_pipe_opts *opts, struct strbuf *msg)
{
	struct gitaly_pipe *p = xcalloc(1, sizeof(*p));
	int rc;

	p->opts = *opts;
	p->g = g;
	strbuf_init(&p->err, 0);
	strbuf_init(&p->msg, 0);
	strvec_init(&p->argv);
	strvec_init(&p->env);
	strbuf_init(&p->prefix, 0);
	if (opts->writer) {
		/* the command line now (it points into the caller's request), the process later */
		if (gitaly_git_spec(g, gc, &p->argv, &p->env, msg) < 0) {
			pipe_free(p);
			return GRPC_INVALID_ARGUMENT;
		}
		p->cwd = gc->cwd ? xstrdup(gc->cwd) : NULL;
		if (opts->prefix_len)
			strbuf_add(&p->prefix, opts->prefix, opts->prefix_len);
		p->opts.prefix = p->prefix.buf;
		p->call = call;
		p->waiting = 1;
		grpc_call_set_ops(call, &pipe_call_ops, p);
		grpc_call_pause_recv(call);
		p->writer = cleanup_writer_enter(g, gc->git_dir, writer_ready, p);
		return GRPC_OK;
	}
	rc = gitaly_git_spawn(g, gc, opts->stdin_field != 0, 1, &pipe_cmd_ops, p, &p->cmd, msg);
	if (rc < 0) {
		pipe_free(p);
		return rc == -EINVAL ? GRPC_INVALID_ARGUMENT : GRPC_INTERNAL;
	}
	p->call = call;
	grpc_call_set_ops(call, &pipe_call_ops, p);
	pipe_started(p);
	return GRPC_OK;
}
