"""InternalGitaly/WalkRepos against a real node: every repository of a storage in byte order, with
its modification time, not entering a repository, skipping +gitaly and plain directories (what
praefect's list-untracked-repositories and rebuild-tracking-store read; praefect-cli.md)."""
import os
import subprocess

import grpc
import pytest

from gitaly_itest import make_bare_repo, pb


def walk(node, storage="default"):
    return [(r.relative_path, r.modification_time.seconds) for r in node.stub("InternalGitaly").WalkRepos(
        pb("internal").WalkReposRequest(storage_name=storage), timeout=30)]


def test_walk_repos_lists_every_repository_once_in_byte_order(gitaly_node):
    made = ["@hashed/ab/cd/one.git", "@hashed/ab/ce/two.git", "B/upper.git", "a/nested.git", "z.git"]
    for rel in made:
        make_bare_repo(gitaly_node.repo_path(rel))
    # a repository inside a repository is not reported: the walk does not enter one
    subprocess.run(["git", "init", "-q", "--bare", gitaly_node.repo_path("z.git/inner.git")], check=True)
    # plain directories and files are no repositories; +gitaly is gitaly's own
    os.makedirs(gitaly_node.repo_path("empty/dir"))
    os.makedirs(gitaly_node.repo_path("half.git/objects"))
    open(gitaly_node.repo_path("a/file.txt"), "w").close()
    os.makedirs(gitaly_node.repo_path("+gitaly/tmp/hidden.git"), exist_ok=True)
    subprocess.run(["git", "init", "-q", "--bare", gitaly_node.repo_path("+gitaly/tmp/hidden.git")], check=True)
    os.utime(gitaly_node.repo_path("z.git"), (1600000000, 1600000000))

    got = walk(gitaly_node)
    assert [p for p, _ in got] == sorted(made, key=lambda s: s.encode())
    times = dict(got)
    assert times["z.git"] == 1600000000
    for rel in made:
        assert times[rel] == int(os.stat(gitaly_node.repo_path(rel)).st_mtime), rel


def test_walk_repos_of_an_unknown_storage_is_not_found(gitaly_node):
    with pytest.raises(grpc.RpcError) as e:
        walk(gitaly_node, storage="nope")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no such storage" in e.value.details()
