/*
 * Transactional votes cast by handlers (docs/technical/transactions.md). A call that carries
 * no "gitaly-reference-transaction" metadata has no transaction: every vote
 * succeeds at once. With a transaction, the vote goes to the praefect that
 * sent the call, over the backchannel of the connection the call arrived on.
 *
 * Votes are asynchronous: `done` fires exactly once, always from the loop
 * (never inside vote_cast()), with GRPC_OK or the failure (ABORTED:
 * "transaction was aborted", FAILED_PRECONDITION: "transaction was stopped",
 * or the error reaching praefect).
 */
#ifndef GITALY_CORE_VOTE_H
#define GITALY_CORE_VOTE_H

#include <stdint.h>
#include "core/gitaly.h"
#include "txid/txid.h"

enum vote_phase {
	VOTE_PHASE_UNKNOWN = 0,
	VOTE_PHASE_PREPARED = 1,
	VOTE_PHASE_COMMITTED = 2,
	VOTE_PHASE_SYNCHRONIZED = 3,
};

typedef void (*vote_done_fn)(void *arg, enum grpc_code code, const char *msg);

/* Who votes where: struct txid (lib/txid), the transaction and the connection to praefect. */

/* 1 when the call carries transaction metadata. */
int vote_present(struct grpc_call *call);
/* The transaction of `call`: 0, -ENOENT when it has none, -EINVAL when the metadata is garbage. */
int vote_txid_from_call(struct gitaly *g, struct grpc_call *call, struct txid *out);
void vote_cast(struct gitaly *g, struct grpc_call *call, enum vote_phase phase,
	       const uint8_t hash[20], vote_done_fn done, void *arg);
/* Vote in an explicit transaction (hooks carry theirs in GITALY_HOOKS_PAYLOAD). */
void vote_cast_info(struct gitaly *g, const struct txid *tx, enum vote_phase phase,
		    const uint8_t hash[20], vote_done_fn done, void *arg);
/* Stop the transaction so that waiting voters give up (a primary-side hook refused). */
void vote_stop_info(struct gitaly *g, const struct txid *tx, vote_done_fn done, void *arg);
/*
 * The vote every push (receive-pack) ends with, even when all its updates
 * were refused: COMMITTED on the zero hash. `done` then ends the call with
 * vote_finish_push(), unless the call closed meanwhile.
 */
void vote_push_end(struct gitaly *g, struct grpc_call *call, vote_done_fn done, void *arg);
void vote_finish_push(struct grpc_call *call, enum grpc_code code, const char *msg);
/* SHA-1 helper for vote payloads. */
void gitaly_sha1(const void *data, size_t len, uint8_t out[20]);

#endif
