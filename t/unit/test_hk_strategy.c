/* Unit tests for gitaly/housekeeping/strategy.c: upstream's heuristics, rule by rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "housekeeping/housekeeping.h"

#define NOW ((time_t)1800000000)
#define DAY (24 * 3600)

/* A repository in good shape: one pack tracked by the midx, a recent full repack, a full graph. */
static struct hk_info good(void)
{
	struct hk_info i;
	memset(&i, 0, sizeof(i));
	i.pack_count = 1;
	i.pack_size = 1 << 20;
	i.midx_exists = true;
	i.midx_pack_count = 1;
	i.last_full_repack = NOW - DAY;
	i.loose_refs = 3;
	i.commit_graph_exists = true;
	i.commit_graph_chain = 1;
	i.commit_graph_bloom = i.commit_graph_generation = true;
	return i;
}

static struct hk_plan plan(const struct hk_info *i, enum hk_strategy s)
{
	struct hk_plan p;
	hk_plan_make(i, s, NOW, &p);
	return p;
}

static void test_a_good_repository_needs_nothing(void **state)
{
	struct hk_info i = good();
	struct hk_plan p = plan(&i, HK_HEURISTICAL);
	(void)state;
	assert_int_equal(p.repack, HK_REPACK_NONE);
	assert_false(p.prune);
	assert_false(p.pack_refs);
	assert_false(p.commit_graph);
}

static void test_an_empty_repository_needs_nothing(void **state)
{
	struct hk_info i;
	struct hk_plan p;
	(void)state;
	memset(&i, 0, sizeof(i));
	p = plan(&i, HK_HEURISTICAL);
	assert_int_equal(p.repack, HK_REPACK_NONE);
	assert_false(p.commit_graph);   /* no references: no graph */
}

static void test_full_repack_rules(void **state)
{
	struct hk_info i = good();
	struct hk_plan p;
	(void)state;
	/* two packs, last full repack six days ago: full with cruft, bitmap, midx */
	i.pack_count = 2;
	i.last_full_repack = NOW - 6 * DAY;
	p = plan(&i, HK_HEURISTICAL);
	assert_int_equal(p.repack, HK_REPACK_FULL_CRUFT);
	assert_true(p.write_bitmap);
	assert_true(p.write_midx);
	assert_int_equal(p.cruft_expire, NOW - 10 * DAY);
	assert_true(p.commit_graph);
	assert_true(p.commit_graph_replace);
	/* within the cooldown: no full repack; the midx tracks both packs */
	i.last_full_repack = NOW - 4 * DAY;
	i.midx_pack_count = 2;
	assert_int_equal(plan(&i, HK_HEURISTICAL).repack, HK_REPACK_NONE);
	/* a cruft pack does not count towards "more than one" */
	i.last_full_repack = NOW - 6 * DAY;
	i.cruft_count = 1;
	assert_int_equal(plan(&i, HK_HEURISTICAL).repack, HK_REPACK_NONE);
	/* alternates newer than the last full repack: full, without bitmap */
	i = good();
	i.alternates_exist = true;
	i.nr_alternates = 1;
	i.alternates_mtime = NOW - 10;
	p = plan(&i, HK_HEURISTICAL);
	assert_int_equal(p.repack, HK_REPACK_FULL_CRUFT);
	assert_false(p.write_bitmap);
	/* a pool keeps its unreachable objects */
	i.is_pool = true;
	p = plan(&i, HK_HEURISTICAL);
	assert_int_equal(p.repack, HK_REPACK_FULL_UNREACHABLE);
	assert_int_equal(p.cruft_expire, 0);
}

static void test_geometric_rules(void **state)
{
	struct hk_info i = good();
	struct hk_plan p;
	(void)state;
	i.midx_exists = false;
	p = plan(&i, HK_HEURISTICAL);
	assert_int_equal(p.repack, HK_REPACK_GEOMETRIC);
	assert_true(p.write_midx);
	assert_true(p.commit_graph);
	assert_false(p.commit_graph_replace);
	/* below 10 MiB two untracked packs are fine, three are not */
	i = good();
	i.last_full_repack = NOW;
	i.pack_count = 3;
	i.midx_pack_count = 1;
	assert_int_equal(plan(&i, HK_HEURISTICAL).repack, HK_REPACK_NONE);
	i.pack_count = 4;
	assert_int_equal(plan(&i, HK_HEURISTICAL).repack, HK_REPACK_GEOMETRIC);
	/* at 100 MiB seven are allowed: log(100)/log(1.8) = 7.8 */
	i.pack_size = 100ull << 20;
	i.pack_count = 8;
	assert_int_equal(plan(&i, HK_HEURISTICAL).repack, HK_REPACK_NONE);
	i.pack_count = 9;
	assert_int_equal(plan(&i, HK_HEURISTICAL).repack, HK_REPACK_GEOMETRIC);
}

