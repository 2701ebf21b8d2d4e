/*
 * Running a housekeeping job on the loop: enter the repository as a writer,
 * clean stale files and plan in the thread pool, then run the plan's git
 * commands one after the other (docs/technical/housekeeping.md, "Order").
 */
#include "housekeeping/housekeeping.h"
#include "core/gitaly.h"
#include "core/metrics.h"
#include "base/log.h"
#include "base/strvec.h"
#include "base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/banned.h"

/* OptimizeRepository: config listing, pack-objects + prune-packed, prune, pack-refs, commit-graph */
#define HK_MAX_STEPS 7
/*
 * Config keys upstream's housekeeping unsets: leftovers of mirrors and of
 * options gitaly once set (git's canonical lower-case names).
 */
#define UNNECESSARY_CONFIG \
	"^(http\\..+\\.extraheader|remote\\..+\\.(fetch|mirror|prune|url)|core\\.(commitgraph|sparsecheckout|splitindex))$"
#define CONFIG_KEYS_WHAT \
	"could not execute houskeeping: housekeeping could not perform cleanup (with TxManager) configkeys: " \
	"housekeeping could not unset unnecessary config lines"
/* PruneUnreachableObjects spares what was touched in the last 30 minutes. */
#define PRUNE_GRACE_S (30 * 60)

struct hk_step {
	const char *subcmd;
	const char *what;             /* error prefix, upstream's wording */
	const char *task;             /* the optimization's name in the log and metrics */
	bool bitmap, midx;            /* a repack that writes them (written_bitmap, written_multi_pack_index) */
	bool list_config;             /* lists the config keys to unset (stdout: one name a line) */
	struct strvec flags, args, config;
};

struct hk_run {
	struct gitaly *g;
	struct hk_run *next;          /* in the node's list of optimizations (busy check) */
	bool prune_job, listed;
	enum hk_strategy strategy;
	char *path, *storage, *rel;
	Gitaly__Repository repo;
	struct cleanup_writer *writer;
	uv_work_t work;
	int work_rc;
	struct strbuf msg;
	time_t now;
	struct hk_info info;
	struct hk_plan plan;
	struct hk_clean_counts counts;
	struct hk_step steps[HK_MAX_STEPS];
	size_t nr_steps, next_step;
	struct hk_step *cur;          /* the step whose git runs */
	struct strvec unset_keys;     /* found by the list_config step, unset one by one */
	size_t next_unset;
	struct hk_step unset;
	struct git_cmd *cmd;
	bool cancelled, work_done;    /* work_done: the stale-file pass ran */
	hk_done_fn done;
	void *arg;
};

static struct hk_run **running_list(struct gitaly *g)
{
	return &hk_state(g)->running;
}

struct housekeeping *hk_state(struct gitaly *g)
{
	if (!g->housekeeping)
		g->housekeeping = xcalloc(1, sizeof(*g->housekeeping));
	return g->housekeeping;
}

static void run_free(struct hk_run *r)
{
	for (size_t i = 0; i < r->nr_steps; i++) {
		strvec_clear(&r->steps[i].flags);
		strvec_clear(&r->steps[i].args);
		strvec_clear(&r->steps[i].config);
	}
	strvec_clear(&r->unset_keys);
	strvec_clear(&r->unset.flags);
	strvec_clear(&r->unset.args);
	strvec_clear(&r->unset.config);
	free(r->path);
	free(r->storage);
	free(r->rel);
	strbuf_release(&r->msg);
	free(r);
}

