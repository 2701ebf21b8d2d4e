/* Send queue of framed gRPC messages. */
#include "outq.h"
#include "frame.h"
#include "../base/util.h"

#include <stdlib.h>
#include <string.h>

void outq_push_msg(struct grpc_outq *q, const void *msg, size_t len)
{
	struct outq_chunk *c = xmalloc(sizeof(*c) + GRPC_FRAME_HEADER + len);
	c->next = NULL;
	c->off = 0;
	c->len = GRPC_FRAME_HEADER + len;
	grpc_frame_header(c->data, len);
	if (len)
		memcpy(c->data + GRPC_FRAME_HEADER, msg, len);
	if (q->tail)
		q->tail->next = c;
	else
		q->head = c;
	q->tail = c;
	q->bytes += c->len;
}

size_t outq_read(struct grpc_outq *q, uint8_t *buf, size_t len)
{
	size_t done = 0;
	while (done < len && q->head) {
		struct outq_chunk *c = q->head;
		size_t n = MIN(len - done, c->len - c->off);
		memcpy(buf + done, c->data + c->off, n);
		c->off += n;
		done += n;
		if (c->off == c->len) {
			q->head = c->next;
			if (!q->head)
				q->tail = NULL;
			free(c);
		}
	}
	q->bytes -= done;
	return done;
}

void outq_clear(struct grpc_outq *q)
{
	while (q->head) {
		struct outq_chunk *c = q->head;
		q->head = c->next;
		free(c);
	}
	q->tail = NULL;
	q->bytes = 0;
}
