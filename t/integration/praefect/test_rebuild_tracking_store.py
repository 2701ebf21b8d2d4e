"""praefect rebuild-tracking-store (docs/technical/recovery.md): with praefect stopped and its
tracking store lost, the records beside every replica (gitaly-cluster.json) bring back every
repository, pools included, with its replica path, generations and assignments; a dry run writes
nothing; -apply refuses a store that already tracks repositories unless -force; conflicting
records are reported and skipped."""
import json
import os
import re
import subprocess

import pytest

from praefect_itest import BUILD, wait_for
from gitaly_itest import git
from test_praefect import create_repo, push, replicas_in_sync, work_repo
from test_failover import commit_on
from test_objectpool_praefect import POOL, assert_shares_the_pool, pooled_fork, op, pool_msg
from test_recover import infos_match_store

pytestmark = pytest.mark.xdist_group("timing")

PLAIN = "group/plain.git"
LAGGING = "group/lagging.git"


def rebuild(cluster, *args):
    return subprocess.run([os.path.join(BUILD, "praefect", "praefect"), "-config", cluster.praefect.config_path,
                           "rebuild-tracking-store", *args], capture_output=True, text=True, timeout=120)


def snapshot(cluster, rel):
    md = cluster.praefect.metadata(rel)
    return {"id": md.repository_id, "replica_path": md.replica_path, "generation": md.generation,
            "primary": md.primary,
            "replicas": {r.storage: (r.generation, r.assigned) for r in md.replicas}}


def lose_the_store(cluster):
    if cluster.praefect.store_kind() == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(cluster.praefect.db + suffix):
                os.unlink(cluster.praefect.db + suffix)
    else:
        cluster.praefect.sql("TRUNCATE repositories, storage_repositories, repository_assignments, "
                             "replication_queue, replication_queue_job_lock, replication_queue_lock CASCADE")


def store_is_empty(cluster):
    """Nothing written since lose_the_store(): no SQLite file at all, no PostgreSQL rows."""
    if cluster.praefect.store_kind() == "sqlite":
        return not os.path.exists(cluster.praefect.db)
    return cluster.praefect.sql("SELECT count(*) FROM repositories") == [("0",)]


def tracked(cluster):
    """What praefect serves once started on the rebuilt store, read through its own API."""
    return {rel: snapshot(cluster, rel) for rel in (PLAIN, LAGGING, "group/origin.git", "group/fork.git", POOL)}


