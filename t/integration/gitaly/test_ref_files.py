"""RefExists, FindBranch and FindDefaultBranchName answered from the ref files
(lib/git/refs.c) give exactly git's answers, whatever shape the refs are in."""
import os

import grpc
import pytest

from gitaly_itest import git, make_bare_repo, pb

R = lambda: pb("ref")  # noqa: E731

NAMES = ["main", "feature", "nested", "nested/topic", "a+b", "x.y", "with-dash", "UPPER",
         "alias", "dangling", "gone", "locked", "broken", "n\u00e4me", "sp ace", "f*", "missing",
         "dir", "dir/deep", "empty-dir"]


def outcome(fn):
    try:
        return ("ok", fn())
    except grpc.RpcError as e:
        return ("error", e.code())


def git_ref_exists(path, ref):
    r = git_rc(path, "show-ref", "--verify", "--quiet", ref)
    return ("ok", True) if r == 0 else ("ok", False) if r == 1 else ("error", grpc.StatusCode.INTERNAL)


def git_rc(path, *args):
    import subprocess
    return subprocess.run(["git", "--git-dir", path] + list(args), capture_output=True,
                          env=dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null",
                                   GIT_CONFIG_SYSTEM="/dev/null")).returncode


def git_find_branch(path, name):
    out = git("--git-dir", path, "for-each-ref", "--count=1",
              "--format=%(refname) %(objectname) %(symref)", "refs/heads/" + name)
    if not out:
        return ("ok", None)
    refname, oid, symref = (out.rstrip("\n").split(" ") + [""])[:3]
    if refname != "refs/heads/" + name:
        return ("error", grpc.StatusCode.INVALID_ARGUMENT)
    commit = git("--git-dir", path, "rev-parse", "--verify", "-q", (symref or oid) + "^{commit}",
                 check=False).strip()
    return ("ok", commit) if commit else ("error", grpc.StatusCode.INTERNAL)


def git_head(path):
    out = git("--git-dir", path, "symbolic-ref", "HEAD", check=False)
    return ("ok", out.strip().encode()) if out else ("error", grpc.StatusCode.INTERNAL)


def check_all(node, rel):
    path = node.repo_path(rel)
    s = node.stub("RefService")
    repo = node.repo(rel)
    for name in NAMES:
        for ref in ("refs/heads/" + name, "refs/tags/" + name):
            got = outcome(lambda: s.RefExists(R().RefExistsRequest(repository=repo, ref=ref.encode())).value)
            assert got == git_ref_exists(path, ref), (rel, ref)
        got = outcome(lambda: s.FindBranch(R().FindBranchRequest(repository=repo, name=name.encode())))
        if got[0] == "ok":
            got = ("ok", got[1].branch.target_commit.id if got[1].HasField("branch") else None)
        assert got == git_find_branch(path, name), (rel, name)
    got = outcome(lambda: s.FindDefaultBranchName(
        R().FindDefaultBranchNameRequest(repository=repo, head_only=True)).name)
    assert got == git_head(path), rel


def write(path, rel, content):
    full = os.path.join(path, rel)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as f:
        f.write(content)


def shape(node, rel, how):
    path = node.repo_path(rel)
    make_bare_repo(path, branches=("main", "feature", "nested/topic", "a+b", "x.y", "UPPER"),
                   tags=("v1", "with-dash"))
    g = lambda *a: git("--git-dir", path, *a)  # noqa: E731
    main = g("rev-parse", "refs/heads/main").strip()
    feature = g("rev-parse", "refs/heads/feature").strip()
    g("tag", "gone", main)
    g("branch", "gone", main)
    g("symbolic-ref", "refs/heads/alias", "refs/heads/feature")
    g("symbolic-ref", "refs/heads/dangling", "refs/heads/missing")
    g("branch", "dir/deep", feature)
    os.makedirs(os.path.join(path, "refs/heads/empty-dir"), exist_ok=True)
    if how == "packed":
        g("pack-refs", "--all")
    elif how == "loose":
        # every ref as a loose file, no packed-refs at all
        for line in g("for-each-ref", "--format=%(refname) %(objectname)").splitlines():
            ref, oid = line.split(" ")
            if ref not in ("refs/heads/alias", "refs/heads/dangling"):
                write(path, ref, oid + "\n")
        os.unlink(os.path.join(path, "packed-refs"))
    elif how == "both":
        g("pack-refs", "--all")
        # a loose value over a packed one: the loose one wins
        g("update-ref", "refs/heads/main", feature)
        g("update-ref", "refs/heads/x.y", main)
        # deleted after packing: gone from both
        g("update-ref", "-d", "refs/heads/gone")
        g("update-ref", "-d", "refs/tags/gone")
    elif how == "odd":
        g("pack-refs", "--all")
        g("branch", "n\u00e4me", main)
        write(path, "refs/heads/locked", main + "\n")
        write(path, "refs/heads/locked.lock", "garbage")
        write(path, "refs/heads/broken", "not a ref\n")
        write(path, "refs/heads/feature.lock", feature[:10])
        g("symbolic-ref", "HEAD", "refs/heads/missing")
    elif how == "detached":
        g("update-ref", "--no-deref", "HEAD", main)
    elif how == "stale-packed":
        # a packed entry the loose file supersedes, and a packed-only ref deleted afterwards
        g("pack-refs", "--all")
        write(path, "refs/heads/feature", main + "\n")
        g("update-ref", "-d", "refs/heads/a+b")
    return path


