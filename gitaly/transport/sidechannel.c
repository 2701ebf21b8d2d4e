/* SSHUploadPackWithSidechannel and PostUploadPackWithSidechannel; see docs/technical/sidechannel.md. */
#include "transport/sidechannel.h"
#include "core/gitaly.h"
#include "base/log.h"
#include "base/pb.h"
#include "base/util.h"
#include "backchannel/backchannel.h"
#include "grpc/metadata.h"
#include "h2/io.h"
#include "yamux/yamux.h"
#include "packfile.pb-c.h"
#include "smarthttp.pb-c.h"
#include "ssh.pb-c.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define SC_METADATA_KEY SIDECHANNEL_METADATA_KEY
#define SC_HANDSHAKE_MS 5000
/* git's output in flight on the stream: above HIGH git's stdout pauses, below LOW it resumes. */
#define SC_OUT_HIGH (1024 * 1024)
#define SC_OUT_LOW (256 * 1024)
#define SC_STDERR_CAP (64 * 1024)
/* Sideband payload: a pkt-line less its header and band byte. */
#define SC_BAND_MAX (SC_PKT_MAX - 5)
#define HUNG_UP "fatal: the remote end hung up unexpectedly\n"

/* --- one call --- */

enum sc_kind { SC_SSH, SC_HTTP };

struct sc_out {
	struct sc_rpc *r;
	size_t len;
	char buf[];
};

struct sc_rpc {
	struct gitaly_call base;
	enum sc_kind kind;
	void *req;                  /* the request, for the life of the call */
	struct strbuf path;
	struct strvec argv, env;    /* upload-pack's command line, built up front */
	enum grpc_code early_code;  /* a request error found before the sidechannel opened */
	struct strbuf early_msg;

	struct io *stream;          /* the sidechannel; NULL once closed */
	int64_t id;
	char hello[SIDECHANNEL_HELLO_LEN];
	char ok[2];
	size_t ok_len;
	int opened;                 /* "ok" arrived */
	uv_timer_t hs_timer;        /* the handshake's 5 s */
	int hs_timer_open;

	struct git_cmd *cmd;        /* NULL once exited or detached */
	int exited, status;
	struct strbuf err;          /* git's stderr (capped) */
	struct sc_deframe df;
	int stdin_done;             /* flush, EOF or bad framing: git's stdin is closed */
	int read_paused;
	int reading_done;
	size_t out_queued;
	int out_paused;
	int out_failed;             /* a write to the client failed */
	int out_error;

	struct sc_stats stats;
	uv_timer_t neg_timer;       /* SSH: the negotiation must end in time */
	int neg_timer_open;
	int timed_out;
};

static void sc_release(struct gitaly_call *c)
{
	struct sc_rpc *r = container_of(c, struct sc_rpc, base);
	msg_free(r->req);
	strbuf_release(&r->path);
	strvec_clear(&r->argv);
	strvec_clear(&r->env);
	strbuf_release(&r->early_msg);
	strbuf_release(&r->err);
	sc_stats_release(&r->stats);
	free(r);
}

static void on_timer_closed(uv_handle_t *h)
{
	struct sc_rpc *r = h->data;
	gitaly_call_drop(&r->base);
}

static void hs_timer_close(struct sc_rpc *r)
{
	if (!r->hs_timer_open)
		return;
	r->hs_timer_open = 0;
	uv_timer_stop(&r->hs_timer);
	uv_close((uv_handle_t *)&r->hs_timer, on_timer_closed);
}

static void neg_timer_close(struct sc_rpc *r)
{
	if (!r->neg_timer_open)
		return;
	r->neg_timer_open = 0;
	uv_timer_stop(&r->neg_timer);
	uv_close((uv_handle_t *)&r->neg_timer, on_timer_closed);
}

