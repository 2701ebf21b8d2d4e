"""ConflictsService against a real gitaly: ListConflictFiles lists what `git merge-tree`
reports, ResolveConflicts writes the merge commit git itself writes for the same
resolution, and both refuse bad input with upstream's codes and messages."""
import hashlib
import json
import os
import time

import grpc
import pytest

from gitaly_itest import git, make_bare_repo, pb
from helpers_hooks import write_custom_hook
from test_operations_merge import TS, commit_files, rpc_error, ts, user


def cf():
    return pb("conflicts")


class Repo:
    """ours and theirs both change line 2 of "a" (a conflict) and each adds a file of its own."""

    def __init__(self, node):
        self.path = node.repo_path("c.git")
        make_bare_repo(self.path, branches=("main",), files={"README.md": "hello\n"})
        base = git("rev-parse", "main", cwd=self.path).strip()
        self.base = commit_files(self.path, base, {"a": "one\ntwo\nthree\n", "b": "bee\n"}, "base")
        self.ours = commit_files(self.path, self.base, {"a": "one\nTWO ours\nthree\n", "o.txt": "o\n"}, "ours")
        self.theirs = commit_files(self.path, self.base, {"a": "one\nTWO theirs\nthree\n", "t.txt": "t\n"}, "theirs")
        self.clean = commit_files(self.path, self.base, {"c.txt": "c\n"}, "no conflict")
        git("update-ref", "refs/heads/feature", self.ours, cwd=self.path)
        git("update-ref", "refs/heads/main", self.theirs, cwd=self.path)
        self.proto = node.repo("c.git", gl_repository="project-1")

    def rev(self, name):
        return git("rev-parse", "--verify", "-q", name, cwd=self.path, check=False).strip() or None


@pytest.fixture
def repo(gitaly_node):
    return Repo(gitaly_node)


def listed(stub, repo, **kw):
    d = dict(repository=repo.proto, our_commit_oid=repo.ours, their_commit_oid=repo.theirs)
    d.update(kw)
    files = []
    for resp in stub.ListConflictFiles(cf().ListConflictFilesRequest(**d), timeout=30):
        for f in resp.files:
            if f.WhichOneof("conflict_file_payload") == "header":
                files.append([f.header, b""])
            else:
                files[-1][1] += f.content
    return files


def git_conflicted_blob(repo, path):
    out = git("merge-tree", "--write-tree", repo.ours, repo.theirs, cwd=repo.path, check=False)
    tree = out.split("\n")[0]
    return git("cat-file", "blob", "%s:%s" % (tree, path), cwd=repo.path)


def test_list_conflict_files(gitaly_node, repo):
    stub = gitaly_node.stub("ConflictsService")
    [(h, content)] = listed(stub, repo)
    assert (h.our_path, h.their_path, h.ancestor_path) == (b"a", b"a", b"a")
    assert h.our_mode == 0o100644 and h.commit_oid == repo.ours
    want = git_conflicted_blob(repo, "a").replace(repo.ours, "a").replace(repo.theirs, "a")
    assert content.decode() == want
    assert "<<<<<<< a\nTWO ours\n=======\nTWO theirs\n>>>>>>> a\n" in want
    [(h, content)] = listed(stub, repo, skip_content=True)
    assert h.our_path == b"a" and content == b""
    # no conflict: nothing at all
    assert listed(stub, repo, their_commit_oid=repo.clean) == []
    # merge-tree wrote into a quarantine, dropped with the call
    from test_operations_merge import no_quarantines
    assert no_quarantines(gitaly_node)


def test_list_conflict_files_tree_conflicts(gitaly_node, repo):
    gone = git("rev-parse", repo.base, cwd=repo.path).strip()
    # theirs deletes "a" while ours changes it
    tree = git("ls-tree", gone, cwd=repo.path)
    lines = [l for l in tree.splitlines() if not l.endswith("\ta")]
    t = git("mktree", cwd=repo.path, input=("\n".join(lines) + "\n").encode()).strip()
    deleted = git("commit-tree", t, "-p", repo.base, "-m", "delete a", cwd=repo.path).strip()
    stub = gitaly_node.stub("ConflictsService")
    e = rpc_error(lambda: listed(stub, repo, their_commit_oid=deleted))
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "conflict side missing")
    [(h, _)] = listed(stub, repo, their_commit_oid=deleted, allow_tree_conflicts=True, skip_content=True)
    assert (h.our_path, h.their_path, h.ancestor_path) == (b"a", b"", b"a")


