"""Bundles through praefect: CreateRepositoryFromBundle creates the repository
on every assigned replica, FetchBundle votes, and the replicas end identical."""
import os

import grpc
import pytest

from praefect_itest import wait_for
from gitaly_itest import git, make_bare_repo, pb


def rp():
    return pb("repository")


def stream(repo, data, make, **kw):
    yield make(repository=repo, **kw)
    for i in range(0, len(data), 4000):
        yield make(data=data[i:i + 4000])


def in_sync(cluster, rel):
    md = cluster.praefect.metadata(rel)
    ok = len(md.replicas) == 3 and all(r.generation == md.generation for r in md.replicas)
    return md if ok else None


def checksums(cluster, md):
    return {name: cluster.checksum(name, md.replica_path) for name in cluster.nodes}


def test_bundles_through_praefect_leave_identical_replicas(cluster, tmp_path):
    svc = cluster.praefect.stub("RepositoryService")
    src = make_bare_repo(str(tmp_path / "src.git"), branches=("main", "dev"), tags=("v1",))
    bundle = str(tmp_path / "src.bundle")
    git("--git-dir", src, "bundle", "create", bundle, "--all")
    data = open(bundle, "rb").read()

    svc.CreateRepositoryFromBundle(stream(cluster.praefect.repo("b.git"), data,
                                          rp().CreateRepositoryFromBundleRequest), timeout=30)
    md = wait_for(lambda: in_sync(cluster, "b.git"), what="replicas in sync")
    sums = checksums(cluster, md)
    assert len(set(sums.values())) == 1 and "0" * 40 not in sums.values()

    # a second creation is refused by the router
    with pytest.raises(grpc.RpcError) as e:
        svc.CreateRepositoryFromBundle(stream(cluster.praefect.repo("b.git"), data,
                                              rp().CreateRepositoryFromBundleRequest), timeout=30)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS

    # FetchBundle with new refs: every replica votes and moves one generation, no replication
    work = str(tmp_path / "work")
    git("clone", "-q", src, work)
    git("commit", "-q", "--allow-empty", "-m", "more", cwd=work)
    git("push", "-q", src, "HEAD:refs/heads/more", cwd=work)
    git("--git-dir", src, "bundle", "create", bundle, "--all")
    data = open(bundle, "rb").read()
    svc.FetchBundle(stream(cluster.praefect.repo("b.git"), data, rp().FetchBundleRequest,
                           update_head=True), timeout=30)
    after = cluster.praefect.metadata("b.git")
    assert after.generation == md.generation + 1
    assert all(r.generation == after.generation for r in after.replicas)
    sums2 = checksums(cluster, after)
    assert len(set(sums2.values())) == 1 and sums2 != sums
    for name, node in cluster.nodes.items():
        path = os.path.join(node.storages[name], after.replica_path)
        assert git("--git-dir", path, "rev-parse", "refs/heads/more").strip() == \
            git("--git-dir", src, "rev-parse", "refs/heads/more").strip()

    # CreateBundle through praefect gives a bundle git accepts
    out = b"".join(r.data for r in svc.CreateBundle(rp().CreateBundleRequest(
        repository=cluster.praefect.repo("b.git")), timeout=30))
    with open(str(tmp_path / "out.bundle"), "wb") as f:
        f.write(out)
    git("--git-dir", src, "bundle", "verify", str(tmp_path / "out.bundle"))
