/*
 * Housekeeping: what OptimizeRepository, PruneUnreachableObjects and the
 * daily maintenance do to a repository (docs/technical/housekeeping.md).
 *
 * Three layers, each usable alone:
 *   1. hk_info_read() looks at the repository on disk (loose objects,
 *      packfiles, multi-pack-index, commit-graphs, references, alternates)
 *      without running git; blocking, for the thread pool.
 *   2. hk_plan_make() turns that picture into a plan with upstream's
 *      heuristics (or the eager strategy); a pure function of its inputs.
 *      hk_clean_stale() removes the stale files upstream removes, each kind
 *      after its grace period; blocking, for the thread pool.
 *   3. hk_optimize() / hk_prune_unreachable() run the whole thing on the
 *      loop: enter the repository as a writer (core/cleanup.h), clean and
 *      plan in the thread pool, then run the git commands of the plan one
 *      after the other. `done` fires exactly once, from the loop.
 *
 * One optimization per repository at a time: a second hk_optimize() on a
 * repository being optimized does nothing and says so (HK_BUSY), as upstream
 * answers success without work in that case.
 */
#ifndef GITALY_HOUSEKEEPING_H
#define GITALY_HOUSEKEEPING_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include "shared.pb-c.h"

struct gitaly;
struct strbuf;

/* --- what the repository looks like --- */

/* Loose objects older than this count as stale (upstream: 10 days). */
#define HK_STALE_OBJECTS_GRACE_S (10 * 24 * 3600)
/* Loose objects tolerated before an incremental repack or a prune. */
#define HK_LOOSE_OBJECT_LIMIT 1024
/* No second full repack within this time unless needed otherwise (5 days). */
#define HK_FULL_REPACK_COOLDOWN_S (5 * 24 * 3600)
/* Touched before every full repack; its mtime is "last full repack". */
#define HK_FULL_REPACK_TIMESTAMP ".gitaly-full-repack-timestamp"

struct hk_info {
	bool is_pool;                 /* an object pool: never prune, keep unreachable objects */
	uint64_t loose_count, loose_stale_count;
	uint64_t pack_count, cruft_count, keep_count, pack_size;
	bool midx_exists;
	uint64_t midx_pack_count;     /* packfiles the multi-pack-index tracks */
	time_t last_full_repack;      /* 0: never */
	bool alternates_exist;
	size_t nr_alternates;
	time_t alternates_mtime;
	uint64_t loose_refs, packed_refs_size;
	bool commit_graph_exists;
	uint64_t commit_graph_chain;  /* 0: none or a monolithic graph */
	bool commit_graph_bloom, commit_graph_generation;
};

/*
 * Read `repo_path` into `out`; `now` decides what is stale. 0, or -errno with
 * `err` set for what could not be read (a missing file is not an error).
 */
int hk_info_read(const char *repo_path, bool is_pool, time_t now, struct hk_info *out, struct strbuf *err);
/* Whether a relative path is an object pool's (@pools/ab/cd/<hash>.git or @cluster/pools/ab/cd/<id>). */
bool hk_is_pool_path(const char *relative_path);

/* --- what to do about it --- */

enum hk_strategy { HK_HEURISTICAL, HK_EAGER };

enum hk_repack {
	HK_REPACK_NONE,
	HK_REPACK_INCREMENTAL,        /* loose objects into one new pack, whatever their reachability */
	HK_REPACK_GEOMETRIC,          /* git repack --geometric=2 */
	HK_REPACK_FULL_CRUFT,         /* everything reachable in one pack, the rest in a cruft pack */
	HK_REPACK_FULL_UNREACHABLE,   /* full repack keeping unreachable packed objects (pools) */
};

struct hk_plan {
	enum hk_repack repack;
	bool write_bitmap, write_midx;
	time_t cruft_expire;          /* FULL_CRUFT: unreachable objects older than this go (0: none) */
	bool prune;
	time_t prune_expire;          /* git prune --expire */
	bool pack_refs;
	bool commit_graph;
	bool commit_graph_replace;    /* --split=replace rather than --split */
};

void hk_plan_make(const struct hk_info *info, enum hk_strategy strategy, time_t now, struct hk_plan *out);
/* "incremental_with_unreachable", "geometric", "full_with_cruft", "full_with_unreachable", "none". */
const char *hk_repack_name(enum hk_repack r);

/* --- stale files --- */

struct hk_clean_counts {
	unsigned objects, locks, refs, reflocks, packfilelocks, packedrefslock, packedrefsnew, serverinfo;
	unsigned refsemptydir, failures;
	unsigned configkeys;          /* 1 when unnecessary config keys were unset (run.c) */
};

/* Remove what upstream's stale-data cleanup removes, by `now`. 0, or -errno with `err` set. */
int hk_clean_stale(const char *repo_path, time_t now, struct hk_clean_counts *out, struct strbuf *err);

/* --- running it --- */

struct hk_run;
/* rc 0: done; -ECANCELED: hk_cancel() stopped it; other negative: failed, `msg` says why. */
typedef void (*hk_done_fn)(void *arg, int rc, const char *msg);

#define HK_BUSY 1

/*
 * Optimize `repo` (at `path`, as gitaly_locate() resolved it; both copied).
 * Returns 0 when started (`done` fires once, never synchronously, and `*out`
 * may be given to hk_cancel() until then), HK_BUSY when the repository is
 * being optimized already (nothing started), or -1 with `msg` set.
 */
int hk_optimize(struct gitaly *g, const Gitaly__Repository *repo, const char *path, enum hk_strategy strategy,
		hk_done_fn done, void *arg, struct hk_run **out, struct strbuf *msg);
/* PruneUnreachableObjects' work (upstream's order and 30 minute grace); as hk_optimize(), never HK_BUSY. */
int hk_prune_unreachable(struct gitaly *g, const Gitaly__Repository *repo, const char *path,
			 hk_done_fn done, void *arg, struct hk_run **out, struct strbuf *msg);
/* Stop a running job: its git is stopped, `done` fires with -ECANCELED. */
void hk_cancel(struct hk_run *run);

/* --- the node's housekeeping state (g->housekeeping) --- */

struct hk_daily;
struct housekeeping {
	struct hk_run *running;       /* optimizations in flight, one per repository */
	struct hk_daily *daily;       /* the [daily_maintenance] window, NULL when off */
};
/* g->housekeeping, created on first use. */
struct housekeeping *hk_state(struct gitaly *g);

/* --- daily maintenance ([daily_maintenance], daily.c) --- */

/* Schedule the daily window on the node's cron, if configured. Call once before serving. */
void hk_daily_start(struct gitaly *g);
/* Stop the window (a running optimization is cancelled). Safe without hk_daily_start(). */
void hk_daily_stop(struct gitaly *g);
/* After the loop stopped: free g->housekeeping and the daily state. */
void hk_free(struct gitaly *g);

#endif
