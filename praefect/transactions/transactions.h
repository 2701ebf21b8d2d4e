/*
 * Reference transactions (docs/technical/transactions.md): the voters of one
 * transactional mutator cast SHA-1 votes; votes are matched by order into
 * subtransactions; a subtransaction commits for the voters whose vote reaches
 * the threshold (primary-mandatory majority). Voters wait asynchronously:
 * a VoteTransaction call is answered when its subtransaction is decided,
 * never blocking the loop.
 */
#ifndef PRAEFECT_TRANSACTIONS_H
#define PRAEFECT_TRANSACTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "grpc/server.h"

enum vote_result { VOTE_UNDECIDED, VOTE_COMMITTED, VOTE_FAILED, VOTE_CANCELLED, VOTE_STOPPED };

struct tx_manager;
struct metric;
struct tx_manager *tx_manager_new(void);
void tx_manager_free(struct tx_manager *m);
/*
 * Count into upstream's series (praefect/metrics/series.h): `actions` by
 * action (registered voters, votes started and how each ended), `delay` the
 * seconds a vote waited for its answer, `subtx` the subtransactions of each
 * finished transaction. Any may be NULL.
 */
void tx_manager_set_metrics(struct tx_manager *m, struct metric *actions, struct metric *delay,
			    struct metric *subtx);

/*
 * Register a transaction for `primary` and `nr_secondaries` secondaries.
 * Weights are upstream's (primary S+1, secondaries 1). `quorum` is how many
 * voters, the primary included, must agree: the threshold becomes
 * (S+1) + (quorum-1). 0 means upstream's primary-mandatory majority of the
 * voters. Returns the transaction's id (never 0).
 */
uint64_t tx_register(struct tx_manager *m, const char *primary, const char *const *secondaries,
		     size_t nr_secondaries, unsigned quorum);
/* A secondary's stream failed: its vote is cancelled and its weight no longer counts. */
void tx_cancel_voter(struct tx_manager *m, uint64_t id, const char *node);
/*
 * 1 when no voter of the open transaction `id` has had a vote committed
 * other than a SYNCHRONIZED one (hook synchronisation, which changes
 * nothing): no node applied anything of the call yet. 0 otherwise, or
 * when the transaction is not open.
 */
int tx_applied_nothing(struct tx_manager *m, uint64_t id);

struct tx_outcome {
	size_t subtransactions;
	int primary_voted_first;           /* the primary voted in the first subtransaction */
	int state_known;
	/*
	 * Result of each voter in the last subtransaction anyone voted in
	 * (VOTE_UNDECIDED if it did not vote there). A voter only votes in a
	 * subtransaction once it committed every earlier one, so COMMITTED
	 * here means it committed all of them.
	 */
	const char **voters;
	enum vote_result *results;
	size_t nr;
	size_t *committed;                 /* per voter: subtransactions it committed */
	int *voted;                        /* per voter: it voted at least once */
	/*
	 * The votes committed in that last subtransaction were in phase
	 * COMMITTED: git casts those after its refs moved (and gitaly its final
	 * vote after git exited), so whoever committed them applied the change.
	 * After a PREPARED vote a voter may still have been stopped before git
	 * renamed its locks.
	 */
	int last_applied;
};
/*
 * End the transaction (undecided voters cancelled, waiters answered) and
 * describe it for the finalizer. Free with tx_outcome_release().
 */
void tx_cleanup(struct tx_manager *m, uint64_t id, struct tx_outcome *out);
void tx_outcome_release(struct tx_outcome *o);
enum vote_result tx_outcome_result(const struct tx_outcome *o, const char *node);
/* Index of `node` among the outcome's voters, or -1. */
ssize_t tx_outcome_voter(const struct tx_outcome *o, const char *node);

/* Register RefTransaction/VoteTransaction and StopTransaction on `s`. */
void tx_register_service(struct tx_manager *m, struct grpc_server *s);

/* "gitaly-reference-transaction" value for one voter: base64 of {"id":..,"node":..,"primary":..}. */
void tx_metadata_value(uint64_t id, const char *node, int primary, struct strbuf *out);

#endif
