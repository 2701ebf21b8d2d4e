"""CleanupService/ApplyBfgObjectMapStream against a real gitaly: internal references
pointing at rewritten commits are deleted in one transaction, every rewritten object
is reported with its type as git knows it, and malformed maps are refused with
upstream's messages."""
import grpc
import pytest

from gitaly_itest import git, make_bare_repo, pb
from test_operations_merge import commit_files, rpc_error


def cl():
    return pb("cleanup")


class Repo:
    def __init__(self, node):
        self.path = node.repo_path("b.git")
        make_bare_repo(self.path, branches=("main",), files={"README.md": "hello\n"})
        self.base = git("rev-parse", "main", cwd=self.path).strip()
        self.old = commit_files(self.path, self.base, {"secret.txt": "password\n"}, "oops")
        self.child = commit_files(self.path, self.old, {"more.txt": "m\n"}, "child of oops")
        self.new = commit_files(self.path, self.base, {"clean.txt": "c\n"}, "rewritten")
        self.blob = git("rev-parse", self.new + ":clean.txt", cwd=self.path).strip()
        self.old_blob = git("rev-parse", self.old + ":secret.txt", cwd=self.path).strip()
        for ref, oid in [("refs/keep-around/" + self.old, self.old), ("refs/merge-requests/1/head", self.old),
                         ("refs/pipelines/7", self.child), ("refs/heads/main", self.old),
                         ("refs/tmp/unrelated", self.base)]:
            git("update-ref", ref, oid, cwd=self.path)
        self.proto = node.repo("b.git")

    def refs(self):
        return git("for-each-ref", "--format=%(refname)", cwd=self.path).split()


@pytest.fixture
def repo(gitaly_node):
    return Repo(gitaly_node)


def apply(stub, repo_proto, body, split=50):
    def reqs():
        yield cl().ApplyBfgObjectMapStreamRequest(repository=repo_proto, object_map=body[:split])
        for i in range(split, len(body), split):
            yield cl().ApplyBfgObjectMapStreamRequest(object_map=body[i:i + split])
    entries = []
    for resp in stub.ApplyBfgObjectMapStream(reqs(), timeout=30):
        entries.extend((e.type, e.old_oid, e.new_oid) for e in resp.entries)
    return entries


def test_apply_bfg_object_map_removes_internal_references(gitaly_node, repo):
    T = pb("shared").ObjectType
    body = ("old                                      new\n"
            "%s %s\n%s %s\r\n%s %s\n%s %s\n" % (repo.old, repo.new, repo.old_blob, repo.blob, repo.base, repo.base,
                                               "e" * 40, "f" * 40)).encode()
    entries = apply(gitaly_node.stub("CleanupService"), repo.proto, body)
    assert entries == [(T.COMMIT, repo.old, repo.new), (T.BLOB, repo.old_blob, repo.blob),
                       (T.UNKNOWN, "e" * 40, "f" * 40)]
    # the commit's references and the one whose commit has it as parent are gone; branches stay
    assert sorted(repo.refs()) == ["refs/heads/main", "refs/tmp/unrelated"]


def test_apply_bfg_object_map_errors(gitaly_node, repo):
    stub = gitaly_node.stub("CleanupService")
    for body, msg in [
        (b"nospace\n", "object map invalid at line 0"),
        (("%s %s\nzz %s\n" % (repo.old, repo.new, repo.new)).encode(), "invalid old object ID at line 1"),
        (("old                                      new\n%s 123\n" % repo.old).encode(),
         "invalid new object ID at line 1"),
        (("%s %s\n\n" % (repo.old, repo.new)).encode(), "object map invalid at line 1"),
    ]:
        e = rpc_error(lambda: apply(stub, repo.proto, body))
        assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, msg)
    assert "refs/keep-around/" + repo.old in repo.refs()
    e = rpc_error(lambda: apply(stub, pb("shared").Repository(storage_name="default", relative_path="nope.git"),
                                b""))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: apply(stub, None, b""))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
