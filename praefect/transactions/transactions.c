/* The transaction engine and the RefTransaction service (docs/technical/transactions.md). */
#include "transactions.h"
#include "praefect.h"
#include "txid/txid.h"
#include "base/hashmap.h"
#include "base/util.h"
#include "base/log.h"
#include "grpc/metadata.h"
#include "transaction.pb-c.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct transaction;

struct waiter {
	struct grpc_call *call;      /* NULL once the caller went away */
	size_t voter;
	struct waiter *next;
	struct subtx *sub;
	struct transaction *t;
};

/*
 * What a vote is matched on: the voter's 20-byte hash and its phase. Two
 * votes of the same text in different phases (gitaly's reference-transaction
 * hook hashes the same lines for "prepared" and "committed") are different
 * votes, so a node whose votes slipped by one is not taken to agree.
 */
#define VOTE_KEY 21

struct vote_count {
	uint8_t hash[VOTE_KEY];
	unsigned weight;
};

struct subtx {
	int *voted;
	uint8_t (*hash)[VOTE_KEY];
	enum vote_result *result;
	struct vote_count *counts;
	size_t nr_counts;
	int done;
	struct waiter *waiters;
};

enum tx_state { TX_OPEN, TX_CANCELLED, TX_STOPPED };

struct transaction {
	uint64_t id;
	char **voters;
	unsigned *weight;
	size_t nr;
	unsigned threshold;
	enum tx_state state;
	struct subtx **subs;
	size_t nr_subs;
	struct tx_manager *m;
};

struct tx_manager {
	struct hashmap txs;     /* decimal id -> transaction */
	uint64_t next_id;
	struct metric *m_actions, *m_delay, *m_subtx;
};

void tx_manager_set_metrics(struct tx_manager *m, struct metric *actions, struct metric *delay,
			    struct metric *subtx)
{
	m->m_actions = actions;
	m->m_delay = delay;
	m->m_subtx = subtx;
}

/* A VoteTransaction call ended: upstream's action label for how, and how long it waited. */
static void count_vote_end(struct tx_manager *m, struct grpc_call *call, const char *action)
{
	if (m->m_actions)
		metric_inc(m->m_actions, METRIC_LV(action));
	if (m->m_delay)
		metric_observe(m->m_delay, METRIC_LV("vote"), (double)(now_ns() - grpc_call_start_ns(call)) / 1e9);
}

static const char *vote_action(enum vote_result r)
{
	switch (r) {
	case VOTE_COMMITTED:
		return "committed";
	case VOTE_FAILED:
		return "failed";
	case VOTE_STOPPED:
		return "stopped";
	case VOTE_CANCELLED:
		return "canceled";
	default:
		return "invalid";
	}
}

struct tx_manager *tx_manager_new(void)
{
	struct tx_manager *m = xcalloc(1, sizeof(*m));
	hashmap_init(&m->txs);
	m->next_id = 1;
	return m;
}

static void tx_key(uint64_t id, char out[24])
{
	snprintf(out, 24, "%llu", (unsigned long long)id);
}

static struct transaction *tx_get(struct tx_manager *m, uint64_t id)
{
	char k[24];
	tx_key(id, k);
	return hashmap_get(&m->txs, k, strlen(k));
}

static ssize_t voter_index(struct transaction *t, const char *node)
{
	for (size_t i = 0; i < t->nr; i++)
		if (!strcmp(t->voters[i], node))
			return (ssize_t)i;
	return -1;
}

static struct subtx *sub_new(struct transaction *t, const struct subtx *prev)
{
	struct subtx *s = xcalloc(1, sizeof(*s));
	s->voted = xcalloc(t->nr, sizeof(*s->voted));
	s->hash = xcalloc(t->nr, sizeof(*s->hash));
	s->result = xcalloc(t->nr, sizeof(*s->result));
	s->counts = xcalloc(t->nr, sizeof(*s->counts));
	for (size_t i = 0; prev && i < t->nr; i++)
		if (prev->result[i] == VOTE_CANCELLED)
			s->result[i] = VOTE_CANCELLED;
	t->subs = xrealloc(t->subs, (t->nr_subs + 1) * sizeof(*t->subs));
	t->subs[t->nr_subs++] = s;
	return s;
}

