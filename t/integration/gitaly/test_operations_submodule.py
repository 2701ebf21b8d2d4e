"""OperationService/UserUpdateSubmodule against a real gitaly: the commit git itself
writes for the same gitlink change, the answers upstream gives inside the response
(commit_error, pre_receive_error) and its validation errors."""
import grpc
import pytest

from gitaly_itest import git, make_bare_repo, pb
from helpers_hooks import write_custom_hook
from test_operations_merge import TS, commit_files, rpc_error, ts, user

SUB1 = "1" * 40
SUB2 = "2" * 40


def ops():
    return pb("operations")


def with_gitlink(path, parent, name, oid, msg):
    index = path + ".index"
    env = {"GIT_INDEX_FILE": index}
    git("read-tree", parent, cwd=path, env=env)
    git("update-index", "--add", "--cacheinfo", "160000,%s,%s" % (oid, name), cwd=path, env=env)
    tree = git("write-tree", cwd=path, env=env).strip()
    import os
    os.unlink(index)
    return git("commit-tree", tree, "-p", parent, "-m", msg, cwd=path).strip()


class Repo:
    def __init__(self, node):
        self.path = node.repo_path("s.git")
        make_bare_repo(self.path, branches=("main",), files={"README.md": "hello\n"})
        base = git("rev-parse", "main", cwd=self.path).strip()
        self.main = with_gitlink(self.path, base, "deps/lib", SUB1, "add submodule")
        git("update-ref", "refs/heads/main", self.main, cwd=self.path)
        self.proto = node.repo("s.git", gl_repository="project-1")

    def rev(self, name):
        return git("rev-parse", "--verify", "-q", name, cwd=self.path, check=False).strip() or None


@pytest.fixture
def repo(gitaly_node):
    return Repo(gitaly_node)


def request(repo, **kw):
    d = dict(repository=repo.proto, user=user(), commit_sha=SUB2, branch=b"main", submodule=b"deps/lib",
             commit_message=b"Update deps/lib\n", timestamp=ts())
    d.update(kw)
    return ops().UserUpdateSubmoduleRequest(**d)


def expected(path, parent, oid, msg, name="Jane Doe", email="jane@example.com"):
    """What git writes for the same change (plumbing in the test's own index)."""
    index = path + ".expect-index"
    env = {"GIT_INDEX_FILE": index}
    git("read-tree", parent, cwd=path, env=env)
    git("update-index", "--cacheinfo", "160000,%s,deps/lib" % oid, cwd=path, env=env)
    tree = git("write-tree", cwd=path, env=env).strip()
    import os
    os.unlink(index)
    date = "%d +0000" % TS
    cenv = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": date,
            "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email, "GIT_COMMITTER_DATE": date}
    return git("commit-tree", tree, "-p", parent, "-F", "-", cwd=path, env=cenv, input=msg).strip()


def test_update_submodule_moves_the_gitlink(gitaly_node, repo):
    resp = gitaly_node.stub("OperationService").UserUpdateSubmodule(request(repo), timeout=30)
    assert resp.commit_error == "" and resp.pre_receive_error == ""
    new = resp.branch_update.commit_id
    assert not resp.branch_update.branch_created and not resp.branch_update.repo_created
    assert repo.rev("main") == new
    assert git("rev-parse", new + ":deps/lib", cwd=repo.path).strip() == SUB2
    assert git("rev-parse", new + "^", cwd=repo.path).strip() == repo.main
    assert new == expected(repo.path, repo.main, SUB2, b"Update deps/lib\n")
    # the temporary index never reached the repository
    assert "tmp_index" not in git("count-objects", "-v", cwd=repo.path)
    import os
    assert not os.path.exists(os.path.join(repo.path, "objects", "tmp_index_gitaly"))


