/*
 * Suspect replicas: a replica on which a read failed as if objects were
 * corrupt or missing is avoided by reads until it is verified
 * (gitaly.RepositoryService/Fsck on its node); a corrupt one is deleted and
 * replicated again from a healthy replica. Each suspect is also recorded in
 * the tracking store (store_suspect_add()) until it is verified clean or
 * repaired, so a restarted praefect verifies it again (suspects_load()).
 * See docs/technical/praefect-health.md.
 *
 * Each node holds its suspects in `n->suspects` (repository id -> struct
 * suspect). The task verify-replicas (schedule.c) moves each one on a step:
 *
 *   unverified --Fsck--> verifying --clean--> clean (not avoided; dropped after 5 min)
 *                                  --error--> corrupt --delete_replica job-->
 *   deleting --replica row gone, update job--> rebuilding --up to date--> (cleared)
 *                                               rebuilding --not within a minute--> unverified
 *
 * A replica that is only checked because one of its siblings failed
 * (`avoid` 0) is not avoided until its own Fsck reports an error, but
 * while a sibling is avoided it is not trusted either (suspect_trust()):
 * route.c prefers replicas verified clean and holds a read briefly while
 * the siblings' Fsck runs (`urgent`: before the background checks).
 */
#include "praefect.h"
#include "base/util.h"
#include "base/log.h"
#include "grpc/auth.h"
#include "repository.pb-c.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FSCK_TIMEOUT_MS (10 * 60 * 1000)
#define FSCK_RETRY_MS 5000            /* Fsck failed to run (node busy, unreachable) */
#define FSCK_UNIMPLEMENTED_RETRY_MS 60000
#define REPAIR_STEP_TIMEOUT_MS 60000  /* a job that did not take effect is queued again */
#define REPAIR_BUSY_RETRY_MS 1000     /* the queue already had such a job */
#define CLEAN_KEEP_MS (5 * 60 * 1000) /* failed reads do not start another Fsck meanwhile */
#define FSCK_PER_NODE 2               /* background Fsck calls in flight on one node */
#define FSCK_URGENT_PER_NODE 2        /* and of those reads avoid or wait on */
#define NODE_SCAN_EVERY_MS (10 * 60 * 1000) /* at most one scan of a node's replicas */

enum suspect_state {
	SUSPECT_UNVERIFIED, SUSPECT_VERIFYING, SUSPECT_CORRUPT, SUSPECT_DELETING, SUSPECT_REBUILDING,
	SUSPECT_CLEAN,                    /* Fsck passed: not checked again for CLEAN_KEEP_MS */
};

struct suspect {
	struct node *node;                /* NULL once its node is freed (a call still in flight) */
	int64_t repo_id;
	enum suspect_state state;
	int avoid;                        /* reads avoid the replica */
	int urgent;                       /* a sibling is avoided: reads may wait on this Fsck */
	int busy;                         /* a call or store request in flight */
	int told_unimplemented;
	int deleted;                      /* DELETING: the replicator reported the deletion done */
	int rebuild_stalled;              /* checked again after a rebuild that did not catch up */
	uint64_t next_ms;                 /* earliest time of the next step */
	int stored;                       /* in the store: -1 no, else the `avoid` recorded */
	struct praefect *p;
};

static void id_key(char *key, size_t size, int64_t id)
{
	snprintf(key, size, "%lld", (long long)id);
}

static struct suspect *suspect_get(const struct node *n, int64_t repo_id)
{
	char key[24];
	id_key(key, sizeof(key), repo_id);
	return hashmap_get(&n->suspects, key, strlen(key));
}

void suspect_replica_deleted(struct node *n, int64_t repo_id)
{
	struct suspect *s = n->suspects.nr ? suspect_get(n, repo_id) : NULL;
	if (s && s->state == SUSPECT_DELETING)
		s->deleted = 1;
}

int suspect_avoided(const struct node *n, int64_t repo_id)
{
	struct suspect *s;
	if (!n->suspects.nr)
		return 0;
	s = suspect_get(n, repo_id);
	return s && s->avoid;
}

enum suspect_trust suspect_trust(const struct repo *r, const struct node *n)
{
	struct suspect *s;
	if (!n->suspects.nr || !(s = suspect_get(n, r->id)))
		return READ_TRUSTED;
	if (s->avoid)
		return READ_AVOIDED;
	if (s->state != SUSPECT_UNVERIFIED && s->state != SUSPECT_VERIFYING)
		return READ_TRUSTED; /* verified clean, or being repaired (not up to date then) */
	/* only checked (a sibling, a scan of its node): doubtful once another replica is known bad */
	for (size_t i = 0; i < r->vs->nr_nodes; i++) {
		const struct node *o = &r->vs->nodes[i];
		if (o != n && suspect_avoided(o, r->id))
			return READ_UNVERIFIED;
	}
	return READ_TRUSTED;
}

