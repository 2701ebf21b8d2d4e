/* Child processes on the uv loop with piped, backpressured standard streams. */
#include "cmd.h"
#include "base/util.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

struct git_cmd {
	uv_loop_t *loop;
	uv_process_t proc;
	uv_pipe_t in, out, err;
	int have_in, have_out;
	int handles_open;
	int spawned;

	const struct git_cmd_ops *ops;
	void *user;

	size_t stdin_queued;
	int stdin_closing, stdin_closed, stdin_was_high;
	int out_paused, out_eof, err_eof;
	int exited, exit_status, exit_fired, detached, freeing;

	struct strbuf errbuf;
	size_t stderr_cap;

	/* git_cmd_stop(): SIGTERM sent, the grace timer runs until SIGKILL */
	uv_timer_t grace;
	int stopping, grace_open;
	uint64_t grace_ms;

	void (*reaped)(void *arg, int status);
	void *reaped_arg;
};

struct stdin_write {
	uv_write_t req;
	struct git_cmd *cmd;
	size_t len;
	char data[];
};

static size_t live_count;

size_t git_cmd_live_count(void) { return live_count; }
void *git_cmd_user(const struct git_cmd *cmd) { return cmd->user; }
int git_cmd_pid(const struct git_cmd *cmd) { return cmd->proc.pid; }
const struct strbuf *git_cmd_stderr(const struct git_cmd *cmd) { return &cmd->errbuf; }
size_t git_cmd_stdin_queued(const struct git_cmd *cmd) { return cmd->stdin_queued; }

static void on_handle_closed(uv_handle_t *h)
{
	struct git_cmd *cmd = h->data;
	if (--cmd->handles_open > 0)
		return;
	strbuf_release(&cmd->errbuf);
	if (cmd->spawned)
		live_count--;
	free(cmd);
}

static void close_handle(struct git_cmd *cmd, uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, on_handle_closed);
}

static void close_stdin_now(struct git_cmd *cmd)
{
	if (!cmd->have_in || cmd->stdin_closed)
		return;
	cmd->stdin_closed = 1;
	close_handle(cmd, (uv_handle_t *)&cmd->in);
}

/* Everything is over: fire on_exit once, then release the handles. */
static void maybe_finish(struct git_cmd *cmd)
{
	if (cmd->exit_fired || !cmd->exited || !cmd->err_eof || (cmd->have_out && !cmd->out_eof))
		return;
	cmd->exit_fired = 1;
	if (!cmd->detached && cmd->ops->on_exit)
		cmd->ops->on_exit(cmd, cmd->exit_status);
	if (cmd->reaped)
		cmd->reaped(cmd->reaped_arg, cmd->exit_status);
	if (cmd->grace_open) {
		uv_timer_stop(&cmd->grace);
		close_handle(cmd, (uv_handle_t *)&cmd->grace);
	}
	close_stdin_now(cmd);
	if (cmd->have_out)
		close_handle(cmd, (uv_handle_t *)&cmd->out);
	close_handle(cmd, (uv_handle_t *)&cmd->err);
	close_handle(cmd, (uv_handle_t *)&cmd->proc);
}

static void on_proc_exit(uv_process_t *p, int64_t status, int sig)
{
	struct git_cmd *cmd = p->data;
	cmd->exited = 1;
	cmd->exit_status = sig ? -sig : (int)status;
	/* Nobody reads stdin any more; pending writes fail with EPIPE. */
	maybe_finish(cmd);
}

static __thread char pipe_buf[128 * 1024];

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	buf->base = pipe_buf;
	buf->len = sizeof(pipe_buf);
}

static void on_out_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct git_cmd *cmd = s->data;
	if (n == 0)
		return;
	if (n < 0) {
		uv_read_stop(s);
		cmd->out_eof = 1;
		maybe_finish(cmd);
		return;
	}
	if (!cmd->detached && cmd->ops->on_stdout)
		cmd->ops->on_stdout(cmd, buf->base, (size_t)n);
}

static void on_err_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct git_cmd *cmd = s->data;
	if (n == 0)
		return;
	if (n < 0) {
		uv_read_stop(s);
		cmd->err_eof = 1;
		maybe_finish(cmd);
		return;
	}
	if (cmd->detached)
		return;
	if (cmd->ops->on_stderr) {
		cmd->ops->on_stderr(cmd, buf->base, (size_t)n);
	} else if (cmd->errbuf.len < cmd->stderr_cap) {
		strbuf_add(&cmd->errbuf, buf->base, MIN((size_t)n, cmd->stderr_cap - cmd->errbuf.len));
	}
}

