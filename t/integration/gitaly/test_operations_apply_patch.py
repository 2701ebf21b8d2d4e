"""OperationService/UserApplyPatch against a real gitaly: the commits are the ones
`git am` itself writes in a worktree for the same mails and committer, without the
server touching a worktree; failures answer with upstream's codes and messages."""
import os
import subprocess

import grpc
import pytest

from gitaly_itest import git, make_bare_repo, pb
from helpers_hooks import write_custom_hook
from test_operations_merge import TS, commit_files, rpc_error, ts, user


def ops():
    return pb("operations")


class Repo:
    """main has "f"; patches (format-patch mails) change it and add files on top of main."""

    def __init__(self, node, tmp_path):
        self.path = node.repo_path("p.git")
        make_bare_repo(self.path, branches=("main",), files={"f": "one\ntwo\nthree\n"})
        self.main = self.rev("main")
        self.work = str(tmp_path / "work")
        git("clone", "-q", self.path, self.work)
        w = self.work
        with open(os.path.join(w, "f"), "w") as fh:
            fh.write("one\n2\nthree\n")
        git("commit", "-q", "-am", "Change two\n\nBecause two is better as a digit.", cwd=w,
            env={"GIT_AUTHOR_NAME": "Ann Author", "GIT_AUTHOR_EMAIL": "ann@example.com",
                 "GIT_AUTHOR_DATE": "1500000000 +0200"})
        with open(os.path.join(w, "g"), "w") as fh:
            fh.write("gee\n")
        git("add", "g", cwd=w)
        git("commit", "-q", "-m", "[PATCH] Add g", cwd=w)
        self.mails = git("format-patch", "--stdout", "HEAD~2", cwd=w).encode()
        self.proto = node.repo("p.git", gl_repository="project-1")

    def rev(self, name):
        return git("rev-parse", "--verify", "-q", name, cwd=self.path, check=False).strip() or None


@pytest.fixture
def repo(gitaly_node, tmp_path):
    return Repo(gitaly_node, tmp_path)


def apply(stub, header, mails, split=1000):
    def reqs():
        yield ops().UserApplyPatchRequest(header=header)
        for i in range(0, len(mails), split):
            yield ops().UserApplyPatchRequest(patches=mails[i:i + split])
    return stub.UserApplyPatch(reqs(), timeout=60)


def header(repo, **kw):
    d = dict(repository=repo.proto, user=user(), target_branch=b"main", timestamp=ts())
    d.update(kw)
    return ops().UserApplyPatchRequest.Header(**d)


def git_am(repo, tmp_path, onto, mails):
    """What `git am` writes for the same mails onto `onto`, committed by the request's user at its time."""
    w = str(tmp_path / "am")
    git("clone", "-q", "--no-checkout", repo.path, w)
    git("checkout", "-q", "--detach", onto, cwd=w)
    date = "%d +0000" % TS
    git("am", "-q", "--3way", cwd=w, input=mails,
        env={"GIT_COMMITTER_NAME": "Jane Doe", "GIT_COMMITTER_EMAIL": "jane@example.com",
             "GIT_COMMITTER_DATE": date})
    return git("rev-parse", "HEAD", cwd=w).strip()


def test_apply_patch_writes_what_git_am_writes(gitaly_node, repo, tmp_path):
    stub = gitaly_node.stub("OperationService")
    r = apply(stub, header(repo), repo.mails)
    new = r.branch_update.commit_id
    assert not r.branch_update.branch_created
    assert repo.rev("main") == new
    assert new == git_am(repo, tmp_path, repo.main, repo.mails)
    log = git("log", "--format=%an <%ae> %ad|%cn <%ce> %cd|%s", "--date=raw", "-2", new, cwd=repo.path)
    assert log.splitlines() == ["Test <test@example.com> 1700000000 +0100|Jane Doe <jane@example.com> %d +0000|Add g" % TS,
                                "Ann Author <ann@example.com> 1500000000 +0200|Jane Doe <jane@example.com> %d +0000|Change two" % TS]
    # no worktree, no scratch file left behind
    assert not os.path.exists(os.path.join(repo.path, "worktrees"))
    assert "tmp_am" not in os.listdir(os.path.join(repo.path, "objects"))


