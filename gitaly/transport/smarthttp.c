/* SmartHTTPService: InfoRefsUploadPack, InfoRefsReceivePack and PostReceivePack; see docs/technical/gitaly-transport.md. */
#include "core/gitaly.h"
#include "core/vote.h"
#include "base/pb.h"
#include "base/util.h"
#include "smarthttp.pb-c.h"
#include "transport/sidechannel.h"

#include <stdlib.h>
#include <string.h>

/* PostUploadPackWithSidechannel lives in transport/sidechannel.c. */

/* --- InfoRefs: the advertisement, behind a pkt-line service header --- */

static void info_refs_exit(struct gitaly_pipe *p, struct grpc_call *call, int status,
			   const struct strbuf *err)
{
	struct strbuf why = STRBUF_INIT;
	if (status == 0) {
		grpc_call_finish(call, GRPC_OK, NULL, NULL);
		return;
	}
	strbuf_addstr(&why, "wait: ");
	gitaly_describe_status(&why, status);
	grpc_call_finish(call, GRPC_INTERNAL, why.buf, NULL);
	strbuf_release(&why);
}

static void info_refs(struct grpc_call *call, const uint8_t *buf, size_t len, struct gitaly *g,
		      const char *service)
{
	static const char *const flags[] = { "--stateless-rpc", "--advertise-refs", NULL };
	Gitaly__InfoRefsRequest *req = msg_unpack(call, &gitaly__info_refs_request__descriptor, buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT, header = STRBUF_INIT;
	struct git_call gc = { 0 };
	struct gitaly_pipe_opts opts = { 0 };
	const char *args[2];
	enum grpc_code code;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto out;
	}

	/* "# service=git-upload-pack\n" as one pkt-line, then a flush */
	strbuf_addf(&header, "%04zx# service=git-%s\n0000", strlen(service) + 19, service);

	args[0] = path.buf;
	args[1] = NULL;
	gc.git_dir = path.buf;
	gc.repo = req->repository;
	gc.subcmd = service;
	gc.flags = flags;
	gc.args = args;
	gc.config = (const char *const *)req->git_config_options;
	gc.nr_config = req->n_git_config_options;
	gc.git_protocol = req->git_protocol;
	gc.rpc = call;
	/* hooks stay disabled: an advertisement never updates a ref */

	opts.stdout_field = 1;
	opts.prefix = header.buf;
	opts.prefix_len = header.len;
	opts.on_exit = info_refs_exit;
	code = gitaly_pipe_run(g, call, &gc, &opts, &msg);
	if (code != GRPC_OK)
		grpc_call_finish(call, code, msg.buf, NULL);
out:
	strbuf_release(&path);
	strbuf_release(&msg);
	strbuf_release(&header);
	msg_free(req);
}

static void info_refs_upload_pack(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	info_refs(call, buf, len, data, "upload-pack");
}

static void info_refs_receive_pack(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	info_refs(call, buf, len, data, "receive-pack");
}

/* --- PostReceivePack --- */

/* One push. References: the call (until it closes) and a pending final vote. */
struct post_receive {
	struct gitaly_call base;  /* holds: the final vote */
	int started;
};

static void post_receive_release(struct gitaly_call *c)
{
	free(container_of(c, struct post_receive, base));
}

static void on_final_vote(void *arg, enum grpc_code code, const char *msg)
{
	struct post_receive *r = arg;
	if (r->base.call)
		vote_finish_push(r->base.call, code, msg);
	gitaly_call_drop(&r->base);
}

static void post_receive_exit(struct gitaly_pipe *p, struct grpc_call *call, int status,
			      const struct strbuf *err)
{
	struct post_receive *r = gitaly_pipe_data(p);
	struct strbuf why = STRBUF_INIT;

	if (status != 0) {
		strbuf_addstr(&why, "waiting for receive-pack: ");
		gitaly_describe_status(&why, status);
		grpc_call_finish(call, GRPC_FAILED_PRECONDITION, why.buf, NULL);
		strbuf_release(&why);
		return;
	}
	gitaly_call_hold(&r->base);
	vote_push_end(r->base.g, call, on_final_vote, r);
}

static void post_receive_first(struct grpc_call *call, const uint8_t *buf, size_t len)
{
	static const char *const flags[] = { "--stateless-rpc", NULL };
	struct post_receive *r = grpc_call_user(call);
	Gitaly__PostReceivePackRequest *req;
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	struct gitaly_user_details user = { 0 };
	struct git_call gc = { 0 };
	struct gitaly_pipe_opts opts = { 0 };
	const char *args[2];
	const uint8_t *d;
	size_t dl;
	enum grpc_code code;

	if (r->started)
		return;
	r->started = 1;
	req = msg_unpack(call, &gitaly__post_receive_pack_request__descriptor, buf, len);
	if (!req)
		return;
	if (!req->gl_id || !*req->gl_id) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "empty GlId", NULL);
		goto out;
	}
	if (pb_find_bytes(buf, len, 2, &d, &dl) == 1) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "non-empty Data", NULL);
		goto out;
	}
	code = gitaly_locate(r->base.g, req->repository, 0, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto out;
	}

	user.userid = req->gl_id;
	user.username = req->gl_username ? req->gl_username : "";
	user.protocol = "http";
	args[0] = path.buf;
	args[1] = NULL;
	gc.git_dir = path.buf;
	gc.repo = req->repository;
	gc.subcmd = "receive-pack";
	gc.flags = flags;
	gc.args = args;
	gc.config = (const char *const *)req->git_config_options;
	gc.nr_config = req->n_git_config_options;
	gc.git_protocol = req->git_protocol;
	gc.hooks = HOOK_RECEIVE_PACK;
	gc.user = &user;
	gc.rpc = call;

	opts.stdin_field = 2;
	opts.stdout_field = 1;   /* stderr is not forwarded over HTTP */
	opts.on_exit = post_receive_exit;
	opts.writer = 1;
	opts.data = r;
	code = gitaly_pipe_run(r->base.g, call, &gc, &opts, &msg);
	if (code == GRPC_INVALID_ARGUMENT)
		grpc_call_finish(call, code, msg.buf, NULL);
	else if (code != GRPC_OK)
		grpc_call_finishf(call, GRPC_FAILED_PRECONDITION, "spawning receive-pack: %s", msg.buf);
out:
	strbuf_release(&path);
	strbuf_release(&msg);
	msg_free(req);
}

static void post_receive_half_close(struct grpc_call *call)
{
	struct post_receive *r = grpc_call_user(call);
	if (!r->started)
		grpc_call_finish(call, GRPC_INTERNAL, "EOF", NULL);
}

static const struct grpc_call_ops post_receive_first_ops = {
	.on_message = post_receive_first,
	.on_half_close = post_receive_half_close,
};

static void post_receive_pack(struct grpc_call *call, void *data)
{
	struct post_receive *r = xcalloc(1, sizeof(*r));
	gitaly_call_init(&r->base, data, call, post_receive_release);
	grpc_call_set_ops(call, &post_receive_first_ops, r);
	gitaly_call_watch(&r->base);
}

void gitaly_register_smarthttp(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.SmartHTTPService/InfoRefsUploadPack", info_refs_upload_pack, g);
	gitaly_add_unary(s, "/gitaly.SmartHTTPService/InfoRefsReceivePack", info_refs_receive_pack, g);
	gitaly_add_method(s, "/gitaly.SmartHTTPService/PostReceivePack", post_receive_pack, g);
	gitaly_add_unary(s, "/gitaly.SmartHTTPService/PostUploadPackWithSidechannel", sidechannel_post_upload_pack, g);
}