/* How hashicorp/yamux words what happened to a stream, for upstream's messages. */
static const char *stream_error(int status)
{
	switch (status) {
	case UV_EOF:
		return "EOF";
	case UV_ECONNRESET:
		return "connection reset";
	case UV_ECANCELED:
		return "session shutdown";
	case UV_ETIMEDOUT:
		return "i/o deadline reached";
	default:
		return uv_strerror(status);
	}
}

/* The sidechannel could not be opened: upstream's code and wording per RPC. */
static void open_failed(struct sc_rpc *r, const char *fmt, const char *detail)
{
	struct strbuf why = STRBUF_INIT;
	strbuf_addstr(&why, "sidechannel: ");
	strbuf_addf(&why, fmt, detail);
	if (r->kind == SC_SSH)
		gitaly_call_finishf(&r->base, GRPC_ABORTED, "opennig sidechannel: %s", why.buf);
	else
		gitaly_call_finishf(&r->base, GRPC_INTERNAL, "open sidechannel: %s", why.buf);
	strbuf_release(&why);
}

static void send_stats(struct sc_rpc *r, int with_stats)
{
	Gitaly__PackfileNegotiationStatistics st = GITALY__PACKFILE_NEGOTIATION_STATISTICS__INIT;
	int ok = with_stats && !r->stats.failed;

	if (ok || r->kind == SC_SSH) {
		/* SSH reports what it counted even when the negotiation did not parse, as upstream */
		st.payload_size = r->stats.payload_size;
		st.packets = r->stats.packets;
		st.caps = (char **)r->stats.caps.v;
		st.n_caps = r->stats.caps.nr;
		st.wants = r->stats.wants;
		st.haves = r->stats.haves;
		st.shallows = r->stats.shallows;
		st.deepen = r->stats.deepen.buf;
		st.filter = r->stats.filter.buf;
	}
	if (!r->base.call || r->base.finished)
		return;
	r->base.finished = 1;
	if (r->kind == SC_SSH) {
		Gitaly__SSHUploadPackWithSidechannelResponse resp =
			GITALY__SSHUPLOAD_PACK_WITH_SIDECHANNEL_RESPONSE__INIT;
		resp.packfile_negotiation_statistics = &st;
		msg_reply(r->base.call, &resp);
	} else {
		Gitaly__PostUploadPackWithSidechannelResponse resp =
			GITALY__POST_UPLOAD_PACK_WITH_SIDECHANNEL_RESPONSE__INIT;
		resp.packfile_negotiation_statistics = &st;
		msg_reply(r->base.call, &resp);
	}
}

/* git is gone and the sidechannel closed: the call's answer. */
static void sc_finish(struct sc_rpc *r)
{
	struct strbuf why = STRBUF_INIT;
	int status = r->status;

	neg_timer_close(r);
	sc_stats_finish(&r->stats);
	if (r->kind == SC_SSH) {
		int hung_up = r->err.len == strlen(HUNG_UP) && !memcmp(r->err.buf, HUNG_UP, r->err.len);
		if (r->timed_out) {
			gitaly_call_finish(&r->base, GRPC_DEADLINE_EXCEEDED,
					   "running upload-pack: waiting for negotiation: context canceled", NULL);
		} else if (status == 0) {
			send_stats(r, 1);
		} else if (hung_up) {
			gitaly_call_finish(&r->base, GRPC_CANCELLED, "running upload-pack: user canceled the request",
					   NULL);
		} else {
			strbuf_addstr(&why, "running upload-pack: cmd wait: ");
			gitaly_describe_status(&why, status);
			strbuf_addstr(&why, ", stderr: ");
			strbuf_add_json_string(&why, r->err.buf, r->err.len);
			gitaly_call_finish(&r->base, GRPC_INTERNAL, why.buf, NULL);
		}
	} else {
		if (r->out_failed) {
			gitaly_call_finishf(&r->base, GRPC_FAILED_PRECONDITION,
					    "running upload-pack: copying stdout from upload-pack: %s",
					    stream_error(r->out_error));
		} else if (status == 0 || (!r->stats.failed && r->stats.deepen.len)) {
			/* a shallow fetch makes upload-pack exit non-zero by design */
			send_stats(r, 1);
		} else {
			strbuf_addstr(&why, "running upload-pack: waiting for upload-pack: ");
			gitaly_describe_status(&why, status);
			gitaly_call_finish(&r->base, GRPC_FAILED_PRECONDITION, why.buf, NULL);
		}
	}
	strbuf_release(&why);
}

