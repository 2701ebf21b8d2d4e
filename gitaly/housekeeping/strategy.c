/*
 * Which optimizations a repository needs: upstream's heuristical and eager
 * strategies in our words (docs/technical/housekeeping.md, "The strategy").
 */
#include "housekeeping/housekeeping.h"

#include <math.h>
#include <string.h>
#include "base/banned.h"

const char *hk_repack_name(enum hk_repack r)
{
	switch (r) {
	case HK_REPACK_INCREMENTAL: return "incremental_with_unreachable";
	case HK_REPACK_GEOMETRIC: return "geometric";
	case HK_REPACK_FULL_CRUFT: return "full_with_cruft";
	case HK_REPACK_FULL_UNREACHABLE: return "full_with_unreachable";
	default: return "none";
	}
}

static void full_repack(const struct hk_info *info, time_t expire, struct hk_plan *p)
{
	p->write_bitmap = info->nr_alternates == 0;   /* no bitmap without the closure of all objects */
	p->write_midx = true;
	if (info->is_pool) {
		p->repack = HK_REPACK_FULL_UNREACHABLE;
		p->cruft_expire = 0;
	} else {
		p->repack = HK_REPACK_FULL_CRUFT;
		p->cruft_expire = expire;
	}
}

static void geometric(const struct hk_info *info, struct hk_plan *p)
{
	p->repack = HK_REPACK_GEOMETRIC;
	p->write_bitmap = info->nr_alternates == 0;
	p->write_midx = true;
}

/* How many packfiles the multi-pack-index may miss: log(size in MiB) / log(1.8), at least 2. */
static uint64_t untracked_pack_limit(uint64_t pack_size)
{
	double mib = (double)(pack_size / 1024 / 1024), limit = 2.0;
	if (mib > 0) {
		double l = log(mib) / log(1.8);
		if (l > limit)
			limit = l;
	}
	return (uint64_t)limit;
}

static void heuristical_repack(const struct hk_info *info, time_t now, time_t expire, struct hk_plan *p)
{
	uint64_t non_cruft = info->pack_count - (info->cruft_count <= info->pack_count ? info->cruft_count : 0);
	uint64_t untracked;

	if (!info->pack_count && !info->loose_count)
		return;
	/* alternates changed since the last full repack: we probably joined a pool; deduplicate */
	if (info->alternates_exist && info->alternates_mtime > info->last_full_repack) {
		full_repack(info, expire, p);
		return;
	}
	/* regular full repacks evict unreachable objects into the cruft pack on a known schedule */
	if (non_cruft > 1 && now - info->last_full_repack > HK_FULL_REPACK_COOLDOWN_S) {
		full_repack(info, expire, p);
		return;
	}
	/* the next rule needs a multi-pack-index */
	if (!info->midx_exists) {
		geometric(info, p);
		return;
	}
	untracked = info->pack_count > info->midx_pack_count ? info->pack_count - info->midx_pack_count : 0;
	if (untracked > untracked_pack_limit(info->pack_size)) {
		geometric(info, p);
		return;
	}
	/* otherwise only roll loose objects up, without touching indices that scale with the repository */
	if (info->loose_count > HK_LOOSE_OBJECT_LIMIT)
		p->repack = HK_REPACK_INCREMENTAL;
}

static bool graph_needs_rewrite(const struct hk_info *info)
{
	return info->commit_graph_chain == 0 || !info->commit_graph_bloom || !info->commit_graph_generation;
}

/* More loose references than max(16, log(packed-refs bytes / 100) / log(1.15)): pack them. */
static bool refs_need_packing(const struct hk_info *info)
{
	double allowed = 16;
	if (!info->loose_refs)
		return false;
	if (info->packed_refs_size) {
		double l = log((double)info->packed_refs_size / 100) / log(1.15);
		if (l > allowed)
			allowed = l;
	}
	return (uint64_t)allowed <= info->loose_refs;
}

void hk_plan_make(const struct hk_info *info, enum hk_strategy strategy, time_t now, struct hk_plan *p)
{
	time_t expire = now - HK_STALE_OBJECTS_GRACE_S;

	memset(p, 0, sizeof(*p));
	if (strategy == HK_EAGER) {
		full_repack(info, expire, p);
		p->prune = !info->is_pool;
		p->prune_expire = expire;
		p->pack_refs = true;
		p->commit_graph = true;
		p->commit_graph_replace = true;
		return;
	}

	heuristical_repack(info, now, expire, p);
	if (!info->is_pool && info->loose_stale_count > HK_LOOSE_OBJECT_LIMIT) {
		p->prune = true;
		p->prune_expire = expire;
	}
	p->pack_refs = refs_need_packing(info);

	/* commit-graphs only hold reachable commits: nothing to write without references */
	if (!info->loose_refs && !info->packed_refs_size)
		return;
	if (p->prune || graph_needs_rewrite(info)) {
		/* pruned commits must leave the graph, or fsck reports it inconsistent */
		p->commit_graph = true;
		p->commit_graph_replace = true;
	} else if (p->repack != HK_REPACK_NONE) {
		p->commit_graph = true;
		p->commit_graph_replace = p->repack == HK_REPACK_FULL_CRUFT && p->cruft_expire != 0;
	}
}
