"""OperationService merges and branch moves against a real gitaly: UserMergeBranch
(the two-message protocol), UserMergeToRef, UserFFBranch and UserUpdateBranch,
checked against what git itself computes, with hooks refusing, stale old values
and upstream's error details."""
import os
import queue
import time

import grpc
import pytest

from gitaly_itest import git, make_bare_repo, pb
from helpers_hooks import detail, write_custom_hook

TS = 1600000000
USER_KW = dict(gl_id="user-123", name=b"Jane Doe", email=b"jane@example.com", gl_username="jane",
               timezone="UTC")


def ops():
    return pb("operations")


def errors():
    return pb("errors")


def user(**kw):
    d = dict(USER_KW)
    d.update(kw)
    return pb("shared").User(**d)


def ts(seconds=TS):
    from google.protobuf import timestamp_pb2
    return timestamp_pb2.Timestamp(seconds=seconds)


def commit_files(path, parent, files, msg):
    """A commit on top of `parent` (None: a root) in the bare repository at `path`, changing `files`."""
    index = path + ".index"
    env = {"GIT_INDEX_FILE": index}
    if parent:
        git("read-tree", parent, cwd=path, env=env)
    else:
        git("read-tree", "--empty", cwd=path, env=env)
    for name, content in files.items():
        blob = git("hash-object", "-w", "--stdin", cwd=path, input=content.encode()).strip()
        git("update-index", "--add", "--cacheinfo", "100644,%s,%s" % (blob, name), cwd=path, env=env)
    tree = git("write-tree", cwd=path, env=env).strip()
    os.unlink(index)
    args = ["commit-tree", tree, "-m", msg] + (["-p", parent] if parent else [])
    return git(*args, cwd=path).strip()


class Repo:
    """main: base + main.txt; feature: base + feature.txt (mergeable); clash: base with README changed,
    as main also changes it (a conflict)."""

    def __init__(self, node, rel="r.git"):
        self.node, self.rel = node, rel
        self.path = node.repo_path(rel)
        make_bare_repo(self.path, branches=("main",), files={"README.md": "hello\n"})
        self.base = self.rev("main")
        self.main = commit_files(self.path, self.base, {"main.txt": "m\n", "README.md": "hello main\n"}, "on main")
        self.feature = commit_files(self.path, self.base, {"feature.txt": "f\n"}, "on feature")
        self.clash = commit_files(self.path, self.base, {"README.md": "hello clash\n"}, "clash")
        self.ahead = commit_files(self.path, self.main, {"ahead.txt": "a\n"}, "ahead of main")
        for name, oid in (("main", self.main), ("feature", self.feature), ("clash", self.clash)):
            git("update-ref", "refs/heads/" + name, oid, cwd=self.path)
        self.proto = node.repo(rel, gl_repository="project-1")

    def rev(self, name):
        r = git("rev-parse", "--verify", "-q", name, cwd=self.path, check=False).strip()
        return r or None


@pytest.fixture
def repo(gitaly_node):
    return Repo(gitaly_node)


def expected_merge(path, ours, theirs, message, name="Jane Doe", email="jane@example.com", when=TS):
    """The merge commit git itself writes for the same inputs (in a scratch copy of the objects)."""
    tree = git("merge-tree", "--write-tree", ours, theirs, cwd=path).split("\n")[0]
    date = "%d +0000" % when
    env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": date,
           "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email, "GIT_COMMITTER_DATE": date}
    return git("commit-tree", tree, "-p", ours, "-p", theirs, "-F", "-", cwd=path, env=env,
               input=message).strip()


def no_quarantines(node):
    tmp = os.path.join(node.storages["default"], "+gitaly", "tmp")
    return not os.path.isdir(tmp) or not [d for d in os.listdir(tmp) if d.startswith("quarantine-")]


class Bidi:
    """A UserMergeBranch stream driven one message at a time."""

    def __init__(self, stub):
        self.q = queue.Queue()
        self.responses = stub.UserMergeBranch(iter(self.q.get, None), timeout=30)

    def send(self, req):
        self.q.put(req)

    def recv(self):
        return next(self.responses)

    def close(self):
        self.q.put(None)

    def finish(self):
        """Close our side and wait for the call's status (an error raises)."""
        self.close()
        rest = list(self.responses)
        assert rest == [], rest


def merge_request(repo, **kw):
    d = dict(repository=repo.proto, user=user(), commit_id=repo.feature, branch=b"main",
             message=b"Merge feature into main\n", timestamp=ts())
    d.update(kw)
    return ops().UserMergeBranchRequest(**d)