def test_list_conflict_files_errors(gitaly_node, repo):
    stub = gitaly_node.stub("ConflictsService")
    for kw, code, msg in [
        (dict(our_commit_oid=""), grpc.StatusCode.INVALID_ARGUMENT, "empty OurCommitOid"),
        (dict(their_commit_oid=""), grpc.StatusCode.INVALID_ARGUMENT, "empty TheirCommitOid"),
        (dict(our_commit_oid="f" * 40), grpc.StatusCode.FAILED_PRECONDITION,
         "could not lookup 'our' OID: reference not found"),
        (dict(their_commit_oid="nope"), grpc.StatusCode.FAILED_PRECONDITION,
         "could not lookup 'their' OID: reference not found"),
    ]:
        e = rpc_error(lambda: listed(stub, repo, **kw))
        assert (e.code(), e.details()) == (code, msg), kw
    e = rpc_error(lambda: listed(stub, repo, repository=gitaly_node.repo("missing.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND


def section_id(path, old, new):
    return "%s_%d_%d" % (hashlib.sha1(path.encode()).hexdigest(), old, new)


def resolve(stub, header, resolutions, split=7):
    body = json.dumps(resolutions).encode() if not isinstance(resolutions, bytes) else resolutions

    def reqs():
        yield cf().ResolveConflictsRequest(header=header)
        for i in range(0, len(body), split):
            yield cf().ResolveConflictsRequest(files_json=body[i:i + split])
    return stub.ResolveConflicts(reqs(), timeout=30)


def header(repo, **kw):
    d = dict(repository=repo.proto, target_repository=repo.proto, our_commit_oid=repo.ours,
             their_commit_oid=repo.theirs, source_branch=b"feature", target_branch=b"main",
             commit_message=b"Resolve conflicts\n", user=user(), timestamp=ts())
    d.update(kw)
    return cf().ResolveConflictsRequestHeader(**d)


def expected_resolution(repo, content):
    """The commit git writes: merge-tree's tree with "a" replaced, both commits as parents."""
    tree = git("merge-tree", "--write-tree", repo.ours, repo.theirs, cwd=repo.path, check=False).split("\n")[0]
    blob = git("hash-object", "-w", "--stdin", cwd=repo.path, input=content.encode()).strip()
    index = repo.path + ".expect"
    env = {"GIT_INDEX_FILE": index}
    git("read-tree", tree, cwd=repo.path, env=env)
    git("update-index", "--cacheinfo", "100644,%s,a" % blob, cwd=repo.path, env=env)
    t = git("write-tree", cwd=repo.path, env=env).strip()
    os.unlink(index)
    date = "%d +0000" % TS
    e = {"GIT_AUTHOR_NAME": "Jane Doe", "GIT_AUTHOR_EMAIL": "jane@example.com", "GIT_AUTHOR_DATE": date,
         "GIT_COMMITTER_NAME": "Jane Doe", "GIT_COMMITTER_EMAIL": "jane@example.com", "GIT_COMMITTER_DATE": date}
    return git("commit-tree", t, "-p", repo.ours, "-p", repo.theirs, "-F", "-", cwd=repo.path, env=e,
               input=b"Resolve conflicts\n").strip()


@pytest.mark.parametrize("side,line", [("head", "TWO ours"), ("origin", "TWO theirs")])
def test_resolve_conflicts_by_sections(gitaly_node, repo, side, line):
    stub = gitaly_node.stub("ConflictsService")
    r = resolve(stub, header(repo), [{"old_path": "a", "new_path": "a", "sections": {section_id("a", 2, 2): side}}])
    assert r.resolution_error == ""
    new = repo.rev("feature")
    assert new == expected_resolution(repo, "one\n%s\nthree\n" % line)
    assert git("show", new + ":a", cwd=repo.path) == "one\n%s\nthree\n" % line
    assert git("show", new + ":t.txt", cwd=repo.path) == "t\n"
    assert repo.rev("main") == repo.theirs


def test_resolve_conflicts_by_content(gitaly_node, repo):
    stub = gitaly_node.stub("ConflictsService")
    r = resolve(stub, header(repo), [{"old_path": "a", "new_path": "a", "content": "merged by hand\n"}])
    assert r.resolution_error == ""
    assert repo.rev("feature") == expected_resolution(repo, "merged by hand\n")


def test_resolve_conflicts_resolution_errors(gitaly_node, repo):
    stub = gitaly_node.stub("ConflictsService")
    shown = git_conflicted_blob(repo, "a").replace(repo.ours, "a").replace(repo.theirs, "a")
    for res, msg in [
        ([], "Missing resolutions for the following files: a"),
        ([{"old_path": "a", "new_path": "a", "sections": {"nope": "head"}}],
         "Missing resolution for section ID: " + section_id("a", 2, 2)),
        ([{"old_path": "a", "new_path": "a", "sections": {section_id("a", 2, 2): "both"}}],
         "Missing resolution for section ID: " + section_id("a", 2, 2)),
        ([{"old_path": "a", "new_path": "a", "content": shown}], "Resolved content has no changes for file a"),
    ]:
        r = resolve(stub, header(repo), res)
        assert r.resolution_error == msg
    assert repo.rev("feature") == repo.ours


def test_resolve_conflicts_errors(gitaly_node, repo):
    stub = gitaly_node.stub("ConflictsService")
    good = [{"old_path": "a", "new_path": "a", "content": "x\n"}]
    cases = [
        (dict(our_commit_oid=""), good, grpc.StatusCode.INVALID_ARGUMENT, "empty OurCommitOid"),
        (dict(target_repository=None), good, grpc.StatusCode.INVALID_ARGUMENT, "empty TargetRepository"),
        (dict(their_commit_oid=""), good, grpc.StatusCode.INVALID_ARGUMENT, "empty TheirCommitOid"),
        (dict(source_branch=b""), good, grpc.StatusCode.INVALID_ARGUMENT, "empty SourceBranch"),
        (dict(target_branch=b""), good, grpc.StatusCode.INVALID_ARGUMENT, "empty TargetBranch"),
        (dict(commit_message=b""), good, grpc.StatusCode.INVALID_ARGUMENT, "empty CommitMessage"),
        (dict(user=None), good, grpc.StatusCode.INVALID_ARGUMENT, "empty User"),
        (dict(user=user(timezone="Invalid/Timezone")), good, grpc.StatusCode.INVALID_ARGUMENT,
         "unknown time zone Invalid/Timezone"),
        (dict(), [{"old_path": "a", "new_path": "a"}], grpc.StatusCode.INVALID_ARGUMENT,
         "missing sections or content for a resolution"),
        (dict(), [{"old_path": "b", "new_path": "b", "content": "x"}], grpc.StatusCode.INTERNAL,
         "NoMethodError: undefined method `resolve_lines' for nil:NilClass"),
        (dict(our_commit_oid="z" * 40), good, grpc.StatusCode.INTERNAL,
         "Rugged::InvalidError: unable to parse OID - contains invalid characters"),
        (dict(target_branch=b"nope"), good, grpc.StatusCode.INTERNAL, "reference not found"),
        (dict(target_repository=pb("shared").Repository(storage_name="default", relative_path="other.git")),
         good, grpc.StatusCode.UNIMPLEMENTED, None),
    ]
    for kw, res, code, msg in cases:
        e = rpc_error(lambda: resolve(stub, header(repo, **kw), res))
        assert e.code() == code, (kw, e.details())
        if msg:
            assert e.details() == msg, kw
    e = rpc_error(lambda: resolve(stub, header(repo), b"{not json"))
    assert e.code() == grpc.StatusCode.INTERNAL
    e = rpc_error(lambda: stub.ResolveConflicts(iter([cf().ResolveConflictsRequest(files_json=b"[]")]), timeout=30))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "empty ResolveConflictsRequestHeader")
    assert repo.rev("feature") == repo.ours


def test_resolve_conflicts_unexpected_delimiter(gitaly_node, repo):
    # "a" in theirs carries a marker of its own, which breaks the parse of the conflicted blob
    theirs = commit_files(repo.path, repo.base, {"a": "one\nTWO theirs\n=======\nthree\n"}, "marker")
    stub = gitaly_node.stub("ConflictsService")
    e = rpc_error(lambda: resolve(stub, header(repo, their_commit_oid=theirs),
                                  [{"old_path": "a", "new_path": "a", "sections": {section_id("a", 2, 2): "head"}}]))
    assert (e.code(), e.details()) == (grpc.StatusCode.INTERNAL,
                                       'resolve: parse conflict for "a": unexpected conflict delimiter')


def test_resolve_conflicts_refused_by_hook(gitaly_node, repo):
    write_custom_hook(repo.path, "pre-receive", "#!/bin/sh\necho apricot >&2\nexit 1\n")
    stub = gitaly_node.stub("ConflictsService")
    e = rpc_error(lambda: resolve(stub, header(repo), [{"old_path": "a", "new_path": "a", "content": "x\n"}]))
    assert (e.code(), e.details()) == (grpc.StatusCode.INTERNAL, "running pre-receive hooks: apricot\n")
    assert repo.rev("feature") == repo.ours


def test_list_conflict_files_streams_large_content(gitaly_node, repo):
    big = "".join("line %d\n" % i for i in range(40000))   # ~400 KiB: several messages
    ours = commit_files(repo.path, repo.base, {"big": big + "ours\n"}, "big ours")
    theirs = commit_files(repo.path, repo.base, {"big": big + "theirs\n"}, "big theirs")
    stub = gitaly_node.stub("ConflictsService")
    messages = list(stub.ListConflictFiles(cf().ListConflictFilesRequest(
        repository=repo.proto, our_commit_oid=ours, their_commit_oid=theirs), timeout=30))
    assert len(messages) > 1
    [(h, content)] = listed(stub, repo, our_commit_oid=ours, their_commit_oid=theirs)
    assert h.our_path == b"big"
    assert content.decode() == big + "<<<<<<< big\nours\n=======\ntheirs\n>>>>>>> big\n"


def test_resolve_conflicts_abandoned_changes_nothing(gitaly_node, repo):
    from test_operations_merge import no_quarantines
    stub = gitaly_node.stub("ConflictsService")

    def reqs():
        yield cf().ResolveConflictsRequest(header=header(repo))
        yield cf().ResolveConflictsRequest(files_json=b"[")
        raise RuntimeError("client gives up")
    with pytest.raises(Exception):
        stub.ResolveConflicts(reqs(), timeout=30)
    assert repo.rev("feature") == repo.ours
    deadline = time.time() + 10
    while not no_quarantines(gitaly_node) and time.time() < deadline:
        time.sleep(0.05)
    assert no_quarantines(gitaly_node)
    # and the repository takes the next resolution as usual
    r = resolve(stub, header(repo), [{"old_path": "a", "new_path": "a", "content": "x\n"}])
    assert r.resolution_error == "" and repo.rev("feature") != repo.ours


def test_resolve_conflicts_malformed_resolutions(gitaly_node, repo):
    stub = gitaly_node.stub("ConflictsService")
    for body, code in [(b"[1]", grpc.StatusCode.INTERNAL), (b"{}", grpc.StatusCode.INTERNAL),
                       (b"[null]", grpc.StatusCode.INVALID_ARGUMENT),
                       (b'[{"old_path": "a", "sections": 5}]', grpc.StatusCode.INTERNAL),
                       (b'[{"old_path": 3, "content": "x"}]', grpc.StatusCode.INTERNAL),
                       (b'[{"old_path": "a", "sections": {"x": 1}}]', grpc.StatusCode.INTERNAL),
                       (b"", grpc.StatusCode.INTERNAL), (b"\xff\xfe", grpc.StatusCode.INTERNAL)]:
        e = rpc_error(lambda: resolve(stub, header(repo), body))
        assert e.code() == code, (body, e.details())
    # a path that is no conflicted file, however odd
    for path in ["", "../a", "a\nb", "-a", "a/"]:
        e = rpc_error(lambda: resolve(stub, header(repo), [{"old_path": path, "new_path": path, "content": "x"}]))
        assert e.details() == "NoMethodError: undefined method `resolve_lines' for nil:NilClass"
    assert repo.rev("feature") == repo.ours
