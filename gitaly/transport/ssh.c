/* SSHService: SSHUploadPack, SSHReceivePack and SSHUploadArchive; see docs/technical/gitaly-transport.md. */
#include "core/gitaly.h"
#include "core/vote.h"
#include "base/pb.h"
#include "base/util.h"
#include "ssh.pb-c.h"
#include "transport/sidechannel.h"

#include <stdlib.h>
#include <string.h>

/* SSHUploadPackWithSidechannel lives in transport/sidechannel.c. */

enum ssh_kind { SSH_UPLOAD_PACK, SSH_RECEIVE_PACK, SSH_UPLOAD_ARCHIVE };

#define HUNG_UP "fatal: the remote end hung up unexpectedly\n"
#define PKT_MAX 65520

/*
 * Watches the client's pkt-line stream for one packet ("0009done\n" ends an
 * upload-pack negotiation, a flush ends upload-archive's arguments). Input
 * that is not pkt-line framed stops the watch without a match, so the
 * negotiation timer then runs out, as upstream's scanner does.
 */
struct pkt_watch {
	const char *want;
	size_t want_len;
	char hdr[4];
	size_t hdr_len;
	size_t left;          /* payload bytes still to come in this packet */
	char cur[16];         /* the packet so far, while it may still match */
	size_t cur_len;
	int candidate;        /* this packet has the length of `want` */
	int matched, broken;
};

static int hex4(const char *h, size_t *out)
{
	size_t v = 0;
	for (int i = 0; i < 4; i++) {
		int c = (unsigned char)h[i], d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v * 16 + (size_t)d;
	}
	*out = v;
	return 0;
}

static void watch_packet_end(struct pkt_watch *w)
{
	if (w->candidate && w->cur_len == w->want_len && !memcmp(w->cur, w->want, w->want_len))
		w->matched = 1;
	w->hdr_len = 0;
	w->cur_len = 0;
	w->candidate = 0;
}

static void watch_feed(struct pkt_watch *w, const uint8_t *data, size_t len)
{
	while (len && !w->matched && !w->broken) {
		if (w->hdr_len < 4) {
			size_t n = MIN(len, 4 - w->hdr_len), plen;
			memcpy(w->hdr + w->hdr_len, data, n);
			w->hdr_len += n;
			data += n;
			len -= n;
			if (w->hdr_len < 4)
				break;
			if (hex4(w->hdr, &plen) < 0 || plen > PKT_MAX) {
				w->broken = 1;
				break;
			}
			/* 0000-0003 are header-only special packets */
			w->left = plen < 4 ? 0 : plen - 4;
			w->candidate = (plen < 4 ? 4 : plen) == w->want_len;
			if (w->candidate) {
				memcpy(w->cur, w->hdr, 4);
				w->cur_len = 4;
			}
			if (!w->left)
				watch_packet_end(w);
			continue;
		}
		size_t n = MIN(len, w->left);
		if (w->candidate) {
			memcpy(w->cur + w->cur_len, data, n);
			w->cur_len += n;
		}
		data += n;
		len -= n;
		w->left -= n;
		if (!w->left)
			watch_packet_end(w);
	}
}

/*
 * One SSH call. Holds on the base (core/call.h): the negotiation timer
 * (dropped when the handle is closed) and a pending final vote.
 */
struct ssh_rpc {
	struct gitaly_call base;
	enum ssh_kind kind;
	struct gitaly_pipe *pipe;   /* NULL once the call closed */
	int started;
	uv_timer_t timer;
	int timer_open;
	int timed_out;
	struct pkt_watch watch;
};

static const char *const kind_name[] = { "upload-pack", "receive-pack", "upload-archive" };

static void ssh_rpc_release(struct gitaly_call *c)
{
	free(container_of(c, struct ssh_rpc, base));
}

static void on_timer_closed(uv_handle_t *h)
{
	struct ssh_rpc *r = h->data;
	gitaly_call_drop(&r->base);
}

static void timer_close(struct ssh_rpc *r)
{
	if (!r->timer_open)
		return;
	r->timer_open = 0;
	uv_timer_stop(&r->timer);
	uv_close((uv_handle_t *)&r->timer, on_timer_closed);
}

static void on_negotiation_timeout(uv_timer_t *t)
{
	struct ssh_rpc *r = t->data;
	if (!r->pipe)
		return;
	/* The access check happened when the call began: a client may not stall the negotiation forever. */
	r->timed_out = 1;
	gitaly_pipe_kill(r->pipe);
}

static void on_stdin(struct gitaly_pipe *p, const uint8_t *data, size_t len)
{
	struct ssh_rpc *r = gitaly_pipe_data(p);
	if (!r->timer_open)
		return;
	watch_feed(&r->watch, data, len);
	if (r->watch.matched)
		timer_close(r);
}

