"""RepositoryService/CreateFork (from this node or another one, through gitaly-ssh) and
RepositoryService/ApplyGitattributes against real gitaly nodes and real git."""
import base64
import json
import os

import grpc
import pytest

from gitaly_itest import BUILD, git, make_bare_repo, pb

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(BUILD, "gitaly-ssh", "gitaly-ssh")),
                                reason="gitaly-ssh is not built")


def rp():
    return pb("repository")


def rpc_error(fn, *args, **kw):
    with pytest.raises(grpc.RpcError) as e:
        fn(*args, **kw)
    return e.value


def servers_md(node, storage):
    info = {storage: {"address": "unix:" + node.socket, "token": node.token}}
    return [("gitaly-servers", base64.b64encode(json.dumps(info).encode()).decode())]


def refs(path):
    return git("for-each-ref", "--format=%(objectname) %(refname)", cwd=path)


def test_fork_from_another_node_has_every_ref_and_no_remote(make_gitaly):
    a = make_gitaly("a", storages=("gitaly-1",))
    b = make_gitaly("b", storages=("gitaly-2",))
    src = make_bare_repo(a.repo_path("src.git", "gitaly-1"), branches=("main", "feature"), tags=("v1",))
    b.stub("RepositoryService").CreateFork(rp().CreateForkRequest(
        repository=b.repo("fork.git", storage="gitaly-2"), source_repository=a.repo("src.git", storage="gitaly-1")),
        metadata=servers_md(a, "gitaly-1"), timeout=60)
    fork = b.repo_path("fork.git", "gitaly-2")
    assert refs(fork) == refs(src)
    assert "remote.origin" not in git("config", "--list", cwd=fork)
    git("fsck", cwd=fork)
    assert os.listdir(os.path.join(b.storages["gitaly-2"], "+gitaly", "tmp")) == []


def test_fork_of_one_branch(gitaly_node):
    src = make_bare_repo(gitaly_node.repo_path("src.git"), branches=("main", "feature"), tags=("v1",))
    svc = gitaly_node.stub("RepositoryService")
    md = servers_md(gitaly_node, "default")
    svc.CreateFork(rp().CreateForkRequest(repository=gitaly_node.repo("one.git"),
                                          source_repository=gitaly_node.repo("src.git"),
                                          revision=b"refs/heads/feature"), metadata=md, timeout=60)
    fork = gitaly_node.repo_path("one.git")
    assert refs(fork).split("\n")[0].split() == [git("rev-parse", "feature", cwd=src).strip(), "refs/heads/feature"]
    assert len(refs(fork).strip().splitlines()) == 1
    assert open(os.path.join(fork, "HEAD")).read() == "ref: refs/heads/feature\n"


def test_fork_bad_input(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("src.git"))
    svc = gitaly_node.stub("RepositoryService")
    md = servers_md(gitaly_node, "default")
    src = gitaly_node.repo("src.git")

    def fork(**kw):
        req = dict(repository=gitaly_node.repo("f.git"), source_repository=src)
        req.update(kw)
        return rpc_error(svc.CreateFork, rp().CreateForkRequest(**req), metadata=md, timeout=60)
    e = fork(source_repository=None)
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                       "validating source repository: repository not set")
    e = fork(repository=None)
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "repository not set")
    e = fork(revision=b"refs/tags/v1")
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "creating fork: reference is not a branch")
    e = fork(revision=b"refs/heads/")
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "creating fork: branch name is empty")
    e = fork(source_repository=gitaly_node.repo("missing.git"))
    assert e.code() == grpc.StatusCode.INTERNAL and e.details().startswith("creating fork: fetching source repo:")
    e = rpc_error(svc.CreateFork, rp().CreateForkRequest(repository=gitaly_node.repo("f.git"), source_repository=src),
                  timeout=60)
    assert e.code() == grpc.StatusCode.INTERNAL and "gitaly-servers" in e.details()
    e = fork(repository=src)
    assert (e.code(), e.details()) == (grpc.StatusCode.ALREADY_EXISTS, "creating fork: repository exists already")
    assert not os.path.exists(gitaly_node.repo_path("f.git"))
    assert os.listdir(os.path.join(gitaly_node.storages["default"], "+gitaly", "tmp")) == []


def test_apply_gitattributes_writes_and_removes_info_attributes(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("r.git"), files={".gitattributes": "*.png binary\n", "a": "a\n"})
    with_attrs = git("rev-parse", "main", cwd=path).strip()
    work = path + ".w"
    git("clone", "-q", path, work)
    git("rm", "-q", ".gitattributes", cwd=work)
    git("commit", "-q", "-m", "no attributes", cwd=work)
    git("push", "-q", "origin", "HEAD:refs/heads/plain", cwd=work)
    svc = gitaly_node.stub("RepositoryService")
    attrs = os.path.join(path, "info", "attributes")
    svc.ApplyGitattributes(rp().ApplyGitattributesRequest(repository=gitaly_node.repo("r.git"),
                                                          revision=with_attrs.encode()))
    assert open(attrs).read() == "*.png binary\n"
    svc.ApplyGitattributes(rp().ApplyGitattributesRequest(repository=gitaly_node.repo("r.git"), revision=b"plain"))
    assert not os.path.exists(attrs) and not os.path.exists(attrs + ".lock")
    e = rpc_error(svc.ApplyGitattributes, rp().ApplyGitattributesRequest(repository=gitaly_node.repo("r.git"),
                                                                         revision=b"nope"))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "revision does not exist")
    e = rpc_error(svc.ApplyGitattributes, rp().ApplyGitattributesRequest(repository=gitaly_node.repo("r.git"),
                                                                         revision=b""))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "revision: empty revision")
    e = rpc_error(svc.ApplyGitattributes, rp().ApplyGitattributesRequest(repository=gitaly_node.repo("r.git"),
                                                                         revision=b"--all"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    e = rpc_error(svc.ApplyGitattributes, rp().ApplyGitattributesRequest(repository=gitaly_node.repo("no.git"),
                                                                         revision=b"main"))
    assert e.code() == grpc.StatusCode.NOT_FOUND
