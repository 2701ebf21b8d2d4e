/* The tracking store's front end: argument copying, the op queue, the worker thread and delivery. */
#include "backend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "base/banned.h"

/*
 * Threads. The loop thread submits ops (`queue`) and receives finished ones
 * (`done`); the worker takes batches from `queue`, runs them through the
 * backend and appends them to `done`, then pokes `async`. Both lists are FIFO
 * and only the worker moves ops from one to the other, so callbacks run in
 * submission order. `mu` guards both lists and `stopping`.
 */
struct store {
	uv_loop_t *loop;
	uv_async_t async;
	struct store_backend *backend;
	uv_thread_t thread;
	uv_mutex_t mu;
	uv_cond_t cond;
	struct store_op *queue, **queue_tail;
	struct store_op *done, **done_tail;
	size_t max_batch;
	size_t pending;  /* loop thread: ops whose callback has not run yet */
	int stopping;  /* worker: exit once the queue is empty */
	int closing;   /* loop thread: store_close() has begun */
};

enum cb_kind { CB_DONE, CB_ID, CB_GEN, CB_REPOS, CB_DELETED, CB_JOBS, CB_COUNT, CB_SUSPECTS, CB_SWAP, CB_VOTES };

static const struct {
	enum cb_kind cb;
	int writes;
} op_info[STORE_OP__NR] = {
	[STORE_OP_LIST_REPOSITORIES] = { CB_REPOS, 0 },
	[STORE_OP_GET_REPOSITORY] = { CB_REPOS, 0 },
	[STORE_OP_RESERVE_ID] = { CB_ID, 1 },
	[STORE_OP_CREATE_REPOSITORY] = { CB_DONE, 1 },
	[STORE_OP_INCREMENT_GENERATION] = { CB_GEN, 1 },
	[STORE_OP_SET_GENERATION] = { CB_DONE, 1 },
	[STORE_OP_DELETE_REPOSITORY] = { CB_DELETED, 1 },
	[STORE_OP_DELETE_REPLICA] = { CB_DONE, 1 },
	[STORE_OP_DELETE_INVALID_REPLICA] = { CB_DONE, 1 },
	[STORE_OP_SET_AUTHORITATIVE] = { CB_GEN, 1 },
	[STORE_OP_SET_PRIMARY] = { CB_DONE, 1 },
	[STORE_OP_SET_ASSIGNMENTS] = { CB_DONE, 1 },
	[STORE_OP_RENAME_REPOSITORY] = { CB_DONE, 1 },
	[STORE_OP_ENQUEUE] = { CB_ID, 1 },
	[STORE_OP_DEQUEUE] = { CB_JOBS, 1 },
	[STORE_OP_ACKNOWLEDGE] = { CB_DONE, 1 },
	[STORE_OP_HEARTBEAT] = { CB_DONE, 1 },
	[STORE_OP_ACKNOWLEDGE_STALE] = { CB_COUNT, 1 },
	[STORE_OP_COUNT_JOBS] = { CB_COUNT, 0 },
	[STORE_OP_LIST_JOBS] = { CB_JOBS, 0 },
	[STORE_OP_RECORD_NODE_STATUS] = { CB_DONE, 1 },
	[STORE_OP_BEGIN_WRITE] = { CB_ID, 1 },
	[STORE_OP_END_WRITE] = { CB_DONE, 1 },
	[STORE_OP_RECOVER_WRITES] = { CB_COUNT, 1 },
	[STORE_OP_POSTPONE] = { CB_DONE, 1 },
	[STORE_OP_MARK_UNVERIFIED] = { CB_COUNT, 1 },
	[STORE_OP_SET_OUTDATED_SINCE] = { CB_DONE, 1 },
	[STORE_OP_PURGE_JOBS] = { CB_COUNT, 1 },
	[STORE_OP_LEASE_VERIFICATIONS] = { CB_JOBS, 1 },
	[STORE_OP_END_VERIFICATION] = { CB_COUNT, 1 },
	[STORE_OP_RELEASE_VERIFICATION_LEASES] = { CB_COUNT, 1 },
	[STORE_OP_DELETE_ALL_REPOSITORIES] = { CB_COUNT, 1 },
	[STORE_OP_SUSPECT_ADD] = { CB_DONE, 1 },
	[STORE_OP_SUSPECT_REMOVE] = { CB_DONE, 1 },
	[STORE_OP_LIST_SUSPECTS] = { CB_SUSPECTS, 0 },
	[STORE_OP_SWAP_PRIMARY] = { CB_SWAP, 1 },
	[STORE_OP_NODE_VOTES] = { CB_VOTES, 0 },
	[STORE_OP_COUNT_REPOSITORIES] = { CB_COUNT, 0 },
	[STORE_OP_LAST_REPOSITORY_ID] = { CB_COUNT, 0 },
};

