/*
 * The coordinator's per-call state, shared by the proxy (coordinator.c),
 * routing (router/route.c) and the finalizer (finalize.c). One `struct
 * proxy` per client call; one `struct dest` per gitaly node the call goes to.
 *
 * Lifecycle: proxy_start() (coordinator.c) creates the proxy when a call
 * arrives; the first request message goes to proxy_route(), which picks the
 * destinations (proxy_add_dest()) and calls proxy_forward(); when the last
 * destination closes, proxy_finalize() records the outcome and ends the
 * client's call. `refs` counts the client call, every open destination and
 * every store request in flight.
 */
#ifndef PRAEFECT_COORDINATOR_PROXY_H
#define PRAEFECT_COORDINATOR_PROXY_H

#include "praefect.h"
#include "base/strvec.h"
#include "rpc/registry.h"

enum route_kind { ROUTE_ACCESSOR, ROUTE_MUTATOR, ROUTE_CREATE, ROUTE_MAINTENANCE, ROUTE_STORAGE };

struct proxy;
struct scproxy;

struct dest {
	struct proxy *px;
	struct node *node;
	struct grpc_client_call *cc;     /* NULL once closed */
	int primary;
	int paused;                      /* we paused its responses: the client is slow */
	int closed;
	enum grpc_code code;
	struct strbuf msg;
	struct grpc_metadata trailers;

	struct grpc_metadata headers;    /* an accessor's response headers, held until its first message */
	int headers_held;
	int unsent;                      /* closed before any byte of the call reached the node */
	int conn_lost;                   /* closed because the connection to the node died */
};

struct proxy {
	struct praefect *p;
	struct grpc_call *call;          /* NULL once the client side closed */
	const struct rpc_method *m;
	int refs;
	int routed, routing, half_closed, finished;
	int client_paused;
	struct strbuf first;             /* the first request message, until routed */
	struct strbuf pending;           /* framed-free queue of messages received while routing */
	size_t pending_msgs;

	enum route_kind kind;
	struct vstorage *vs;
	int64_t repo_id;
	char *relative_path;
	char *replica_path;
	char *primary;
	struct strvec outdated;          /* assigned storages that do not get the call: replication targets */
	struct strvec secondaries;       /* voters besides the primary (transactional mutators) */
	struct strvec updated;           /* secondaries that committed like the primary (finalizer) */
	uint64_t txid;                   /* 0: not transactional */
	int store_assignments;
	char *reserved_key;

	struct dest *dests;
	size_t nr_dests, open_dests;
	uint64_t start_ms;

	/* waiting for secondaries after the primary finished (coordinator.c linger_start) */
	int lingering;
	struct proxy *linger_prev, *linger_next;

	/* reads retried on another replica (coordinator.c retry_read) */
	int responded;                   /* a response message reached the client */
	size_t forwarded;                /* request messages sent after the first */
	struct strvec tried;             /* storages this accessor was sent to */
	/* reads held while a corrupt replica's siblings are verified (router/route.c) */
	uint64_t hold_until_ms;          /* 0: never held */
	struct proxy *next_held_read;    /* p->held_reads */
	/* calls held while the primary this praefect elected is compared-and-set (router/route.c) */
	int election_held;               /* held once already: not again */
	struct proxy *next_held_election; /* p->held_elections */
	int db_read;                     /* shared store: the repository was read from the database */
	/* finalize.c: the write intent and the jobs the finalizer queues */
	int intent_state;                /* 0: none yet, 1: being recorded, 2: recorded (or not needed) */
	int64_t intent;                  /* the store's intent id, 0 once deleted */
	const char *job_source;          /* points into primary/updated/secondaries */
	int verify;                      /* the jobs for `outdated` are verifications (forced) */
	int counted;                     /* counted in its repository's writes_in_flight */
	struct proxy *next_held;         /* p->held_writes: waiting for a write barrier */
	struct scproxy *sc;              /* the sidechannel proxied for this call (sidechannel.c) */
	/* a write routed again when its primary refused it (reroute.c) */
	int headers_sent;                /* response headers reached the client */
	int reroutes;                    /* times routed again */
	int rerouting;                   /* waiting for the other destinations to close */
	int replay_dropped;              /* too much forwarded to keep: no reroute */
	struct strbuf replay;            /* messages forwarded after the first, 4-byte length prefix */
	/* a push resumed on the next primary when its primary died before anything was applied (resume.c) */
	int resume_off;                  /* something reached the client that cannot be matched */
	struct strbuf resume_sent;       /* the primary's stdout bytes the client got */
	struct strbuf resume_error;      /* the error the dead primary caused: the answer if the resume fails */
	int gating;                      /* the client's messages wait for the new primary to repeat resume_sent */
	struct strbuf gate_buf;          /* the new primary's advertisement, until complete */
};