/* --- git's output to the client --- */

static void on_out_written(struct io *io, int status, void *arg)
{
	struct sc_out *o = arg;
	struct sc_rpc *r = o->r;

	r->out_queued -= o->len;
	free(o);
	if (status < 0 && !r->out_failed) {
		/* the client went away mid-pack: stop git, drop the rest */
		r->out_failed = 1;
		r->out_error = status;
		if (r->cmd)
			git_cmd_stop(r->cmd);
	}
	if (r->out_paused && r->out_queued < SC_OUT_LOW && r->cmd) {
		r->out_paused = 0;
		git_cmd_resume_stdout(r->cmd);
	}
	gitaly_call_drop(&r->base);
}

static void out_write(struct sc_rpc *r, struct sc_out *o)
{
	if (!r->stream || r->out_failed) {
		free(o);
		return;
	}
	gitaly_call_hold(&r->base);
	r->out_queued += o->len;
	if (io_write(r->stream, o->buf, o->len, on_out_written, o) < 0) {
		r->out_queued -= o->len;
		free(o);
		gitaly_call_drop(&r->base);
		r->out_failed = 1;
		r->out_error = UV_EPIPE;
		if (r->cmd)
			git_cmd_stop(r->cmd);
		return;
	}
	if (r->cmd && !r->out_paused && r->out_queued >= SC_OUT_HIGH) {
		r->out_paused = 1;
		git_cmd_pause_stdout(r->cmd);
	}
}

/* SSH: stdout and stderr as sideband pkt-lines (band 1 and 2), as upstream's sideband writer. */
static void out_band(struct sc_rpc *r, int band, const char *buf, size_t len)
{
	size_t pkts = (len + SC_BAND_MAX - 1) / SC_BAND_MAX, total = len + 5 * pkts, at = 0;
	struct sc_out *o = xmalloc(sizeof(*o) + total);

	o->r = r;
	o->len = total;
	while (len) {
		size_t n = MIN(len, (size_t)SC_BAND_MAX);
		char hdr[6];
		snprintf(hdr, sizeof(hdr), "%04zx", n + 5);
		memcpy(o->buf + at, hdr, 4);
		o->buf[at + 4] = (char)band;
		memcpy(o->buf + at + 5, buf, n);
		at += n + 5;
		buf += n;
		len -= n;
	}
	out_write(r, o);
}

static void cmd_stdout(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct sc_rpc *r = git_cmd_user(cmd);
	struct sc_out *o;

	if (!len)
		return;
	if (r->kind == SC_SSH) {
		out_band(r, 1, buf, len);
		return;
	}
	o = xmalloc(sizeof(*o) + len);
	o->r = r;
	o->len = len;
	memcpy(o->buf, buf, len);
	out_write(r, o);
}

static void cmd_stderr(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct sc_rpc *r = git_cmd_user(cmd);
	if (r->err.len < SC_STDERR_CAP)
		strbuf_add(&r->err, buf, MIN(len, SC_STDERR_CAP - r->err.len));
	if (r->kind == SC_SSH && len)
		out_band(r, 2, buf, len);
}

static void cmd_stdin_drained(struct git_cmd *cmd)
{
	struct sc_rpc *r = git_cmd_user(cmd);
	if (r->read_paused && r->stream && !r->reading_done) {
		r->read_paused = 0;
		io_read_start(r->stream);
	}
}