@pytest.mark.both_stores
def test_a_lost_store_is_rebuilt_from_the_nodes(cluster, tmp_path):
    create_repo(cluster, PLAIN)
    src = work_repo(tmp_path, name="plain")
    push(cluster, src, PLAIN, "--all")
    # PLAIN's primary is not the first node: a rebuild must take it from the records, not the node order
    first = next(iter(cluster.nodes))
    if cluster.praefect.metadata(PLAIN).primary == first:
        cluster.nodes[first].stop()
        wait_for(lambda: not {r.storage: r.healthy for r in cluster.praefect.metadata(PLAIN).replicas}[first],
                 what="%s marked unhealthy" % first)
        git("tag", "failover", "main", cwd=src)
        push(cluster, src, PLAIN, "refs/tags/failover")
        cluster.nodes[first].start()
        wait_for(lambda: {r.storage: r.healthy for r in cluster.praefect.metadata(PLAIN).replicas}[first],
                 what="%s healthy again" % first)
        assert cluster.praefect.metadata(PLAIN).primary != first
    pooled_fork(cluster, tmp_path)
    create_repo(cluster, LAGGING)
    lsrc = work_repo(tmp_path, name="lsrc", branches=("main",), tags=())
    push(cluster, lsrc, LAGGING, "main")
    for rel in (PLAIN, LAGGING, "group/origin.git", "group/fork.git", POOL):
        wait_for(lambda: replicas_in_sync(cluster, rel), timeout=60, what="%s everywhere" % rel)
        wait_for(lambda: infos_match_store(cluster, rel), what="records of %s" % rel)
    # one secondary misses a push of LAGGING and stays behind
    md = cluster.praefect.metadata(LAGGING)
    behind = next(r.storage for r in md.replicas if r.storage != md.primary)
    cluster.nodes[behind].stop()
    wait_for(lambda: not {r.storage: r.healthy for r in cluster.praefect.metadata(LAGGING).replicas}[behind],
             what="%s marked unhealthy" % behind)
    commit_on(lsrc, 1)
    push(cluster, lsrc, LAGGING, "main")
    others = [r.storage for r in md.replicas if r.storage != behind]
    wait_for(lambda: (lambda m: m if m and m.generation > md.generation else None)(
        infos_match_store(cluster, LAGGING, others)), what="records of the replicas that voted")
    before = tracked(cluster)
    assert before[LAGGING]["replicas"][behind][0] < before[LAGGING]["generation"]

    cluster.praefect.stop()
    cluster.nodes[behind].start()
    lose_the_store(cluster)

    # dry run: everything printed, nothing written
    r = rebuild(cluster)
    assert r.returncode == 0, r.stderr
    assert "Dry run: 5 repositories found, nothing written. Run with -apply" in r.stdout
    for rel, want in before.items():
        assert 'Relative Path: "%s"\nReplica Path: "%s"\n' % (rel, want["replica_path"]) in r.stdout
    assert "behind by 1 changes" in r.stdout
    assert "  Assigned: true (no assignments recorded)\n" in r.stdout  # no replication factor: every node is
    assert "Conflicts" not in r.stdout and "Untracked" not in r.stdout
    r = rebuild(cluster, "-apply")
    assert r.returncode == 0, (r.stdout, r.stderr)  # the dry run left the store empty
    assert "Recorded 5 repositories in the tracking store." in r.stdout

    # the store tracks repositories now: a second -apply refuses, -force merges and reports nothing new
    r = rebuild(cluster, "-apply")
    assert r.returncode == 1 and "already tracks 5 repositories: refusing" in r.stderr, r.stderr
    r = rebuild(cluster, "-apply", "-force")
    assert r.returncode == 0, r.stderr
    assert "Recorded 0 repositories in the tracking store, 5 already tracked left alone." in r.stdout
    assert "differs" not in r.stdout

    cluster.praefect.start()
    after = wait_for(lambda: tracked(cluster), what="praefect serving the rebuilt store")
    for rel in before:
        assert after[rel] == before[rel], rel
    md = cluster.praefect.metadata(LAGGING)
    assert md.primary != behind and md.primary in others

    # the pool and its members came back together
    got = cluster.praefect.stub("ObjectPoolService").GetObjectPool(
        op().GetObjectPoolRequest(repository=cluster.praefect.repo("group/fork.git")), timeout=10)
    assert got.object_pool.repository.relative_path == POOL
    pool_md = cluster.praefect.metadata(POOL)
    fork_md = cluster.praefect.metadata("group/fork.git")
    for name in cluster.nodes:
        assert_shares_the_pool(cluster, name, fork_md.replica_path, pool_md.replica_path)

    # reads and pushes work; the replica left behind is repaired
    clone = str(tmp_path / "clone")
    from test_praefect import gitaly_ssh_env
    git("clone", "--bare", "ssh://gitaly/repo.git", clone, env=gitaly_ssh_env(cluster.praefect, PLAIN, "upload-pack"))
    assert git("rev-parse", "main", cwd=clone) == git("rev-parse", "main", cwd=src)
    commit_on(src, 2)
    push(cluster, src, PLAIN, "main")
    wait_for(lambda: replicas_in_sync(cluster, PLAIN), timeout=60, what="the push everywhere")
    wait_for(lambda: replicas_in_sync(cluster, LAGGING), timeout=60, what="the lagging replica repaired")
    assert pool_msg(cluster).repository.relative_path == POOL