/* --- the op record --- */

const char *store_op_keep(struct store_op *op, const char *s)
{
	return s ? strvec_push(&op->keep, s) : NULL;
}

int store_op_fail(struct store_op *op, int status, const char *fmt, ...)
{
	va_list ap;
	strbuf_reset(&op->msg);
	va_start(ap, fmt);
	strbuf_vaddf(&op->msg, fmt, ap);
	va_end(ap);
	return status;
}

struct store_repo *store_op_add_repo(struct store_op *op)
{
	ALLOC_GROW(op->repos, op->nr_repos + 1, op->alloc_repos);
	memset(&op->repos[op->nr_repos], 0, sizeof(op->repos[0]));
	return &op->repos[op->nr_repos++];
}

struct repl_job *store_op_add_job(struct store_op *op)
{
	ALLOC_GROW(op->jobs, op->nr_jobs + 1, op->alloc_jobs);
	memset(&op->jobs[op->nr_jobs], 0, sizeof(op->jobs[0]));
	return &op->jobs[op->nr_jobs++];
}

struct store_suspect *store_op_add_suspect(struct store_op *op)
{
	ALLOC_GROW(op->suspects, op->nr_suspects + 1, op->alloc_suspects);
	memset(&op->suspects[op->nr_suspects], 0, sizeof(op->suspects[0]));
	return &op->suspects[op->nr_suspects++];
}

struct store_node_vote *store_op_add_vote(struct store_op *op)
{
	ALLOC_GROW(op->votes, op->nr_votes + 1, op->alloc_votes);
	memset(&op->votes[op->nr_votes], 0, sizeof(op->votes[0]));
	return &op->votes[op->nr_votes++];
}

/* Result strings stay in op->keep until the op is freed; a few stray copies are harmless. */
void store_op_clear_result(struct store_op *op)
{
	for (size_t i = 0; i < op->nr_repos; i++)
		free(op->repos[i].replicas);
	free(op->repos);
	op->repos = NULL;
	op->nr_repos = op->alloc_repos = 0;
	free(op->jobs);
	op->jobs = NULL;
	op->nr_jobs = op->alloc_jobs = 0;
	free(op->suspects);
	op->suspects = NULL;
	op->nr_suspects = op->alloc_suspects = 0;
	op->deleted_replica_path = NULL;
	strvec_clear(&op->deleted_storages);
	free(op->votes);
	op->votes = NULL;
	op->nr_votes = op->alloc_votes = 0;
	op->current = NULL;
	op->value = 0;
}

static const char *const state_names[] = {
	[JOB_READY] = "ready",
	[JOB_IN_PROGRESS] = "in_progress",
	[JOB_COMPLETED] = "completed",
	[JOB_FAILED] = "failed",
	[JOB_DEAD] = "dead",
	[JOB_CANCELLED] = "cancelled",
};

const char *store_job_state_name(enum job_state state)
{
	if ((unsigned)state >= ARRAY_SIZE(state_names))
		return NULL;
	return state_names[state];
}

int store_job_state_parse(const char *s, enum job_state *out)
{
	for (size_t i = 0; i < ARRAY_SIZE(state_names); i++)
		if (s && !strcmp(s, state_names[i])) {
			*out = (enum job_state)i;
			return 0;
		}
	return -EINVAL;
}

