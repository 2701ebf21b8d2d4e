"""ReplicateRepository between two real gitaly nodes (docs/technical/gitaly-repository.md): creation from a snapshot,
then incremental updates of refs, objects, config, attributes, HEAD and custom hooks."""
import base64
import json
import os

import grpc
import pytest

from gitaly_itest import BUILD, git, make_bare_repo, pb

REL = "@cluster/repositories/6b/86/1"

needs_gitaly_ssh = pytest.mark.skipif(not os.path.exists(os.path.join(BUILD, "gitaly-ssh", "gitaly-ssh")),
                                      reason="gitaly-ssh is not built")


@pytest.fixture
def pair(make_gitaly):
    a = make_gitaly("a", storages=("gitaly-1",))
    b = make_gitaly("b", storages=("gitaly-2",))
    return a, b


def servers_md(src, storage="gitaly-1", address=None, token=None):
    info = {storage: {"address": address or "unix:" + src.socket, "token": src.token if token is None else token}}
    return [("gitaly-servers", base64.b64encode(json.dumps(info).encode()).decode())]


def replicate(a, b, rel=REL, md=None, **kw):
    req = pb("repository").ReplicateRepositoryRequest(
        repository=b.repo(rel, storage="gitaly-2"), source=a.repo(rel, storage="gitaly-1"), **kw)
    return b.stub("RepositoryService").ReplicateRepository(req, metadata=servers_md(a) if md is None else md,
                                                           timeout=60)


def checksum(node, storage, rel=REL):
    return node.stub("RepositoryService").CalculateChecksum(
        pb("repository").CalculateChecksumRequest(repository=node.repo(rel, storage=storage))).checksum


def source_repo(a):
    path = make_bare_repo(a.repo_path(REL, "gitaly-1"), branches=("main", "feature"), tags=("v1.0",))
    oid = git("rev-parse", "main", cwd=path).strip()
    git("update-ref", "refs/keep-around/" + oid, oid, cwd=path)
    git("update-ref", "refs/merge-requests/1/head", git("rev-parse", "feature", cwd=path).strip(), cwd=path)
    git("config", "gitlab.fullpath", "group/project", cwd=path)
    os.makedirs(os.path.join(path, "info"), exist_ok=True)
    open(os.path.join(path, "info", "attributes"), "w").write("*.bin binary\n")
    hooks = os.path.join(path, "custom_hooks", "pre-receive.d")
    os.makedirs(hooks)
    open(os.path.join(hooks, "check"), "w").write("#!/bin/sh\nexit 0\n")
    os.chmod(os.path.join(hooks, "check"), 0o755)
    return path


def same_file(p1, p2):
    return open(p1, "rb").read() == open(p2, "rb").read()


@needs_gitaly_ssh
def test_replicate_creates_then_updates(pair):
    a, b = pair
    src = source_repo(a)
    replicate(a, b)
    dst = b.repo_path(REL, "gitaly-2")
    assert checksum(a, "gitaly-1") == checksum(b, "gitaly-2") != "0" * 40
    assert git("show-ref", cwd=dst) == git("show-ref", cwd=src)      # keep-around, MR refs too
    assert same_file(os.path.join(src, "config"), os.path.join(dst, "config"))
    assert same_file(os.path.join(src, "info", "attributes"), os.path.join(dst, "info", "attributes"))
    assert same_file(os.path.join(src, "custom_hooks", "pre-receive.d", "check"),
                     os.path.join(dst, "custom_hooks", "pre-receive.d", "check"))
    assert os.stat(os.path.join(dst, "custom_hooks", "pre-receive.d", "check")).st_mode & 0o777 == 0o755
    git("fsck", "--no-dangling", cwd=dst)
    tmp = os.path.join(b.storages["gitaly-2"], "+gitaly", "tmp")
    assert os.listdir(tmp) == []

    # the source moves on: a new commit, a deleted branch, another HEAD, no hooks
    work = str(a.dir) + "/work"
    git("clone", "-q", src, work)
    open(os.path.join(work, "new.txt"), "w").write("new\n")
    git("add", "new.txt", cwd=work)
    git("commit", "-q", "-m", "second", cwd=work)
    git("push", "-q", "origin", "HEAD:refs/heads/main", "HEAD:refs/heads/topic", cwd=work)
    git("update-ref", "-d", "refs/heads/feature", cwd=src)
    git("symbolic-ref", "HEAD", "refs/heads/topic", cwd=src)
    git("config", "gitlab.fullpath", "group/renamed", cwd=src)
    import shutil
    shutil.rmtree(os.path.join(src, "custom_hooks"))
    assert checksum(a, "gitaly-1") != checksum(b, "gitaly-2")

    replicate(a, b)
    assert checksum(a, "gitaly-1") == checksum(b, "gitaly-2")
    assert git("show-ref", cwd=dst) == git("show-ref", cwd=src)
    assert "refs/heads/feature" not in git("show-ref", cwd=dst)
    assert open(os.path.join(dst, "HEAD")).read() == "ref: refs/heads/topic\n"
    assert same_file(os.path.join(src, "config"), os.path.join(dst, "config"))
    assert os.listdir(os.path.join(dst, "custom_hooks")) == []
    git("fsck", "--no-dangling", cwd=dst)
    assert os.listdir(tmp) == []


