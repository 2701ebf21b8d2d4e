/* ReplicateRepository: calls to the source node, and the streams from it fed to tar(1). */
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

/* --- calls to the source node --- */

static void cc_message(struct grpc_client_call *call, const uint8_t *msg, size_t len)
{
	struct repl *r = grpc_client_call_user(call);
	r->got_msg = 1;
	if (!r->call_cancelled && r->on_msg)
		r->on_msg(r, msg, len);
}

static void cc_close(struct grpc_client_call *call, enum grpc_code code, const char *message,
		     const struct grpc_metadata *trailers)
{
	struct repl *r = grpc_client_call_user(call);
	r->ccall = NULL;
	r->call_code = code;
	strbuf_reset(&r->call_msg);
	if (r->abort_msg.len && !gitaly_call_gone(&r->op)) {
		r->call_code = GRPC_INTERNAL;
		strbuf_add(&r->call_msg, r->abort_msg.buf, r->abort_msg.len);
	} else {
		strbuf_addstr(&r->call_msg, message ? message : "");
	}
	r->on_done(r);
}

static const struct grpc_client_ops cc_ops = {
	.on_message = cc_message,
	.on_close = cc_close,
};

/* Stop the running outbound call (its on_close still comes) for `why`. */
static void cc_abort(struct repl *r, const char *why)
{
	if (why && !r->abort_msg.len)
		strbuf_addstr(&r->abort_msg, why);
	if (r->ccall && !r->call_cancelled) {
		r->call_cancelled = 1;
		grpc_client_call_cancel(r->ccall);
	}
}

/*
 * Call `method` on the source with `req`. `forward` passes the incoming
 * metadata on (upstream does so for the sync steps). Returns 0 (on_done will
 * fire) or -1 (nothing started; `r->call_msg` says why).
 */
int repl_call_start(struct repl *r, const char *method, const void *req, int forward,
		    void (*on_msg)(struct repl *r, const uint8_t *msg, size_t len), void (*on_done)(struct repl *r))
{
	struct grpc_metadata md = GRPC_METADATA_INIT;
	size_t n = protobuf_c_message_get_packed_size(req);
	uint8_t *buf = xmalloc(n ? n : 1);
	uint64_t deadline, timeout = 0;
	int rc;

	if (gitaly_call_gone(&r->op)) {
		strbuf_reset(&r->call_msg);
		strbuf_addstr(&r->call_msg, "context canceled");
		free(buf);
		return -1;
	}
	deadline = grpc_call_deadline(r->op.call);
	if (deadline) {
		uint64_t now = now_ms();
		timeout = deadline > now ? deadline - now : 1;
	}
	if (forward)
		grpc_metadata_copy(&md, &r->fwd);
	if (r->token && *r->token)
		auth_v2_add(&md, r->token);
	protobuf_c_message_pack(req, buf);
	r->on_msg = on_msg;
	r->on_done = on_done;
	r->call_cancelled = 0;
	r->got_msg = 0;
	r->call_code = GRPC_OK;
	strbuf_reset(&r->call_msg);
	strbuf_reset(&r->abort_msg);
	strbuf_reset(&r->buf);
	rc = grpc_channel_call(r->ch, method, &md, timeout, 0, &cc_ops, r, &r->ccall);
	if (rc == 0) {
		grpc_client_call_send(r->ccall, buf, n);
		grpc_client_call_close_send(r->ccall);
	} else {
		r->ccall = NULL;
		strbuf_addf(&r->call_msg, "cannot call %s: %s", method, strerror(-rc));
	}
	grpc_metadata_release(&md);
	free(buf);
	return rc == 0 ? 0 : -1;
}

/* on_msg that keeps the bytes of field 1 of every message (config, attributes). */
void repl_collect_field1(struct repl *r, const uint8_t *msg, size_t len)
{
	const uint8_t *data = NULL;
	size_t dlen = 0; /* an empty message (absent file) has no field 1 */
	if (pb_find_bytes(msg, len, 1, &data, &dlen) < 0 || r->buf.len + dlen > MAX_FILE) {
		cc_abort(r, "response too large or malformed");
		return;
	}
	if (dlen)
		strbuf_add(&r->buf, data, dlen);
}

/* on_msg for unary calls: keep the message. */
void repl_collect_message(struct repl *r, const uint8_t *msg, size_t len)
{
	strbuf_reset(&r->buf);
	strbuf_add(&r->buf, msg, len);
}

/* --- a stream feeding tar(1) --- */

static void fed_maybe_end(struct repl *r)
{
	if (r->ccall || r->cmd)
		return;
	r->fed_end(r);
}

static void tar_drained(struct git_cmd *cmd)
{
	struct repl *r = git_cmd_user(cmd);
	if (r->recv_paused && r->ccall) {
		r->recv_paused = 0;
		grpc_client_call_resume_recv(r->ccall);
	}
}

static void tar_exit(struct git_cmd *cmd, int status)
{
	struct repl *r = git_cmd_user(cmd);
	const struct strbuf *err = git_cmd_stderr(cmd);
	r->cmd = NULL;
	r->cmd_status = status;
	strbuf_add(&r->cmd_err, err->buf, err->len);
	if (status != 0)
		cc_abort(r, "tar failed");
	fed_maybe_end(r);
}

static const struct git_cmd_ops tar_ops = {
	.on_stdin_drained = tar_drained,
	.on_exit = tar_exit,
};

static void fed_message(struct repl *r, const uint8_t *msg, size_t len)
{
	const uint8_t *data;
	size_t dlen;

	if (pb_find_bytes(msg, len, 1, &data, &dlen) < 0) {
		cc_abort(r, "malformed response");
		return;
	}
	if (!dlen)
		return;
	if (!r->cmd_started) {
		/* started on the first data only: GNU tar refuses an empty archive */
		struct git_cmd_spec spec = { 0 };
		int rc;
		spec.argv = r->tar_argv.v;
		spec.env = r->op.g->base_env.v;
		spec.pipe_stdin = 1;
		r->cmd_started = 1;
		rc = git_cmd_spawn(r->op.g->loop, &spec, &tar_ops, r, &r->cmd);
		if (rc < 0) {
			r->cmd_status = 127;
			strbuf_addf(&r->cmd_err, "cannot start tar: %s", uv_strerror(rc));
			cc_abort(r, "cannot start tar");
			return;
		}
	}
	if (!r->cmd)
		return;
	git_cmd_write_stdin(r->cmd, data, dlen);
	if (!r->recv_paused && git_cmd_stdin_queued(r->cmd) >= GIT_CMD_STDIN_HIGH) {
		r->recv_paused = 1;
		grpc_client_call_pause_recv(r->ccall);
	}
}

static void fed_call_done(struct repl *r)
{
	if (r->cmd) {
		if (r->call_code == GRPC_OK)
			git_cmd_close_stdin(r->cmd);
		else
			reposvc_kill(r->cmd);
	}
	fed_maybe_end(r);
}

/* Stream `method` into tar with `argv`; `end` runs once both are over. */
int repl_feed_start(struct repl *r, const char *method, const void *req, int forward,
		    const char *const *argv, void (*end)(struct repl *r))
{
	strvec_clear(&r->tar_argv);
	strvec_pushv(&r->tar_argv, argv);
	r->fed_end = end;
	r->cmd_started = 0;
	r->cmd_status = 0;
	r->recv_paused = 0;
	strbuf_reset(&r->cmd_err);
	return repl_call_start(r, method, req, forward, fed_message, fed_call_done);
}