static struct store_op *op_new(enum store_op_kind kind, void *arg)
{
	struct store_op *op = xcalloc(1, sizeof(*op));
	op->kind = kind;
	op->arg = arg;
	strbuf_init(&op->msg, 0);
	strvec_init(&op->keep);
	strvec_init(&op->in.storages);
	strvec_init(&op->in.storages2);
	strvec_init(&op->deleted_storages);
	return op;
}

static void op_free(struct store_op *op)
{
	store_op_clear_result(op);
	strvec_clear(&op->in.storages);
	strvec_clear(&op->in.storages2);
	free(op->in.ids);
	strbuf_release(&op->msg);
	strvec_clear(&op->keep);
	free(op);
}

static void copy_list(struct strvec *dst, const char *const *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (v[i])
			strvec_push(dst, v[i]);
}

/* --- the worker thread --- */

static void fail_ops(struct store_op *from, struct store_op *to, int only_ok, int status, const char *msg)
{
	for (struct store_op *op = from; op != to; op = op->next) {
		if (only_ok && op->status < 0)
			continue;
		store_op_clear_result(op);
		op->status = store_op_fail(op, status, "%s", msg);
	}
}

static int batch_writes(const struct store_op *op)
{
	for (; op; op = op->next)
		if (op_info[op->kind].writes)
			return 1;
	return 0;
}

/*
 * Run a chain of ops in one transaction, each under a savepoint so that a
 * failing op undoes only itself, and commit once. Returns NULL, or the ops
 * still to run when the backend lost the whole transaction half-way (sqlite
 * does on a full disk or an I/O error): the ops that had succeeded in it are
 * then reported failed, since their writes are gone.
 */
static struct store_op *run_transaction(struct store_backend *b, struct store_op *first,
					struct strbuf *err)
{
	const struct store_backend_ops *ops = b->ops;
	int single = first->next == NULL;
	struct store_op *op;
	int r;

	strbuf_reset(err);
	if ((r = ops->begin(b, batch_writes(first), err)) < 0) {
		fail_ops(first, NULL, 0, r, err->buf);
		return NULL;
	}
	for (op = first; op; op = op->next) {
		int sp = 0;

		if (!single && (r = ops->savepoint(b, err)) < 0)
			op->status = store_op_fail(op, r, "%s", err->buf);
		else {
			sp = !single;
			op->status = ops->op[op->kind](b, op);
			if (op->status < 0 && !op->msg.len)
				store_op_fail(op, op->status, "%s", strerror(-op->status));
		}
		if (!ops->in_transaction(b)) {
			fail_ops(first, op->next, 1, -EIO, "transaction rolled back by a backend failure");
			return op->next;
		}
		if (!sp)
			continue;
		if (op->status < 0) {
			store_op_clear_result(op);
			ops->rollback_to(b);
		} else if ((r = ops->release(b, err)) < 0) {
			ops->rollback_to(b);
			store_op_clear_result(op);
			op->status = store_op_fail(op, r, "%s", err->buf);
		}
	}
	if (single && first->status < 0) {
		store_op_clear_result(first);
		ops->rollback(b);
	} else if ((r = ops->commit(b, err)) < 0) {
		ops->rollback(b);
		fail_ops(first, NULL, 1, r, err->buf);
	}
	return NULL;
}

static void run_batch(struct store_backend *b, struct store_op *first)
{
	struct strbuf err = STRBUF_INIT;
	while (first)
		first = run_transaction(b, first, &err);
	strbuf_release(&err);
}

static void worker(void *data)
{
	struct store *s = data;

	uv_mutex_lock(&s->mu);
	for (;;) {
		struct store_op *first, *last;
		size_t n = 1;

		while (!s->queue && !s->stopping)
			uv_cond_wait(&s->cond, &s->mu);
		if (!s->queue)
			break;
		first = last = s->queue;
		while (last->next && n < s->max_batch) {
			last = last->next;
			n++;
		}
		s->queue = last->next;
		if (!s->queue)
			s->queue_tail = &s->queue;
		last->next = NULL;
		uv_mutex_unlock(&s->mu);

		run_batch(s->backend, first);

		uv_mutex_lock(&s->mu);
		*s->done_tail = first;
		s->done_tail = &last->next;
		uv_async_send(&s->async);
	}
	uv_mutex_unlock(&s->mu);
}

