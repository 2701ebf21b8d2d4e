/* Request decoding and response encoding helpers for service handlers. */
#include "core/gitaly.h"
#include "base/pb.h"
#include "base/util.h"

#include <errno.h>
#include <stdlib.h>

void *msg_unpack(struct grpc_call *call, const ProtobufCMessageDescriptor *desc,
		 const uint8_t *buf, size_t len)
{
	ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, buf);
	const ProtobufCFieldDescriptor *f;
	if (!m) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "cannot decode %s request", desc->name);
		return NULL;
	}
	/* the request log names the repository of every call that has one */
	f = protobuf_c_message_descriptor_get_field_by_name(desc, "repository");
	if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && f->descriptor == &gitaly__repository__descriptor &&
	    f->label != PROTOBUF_C_LABEL_REPEATED) {
		const Gitaly__Repository *r = *(Gitaly__Repository *const *)((const char *)m + f->offset);
		if (r) {
			grpc_call_set_tag(call, "grpc.request.repoStorage", r->storage_name);
			grpc_call_set_tag(call, "grpc.request.repoPath", r->relative_path);
			if (r->gl_repository && *r->gl_repository)
				grpc_call_set_tag(call, "grpc.request.glRepository", r->gl_repository);
		}
	}
	return m;
}

void msg_free(void *msg)
{
	if (msg)
		protobuf_c_message_free_unpacked(msg, NULL);
}

int msg_send(struct grpc_call *call, const void *msg)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	uint8_t small[256];
	uint8_t *buf = n <= sizeof(small) ? small : xmalloc(n);
	int rc;
	protobuf_c_message_pack(msg, buf);
	rc = grpc_call_send(call, buf, n);
	if (buf != small)
		free(buf);
	return rc;
}

int msg_reply(struct grpc_call *call, const void *msg)
{
	int rc = msg_send(call, msg);
	if (rc < 0)
		return rc;
	return grpc_call_finish(call, GRPC_OK, NULL, NULL);
}

int msg_send_chunked(struct grpc_call *call, uint32_t field, const void *data, size_t len)
{
	const char *p = data;
	struct strbuf sb = STRBUF_INIT;
	int rc = 0;
	while (len && rc == 0) {
		size_t n = MIN(len, (size_t)MSG_CHUNK);
		strbuf_reset(&sb);
		pb_put_bytes(&sb, field, p, n);
		rc = grpc_call_send(call, sb.buf, sb.len);
		p += n;
		len -= n;
	}
	strbuf_release(&sb);
	return rc;
}