int git_cmd_spawn(uv_loop_t *loop, const struct git_cmd_spec *spec, const struct git_cmd_ops *ops,
		  void *user, struct git_cmd **out)
{
	struct git_cmd *cmd = xcalloc(1, sizeof(*cmd));
	uv_process_options_t po;
	uv_stdio_container_t stdio[3];
	int rc;

	cmd->loop = loop;
	cmd->ops = ops;
	cmd->user = user;
	cmd->stderr_cap = spec->stderr_cap ? spec->stderr_cap : 64 * 1024;
	cmd->grace_ms = spec->stop_grace_ms ? spec->stop_grace_ms : GIT_CMD_STOP_GRACE_MS;
	strbuf_init(&cmd->errbuf, 0);
	cmd->have_in = spec->pipe_stdin;
	cmd->have_out = spec->pipe_stdout;

	memset(&po, 0, sizeof(po));
	memset(stdio, 0, sizeof(stdio));
	if (cmd->have_in) {
		uv_pipe_init(loop, &cmd->in, 0);
		cmd->in.data = cmd;
		cmd->handles_open++;
		stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
		stdio[0].data.stream = (uv_stream_t *)&cmd->in;
	} else {
		stdio[0].flags = UV_IGNORE;
	}
	if (cmd->have_out) {
		uv_pipe_init(loop, &cmd->out, 0);
		cmd->out.data = cmd;
		cmd->handles_open++;
		stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
		stdio[1].data.stream = (uv_stream_t *)&cmd->out;
	} else {
		stdio[1].flags = UV_IGNORE;
	}
	uv_pipe_init(loop, &cmd->err, 0);
	cmd->err.data = cmd;
	cmd->handles_open++;
	stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[2].data.stream = (uv_stream_t *)&cmd->err;

	po.file = spec->argv[0];
	po.args = (char **)spec->argv;
	po.env = (char **)spec->env;
	po.cwd = spec->cwd;
	po.stdio = stdio;
	po.stdio_count = 3;
	po.exit_cb = on_proc_exit;
	/* own process group, so a kill reaches every helper git starts */
	po.flags = UV_PROCESS_DETACHED;

	cmd->proc.data = cmd;
	rc = uv_spawn(loop, &cmd->proc, &po);
	cmd->handles_open++; /* the process handle must be closed even when spawn fails */
	if (rc < 0) {
		cmd->detached = 1;
		cmd->exit_fired = 1;
		if (cmd->have_in)
			close_handle(cmd, (uv_handle_t *)&cmd->in);
		if (cmd->have_out)
			close_handle(cmd, (uv_handle_t *)&cmd->out);
		close_handle(cmd, (uv_handle_t *)&cmd->err);
		close_handle(cmd, (uv_handle_t *)&cmd->proc);
		return rc;
	}
	cmd->spawned = 1;
	live_count++;
	if (!cmd->have_out)
		cmd->out_eof = 1;
	else
		uv_read_start((uv_stream_t *)&cmd->out, on_alloc, on_out_read);
	uv_read_start((uv_stream_t *)&cmd->err, on_alloc, on_err_read);
	*out = cmd;
	return 0;
}

static void on_stdin_written(uv_write_t *req, int status)
{
	struct stdin_write *w = container_of(req, struct stdin_write, req);
	struct git_cmd *cmd = w->cmd;

	cmd->stdin_queued -= w->len;
	free(w);
	if (cmd->stdin_closing && cmd->stdin_queued == 0)
		close_stdin_now(cmd);
	if (cmd->stdin_was_high && cmd->stdin_queued < GIT_CMD_STDIN_LOW) {
		cmd->stdin_was_high = 0;
		if (!cmd->detached && !cmd->exit_fired && cmd->ops->on_stdin_drained)
			cmd->ops->on_stdin_drained(cmd);
	}
}

int git_cmd_write_stdin(struct git_cmd *cmd, const void *buf, size_t len)
{
	struct stdin_write *w;
	uv_buf_t b;
	int rc;

	if (!cmd->have_in || cmd->stdin_closing || cmd->stdin_closed || cmd->exited)
		return -EPIPE;
	if (!len)
		return 0;
	w = xmalloc(sizeof(*w) + len);
	w->cmd = cmd;
	w->len = len;
	memcpy(w->data, buf, len);
	b = uv_buf_init(w->data, (unsigned)len);
	rc = uv_write(&w->req, (uv_stream_t *)&cmd->in, &b, 1, on_stdin_written);
	if (rc < 0) {
		free(w);
		return rc;
	}
	cmd->stdin_queued += len;
	if (cmd->stdin_queued >= GIT_CMD_STDIN_HIGH)
		cmd->stdin_was_high = 1;
	return 0;
}

void git_cmd_close_stdin(struct git_cmd *cmd)
{
	if (!cmd->have_in || cmd->stdin_closing || cmd->stdin_closed)
		return;
	cmd->stdin_closing = 1;
	if (cmd->stdin_queued == 0)
		close_stdin_now(cmd);
}

void git_cmd_pause_stdout(struct git_cmd *cmd)
{
	if (cmd->have_out && !cmd->out_eof && !cmd->out_paused) {
		cmd->out_paused = 1;
		uv_read_stop((uv_stream_t *)&cmd->out);
	}
}

void git_cmd_resume_stdout(struct git_cmd *cmd)
{
	if (cmd->have_out && !cmd->out_eof && cmd->out_paused) {
		cmd->out_paused = 0;
		uv_read_start((uv_stream_t *)&cmd->out, on_alloc, on_out_read);
	}
}