static void sub_free(struct subtx *s)
{
	while (s->waiters) {
		struct waiter *w = s->waiters;
		s->waiters = w->next;
		if (w->call)
			grpc_call_on_close(w->call, NULL, NULL);
		free(w);
	}
	free(s->voted);
	free(s->hash);
	free(s->result);
	free(s->counts);
	free(s);
}

/* --- answering voters --- */

static void answer(struct tx_manager *m, struct grpc_call *call, enum vote_result r)
{
	Gitaly__VoteTransactionResponse resp = GITALY__VOTE_TRANSACTION_RESPONSE__INIT;
	uint8_t buf[16];
	size_t n;
	count_vote_end(m, call, vote_action(r));
	switch (r) {
	case VOTE_COMMITTED:
		resp.state = GITALY__VOTE_TRANSACTION_RESPONSE__TRANSACTION_STATE__COMMIT;
		break;
	case VOTE_FAILED:
		resp.state = GITALY__VOTE_TRANSACTION_RESPONSE__TRANSACTION_STATE__ABORT;
		break;
	case VOTE_STOPPED:
		resp.state = GITALY__VOTE_TRANSACTION_RESPONSE__TRANSACTION_STATE__STOP;
		break;
	case VOTE_CANCELLED:
		grpc_call_finish(call, GRPC_CANCELLED, "transaction was canceled", NULL);
		return;
	default:
		grpc_call_finish(call, GRPC_INTERNAL, "vote undecided", NULL);
		return;
	}
	n = gitaly__vote_transaction_response__pack(&resp, buf);
	grpc_call_reply(call, buf, n);
}

static void release_waiters(struct subtx *s)
{
	while (s->waiters) {
		struct waiter *w = s->waiters;
		s->waiters = w->next;
		if (w->call) {
			grpc_call_on_close(w->call, NULL, NULL);
			answer(w->t->m, w->call, s->result[w->voter]);
		}
		free(w);
	}
}

/*
 * Decide the subtransaction when quorum is reached or became impossible:
 * voters that voted are committed (with the leading vote) or failed; voters
 * still to vote are decided by the same rule when they vote.
 */
static void sub_check(struct transaction *t, struct subtx *s)
{
	unsigned max = 0, pending = 0;
	size_t leader = 0;
	int reached;

	for (size_t i = 0; i < s->nr_counts; i++)
		if (s->counts[i].weight > max) {
			max = s->counts[i].weight;
			leader = i;
		}
	for (size_t i = 0; i < t->nr; i++)
		if (!s->voted[i] && s->result[i] == VOTE_UNDECIDED)
			pending += t->weight[i];
	reached = max >= t->threshold;
	if (!reached && max + pending >= t->threshold)
		return; /* still open */
	for (size_t i = 0; i < t->nr; i++)
		if (s->voted[i] && s->result[i] == VOTE_UNDECIDED)
			s->result[i] = reached && s->nr_counts &&
					       !memcmp(s->hash[i], s->counts[leader].hash, VOTE_KEY)
				       ? VOTE_COMMITTED : VOTE_FAILED;
	if (!s->done) {
		s->done = 1;
		release_waiters(s);
	} else {
		release_waiters(s); /* late voters decided by the retained counts */
	}
}

static void waiter_closed(struct grpc_call *call, enum grpc_code code, void *arg)
{
	struct waiter *w = arg;
	struct subtx *s = w->sub;
	w->call = NULL;
	/* the voter's context ended before a decision: it no longer counts */
	if (s->result[w->voter] == VOTE_UNDECIDED) {
		count_vote_end(w->t->m, call, "invalid");
		s->result[w->voter] = VOTE_CANCELLED;
		for (size_t i = 0; i < s->nr_counts; i++)
			if (!memcmp(s->counts[i].hash, s->hash[w->voter], VOTE_KEY)) {
				s->counts[i].weight -= w->t->weight[w->voter];
				break;
			}
		sub_check(w->t, s);
	}
}