static void on_stored(void *arg, int status, const char *msg)
{
	if (status < 0 && status != -ENOENT) /* -ENOENT: the repository went meanwhile */
		log_msgf(LOG_WARN, "recording a suspect replica: %s", msg ? msg : "store error");
}

/*
 * Bring the store in line with `s`: recorded while it is to be verified or
 * repaired (with its `avoid`), forgotten once clean. Ops run in order, so the
 * last call wins.
 */
static void store_sync(struct suspect *s)
{
	int want = s->state == SUSPECT_CLEAN ? -1 : s->avoid != 0;
	if (want == s->stored || !s->node)
		return;
	if (want < 0)
		store_suspect_remove(s->p->store, s->repo_id, s->node->cfg->storage, on_stored, NULL);
	else
		store_suspect_add(s->p->store, s->repo_id, s->node->cfg->storage, want, on_stored, NULL);
	s->stored = want;
}

static void suspect_add(struct praefect *p, struct node *n, int64_t repo_id, int avoid, int urgent)
{
	char key[24];
	struct suspect *s = suspect_get(n, repo_id);
	if (s) {
		s->avoid |= avoid;
		s->urgent |= urgent;
		store_sync(s);
		return;
	}
	s = xcalloc(1, sizeof(*s));
	s->p = p;
	s->node = n;
	s->repo_id = repo_id;
	s->avoid = avoid;
	s->urgent = urgent;
	s->next_ms = now_ms();
	s->stored = -1;
	id_key(key, sizeof(key), repo_id);
	hashmap_put(&n->suspects, key, strlen(key), s);
	store_sync(s);
}

static void suspect_free(struct suspect *s)
{
	free(s);
}

static void suspect_drop(struct suspect *s)
{
	char key[24];
	if (s->stored >= 0)
		store_suspect_remove(s->p->store, s->repo_id, s->node->cfg->storage, on_stored, NULL);
	id_key(key, sizeof(key), s->repo_id);
	hashmap_remove(&s->node->suspects, key, strlen(key));
	suspect_free(s);
}

void suspect_mark(struct praefect *p, struct repo *r, struct node *n, const char *why)
{
	struct suspect *s = suspect_get(n, r->id);
	if (s && (s->avoid || s->state == SUSPECT_CLEAN))
		return; /* known, or found clean a moment ago (a read that fails for its own reasons) */
	log_msgf(LOG_WARN, "replica of repository %lld on %s is suspect, reads avoid it until it is verified: %s",
		 (long long)r->id, n->cfg->storage, why);
	suspect_add(p, n, r->id, 1, 1);
	/* the corruption may have been copied: check every other replica too, at once */
	for (size_t i = 0; i < r->vs->nr_nodes; i++) {
		struct node *o = &r->vs->nodes[i];
		struct replica *rep = repo_replica(r, o->cfg->storage);
		if (o != n && rep && rep->generation >= 0)
			suspect_add(p, o, r->id, 0, 1);
	}
	schedule_kick(p, TASK_VERIFY_REPLICAS);
}

void suspect_found_corrupt(struct praefect *p, struct repo *r, struct node *n, const char *why)
{
	struct suspect *s = suspect_get(n, r->id);
	if (s && (s->busy || (s->state >= SUSPECT_CORRUPT && s->state != SUSPECT_CLEAN))) {
		s->avoid = 1; /* already being verified or repaired: that goes on */
		store_sync(s);
		return;
	}
	log_msgf(LOG_WARN, "replica of repository %lld on %s is corrupt, repairing it: %s", (long long)r->id,
		 n->cfg->storage, why);
	if (!s) {
		suspect_add(p, n, r->id, 1, 0);
		s = suspect_get(n, r->id);
	}
	s->state = SUSPECT_CORRUPT;
	s->avoid = 1;
	s->rebuild_stalled = 0;
	s->next_ms = now_ms();
	store_sync(s);
	/* as for a failed read: the source of its rebuild must have passed its own Fsck */
	for (size_t i = 0; i < r->vs->nr_nodes; i++) {
		struct node *o = &r->vs->nodes[i];
		struct replica *rep = repo_replica(r, o->cfg->storage);
		if (o != n && rep && rep->generation >= 0)
			suspect_add(p, o, r->id, 0, 1);
	}
	schedule_kick(p, TASK_VERIFY_REPLICAS);
}