static void cmd_exit(struct git_cmd *cmd, int status)
{
	struct sc_rpc *r = git_cmd_user(cmd);

	r->cmd = NULL;
	r->exited = 1;
	r->status = status;
	neg_timer_close(r);
	/* graceful: git's last output still goes, then FIN; the answer follows in on_stream_close */
	if (r->stream)
		io_close(r->stream);
	else
		sc_finish(r);
	gitaly_call_drop(&r->base);
}

static const struct git_cmd_ops sc_cmd_ops = {
	.on_stdout = cmd_stdout,
	.on_stderr = cmd_stderr,
	.on_stdin_drained = cmd_stdin_drained,
	.on_exit = cmd_exit,
};

/* --- the client's input to git --- */

static void stdin_data(void *arg, const char *p, size_t n)
{
	struct sc_rpc *r = arg;

	sc_stats_feed(&r->stats, p, n);
	if (r->stats.saw_done)
		neg_timer_close(r);
	if (!r->cmd || r->stdin_done)
		return;
	git_cmd_write_stdin(r->cmd, p, n);   /* -EPIPE: git stopped reading; its exit says why */
}

static void stdin_end(struct sc_rpc *r, const char *why)
{
	if (r->stdin_done)
		return;
	r->stdin_done = 1;
	if (why)
		log_msgf(LOG_DEBUG, "sidechannel: client input ended early: %s", why);
	if (r->cmd)
		git_cmd_close_stdin(r->cmd);
}

static void on_neg_timeout(uv_timer_t *t)
{
	struct sc_rpc *r = t->data;
	if (!r->cmd)
		return;
	/* access was checked when the call began: the negotiation may not be stalled forever */
	r->timed_out = 1;
	git_cmd_stop(r->cmd);
}

static void spawn_git(struct sc_rpc *r)
{
	struct git_cmd_spec spec = { 0 };
	int rc;

	spec.argv = (const char *const *)r->argv.v;
	spec.env = (const char *const *)r->env.v;
	spec.pipe_stdin = 1;
	spec.pipe_stdout = 1;
	rc = git_cmd_spawn(r->base.g->loop, &spec, &sc_cmd_ops, r, &r->cmd);
	if (rc < 0) {
		r->cmd = NULL;
		gitaly_call_finishf(&r->base, GRPC_INTERNAL, "cannot start git upload-pack: %s", uv_strerror(rc));
		io_close(r->stream);
		return;
	}
	gitaly_call_hold(&r->base);   /* dropped in cmd_exit, or by the cancel that detaches it */
	if (r->kind == SC_SSH && r->base.g->cfg.upload_pack_negotiation_ms) {
		uv_timer_init(r->base.g->loop, &r->neg_timer);
		r->neg_timer.data = r;
		r->neg_timer_open = 1;
		gitaly_call_hold(&r->base);
		uv_timer_start(&r->neg_timer, on_neg_timeout, r->base.g->cfg.upload_pack_negotiation_ms, 0);
	}
}

static void stream_data(struct sc_rpc *r, const char *buf, size_t len)
{
	size_t used;

	if (r->stdin_done)
		return;   /* bytes after the flush are ignored, as upstream's reader never reads them */
	used = sc_deframe_feed(&r->df, buf, len, stdin_data, r);
	(void)used;
	if (r->df.state == SC_DF_FLUSHED)
		stdin_end(r, NULL);
	else if (r->df.state == SC_DF_ERROR)
		stdin_end(r, r->df.err);
	else if (r->cmd && git_cmd_stdin_queued(r->cmd) >= GIT_CMD_STDIN_HIGH && !r->read_paused) {
		/* git is slower than the client: stop reading, the yamux window stalls the client */
		r->read_paused = 1;
		io_read_stop(r->stream);
	}
}

static void start_serving(struct sc_rpc *r)
{
	r->opened = 1;
	hs_timer_close(r);
	if (r->kind == SC_SSH && r->early_code != GRPC_OK) {
		/* upstream validates SSH requests only once the sidechannel is open */
		gitaly_call_finish(&r->base, r->early_code, r->early_msg.buf, NULL);
		io_close(r->stream);
		return;
	}
	spawn_git(r);
}