static void log_run(struct hk_run *r, int rc)
{
	struct log_entry e;
	const char *name = r->prune_job ? "pruned unreachable objects" : "optimized repository";
	if (!log_begin(&e, rc == 0 ? LOG_INFO : LOG_WARN, name))
		return;
	log_str(&e, "grpc.request.repoStorage", r->storage);
	log_str(&e, "grpc.request.repoPath", r->rel);
	for (size_t i = 0; i < r->next_step && i < r->nr_steps; i++)
		if (r->steps[i].task)
			log_str(&e, r->steps[i].task, (rc == 0 || i + 1 < r->next_step) ? "success" : "failure");
	if (r->counts.locks + r->counts.reflocks + r->counts.refs + r->counts.objects + r->counts.packfilelocks +
	    r->counts.packedrefslock + r->counts.packedrefsnew + r->counts.serverinfo + r->counts.refsemptydir +
	    r->counts.configkeys) {
		log_int(&e, "stale_data.objects", r->counts.objects);
		log_int(&e, "stale_data.locks", r->counts.locks);
		log_int(&e, "stale_data.refs", r->counts.refs);
		log_int(&e, "stale_data.reflocks", r->counts.reflocks);
		log_int(&e, "stale_data.packfilelocks", r->counts.packfilelocks);
		log_int(&e, "stale_data.packedrefslock", r->counts.packedrefslock);
		log_int(&e, "stale_data.packedrefsnew", r->counts.packedrefsnew);
		log_int(&e, "stale_data.serverinfo", r->counts.serverinfo);
		log_int(&e, "stale_data.refsemptydir", r->counts.refsemptydir);
		log_int(&e, "stale_data.failures", r->counts.failures);
		log_int(&e, "stale_data.configkeys", r->counts.configkeys);
	}
	if (rc < 0 && r->msg.len)
		log_str(&e, "error", r->msg.buf);
	log_end(&e);
}

/* Upstream's series for OptimizeRepository: each optimization tried, and the run as "total". */
static void count_run(struct hk_run *r, int rc)
{
	static const char *const kinds[] = { "objects", "locks", "refs", "reflocks", "packfilelocks",
					     "packedrefslock", "packedrefsnew", "serverinfo", "refsemptydir",
					     "configkeys" };
	const unsigned counts[] = { r->counts.objects, r->counts.locks, r->counts.refs, r->counts.reflocks,
				    r->counts.packfilelocks, r->counts.packedrefslock, r->counts.packedrefsnew,
				    r->counts.serverinfo, r->counts.refsemptydir, r->counts.configkeys };
	for (size_t i = 0; i < r->next_step && i < r->nr_steps; i++) {
		const char *status = (rc == 0 || i + 1 < r->next_step) ? "success" : "failure";
		if (r->steps[i].task)
			gitaly_metrics_housekeeping_task(r->g, r->steps[i].task, status);
		if (r->steps[i].bitmap)
			gitaly_metrics_housekeeping_task(r->g, "written_bitmap", status);
		if (r->steps[i].midx)
			gitaly_metrics_housekeeping_task(r->g, "written_multi_pack_index", status);
	}
	gitaly_metrics_housekeeping_task(r->g, "total", rc == 0 ? "success" : "failure");
	if (!r->work_done)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
		gitaly_metrics_pruned_files(r->g, kinds[i], counts[i]);
	if (r->counts.failures)
		gitaly_metrics_pruned_files(r->g, "failures", r->counts.failures);
}

static void finish(struct hk_run *r, int rc)
{
	if (r->listed) {
		struct hk_run **p = running_list(r->g);
		while (*p && *p != r)
			p = &(*p)->next;
		if (*p)
			*p = r->next;
	}
	cleanup_writer_leave(r->writer);
	r->writer = NULL;
	if (rc != -ECANCELED)
		log_run(r, rc);
	if (!r->prune_job)
		count_run(r, rc);
	r->done(r->arg, rc, rc == -ECANCELED ? "context canceled" : r->msg.buf);
	run_free(r);
}

/* --- the plan as git commands (built in the thread pool, run on the loop) --- */

static struct hk_step *add_step(struct hk_run *r, const char *subcmd, const char *what, const char *task)
{
	struct hk_step *s = &r->steps[r->nr_steps++];
	s->subcmd = subcmd;
	s->what = what;
	s->task = task;
	strvec_init(&s->flags);
	strvec_init(&s->args);
	strvec_init(&s->config);
	return s;
}

/* git's RFC 2822 form, which every git date option parses exactly. */
static void git_time(struct strbuf *sb, time_t t)
{
	struct tm tm;
	char buf[64];
	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	strbuf_addstr(sb, buf);
}

