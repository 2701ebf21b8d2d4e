"""CommitDiff's limits and edge cases, case by case against upstream 16.8's behaviour (issue 17), and
DiffStats' batching. Each repository is built here with git; expectations are derived from git's own
output where a number depends on it, so the boundaries (>= for lines and bytes, > for files) are exact."""
import os

import grpc
import pytest

from gitaly_itest import git, pb
from helpers_reads import rpc_error
from test_diff import commit_diff, counted_bytes, git_patches, stub

D = lambda: pb("diff")  # noqa: E731
BIG = dict(max_files=9000, max_lines=9000, max_bytes=90000, max_patch_bytes=90000)
SAFE = dict(safe_max_files=9000, safe_max_lines=9000, safe_max_bytes=90000)


def _write(work, name, data, mode=None):
    full = os.path.join(work, name)
    os.makedirs(os.path.dirname(full) or work, exist_ok=True)
    with open(full, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    if mode:
        os.chmod(full, mode)


def _commit(work, msg):
    git("add", "-A", cwd=work)
    git("commit", "-q", "--allow-empty", "-m", msg, cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


def _trio(work):
    """Three files, each with one hunk: the limits' test subject."""
    _write(work, "one.x1", "".join("first %d\n" % i for i in range(9)))
    _write(work, "two.x2", "".join("second %d\n" % i for i in range(9)))
    _write(work, "three.x3", "".join("third %d\n" % i for i in range(20)))
    left = _commit(work, "trio")
    _write(work, "one.x1", "".join("first %d\n" % i if i != 4 else "FIRST\n" for i in range(9)))
    _write(work, "two.x2", "".join("second %d\n" % i for i in range(4)) + "".join("new %d\n" % i for i in range(8))
           + "".join("second %d\n" % i for i in range(4, 9)))
    _write(work, "three.x3", "".join("third %d\n" % i if i not in (0, 10, 19) else "THIRD %d\n" % i
                                     for i in range(20)))
    return left, _commit(work, "trio changed")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("dlimits"))
    work = os.path.join(base, "w")
    git("init", "-q", "-b", "main", work)
    git("config", "core.autocrlf", "false", cwd=work)
    facts = {}
    facts["trio_l"], facts["trio_r"] = _trio(work)
    # edge cases: names, endings, modes, whitespace, extension keys, renames
    _write(work, "mode.sh", "#!/bin/sh\n")
    _write(work, "nonl.txt", "no newline")
    _write(work, "Makefile", "all:\n")
    _write(work, ".gitignore", "*.o\n")
    _write(work, "dir.d/plain", "plain\n")
    _write(work, "pack.tar.gz", "gz\n")
    _write(work, "spaces.txt", "a b\n")
    _write(work, "zz_last_ws.txt", "x y\n")
    _write(work, "gone.txt", "".join("common line %d\n" % i for i in range(6)) + "".join(
        "old only %d\n" % i for i in range(9)))
    facts["edge_l"] = _commit(work, "edge base")
    os.chmod(os.path.join(work, "mode.sh"), 0o755)
    _write(work, "nonl.txt", "still no newline")
    _write(work, "Makefile", "all:\n\ttrue\n")
    _write(work, ".gitignore", "*.o\n*.a\n")
    _write(work, "dir.d/plain", "plain text\n")
    _write(work, "pack.tar.gz", "gz2\n")
    _write(work, "spaces.txt", "ab\n")
    _write(work, "zz_last_ws.txt", "x  y\n")
    _write(work, "tab\there\nnl.txt", "odd name\n")
    # about 40% alike: a rename for CommitDiff (30%), an addition and deletion for CommitDelta (50%)
    os.unlink(os.path.join(work, "gone.txt"))
    _write(work, "moved.txt", "".join("common line %d\n" % i for i in range(6)) + "".join(
        "new only %d\n" % i for i in range(9)))
    facts["edge_r"] = _commit(work, "edge changed")
    # single-line files whose patch is exactly 5120 and 5121 bytes ("@@ -0,0 +1 @@\n+" and "\n" are 16 more)
    _write(work, "at_limit.txt", "x" * (5120 - 16) + "\n")
    _write(work, "over_limit.txt", "y" * (5121 - 16) + "\n")
    facts["chunk"] = _commit(work, "chunk sizes")
    # 1001 small files for DiffStats' batches
    for i in range(1001):
        _write(work, "stats/f%04d" % i, "%d\n" % i)
    facts["stats"] = _commit(work, "many stats")
    bare = os.path.join(base, "limits.git")
    git("clone", "-q", "--bare", work, bare)
    facts["path"] = bare
    return facts


@pytest.fixture
def node(gitaly_node, repo):
    import shutil
    shutil.copytree(repo["path"], gitaly_node.repo_path("limits.git"), copy_function=os.link)
    gitaly_node.diff_repo = gitaly_node.repo("limits.git")
    return gitaly_node


def trio(node, repo, **kw):
    files = commit_diff(node, repo["trio_l"], repo["trio_r"], **kw)
    return [(f["from_path"].decode(), f["overflow"], f["collapsed"], f["too_large"], bool(f["patch"]))
            for f in files]


def trio_counts(repo):
    patches = git_patches(repo, repo["trio_l"], repo["trio_r"])
    lines = [sum(1 for ln in p.split(b"\n")[:-1] if not ln.startswith(b"@@")) for p in patches]
    return lines, [counted_bytes(p) for p in patches], patches


NAMES = ["one.x1", "three.x3", "two.x2"]   # git's order


def test_trio_without_limits(node, repo):
    lines, _, patches = trio_counts(repo)
    # counted: context and changed lines, hunk headers not; one hunk, three hunks, one hunk
    assert lines == [3 + 2 + 3, (2 + 3) + (3 + 2 + 3) + (3 + 2), 3 + 8 + 3]
    assert trio(node, repo) == [(n, False, False, False, True) for n in NAMES]
    # numbers without enforce_limits are ignored
    assert trio(node, repo, max_files=1, max_lines=1, max_bytes=1, max_patch_bytes=1) == \
        [(n, False, False, False, True) for n in NAMES]
    assert [f["patch"] for f in commit_diff(node, repo["trio_l"], repo["trio_r"])] == patches


@pytest.mark.parametrize("collect", [False, True])
def test_trio_max_files(node, repo, collect):
    got = trio(node, repo, enforce_limits=True, collect_all_paths=collect, **dict(BIG, max_files=2))
    # the file past the limit: its paths with collect_all_paths, an empty marker without
    last = (NAMES[2], True, False, False, False) if collect else ("", True, False, False, False)
    assert got == [(NAMES[0], False, False, False, True), (NAMES[1], False, False, False, True), last]
    # max_files counts files: two files are not over a limit of 2, but three are
    assert len(trio(node, repo, enforce_limits=True, **dict(BIG, max_files=3))) == 3


@pytest.mark.parametrize("collect", [False, True])
def test_trio_max_lines_reached_is_overflow(node, repo, collect):
    lines, _, _ = trio_counts(repo)
    # reaching max_lines (not only passing it) makes the file that reaches it the overflow
    got = trio(node, repo, enforce_limits=True, collect_all_paths=collect,
               **dict(BIG, max_lines=lines[0] + lines[1]))
    assert [g[1] for g in got] == ([False, True, True] if collect else [False, True])
    assert got[1][0] == ("" if not collect else NAMES[1])
    got = trio(node, repo, enforce_limits=True, collect_all_paths=collect,
               **dict(BIG, max_lines=lines[0] + lines[1] + 1))
    assert [g[1] for g in got] == [False, False, True]
    assert got[2] == ((NAMES[2], True, False, False, False) if collect else ("", True, False, False, False))


@pytest.mark.parametrize("collect", [False, True])
def test_trio_max_bytes_reached_is_overflow(node, repo, collect):
    _, nbytes, _ = trio_counts(repo)
    got = trio(node, repo, enforce_limits=True, collect_all_paths=collect, **dict(BIG, max_bytes=nbytes[0]))
    assert [g[1] for g in got] == ([True] if not collect else [True, True, True])
    got = trio(node, repo, enforce_limits=True, collect_all_paths=collect, **dict(BIG, max_bytes=nbytes[0] + 1))
    assert [g[1] for g in got] == ([False, True] if not collect else [False, True, True])
    assert got[0][4] and not any(g[4] for g in got[1:])


def test_enforce_limits_with_zero_numbers(node, repo):
    """enforce_limits with the numbers left at 0: the first file already reaches max_lines 0."""
    msgs = list(stub(node).CommitDiff(D().CommitDiffRequest(
        repository=node.diff_repo, left_commit_id=repo["trio_l"], right_commit_id=repo["trio_r"],
        enforce_limits=True)))
    assert len(msgs) == 1
    m = msgs[0]
    assert m.overflow_marker and m.end_of_patch and (m.from_path, m.to_path, m.from_id, m.raw_patch_data) == \
        (b"", b"", "", b"")


def test_max_patch_bytes_per_extension(node, repo):
    lines, _, patches = trio_counts(repo)
    # the upstream case: a tiny max_patch_bytes, a large one for one extension
    got = trio(node, repo, enforce_limits=True, max_patch_bytes_for_file_extension={".x2": 9000},
               **dict(BIG, max_patch_bytes=10))
    assert got == [(NAMES[0], False, False, True, False), (NAMES[1], False, False, True, False),
                   (NAMES[2], False, False, False, True)]
    # a patch of exactly max_patch_bytes is too large already
    got = trio(node, repo, enforce_limits=True, **dict(BIG, max_patch_bytes=len(patches[0])))
    assert [g[3] for g in got] == [len(p) >= len(patches[0]) for p in patches]
    got = trio(node, repo, enforce_limits=True, **dict(BIG, max_patch_bytes=len(patches[0]) + 1))
    assert not got[0][3]
    # a too-large patch gives its lines back: the next file is not an overflow
    got = trio(node, repo, enforce_limits=True, max_patch_bytes_for_file_extension={".x1": 1},
               **dict(BIG, max_lines=lines[1] + lines[2] + 1))
    assert [g[1] for g in got] == [False, False, False] and got[0][3]


def test_extension_keys(node, repo):
    """The key is the extension of the base name with its dot, or the whole base name without one."""
    def too_large(ext):
        files = commit_diff(node, repo["edge_l"], repo["edge_r"], enforce_limits=True,
                            max_patch_bytes_for_file_extension=ext, **BIG)
        return sorted(f["to_path"].decode() for f in files if f["too_large"])
    assert too_large({"Makefile": 1}) == ["Makefile"]
    assert too_large({".gitignore": 1}) == [".gitignore"]
    assert too_large({"plain": 1}) == ["dir.d/plain"]        # dir.d's dot is not the file's
    assert too_large({".gz": 1}) == ["pack.tar.gz"]
    assert too_large({".tar.gz": 1, "gitignore": 1, ".d": 1}) == []


@pytest.mark.parametrize("which", ["safe_max_files", "safe_max_lines", "safe_max_bytes"])
def test_trio_collapse(node, repo, which):
    lines, nbytes, _ = trio_counts(repo)
    assert lines[1] > lines[2] and nbytes[1] > nbytes[2]
    # files: the second file is past 1; lines and bytes: three.x3 takes the count past the first file's and
    # two.x2's together, collapses and gives its share back, so two.x2 (equal is not over) keeps its patch
    value = {"safe_max_files": 1, "safe_max_lines": lines[0] + lines[2], "safe_max_bytes": nbytes[0] + nbytes[2]}
    expect = [False, True, True] if which == "safe_max_files" else [False, True, False]
    got = trio(node, repo, enforce_limits=True, collapse_diffs=True,
               **dict(BIG, **dict(SAFE, **{which: value[which]})))
    assert [g[2] for g in got] == expect
    assert all(g[4] != g[2] for g in got)   # collapsed files lose their patch, the others keep it
    got = trio(node, repo, collapse_diffs=True, **dict(SAFE, **{which: value[which] - 1}))
    assert [g[2] for g in got] == {"safe_max_files": [True, True, True], "safe_max_lines": [False, True, True],
                                   # the bytes given back are the whole patch, hunk headers included,
                                   # though those were never counted (as upstream): two.x2 still fits
                                   "safe_max_bytes": [False, True, False]}[which]


def test_collapse_gives_back_hunk_headers_too(node, repo):
    _, nbytes, patches = trio_counts(repo)
    headers = len(patches[1]) - nbytes[1]          # three.x3's three "@@" lines
    assert headers > 0
    for v, last in ((nbytes[0] + nbytes[2] - headers, False), (nbytes[0] + nbytes[2] - headers - 1, True)):
        got = trio(node, repo, collapse_diffs=True, **dict(SAFE, safe_max_bytes=v))
        assert [g[2] for g in got] == [False, True, last]


def test_trio_collapse_needs_collapse_diffs(node, repo):
    # collapse_diffs works without enforce_limits, and without collapse_diffs the safe limits do nothing
    assert not any(g[2] for g in trio(node, repo, safe_max_files=0, safe_max_lines=0, safe_max_bytes=0))


def test_collapse_skips_files_without_counted_lines(node, repo):
    """collapse_diffs with safe limits of 0: every file with lines collapses; a mode change has none."""
    files = commit_diff(node, repo["edge_l"], repo["edge_r"], collapse_diffs=True)
    by = {f["to_path"]: f for f in files}
    assert by[b"mode.sh"]["new_mode"] == 0o100755 and not by[b"mode.sh"]["collapsed"]
    assert by[b"Makefile"]["collapsed"] and by[b"Makefile"]["patch"] == b""
    assert all(f["collapsed"] for f in files if f["to_path"] != b"mode.sh")


def test_max_patch_bytes_zero(node, repo):
    """0 marks every file git printed a section for, even one with no patch lines (a mode change);
    a file git printed nothing for (whitespace ignored) skips the limits."""
    W = D().CommitDiffRequest.WhitespaceChanges
    files = commit_diff(node, repo["edge_l"], repo["edge_r"], enforce_limits=True,
                        whitespace_changes=W.Value("WHITESPACE_CHANGES_IGNORE"), **dict(BIG, max_patch_bytes=0))
    by = {f["to_path"]: f for f in files}
    assert by[b"mode.sh"]["too_large"]
    assert not by[b"zz_last_ws.txt"]["too_large"] and by[b"zz_last_ws.txt"]["patch"] == b""
    assert all(f["too_large"] for f in files if f["to_path"] != b"zz_last_ws.txt")


def test_whitespace_modes(node, repo):
    W = D().CommitDiffRequest.WhitespaceChanges

    def patches(mode):
        files = commit_diff(node, repo["edge_l"], repo["edge_r"], paths=[b"spaces.txt", b"zz_last_ws.txt"],
                            whitespace_changes=W.Value(mode))
        return {f["to_path"].decode(): f["patch"] for f in files}
    assert patches("WHITESPACE_CHANGES_UNSPECIFIED") == {
        "spaces.txt": b"@@ -1 +1 @@\n-a b\n+ab\n", "zz_last_ws.txt": b"@@ -1 +1 @@\n-x y\n+x  y\n"}
    # ignoring changes in amount: the last file (git prints nothing for it) still ends the stream
    assert patches("WHITESPACE_CHANGES_IGNORE") == {"spaces.txt": b"@@ -1 +1 @@\n-a b\n+ab\n", "zz_last_ws.txt": b""}
    assert patches("WHITESPACE_CHANGES_IGNORE_ALL") == {"spaces.txt": b"", "zz_last_ws.txt": b""}


def test_names_endings_and_renames(node, repo):
    files = commit_diff(node, repo["edge_l"], repo["edge_r"])
    by = {f["to_path"]: f for f in files}
    odd = by[b"tab\there\nnl.txt"]
    assert odd["from_path"] == b"tab\there\nnl.txt" and odd["old_mode"] == 0 and odd["from_id"] == "0" * 40
    assert odd["patch"] == b"@@ -0,0 +1 @@\n+odd name\n"
    assert by[b"nonl.txt"]["patch"] == (b"@@ -1 +1 @@\n-no newline\n\\ No newline at end of file\n"
                                       b"+still no newline\n\\ No newline at end of file\n")
    assert by[b"moved.txt"]["from_path"] == b"gone.txt"
    assert [f["patch"] for f in files] == git_patches(repo, "--find-renames=30%", repo["edge_l"], repo["edge_r"])
    # CommitDelta finds renames at git's default 50%: the same pair is a deletion and an addition
    deltas = [d for m in stub(node).CommitDelta(D().CommitDeltaRequest(
        repository=node.diff_repo, left_commit_id=repo["edge_l"], right_commit_id=repo["edge_r"])) for d in m.deltas]
    assert (b"gone.txt", b"gone.txt") in [(d.from_path, d.to_path) for d in deltas]
    assert (b"moved.txt", b"moved.txt") in [(d.from_path, d.to_path) for d in deltas]


def test_repository_diff_noprefix_is_overridden(gitaly_node, repo):
    import shutil
    shutil.copytree(repo["path"], gitaly_node.repo_path("noprefix.git"))
    git("config", "diff.noprefix", "true", cwd=gitaly_node.repo_path("noprefix.git"))
    gitaly_node.diff_repo = gitaly_node.repo("noprefix.git")
    for mode in ("DEFAULT", "WORDDIFF"):
        files = commit_diff(gitaly_node, repo["trio_l"], repo["trio_r"],
                            diff_mode=D().CommitDiffRequest.DiffMode.Value(mode))
        assert [f["from_path"].decode() for f in files] == NAMES and all(f["patch"] for f in files)


def test_patch_chunking_boundary(node, repo):
    req = D().CommitDiffRequest(repository=node.diff_repo, left_commit_id=repo["edge_r"],
                                right_commit_id=repo["chunk"])
    msgs = list(stub(node).CommitDiff(req))
    # 5120 bytes fit one message; 5121 take two, the second with only the last byte and end_of_patch
    assert [(m.to_path, len(m.raw_patch_data), m.end_of_patch) for m in msgs] == [
        (b"at_limit.txt", 5120, True), (b"over_limit.txt", 5120, False), (b"", 1, True)]
    assert msgs[1].to_id and not msgs[2].to_id and msgs[2].raw_patch_data == b"\n"


def test_blob_over_big_file_threshold_is_binary(gitaly_node, tmp_path):
    """Blobs above core.bigFileThreshold (50 MiB) are not diffed as text."""
    work = str(tmp_path / "huge")
    git("init", "-q", "-b", "main", work)
    body = b"1" * (50 * 1024 * 1024)
    _write(work, "huge", body + b"\n\n\n\nleft\n")
    _commit(work, "huge one")
    _write(work, "huge", body + b"\n\n\n\nright\n")
    _commit(work, "huge two")
    git("clone", "-q", "--bare", work, gitaly_node.repo_path("huge.git"))
    gitaly_node.diff_repo = gitaly_node.repo("huge.git")
    files = commit_diff(gitaly_node, "main~1", "main")
    assert len(files) == 1 and files[0]["binary"]
    assert files[0]["patch"] == b"Binary files a/huge and b/huge differ\n"


def test_commit_diff_validation_and_missing_commits(node, repo):
    e = rpc_error(lambda: list(stub(node).CommitDiff(D().CommitDiffRequest(
        left_commit_id=repo["trio_l"], right_commit_id=repo["trio_r"]))))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "repository not set"
    missing = "3" * 40
    e = rpc_error(lambda: commit_diff(node, missing, missing))
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "exit status 128")


