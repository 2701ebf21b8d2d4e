/*
 * The Test service (testsvc.proto) that grpc-testserver serves to the
 * integration tests: echo calls of all four kinds, chosen failures, a Sleep
 * call backed by a real child process, and server statistics.
 */
#ifndef TESTSVC_H
#define TESTSVC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "grpc/server.h"

struct testsvc {
	uv_loop_t *loop;
	struct grpc_server *server;
	/* ClientStream pauses receiving after every message (--pause-recv). */
	int pause_recv;
	/* Listening sockets, subtracted from the open sockets in Stats. */
	size_t nlisteners;
	struct grpc_server_hooks hooks;

	uint64_t cancelled_calls;
	uint64_t deadline_calls;
	uint64_t children;
	/* Distinct TCP peers seen (capped: this is for tests, not a log). */
	char **peers;
	size_t peers_nr, peers_alloc;
};

void testsvc_init(struct testsvc *t, uv_loop_t *loop, struct grpc_server *s);
/* Register /testsvc.Test/<method> for every method, and the call hooks. */
void testsvc_register(struct testsvc *t);
void testsvc_release(struct testsvc *t);

#endif