def test_apply_patch_creates_a_branch_from_the_default_branch(gitaly_node, repo, tmp_path):
    r = apply(gitaly_node.stub("OperationService"), header(repo, target_branch=b"topic"), repo.mails)
    assert r.branch_update.branch_created
    assert repo.rev("topic") == r.branch_update.commit_id == git_am(repo, tmp_path, repo.main, repo.mails)
    assert repo.rev("main") == repo.main


def test_apply_patch_that_does_not_apply(gitaly_node, repo):
    other = commit_files(repo.path, repo.main, {"f": "completely\ndifferent\n"}, "rewrite f")
    git("update-ref", "refs/heads/main", other, cwd=repo.path)
    e = rpc_error(lambda: apply(gitaly_node.stub("OperationService"), header(repo), repo.mails))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.details() == ("Patch failed at 0001 Change two\n"
                           "When you have resolved this problem, run \"git am --continue\".\n"
                           "If you prefer to skip this patch, run \"git am --skip\" instead.\n"
                           "To restore the original branch and stop patching, run \"git am --abort\".\n")
    assert repo.rev("main") == other


def test_apply_patch_errors(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    for kw, code, msg in [
        (dict(user=None), grpc.StatusCode.INVALID_ARGUMENT, "missing User"),
        (dict(target_branch=b""), grpc.StatusCode.INVALID_ARGUMENT, "missing Branch"),
        (dict(user=user(timezone="Invalid/Timezone")), grpc.StatusCode.INVALID_ARGUMENT,
         "unknown time zone Invalid/Timezone"),
        (dict(expected_old_oid="xyz"), grpc.StatusCode.INTERNAL, None),
        (dict(expected_old_oid="3" * 40), grpc.StatusCode.INTERNAL,
         "expected old object cannot be resolved: reference not found"),
    ]:
        e = rpc_error(lambda: apply(stub, header(repo, **kw), repo.mails))
        assert e.code() == code, (kw, e.details())
        if msg:
            assert e.details() == msg
        else:
            assert e.details().startswith("expected old object id not expected SHA format: ")
    e = rpc_error(lambda: stub.UserApplyPatch(iter([ops().UserApplyPatchRequest(patches=b"x")]), timeout=30))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "empty UserApplyPatch_Header")
    # a stale expected old value: the update is refused
    e = rpc_error(lambda: apply(stub, header(repo, expected_old_oid=git("rev-parse", repo.main + "^{tree}",
                                                                         cwd=repo.path).strip()), repo.mails))
    assert e.code() == grpc.StatusCode.INTERNAL and e.details().startswith("update reference: ")
    write_custom_hook(repo.path, "pre-receive", "#!/bin/sh\necho no patches >&2\nexit 1\n")
    e = rpc_error(lambda: apply(stub, header(repo), repo.mails))
    assert (e.code(), e.details()) == (grpc.StatusCode.INTERNAL, "update reference: running pre-receive hooks: no patches\n")
    assert repo.rev("main") == repo.main


def test_apply_patch_series_failing_half_way_changes_nothing(gitaly_node, repo):
    # main already has "g": the first mail applies, the second does not
    other = commit_files(repo.path, repo.main, {"g": "already here\n"}, "g exists")
    git("update-ref", "refs/heads/main", other, cwd=repo.path)
    e = rpc_error(lambda: apply(gitaly_node.stub("OperationService"), header(repo), repo.mails, split=97))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.details().startswith("Patch failed at 0002 Add g\n")
    assert repo.rev("main") == other
    from test_operations_merge import no_quarantines
    assert no_quarantines(gitaly_node)


def test_apply_patch_without_branches(gitaly_node):
    path = gitaly_node.repo_path("empty.git")
    git("init", "--bare", "-q", path)
    h = ops().UserApplyPatchRequest.Header(repository=gitaly_node.repo("empty.git"), user=user(),
                                           target_branch=b"main", timestamp=ts())
    e = rpc_error(lambda: apply(gitaly_node.stub("OperationService"), h, b"From x\n"))
    assert (e.code(), e.details()) == (grpc.StatusCode.INTERNAL, "no default branch")
