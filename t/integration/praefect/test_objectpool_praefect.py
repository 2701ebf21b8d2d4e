"""Forks and object pools through praefect, as GitLab drives them: a pool is a repository with
replicas of its own; every replica of a member links to the pool's replica on its node; the
records answer GetObjectPool and DeleteObjectPool; a repaired replica of a member joins the pool."""
import base64
import json
import os
import shutil

import grpc
import pytest

from praefect_itest import PRAEFECT_TOKEN, wait_for
from gitaly_itest import git, make_bare_repo, pb
from test_praefect import create_repo, gitaly_ssh_env, push, refs, replicas_in_sync

POOL = "@pools/6b/86/6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b.git"


def op():
    return pb("objectpool")


def pool_msg(cluster):
    return pb("shared").ObjectPool(repository=cluster.praefect.repo(POOL))


def servers_md(cluster):
    info = {"default": {"address": "unix:" + cluster.praefect.socket, "token": PRAEFECT_TOKEN}}
    return [("gitaly-servers", base64.b64encode(json.dumps(info).encode()).decode())]


def on_disk(cluster, name, replica_path):
    return os.path.join(cluster.nodes[name].storages[name], replica_path)


def count(path):
    out = dict(l.split(": ") for l in git("count-objects", "-v", cwd=path).splitlines())
    return int(out["count"]) + int(out["in-pack"])


def pooled_fork(cluster, tmp_path):
    """origin.git with a big blob, its pool on every node, origin and fork.git linked to it."""
    create_repo(cluster, "group/origin.git")
    src = make_bare_repo(str(tmp_path / "src.git"), branches=("main", "feature"), tags=("v1",),
                         files={"big.txt": "z" * 100000 + "\n", "README.md": "hi\n"})
    push(cluster, src, "group/origin.git", "--all")
    push(cluster, src, "group/origin.git", "--tags")
    wait_for(lambda: replicas_in_sync(cluster, "group/origin.git"), what="origin everywhere")
    ops = cluster.praefect.stub("ObjectPoolService")
    ops.CreateObjectPool(op().CreateObjectPoolRequest(object_pool=pool_msg(cluster),
                                                      origin=cluster.praefect.repo("group/origin.git")), timeout=60)
    # as upstream, the pool is created on the primary; the other replicas follow by replication
    wait_for(lambda: replicas_in_sync(cluster, POOL), what="the pool everywhere")
    ops.LinkRepositoryToObjectPool(op().LinkRepositoryToObjectPoolRequest(
        object_pool=pool_msg(cluster), repository=cluster.praefect.repo("group/origin.git")), timeout=60)
    cluster.praefect.stub("RepositoryService").CreateFork(pb("repository").CreateForkRequest(
        repository=cluster.praefect.repo("group/fork.git"), source_repository=cluster.praefect.repo("group/origin.git")),
        metadata=servers_md(cluster), timeout=60)
    ops.LinkRepositoryToObjectPool(op().LinkRepositoryToObjectPoolRequest(
        object_pool=pool_msg(cluster), repository=cluster.praefect.repo("group/fork.git")), timeout=60)
    return src


def assert_shares_the_pool(cluster, name, fork_path, pool_path):
    path = on_disk(cluster, name, fork_path)
    alt = open(os.path.join(path, "objects/info/alternates")).read()
    # relative, from objects/ up to @cluster/ and down to the pool's replica on the same node
    assert alt == "../../../../../" + pool_path[len("@cluster/"):] + "/objects", name
    assert os.path.isdir(os.path.join(on_disk(cluster, name, pool_path), "objects"))
    git("fsck", "--connectivity-only", cwd=path)