/* --- delivery on the loop thread --- */

static void deliver(struct store_op *op)
{
	const char *msg = op->status < 0 ? op->msg.buf : NULL;
	int st = op->status;

	switch (op_info[op->kind].cb) {
	case CB_DONE:
		op->cb.done(op->arg, st, msg);
		break;
	case CB_ID:
		op->cb.id(op->arg, st, msg, st < 0 ? 0 : op->value);
		break;
	case CB_GEN:
		op->cb.gen(op->arg, st, msg, st < 0 ? GENERATION_UNKNOWN : op->value);
		break;
	case CB_REPOS:
		op->cb.repos(op->arg, st, msg, op->repos, op->nr_repos);
		break;
	case CB_DELETED:
		op->cb.deleted(op->arg, st, msg, op->deleted_replica_path,
			       op->deleted_storages.v, op->deleted_storages.nr);
		break;
	case CB_JOBS:
		op->cb.jobs(op->arg, st, msg, op->jobs, op->nr_jobs);
		break;
	case CB_COUNT:
		op->cb.count(op->arg, st, msg, st < 0 ? 0 : op->value);
		break;
	case CB_SUSPECTS:
		op->cb.suspects(op->arg, st, msg, op->suspects, op->nr_suspects);
		break;
	case CB_SWAP:
		if (st == 0 && !op->value)
			op->cb.swap(op->arg, -EAGAIN, "primary changed by another praefect", op->current);
		else
			op->cb.swap(op->arg, st, msg, st < 0 ? NULL : op->current);
		break;
	case CB_VOTES:
		op->cb.votes(op->arg, st, msg, op->votes, op->nr_votes);
		break;
	}
}

/* One op at a time, so a callback that closes the store finds the rest still queued. */
static void deliver_all(struct store *s)
{
	for (;;) {
		struct store_op *op;

		uv_mutex_lock(&s->mu);
		op = s->done;
		if (op) {
			s->done = op->next;
			if (!s->done)
				s->done_tail = &s->done;
		}
		uv_mutex_unlock(&s->mu);
		if (!op)
			break;
		if (--s->pending == 0)
			uv_unref((uv_handle_t *)&s->async);
		deliver(op);
		op_free(op);
	}
}

static void on_async(uv_async_t *h)
{
	deliver_all(container_of(h, struct store, async));
}

/*
 * Like a libuv request, a pending op keeps the loop alive and an idle store
 * does not: uv_run() returns once the last callback ran (command-line tools).
 */
static void submit(struct store *s, struct store_op *op)
{
	if (s->pending++ == 0)
		uv_ref((uv_handle_t *)&s->async);
	uv_mutex_lock(&s->mu);
	if (s->closing) {
		/* submitted by a callback while store_close() drains: never runs */
		op->status = store_op_fail(op, -ECANCELED, "store is closing");
		*s->done_tail = op;
		s->done_tail = &op->next;
	} else {
		*s->queue_tail = op;
		s->queue_tail = &op->next;
		uv_cond_signal(&s->cond);
	}
	uv_mutex_unlock(&s->mu);
}

/* --- lifecycle --- */

static void on_closed(uv_handle_t *h);