def test_diff_stats_batches_of_1000(node, repo):
    msgs = list(stub(node).DiffStats(D().DiffStatsRequest(
        repository=node.diff_repo, left_commit_id=repo["chunk"], right_commit_id=repo["stats"])))
    assert [len(m.stats) for m in msgs] == [1000, 1]
    stats = [s for m in msgs for s in m.stats]
    assert [s.path for s in stats] == [b"stats/f%04d" % i for i in range(1001)]
    assert all((s.additions, s.deletions, s.old_path) == (1, 0, b"") for s in stats)


def test_diff_stats_edge_cases(node, repo):
    stats = {s.path: s for m in stub(node).DiffStats(D().DiffStatsRequest(
        repository=node.diff_repo, left_commit_id=repo["edge_l"], right_commit_id=repo["edge_r"])) for s in m.stats}
    assert (stats[b"tab\there\nnl.txt"].additions, stats[b"tab\there\nnl.txt"].old_path) == (1, b"")
    assert (stats[b"nonl.txt"].additions, stats[b"nonl.txt"].deletions) == (1, 1)
    # a pure mode change is listed with nothing added or deleted
    assert (stats[b"mode.sh"].additions, stats[b"mode.sh"].deletions) == (0, 0)
    # numstat uses git's default rename threshold, like CommitDelta
    assert b"gone.txt" in stats and stats[b"moved.txt"].old_path == b""