def rpc_error(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value


# --- UserMergeBranch ---

def test_merge_branch_two_steps(gitaly_node, repo):
    b = Bidi(gitaly_node.stub("OperationService"))
    b.send(merge_request(repo))
    first = b.recv()
    want = expected_merge(repo.path, repo.main, repo.feature, b"Merge feature into main\n")
    assert first.commit_id == want
    assert not first.HasField("branch_update")
    # nothing moved before the client confirms, and the commit is still quarantined
    assert repo.rev("main") == repo.main
    b.send(ops().UserMergeBranchRequest(apply=True))
    second = b.recv()
    b.close()
    assert second.branch_update.commit_id == want
    assert not second.branch_update.branch_created and not second.branch_update.repo_created
    with pytest.raises(StopIteration):
        b.recv()
    assert repo.rev("main") == want
    assert git("rev-list", "--parents", "-n1", "main", cwd=repo.path).split() == [want, repo.main, repo.feature]
    body = git("cat-file", "commit", want, cwd=repo.path)
    assert "author Jane Doe <jane@example.com> %d +0000\n" % TS in body
    assert "committer Jane Doe <jane@example.com> %d +0000\n" % TS in body
    git("fsck", "--strict", "--no-dangling", cwd=repo.path)
    assert no_quarantines(gitaly_node)


def test_merge_branch_is_deterministic(gitaly_node, repo):
    """Two repositories with the same content get byte-identical merges: replicas vote equal."""
    other = Repo(gitaly_node, "copy.git")
    assert (other.main, other.feature) == (repo.main, repo.feature)
    ids = []
    for r in (repo, other):
        b = Bidi(gitaly_node.stub("OperationService"))
        b.send(merge_request(r))
        ids.append(b.recv().commit_id)
        b.send(ops().UserMergeBranchRequest(apply=True))
        b.recv()
        b.close()
    assert ids[0] == ids[1]
    # a different time is a different commit
    b = Bidi(gitaly_node.stub("OperationService"))
    b.send(merge_request(repo, branch=b"feature", commit_id=repo.clash, timestamp=ts(TS + 1)))
    assert b.recv().commit_id != expected_merge(repo.path, repo.feature, repo.clash, b"Merge feature into main\n")
    b.close()


def test_merge_branch_conflict(gitaly_node, repo):
    b = Bidi(gitaly_node.stub("OperationService"))
    b.send(merge_request(repo, commit_id=repo.clash))
    e = rpc_error(b.recv)
    b.close()
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                       "merging commits: merge: there are conflicting files")
    d = detail(e, ops().UserMergeBranchError)
    assert d.WhichOneof("error") == "merge_conflict"
    assert list(d.merge_conflict.conflicting_files) == [b"README.md"]
    assert list(d.merge_conflict.conflicting_commit_ids) == [repo.main, repo.clash]
    assert repo.rev("main") == repo.main
    assert no_quarantines(gitaly_node)


def test_merge_branch_abandoned_half_way_changes_nothing(gitaly_node, repo):
    refs_before = git("for-each-ref", cwd=repo.path)
    # the client stops after the first answer
    b = Bidi(gitaly_node.stub("OperationService"))
    b.send(merge_request(repo))
    oid = b.recv().commit_id
    b.close()
    e = rpc_error(b.recv)
    assert e.code() == grpc.StatusCode.INTERNAL
    assert git("for-each-ref", cwd=repo.path) == refs_before
    assert git("cat-file", "-t", oid, cwd=repo.path, check=False).strip() == ""   # quarantined, then dropped
    # the client says no
    b = Bidi(gitaly_node.stub("OperationService"))
    b.send(merge_request(repo))
    b.recv()
    b.send(ops().UserMergeBranchRequest(apply=False))
    e = rpc_error(b.recv)
    b.close()
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "merge aborted by client")
    # the client cancels
    b = Bidi(gitaly_node.stub("OperationService"))
    b.send(merge_request(repo))
    b.recv()
    b.responses.cancel()
    # the server learns of the cancel asynchronously: its quarantine goes when it has
    deadline = time.time() + 20
    while not no_quarantines(gitaly_node) and time.time() < deadline:
        time.sleep(0.05)
    assert no_quarantines(gitaly_node)
    assert git("for-each-ref", cwd=repo.path) == refs_before
    assert git("cat-file", "-t", oid, cwd=repo.path, check=False).strip() == ""


@pytest.mark.parametrize("hook", ["pre-receive", "update"])
def test_merge_branch_refused_by_custom_hook(gitaly_node, repo, hook):
    write_custom_hook(repo.path, hook, "#!/bin/sh\necho refused by %s >&2\nexit 1\n" % hook)
    b = Bidi(gitaly_node.stub("OperationService"))
    b.send(merge_request(repo))
    oid = b.recv().commit_id
    b.send(ops().UserMergeBranchRequest(apply=True))
    e = rpc_error(b.recv)
    b.close()
    assert (e.code(), e.details()) == (grpc.StatusCode.PERMISSION_DENIED, "refused by %s\n" % hook)
    d = detail(e, ops().UserMergeBranchError)
    assert d.WhichOneof("error") == "custom_hook"
    assert d.custom_hook.stderr == ("refused by %s\n" % hook).encode()
    assert d.custom_hook.hook_type == (errors().CustomHookError.HOOK_TYPE_PRERECEIVE if hook == "pre-receive"
                                       else errors().CustomHookError.HOOK_TYPE_UPDATE)
    assert repo.rev("main") == repo.main
    if hook == "pre-receive":
        # refused before the objects joined the repository
        assert git("cat-file", "-t", oid, cwd=repo.path, check=False).strip() == ""


def test_merge_branch_stale_expected_old_oid(gitaly_node, repo):
    # the caller believes main is still at base; the merge is computed on base, the update refuses
    b = Bidi(gitaly_node.stub("OperationService"))
    b.send(merge_request(repo, expected_old_oid=repo.base))
    oid = b.recv().commit_id
    assert oid == expected_merge(repo.path, repo.base, repo.feature, b"Merge feature into main\n")
    b.send(ops().UserMergeBranchRequest(apply=True))
    e = rpc_error(b.recv)
    b.close()
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                       "reference update: reference does not point to expected object")
    d = detail(e, ops().UserMergeBranchError)
    assert d.WhichOneof("error") == "reference_update"
    assert (d.reference_update.reference_name, d.reference_update.old_oid, d.reference_update.new_oid) == \
        (b"refs/heads/main", repo.base, oid)
    assert repo.rev("main") == repo.main