@pytest.mark.parametrize("how", ["packed", "loose", "both", "odd", "detached", "stale-packed"])
def test_ref_reads_match_git(gitaly_node, how):
    shape(gitaly_node, how + ".git", how)
    check_all(gitaly_node, how + ".git")


def test_peeled_tags_and_symbolic_refs(gitaly_node):
    path = shape(gitaly_node, "peeled.git", "packed")
    with open(os.path.join(path, "packed-refs")) as f:
        assert any(line.startswith("^") for line in f), "an annotated tag is packed with its peeled line"
    s = gitaly_node.stub("RefService")
    repo = gitaly_node.repo("peeled.git")
    assert s.RefExists(R().RefExistsRequest(repository=repo, ref=b"refs/tags/v1")).value is True
    assert s.RefExists(R().RefExistsRequest(repository=repo, ref=b"refs/heads/alias")).value is True
    assert s.RefExists(R().RefExistsRequest(repository=repo, ref=b"refs/heads/dangling")).value is False
    b = s.FindBranch(R().FindBranchRequest(repository=repo, name=b"alias")).branch
    assert b.name == b"alias"
    assert b.target_commit.id == git("--git-dir", path, "rev-parse", "refs/heads/feature").strip()


def test_a_ref_to_a_missing_object_is_answered_as_git_does(gitaly_node):
    path = shape(gitaly_node, "broken-obj.git", "loose")
    write(path, "refs/heads/main", "1" * 40 + "\n")
    check_all(gitaly_node, "broken-obj.git")


def test_plain_refs_are_read_without_running_git(tmp_path):
    """With a git that logs its sub-commands, the plain answers start none;
    a ref the reader does not handle goes to git and still gets git's answer."""
    from gitaly_itest import GitalyNode
    real = git("--exec-path").strip() + "/git"
    log = tmp_path / "git.log"
    wrapper = tmp_path / "git"
    wrapper.write_text('#!/bin/sh\necho "$@" >>%s\nexec %s "$@"\n' % (log, real))
    wrapper.chmod(0o755)
    node = GitalyNode(str(tmp_path / "n"), extra_config='[git]\nbin_path = "%s"\n' % wrapper).start()
    try:
        shape(node, "plain.git", "both")
        s = node.stub("RefService")
        repo = node.repo("plain.git")
        head = git_head(node.repo_path("plain.git"))[1]
        log.write_text("")
        for _ in range(3):
            assert s.RefExists(R().RefExistsRequest(repository=repo, ref=b"refs/heads/main")).value
            assert not s.RefExists(R().RefExistsRequest(repository=repo, ref=b"refs/heads/gone")).value
            assert s.FindBranch(R().FindBranchRequest(repository=repo, name=b"x.y")).HasField("branch")
            assert not s.FindBranch(R().FindBranchRequest(repository=repo, name=b"gone")).HasField("branch")
            assert s.FindDefaultBranchName(R().FindDefaultBranchNameRequest(repository=repo)).name == head
        ran = [line.split() for line in log.read_text().splitlines()]
        assert not [a for a in ran if {"show-ref", "for-each-ref", "symbolic-ref"} & set(a)], ran
        # a name outside the reader's set: git answers
        e = outcome(lambda: s.FindBranch(R().FindBranchRequest(repository=repo, name=b"f*")))
        assert e == ("error", grpc.StatusCode.INVALID_ARGUMENT)
        assert any("for-each-ref" in line for line in log.read_text().splitlines())
    finally:
        node.stop()