static void on_stream_read(struct io *io, const char *buf, ssize_t n)
{
	struct sc_rpc *r = io->data;

	if (n < 0) {
		io_read_stop(io);
		r->reading_done = 1;
		if (!r->opened) {
			open_failed(r, "receive confirmation: %s",
				    n == UV_EOF && r->ok_len ? "unexpected EOF" : stream_error((int)n));
			io_close(io);
			return;
		}
		/* EOF without the flush is upstream's ErrUnexpectedEOF: git's stdin just ends */
		stdin_end(r, r->df.state == SC_DF_FLUSHED ? NULL : stream_error((int)n));
		return;
	}
	if (!r->opened) {
		size_t take = MIN((size_t)n, 2 - r->ok_len);
		memcpy(r->ok + r->ok_len, buf, take);
		r->ok_len += take;
		buf += take;
		n -= (ssize_t)take;
		if (r->ok_len < 2)
			return;
		if (memcmp(r->ok, "ok", 2)) {
			struct strbuf q = STRBUF_INIT;
			strbuf_add_json_string(&q, r->ok, 2);
			open_failed(r, "expected ok, got %s", q.buf);
			strbuf_release(&q);
			io_read_stop(io);
			io_close(io);
			return;
		}
		start_serving(r);
		if (!r->stream || !r->cmd)
			return;
	}
	if (n > 0)
		stream_data(r, buf, (size_t)n);
}

static void on_stream_close(struct io *io)
{
	struct sc_rpc *r = io->data;

	r->stream = NULL;
	hs_timer_close(r);
	if (!r->opened) {
		/* closed during the handshake (a cancel, or the session died) */
		if (!r->base.finished)
			open_failed(r, "receive confirmation: %s", "connection reset");
	} else if (r->exited) {
		sc_finish(r);
	} else if (r->cmd) {
		/* the client is gone before git finished: stop it; cmd_exit answers */
		r->out_failed = 1;
		if (!r->out_error)
			r->out_error = UV_ECONNRESET;
		git_cmd_stop(r->cmd);
	}
	gitaly_call_drop(&r->base);
}

static void on_hello_written(struct io *io, int status, void *arg)
{
	struct sc_rpc *r = arg;
	if (status < 0 && !r->opened && r->stream) {
		open_failed(r, "write magic bytes: %s", stream_error(status));
		io_close(r->stream);
	}
	gitaly_call_drop(&r->base);
}

static void on_hs_timeout(uv_timer_t *t)
{
	struct sc_rpc *r = t->data;
	if (r->opened || !r->stream)
		return;
	open_failed(r, "receive confirmation: %s", "i/o deadline reached");
	yamux_stream_reset(r->stream);
}

static void open_sidechannel(struct sc_rpc *r)
{
	const char *idv = grpc_metadata_value(grpc_call_metadata(r->base.call), SC_METADATA_KEY);
	struct yamux_session *s;
	int rc;

	if (!idv) {
		open_failed(r, "%s", "sidechannel-id not found in incoming metadata");
		return;
	}
	s = yamux_stream_session(grpc_call_io(r->base.call));
	if (!s) {
		open_failed(r, "fail to extract yamux session: %s", "non-multiplexed connection");
		return;
	}
	r->id = bc_sidechannel_id(idv);
	rc = yamux_open_stream(s, &r->stream);
	if (rc < 0) {
		open_failed(r, "open stream: %s",
			    rc == -ECONNREFUSED ? "remote end is not accepting connections"
			    : rc == -ECONNRESET ? "session shutdown" : strerror(-rc));
		r->stream = NULL;
		return;
	}
	gitaly_call_hold(&r->base);   /* the stream, until on_stream_close */
	r->stream->data = r;
	r->stream->on_read = on_stream_read;
	r->stream->on_close = on_stream_close;

	/* "sidechannel", then the id as 8 big-endian bytes; the client answers "ok" */
	bc_sidechannel_hello(r->hello, r->id);
	gitaly_call_hold(&r->base);
	if (io_write(r->stream, r->hello, sizeof(r->hello), on_hello_written, r) < 0) {
		gitaly_call_drop(&r->base);
		open_failed(r, "write magic bytes: %s", "session shutdown");
		io_close(r->stream);
		return;
	}
	uv_timer_init(r->base.g->loop, &r->hs_timer);
	r->hs_timer.data = r;
	r->hs_timer_open = 1;
	gitaly_call_hold(&r->base);
	uv_timer_start(&r->hs_timer, on_hs_timeout, SC_HANDSHAKE_MS, 0);
	io_read_start(r->stream);
}