/* A response holding only exit_status (field 3, ExitStatus.value = 1). */
static void send_exit_status(struct grpc_call *call, int status)
{
	struct strbuf inner = STRBUF_INIT, msg = STRBUF_INIT;
	int32_t v = status < 0 ? -1 : status;   /* a signal reads as -1, as Go reports it */
	if (v)
		pb_put_uint(&inner, 1, (uint64_t)(int64_t)v);
	pb_put_bytes(&msg, 3, inner.buf, inner.len);
	grpc_call_send(call, msg.buf, msg.len);
	strbuf_release(&inner);
	strbuf_release(&msg);
}

static void on_final_vote(void *arg, enum grpc_code code, const char *msg)
{
	struct ssh_rpc *r = arg;
	if (r->base.call)
		vote_finish_push(r->base.call, code, msg);
	gitaly_call_drop(&r->base);
}

static void on_git_exit(struct gitaly_pipe *p, struct grpc_call *call, int status,
			const struct strbuf *err)
{
	struct ssh_rpc *r = gitaly_pipe_data(p);
	struct strbuf why = STRBUF_INIT;
	int hung_up = err->len == strlen(HUNG_UP) && !memcmp(err->buf, HUNG_UP, err->len);

	timer_close(r);
	if (r->timed_out) {
		send_exit_status(call, status);
		grpc_call_finish(call, GRPC_DEADLINE_EXCEEDED, "waiting for negotiation: context canceled", NULL);
		return;
	}
	if (status == 0) {
		switch (r->kind) {
		case SSH_UPLOAD_PACK:
			grpc_call_finish(call, GRPC_OK, NULL, NULL);
			break;
		case SSH_UPLOAD_ARCHIVE:
			send_exit_status(call, 0);
			grpc_call_finish(call, GRPC_OK, NULL, NULL);
			break;
		case SSH_RECEIVE_PACK:
			gitaly_call_hold(&r->base);
			vote_push_end(r->base.g, call, on_final_vote, r);
			break;
		}
		return;
	}

	send_exit_status(call, status);
	if (hung_up) {
		grpc_call_finish(call, GRPC_CANCELLED,
				 r->kind == SSH_RECEIVE_PACK ? "user canceled the push" : "user canceled the request",
				 NULL);
		return;
	}
	if (r->kind == SSH_UPLOAD_PACK)
		strbuf_addstr(&why, "running upload-pack: ");
	else if (r->kind == SSH_UPLOAD_ARCHIVE)
		strbuf_addstr(&why, "send: ");
	strbuf_addstr(&why, "cmd wait: ");
	gitaly_describe_status(&why, status);
	if (r->kind != SSH_RECEIVE_PACK) {
		strbuf_addstr(&why, ", stderr: ");
		strbuf_add_json_string(&why, err->buf, err->len);
	}
	grpc_call_finish(call, GRPC_INTERNAL, why.buf, NULL);
	strbuf_release(&why);
}

/* The first request names the repository; everything after it is stdin. */
static void start_git(struct ssh_rpc *r, struct grpc_call *call, const Gitaly__Repository *repo,
		      const char *path, char **config, size_t nr_config, const char *protocol,
		      const struct gitaly_user_details *user)
{
	const char *args[] = { path, NULL };
	struct git_call gc = { 0 };
	struct gitaly_pipe_opts opts = { 0 };
	struct strbuf msg = STRBUF_INIT;
	enum grpc_code code;

	gc.git_dir = path;
	gc.repo = repo;
	gc.subcmd = kind_name[r->kind];
	gc.args = args;
	gc.config = (const char *const *)config;
	gc.nr_config = nr_config;
	gc.git_protocol = protocol;
	gc.rpc = call;
	if (user) {
		gc.hooks = HOOK_RECEIVE_PACK;
		gc.user = user;
	}

	opts.stdin_field = 2;
	opts.stdout_field = 1;
	opts.stderr_field = 2;
	opts.on_exit = on_git_exit;
	opts.data = r;
	if (r->kind != SSH_RECEIVE_PACK)
		opts.on_stdin = on_stdin;
	else
		opts.writer = 1;

	code = gitaly_pipe_run(r->base.g, call, &gc, &opts, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		strbuf_release(&msg);
		return;
	}
	strbuf_release(&msg);
	r->pipe = grpc_call_user(call);

	if (r->kind != SSH_RECEIVE_PACK) {
		uint64_t ms = r->kind == SSH_UPLOAD_PACK ? r->base.g->cfg.upload_pack_negotiation_ms
							 : r->base.g->cfg.upload_archive_negotiation_ms;
		if (r->kind == SSH_UPLOAD_PACK) {
			r->watch.want = "0009done\n";
			r->watch.want_len = 9;
		} else {
			r->watch.want = "0000";
			r->watch.want_len = 4;
		}
		if (ms) {
			uv_timer_init(r->base.g->loop, &r->timer);
			r->timer.data = r;
			r->timer_open = 1;
			gitaly_call_hold(&r->base);
			uv_timer_start(&r->timer, on_negotiation_timeout, ms, 0);
		}
	}
}