def test_merge_branch_request_errors(gitaly_node, repo):
    cases = [
        (dict(repository=None), grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
        (dict(user=None), grpc.StatusCode.INVALID_ARGUMENT, "empty user"),
        (dict(user=user(name=b"")), grpc.StatusCode.INVALID_ARGUMENT, "empty user name"),
        (dict(user=user(email=b"")), grpc.StatusCode.INVALID_ARGUMENT, "empty user email"),
        (dict(commit_id=""), grpc.StatusCode.INVALID_ARGUMENT, "empty commit ID"),
        (dict(branch=b""), grpc.StatusCode.INVALID_ARGUMENT, "empty branch name"),
        (dict(message=b""), grpc.StatusCode.INVALID_ARGUMENT, "empty message"),
        (dict(branch=b"nope"), grpc.StatusCode.NOT_FOUND, "reference not found"),
        (dict(expected_old_oid="foobar"), grpc.StatusCode.INVALID_ARGUMENT,
         'invalid expected old object ID: invalid object ID: "foobar", expected length 40, got 6'),
        (dict(expected_old_oid="1" * 40), grpc.StatusCode.INVALID_ARGUMENT,
         "cannot resolve expected old object ID: reference not found"),
        (dict(user=user(timezone="Nowhere/Land")), grpc.StatusCode.INVALID_ARGUMENT,
         "unknown time zone Nowhere/Land"),
    ]
    for kw, code, msg in cases:
        b = Bidi(gitaly_node.stub("OperationService"))
        b.send(merge_request(repo, **kw))
        e = rpc_error(b.recv)
        b.close()
        assert (e.code(), e.details()) == (code, msg), kw
    # a stream that ends before its first message
    b = Bidi(gitaly_node.stub("OperationService"))
    b.close()
    assert rpc_error(b.recv).code() == grpc.StatusCode.INTERNAL
    assert repo.rev("main") == repo.main
    assert no_quarantines(gitaly_node)


# --- UserMergeToRef ---

def mtr_request(repo, **kw):
    d = dict(repository=repo.proto, user=user(), source_sha=repo.feature, first_parent_ref=b"refs/heads/main",
             target_ref=b"refs/merge-requests/1/merge", message=b"Merge request 1\n", timestamp=ts())
    d.update(kw)
    return ops().UserMergeToRefRequest(**d)


def test_merge_to_ref(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    resp = stub.UserMergeToRef(mtr_request(repo), timeout=30)
    assert resp.commit_id == expected_merge(repo.path, repo.main, repo.feature, b"Merge request 1\n")
    assert repo.rev("refs/merge-requests/1/merge") == resp.commit_id
    assert repo.rev("main") == repo.main
    # again on top of an existing target, through the deprecated branch field
    resp2 = stub.UserMergeToRef(mtr_request(repo, first_parent_ref=b"", branch=b"clash", message=b"again"),
                                timeout=30)
    assert git("rev-list", "--parents", "-n1", resp2.commit_id, cwd=repo.path).split()[1:] == \
        [repo.clash, repo.feature]
    assert repo.rev("refs/merge-requests/1/merge") == resp2.commit_id
    # a stale expected_old_oid
    e = rpc_error(lambda: stub.UserMergeToRef(mtr_request(repo, expected_old_oid=resp.commit_id), timeout=30))
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                       "Could not update refs/merge-requests/1/merge. Please refresh and try again")
    assert repo.rev("refs/merge-requests/1/merge") == resp2.commit_id
    # the expected one
    resp3 = stub.UserMergeToRef(mtr_request(repo, expected_old_oid=resp2.commit_id), timeout=30)
    assert repo.rev("refs/merge-requests/1/merge") == resp3.commit_id == resp.commit_id
    git("fsck", "--strict", "--no-dangling", cwd=repo.path)


def test_merge_to_ref_errors(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    git("symbolic-ref", "refs/merge-requests/2/merge", "refs/heads/main", cwd=repo.path)
    cases = [
        (dict(first_parent_ref=b""), grpc.StatusCode.INVALID_ARGUMENT, "empty first parent ref and branch name"),
        (dict(user=None), grpc.StatusCode.INVALID_ARGUMENT, "empty user"),
        (dict(source_sha=""), grpc.StatusCode.INVALID_ARGUMENT, "empty source SHA"),
        (dict(target_ref=b""), grpc.StatusCode.INVALID_ARGUMENT, "empty target ref"),
        (dict(target_ref=b"refs/heads/x"), grpc.StatusCode.INVALID_ARGUMENT, "invalid target ref"),
        (dict(first_parent_ref=b"refs/heads/nope"), grpc.StatusCode.INVALID_ARGUMENT, "Invalid merge source"),
        (dict(source_sha="refs/heads/nope"), grpc.StatusCode.INVALID_ARGUMENT, "Invalid merge source"),
        # rev-parse --verify takes any full object id: the merge is what fails
        (dict(source_sha="2" * 40), grpc.StatusCode.FAILED_PRECONDITION,
         "Failed to create merge commit for source_sha %s and target_sha %s at refs/merge-requests/1/merge"
         % ("2" * 40, repo.main)),
        (dict(target_ref=b"refs/merge-requests/2/merge"), grpc.StatusCode.FAILED_PRECONDITION,
         'target reference is symbolic: "refs/merge-requests/2/merge"'),
        (dict(source_sha=repo.clash), grpc.StatusCode.FAILED_PRECONDITION,
         "Failed to create merge commit for source_sha %s and target_sha %s at refs/merge-requests/1/merge"
         % (repo.clash, repo.main)),
    ]
    for kw, code, msg in cases:
        e = rpc_error(lambda: stub.UserMergeToRef(mtr_request(repo, **kw), timeout=30))
        assert (e.code(), e.details()) == (code, msg), kw
    assert repo.rev("refs/merge-requests/1/merge") is None


def test_merge_to_ref_runs_no_hooks(gitaly_node, repo):
    write_custom_hook(repo.path, "pre-receive", "#!/bin/sh\nexit 1\n")
    resp = gitaly_node.stub("OperationService").UserMergeToRef(mtr_request(repo), timeout=30)
    assert repo.rev("refs/merge-requests/1/merge") == resp.commit_id


# --- UserFFBranch ---

def test_ff_branch(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    R = ops().UserFFBranchRequest
    resp = stub.UserFFBranch(R(repository=repo.proto, user=user(), commit_id=repo.ahead, branch=b"main"),
                             timeout=30)
    assert resp.branch_update.commit_id == repo.ahead and resp.pre_receive_error == ""
    assert repo.rev("main") == repo.ahead
    # a stale expected_old_oid: the old API's empty answer, and nothing moves
    git("update-ref", "refs/heads/main", repo.main, cwd=repo.path)
    resp = stub.UserFFBranch(R(repository=repo.proto, user=user(), commit_id=repo.ahead, branch=b"main",
                               expected_old_oid=repo.base), timeout=30)
    assert resp == ops().UserFFBranchResponse()
    assert repo.rev("main") == repo.main


def test_ff_branch_errors(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")

    def R(**kw):
        d = dict(repository=repo.proto, user=user(), commit_id=repo.ahead, branch=b"main")
        d.update(kw)
        return ops().UserFFBranchRequest(**d)
    cases = [
        (R(user=None), grpc.StatusCode.INVALID_ARGUMENT, "empty user"),
        (R(commit_id=""), grpc.StatusCode.INVALID_ARGUMENT, "empty commit id"),
        (R(branch=b""), grpc.StatusCode.INVALID_ARGUMENT, "empty branch name"),
        (R(branch=b"nope"), grpc.StatusCode.INVALID_ARGUMENT, "reference not found"),
        (R(commit_id=repo.feature), grpc.StatusCode.FAILED_PRECONDITION, "not fast forward"),
        (R(commit_id="0" * 40), grpc.StatusCode.INTERNAL,
         'checking for ancestry: invalid commit: "%s"' % ("0" * 40)),
        (R(expected_old_oid="foobar"), grpc.StatusCode.INVALID_ARGUMENT,
         'invalid expected old object ID: invalid object ID: "foobar", expected length 40, got 6'),
        (R(expected_old_oid="3" * 40), grpc.StatusCode.INVALID_ARGUMENT,
         "cannot resolve expected old object ID: reference not found"),
    ]
    for req, code, msg in cases:
        e = rpc_error(lambda: stub.UserFFBranch(req, timeout=30))
        assert (e.code(), e.details()) == (code, msg), req
    assert repo.rev("main") == repo.main


def test_ff_branch_refused_by_hook(gitaly_node, repo):
    write_custom_hook(repo.path, "pre-receive", "#!/bin/sh\necho failure\nexit 1\n")
    resp = gitaly_node.stub("OperationService").UserFFBranch(ops().UserFFBranchRequest(
        repository=repo.proto, user=user(), commit_id=repo.ahead, branch=b"main"), timeout=30)
    assert resp.pre_receive_error == "failure\n"
    assert not resp.HasField("branch_update")
    assert repo.rev("main") == repo.main


# --- UserUpdateBranch ---

def test_update_branch(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    R = ops().UserUpdateBranchRequest
    resp = stub.UserUpdateBranch(R(repository=repo.proto, user=user(), branch_name=b"main",
                                   newrev=repo.feature.encode(), oldrev=repo.main.encode()), timeout=30)
    assert resp == ops().UserUpdateBranchResponse()
    assert repo.rev("main") == repo.feature
    # a stale oldrev
    e = rpc_error(lambda: stub.UserUpdateBranch(R(repository=repo.proto, user=user(), branch_name=b"main",
                                                  newrev=repo.clash.encode(), oldrev=repo.main.encode()),
                                                timeout=30))
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                       "Could not update main. Please refresh and try again.")
    assert repo.rev("main") == repo.feature
    # refused by a hook: the old API's answer in a successful response
    write_custom_hook(repo.path, "update", "#!/bin/sh\necho no way >&2\nexit 1\n")
    resp = stub.UserUpdateBranch(R(repository=repo.proto, user=user(), branch_name=b"main",
                                   newrev=repo.clash.encode(), oldrev=repo.feature.encode()), timeout=30)
    assert resp.pre_receive_error == "no way\n"
    assert repo.rev("main") == repo.feature


def test_update_branch_errors(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")

    def R(**kw):
        d = dict(repository=repo.proto, user=user(), branch_name=b"main", newrev=repo.feature.encode(),
                 oldrev=repo.main.encode())
        d.update(kw)
        return ops().UserUpdateBranchRequest(**d)
    cases = [
        (R(user=None), grpc.StatusCode.INVALID_ARGUMENT, "empty user"),
        (R(branch_name=b""), grpc.StatusCode.INVALID_ARGUMENT, "empty branch name"),
        (R(oldrev=b""), grpc.StatusCode.INVALID_ARGUMENT, "empty oldrev"),
        (R(newrev=b""), grpc.StatusCode.INVALID_ARGUMENT, "empty newrev"),
        (R(newrev=b"abc"), grpc.StatusCode.INTERNAL,
         'could not parse newrev: invalid object ID: "abc", expected length 40, got 3'),
        (R(oldrev=b"abc"), grpc.StatusCode.INTERNAL,
         'could not parse oldrev: invalid object ID: "abc", expected length 40, got 3'),
    ]
    for req, code, msg in cases:
        e = rpc_error(lambda: stub.UserUpdateBranch(req, timeout=30))
        assert (e.code(), e.details()) == (code, msg), req
    assert repo.rev("main") == repo.main


# --- UserCherryPick and UserRevert ---

def commit_msg(repo, oid):
    return pb("shared").GitCommit(id=oid)


def pick_request(repo, cls, oid, **kw):
    d = dict(repository=repo.proto, user=user(), commit=commit_msg(repo, oid), branch_name=b"main",
             message=b"picked\n", timestamp=ts())
    d.update(kw)
    return cls(**d)


def git_cherry_pick_tree(repo, tmp_path, onto, oid, revert=False):
    """The tree git's own cherry-pick (or revert) computes, in a scratch clone with a worktree."""
    work = str(tmp_path / ("scratch-%s-%s" % (onto[:8], oid[:8])))
    git("clone", "-q", "--no-checkout", repo.path, work)
    git("checkout", "-q", onto, cwd=work)
    git("revert" if revert else "cherry-pick", "--no-commit", oid, cwd=work)
    return git("write-tree", cwd=work).strip()


def header(repo, oid, field):
    for line in git("cat-file", "commit", oid, cwd=repo.path).split("\n"):
        if line.startswith(field + " "):
            return line
    return None


def test_cherry_pick(gitaly_node, repo, tmp_path):
    stub = gitaly_node.stub("OperationService")
    want_tree = git_cherry_pick_tree(repo, tmp_path, repo.main, repo.feature)
    resp = stub.UserCherryPick(pick_request(repo, ops().UserCherryPickRequest, repo.feature), timeout=30)
    new = resp.branch_update.commit_id
    assert not resp.branch_update.branch_created and not resp.branch_update.repo_created
    assert repo.rev("main") == new
    assert repo.rev("main^{tree}") == want_tree
    assert git("rev-list", "--parents", "-n1", new, cwd=repo.path).split() == [new, repo.main]
    assert header(repo, new, "author") == header(repo, repo.feature, "author")
    assert header(repo, new, "committer") == "committer Jane Doe <jane@example.com> %d +0000" % TS
    assert git("log", "-1", "--format=%B", new, cwd=repo.path) == "picked\n\n"
    git("fsck", "--strict", "--no-dangling", cwd=repo.path)
    assert no_quarantines(gitaly_node)


def test_cherry_pick_new_branch_and_dry_run(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    R = ops().UserCherryPickRequest
    resp = stub.UserCherryPick(pick_request(repo, R, repo.feature, dry_run=True), timeout=30)
    assert resp.branch_update.commit_id == repo.main
    assert repo.rev("main") == repo.main
    resp = stub.UserCherryPick(pick_request(repo, R, repo.feature, branch_name=b"picked",
                                            start_branch_name=b"main"), timeout=30)
    assert resp.branch_update.branch_created
    assert repo.rev("picked") == resp.branch_update.commit_id
    assert repo.rev("picked^") == repo.main


def test_cherry_pick_refusals(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    R = ops().UserCherryPickRequest
    # a conflict
    e = rpc_error(lambda: stub.UserCherryPick(pick_request(repo, R, repo.clash), timeout=30))
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                       "cherry pick: merge: there are conflicting files")
    d = detail(e, ops().UserCherryPickError)
    assert d.WhichOneof("error") == "cherry_pick_conflict"
    assert list(d.cherry_pick_conflict.conflicting_files) == [b"README.md"]
    # already applied
    e = rpc_error(lambda: stub.UserCherryPick(pick_request(repo, R, repo.feature, branch_name=b"feature"),
                                              timeout=30))
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                       "cherry-pick: could not apply because the result was empty")
    assert detail(e, ops().UserCherryPickError).WhichOneof("error") == "changes_already_applied"
    # the target branch is not where the pick starts from
    e = rpc_error(lambda: stub.UserCherryPick(pick_request(repo, R, repo.feature, branch_name=b"clash",
                                                           start_branch_name=b"main"), timeout=30))
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "cherry-pick: branch diverged")
    d = detail(e, ops().UserCherryPickError)
    assert d.target_branch_diverged.parent_revision == repo.clash.encode()
    # a stale expected_old_oid
    e = rpc_error(lambda: stub.UserCherryPick(pick_request(repo, R, repo.feature, expected_old_oid=repo.base),
                                              timeout=30))
    assert (e.code(), e.details()) == (
        grpc.StatusCode.INTERNAL,
        "update reference with hooks: reference update: reference does not point to expected object")
    # a refusing pre-receive hook
    write_custom_hook(repo.path, "pre-receive", "#!/bin/sh\necho not allowed >&2\nexit 1\n")
    e = rpc_error(lambda: stub.UserCherryPick(pick_request(repo, R, repo.feature), timeout=30))
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "access check failed")
    assert detail(e, ops().UserCherryPickError).access_check.error_message == "not allowed"
    assert repo.rev("main") == repo.main
    assert repo.rev("clash") == repo.clash
    assert no_quarantines(gitaly_node)


def test_cherry_pick_request_errors(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    R = ops().UserCherryPickRequest
    cases = [
        (dict(user=None), grpc.StatusCode.INVALID_ARGUMENT, "empty User"),
        (dict(commit=None), grpc.StatusCode.INVALID_ARGUMENT, "empty Commit"),
        (dict(branch_name=b""), grpc.StatusCode.INVALID_ARGUMENT, "empty BranchName"),
        (dict(message=b""), grpc.StatusCode.INVALID_ARGUMENT, "empty Message"),
        (dict(branch_name=b"nope"), grpc.StatusCode.INVALID_ARGUMENT, "resolve start ref: reference not found"),
        (dict(commit=commit_msg(repo, "4" * 40)), grpc.StatusCode.NOT_FOUND,
         'cherry-pick: commit lookup: commit not found: "%s"' % ("4" * 40)),
        (dict(expected_old_oid="5" * 40), grpc.StatusCode.INVALID_ARGUMENT,
         "cannot resolve expected old object ID: reference not found"),
    ]
    for kw, code, msg in cases:
        kw.setdefault("commit", commit_msg(repo, repo.feature))
        e = rpc_error(lambda: stub.UserCherryPick(R(**dict(dict(repository=repo.proto, user=user(),
                                                                     branch_name=b"main", message=b"m",
                                                                     timestamp=ts()), **kw)), timeout=30))
        assert (e.code(), e.details()) == (code, msg), kw
    assert repo.rev("main") == repo.main


STRUCTURED = (("gitaly-feature-return-structured-errors-in-revert", "true"),)


def test_revert(gitaly_node, repo, tmp_path):
    stub = gitaly_node.stub("OperationService")
    R = ops().UserRevertRequest
    ahead = repo.ahead
    git("update-ref", "refs/heads/main", ahead, cwd=repo.path)
    # revert main's own change below the tip
    want_tree = git_cherry_pick_tree(repo, tmp_path, ahead, repo.main, revert=True)
    resp = stub.UserRevert(pick_request(repo, R, repo.main, message=b"Revert it\n"), timeout=30)
    new = resp.branch_update.commit_id
    assert (resp.create_tree_error, resp.commit_error, resp.pre_receive_error) == ("", "", "")
    assert repo.rev("main") == new and repo.rev("main^") == ahead
    assert repo.rev("main^{tree}") == want_tree
    assert header(repo, new, "author") == "author Jane Doe <jane@example.com> %d +0000" % TS
    # dry run: nothing written to the branch beyond its start
    resp = stub.UserRevert(pick_request(repo, R, repo.ahead, dry_run=True, message=b"again"), timeout=30)
    assert resp.branch_update.commit_id == new and repo.rev("main") == new
    git("fsck", "--strict", "--no-dangling", cwd=repo.path)


def test_revert_refusals_inline_and_structured(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    R = ops().UserRevertRequest
    # conflict
    resp = stub.UserRevert(pick_request(repo, R, repo.clash), timeout=30)
    assert (resp.create_tree_error, resp.create_tree_error_code) == (
        "revert: could not apply due to conflicts", ops().UserRevertResponse.CONFLICT)
    e = rpc_error(lambda: stub.UserRevert(pick_request(repo, R, repo.clash), metadata=STRUCTURED, timeout=30))
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "revert: there are conflicting files")
    assert list(detail(e, ops().UserRevertError).merge_conflict.conflicting_files) == [b"README.md"]
    # nothing to revert
    resp = stub.UserRevert(pick_request(repo, R, repo.feature), timeout=30)
    assert (resp.create_tree_error, resp.create_tree_error_code) == (
        "revert: could not apply because the result was empty", ops().UserRevertResponse.EMPTY)
    e = rpc_error(lambda: stub.UserRevert(pick_request(repo, R, repo.feature), metadata=STRUCTURED, timeout=30))
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                       "revert: could not apply because the result was empty")
    assert detail(e, ops().UserRevertError).WhichOneof("error") == "changes_already_applied"
    # diverged
    resp = stub.UserRevert(pick_request(repo, R, repo.main, branch_name=b"clash", start_branch_name=b"main"),
                           timeout=30)
    assert resp.commit_error == "Branch diverged"
    e = rpc_error(lambda: stub.UserRevert(pick_request(repo, R, repo.main, branch_name=b"clash",
                                                       start_branch_name=b"main"), metadata=STRUCTURED, timeout=30))
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "revert: branch diverged")
    assert detail(e, ops().UserRevertError).not_ancestor.parent_revision == repo.clash.encode()
    # a refusing hook
    write_custom_hook(repo.path, "pre-receive", "#!/bin/sh\necho no reverts >&2\nexit 1\n")
    resp = stub.UserRevert(pick_request(repo, R, repo.main), timeout=30)
    assert resp.pre_receive_error == "no reverts\n"
    e = rpc_error(lambda: stub.UserRevert(pick_request(repo, R, repo.main), metadata=STRUCTURED, timeout=30))
    assert (e.code(), e.details()) == (grpc.StatusCode.PERMISSION_DENIED, "revert: custom hook error")
    assert detail(e, ops().UserRevertError).custom_hook.stderr == b"no reverts\n"
    assert repo.rev("main") == repo.main and repo.rev("clash") == repo.clash
    e = rpc_error(lambda: stub.UserRevert(pick_request(repo, R, "6" * 40), timeout=30))
    assert (e.code(), e.details()) == (grpc.StatusCode.NOT_FOUND, "revert commit lookup: commit not found")
    assert no_quarantines(gitaly_node)


# --- UserSquash ---

AUTHOR = dict(name=b"Ann Author", email=b"ann@example.com", timezone="Asia/Tokyo")


def squash_request(repo, **kw):
    d = dict(repository=repo.proto, user=user(), author=pb("shared").User(**AUTHOR), start_sha=repo.base,
             end_sha=repo.ahead, commit_message=b"Squashed", timestamp=ts())
    d.update(kw)
    return ops().UserSquashRequest(**d)


def test_squash(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    refs_before = git("for-each-ref", cwd=repo.path)
    sha = stub.UserSquash(squash_request(repo), timeout=30).squash_sha
    assert git("rev-list", "--parents", "-n1", sha, cwd=repo.path).split() == [sha, repo.base]
    assert repo.rev(sha + "^{tree}") == repo.rev(repo.ahead + "^{tree}")
    assert header(repo, sha, "author") == "author Ann Author <ann@example.com> %d +0900" % TS
    assert header(repo, sha, "committer") == "committer Jane Doe <jane@example.com> %d +0000" % TS
    assert git("cat-file", "commit", sha, cwd=repo.path).endswith("\n\nSquashed\n")
    # no reference moves; the commit is in the repository, the quarantine gone
    assert git("for-each-ref", cwd=repo.path) == refs_before
    assert no_quarantines(gitaly_node)
    # squashing a diverged range merges it onto the start
    sha2 = stub.UserSquash(squash_request(repo, start_sha=repo.main, end_sha=repo.feature), timeout=30).squash_sha
    tree = git("merge-tree", "--write-tree", repo.main, repo.feature, cwd=repo.path).split("\n")[0]
    assert repo.rev(sha2 + "^{tree}") == tree
    assert repo.rev(sha2 + "^") == repo.main
    git("fsck", "--strict", "--no-dangling", cwd=repo.path)


def test_squash_refusals(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    e = rpc_error(lambda: stub.UserSquash(squash_request(repo, start_sha=repo.main, end_sha=repo.clash), timeout=30))
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                       "squashing commits: merge: there are conflicting files")
    d = detail(e, ops().UserSquashError)
    assert list(d.rebase_conflict.conflicting_files) == [b"README.md"]
    assert list(d.rebase_conflict.conflicting_commit_ids) == [repo.main, repo.clash]
    for field, which in (("start_sha", "start"), ("end_sha", "end")):
        e = rpc_error(lambda: stub.UserSquash(squash_request(repo, **{field: "nope"}), timeout=30))
        assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                           "resolving %s revision: reference not found" % which)
        assert detail(e, ops().UserSquashError).resolve_revision.revision == b"nope"
    cases = [
        (dict(user=None), "empty User"),
        (dict(user=user(name=b"")), "empty user name"),
        (dict(user=user(email=b"")), "empty user email"),
        (dict(start_sha=""), "empty StartSha"),
        (dict(end_sha=""), "empty EndSha"),
        (dict(commit_message=b""), "empty CommitMessage"),
        (dict(author=None), "empty Author"),
        (dict(author=pb("shared").User(email=b"a@b")), "empty author name"),
        (dict(author=pb("shared").User(name=b"a")), "empty author email"),
        (dict(author=pb("shared").User(name=b"a", email=b"a@b", timezone="Bad/Zone")), "unknown time zone Bad/Zone"),
    ]
    for kw, msg in cases:
        e = rpc_error(lambda: stub.UserSquash(squash_request(repo, **kw), timeout=30))
        assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, msg), kw
    assert no_quarantines(gitaly_node)


# --- UserRebaseToRef ---

def rebase_request(repo, **kw):
    d = dict(repository=repo.proto, user=user(), source_sha=repo.feature, first_parent_ref=b"refs/heads/main",
             target_ref=b"refs/merge-requests/1/train", timestamp=ts())
    d.update(kw)
    return ops().UserRebaseToRefRequest(**d)


def git_rebase(repo, tmp_path, onto, tip):
    """What git's own rebase writes, with the same committer, in a scratch clone."""
    work = str(tmp_path / ("rebase-%s" % tip[:8]))
    git("clone", "-q", repo.path, work)
    git("checkout", "-q", "--detach", tip, cwd=work)
    env = {"GIT_COMMITTER_NAME": "Jane Doe", "GIT_COMMITTER_EMAIL": "jane@example.com",
           "GIT_COMMITTER_DATE": "%d +0000" % TS}
    git("rebase", "-q", onto, cwd=work, env=env)
    return git("rev-parse", "HEAD", cwd=work).strip()


def test_rebase_to_ref(gitaly_node, repo, tmp_path):
    stub = gitaly_node.stub("OperationService")
    # a two-commit branch, one of whose changes main already has
    second = commit_files(repo.path, repo.feature, {"feature2.txt": "2\n"}, "second on feature")
    dup = commit_files(repo.path, second, {"main.txt": "m\n"}, "same as on main")
    third = commit_files(repo.path, dup, {"feature3.txt": "3\n"}, "third on feature")
    want = git_rebase(repo, tmp_path, repo.main, third)
    resp = stub.UserRebaseToRef(rebase_request(repo, source_sha=third), timeout=30)
    assert resp.commit_id == want
    assert repo.rev("refs/merge-requests/1/train") == want
    assert repo.rev("main") == repo.main
    # a fast-forward needs no new commit
    resp = stub.UserRebaseToRef(rebase_request(repo, source_sha=repo.ahead,
                                               expected_old_oid=want), timeout=30)
    assert resp.commit_id == repo.ahead == repo.rev("refs/merge-requests/1/train")
    git("fsck", "--strict", "--no-dangling", cwd=repo.path)
    assert no_quarantines(gitaly_node)


def test_rebase_to_ref_errors(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    cases = [
        (dict(first_parent_ref=b""), grpc.StatusCode.INVALID_ARGUMENT, "empty FirstParentRef"),
        (dict(user=None), grpc.StatusCode.INVALID_ARGUMENT, "empty User"),
        (dict(source_sha=""), grpc.StatusCode.INVALID_ARGUMENT, "empty SourceSha"),
        (dict(target_ref=b""), grpc.StatusCode.INVALID_ARGUMENT, "empty TargetRef"),
        (dict(target_ref=b"refs/heads/x"), grpc.StatusCode.INVALID_ARGUMENT, "invalid TargetRef"),
        (dict(first_parent_ref=b"refs/heads/nope"), grpc.StatusCode.INVALID_ARGUMENT, "invalid FirstParentRef"),
        (dict(source_sha="refs/heads/nope"), grpc.StatusCode.INVALID_ARGUMENT, "invalid SourceSha"),
        (dict(expected_old_oid="7" * 40), grpc.StatusCode.INVALID_ARGUMENT,
         "cannot resolve expected old object ID: reference not found"),
        (dict(source_sha=repo.clash), grpc.StatusCode.FAILED_PRECONDITION,
         "failed to rebase %s on %s while preparing refs/merge-requests/1/train due to conflict"
         % (repo.clash, repo.main)),
        (dict(expected_old_oid=repo.main), grpc.StatusCode.FAILED_PRECONDITION,
         "could not update refs/merge-requests/1/train. Please refresh and try again"),
    ]
    for kw, code, msg in cases:
        e = rpc_error(lambda: stub.UserRebaseToRef(rebase_request(repo, **kw), timeout=30))
        assert (e.code(), e.details()) == (code, msg), kw
    assert repo.rev("refs/merge-requests/1/train") is None
    assert no_quarantines(gitaly_node)


# --- UserRebaseConfirmable ---

class RebaseBidi(Bidi):
    def __init__(self, stub):
        self.q = queue.Queue()
        self.responses = stub.UserRebaseConfirmable(iter(self.q.get, None), timeout=30)


def rebase_header(repo, **kw):
    d = dict(repository=repo.proto, user=user(), branch=b"feature", branch_sha=repo.feature,
             remote_repository=repo.proto, remote_branch=b"main", timestamp=ts())
    d.update(kw)
    return ops().UserRebaseConfirmableRequest(header=ops().UserRebaseConfirmableRequest.Header(**d))


def test_rebase_confirmable(gitaly_node, repo, tmp_path):
    want = git_rebase(repo, tmp_path, repo.main, repo.feature)
    b = RebaseBidi(gitaly_node.stub("OperationService"))
    b.send(rebase_header(repo))
    first = b.recv()
    assert first.WhichOneof("user_rebase_confirmable_response_payload") == "rebase_sha"
    assert first.rebase_sha == want
    assert repo.rev("feature") == repo.feature
    b.send(ops().UserRebaseConfirmableRequest(apply=True))
    assert b.recv().rebase_applied
    b.finish()
    assert repo.rev("feature") == want
    git("fsck", "--strict", "--no-dangling", cwd=repo.path)
    assert no_quarantines(gitaly_node)


def test_rebase_confirmable_abandoned_or_refused(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    refs_before = git("for-each-ref", cwd=repo.path)
    b = RebaseBidi(stub)
    b.send(rebase_header(repo))
    oid = b.recv().rebase_sha
    b.close()
    e = rpc_error(b.recv)
    assert (e.code(), e.details()) == (grpc.StatusCode.INTERNAL, "recv: EOF")
    assert git("cat-file", "-t", oid, cwd=repo.path, check=False).strip() == ""
    b = RebaseBidi(stub)
    b.send(rebase_header(repo))
    b.recv()
    b.send(ops().UserRebaseConfirmableRequest(apply=False))
    e = rpc_error(b.recv)
    b.close()
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "rebase aborted by client")
    # a conflict
    b = RebaseBidi(stub)
    b.send(rebase_header(repo, branch=b"clash", branch_sha=repo.clash))
    e = rpc_error(b.recv)
    b.close()
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                       'rebasing commits: rebase: commit "%s": there are conflicting files' % repo.clash)
    d = detail(e, ops().UserRebaseConfirmableError)
    assert list(d.rebase_conflict.conflicting_files) == [b"README.md"]
    assert list(d.rebase_conflict.conflicting_commit_ids) == [repo.main, repo.clash]
    # a stale branch_sha: computed, then refused by the update
    b = RebaseBidi(stub)
    b.send(rebase_header(repo, branch_sha=repo.base))
    assert b.recv().rebase_sha == repo.main   # base is below main: a fast-forward
    b.send(ops().UserRebaseConfirmableRequest(apply=True))
    e = rpc_error(b.recv)
    b.close()
    assert (e.code(), e.details()) == (
        grpc.StatusCode.INTERNAL, "updating ref with hooks: reference update: reference does not point to expected object")
    # a refusing hook
    write_custom_hook(repo.path, "pre-receive", "#!/bin/sh\necho failure\nexit 1\n")
    b = RebaseBidi(stub)
    b.send(rebase_header(repo))
    b.recv()
    b.send(ops().UserRebaseConfirmableRequest(apply=True))
    e = rpc_error(b.recv)
    b.close()
    assert (e.code(), e.details()) == (grpc.StatusCode.PERMISSION_DENIED,
                                       'access check: "running pre-receive hooks: failure\\n"')
    assert detail(e, ops().UserRebaseConfirmableError).access_check.error_message == "failure\n"
    assert git("for-each-ref", cwd=repo.path) == refs_before
    # header errors
    for kw, msg in ((dict(user=None), "empty User"), (dict(branch=b""), "empty Branch"),
                    (dict(branch_sha=""), "empty BranchSha"), (dict(remote_repository=None), "empty RemoteRepository"),
                    (dict(remote_branch=b""), "empty RemoteBranch")):
        b = RebaseBidi(stub)
        b.send(rebase_header(repo, **kw))
        e = rpc_error(b.recv)
        b.close()
        assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, msg), kw
    b = RebaseBidi(stub)
    b.send(ops().UserRebaseConfirmableRequest(apply=True))
    e = rpc_error(b.recv)
    b.close()
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "empty UserRebaseConfirmableRequest.Header")
    assert no_quarantines(gitaly_node)