/* --- coordinator.c: lifetime and forwarding --- */
void proxy_unref(struct proxy *px);
/* End the client's call (once). */
void proxy_finish(struct proxy *px, enum grpc_code code, const char *msg, const struct grpc_metadata *trailers);
void proxy_fail(struct proxy *px, enum grpc_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void proxy_add_dest(struct proxy *px, struct node *n, int primary);
/* Routing is decided: open the destinations and replay what the client sent meanwhile. */
void proxy_forward(struct proxy *px);
/* Send the client's messages kept in px->pending, half-close if the client did, resume reading it. */
void proxy_send_pending(struct proxy *px);
/* What a destination's close does, once any held sidechannel copy has ended. */
void proxy_dest_close(struct dest *d, enum grpc_code code, const char *message,
		      const struct grpc_metadata *trailers);

/*
 * sidechannel.c: proxying SSHUploadPackWithSidechannel's and
 * PostUploadPackWithSidechannel's sidechannel (docs/technical/sidechannel.md).
 *  - scproxy_prepare(), before the destinations open: a call of those methods
 *    with a sidechannel id gets an id of ours, registered until the node's
 *    stream with it arrives or the proxy is freed. Returns -1 after failing
 *    the call (the client's connection is not multiplexed), else 0.
 *  - scproxy_metadata(): swap the client's id for ours in a node's metadata.
 *  - scproxy_hold_close(): 1 when the destination's close must wait for the
 *    copy (it is stored and proxy_dest_close() runs once the copy ended).
 *  - scproxy_client_gone(): the client's call closed: stop copying.
 *  - scproxy_release(): from proxy_free().
 *  - scproxy_node_stream(): the bc_client's on_stream hook: streams the
 *    nodes open are a sidechannel or gRPC for p->bc_server (votes).
 */
int scproxy_method(const struct praefect *p, const struct rpc_method *m);
int scproxy_prepare(struct proxy *px);
void scproxy_metadata(struct proxy *px, struct grpc_metadata *md);
int scproxy_hold_close(struct proxy *px, struct dest *d, enum grpc_code code, const char *message,
		       const struct grpc_metadata *trailers);
void scproxy_client_gone(struct proxy *px);
void scproxy_release(struct proxy *px);
void scproxy_node_stream(struct io *stream, void *data);

/*
 * pool.c: GetObjectPool's answer names the pool as the node stores it; the
 * client gets the pool's virtual storage and relative path instead
 * (docs/technical/object-pools.md). Returns 0 with `out` set, or -1 with
 * `msg` set (the call then fails with INTERNAL).
 */
int proxy_rewrite_pool_response(struct proxy *px, const uint8_t *msg, size_t len, struct strbuf *out,
				struct strbuf *err);

/*
 * reroute.c: a mutator whose primary refused it is routed again
 * (docs/technical/praefect-routing.md, "A refused primary").
 *  - reroute_keep(): from forward_message(), keep a copy while a reroute
 *    is possible (bounded; beyond it the call is no longer rerouted).
 *  - reroute_responded(): something reached the client: drop the copy.
 *  - reroute_begin(): from proxy_dest_close(), after `d` closed. Returns 1
 *    when the call is being rerouted: the other destinations are cancelled,
 *    their closes are ignored, and reroute_go() runs after the last one.
 */
/* Reroutes and resumes of one call: each marks a primary dead, so more than two means something else is wrong. */
#define REROUTE_MAX 2
void reroute_keep(struct proxy *px, const uint8_t *msg, size_t len);
void reroute_responded(struct proxy *px);
int reroute_begin(struct proxy *px, struct dest *d, enum grpc_code code, const char *message);
void reroute_go(struct proxy *px);

/*
 * resume.c: SSHReceivePack / PostReceivePack resumed on the next primary when
 * the primary died before any node applied anything (docs/technical/transactions.md).
 *  - resume_possible(): the call may still be resumed (reroute.c keeps its buffer).
 *  - resume_sent(): from dest_message(), each primary response forwarded to the client.
 *  - resume_begin(): from proxy_dest_close(), like reroute_begin(); returns 1 when resuming.
 *  - resume_gate(): from dest_message(), the new primary's responses while the gate is
 *    closed; returns 1 when it consumed the message (kept, or the call failed).
 *  - resume_release(): from proxy_free().
 */
int resume_possible(const struct proxy *px);
void resume_sent(struct proxy *px, const uint8_t *msg, size_t len);
int resume_begin(struct proxy *px, struct dest *d, enum grpc_code code, const char *message);
int resume_gate(struct proxy *px, const uint8_t *msg, size_t len);
void resume_release(struct proxy *px);

/* --- router/route.c: choose the destinations for the first message --- */
void proxy_route(struct proxy *px);
/* Another replica for an accessor whose replica failed (recorded in px->tried); NULL if none. */
struct node *route_accessor_retry(struct proxy *px);

/* --- finalize.c: record generations and queue replication, then answer --- */
void proxy_finalize(struct proxy *px);
/*
 * Called first by proxy_forward(): for a mutator, record the write intent
 * in the store before any node sees the call. Returns 1 when forwarding
 * must wait (proxy_forward() is called again once the intent is durable),
 * 0 to go on now.
 */
int proxy_record_intent(struct proxy *px);
/*
 * A write that reached no node yet (reroute.c): drop its intent and its
 * count, then route it from scratch as a write released from a barrier is.
 */
void proxy_route_again(struct proxy *px);

#endif