/* --- the engine --- */

uint64_t tx_register(struct tx_manager *m, const char *primary, const char *const *secondaries,
		     size_t nr_secondaries, unsigned quorum)
{
	struct transaction *t = xcalloc(1, sizeof(*t));
	size_t s = nr_secondaries;
	char k[24];

	t->m = m;
	t->id = m->next_id++;
	t->nr = 1 + s;
	t->voters = xcalloc(t->nr, sizeof(*t->voters));
	t->weight = xcalloc(t->nr, sizeof(*t->weight));
	t->voters[0] = xstrdup(primary);
	t->weight[0] = (unsigned)s + 1;
	for (size_t i = 0; i < s; i++) {
		t->voters[1 + i] = xstrdup(secondaries[i]);
		t->weight[1 + i] = 1;
	}
	/* primary-mandatory majority (transactions.md, "Quorum"), or primary plus quorum-1 secondaries */
	if (quorum && quorum <= t->nr)
		t->threshold = (unsigned)s + quorum;
	else
		t->threshold = s <= 1 ? (unsigned)s + 1 : (unsigned)(s + 1 + (s + 1) / 2);
	tx_key(t->id, k);
	hashmap_put(&m->txs, k, strlen(k), t);
	if (m->m_actions)
		metric_add(m->m_actions, METRIC_LV("registered"), (double)t->nr);
	return t->id;
}

static void vote(struct tx_manager *m, uint64_t id, const char *node, const uint8_t hash[20], int phase,
		 struct grpc_call *call)
{
	uint8_t key[VOTE_KEY];
	struct transaction *t = tx_get(m, id);
	struct subtx *s = NULL;
	ssize_t v;
	struct waiter *w;
	size_t i;

	if (m->m_actions)
		metric_inc(m->m_actions, METRIC_LV("started"));
	if (!t) {
		count_vote_end(m, call, "invalid");
		grpc_call_finishf(call, GRPC_NOT_FOUND, "transaction not found: %llu", (unsigned long long)id);
		return;
	}
	if (t->state == TX_CANCELLED) {
		count_vote_end(m, call, "canceled");
		grpc_call_finish(call, GRPC_CANCELLED, "transaction has been canceled", NULL);
		return;
	}
	if (t->state == TX_STOPPED) {
		answer(m, call, VOTE_STOPPED);
		return;
	}
	v = voter_index(t, node);
	if (v < 0) {
		count_vote_end(m, call, "invalid");
		grpc_call_finishf(call, GRPC_INTERNAL, "invalid node for transaction: \"%s\"", node);
		return;
	}
	for (i = 0; i < t->nr_subs; i++) {
		enum vote_result r = t->subs[i]->result[v];
		if (r == VOTE_COMMITTED)
			continue;
		if (r == VOTE_FAILED || r == VOTE_CANCELLED || r == VOTE_STOPPED) {
			answer(m, call, r);
			return;
		}
		s = t->subs[i];
		break;
	}
	if (!s)
		s = sub_new(t, t->nr_subs ? t->subs[t->nr_subs - 1] : NULL);
	if (s->voted[v]) {
		count_vote_end(m, call, "invalid");
		grpc_call_finishf(call, GRPC_INTERNAL, "node \"%s\" already voted", node);
		return;
	}
	memcpy(key, hash, 20);
	key[20] = (uint8_t)phase;
	s->voted[v] = 1;
	memcpy(s->hash[v], key, VOTE_KEY);
	for (i = 0; i < s->nr_counts; i++)
		if (!memcmp(s->counts[i].hash, key, VOTE_KEY))
			break;
	if (i == s->nr_counts)
		memcpy(s->counts[s->nr_counts++].hash, key, VOTE_KEY);
	s->counts[i].weight += t->weight[v];

	w = xcalloc(1, sizeof(*w));
	w->call = call;
	w->voter = (size_t)v;
	w->sub = s;
	w->t = t;
	w->next = s->waiters;
	s->waiters = w;
	grpc_call_on_close(call, waiter_closed, w);
	sub_check(t, s);
}

