/* The per-call base: finish once, cancel on close, release when closed and idle. */
#include "core/call.h"
#include "core/gitaly.h"
#include "base/pb.h"
#include "base/util.h"
#include "grpc/metadata.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void gitaly_call_init(struct gitaly_call *c, struct gitaly *g, struct grpc_call *call,
		      void (*release)(struct gitaly_call *c))
{
	memset(c, 0, sizeof(*c));
	c->g = g;
	c->call = call;
	c->release = release;
}

void gitaly_call_closed(struct gitaly_call *c)
{
	c->call = NULL;
	c->closed = 1;
	/*
	 * The cancel hook may make held work complete synchronously (a
	 * cancelled outbound call reports at once); its drop must not free the
	 * context under our feet, so the release happens here, last.
	 */
	c->in_close = 1;
	if (c->holds && c->cancel)
		c->cancel(c);
	c->in_close = 0;
	if (!c->holds)
		c->release(c);
}

static void on_watched_close(struct grpc_call *call, enum grpc_code code, void *arg)
{
	(void)call;
	(void)code;
	gitaly_call_closed(arg);
}

void gitaly_call_watch(struct gitaly_call *c)
{
	grpc_call_on_close(c->call, on_watched_close, c);
}

void gitaly_call_hold(struct gitaly_call *c)
{
	c->holds++;
}

int gitaly_call_drop(struct gitaly_call *c)
{
	if (--c->holds || !c->closed || c->in_close)
		return 0;
	c->release(c);
	return 1;
}

void gitaly_call_finish(struct gitaly_call *c, enum grpc_code code, const char *msg,
			const struct grpc_metadata *trailers)
{
	if (c->finished)
		return;
	c->finished = 1;
	if (c->call)
		grpc_call_finish(c->call, code, msg, trailers);
}

void gitaly_call_finishf(struct gitaly_call *c, enum grpc_code code, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	gitaly_call_finish(c, code, sb.buf, NULL);
	strbuf_release(&sb);
}

void gitaly_status_details(struct strbuf *out, enum grpc_code code, const char *msg,
			   const ProtobufCMessage *detail)
{
	struct strbuf any = STRBUF_INIT, url = STRBUF_INIT;
	size_t n = protobuf_c_message_get_packed_size(detail);
	uint8_t *buf = xmalloc(n ? n : 1);

	/* google.rpc.Status { 1 code, 2 message, 3 details: Any { 1 type_url, 2 value } } */
	protobuf_c_message_pack(detail, buf);
	strbuf_addf(&url, "type.googleapis.com/%s", detail->descriptor->name);
	pb_put_bytes(&any, 1, url.buf, url.len);
	pb_put_bytes(&any, 2, buf, n);
	if (code)
		pb_put_uint(out, 1, (uint64_t)code);
	if (msg && *msg)
		pb_put_bytes(out, 2, msg, strlen(msg));
	pb_put_bytes(out, 3, any.buf, any.len);
	free(buf);
	strbuf_release(&any);
	strbuf_release(&url);
}

void gitaly_call_finish_detail(struct gitaly_call *c, enum grpc_code code, const char *msg,
			       const ProtobufCMessage *detail)
{
	struct grpc_metadata md = GRPC_METADATA_INIT;
	struct strbuf st = STRBUF_INIT;
	if (c->finished || !c->call)
		return;
	gitaly_status_details(&st, code, msg, detail);
	grpc_metadata_add(&md, "grpc-status-details-bin", 23, st.buf, st.len);
	gitaly_call_finish(c, code, msg, &md);
	grpc_metadata_release(&md);
	strbuf_release(&st);
}

int gitaly_call_send(struct gitaly_call *c, const void *msg)
{
	if (!c->call)
		return -EPIPE;
	return msg_send(c->call, msg);
}