static void test_loose_objects_and_pruning(void **state)
{
	struct hk_info i = good();
	struct hk_plan p;
	(void)state;
	i.loose_count = 1024;
	assert_int_equal(plan(&i, HK_HEURISTICAL).repack, HK_REPACK_NONE);
	i.loose_count = 1025;
	p = plan(&i, HK_HEURISTICAL);
	assert_int_equal(p.repack, HK_REPACK_INCREMENTAL);
	assert_false(p.write_midx);
	assert_false(p.write_bitmap);
	assert_false(p.prune);
	i.loose_stale_count = 1025;
	p = plan(&i, HK_HEURISTICAL);
	assert_true(p.prune);
	assert_int_equal(p.prune_expire, NOW - 10 * DAY);
	assert_true(p.commit_graph_replace);
	i.is_pool = true;
	assert_false(plan(&i, HK_HEURISTICAL).prune);
}

static void test_reference_packing(void **state)
{
	struct hk_info i = good();
	(void)state;
	i.loose_refs = 15;
	assert_false(plan(&i, HK_HEURISTICAL).pack_refs);
	i.loose_refs = 16;
	assert_true(plan(&i, HK_HEURISTICAL).pack_refs);
	/* 1 MB of packed refs allows log(10000)/log(1.15) = 65.9 loose ones */
	i.packed_refs_size = 1000000;
	i.loose_refs = 64;
	assert_false(plan(&i, HK_HEURISTICAL).pack_refs);
	i.loose_refs = 65;
	assert_true(plan(&i, HK_HEURISTICAL).pack_refs);
}

static void test_commit_graph_rewrites(void **state)
{
	struct hk_info i = good();
	struct hk_plan p;
	(void)state;
	i.commit_graph_bloom = false;
	p = plan(&i, HK_HEURISTICAL);
	assert_true(p.commit_graph);
	assert_true(p.commit_graph_replace);
	i = good();
	i.commit_graph_chain = 0;   /* monolithic */
	assert_true(plan(&i, HK_HEURISTICAL).commit_graph_replace);
}

static void test_eager_does_everything(void **state)
{
	struct hk_info i = good();
	struct hk_plan p = plan(&i, HK_EAGER);
	(void)state;
	assert_int_equal(p.repack, HK_REPACK_FULL_CRUFT);
	assert_true(p.prune);
	assert_true(p.pack_refs);
	assert_true(p.commit_graph);
	assert_true(p.commit_graph_replace);
	i.is_pool = true;
	p = plan(&i, HK_EAGER);
	assert_int_equal(p.repack, HK_REPACK_FULL_UNREACHABLE);
	assert_false(p.prune);
}

static void test_pool_paths(void **state)
{
	(void)state;
	assert_true(hk_is_pool_path("@pools/ab/cd/abcd" "000000000000000000000000000000000000000000000000000000000000"
				    ".git"));
	assert_false(hk_is_pool_path("@pools/ab/cd/abce" "000000000000000000000000000000000000000000000000000000000000"
				     ".git"));
	assert_true(hk_is_pool_path("@cluster/pools/ab/cd/123"));
	assert_true(hk_is_pool_path("prefix/@cluster/pools/ab/cd/123"));
	assert_false(hk_is_pool_path("@cluster/pools/ab/cd/"));
	assert_false(hk_is_pool_path("@cluster/pools/ab/cd/12x"));
	assert_false(hk_is_pool_path("group/project.git"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_good_repository_needs_nothing),
		cmocka_unit_test(test_an_empty_repository_needs_nothing),
		cmocka_unit_test(test_full_repack_rules),
		cmocka_unit_test(test_geometric_rules),
		cmocka_unit_test(test_loose_objects_and_pruning),
		cmocka_unit_test(test_reference_packing),
		cmocka_unit_test(test_commit_graph_rewrites),
		cmocka_unit_test(test_eager_does_everything),
		cmocka_unit_test(test_pool_paths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