def test_a_fork_shares_its_objects_through_the_pool_on_every_replica(cluster, tmp_path):
    src = pooled_fork(cluster, tmp_path)
    pool_md = cluster.praefect.metadata(POOL)
    fork_md = cluster.praefect.metadata("group/fork.git")
    assert pool_md.replica_path.startswith("@cluster/pools/")
    assert len(pool_md.replicas) == 3
    for name in cluster.nodes:
        fork = on_disk(cluster, name, fork_md.replica_path)
        assert refs(fork) == refs(src)
        assert_shares_the_pool(cluster, name, fork_md.replica_path, pool_md.replica_path)
        # what housekeeping does for a member: keep only what the pool lacks (nothing here)
        git("-c", "repack.writeBitmaps=false", "repack", "-adlq", cwd=fork)
        assert count(fork) == 0, name
        git("fsck", cwd=fork)
    # GetObjectPool names the pool as the client knows it
    got = cluster.praefect.stub("ObjectPoolService").GetObjectPool(
        op().GetObjectPoolRequest(repository=cluster.praefect.repo("group/fork.git")), timeout=30)
    assert (got.object_pool.repository.storage_name, got.object_pool.repository.relative_path) == ("default", POOL)
    plain = cluster.praefect.stub("ObjectPoolService").GetObjectPool(
        op().GetObjectPoolRequest(repository=cluster.praefect.repo(POOL)), timeout=30)
    assert not plain.HasField("object_pool")
    with pytest.raises(grpc.RpcError) as e:
        cluster.praefect.stub("ObjectPoolService").GetObjectPool(
            op().GetObjectPoolRequest(repository=cluster.praefect.repo("missing.git")), timeout=30)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_fetch_into_the_pool_updates_every_pool_replica(cluster, tmp_path):
    src = pooled_fork(cluster, tmp_path)
    work = str(tmp_path / "work")
    git("clone", "-q", src, work)
    git("commit", "-q", "--allow-empty", "-m", "new on main", cwd=work)
    git("push", "-q", src, "HEAD:refs/heads/main", cwd=work)
    push(cluster, src, "group/origin.git", "main")
    cluster.praefect.stub("ObjectPoolService").FetchIntoObjectPool(op().FetchIntoObjectPoolRequest(
        object_pool=pool_msg(cluster), origin=cluster.praefect.repo("group/origin.git")), timeout=60)
    pool_md = cluster.praefect.metadata(POOL)
    want = git("rev-parse", "main", cwd=src).strip()
    for name in cluster.nodes:
        pool = on_disk(cluster, name, pool_md.replica_path)
        assert git("rev-parse", "refs/remotes/origin/heads/main", cwd=pool).strip() == want, name


def test_the_fork_survives_the_deletion_of_its_source_and_disconnects_before_the_pool_goes(cluster, tmp_path):
    src = pooled_fork(cluster, tmp_path)
    fork_md = cluster.praefect.metadata("group/fork.git")
    pool_md = cluster.praefect.metadata(POOL)
    cluster.praefect.stub("RepositoryService").RemoveRepository(pb("repository").RemoveRepositoryRequest(
        repository=cluster.praefect.repo("group/origin.git")), timeout=30)
    for name in cluster.nodes:
        fork = on_disk(cluster, name, fork_md.replica_path)
        git("fsck", cwd=fork)
        assert refs(fork) == refs(src)
    # as upstream promises, the pool keeps the objects: the fork is served whole through praefect
    clone = str(tmp_path / "fork-clone.git")
    git("clone", "-q", "--mirror", "ssh://gitaly/repo.git", clone,
        env=gitaly_ssh_env(cluster.praefect, "group/fork.git", "upload-pack"))
    git("fsck", cwd=clone)
    assert refs(clone) == refs(src)
    assert "z" * 1000 in git("show", "main:big.txt", cwd=clone)
    # the fork leaves the pool: self-contained on every replica, then the pool can go
    cluster.praefect.stub("ObjectPoolService").DisconnectGitAlternates(op().DisconnectGitAlternatesRequest(
        repository=cluster.praefect.repo("group/fork.git")), timeout=60)
    ops = cluster.praefect.stub("ObjectPoolService")
    ops.DeleteObjectPool(op().DeleteObjectPoolRequest(object_pool=pool_msg(cluster)), timeout=30)
    for name in cluster.nodes:
        assert not os.path.exists(on_disk(cluster, name, pool_md.replica_path)), name
        fork = on_disk(cluster, name, fork_md.replica_path)
        assert not os.path.exists(os.path.join(fork, "objects/info/alternates"))
        git("fsck", cwd=fork)
    assert not cluster.praefect.stub("RepositoryService").RepositoryExists(
        pb("repository").RepositoryExistsRequest(repository=cluster.praefect.repo(POOL)), timeout=10).exists
    # deleting it again is fine; a path that is no Rails pool is refused
    ops.DeleteObjectPool(op().DeleteObjectPoolRequest(object_pool=pool_msg(cluster)), timeout=30)
    for bad, msg in ((pb("shared").ObjectPool(repository=cluster.praefect.repo("group/fork.git")),
                      "invalid object pool directory"), (None, "no object pool repository")):
        with pytest.raises(grpc.RpcError) as e:
            ops.DeleteObjectPool(op().DeleteObjectPoolRequest(object_pool=bad), timeout=30)
        assert (e.value.code(), e.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, msg)
    assert cluster.praefect.stub("RepositoryService").RepositoryExists(
        pb("repository").RepositoryExistsRequest(repository=cluster.praefect.repo("group/fork.git")), timeout=10).exists