static void add_repack(struct hk_run *r, const struct hk_plan *p, const char *what)
{
	struct hk_step *s;
	if (p->repack == HK_REPACK_INCREMENTAL) {
		struct strbuf base = STRBUF_INIT;
		/* no git repack mode packs every loose object whatever its reachability: do it by hand */
		s = add_step(r, "pack-objects", what, "packed_objects_incremental_with_unreachable");
		strvec_pushl(&s->flags, "--pack-loose-unreachable", "--local", "--incremental", "--non-empty",
			     "--quiet", NULL);
		strbuf_addf(&base, "%s/objects/pack/pack", r->path);
		strvec_push(&s->args, base.buf);
		strbuf_release(&base);
		s = add_step(r, "prune-packed", what, NULL);
		strvec_push(&s->flags, "--quiet");
		return;
	}
	s = add_step(r, "repack", what, NULL);
	switch (p->repack) {
	case HK_REPACK_FULL_CRUFT:
		s->task = "packed_objects_full_with_cruft";
		strvec_pushl(&s->flags, "--cruft", "--pack-kept-objects", "-l", "-d", NULL);
		if (p->cruft_expire) {
			struct strbuf e = STRBUF_INIT;
			strbuf_addstr(&e, "--cruft-expiration=");
			git_time(&e, p->cruft_expire);
			strvec_push(&s->flags, e.buf);
			strbuf_release(&e);
		}
		break;
	case HK_REPACK_FULL_UNREACHABLE:
		s->task = "packed_objects_full_with_unreachable";
		strvec_pushl(&s->flags, "-a", "-l", "-d", "--keep-unreachable", NULL);
		break;
	default:
		s->task = "packed_objects_geometric";
		strvec_pushl(&s->flags, "--geometric=2", "-d", "-l", NULL);
		break;
	}
	if (p->write_midx)
		strvec_push(&s->flags, "--write-midx");
	s->midx = p->write_midx;
	s->bitmap = p->write_bitmap;
	strvec_push(&s->config, "repack.useDeltaIslands=true");
	strvec_push(&s->config, p->write_bitmap ? "repack.writeBitmaps=true" : "repack.writeBitmaps=false");
	strvec_push(&s->config, "pack.writeBitmapLookupTable=true");
	if (r->info.is_pool) {
		strvec_push(&s->config, "pack.island=refs/remotes/origin/he(a)ds");
		strvec_push(&s->config, "pack.island=refs/remotes/origin/t(a)gs");
		strvec_push(&s->config, "pack.islandCore=a");
	} else {
		strvec_push(&s->config, "pack.island=r(e)fs/heads");
		strvec_push(&s->config, "pack.island=r(e)fs/tags");
		strvec_push(&s->config, "pack.islandCore=e");
	}
}

static void add_prune(struct hk_run *r, time_t expire, const char *what)
{
	struct strbuf e = STRBUF_INIT;
	struct hk_step *s = add_step(r, "prune", what, "pruned_objects");
	strbuf_addstr(&e, "--expire=");
	git_time(&e, expire);
	strvec_push(&s->flags, e.buf);
	strbuf_release(&e);
}

static void add_commit_graph(struct hk_run *r, bool replace, const char *what)
{
	struct hk_step *s = add_step(r, "commit-graph", what,
				     replace ? "written_commit_graph_full" : "written_commit_graph_incremental");
	strvec_pushl(&s->flags, "write", "--reachable", "--changed-paths", "--size-multiple=4",
		     replace ? "--split=replace" : "--split", NULL);
}

/* Touch the full-repack timestamp before the repack: a repack that keeps failing is not retried at once. */
static int touch_timestamp(struct hk_run *r)
{
	struct strbuf p = STRBUF_INIT, tmp = STRBUF_INIT;
	int rc = 0, fd;
	strbuf_addf(&p, "%s/%s", r->path, HK_FULL_REPACK_TIMESTAMP);
	if (utimensat(AT_FDCWD, p.buf, NULL, 0) == 0)
		goto out;
	if (errno != ENOENT) {
		rc = -errno;
		goto out;
	}
	strbuf_addf(&tmp, "%s-XXXXXX", p.buf);
	if ((fd = mkstemp(tmp.buf)) < 0) {
		rc = -errno;
		goto out;
	}
	close(fd);
	if (rename(tmp.buf, p.buf) < 0) {
		rc = -errno;
		unlink(tmp.buf);
	}
out:
	if (rc < 0)
		strbuf_addf(&r->msg, "updating full-repack timestamp: %s", strerror(-rc));
	strbuf_release(&p);
	strbuf_release(&tmp);
	return rc;
}

static bool is_full(enum hk_repack k)
{
	return k == HK_REPACK_FULL_CRUFT || k == HK_REPACK_FULL_UNREACHABLE;
}

