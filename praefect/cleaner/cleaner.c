/*
 * The repositories cleaner ([repositories_cleanup], upstream's repocleaner;
 * docs/technical/praefect-health.md, "Repositories on disk nobody tracks"):
 * every `check_interval` it takes the next storage not walked for
 * `run_interval`, walks it with InternalGitaly/WalkRepos and logs, with
 * upstream's message and fields, every repository on it that no record of
 * its virtual storage has a replica of there. Repositories modified in the
 * last 24 hours are skipped: they may be being created. Only logs, as
 * upstream's one action does. `run_interval = 0` turns it off.
 *
 * One praefect: when each storage was last walked is kept in memory (a
 * restart walks them again); upstream keeps it in storage_cleanups for
 * several praefects.
 */
#include "praefect.h"
#include "base/log.h"
#include "base/strvec.h"
#include "base/util.h"
#include "internal.pb-c.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GRACE_S (24 * 60 * 60)
#define WALK_TIMEOUT_MS (60 * 60 * 1000)

struct cleaner {
	struct praefect *p;
	const struct rpc_method *walk_repos;
	size_t nr;                   /* every (virtual storage, node) */
	uint64_t *last_run_ms;       /* per node, loop time; 0: never */
	size_t next;                 /* round robin start */
	/* the walk in progress */
	int busy;
	int orphaned;                /* praefect freed us while the walk was in flight */
	struct node *node;
	size_t slot;
	struct strvec batch;
	size_t found, seen;
};

static struct node *node_at(struct praefect *p, size_t slot)
{
	for (size_t i = 0; i < p->nr_vs; i++) {
		if (slot < p->vs[i].nr_nodes)
			return &p->vs[i].nodes[slot];
		slot -= p->vs[i].nr_nodes;
	}
	return NULL;
}

static void flush(struct cleaner *c)
{
	char **untracked;
	size_t n;
	if (!c->batch.nr || !c->node)
		return;
	untracked = xcalloc(c->batch.nr, sizeof(*untracked));
	n = repos_untracked(c->p, c->node->vs, c->node->cfg->storage, (const char *const *)c->batch.v, c->batch.nr,
			    untracked);
	for (size_t i = 0; i < n; i++) {
		struct log_entry e;
		if (log_begin(&e, LOG_WARN, "repository is not managed by praefect")) {
			log_str(&e, "component", "repocleaner.log_warn_action");
			log_str(&e, "virtual_storage", c->node->vs->cfg->name);
			log_str(&e, "storage", c->node->cfg->storage);
			log_str(&e, "relative_replica_path", untracked[i]);
			log_end(&e);
		}
	}
	c->found += n;
	free(untracked);
	strvec_clear(&c->batch);
}

static void on_repo(struct grpc_client_call *cc, const uint8_t *msg, size_t len)
{
	struct cleaner *c = grpc_client_call_user(cc);
	Gitaly__WalkReposResponse *r;
	if (c->orphaned || !(r = gitaly__walk_repos_response__unpack(NULL, len, msg)))
		return;
	c->seen++;
	/* just created (its record may not be written yet): not this time */
	if (r->relative_path && (!r->modification_time || r->modification_time->seconds < time(NULL) - GRACE_S))
		strvec_push(&c->batch, r->relative_path);
	gitaly__walk_repos_response__free_unpacked(r, NULL);
	if (c->batch.nr >= (size_t)c->p->cfg.cleanup_repositories_in_batch)
		flush(c);
}

static void on_walked(struct grpc_client_call *cc, enum grpc_code code, const char *message,
		      const struct grpc_metadata *trailers)
{
	struct cleaner *c = grpc_client_call_user(cc);
	(void)trailers;
	if (c->orphaned) {
		strvec_clear(&c->batch);
		free(c->last_run_ms);
		free(c);
		return;
	}
	flush(c);
	if (c->node && code != GRPC_OK) {
		log_msgf(LOG_ERROR, "repositories cleanup of %s/%s: failed to exec action on repositories: %s",
			 c->node->vs->cfg->name, c->node->cfg->storage, message ? message : grpc_code_name(code));
	} else if (c->node) {
		log_msgf(LOG_INFO, "repositories cleanup of %s/%s: %zu repositories on disk, %zu not managed by praefect",
			 c->node->vs->cfg->name, c->node->cfg->storage, c->seen, c->found);
	}
	if (c->node && code == GRPC_OK)
		c->last_run_ms[c->slot] = uv_now(c->p->loop) ? uv_now(c->p->loop) : 1;
	strvec_clear(&c->batch);
	c->busy = 0;
	c->node = NULL;
}

static const struct grpc_client_ops walk_ops = { .on_message = on_repo, .on_close = on_walked };

void cleaner_run(struct praefect *p)
{
	struct cleaner *c = p->cleaner;
	uint64_t now = uv_now(p->loop);
	if (!c || c->busy || !c->nr)
		return;
	for (size_t k = 0; k < c->nr; k++) {
		size_t slot = (c->next + k) % c->nr;
		struct node *n = node_at(p, slot);
		Gitaly__WalkReposRequest req = GITALY__WALK_REPOS_REQUEST__INIT;
		struct grpc_metadata md = GRPC_METADATA_INIT;
		struct grpc_client_call *cc;
		uint8_t *buf;
		size_t len;
		int rc;

		if (!n || !n->healthy ||
		    (c->last_run_ms[slot] && now - c->last_run_ms[slot] < p->cfg.cleanup_run_interval_ms))
			continue;
		req.storage_name = (char *)n->cfg->storage;
		len = gitaly__walk_repos_request__get_packed_size(&req);
		buf = xmalloc(len ? len : 1);
		gitaly__walk_repos_request__pack(&req, buf);
		node_call_metadata(n, NULL, &md);
		c->node = n;
		c->slot = slot;
		c->found = c->seen = 0;
		rc = grpc_channel_call(n->ch, c->walk_repos->name, &md, WALK_TIMEOUT_MS, 0, &walk_ops, c, &cc);
		grpc_metadata_release(&md);
		if (rc == 0) {
			c->busy = 1;
			c->next = (slot + 1) % c->nr;
			grpc_client_call_send(cc, buf, len);
			grpc_client_call_close_send(cc);
		} else {
			c->node = NULL;
		}
		free(buf);
		if (c->busy)
			return;
	}
}

void cleaner_init(struct praefect *p)
{
	struct cleaner *c;
	if (!p->cfg.cleanup_run_interval_ms) {
		log_msgf(LOG_WARN, "Repository cleanup background task disabled as \"repositories_cleanup.run_interval\" "
			 "is not set or 0.");
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->p = p;
	c->walk_repos = praefect_method("/gitaly.InternalGitaly/WalkRepos");
	for (size_t i = 0; i < p->nr_vs; i++)
		c->nr += p->vs[i].nr_nodes;
	c->last_run_ms = xcalloc(c->nr ? c->nr : 1, sizeof(*c->last_run_ms));
	strvec_init(&c->batch);
	p->cleaner = c;
}

void cleaner_free(struct praefect *p)
{
	struct cleaner *c = p->cleaner;
	if (!c)
		return;
	p->cleaner = NULL;
	if (c->busy) {
		c->orphaned = 1; /* its call's close frees it, touching nothing else */
		return;
	}
	strvec_clear(&c->batch);
	free(c->last_run_ms);
	free(c);
}