int store_start(uv_loop_t *loop, struct store_backend *b, struct store **out, struct strbuf *err)
{
	struct store *s;
	int r;

	for (size_t i = 0; i < STORE_OP__NR; i++)
		if (!b->ops->op[i]) {
			strbuf_addf(err, "store backend \"%s\" lacks operation %zu", b->ops->name, i);
			b->ops->close(b);
			return -1;
		}
	s = xcalloc(1, sizeof(*s));
	s->loop = loop;
	s->backend = b;
	s->queue_tail = &s->queue;
	s->done_tail = &s->done;
	s->max_batch = STORE_MAX_BATCH;
	if (uv_mutex_init(&s->mu) < 0) {
		strbuf_addstr(err, "cannot initialise the store mutex");
		goto fail;
	}
	if (uv_cond_init(&s->cond) < 0) {
		uv_mutex_destroy(&s->mu);
		strbuf_addstr(err, "cannot initialise the store condition variable");
		goto fail;
	}
	if ((r = uv_async_init(loop, &s->async, on_async)) < 0 ||
	    (r = uv_thread_create(&s->thread, worker, s)) < 0) {
		strbuf_addf(err, "cannot start the store worker: %s", uv_strerror(r));
		b->ops->close(b);
		s->closing = 1;
		/* an initialised handle is freed in its close callback */
		if (uv_is_active((uv_handle_t *)&s->async))
			uv_close((uv_handle_t *)&s->async, on_closed);
		else {
			uv_cond_destroy(&s->cond);
			uv_mutex_destroy(&s->mu);
			free(s);
		}
		return -1;
	}
	uv_unref((uv_handle_t *)&s->async);
	*out = s;
	return 0;

fail:
	b->ops->close(b);
	free(s);
	return -1;
}

void store_set_max_batch(struct store *s, size_t n)
{
	uv_mutex_lock(&s->mu);
	s->max_batch = n ? n : 1;
	uv_mutex_unlock(&s->mu);
}

static void on_closed(uv_handle_t *h)
{
	struct store *s = container_of((uv_async_t *)h, struct store, async);
	uv_cond_destroy(&s->cond);
	uv_mutex_destroy(&s->mu);
	free(s);
}

/*
 * Blocks the loop until every queued op has run (shutdown only), then
 * delivers all callbacks before returning. The struct itself is freed when
 * the loop processes the async handle's close.
 */
void store_close(struct store *s)
{
	if (!s || s->closing)
		return;
	uv_mutex_lock(&s->mu);
	s->closing = 1;
	s->stopping = 1;
	uv_cond_signal(&s->cond);
	uv_mutex_unlock(&s->mu);
	uv_thread_join(&s->thread);
	deliver_all(s);
	s->backend->ops->close(s->backend);
	s->backend = NULL;
	uv_close((uv_handle_t *)&s->async, on_closed);
}

/* --- repositories --- */

void store_list_repositories(struct store *s, const char *virtual_storage, store_repos_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_LIST_REPOSITORIES, arg);
	op->cb.repos = cb;
	op->in.vs = store_op_keep(op, virtual_storage);
	submit(s, op);
}

void store_list_repositories_page(struct store *s, int64_t after_id, int64_t last_id, store_repos_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_LIST_REPOSITORIES, arg);
	op->cb.repos = cb;
	op->in.id = after_id;
	op->in.last_id = last_id > after_id ? last_id : after_id;
	op->in.max = 1;  /* paged */
	submit(s, op);
}

void store_count_repositories(struct store *s, store_count_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_COUNT_REPOSITORIES, arg);
	op->cb.count = cb;
	submit(s, op);
}

void store_last_repository_id(struct store *s, store_count_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_LAST_REPOSITORY_ID, arg);
	op->cb.count = cb;
	submit(s, op);
}

void store_get_repository(struct store *s, const char *vs, const char *relative_path,
			  store_repos_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_GET_REPOSITORY, arg);
	op->cb.repos = cb;
	op->in.vs = store_op_keep(op, vs);
	op->in.path = store_op_keep(op, relative_path);
	submit(s, op);
}

void store_reserve_id(struct store *s, const char *vs, const char *relative_path, store_id_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_RESERVE_ID, arg);
	op->cb.id = cb;
	op->in.vs = store_op_keep(op, vs);
	op->in.path = store_op_keep(op, relative_path);
	submit(s, op);
}