static void plan_work(uv_work_t *w)
{
	struct hk_run *r = w->data;
	struct strbuf err = STRBUF_INIT;

	r->now = time(NULL);
	if (r->prune_job) {
		struct hk_plan p = { 0 };
		int rc = hk_info_read(r->path, r->info.is_pool, r->now, &r->info, &err);
		if (rc < 0) {
			strbuf_addf(&r->msg, "deriving repository info: %s", err.buf);
			r->work_rc = rc;
			goto out;
		}
		/* loose unreachable objects first, then those in cruft packs, which only a full repack drops */
		add_prune(r, r->now - PRUNE_GRACE_S, "pruning objects: executing prune");
		p.repack = HK_REPACK_FULL_CRUFT;
		p.write_midx = true;
		p.write_bitmap = r->info.nr_alternates == 0;
		p.cruft_expire = r->now - PRUNE_GRACE_S;
		if ((r->work_rc = touch_timestamp(r)) < 0)
			goto out;
		add_repack(r, &p, "repacking objects");
		add_commit_graph(r, true, "rewriting commit-graph: writing commit-graph");
		goto out;
	}

	r->work_rc = hk_clean_stale(r->path, r->now, &r->counts, &err);
	r->work_done = true;
	if (r->work_rc < 0) {
		strbuf_addf(&r->msg, "could not execute houskeeping: %s", err.buf);
		goto out;
	}
	if ((r->work_rc = hk_info_read(r->path, r->info.is_pool, r->now, &r->info, &err)) < 0) {
		strbuf_addf(&r->msg, "deriving repository info: %s", err.buf);
		goto out;
	}
	hk_plan_make(&r->info, r->strategy, r->now, &r->plan);
	{
		struct hk_step *s = add_step(r, "config", CONFIG_KEYS_WHAT, NULL);
		s->list_config = true;
		strvec_pushl(&s->flags, "--local", "--name-only", "--get-regexp", NULL);
		strvec_push(&s->args, UNNECESSARY_CONFIG);
	}
	if (r->plan.repack != HK_REPACK_NONE) {
		if (is_full(r->plan.repack) && (r->work_rc = touch_timestamp(r)) < 0)
			goto out;
		add_repack(r, &r->plan, "could not repack");
	}
	if (r->plan.prune)
		add_prune(r, r->plan.prune_expire, "could not prune: pruning objects: executing prune");
	if (r->plan.pack_refs) {
		struct hk_step *s = add_step(r, "pack-refs", "could not pack refs: packing refs", "packed_refs");
		strvec_push(&s->flags, "--all");
	}
	if (r->plan.commit_graph)
		add_commit_graph(r, r->plan.commit_graph_replace,
				 "could not write commit-graph: writing commit-graph: writing commit-graph");
out:
	strbuf_release(&err);
}

static void next_step(struct hk_run *r);

static void step_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct hk_run *r = arg;
	struct hk_step *s = r->cur;
	r->cmd = NULL;
	if (r->cancelled) {
		finish(r, -ECANCELED);
		return;
	}
	if (s->list_config && (status == 0 || status == 1)) {
		/* exit 1: no key matched */
		const char *p = out ? out->buf : "";
		while (status == 0 && *p) {
			size_t n = strcspn(p, "\n");
			bool dup = false;
			char *key = xstrndup(p, n);
			for (size_t i = 0; i < r->unset_keys.nr; i++)
				dup |= !strcmp(r->unset_keys.v[i], key);
			if (n && !dup)
				strvec_push(&r->unset_keys, key);
			free(key);
			p += n + (p[n] == '\n');
		}
		if (r->unset_keys.nr)
			r->counts.configkeys = 1;   /* upstream counts "something was unset", not how much */
		next_step(r);
		return;
	}
	if (status != 0) {
		strbuf_addf(&r->msg, "%s: ", s->what);
		if (status > 0 && !strcmp(s->subcmd, "repack"))
			strbuf_addf(&r->msg, "repack failed with error code %d", status);
		else if (status > 0 && (!strcmp(s->subcmd, "pack-objects") || !strcmp(s->subcmd, "prune-packed")))
			strbuf_addf(&r->msg, "%s failed with error code %d", s->subcmd, status);
		else
			gitaly_describe_status(&r->msg, status);
		if (err && err->len) {
			size_t n = err->len;
			while (n && (err->buf[n - 1] == '\n' || err->buf[n - 1] == ' '))
				n--;
			strbuf_addf(&r->msg, ", stderr: \"%.*s\"", (int)n, err->buf);
		}
		finish(r, -EIO);
		return;
	}
	next_step(r);
}

