"""RepositoryService/Fsck against a real gitaly: a healthy repository answers an empty error, a
corrupt one git fsck's complaints, a missing one the locator's error."""
import glob
import os

import grpc
import pytest

from gitaly_itest import git, make_bare_repo, pb


def fsck(node, rel, **kw):
    return node.stub("RepositoryService").Fsck(
        pb("repository").FsckRequest(repository=node.repo(rel), **kw), timeout=60)


def test_fsck_of_a_healthy_repository_has_no_error(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("ok.git"), branches=("main", "dev"), tags=("v1",))
    # a dangling blob is expected in real repositories and is not reported
    git("hash-object", "-w", "--stdin", cwd=path, input=b"dangling\n")
    assert fsck(gitaly_node, "ok.git").error == b""


def test_fsck_of_an_empty_repository_has_no_error(gitaly_node):
    git("init", "-q", "--bare", gitaly_node.repo_path("empty.git"))
    assert fsck(gitaly_node, "empty.git").error == b""


def test_fsck_reports_a_deleted_loose_object(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("loose.git"))
    git("repack", "-adq", cwd=path)
    tree = git("rev-parse", "main^{tree}", cwd=path).strip()
    commit = git("commit-tree", "-p", "main", "-m", "loose", tree, cwd=path).strip()
    git("update-ref", "refs/heads/main", commit, cwd=path)
    os.remove(os.path.join(path, "objects", commit[:2], commit[2:]))
    err = fsck(gitaly_node, "loose.git").error.decode()
    assert "refs/heads/main: invalid sha1 pointer " + commit in err


def test_fsck_reports_a_corrupted_pack(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("pack.git"), files={"a.txt": "x" * 5000 + "\n", "b.txt": "y\n"})
    git("repack", "-adq", cwd=path)
    pack = glob.glob(os.path.join(path, "objects", "pack", "*.pack"))[0]
    os.chmod(pack, 0o644)
    size = os.path.getsize(pack)
    with open(pack, "r+b") as f:
        f.seek(size // 2)
        f.write(bytes(96))
    err = fsck(gitaly_node, "pack.git").error
    assert err != b""


def test_fsck_of_a_repository_without_its_objects(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("gone.git"))
    git("repack", "-adq", cwd=path)
    head = git("rev-parse", "main", cwd=path).strip()
    for p in glob.glob(os.path.join(path, "objects", "pack", "*")):
        os.remove(p)
    err = fsck(gitaly_node, "gone.git").error.decode()
    assert "error: refs/heads/main: invalid sha1 pointer " + head in err


def test_fsck_of_a_missing_repository_is_the_locator_error(gitaly_node):
    svc = gitaly_node.stub("RepositoryService")
    with pytest.raises(grpc.RpcError) as e:
        fsck(gitaly_node, "missing.git")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert "repository not found" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        svc.Fsck(pb("repository").FsckRequest(), timeout=60)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "repository not set" in e.value.details()