void store_create_repository(struct store *s, int64_t id, const char *vs, const char *relative_path,
			     const char *replica_path, const char *primary,
			     const char *const *updated, size_t nr_updated,
			     const char *const *outdated, size_t nr_outdated,
			     int store_primary, int store_assignments, store_done_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_CREATE_REPOSITORY, arg);
	op->cb.done = cb;
	op->in.id = id;
	op->in.vs = store_op_keep(op, vs);
	op->in.path = store_op_keep(op, relative_path);
	op->in.replica_path = store_op_keep(op, replica_path);
	op->in.primary = store_op_keep(op, primary && *primary ? primary : NULL);
	copy_list(&op->in.storages, updated, nr_updated);
	copy_list(&op->in.storages2, outdated, nr_outdated);
	op->in.store_primary = store_primary;
	op->in.store_assignments = store_assignments;
	submit(s, op);
}

void store_increment_generation(struct store *s, int64_t id, const char *const *storages, size_t n,
				store_gen_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_INCREMENT_GENERATION, arg);
	op->cb.gen = cb;
	op->in.id = id;
	copy_list(&op->in.storages, storages, n);
	submit(s, op);
}

void store_complete_write(struct store *s, int64_t intent, int64_t id, const char *const *storages, size_t n,
			  store_gen_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_INCREMENT_GENERATION, arg);
	op->cb.gen = cb;
	op->in.id = id;
	op->in.intent = intent;
	copy_list(&op->in.storages, storages, n);
	submit(s, op);
}

void store_set_generation(struct store *s, int64_t id, const char *storage, const char *relative_path,
			  int64_t generation, store_done_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_SET_GENERATION, arg);
	op->cb.done = cb;
	op->in.id = id;
	op->in.storage = store_op_keep(op, storage);
	op->in.path = store_op_keep(op, relative_path);
	op->in.generation = generation;
	submit(s, op);
}

void store_delete_repository(struct store *s, const char *vs, const char *relative_path,
			     store_deleted_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_DELETE_REPOSITORY, arg);
	op->cb.deleted = cb;
	op->in.vs = store_op_keep(op, vs);
	op->in.path = store_op_keep(op, relative_path);
	submit(s, op);
}

void store_delete_all_repositories(struct store *s, const char *vs, store_count_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_DELETE_ALL_REPOSITORIES, arg);
	op->cb.count = cb;
	op->in.vs = store_op_keep(op, vs);
	submit(s, op);
}

void store_delete_replica(struct store *s, int64_t id, const char *storage, store_done_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_DELETE_REPLICA, arg);
	op->cb.done = cb;
	op->in.id = id;
	op->in.storage = store_op_keep(op, storage);
	submit(s, op);
}

void store_delete_invalid_replica(struct store *s, int64_t id, const char *storage,
				  store_done_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_DELETE_INVALID_REPLICA, arg);
	op->cb.done = cb;
	op->in.id = id;
	op->in.storage = store_op_keep(op, storage);
	submit(s, op);
}

void store_set_authoritative(struct store *s, const char *vs, const char *relative_path,
			     const char *storage, store_gen_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_SET_AUTHORITATIVE, arg);
	op->cb.gen = cb;
	op->in.vs = store_op_keep(op, vs);
	op->in.path = store_op_keep(op, relative_path);
	op->in.storage = store_op_keep(op, storage);
	submit(s, op);
}

void store_set_primary(struct store *s, int64_t id, const char *primary, store_done_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_SET_PRIMARY, arg);
	op->cb.done = cb;
	op->in.id = id;
	op->in.primary = store_op_keep(op, primary && *primary ? primary : NULL);
	submit(s, op);
}

void store_swap_primary(struct store *s, int64_t id, const char *expected, const char *primary,
			store_swap_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_SWAP_PRIMARY, arg);
	op->cb.swap = cb;
	op->in.id = id;
	op->in.expected = store_op_keep(op, expected && *expected ? expected : NULL);
	op->in.primary = store_op_keep(op, primary && *primary ? primary : NULL);
	submit(s, op);
}

void store_set_assignments(struct store *s, int64_t id, const char *const *storages, size_t n,
			   store_done_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_SET_ASSIGNMENTS, arg);
	op->cb.done = cb;
	op->in.id = id;
	copy_list(&op->in.storages, storages, n);
	submit(s, op);
}