@pytest.mark.parametrize("size", [2 * 1024 * 1024, 20 * 1024 * 1024])
def test_long_lines(gitaly_node, tmp_path, size):
    """A text file of one long line (under core.bigFileThreshold): upstream reads lines of any length."""
    work = str(tmp_path / "long")
    git("init", "-q", "-b", "main", work)
    _write(work, "min.js", "a" * size + "\n")
    _write(work, "small.txt", "small\n")
    _commit(work, "one long line")
    _write(work, "min.js", "b" * size + "\n")
    _write(work, "small.txt", "small changed\n")
    _commit(work, "another long line")
    git("clone", "-q", "--bare", work, gitaly_node.repo_path("long.git"))
    gitaly_node.diff_repo = gitaly_node.repo("long.git")
    files = commit_diff(gitaly_node, "main~1", "main")
    assert [f["to_path"] for f in files] == [b"min.js", b"small.txt"]
    assert files[0]["patch"] == b"@@ -1 +1 @@\n-" + b"a" * size + b"\n+" + b"b" * size + b"\n"
    assert files[1]["patch"] == b"@@ -1 +1 @@\n-small\n+small changed\n"
    # as GitLab asks: the long patch is too large, the next file is whole
    files = commit_diff(gitaly_node, "main~1", "main", enforce_limits=True, **dict(BIG, max_patch_bytes=100000))
    assert [(f["too_large"], f["patch"] == b"") for f in files] == [(True, True), (False, False)]
    assert files[1]["patch"] == b"@@ -1 +1 @@\n-small\n+small changed\n"


