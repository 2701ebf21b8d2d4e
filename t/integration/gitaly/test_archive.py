"""RepositoryService/GetArchive against a node: the bytes `git archive` itself writes (and upstream's
compressor command lines), paths, excludes, path elision, bad requests, and a slow reader of a big
archive."""
import bz2
import gzip
import io
import os
import random
import subprocess
import tarfile
import time
import zipfile

import grpc
import pytest

from gitaly_itest import BUILD, git, pb
from helpers_reads import rpc_error

R = lambda: pb("repository")  # noqa: E731
F = lambda: R().GetArchiveRequest  # noqa: E731

BIG = 24 * 1024 * 1024
POINTER = ("version https://git-lfs.github.com/spec/v1\n"
           "oid sha256:91eff75a492a3ed0dfcb544d7f31326bc4014c8551849c192fd1e48d4dd2c897\nsize 1575078\n")


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("archive"))
    work, bare = os.path.join(base, "work"), os.path.join(base, "archive.git")
    git("init", "-q", "-b", "main", work)
    files = {
        ".gitattributes": "*.lfs filter=lfs diff=lfs merge=lfs -text\n",
        "pointer.lfs": POINTER,
        "LICENSE": "license content",
        "README.md": "readme content",
        "subdir/subfile": "subfile content",
        "subdir/subsubdir/subsubfile": "subsubfile content",
        "--output=/tmp/gitaly-archive-injected/non/existent/injected file": "injected content",
    }
    for name, content in files.items():
        full = os.path.join(work, name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(content)
    with open(os.path.join(work, "big.bin"), "wb") as f:
        f.write(random.Random(7).randbytes(BIG))
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "files", cwd=work)
    git("clone", "-q", "--bare", work, bare)
    commit = git("--git-dir", bare, "rev-parse", "main").strip()
    empty_tree = git("--git-dir", bare, "hash-object", "-t", "tree", "-w", "--stdin", input=b"").strip()
    empty = git("--git-dir", bare, "commit-tree", "-m", "empty", empty_tree).strip()
    git("--git-dir", bare, "update-ref", "refs/heads/empty", empty)
    return {"path": bare, "commit": commit, "empty": empty, "files": files}


@pytest.fixture
def node(gitaly_node, facts):
    import shutil
    shutil.copytree(facts["path"], gitaly_node.repo_path("archive.git"), copy_function=os.link)
    gitaly_node.archive_repo = gitaly_node.repo("archive.git")
    return gitaly_node


def archive(node, **kw):
    kw.setdefault("repository", node.archive_repo)
    return b"".join(m.data for m in node.stub("RepositoryService").GetArchive(F()(**kw)))


def git_archive(facts, *args):
    return subprocess.run(["git", "--git-dir", facts["path"], "archive"] + list(args),
                          capture_output=True, check=True).stdout