/*
 * Does a failed read look like corrupt or missing objects on that replica?
 * git's own words, as gitaly passes them on in the status message.
 */
int suspect_read_error(enum grpc_code code, const char *msg)
{
	static const char *const words[] = {
		"corrupt", "missing blob", "missing tree", "missing commit", "missing tag", "missing object",
		"bad object", "bad packed object", "unable to read", "inflate", "did not receive expected object",
		"unable to parse object", "object file", "packfile",
		/* gitaly's own, when cat-file cannot give an object the repository refers to */
		"object not found", "read object", NULL,
	};
	if (code == GRPC_DATA_LOSS)
		return 1;
	if ((code != GRPC_INTERNAL && code != GRPC_UNKNOWN) || !msg)
		return 0;
	for (const char *const *w = words; *w; w++)
		if (strstr(msg, *w))
			return 1;
	return 0;
}

/* --- verification --- */

/*
 * A replica found corrupt hints at a failing disk or a node that lost
 * writes: check every other replica on that node too (not avoided until its
 * own Fsck fails), at most once per NODE_SCAN_EVERY_MS.
 */
static void scan_node(struct praefect *p, struct node *n)
{
	uint64_t now = now_ms();
	size_t added = 0;
	if (n->scanned_ms && now - n->scanned_ms < NODE_SCAN_EVERY_MS)
		return;
	n->scanned_ms = now;
	for (size_t i = 0; i < p->repos.cap; i++) {
		struct repo *r = p->repos.by_id[i];
		if (!r)
			continue;
		struct replica *rep;
		if (r->vs != n->vs || !(rep = repo_replica(r, n->cfg->storage)) || rep->generation < 0)
			continue;
		if (!suspect_get(n, r->id)) {
			suspect_add(p, n, r->id, 0, 0);
			added++;
		}
	}
	if (added)
		log_msgf(LOG_INFO, "checking the %zu other replicas on %s", added, n->cfg->storage);
}

static void on_fsck_done(void *arg, enum grpc_code code, const char *message, const uint8_t *msg, size_t len)
{
	struct suspect *s = arg;
	Gitaly__FsckResponse *r = NULL;
	uint64_t now = now_ms();

	s->busy = 0;
	if (!s->node) {
		suspect_free(s);
		return;
	}
	if (code == GRPC_OK)
		r = gitaly__fsck_response__unpack(NULL, len, msg);
	if (code == GRPC_OK && r && !r->error.len) {
		log_msgf(LOG_INFO, "replica of repository %lld on %s verified: healthy", (long long)s->repo_id,
			 s->node->cfg->storage);
		gitaly__fsck_response__free_unpacked(r, NULL);
		s->state = SUSPECT_CLEAN;
		s->rebuild_stalled = 0;
		s->avoid = 0;
		s->urgent = 0;
		s->next_ms = now + CLEAN_KEEP_MS;
		store_sync(s);
		schedule_kick(s->p, TASK_VERIFY_REPLICAS); /* reads held for it go on (route.c) */
		return;
	}
	if ((code == GRPC_OK && r) || code == GRPC_NOT_FOUND) {
		log_msgf(LOG_WARN, "replica of repository %lld on %s is corrupt, repairing it: %.*s",
			 (long long)s->repo_id, s->node->cfg->storage,
			 code == GRPC_OK ? (int)r->error.len : (int)strlen(message ? message : ""),
			 code == GRPC_OK ? (const char *)r->error.data : (message ? message : ""));
		s->state = SUSPECT_CORRUPT;
		s->rebuild_stalled = 0;
		s->avoid = 1;
		s->next_ms = now;
		store_sync(s);
		scan_node(s->p, s->node);
	} else if (code == GRPC_UNIMPLEMENTED) {
		if (!s->told_unimplemented)
			log_msgf(LOG_WARN, "cannot verify the replica of repository %lld on %s: its node has no Fsck",
				 (long long)s->repo_id, s->node->cfg->storage);
		s->told_unimplemented = 1;
		if (!s->avoid) {
			suspect_drop(s); /* only checked for a sibling: nothing against it */
		} else {
			s->state = SUSPECT_UNVERIFIED;
			s->next_ms = now + FSCK_UNIMPLEMENTED_RETRY_MS;
		}
	} else {
		s->state = SUSPECT_UNVERIFIED;
		s->next_ms = now + FSCK_RETRY_MS;
	}
	if (r)
		gitaly__fsck_response__free_unpacked(r, NULL);
	schedule_kick(s->p, TASK_VERIFY_REPLICAS);
}

