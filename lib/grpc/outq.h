/*
 * Internal to lib/grpc: the queue of framed messages a call has to send, and
 * the send-side water marks shared by server and client calls.
 */
#ifndef GRPC_OUTQ_H
#define GRPC_OUTQ_H

#include <stddef.h>
#include <stdint.h>

/* grpc_call_send_full() is true at or above HIGH; on_writable fires below LOW. */
#define GRPC_SEND_HIGH_WATER (1024 * 1024)
#define GRPC_SEND_LOW_WATER (256 * 1024)

struct outq_chunk {
	struct outq_chunk *next;
	size_t len, off;
	uint8_t data[];
};

struct grpc_outq {
	struct outq_chunk *head, *tail;
	size_t bytes;
};

/* Append one message with its 5-byte gRPC prefix. */
void outq_push_msg(struct grpc_outq *q, const void *msg, size_t len);
/* Copy up to `len` queued bytes into buf; returns the count. */
size_t outq_read(struct grpc_outq *q, uint8_t *buf, size_t len);
void outq_clear(struct grpc_outq *q);

#endif