def test_conflicting_and_missing_records_are_reported_and_skipped(cluster, tmp_path):
    for rel in ("c/one.git", "c/two.git", "c/three.git"):
        create_repo(cluster, rel)
        wait_for(lambda: infos_match_store(cluster, rel), what="records of %s" % rel)
    one, two, three = (cluster.praefect.metadata(rel) for rel in ("c/one.git", "c/two.git", "c/three.git"))
    r = rebuild(cluster, "-apply", "-force")
    assert r.returncode == 1 and "praefect is running" in r.stderr, (r.stdout, r.stderr)
    cluster.praefect.stop()

    # on gitaly-2, two.git's replica claims one.git's relative path under its own id
    path = os.path.join(cluster.nodes["gitaly-2"].storages["gitaly-2"], two.replica_path, "gitaly-cluster.json")
    with open(path) as f:
        info = json.load(f)
    info["relative_path"] = "c/one.git"
    with open(path, "w") as f:
        json.dump(info, f)
    # three.git's replica on gitaly-3 lost its record
    lost = os.path.join(cluster.nodes["gitaly-3"].storages["gitaly-3"], three.replica_path, "gitaly-cluster.json")
    with open(lost) as f:
        lost_record = f.read()
    os.unlink(lost)

    r = rebuild(cluster, "-virtual-storage", "default")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Conflicts, skipped:" in r.stdout
    assert 'relative path "c/one.git" claimed by two repository ids: %d on "gitaly-1", %d on "gitaly-2"' % (
        one.repository_id, two.repository_id) in r.stdout
    assert 'repository id %d at two relative paths' % two.repository_id in r.stdout
    assert 'Relative Path: "c/one.git"' not in r.stdout and 'Relative Path: "c/two.git"' not in r.stdout
    # three.git is recorded from the replicas that have a record; the other is untracked
    assert 'Relative Path: "c/three.git"' in r.stdout
    assert json.dumps({"relative_path": three.replica_path, "storage": "gitaly-3", "virtual_storage": "default"},
                      separators=(",", ":"), sort_keys=True) in r.stdout
    assert "Dry run: 1 repositories found" in r.stdout

    # -apply records what is not in conflict; the exit code still says that some were skipped
    lose_the_store(cluster)
    r = rebuild(cluster, "-apply")
    assert r.returncode == 2 and "Recorded 1 repositories" in r.stdout, (r.stdout, r.stderr)

    # the record comes back: -force leaves the tracked repository alone and says how it differs
    with open(lost, "w") as f:
        f.write(lost_record)
    r = rebuild(cluster, "-apply", "-force")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert 'Already tracked, left alone: "c/three.git"' in r.stdout
    assert 'differs: replica on "gitaly-3": the store has generation -1, the disk 0' in r.stdout
    assert "Recorded 0 repositories in the tracking store, 1 already tracked left alone." in r.stdout

    r = rebuild(cluster, "-virtual-storage", "nope")
    assert r.returncode == 1 and 'virtual storage "nope" not found' in r.stderr
    r = rebuild(cluster, "-force")
    assert r.returncode == 1 and "-force only goes with -apply" in r.stderr


def test_assignments_come_back_and_a_node_that_cannot_be_walked_stops_the_rebuild(tmp_path):
    from praefect_itest import Cluster
    cluster = Cluster(tmp_path, replication_factor=2)
    try:
        rels = ("rf/a.git", "rf/b.git", "rf/c.git")
        for rel in rels:
            create_repo(cluster, rel)
            wait_for(lambda: infos_match_store(cluster, rel), what="records of %s" % rel)
        # settled: every assigned replica made and its record written (a failover under load can
        # assign a new primary that gets its replica by replication)
        settled = lambda: all(  # noqa: E731
            (lambda m: m and all(r.generation == m.generation for r in m.replicas))(infos_match_store(cluster, rel))
            for rel in rels)
        wait_for(settled, timeout=60, what="replicas settled")
        before = {rel: snapshot(cluster, rel) for rel in rels}
        for want in before.values():
            assert len(want["replicas"]) >= 2 and all(a for _, a in want["replicas"].values()), before
        cluster.praefect.stop()
        lose_the_store(cluster)

        cluster.nodes["gitaly-3"].stop()
        r = rebuild(cluster, "-apply")
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert 'storage "gitaly-3" of "default" cannot be walked' in r.stderr
        assert "1 storage(s) could not be walked: nothing can be rebuilt" in r.stderr
        assert store_is_empty(cluster)  # nothing was written, not even an empty store
        cluster.nodes["gitaly-3"].start()

        r = rebuild(cluster, "-apply")
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert r.stdout.count("  Assigned: true\n") == sum(len(w["replicas"]) for w in before.values())
        cluster.praefect.start()
        after = wait_for(lambda: {rel: snapshot(cluster, rel) for rel in rels}, what="the rebuilt store served")
        assert after == before
    finally:
        cluster.stop()
