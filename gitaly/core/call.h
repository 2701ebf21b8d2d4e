/*
 * One RPC being served: the base every per-call context embeds (read/read.h's
 * struct rd, operations/operations.h's struct op, the RepositoryService
 * contexts, and those of hooks/ and transport/).
 *
 * Life cycle:
 *  1. gitaly_call_init(): the context belongs to `call`. Unary handlers call
 *     gitaly_call_watch() once the request is in; handlers with their own
 *     grpc_call_ops call gitaly_call_closed() from on_close.
 *  2. Asynchronous work that will report back (a git process, a vote, a
 *     call to another node) holds the context: gitaly_call_hold() before it
 *     starts, gitaly_call_drop() when it reported.
 *  3. gitaly_call_finish() ends the call, once: later finishes are no-ops,
 *     and so is a finish after the call closed.
 *  4. When the call closes (finished, cancelled, deadline, connection lost),
 *     `call` turns NULL and, if work is held, `cancel` runs: it stops the
 *     work (kills processes, cancels outbound calls), whose completions then
 *     see gitaly_call_gone() and only clean up.
 *  5. `release` frees the enclosing context once the call closed and nothing
 *     is held, whichever comes last; never from inside `cancel`. After the
 *     drop or close that released it, nobody touches the context again.
 */
#ifndef GITALY_CORE_CALL_H
#define GITALY_CORE_CALL_H

#include <protobuf-c/protobuf-c.h>
#include "grpc/server.h"

struct gitaly;

struct gitaly_call {
	struct gitaly *g;
	struct grpc_call *call;                      /* NULL once the call closed */
	void (*cancel)(struct gitaly_call *c);       /* optional: the call closed while work is held */
	void (*release)(struct gitaly_call *c);      /* frees the enclosing context */
	unsigned holds;                              /* work in flight that will report back */
	int finished;                                /* gitaly_call_finish() ran */
	int closed;
	int in_close;                                /* inside gitaly_call_closed() */
};

/* Set up `c` (every other field zeroed). */
void gitaly_call_init(struct gitaly_call *c, struct gitaly *g, struct grpc_call *call,
		      void (*release)(struct gitaly_call *c));
/* Unary handlers: report the call's close to `c` (after the request arrived). */
void gitaly_call_watch(struct gitaly_call *c);
/* The call closed: from on_close of handlers that own the call's ops. */
void gitaly_call_closed(struct gitaly_call *c);
static inline int gitaly_call_gone(const struct gitaly_call *c) { return c->call == NULL; }

void gitaly_call_hold(struct gitaly_call *c);
/* The held work reported. Returns 1 when this released the context. */
int gitaly_call_drop(struct gitaly_call *c);

/* End the call with `code` (and `trailers`, may be NULL). */
void gitaly_call_finish(struct gitaly_call *c, enum grpc_code code, const char *msg,
			const struct grpc_metadata *trailers);
void gitaly_call_finishf(struct gitaly_call *c, enum grpc_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* End the call with `detail` in grpc-status-details-bin (google.rpc.Status). */
void gitaly_call_finish_detail(struct gitaly_call *c, enum grpc_code code, const char *msg,
			       const ProtobufCMessage *detail);
/* Encode google.rpc.Status{code, message, details: [Any(detail)]}. */
void gitaly_status_details(struct strbuf *out, enum grpc_code code, const char *msg,
			   const ProtobufCMessage *detail);
/* Pack and send one message: 0, or -EPIPE once the call is gone. */
int gitaly_call_send(struct gitaly_call *c, const void *msg);

#endif
