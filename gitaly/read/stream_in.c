/* Client-streaming read RPCs: the context is made from the first request message. */
#include "read/read.h"
#include "base/util.h"

#include <stdlib.h>

/* Until the first message: what rd_in_start() was given. */
struct rd_in_pending {
	struct gitaly *g;
	const struct rd_in_ops *ops;
};

static void in_message(struct grpc_call *call, const uint8_t *buf, size_t len)
{
	struct rd_in *in = grpc_call_user(call);
	void *req;
	if (!in->rd.base.call)
		return;
	req = msg_unpack(call, in->ops->desc, buf, len);
	if (req)
		in->ops->on_request(in, req, 0);
}

static void in_half_close(struct grpc_call *call)
{
	struct rd_in *in = grpc_call_user(call);
	in->half_closed = 1;
	if (in->rd.base.call)
		in->ops->on_half_close(in);
}

/* rd_start()'s ops own writability and the close: forward to them. */
static void in_writable(struct grpc_call *call)
{
	struct rd_in *in = grpc_call_user(call);
	in->rd_ops->on_writable(call);
}

static void in_close(struct grpc_call *call, enum grpc_code code)
{
	struct rd_in *in = grpc_call_user(call);
	in->rd_ops->on_close(call, code);
}

static const struct grpc_call_ops in_ops = {
	.on_message = in_message,
	.on_half_close = in_half_close,
	.on_writable = in_writable,
	.on_close = in_close,
};

static void first_message(struct grpc_call *call, const uint8_t *buf, size_t len)
{
	struct rd_in_pending *p = grpc_call_user(call);
	struct gitaly *g = p->g;
	const struct rd_in_ops *ops = p->ops;
	struct rd_in *in;
	void *req = msg_unpack(call, ops->desc, buf, len);
	if (!req)
		return;   /* answered INVALID_ARGUMENT; first_close frees p */
	grpc_call_set_user(call, NULL);
	free(p);
	in = (struct rd_in *)rd_start(g, call, ops->size, req, ops->repository(req));
	if (!in)
		return;
	in->ops = ops;
	in->rd_ops = grpc_call_ops(call);
	grpc_call_set_ops(call, &in_ops, in);
	ops->on_request(in, req, 1);
}

static void first_half_close(struct grpc_call *call)
{
	/* no request at all: upstream hands the stream's io.EOF back, which ends up INTERNAL */
	grpc_call_finish(call, GRPC_INTERNAL, "EOF", NULL);
}

static void first_close(struct grpc_call *call, enum grpc_code code)
{
	(void)code;
	free(grpc_call_user(call));
}

static const struct grpc_call_ops first_ops = {
	.on_message = first_message,
	.on_half_close = first_half_close,
	.on_close = first_close,
};

void rd_in_start(struct grpc_call *call, struct gitaly *g, const struct rd_in_ops *ops)
{
	struct rd_in_pending *p = xcalloc(1, sizeof(*p));
	p->g = g;
	p->ops = ops;
	grpc_call_set_ops(call, &first_ops, p);
}