def test_a_repaired_replica_of_a_fork_links_to_the_pool_on_its_node(cluster, tmp_path):
    src = pooled_fork(cluster, tmp_path)
    fork_md = cluster.praefect.metadata("group/fork.git")
    pool_md = cluster.praefect.metadata(POOL)
    # gitaly-3 misses a push, and its replica of the fork and of the pool are lost meanwhile
    victim = "gitaly-3"
    cluster.nodes[victim].stop()
    # a push before praefect saw it go could still pick it as a voter and fail
    wait_for(lambda: not {r.storage: r.healthy for r in cluster.praefect.metadata("group/fork.git").replicas}[victim],
             what="gitaly-3 marked unhealthy")
    work = str(tmp_path / "work")
    git("clone", "-q", src, work)
    git("commit", "-q", "--allow-empty", "-m", "fork only", cwd=work)
    git("push", "-q", src, "HEAD:refs/heads/main", cwd=work)
    push(cluster, src, "group/fork.git", "main")
    shutil.rmtree(on_disk(cluster, victim, fork_md.replica_path))
    shutil.rmtree(on_disk(cluster, victim, pool_md.replica_path))
    cluster.nodes[victim].start()
    wait_for(lambda: replicas_in_sync(cluster, "group/fork.git"), timeout=60, what="the fork repaired")
    fork = on_disk(cluster, victim, fork_md.replica_path)
    assert refs(fork) == refs(on_disk(cluster, "gitaly-1", fork_md.replica_path))
    assert_shares_the_pool(cluster, victim, fork_md.replica_path, pool_md.replica_path)
    # the replica keeps only what the pool lacks: the new commit and its tree
    assert count(fork) <= 3
    git("fsck", cwd=fork)


def test_apply_gitattributes_through_praefect_is_voted_onto_every_replica(cluster, tmp_path):
    create_repo(cluster, "group/attrs.git")
    src = make_bare_repo(str(tmp_path / "attrs.git"), files={".gitattributes": "*.bin -diff\n", "a": "a\n"})
    push(cluster, src, "group/attrs.git", "--all")
    wait_for(lambda: replicas_in_sync(cluster, "group/attrs.git"), what="pushed everywhere")
    before = cluster.praefect.metadata("group/attrs.git").generation
    cluster.praefect.stub("RepositoryService").ApplyGitattributes(pb("repository").ApplyGitattributesRequest(
        repository=cluster.praefect.repo("group/attrs.git"), revision=b"main"), timeout=30)
    md = cluster.praefect.metadata("group/attrs.git")
    assert md.generation == before + 1
    for r in md.replicas:
        assert r.generation == md.generation, r.storage
        with open(os.path.join(on_disk(cluster, r.storage, md.replica_path), "info", "attributes")) as f:
            assert f.read() == "*.bin -diff\n"


def test_a_pool_starts_on_its_origins_primary_so_linking_right_away_works(tmp_path):
    """As upstream routes a creation with an additional repository: the pool goes to the origin's
    nodes, its primary is the origin's primary, so GitLab's link right after the creation finds
    the pool there (with one replica each, a pool on another node could not be linked at all)."""
    import hashlib
    from praefect_itest import Cluster
    # no rebalancing: it would move origins (not their pools) between nodes under the test
    cluster = Cluster(tmp_path, replication_factor=1, extra="[reconciliation]\nrebalance_moves = 0\n")
    try:
        ops = cluster.praefect.stub("ObjectPoolService")
        for i in range(1, 7):
            origin = "spread/origin-%d.git" % i
            h = hashlib.sha256(str(100 + i).encode()).hexdigest()
            pool = "@pools/%s/%s/%s.git" % (h[:2], h[2:4], h)
            create_repo(cluster, origin)
            src = make_bare_repo(str(tmp_path / ("src%d.git" % i)), branches=("main",), tags=(),
                                 files={"f.txt": "%d\n" % i})
            push(cluster, src, origin, "--all")
            pool_repo = pb("shared").ObjectPool(repository=cluster.praefect.repo(pool))
            ops.CreateObjectPool(op().CreateObjectPoolRequest(object_pool=pool_repo,
                                                              origin=cluster.praefect.repo(origin)), timeout=60)
            ops.LinkRepositoryToObjectPool(op().LinkRepositoryToObjectPoolRequest(
                object_pool=pool_repo, repository=cluster.praefect.repo(origin)), timeout=60)
            omd, pmd = cluster.praefect.metadata(origin), cluster.praefect.metadata(pool)
            assert pmd.primary == omd.primary, (origin, pmd.primary, omd.primary)
            assert [r.storage for r in pmd.replicas] == [omd.primary]
            assert_shares_the_pool(cluster, omd.primary, omd.replica_path, pmd.replica_path)
    finally:
        cluster.stop()
