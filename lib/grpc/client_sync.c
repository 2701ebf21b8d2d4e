/* grpc_unary_sync(): a blocking unary call on top of the channel, for command-line tools and tests. */
#include "client.h"

#include <string.h>

struct sync_call {
	int done;
	enum grpc_code code;
	struct strbuf *resp, *errmsg;
};

static void sync_on_message(struct grpc_client_call *call, const uint8_t *msg, size_t len)
{
	struct sync_call *s = grpc_client_call_user(call);
	if (s->resp) {
		strbuf_reset(s->resp);
		strbuf_add(s->resp, msg, len);
	}
}

static void sync_on_close(struct grpc_client_call *call, enum grpc_code code, const char *message,
			  const struct grpc_metadata *trailers)
{
	struct sync_call *s = grpc_client_call_user(call);
	s->done = 1;
	s->code = code;
	if (s->errmsg) {
		strbuf_reset(s->errmsg);
		strbuf_addstr(s->errmsg, message ? message : "");
	}
}

static const struct grpc_client_ops sync_ops = {
	.on_message = sync_on_message,
	.on_close = sync_on_close,
};

enum grpc_code grpc_unary_sync(uv_loop_t *loop, struct grpc_channel *ch, const char *path,
			       const struct grpc_metadata *md, const void *req, size_t len,
			       uint64_t timeout_ms, struct strbuf *resp, struct strbuf *errmsg)
{
	struct sync_call s = { 0, GRPC_UNKNOWN, resp, errmsg };
	struct grpc_client_call *call;
	int rc = grpc_channel_call(ch, path, md, timeout_ms, 0, &sync_ops, &s, &call);

	if (rc < 0) {
		if (errmsg) {
			strbuf_reset(errmsg);
			strbuf_addf(errmsg, "cannot start call: %s", strerror(-rc));
		}
		return GRPC_INTERNAL;
	}
	grpc_client_call_send(call, req, len);
	grpc_client_call_close_send(call);
	while (!s.done)
		uv_run(loop, UV_RUN_ONCE);
	return s.code;
}