/* The first request of an upload-pack or upload-archive: no stdin yet, then git. */
static void first_upload(struct ssh_rpc *r, struct grpc_call *call, const uint8_t *buf, size_t len,
			 const Gitaly__Repository *repo, char **config, size_t nr_config, const char *protocol)
{
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	const uint8_t *d;
	size_t dl;
	enum grpc_code code;

	code = gitaly_locate(r->base.g, repo, 0, &path, &msg);
	if (code != GRPC_OK)
		grpc_call_finish(call, code, msg.buf, NULL);
	else if (pb_find_bytes(buf, len, 2, &d, &dl) == 1)
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "non-empty stdin in first request", NULL);
	else
		start_git(r, call, repo, path.buf, config, nr_config, protocol, NULL);
	strbuf_release(&path);
	strbuf_release(&msg);
}

static void first_upload_pack(struct ssh_rpc *r, struct grpc_call *call, const uint8_t *buf, size_t len)
{
	Gitaly__SSHUploadPackRequest *req = msg_unpack(call, &gitaly__sshupload_pack_request__descriptor, buf, len);
	if (!req)
		return;
	first_upload(r, call, buf, len, req->repository, req->git_config_options, req->n_git_config_options,
		     req->git_protocol);
	msg_free(req);
}

static void first_receive_pack(struct ssh_rpc *r, struct grpc_call *call, const uint8_t *buf, size_t len)
{
	Gitaly__SSHReceivePackRequest *req = msg_unpack(call, &gitaly__sshreceive_pack_request__descriptor, buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	struct gitaly_user_details user = { 0 };
	const uint8_t *d;
	size_t dl;
	enum grpc_code code;

	if (!req)
		return;
	if (!req->gl_id || !*req->gl_id) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "empty GlId", NULL);
	} else if (pb_find_bytes(buf, len, 2, &d, &dl) == 1) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "non-empty data in first request", NULL);
	} else if ((code = gitaly_locate(r->base.g, req->repository, 0, &path, &msg)) != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
	} else {
		user.userid = req->gl_id;
		user.username = req->gl_username ? req->gl_username : "";
		user.protocol = "ssh";
		start_git(r, call, req->repository, path.buf, req->git_config_options,
			  req->n_git_config_options, req->git_protocol, &user);
	}
	strbuf_release(&path);
	strbuf_release(&msg);
	msg_free(req);
}

static void first_upload_archive(struct ssh_rpc *r, struct grpc_call *call, const uint8_t *buf, size_t len)
{
	Gitaly__SSHUploadArchiveRequest *req =
		msg_unpack(call, &gitaly__sshupload_archive_request__descriptor, buf, len);
	if (!req)
		return;
	first_upload(r, call, buf, len, req->repository, NULL, 0, NULL);
	msg_free(req);
}

static void first_message(struct grpc_call *call, const uint8_t *buf, size_t len)
{
	struct ssh_rpc *r = grpc_call_user(call);
	if (r->started)
		return;
	r->started = 1;
	switch (r->kind) {
	case SSH_UPLOAD_PACK:
		first_upload_pack(r, call, buf, len);
		break;
	case SSH_RECEIVE_PACK:
		first_receive_pack(r, call, buf, len);
		break;
	case SSH_UPLOAD_ARCHIVE:
		first_upload_archive(r, call, buf, len);
		break;
	}
}

static void first_half_close(struct grpc_call *call)
{
	struct ssh_rpc *r = grpc_call_user(call);
	if (!r->started)
		grpc_call_finish(call, GRPC_INTERNAL, "EOF", NULL);
}

static const struct grpc_call_ops first_ops = {
	.on_message = first_message,
	.on_half_close = first_half_close,
};

static void on_call_closed(struct grpc_call *call, enum grpc_code code, void *arg)
{
	struct ssh_rpc *r = arg;
	r->pipe = NULL;   /* the pipe freed itself just before */
	timer_close(r);
	gitaly_call_closed(&r->base);
}

static void start(struct grpc_call *call, enum ssh_kind kind, struct gitaly *g)
{
	struct ssh_rpc *r = xcalloc(1, sizeof(*r));
	gitaly_call_init(&r->base, g, call, ssh_rpc_release);
	r->kind = kind;
	grpc_call_set_ops(call, &first_ops, r);
	grpc_call_on_close(call, on_call_closed, r);
}

static void start_upload_pack(struct grpc_call *call, void *data) { start(call, SSH_UPLOAD_PACK, data); }
static void start_receive_pack(struct grpc_call *call, void *data) { start(call, SSH_RECEIVE_PACK, data); }
static void start_upload_archive(struct grpc_call *call, void *data) { start(call, SSH_UPLOAD_ARCHIVE, data); }

void gitaly_register_ssh(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_method(s, "/gitaly.SSHService/SSHUploadPack", start_upload_pack, g);
	gitaly_add_method(s, "/gitaly.SSHService/SSHReceivePack", start_receive_pack, g);
	gitaly_add_method(s, "/gitaly.SSHService/SSHUploadArchive", start_upload_archive, g);
	gitaly_add_unary(s, "/gitaly.SSHService/SSHUploadPackWithSidechannel", sidechannel_ssh_upload_pack, g);
}