void store_mark_unverified(struct store *s, int64_t id, const char *vs, const char *storage,
			   store_count_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_MARK_UNVERIFIED, arg);
	op->cb.count = cb;
	op->in.id = id;
	op->in.vs = store_op_keep(op, vs);
	op->in.storage = store_op_keep(op, storage);
	submit(s, op);
}

void store_set_outdated_since(struct store *s, int64_t id, const char *storage, int64_t since_ms,
			      store_done_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_SET_OUTDATED_SINCE, arg);
	op->cb.done = cb;
	op->in.id = id;
	op->in.storage = store_op_keep(op, storage);
	op->in.since_ms = since_ms;
	submit(s, op);
}

void store_rename_repository(struct store *s, const char *vs, const char *from, const char *to,
			     store_done_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_RENAME_REPOSITORY, arg);
	op->cb.done = cb;
	op->in.vs = store_op_keep(op, vs);
	op->in.path = store_op_keep(op, from);
	op->in.path2 = store_op_keep(op, to);
	submit(s, op);
}

/* --- background verification --- */

void store_lease_verifications(struct store *s, const struct store_verify_slot *slots, size_t n, size_t batch,
			       int64_t interval_ms, int64_t lease_ms, store_jobs_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_LEASE_VERIFICATIONS, arg);
	op->cb.jobs = cb;
	op->in.ids = n ? xcalloc(n, sizeof(*op->in.ids)) : NULL;
	for (size_t i = 0; i < n; i++) {
		strvec_push(&op->in.storages, slots[i].virtual_storage);
		strvec_push(&op->in.storages2, slots[i].storage);
		op->in.ids[i] = (int64_t)slots[i].max;
	}
	op->in.nr_ids = n;
	op->in.max = batch;
	op->in.interval_ms = interval_ms;
	op->in.lease_ms = lease_ms;
	submit(s, op);
}

void store_end_verification(struct store *s, int64_t id, const char *storage, enum store_verify_result result,
			    int delete_invalid, store_count_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_END_VERIFICATION, arg);
	op->cb.count = cb;
	op->in.id = id;
	op->in.storage = store_op_keep(op, storage);
	op->in.verify_result = result;
	op->in.delete_invalid = delete_invalid;
	submit(s, op);
}

void store_release_verification_leases(struct store *s, int64_t grace_ms, store_count_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_RELEASE_VERIFICATION_LEASES, arg);
	op->cb.count = cb;
	op->in.lease_ms = grace_ms;
	submit(s, op);
}

/* --- write intents --- */

void store_begin_write(struct store *s, const char *praefect_name, int64_t id, store_id_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_BEGIN_WRITE, arg);
	op->cb.id = cb;
	op->in.praefect = store_op_keep(op, praefect_name ? praefect_name : "");
	op->in.id = id;
	submit(s, op);
}

void store_end_write(struct store *s, int64_t intent, store_done_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_END_WRITE, arg);
	op->cb.done = cb;
	op->in.intent = intent;
	submit(s, op);
}

void store_recover_writes(struct store *s, const char *praefect_name, store_count_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_RECOVER_WRITES, arg);
	op->cb.count = cb;
	op->in.praefect = praefect_name ? store_op_keep(op, praefect_name) : NULL; /* NULL: every one */
	submit(s, op);
}

/* --- suspect replicas --- */

void store_suspect_add(struct store *s, int64_t id, const char *storage, int avoid, store_done_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_SUSPECT_ADD, arg);
	op->cb.done = cb;
	op->in.id = id;
	op->in.storage = store_op_keep(op, storage ? storage : "");
	op->in.avoid = avoid != 0;
	submit(s, op);
}

void store_suspect_remove(struct store *s, int64_t id, const char *storage, store_done_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_SUSPECT_REMOVE, arg);
	op->cb.done = cb;
	op->in.id = id;
	op->in.storage = store_op_keep(op, storage ? storage : "");
	submit(s, op);
}

void store_list_suspects(struct store *s, store_suspects_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_LIST_SUSPECTS, arg);
	op->cb.suspects = cb;
	submit(s, op);
}

/* --- replication queue --- */