void git_cmd_kill(struct git_cmd *cmd, int sig)
{
	if (cmd->exited)
		return;
	/* negative pid: the whole process group the child leads */
	if (uv_kill(-cmd->proc.pid, sig) < 0)
		uv_process_kill(&cmd->proc, sig);
}

/*
 * The group, even once its leader exited: while our pipes are open someone in
 * it (a hook git started) still runs, and the group id stays theirs.
 */
static void signal_group(struct git_cmd *cmd, int sig)
{
	if (cmd->exit_fired)
		return;
	if (uv_kill(-cmd->proc.pid, sig) < 0 && !cmd->exited)
		uv_process_kill(&cmd->proc, sig);
}

static void on_grace_over(uv_timer_t *t)
{
	struct git_cmd *cmd = t->data;
	signal_group(cmd, SIGKILL);
}

void git_cmd_stop(struct git_cmd *cmd)
{
	if (cmd->exit_fired)
		return;
	if (cmd->stopping) {
		close_stdin_now(cmd);
		return;
	}
	cmd->stopping = 1;
	/*
	 * The signal first: it is pending before the EOF can be seen, so git
	 * dies of it (status -SIGTERM) rather than of a hung-up peer.
	 */
	signal_group(cmd, SIGTERM);
	close_stdin_now(cmd);
	uv_timer_init(cmd->loop, &cmd->grace);
	cmd->grace.data = cmd;
	cmd->grace_open = 1;
	cmd->handles_open++;
	/* the loop's clock may be behind (a long callback): the grace counts from now */
	uv_update_time(cmd->loop);
	uv_timer_start(&cmd->grace, on_grace_over, cmd->grace_ms, 0);
}

void git_cmd_detach(struct git_cmd *cmd)
{
	if (cmd->exit_fired)
		return;
	cmd->detached = 1;
	git_cmd_stop(cmd);
	/* keep draining output so the child never blocks on a full pipe before dying */
	git_cmd_resume_stdout(cmd);
}

void git_cmd_on_reaped(struct git_cmd *cmd, void (*fn)(void *arg, int status), void *arg)
{
	cmd->reaped = fn;
	cmd->reaped_arg = arg;
}

/* --- capture helper --- */

struct capture {
	struct git_cmd *cmd;
	struct strbuf out;
	size_t max;
	int overflow;
	git_capture_fn done;
	void *arg;
	uv_idle_t idle;   /* reports a spawn failure from the loop */
	int spawn_err;
};

static void capture_stdout(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct capture *c = git_cmd_user(cmd);
	if (c->overflow)
		return;
	if (c->out.len + len > c->max) {
		c->overflow = 1;
		git_cmd_stop(cmd);
		return;
	}
	strbuf_add(&c->out, buf, len);
}

static void capture_exit(struct git_cmd *cmd, int status)
{
	struct capture *c = git_cmd_user(cmd);
	struct strbuf err = STRBUF_INIT;
	strbuf_add(&err, cmd->errbuf.buf, cmd->errbuf.len);
	c->done(c->arg, c->overflow ? -E2BIG : status, &c->out, &err);
	strbuf_release(&err);
	strbuf_release(&c->out);
	free(c);
}

static const struct git_cmd_ops capture_ops = {
	.on_stdout = capture_stdout,
	.on_exit = capture_exit,
};

static void on_capture_idle_closed(uv_handle_t *h)
{
	struct capture *c = h->data;
	struct strbuf err = STRBUF_INIT;
	c->done(c->arg, c->spawn_err, &c->out, &err);
	strbuf_release(&err);
	strbuf_release(&c->out);
	free(c);
}

static void on_capture_idle(uv_idle_t *h)
{
	uv_close((uv_handle_t *)h, on_capture_idle_closed);
}

int git_cmd_capture(uv_loop_t *loop, const struct git_cmd_spec *spec, const void *stdin_data,
		    size_t stdin_len, size_t max_stdout, git_capture_fn done, void *arg,
		    struct git_cmd **out)
{
	struct capture *c = xcalloc(1, sizeof(*c));
	struct git_cmd_spec s = *spec;
	int rc;

	strbuf_init(&c->out, 0);
	c->max = max_stdout;
	c->done = done;
	c->arg = arg;
	s.pipe_stdout = 1;
	s.pipe_stdin = stdin_data != NULL;
	rc = git_cmd_spawn(loop, &s, &capture_ops, c, &c->cmd);
	if (rc < 0) {
		c->spawn_err = rc;
		uv_idle_init(loop, &c->idle);
		c->idle.data = c;
		uv_idle_start(&c->idle, on_capture_idle);
		if (out)
			*out = NULL;
		return 0;
	}
	if (stdin_data) {
		git_cmd_write_stdin(c->cmd, stdin_data, stdin_len);
		git_cmd_close_stdin(c->cmd);
	}
	if (out)
		*out = c->cmd;
	return 0;
}