def names(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return sorted(m.name + ("/" if m.isdir() else "") for m in t.getmembers())


def contents(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return {m.name: t.extractfile(m).read().decode() for m in t.getmembers()
                if m.isfile() and m.name != "p/big.bin"}


def test_every_format_is_what_git_archive_writes(node, facts):
    c = facts["commit"]
    tar = git_archive(facts, "--format=tar", "--prefix=p/", c)
    assert archive(node, commit_id=c, prefix="p", format=F().TAR) == tar
    assert archive(node, commit_id=c, prefix="p", format=F().ZIP) == git_archive(facts, "--format=zip",
                                                                                  "--prefix=p/", c)
    gz = archive(node, commit_id=c, prefix="p", format=F().TAR_GZ)
    assert gzip.decompress(gz) == tar
    # upstream compresses with `gzip -c -n`: no name, no time stamp, so the bytes are fixed
    assert gz == subprocess.run(["gzip", "-c", "-n"], input=tar, capture_output=True, check=True).stdout
    assert bz2.decompress(archive(node, commit_id=c, prefix="p", format=F().TAR_BZ2)) == tar
    with zipfile.ZipFile(io.BytesIO(archive(node, commit_id="main", prefix="p", format=F().ZIP))) as z:
        assert z.read("p/subdir/subfile") == b"subfile content"


def test_paths_excludes_and_elision(node, facts):
    c = facts["commit"]
    for path in (b"subdir", b"subdir/", b"/subdir", b"x/../subdir"):
        data = archive(node, commit_id=c, prefix="p", format=F().TAR, path=path)
        assert names(data) == ["p/", "p/subdir/", "p/subdir/subfile", "p/subdir/subsubdir/",
                               "p/subdir/subsubdir/subsubfile"]
        assert data == git_archive(facts, "--format=tar", "--prefix=p/", c, "--", "subdir")
    data = archive(node, commit_id=c, prefix="p", format=F().TAR, exclude=[b"subdir", b"big.bin"])
    assert "p/subdir/" not in names(data) and "p/big.bin" not in names(data)
    assert contents(data)["p/LICENSE"] == "license content"
    # elided: the subtree is the root of the archive, excludes relative to it
    # git archives a tree (elided) with the current time as mtime, so both runs must fall in one
    # second: a pair that straddles a second boundary is taken again
    for _ in range(3):
        data = archive(node, commit_id=c, prefix="p", format=F().TAR, path=b"subdir/", elide_path=True,
                       exclude=[b"subdir/subsubdir"])
        want = git_archive(facts, "--format=tar", "--prefix=p/", c + ":subdir", "--", ":(exclude)subsubdir")
        if data == want:
            break
    assert names(data) == ["p/", "p/subfile"]
    assert data == want
    # an empty prefix gives entries under "/", as upstream's
    data = archive(node, commit_id=c, format=F().TAR, path=b"subdir/subsubdir")
    assert names(data)[0] == "/"
    assert "/subdir/subsubdir/subsubfile" in names(data)


def test_lfs_pointers_are_kept_by_a_node_without_a_gitlab_url(node, facts):
    data = archive(node, commit_id=facts["commit"], prefix="p", format=F().TAR, include_lfs_blobs=True)
    assert contents(data)["p/pointer.lfs"] == POINTER


def test_a_path_is_never_an_option(node, facts):
    target = "/tmp/gitaly-archive-injected/non/existent"
    path = "--output=" + target
    data = archive(node, commit_id=facts["commit"], prefix="p", format=F().TAR, path=path.encode())
    assert contents(data) == {"p/" + path + "/injected file": "injected content"}
    assert not os.path.exists(target)


def test_bad_requests_get_upstreams_codes(node, facts):
    c = facts["commit"]
    cases = [
        (dict(repository=node.repo("missing.git"), commit_id=c), grpc.StatusCode.NOT_FOUND, None),
        (dict(repository=node.repo("x.git", storage="fake"), commit_id=c), grpc.StatusCode.INVALID_ARGUMENT, None),
        (dict(commit_id=""), grpc.StatusCode.INVALID_ARGUMENT, "invalid commitId: empty revision"),
        (dict(commit_id="--output=x"), grpc.StatusCode.INVALID_ARGUMENT,
         "invalid commitId: revision can't start with '-'"),
        (dict(commit_id=c, format=9), grpc.StatusCode.INVALID_ARGUMENT, "invalid format"),
        (dict(commit_id=c, path=b"unknown-path"), grpc.StatusCode.FAILED_PRECONDITION, "path doesn't exist"),
        (dict(commit_id=facts["empty"], path=b"."), grpc.StatusCode.FAILED_PRECONDITION, "path doesn't exist"),
        (dict(commit_id=c, exclude=[b"README.md", b"files/"]), grpc.StatusCode.FAILED_PRECONDITION,
         "exclude[1] doesn't exist"),
        (dict(commit_id=c, path=b"../../foo"), grpc.StatusCode.INVALID_ARGUMENT,
         "relative path escapes root directory"),
        (dict(commit_id=c, exclude=[b"subdir/../../x"]), grpc.StatusCode.INVALID_ARGUMENT,
         "relative path escapes root directory"),
        (dict(commit_id=c, elide_path=True, path=b"subdir/subsubdir/subsubfile", exclude=[b"subdir/subsubdir"]),
         grpc.StatusCode.INVALID_ARGUMENT,
         'invalid exclude: "subdir/subsubdir" is not a subdirectory of "subdir/subsubdir/subsubfile"'),
        (dict(commit_id="1" * 40, path=b"README.md"), grpc.StatusCode.FAILED_PRECONDITION, "path doesn't exist"),
    ]
    for kw, code, msg in cases:
        kw.setdefault("repository", node.archive_repo)
        kw.setdefault("format", F().TAR)
        e = rpc_error(lambda: list(node.stub("RepositoryService").GetArchive(F()(**kw))))
        assert e.code() == code, (kw, e)
        if msg:
            assert e.details() == msg, (kw, e.details())
    # an unknown commit for the whole tree is not a precondition failure
    e = rpc_error(lambda: archive(node, commit_id="1" * 40, format=F().TAR))
    assert e.code() not in (grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION)


def _sanitized():
    out = subprocess.run(["ldd", os.path.join(BUILD, "gitaly", "gitaly")], capture_output=True).stdout
    return b"libasan" in out


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def _archive_pids(repo_path):
    pids = []
    for d in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"archive" in argv and repo_path.encode() in argv:
            pids.append(int(d))
    return pids


def test_a_slow_reader_holds_git_back_and_a_cancel_stops_it(node, facts):
    archive(node, commit_id=facts["commit"], format=F().TAR, path=b"README.md")  # warm up
    before = _rss_kb(node.proc.pid)
    it = node.stub("RepositoryService").GetArchive(F()(repository=node.archive_repo, commit_id=facts["commit"],
                                                         format=F().TAR))
    first = next(it)
    time.sleep(1.0)  # the client reads nothing: the server has to stop reading git
    during = _rss_kb(node.proc.pid)
    assert _archive_pids(node.repo_path("archive.git"))
    if not _sanitized():
        assert during - before < 12 * 1024, (before, during)
    it.cancel()
    deadline = time.time() + 10
    while time.time() < deadline and _archive_pids(node.repo_path("archive.git")):
        time.sleep(0.05)
    assert _archive_pids(node.repo_path("archive.git")) == []
    # and a complete read is the whole archive
    assert first.data
    data = archive(node, commit_id=facts["commit"], format=F().TAR)
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        assert len(t.extractfile("/big.bin").read()) == BIG