static void next_step(struct hk_run *r)
{
	struct hk_step *s;
	struct git_call gc = { 0 };
	struct strbuf msg = STRBUF_INIT;

	if (r->cancelled) {
		finish(r, -ECANCELED);
		return;
	}
	if (r->next_unset < r->unset_keys.nr) {
		/* the keys the listing found, before the step after it */
		s = &r->unset;
		s->subcmd = "config";
		s->what = CONFIG_KEYS_WHAT;
		strvec_clear(&s->flags);
		strvec_pushl(&s->flags, "--local", "--unset-all", NULL);
		strvec_clear(&s->args);
		strvec_push(&s->args, r->unset_keys.v[r->next_unset++]);
	} else if (r->next_step == r->nr_steps) {
		finish(r, 0);
		return;
	} else {
		s = &r->steps[r->next_step++];
	}
	r->cur = s;
	gc.git_dir = r->path;
	gc.repo = &r->repo;
	gc.subcmd = s->subcmd;
	gc.flags = (const char *const *)s->flags.v;
	gc.args = s->args.nr ? (const char *const *)s->args.v : NULL;
	gc.config = (const char *const *)s->config.v;
	gc.nr_config = s->config.nr;
	if (gitaly_git_capture(r->g, &gc, NULL, 0, 64 * 1024, step_done, r, &r->cmd, &msg) < 0) {
		strbuf_addf(&r->msg, "%s: %s", s->what, msg.buf);
		strbuf_release(&msg);
		finish(r, -EINVAL);
		return;
	}
	strbuf_release(&msg);
}

static void plan_after(uv_work_t *w, int status)
{
	struct hk_run *r = w->data;
	(void)status;
	if (r->cancelled) {
		finish(r, -ECANCELED);
		return;
	}
	if (r->work_rc < 0) {
		finish(r, r->work_rc);
		return;
	}
	next_step(r);
}

static void writer_ready(void *arg)
{
	struct hk_run *r = arg;
	if (r->cancelled) {
		finish(r, -ECANCELED);
		return;
	}
	r->work.data = r;
	if (uv_queue_work(r->g->loop, &r->work, plan_work, plan_after) < 0) {
		strbuf_addstr(&r->msg, "cannot queue housekeeping work");
		finish(r, -ENOMEM);
	}
}

static struct hk_run *run_new(struct gitaly *g, const Gitaly__Repository *repo, const char *path,
			      hk_done_fn done, void *arg)
{
	struct hk_run *r = xcalloc(1, sizeof(*r));
	gitaly__repository__init(&r->repo);
	r->g = g;
	r->path = xstrdup(path);
	r->storage = xstrdup(repo->storage_name ? repo->storage_name : "");
	r->rel = xstrdup(repo->relative_path ? repo->relative_path : "");
	r->repo.storage_name = r->storage;
	r->repo.relative_path = r->rel;
	r->info.is_pool = hk_is_pool_path(r->rel);
	strvec_init(&r->unset_keys);
	strvec_init(&r->unset.flags);
	strvec_init(&r->unset.args);
	strvec_init(&r->unset.config);
	strbuf_init(&r->msg, 0);
	r->done = done;
	r->arg = arg;
	return r;
}

int hk_optimize(struct gitaly *g, const Gitaly__Repository *repo, const char *path, enum hk_strategy strategy,
		hk_done_fn done, void *arg, struct hk_run **out, struct strbuf *msg)
{
	struct hk_run **list = running_list(g), *r;
	(void)msg;
	for (r = *list; r; r = r->next)
		if (!strcmp(r->path, path))
			return HK_BUSY;
	r = run_new(g, repo, path, done, arg);
	r->strategy = strategy;
	r->next = *list;
	*list = r;
	r->listed = true;
	r->writer = cleanup_writer_enter(g, r->path, writer_ready, r);
	if (out)
		*out = r;
	return 0;
}

int hk_prune_unreachable(struct gitaly *g, const Gitaly__Repository *repo, const char *path,
			 hk_done_fn done, void *arg, struct hk_run **out, struct strbuf *msg)
{
	struct hk_run *r = run_new(g, repo, path, done, arg);
	(void)msg;
	r->prune_job = true;
	r->writer = cleanup_writer_enter(g, r->path, writer_ready, r);
	if (out)
		*out = r;
	return 0;
}

void hk_cancel(struct hk_run *r)
{
	if (!r || r->cancelled)
		return;
	r->cancelled = true;
	if (r->cmd)
		git_cmd_stop(r->cmd);
}