def test_update_submodule_answers_inside_the_response(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    r = stub.UserUpdateSubmodule(request(repo, commit_sha=SUB1), timeout=30)
    assert r.commit_error == "The submodule deps/lib is already at %s" % SUB1
    for path in (b"README.md", b"deps", b"nope/lib", b"deps/lib/x"):
        r = stub.UserUpdateSubmodule(request(repo, submodule=path), timeout=30)
        assert r.commit_error == "Invalid submodule path", path
    write_custom_hook(repo.path, "pre-receive", "#!/bin/sh\necho no submodules today >&2\nexit 1\n")
    r = stub.UserUpdateSubmodule(request(repo), timeout=30)
    assert r.pre_receive_error == "no submodules today\n"
    assert repo.rev("main") == repo.main


def test_update_submodule_stale_expected_old_oid(gitaly_node, repo):
    base = repo.rev("main^")
    r = gitaly_node.stub("OperationService").UserUpdateSubmodule(request(repo, expected_old_oid=base), timeout=30)
    assert r.commit_error == "Could not update refs/heads/main. Please refresh and try again."
    assert repo.rev("main") == repo.main


def test_update_submodule_empty_repository(gitaly_node):
    path = gitaly_node.repo_path("e.git")
    git("init", "--bare", "-q", path)
    r = gitaly_node.stub("OperationService").UserUpdateSubmodule(
        ops().UserUpdateSubmoduleRequest(repository=gitaly_node.repo("e.git"), user=user(), commit_sha=SUB2,
                                         branch=b"main", submodule=b"x", commit_message=b"m"), timeout=30)
    assert r.commit_error == "Repository is empty"


def test_update_submodule_request_errors(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    cases = [
        (dict(user=None), "empty User"),
        (dict(commit_sha=""), "empty CommitSha"),
        (dict(commit_sha="xyz"), "invalid CommitSha"),
        (dict(branch=b""), "empty Branch"),
        (dict(submodule=b""), "empty Submodule"),
        (dict(commit_message=b""), "empty CommitMessage"),
        (dict(branch=b"nope"), "Cannot find branch"),
        (dict(expected_old_oid="abc"), None),
        (dict(expected_old_oid="3" * 40), "cannot resolve expected old object ID: reference not found"),
        (dict(user=user(timezone="Invalid/Timezone")), "unknown time zone Invalid/Timezone"),
    ]
    for kw, msg in cases:
        e = rpc_error(lambda: stub.UserUpdateSubmodule(request(repo, **kw), timeout=30))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (kw, e.details())
        if msg:
            assert e.details() == msg, kw
        else:
            assert e.details().startswith("invalid expected old object ID: "), e.details()
    assert repo.rev("main") == repo.main


def test_update_submodule_odd_paths_and_branches(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    for path in (b"-p", b"deps/lib\n", b"*", b"deps/lib\0"):
        r = stub.UserUpdateSubmodule(request(repo, submodule=path), timeout=30)
        assert r.commit_error == "Invalid submodule path", path
    # refused by upstream's tree edit before it looks for the entry
    for path, why in ((b"../deps/lib", "path contains traversal"), (b"/deps/lib", "path is absolute"),
                      (b".", "path is empty"), (b"a/..", "path is empty"), (b".git/x", "disallowed path")):
        e = rpc_error(lambda: stub.UserUpdateSubmodule(request(repo, submodule=path), timeout=30))
        assert (e.code(), e.details()) == (grpc.StatusCode.INTERNAL, "submodule subcommand: modifying tree: " + why)
    # the path is cleaned as Go's filepath.Clean does: these name the gitlink
    r = stub.UserUpdateSubmodule(request(repo, submodule=b"deps//x/../lib/"), timeout=30)
    assert r.branch_update.commit_id == repo.rev("main")
    assert git("rev-parse", "main:deps/lib", cwd=repo.path).strip() == SUB2
    for branch in (b"-main", b"main\nx", b"main\0x"):
        e = rpc_error(lambda: stub.UserUpdateSubmodule(request(repo, branch=branch), timeout=30))
        assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Cannot find branch"), branch