static void stop(struct tx_manager *m, uint64_t id, struct grpc_call *call)
{
	struct transaction *t = tx_get(m, id);
	if (!t) {
		grpc_call_finishf(call, GRPC_NOT_FOUND, "transaction not found: %llu", (unsigned long long)id);
		return;
	}
	if (t->state == TX_CANCELLED) {
		grpc_call_finish(call, GRPC_CANCELLED, "transaction has been canceled", NULL);
		return;
	}
	t->state = TX_STOPPED;
	for (size_t i = 0; i < t->nr_subs; i++) {
		struct subtx *s = t->subs[i];
		for (size_t k = 0; k < t->nr; k++)
			if (s->result[k] == VOTE_UNDECIDED)
				s->result[k] = VOTE_STOPPED;
		s->done = 1;
		release_waiters(s);
	}
	grpc_call_reply(call, "", 0);
}

void tx_cancel_voter(struct tx_manager *m, uint64_t id, const char *node)
{
	struct transaction *t = tx_get(m, id);
	ssize_t v;
	int any = 0;
	if (!t || (v = voter_index(t, node)) < 0)
		return;
	for (size_t i = 0; i < t->nr_subs; i++) {
		struct subtx *s = t->subs[i];
		if (s->result[v] != VOTE_UNDECIDED)
			continue;
		any = 1;
		s->result[v] = VOTE_CANCELLED;
		if (s->voted[v])
			for (size_t k = 0; k < s->nr_counts; k++)
				if (!memcmp(s->counts[k].hash, s->hash[v], VOTE_KEY))
					s->counts[k].weight -= t->weight[v];
		/* its weight no longer counts as pending either: quorum may now be impossible */
		sub_check(t, s);
	}
	if (!any) {
		struct subtx *s = sub_new(t, t->nr_subs ? t->subs[t->nr_subs - 1] : NULL);
		s->result[v] = VOTE_CANCELLED;
	}
}

int tx_applied_nothing(struct tx_manager *m, uint64_t id)
{
	struct transaction *t = tx_get(m, id);
	if (!t || t->state != TX_OPEN)
		return 0;
	for (size_t i = 0; i < t->nr_subs; i++)
		for (size_t v = 0; v < t->nr; v++)
			if (t->subs[i]->result[v] == VOTE_COMMITTED &&
			    t->subs[i]->hash[v][20] != GITALY__VOTE_TRANSACTION_REQUEST__PHASE__SYNCHRONIZED_PHASE)
				return 0;
	return 1;
}

void tx_cleanup(struct tx_manager *m, uint64_t id, struct tx_outcome *out)
{
	struct transaction *t = tx_get(m, id);
	char k[24];

	memset(out, 0, sizeof(*out));
	if (!t)
		return;
	tx_key(id, k);
	hashmap_remove(&m->txs, k, strlen(k));
	out->state_known = 1;
	out->subtransactions = t->nr_subs;
	if (m->m_subtx) {
		/* the empty marker tx_cancel_voter() may open is no subtransaction anyone voted in */
		size_t voted_subs = 0;
		for (size_t i = 0; i < t->nr_subs; i++) {
			int any = 0;
			for (size_t v = 0; v < t->nr; v++)
				any |= t->subs[i]->voted[v];
			voted_subs += any;
		}
		metric_observe(m->m_subtx, NULL, (double)voted_subs);
	}
	out->primary_voted_first = t->nr_subs && t->subs[0]->voted[0];
	out->nr = t->nr;
	out->voters = xcalloc(t->nr, sizeof(*out->voters));
	out->results = xcalloc(t->nr, sizeof(*out->results));
	out->committed = xcalloc(t->nr, sizeof(*out->committed));
	out->voted = xcalloc(t->nr, sizeof(*out->voted));
	/*
	 * The last subtransaction anyone voted in: tx_cancel_voter() opens an
	 * empty one to mark a voter that had nothing left undecided, and that
	 * marker says nothing about what the others applied.
	 */
	{
		size_t last = t->nr_subs;
		for (size_t i = t->nr_subs; i-- > 0;) {
			int any = 0;
			for (size_t v = 0; v < t->nr; v++)
				any |= t->subs[i]->voted[v];
			if (any) {
				last = i;
				break;
			}
		}
		for (size_t i = 0; last < t->nr_subs && i < t->nr; i++)
			if (t->subs[last]->result[i] == VOTE_COMMITTED)
				out->last_applied = t->subs[last]->hash[i][20] ==
						    GITALY__VOTE_TRANSACTION_REQUEST__PHASE__COMMITTED_PHASE;
		for (size_t i = 0; i < t->nr; i++) {
			out->voters[i] = t->voters[i]; /* ownership moves to the outcome */
			out->results[i] = last < t->nr_subs ? t->subs[last]->result[i] : VOTE_UNDECIDED;
			for (size_t k = 0; k < t->nr_subs; k++) {
				out->committed[i] += t->subs[k]->result[i] == VOTE_COMMITTED;
				out->voted[i] |= t->subs[k]->voted[i];
			}
		}
	}
	for (size_t i = 0; i < t->nr_subs; i++) {
		struct subtx *s = t->subs[i];
		for (size_t v = 0; v < t->nr; v++)
			if (s->result[v] == VOTE_UNDECIDED)
				s->result[v] = VOTE_CANCELLED;
		release_waiters(s);
		sub_free(s);
	}
	free(t->subs);
	free(t->voters);
	free(t->weight);
	free(t);
}

