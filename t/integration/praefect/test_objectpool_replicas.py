"""Object pools through praefect when replicas come and go: GitLab links the origin right after
creating its pool, so the pool is made on every replica of the origin at once; a member placed on a
node where its pool has no replica (set-replication-factor, the reconciler, the rebalancer) brings the
pool along, tracked, instead of a full copy or an untracked one (docs/technical/object-pools.md)."""
import os
import subprocess

import pytest

from praefect_itest import BUILD, Cluster, wait_for
from gitaly_itest import git, make_bare_repo, pb
from test_praefect import create_repo, push, refs

POOL = "@pools/d4/73/d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35.git"


def op():
    return pb("objectpool")


def on_disk(cluster, name, replica_path):
    return os.path.join(cluster.nodes[name].storages[name], replica_path)


def count(path):
    out = dict(l.split(": ") for l in git("count-objects", "-v", cwd=path).splitlines())
    return int(out["count"]) + int(out["in-pack"])


def in_sync(cluster, relative_path, n):
    """The record has `n` replicas, all at its generation, with equal checksums."""
    md = cluster.praefect.metadata(relative_path)
    sums = {cluster.checksum(r.storage, md.replica_path) for r in md.replicas}
    ok = len(md.replicas) == n and len(sums) == 1 and all(r.generation == md.generation for r in md.replicas)
    return md if ok else None


def pooled_origin(cluster, tmp_path, n):
    """origin.git with a big blob on `n` replicas, its pool created and the origin linked at once."""
    create_repo(cluster, "group/origin.git")
    src = make_bare_repo(str(tmp_path / "src.git"), branches=("main", "feature"), tags=("v1",),
                         files={"big.txt": "z" * 100000 + "\n", "README.md": "hi\n"})
    push(cluster, src, "group/origin.git", "--all")
    push(cluster, src, "group/origin.git", "--tags")
    wait_for(lambda: in_sync(cluster, "group/origin.git", n), what="origin on every replica")
    ops = cluster.praefect.stub("ObjectPoolService")
    pool = pb("shared").ObjectPool(repository=cluster.praefect.repo(POOL))
    ops.CreateObjectPool(op().CreateObjectPoolRequest(object_pool=pool,
                                                      origin=cluster.praefect.repo("group/origin.git")), timeout=60)
    # the call itself made the pool on each replica of the origin, no replication job
    pmd = cluster.praefect.metadata(POOL)
    assert sorted((r.storage, r.generation) for r in pmd.replicas) == sorted(
        (r.storage, 0) for r in cluster.praefect.metadata("group/origin.git").replicas)
    # no waiting: GitLab links right away
    ops.LinkRepositoryToObjectPool(op().LinkRepositoryToObjectPoolRequest(
        object_pool=pool, repository=cluster.praefect.repo("group/origin.git")), timeout=60)
    return src


def assert_linked(cluster, name, member_path, pool_path):
    path = on_disk(cluster, name, member_path)
    with open(os.path.join(path, "objects/info/alternates")) as f:
        assert f.read() == "../../../../../" + pool_path[len("@cluster/"):] + "/objects", name
    git("fsck", cwd=on_disk(cluster, name, pool_path))
    git("fsck", cwd=path)


@pytest.mark.parametrize("rf", [0, 3, 2], ids=["three-nodes-no-factor", "factor-3", "factor-2-of-3"])
def test_linking_right_after_creating_the_pool_links_every_replica(tmp_path, rf):
    cluster = Cluster(tmp_path, replication_factor=rf, extra="[reconciliation]\nrebalance_moves = 0\n")
    try:
        n = rf or 3
        src = pooled_origin(cluster, tmp_path, n)
        omd = in_sync(cluster, "group/origin.git", n)
        assert omd, "the link left a replica of the origin behind"
        pmd = in_sync(cluster, POOL, n)
        assert pmd, "the pool is not on every replica at once"
        assert pmd.primary == omd.primary
        assert sorted(r.storage for r in pmd.replicas) == sorted(r.storage for r in omd.replicas)
        assert all(r.assigned for r in pmd.replicas)
        for r in omd.replicas:
            assert_linked(cluster, r.storage, omd.replica_path, pmd.replica_path)
            assert refs(on_disk(cluster, r.storage, omd.replica_path)) == refs(src)
    finally:
        cluster.stop()


def set_rf(cluster, path, rf):
    res = subprocess.run([os.path.join(BUILD, "praefect", "praefect"), "-config", cluster.praefect.config_path,
                          "set-replication-factor", "-virtual-storage", "default", "-relative-path", path,
                          "-replication-factor", str(rf)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_a_member_placed_where_its_pool_is_not_brings_the_pool_along(tmp_path):
    cluster = Cluster(tmp_path, replication_factor=2,
                      extra='[reconciliation]\nscheduling_interval = "1s"\nrebalance_moves = 0\n')
    try:
        src = pooled_origin(cluster, tmp_path, 2)
        omd = cluster.praefect.metadata("group/origin.git")
        pmd = cluster.praefect.metadata(POOL)
        (newcomer,) = set(cluster.nodes) - {r.storage for r in omd.replicas}
        assert newcomer not in {r.storage for r in pmd.replicas}

        assert set_rf(cluster, "group/origin.git", 3) == "current assignments: gitaly-1, gitaly-2, gitaly-3\n"
        omd = wait_for(lambda: in_sync(cluster, "group/origin.git", 3), timeout=60, what="the origin on 3 nodes")
        # the pool is tracked there too, assigned and up to date
        pmd = wait_for(lambda: in_sync(cluster, POOL, 3), timeout=60, what="the pool followed its member")
        assert {r.storage: r.assigned for r in pmd.replicas} == {s: True for s in cluster.nodes}
        assert_linked(cluster, newcomer, omd.replica_path, pmd.replica_path)
        member = on_disk(cluster, newcomer, omd.replica_path)
        assert refs(member) == refs(src)
        # the new replica keeps no copy of what the pool holds
        git("-c", "repack.writeBitmaps=false", "repack", "-adlq", cwd=member)
        assert count(member) == 0
        git("fsck", cwd=member)

        # and the pool there is praefect's: a fetch into the pool reaches it
        work = str(tmp_path / "work")
        git("clone", "-q", src, work)
        git("commit", "-q", "--allow-empty", "-m", "more", cwd=work)
        git("push", "-q", src, "HEAD:refs/heads/main", cwd=work)
        push(cluster, src, "group/origin.git", "main")
        cluster.praefect.stub("ObjectPoolService").FetchIntoObjectPool(op().FetchIntoObjectPoolRequest(
            object_pool=pb("shared").ObjectPool(repository=cluster.praefect.repo(POOL)),
            origin=cluster.praefect.repo("group/origin.git")), timeout=60)
        want = git("rev-parse", "main", cwd=src).strip()
        pool = on_disk(cluster, newcomer, pmd.replica_path)
        assert git("rev-parse", "refs/remotes/origin/heads/main", cwd=pool).strip() == want
        assert in_sync(cluster, POOL, 3)
    finally:
        cluster.stop()