@needs_gitaly_ssh
def test_replicate_replaces_an_invalid_target(pair):
    a, b = pair
    source_repo(a)
    junk = b.repo_path(REL, "gitaly-2")
    os.makedirs(os.path.join(junk, "refs"))
    open(os.path.join(junk, "garbage"), "w").write("x")
    replicate(a, b)
    assert not os.path.exists(os.path.join(junk, "garbage"))
    assert checksum(a, "gitaly-1") == checksum(b, "gitaly-2")


def test_replicate_missing_source_is_not_found(pair):
    a, b = pair
    with pytest.raises(grpc.RpcError) as e:
        replicate(a, b)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert e.value.details() == "invalid source repository"
    assert not os.path.exists(b.repo_path(REL, "gitaly-2"))
    assert os.listdir(os.path.join(b.storages["gitaly-2"], "+gitaly", "tmp")) == []
    # the same when the target exists already
    make_bare_repo(b.repo_path(REL, "gitaly-2"))
    with pytest.raises(grpc.RpcError) as e:
        replicate(a, b)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert e.value.details() == "invalid source repository"


def test_replicate_request_errors(pair):
    a, b = pair
    source_repo(a)
    svc = b.stub("RepositoryService")
    rp = pb("repository")

    def call(req, md=None):
        with pytest.raises(grpc.RpcError) as e:
            svc.ReplicateRepository(req, metadata=servers_md(a) if md is None else md, timeout=30)
        return e.value

    e = call(rp.ReplicateRepositoryRequest(repository=b.repo(REL, storage="gitaly-2")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "source repository cannot be empty"
    e = call(rp.ReplicateRepositoryRequest(repository=b.repo(REL, storage="gitaly-2"),
                                           source=b.repo(REL, storage="gitaly-2")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == "repository and source have the same storage"
    e = call(rp.ReplicateRepositoryRequest(repository=b.repo("../../x", storage="gitaly-2"),
                                           source=a.repo(REL, storage="gitaly-1")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    req = rp.ReplicateRepositoryRequest(repository=b.repo(REL, storage="gitaly-2"),
                                        source=a.repo(REL, storage="gitaly-1"))
    e = call(req, md=[])
    assert e.code() == grpc.StatusCode.INTERNAL and "gitaly-servers" in e.details()
    e = call(req, md=servers_md(a, storage="elsewhere"))
    assert e.code() == grpc.StatusCode.INTERNAL
    # the source refuses our token
    e = call(req, md=servers_md(a, token="wrong"))
    assert e.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INTERNAL)
    assert not os.path.exists(b.repo_path(REL, "gitaly-2"))
    # nobody listens there
    e = call(req, md=servers_md(a, address="unix:" + str(a.dir) + "/nothing.sock"))
    assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL)
    assert not os.path.exists(b.repo_path(REL, "gitaly-2"))
    # a wrong token for the target node itself
    with pytest.raises(grpc.RpcError) as e2:
        b.stub("RepositoryService", secret="nope").ReplicateRepository(req, metadata=servers_md(a))
    assert e2.value.code() == grpc.StatusCode.PERMISSION_DENIED


@needs_gitaly_ssh
def test_replicate_with_expiring_deadlines_cleans_up(pair):
    import time
    a, b = pair
    src = source_repo(a)
    for _ in range(3):
        git("hash-object", "-w", "--stdin", cwd=src, input=os.urandom(3 * 1024 * 1024))
    req = pb("repository").ReplicateRepositoryRequest(
        repository=b.repo(REL, storage="gitaly-2"), source=a.repo(REL, storage="gitaly-1"))
    for t in (0.005, 0.02, 0.05, 0.1, 0.2):
        try:
            b.stub("RepositoryService").ReplicateRepository(req, metadata=servers_md(a), timeout=t)
        except grpc.RpcError as e:
            # an abandoned attempt may still hold the creation lock (or have just finished
            # creating) when the next one starts, exactly as upstream's would
            assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED or "already" in e.details(), e.details()
    time.sleep(1)
    dst = b.repo_path(REL, "gitaly-2")
    for lock in (dst + ".lock", dst + "/config.lock", dst + "/HEAD.lock", dst + "/custom_hooks.lock"):
        assert not os.path.exists(lock)
    # a full run afterwards still converges
    replicate(a, b)
    assert checksum(a, "gitaly-1") == checksum(b, "gitaly-2")
    assert os.listdir(os.path.join(b.storages["gitaly-2"], "+gitaly", "tmp")) == []