void tx_outcome_release(struct tx_outcome *o)
{
	for (size_t i = 0; i < o->nr; i++)
		free((char *)o->voters[i]);
	free(o->voters);
	free(o->results);
	free(o->committed);
	free(o->voted);
	memset(o, 0, sizeof(*o));
}

ssize_t tx_outcome_voter(const struct tx_outcome *o, const char *node)
{
	for (size_t i = 0; i < o->nr; i++)
		if (!strcmp(o->voters[i], node))
			return (ssize_t)i;
	return -1;
}

enum vote_result tx_outcome_result(const struct tx_outcome *o, const char *node)
{
	for (size_t i = 0; i < o->nr; i++)
		if (!strcmp(o->voters[i], node))
			return o->results[i];
	return VOTE_UNDECIDED;
}

void tx_manager_free(struct tx_manager *m)
{
	const struct hashmap_entry *e;
	for (size_t i = 0; hashmap_next(&m->txs, &i, &e);) {
		struct tx_outcome o;
		tx_cleanup(m, ((struct transaction *)e->value)->id, &o);
		tx_outcome_release(&o);
		i = 0;
	}
	hashmap_release(&m->txs);
	free(m);
}

/* --- the RefTransaction service --- */

static void vote_rpc(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	Gitaly__VoteTransactionRequest *r = gitaly__vote_transaction_request__unpack(NULL, len, req);
	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		return;
	}
	if (r->reference_updates_hash.len != 20)
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "invalid reference hash: %zu bytes",
				  r->reference_updates_hash.len);
	else
		vote(data, r->transaction_id, r->node ? r->node : "", r->reference_updates_hash.data, (int)r->phase,
		     call);
	gitaly__vote_transaction_request__free_unpacked(r, NULL);
}

static void stop_rpc(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	Gitaly__StopTransactionRequest *r = gitaly__stop_transaction_request__unpack(NULL, len, req);
	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		return;
	}
	stop(data, r->transaction_id, call);
	gitaly__stop_transaction_request__free_unpacked(r, NULL);
}

void tx_register_service(struct tx_manager *m, struct grpc_server *s)
{
	praefect_add_unary(s, "/gitaly.RefTransaction/VoteTransaction", vote_rpc, m);
	praefect_add_unary(s, "/gitaly.RefTransaction/StopTransaction", stop_rpc, m);
}

void tx_metadata_value(uint64_t id, const char *node, int primary, struct strbuf *out)
{
	struct txid t = { .id = id, .primary = primary };
	snprintf(t.node, sizeof(t.node), "%s", node);
	txid_encode(&t, out);
}