static void start_fsck(struct suspect *s, struct repo *r)
{
	if (node_unary_repo(s->node, s->p->fsck->name, &gitaly__fsck_request__descriptor, r->replica_path,
			    FSCK_TIMEOUT_MS, on_fsck_done, s) == 0) {
		s->busy = 1;
		s->state = SUSPECT_VERIFYING;
	} else {
		s->next_ms = now_ms() + FSCK_RETRY_MS;
	}
}

/* --- repair: delete the replica, then replicate it again --- */

static void on_job_queued(void *arg, int status, const char *msg, int64_t id)
{
	struct suspect *s = arg;
	s->busy = 0;
	if (!s->node) {
		suspect_free(s);
		return;
	}
	if (status == -EEXIST && s->state == SUSPECT_DELETING) {
		/*
		 * Not queued: one delete_replica job per repository at a time (another
		 * replica of it is being deleted), or ours is still waiting. Ask again
		 * soon.
		 */
		s->state = SUSPECT_CORRUPT;
		s->next_ms = now_ms() + REPAIR_BUSY_RETRY_MS;
		return;
	}
	if (status < 0 && status != -EEXIST) {
		log_msgf(LOG_WARN, "queueing the repair of repository %lld on %s: %s", (long long)s->repo_id,
			 s->node->cfg->storage, msg ? msg : "store error");
		s->next_ms = now_ms() + FSCK_RETRY_MS;
		return;
	}
	replicator_kick(s->p, s->node->vs, s->node->cfg->storage);
}

/* A healthy up-to-date replica nobody suspects (or found clean), other than `n`'s. */
static struct node *repair_source(struct repo *r, const struct node *n)
{
	for (size_t i = 0; i < r->vs->nr_nodes; i++) {
		struct node *o = &r->vs->nodes[i];
		struct suspect *s;
		if (o == n || !o->healthy || !repo_up_to_date(r, o->cfg->storage))
			continue;
		s = o->suspects.nr ? suspect_get(o, r->id) : NULL;
		if (!s || s->state == SUSPECT_CLEAN)
			return o;
	}
	return NULL;
}

static void queue_job(struct suspect *s, struct repo *r, const char *change, const char *source)
{
	struct repl_job j;
	replicator_job_for(&j, r, change, source, s->node->cfg->storage, "replica-verification");
	s->busy = 1;
	s->next_ms = now_ms() + REPAIR_STEP_TIMEOUT_MS;
	store_enqueue(s->p->store, &j, on_job_queued, s);
}

/*
 * One step of `s` (which may drop it); returns 1 when it was dropped.
 * `fsck_budget` is how many more Fsck calls of its kind may start on its node.
 */
static int step(struct suspect *s, uint64_t now, unsigned *fsck_budget)
{
	struct repo *r = repo_by_id(s->p, s->repo_id);
	struct replica *rep;
	struct node *src;

	if (s->busy)
		return 0;
	rep = r ? repo_replica(r, s->node->cfg->storage) : NULL;
	if (!r || ((s->state < SUSPECT_DELETING || s->state == SUSPECT_CLEAN) && !s->rebuild_stalled &&
		   (!rep || rep->generation < 0))) {
		suspect_drop(s); /* repository or replica gone: nothing left to avoid */
		return 1;
	}
	switch (s->state) {
	case SUSPECT_UNVERIFIED:
		if (now >= s->next_ms && s->node->healthy && *fsck_budget) {
			start_fsck(s, r);
			*fsck_budget -= s->state == SUSPECT_VERIFYING;
		}
		break;
	case SUSPECT_VERIFYING:
		break;
	case SUSPECT_CORRUPT:
		if (now < s->next_ms || !s->node->healthy || !(src = repair_source(r, s->node)))
			break; /* no healthy replica to copy from yet */
		s->state = SUSPECT_DELETING;
		s->deleted = 0;
		queue_job(s, r, "delete_replica", NULL);
		break;
	case SUSPECT_DELETING:
		if (s->deleted && repo_up_to_date(r, s->node->cfg->storage)) {
			/* deleted, then re-created by the reconciler before we looked */
			s->state = SUSPECT_REBUILDING;
			return step(s, now, fsck_budget);
		} else if (!rep || rep->generation < 0 || s->deleted) {
			if ((src = repair_source(r, s->node))) {
				s->state = SUSPECT_REBUILDING;
				queue_job(s, r, "update", src->cfg->storage);
			}
		} else if (now >= s->next_ms) {
			/*
			 * Still there a while after the job was queued: the deletion
			 * failed, or the replica was deleted and rebuilt before we looked.
			 * Fsck tells which.
			 */
			s->state = SUSPECT_UNVERIFIED;
		}
		break;
	case SUSPECT_REBUILDING:
		if (repo_up_to_date(r, s->node->cfg->storage)) {
			log_msgf(LOG_INFO, "replica of repository %lld on %s repaired", (long long)s->repo_id,
				 s->node->cfg->storage);
			suspect_drop(s);
			return 1;
		}
		if (now < s->next_ms)
			break;
		/*
		 * Not caught up a while after the update was queued: the copy may be
		 * broken too (a failed replication can leave what it extracted, and
		 * every later fetch into it fails). Fsck tells; a corrupt or missing
		 * one is deleted and rebuilt again. Kept while it has no replica row.
		 */
		log_msgf(LOG_WARN, "replica of repository %lld on %s is not rebuilt yet, verifying it again",
			 (long long)s->repo_id, s->node->cfg->storage);
		s->state = SUSPECT_UNVERIFIED;
		s->avoid = 1;
		s->rebuild_stalled = 1;
		store_sync(s);
		break;
	case SUSPECT_CLEAN:
		if (now >= s->next_ms) {
			suspect_drop(s);
			return 1;
		}
		break;
	}
	return 0;
}