def test_revisions_starting_with_dash(node, repo):
    """Upstream refuses them while building git's command line: INTERNAL `cmd: ...` (GetPatchID: no code)."""
    s = stub(node)
    good = repo["trio_r"]
    why = "positional arg \"%s\" cannot start with dash '-': invalid argument"
    calls = {
        "CommitDiff": lambda l, r: list(s.CommitDiff(D().CommitDiffRequest(
            repository=node.diff_repo, left_commit_id=l, right_commit_id=r))),
        "CommitDelta": lambda l, r: list(s.CommitDelta(D().CommitDeltaRequest(
            repository=node.diff_repo, left_commit_id=l, right_commit_id=r))),
        "DiffStats": lambda l, r: list(s.DiffStats(D().DiffStatsRequest(
            repository=node.diff_repo, left_commit_id=l, right_commit_id=r))),
        "RawDiff": lambda l, r: list(s.RawDiff(D().RawDiffRequest(
            repository=node.diff_repo, left_commit_id=l, right_commit_id=r))),
    }
    for name, call in calls.items():
        for left, right, bad in (("-R", good, "-R"), (good, "--stat", "--stat"), ("-a", "-b", "-a")):
            e = rpc_error(lambda: call(left, right))
            assert (e.code(), e.details()) == (grpc.StatusCode.INTERNAL, "cmd: " + why % bad), name
    e = rpc_error(lambda: list(s.RawPatch(D().RawPatchRequest(
        repository=node.diff_repo, left_commit_id="-x", right_commit_id=good))))
    assert (e.code(), e.details()) == (grpc.StatusCode.INTERNAL, "cmd: " + why % ("-x.." + good))
    # the right one alone starts no argument of format-patch's with a dash: git answers
    e = rpc_error(lambda: list(s.RawPatch(D().RawPatchRequest(
        repository=node.diff_repo, left_commit_id=good, right_commit_id="-x"))))
    assert (e.code(), e.details()) == (grpc.StatusCode.UNKNOWN, "exit status 128")
    e = rpc_error(lambda: s.GetPatchID(D().GetPatchIDRequest(
        repository=node.diff_repo, old_revision=repo["trio_l"].encode(), new_revision=b"-p")))
    assert (e.code(), e.details()) == (grpc.StatusCode.UNKNOWN, "spawning diff: " + why % "-p")
    # the checks on empty ids come first
    e = rpc_error(lambda: calls["CommitDiff"]("-x", ""))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "empty RightCommitId")


