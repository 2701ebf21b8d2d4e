"""Remotes through praefect (docs/technical/remotes.md): FetchRemote and FetchSourceBranch are voted
on by every replica, which stay identical without replication jobs; the RemoteService calls route."""
import base64
import json
import os

import grpc
import pytest

from gitaly_itest import git, make_bare_repo, pb
from helpers_remote import GitHTTP
from praefect_itest import PRAEFECT_TOKEN
from test_praefect import create_repo, push, replicas_in_sync, work_repo


def rpc_error(fn, *args, **kw):
    with pytest.raises(grpc.RpcError) as e:
        fn(*args, **kw)
    return e.value


def in_sync_without_jobs(cluster, rel):
    got = replicas_in_sync(cluster, rel)
    if not got:
        md = cluster.praefect.metadata(rel)
        print(md, {r.storage: cluster.checksum(r.storage, md.replica_path) for r in md.replicas})
    assert got, "replicas differ after the write"
    md, sums = got
    for node in cluster.nodes.values():
        assert "ReplicateRepository" not in node.log()
    return md


def refs_of(cluster, md):
    out = {}
    for r in md.replicas:
        path = os.path.join(cluster.nodes[r.storage].storages[r.storage], md.replica_path)
        out[r.storage] = git("for-each-ref", "--format=%(objectname) %(refname)", cwd=path)
    return out


def test_fetch_remote_through_praefect_keeps_replicas_identical(cluster, tmp_path):
    remotes = str(tmp_path / "remotes")
    os.makedirs(remotes)
    src = make_bare_repo(os.path.join(remotes, "src.git"), branches=("main", "feature"), tags=("v1.0",))
    create_repo(cluster, "fetched.git")
    srv = GitHTTP(remotes, auth="Bearer pr4ef3ct-secret")
    try:
        svc = cluster.praefect.stub("RepositoryService")
        req = pb("repository").FetchRemoteRequest(
            repository=cluster.praefect.repo("fetched.git"), check_tags_changed=True,
            remote_params=pb("repository").Remote(url=srv.url("src.git"),
                                                  http_authorization_header="Bearer pr4ef3ct-secret"))
        assert svc.FetchRemote(req, timeout=60).tags_changed
        md = in_sync_without_jobs(cluster, "fetched.git")
        refs = refs_of(cluster, md)
        assert len(set(refs.values())) == 1
        assert refs[md.primary] == git("for-each-ref", "--format=%(objectname) %(refname)", cwd=src)
        gen = md.generation
        # a second fetch changes nothing and is still agreed on by everyone
        assert not svc.FetchRemote(req, timeout=60).tags_changed
        md = in_sync_without_jobs(cluster, "fetched.git")
        assert md.generation == gen + 1
        # a bad remote fails on every node alike and nobody is outdated
        bad = pb("repository").FetchRemoteRequest(repository=cluster.praefect.repo("fetched.git"),
                                                  remote_params=pb("repository").Remote(url="/dev/null"))
        e = rpc_error(svc.FetchRemote, bad, timeout=60)
        assert e.code() == grpc.StatusCode.INTERNAL and "does not appear to be a git repository" in e.details()
        e = rpc_error(svc.FetchRemote, pb("repository").FetchRemoteRequest(
            repository=cluster.praefect.repo("fetched.git"), remote_params=pb("repository").Remote()), timeout=60)
        assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "blank or empty remote URL")
        in_sync_without_jobs(cluster, "fetched.git")
    finally:
        srv.stop()
    assert "pr4ef3ct-secret" not in cluster.praefect.log()
    for node in cluster.nodes.values():
        assert "pr4ef3ct-secret" not in node.log()


def test_fetch_source_branch_through_praefect(cluster, tmp_path):
    create_repo(cluster, "source.git")
    create_repo(cluster, "target.git")
    push(cluster, work_repo(tmp_path, "w1", branches=("main", "feature"), tags=()), "source.git", "--all")
    push(cluster, work_repo(tmp_path, "w2", branches=("main",), tags=()), "target.git", "--all")
    # GitLab names praefect itself as the source's server
    info = {"default": {"address": "unix:" + cluster.praefect.socket, "token": PRAEFECT_TOKEN}}
    md = [("gitaly-servers", base64.b64encode(json.dumps(info).encode()).decode())]
    svc = cluster.praefect.stub("RepositoryService")
    req = pb("repository").FetchSourceBranchRequest(
        repository=cluster.praefect.repo("target.git"), source_repository=cluster.praefect.repo("source.git"),
        source_branch=b"feature", target_ref=b"refs/merge-requests/7/head")
    assert svc.FetchSourceBranch(req, metadata=md, timeout=60).result
    tmd = in_sync_without_jobs(cluster, "target.git")
    smd = cluster.praefect.metadata("source.git")
    src_path = os.path.join(cluster.nodes[smd.primary].storages[smd.primary], smd.replica_path)
    want = git("rev-parse", "refs/heads/feature", cwd=src_path).strip()
    for r in tmd.replicas:
        path = os.path.join(cluster.nodes[r.storage].storages[r.storage], tmd.replica_path)
        assert git("rev-parse", "refs/merge-requests/7/head", cwd=path).strip() == want
    req.source_branch = b"missing"
    assert not svc.FetchSourceBranch(req, metadata=md, timeout=60).result


def test_remote_service_routes_through_praefect(cluster, tmp_path):
    remotes = str(tmp_path / "remotes")
    os.makedirs(remotes)
    src = make_bare_repo(os.path.join(remotes, "src.git"), branches=("main", "feature"), tags=("v1",))
    create_repo(cluster, "mirrored.git")
    push(cluster, work_repo(tmp_path, "w", branches=("main", "feature"), tags=("v2",)), "mirrored.git", "--all")
    rs = cluster.praefect.stub("RemoteService")
    R = pb("remote")
    # storage scoped: the virtual storage is rewritten to a node's
    assert rs.FindRemoteRepository(R.FindRemoteRepositoryRequest(remote=src, storage_name="default")).exists
    assert not rs.FindRemoteRepository(R.FindRemoteRepositoryRequest(remote=src + "x", storage_name="default")).exists
    e = rpc_error(rs.FindRemoteRepository, R.FindRemoteRepositoryRequest(remote=src, storage_name="nope"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rs.FindRemoteRootRef(R.FindRemoteRootRefRequest(repository=cluster.praefect.repo("mirrored.git"),
                                                          remote_url=src)).ref == "feature"
    # UpdateRemoteMirror reads the repository on one replica and pushes to the mirror
    dst = os.path.join(remotes, "mirror.git")
    git("init", "-q", "--bare", dst)
    req = R.UpdateRemoteMirrorRequest(repository=cluster.praefect.repo("mirrored.git"),
                                      remote=R.UpdateRemoteMirrorRequest.Remote(url=dst))
    assert list(rs.UpdateRemoteMirror(iter([req]), timeout=60).divergent_refs) == []
    md = cluster.praefect.metadata("mirrored.git")
    primary = os.path.join(cluster.nodes[md.primary].storages[md.primary], md.replica_path)
    fmt = ("for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/", "refs/tags/")
    assert git(*fmt, cwd=dst) == git(*fmt, cwd=primary)