void suspects_verify(struct praefect *p)
{
	uint64_t now = now_ms();
	for (size_t i = 0; i < p->nr_vs; i++) {
		for (size_t j = 0; j < p->vs[i].nr_nodes; j++) {
			struct node *n = &p->vs[i].nodes[j];
			const struct hashmap_entry *e;
			unsigned running[2] = { 0, 0 }, budget[2];
			for (size_t k = 0; hashmap_next(&n->suspects, &k, &e);) {
				struct suspect *s = e->value;
				running[!(s->avoid || s->urgent)] += s->state == SUSPECT_VERIFYING;
			}
			budget[0] = running[0] < FSCK_URGENT_PER_NODE ? FSCK_URGENT_PER_NODE - running[0] : 0;
			budget[1] = running[1] < FSCK_PER_NODE ? FSCK_PER_NODE - running[1] : 0;
			/*
			 * Those avoided by reads, or that reads wait on, first and
			 * with a budget of their own: a scan of the node's other
			 * replicas does not hold them up.
			 */
			for (int pass = 0; pass < 2; pass++) {
				/* a dropped suspect leaves a tombstone: the walk goes on */
				for (size_t k = 0; hashmap_next(&n->suspects, &k, &e);) {
					struct suspect *s = e->value;
					if ((s->avoid || s->urgent) == !pass)
						step(s, now, &budget[pass]);
				}
			}
		}
	}
	route_release_held_reads(p, 0); /* a step may have verified what they wait on */
}

/* --- start-up: the suspects a previous run left unverified --- */

struct load_state {
	struct praefect *p;
	int done, status;
	struct strbuf *err;
	size_t n;
};

static void on_suspects_listed(void *arg, int status, const char *msg, const struct store_suspect *v, size_t n)
{
	struct load_state *ls = arg;
	ls->done = 1;
	ls->status = status;
	if (status < 0) {
		strbuf_addf(ls->err, "loading suspect replicas: %s", msg ? msg : "store error");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct repo *r = repo_by_id(ls->p, v[i].repository_id);
		struct node *node = r ? vs_node(r->vs, v[i].storage) : NULL;
		struct suspect *s;
		if (!node) {
			/* its storage left the configuration: nothing here can verify it */
			store_suspect_remove(ls->p->store, v[i].repository_id, v[i].storage, on_stored, NULL);
			continue;
		}
		/* avoided ones first in line, as after the failed read that marked them */
		suspect_add(ls->p, node, r->id, v[i].avoid, v[i].avoid);
		s = suspect_get(node, r->id);
		s->stored = v[i].avoid;
		ls->n++;
	}
}

int suspects_load(struct praefect *p, struct strbuf *err)
{
	struct load_state ls = { p, 0, 0, err, 0 };
	store_list_suspects(p->store, on_suspects_listed, &ls);
	while (!ls.done)
		uv_run(p->loop, UV_RUN_ONCE);
	if (ls.status == 0 && ls.n)
		log_msgf(LOG_INFO, "%zu suspect replicas from the tracking store are verified again", ls.n);
	return ls.status < 0 ? -1 : 0;
}

void suspects_release(struct node *n)
{
	const struct hashmap_entry *e;
	for (size_t k = 0; hashmap_next(&n->suspects, &k, &e);) {
		struct suspect *s = e->value;
		if (s->busy)
			s->node = NULL; /* freed by its callback, if it ever fires */
		else
			suspect_free(s);
	}
	hashmap_release(&n->suspects);
}