def test_no_difference_is_an_empty_stream(node, repo):
    r = repo["trio_r"]
    s = stub(node)
    assert list(s.CommitDiff(D().CommitDiffRequest(repository=node.diff_repo, left_commit_id=r,
                                                   right_commit_id=r, enforce_limits=True))) == []
    assert list(s.CommitDelta(D().CommitDeltaRequest(repository=node.diff_repo, left_commit_id=r,
                                                     right_commit_id=r))) == []
    assert list(s.DiffStats(D().DiffStatsRequest(repository=node.diff_repo, left_commit_id=r,
                                                 right_commit_id=r))) == []


def test_negative_limits(node, repo):
    """Negative numbers are kept (only upper bounds apply): each is already passed by the first file."""
    assert trio(node, repo, enforce_limits=True, **dict(BIG, max_files=-1)) == [("", True, False, False, False)]
    assert [g[3] for g in trio(node, repo, enforce_limits=True, **dict(BIG, max_patch_bytes=-5))] == [True] * 3
    assert [g[2] for g in trio(node, repo, collapse_diffs=True, **dict(SAFE, safe_max_lines=-1))] == [True] * 3


def test_line_reader_takes_lines_over_1_mib(gitaly_node, tmp_path):
    """The shared line reader used to stop git for good once 1 MiB of one line was buffered (a hang);
    RawBlame, which has no pieces, shows a 2 MiB line now."""
    work = str(tmp_path / "blame")
    git("init", "-q", "-b", "main", work)
    line = b"z" * (2 * 1024 * 1024)
    _write(work, "wide.txt", line + b"\n")
    _commit(work, "wide")
    git("clone", "-q", "--bare", work, gitaly_node.repo_path("wide.git"))
    resps = gitaly_node.stub("CommitService").RawBlame(pb("commit").RawBlameRequest(
        repository=gitaly_node.repo("wide.git"), revision=b"main", path=b"wide.txt"), timeout=60)
    out = b"".join(r.data for r in resps)
    assert out.endswith(b"\t" + line + b"\n")


def test_unset_repository_everywhere(node, repo):
    s, r = stub(node), repo["trio_r"]
    for call in (lambda: list(s.CommitDiff(D().CommitDiffRequest(left_commit_id=r, right_commit_id=r))),
                 lambda: list(s.CommitDelta(D().CommitDeltaRequest(left_commit_id=r, right_commit_id=r))),
                 lambda: list(s.DiffStats(D().DiffStatsRequest(left_commit_id=r, right_commit_id=r))),
                 lambda: list(s.RawDiff(D().RawDiffRequest(left_commit_id=r, right_commit_id=r))),
                 lambda: list(s.RawPatch(D().RawPatchRequest(left_commit_id=r, right_commit_id=r))),
                 lambda: s.GetPatchID(D().GetPatchIDRequest(old_revision=b"a", new_revision=b"b"))):
        e = rpc_error(call)
        assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "repository not set")
