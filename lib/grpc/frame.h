/*
 * gRPC length-prefixed message framing: 1 byte compressed flag, 4 bytes
 * big-endian length, then the message. A framer reassembles messages from
 * DATA chunks of any size and enforces the maximum message size before the
 * message is buffered.
 */
#ifndef GRPC_FRAME_H
#define GRPC_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include "../base/strbuf.h"

#define GRPC_FRAME_HEADER 5

struct grpc_framer {
	struct strbuf buf;
	size_t off;      /* start of the first undelivered byte in buf */
	size_t max_msg;  /* largest message accepted */
};

void grpc_framer_init(struct grpc_framer *f, size_t max_msg);
void grpc_framer_release(struct grpc_framer *f);
void grpc_framer_push(struct grpc_framer *f, const void *data, size_t len);

/*
 * Look at the next whole message. Returns 1 and sets *msg and *len when one is
 * complete (valid until the next push or consume), 0 when more bytes are needed,
 * -EMSGSIZE when the announced length exceeds max_msg (*len holds it), or
 * -EPROTO when the compressed flag is set (we never negotiate compression).
 */
int grpc_framer_peek(struct grpc_framer *f, const uint8_t **msg, size_t *len);
/* Drop the message last returned by peek; returns the bytes consumed (5 + len). */
size_t grpc_framer_consume(struct grpc_framer *f);
/* Bytes buffered and not yet consumed. */
size_t grpc_framer_buffered(const struct grpc_framer *f);

void grpc_frame_header(uint8_t out[GRPC_FRAME_HEADER], size_t len);

#endif