/* The call closed (cancelled, deadline, connection gone) while work is held. */
static void sc_cancel(struct gitaly_call *c)
{
	struct sc_rpc *r = container_of(c, struct sc_rpc, base);

	hs_timer_close(r);
	neg_timer_close(r);
	if (r->cmd) {
		git_cmd_detach(r->cmd);
		r->cmd = NULL;
		gitaly_call_drop(&r->base);
	}
	if (r->stream)
		yamux_stream_reset(r->stream);
}

static void start(struct grpc_call *call, struct gitaly *g, enum sc_kind kind, void *req,
		  const Gitaly__Repository *repo, char **config, size_t nr_config, const char *protocol)
{
	static const char *const http_flags[] = { "--stateless-rpc", NULL };
	struct sc_rpc *r = xcalloc(1, sizeof(*r));
	struct git_call gc = { 0 };
	const char *args[2];

	gitaly_call_init(&r->base, g, call, sc_release);
	r->base.cancel = sc_cancel;
	r->kind = kind;
	r->req = req;
	strbuf_init(&r->path, 0);
	strbuf_init(&r->early_msg, 0);
	strbuf_init(&r->err, 0);
	strvec_init(&r->argv);
	strvec_init(&r->env);
	sc_stats_init(&r->stats);
	gitaly_call_watch(&r->base);

	r->early_code = gitaly_locate(g, repo, 0, &r->path, &r->early_msg);
	if (r->early_code == GRPC_OK) {
		args[0] = r->path.buf;
		args[1] = NULL;
		gc.git_dir = r->path.buf;
		gc.repo = repo;
		gc.subcmd = "upload-pack";
		gc.flags = kind == SC_HTTP ? http_flags : NULL;
		gc.args = args;
		gc.config = (const char *const *)config;
		gc.nr_config = nr_config;
		gc.git_protocol = protocol;
		gc.rpc = call;
		if (gitaly_git_spec(g, &gc, &r->argv, &r->env, &r->early_msg) < 0)
			r->early_code = GRPC_INVALID_ARGUMENT;
	}
	if (kind == SC_HTTP && r->early_code != GRPC_OK) {
		/* smart HTTP validates before it opens the sidechannel */
		gitaly_call_finish(&r->base, r->early_code, r->early_msg.buf, NULL);
		return;
	}
	open_sidechannel(r);
}

void sidechannel_ssh_upload_pack(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__SSHUploadPackWithSidechannelRequest *req =
		msg_unpack(call, &gitaly__sshupload_pack_with_sidechannel_request__descriptor, buf, len);
	if (!req)
		return;
	start(call, data, SC_SSH, req, req->repository, req->git_config_options, req->n_git_config_options,
	      req->git_protocol);
}

void sidechannel_post_upload_pack(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__PostUploadPackWithSidechannelRequest *req =
		msg_unpack(call, &gitaly__post_upload_pack_with_sidechannel_request__descriptor, buf, len);
	if (!req)
		return;
	start(call, data, SC_HTTP, req, req->repository, req->git_config_options, req->n_git_config_options,
	      req->git_protocol);
}