void store_enqueue(struct store *s, const struct repl_job *job, store_id_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_ENQUEUE, arg);
	op->cb.id = cb;
	struct repl_job *j = &op->in.job;

	*j = *job;
	j->change = store_op_keep(op, job->change ? job->change : "");
	j->virtual_storage = store_op_keep(op, job->virtual_storage ? job->virtual_storage : "");
	j->relative_path = store_op_keep(op, job->relative_path ? job->relative_path : "");
	j->replica_path = store_op_keep(op, job->replica_path ? job->replica_path : "");
	j->source_storage = store_op_keep(op, job->source_storage ? job->source_storage : "");
	j->target_storage = store_op_keep(op, job->target_storage ? job->target_storage : "");
	j->correlation_id = store_op_keep(op, job->correlation_id ? job->correlation_id : "");
	submit(s, op);
}

void store_dequeue(struct store *s, const char *vs, const char *target, size_t max,
		   store_jobs_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_DEQUEUE, arg);
	op->cb.jobs = cb;
	op->in.vs = store_op_keep(op, vs ? vs : "");
	op->in.storage = store_op_keep(op, target ? target : "");
	op->in.max = max;
	submit(s, op);
}

static void copy_ids(struct store_op *op, const int64_t *ids, size_t n)
{
	op->in.ids = n ? xmemdup(ids, n * sizeof(*ids)) : NULL;
	op->in.nr_ids = n;
}

void store_acknowledge(struct store *s, enum job_state state, const int64_t *ids, size_t n,
		       store_done_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_ACKNOWLEDGE, arg);
	op->cb.done = cb;
	op->in.state = state;
	copy_ids(op, ids, n);
	submit(s, op);
}

void store_postpone(struct store *s, const int64_t *ids, size_t n, int64_t delay_ms, int refund,
		    store_done_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_POSTPONE, arg);
	op->cb.done = cb;
	op->in.delay_ms = delay_ms;
	op->in.refund = refund;
	copy_ids(op, ids, n);
	submit(s, op);
}

void store_heartbeat(struct store *s, const int64_t *ids, size_t n, store_done_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_HEARTBEAT, arg);
	op->cb.done = cb;
	copy_ids(op, ids, n);
	submit(s, op);
}

void store_acknowledge_stale(struct store *s, int64_t stale_ms, store_count_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_ACKNOWLEDGE_STALE, arg);
	op->cb.count = cb;
	op->in.stale_ms = stale_ms;
	submit(s, op);
}

void store_purge_jobs(struct store *s, const char *vs, const char *relative_path,
		      store_count_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_PURGE_JOBS, arg);
	op->cb.count = cb;
	op->in.vs = store_op_keep(op, vs);
	op->in.path = store_op_keep(op, relative_path);
	submit(s, op);
}

void store_count_jobs(struct store *s, store_count_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_COUNT_JOBS, arg);
	op->cb.count = cb;
	submit(s, op);
}

void store_list_jobs(struct store *s, store_jobs_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_LIST_JOBS, arg);
	op->cb.jobs = cb;
	submit(s, op);
}

/* --- node health --- */

void store_record_node_status(struct store *s, const char *praefect_name, const char *vs,
			      const char *storage, int healthy, store_done_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_RECORD_NODE_STATUS, arg);
	op->cb.done = cb;
	op->in.praefect = store_op_keep(op, praefect_name ? praefect_name : "");
	op->in.vs = store_op_keep(op, vs ? vs : "");
	op->in.storage = store_op_keep(op, storage ? storage : "");
	op->in.healthy = healthy;
	submit(s, op);
}

void store_node_votes(struct store *s, const char *praefect_name, int64_t window_ms, store_votes_fn cb, void *arg)
{
	struct store_op *op = op_new(STORE_OP_NODE_VOTES, arg);
	op->cb.votes = cb;
	op->in.praefect = store_op_keep(op, praefect_name ? praefect_name : "");
	op->in.interval_ms = window_ms;
	submit(s, op);
}

int store_is_shared(const struct store *s)
{
	return s->backend->ops->shared;
}
