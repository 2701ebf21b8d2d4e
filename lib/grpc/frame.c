/* Reassembly of length-prefixed gRPC messages from HTTP/2 DATA chunks. */
#include "frame.h"

#include <errno.h>

void grpc_framer_init(struct grpc_framer *f, size_t max_msg)
{
	strbuf_init(&f->buf, 0);
	f->off = 0;
	f->max_msg = max_msg;
}

void grpc_framer_release(struct grpc_framer *f)
{
	strbuf_release(&f->buf);
	f->off = 0;
}

void grpc_framer_push(struct grpc_framer *f, const void *data, size_t len)
{
	/* Compact before growing so a long stream never accumulates consumed bytes. */
	if (f->off && (f->off == f->buf.len || f->off >= f->buf.len / 2)) {
		strbuf_remove_front(&f->buf, f->off);
		f->off = 0;
	}
	strbuf_add(&f->buf, data, len);
}

static size_t frame_len(const uint8_t *p)
{
	return (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | (size_t)p[4];
}

int grpc_framer_peek(struct grpc_framer *f, const uint8_t **msg, size_t *len)
{
	size_t avail = f->buf.len - f->off;
	const uint8_t *p = (const uint8_t *)f->buf.buf + f->off;
	size_t n;

	if (avail < GRPC_FRAME_HEADER)
		return 0;
	n = frame_len(p);
	*len = n;
	if (p[0] != 0)
		return -EPROTO;
	if (n > f->max_msg)
		return -EMSGSIZE;
	if (avail - GRPC_FRAME_HEADER < n)
		return 0;
	*msg = p + GRPC_FRAME_HEADER;
	return 1;
}

size_t grpc_framer_consume(struct grpc_framer *f)
{
	const uint8_t *p = (const uint8_t *)f->buf.buf + f->off;
	size_t n = GRPC_FRAME_HEADER + frame_len(p);
	f->off += n;
	if (f->off == f->buf.len) {
		strbuf_setlen(&f->buf, 0);
		f->off = 0;
	}
	return n;
}

size_t grpc_framer_buffered(const struct grpc_framer *f)
{
	return f->buf.len - f->off;
}

void grpc_frame_header(uint8_t out[GRPC_FRAME_HEADER], size_t len)
{
	out[0] = 0;
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
}
