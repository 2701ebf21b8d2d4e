"""DiffService against a node: CommitDiff (and its limits), CommitDelta, DiffStats, FindChangedPaths,
RawDiff, RawPatch, GetPatchID, each compared with what git itself prints."""
import os
import subprocess

import grpc
import pytest

from gitaly_itest import wait_for, pb
from helpers_diff import git_bytes, install_diff_repo, make_diff_repo
from helpers_reads import rpc_error

D = lambda: pb("diff")  # noqa: E731
ZERO = "0" * 40


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    return make_diff_repo(str(tmp_path_factory.mktemp("diffs")))


@pytest.fixture
def node(gitaly_node, facts):
    gitaly_node.diff_repo = install_diff_repo(gitaly_node, facts)
    return gitaly_node


def stub(node):
    return node.stub("DiffService")


def commit_diff(node, left, right, **kw):
    """CommitDiff's messages folded into one dict per file (patch chunks joined)."""
    req = D().CommitDiffRequest(repository=kw.pop("repo", None) or node.diff_repo,
                                left_commit_id=left, right_commit_id=right, **kw)
    files, cur = [], None
    for m in stub(node).CommitDiff(req):
        if cur is None:
            cur = {"from_path": m.from_path, "to_path": m.to_path, "from_id": m.from_id, "to_id": m.to_id,
                   "old_mode": m.old_mode, "new_mode": m.new_mode, "binary": m.binary,
                   "overflow": m.overflow_marker, "collapsed": m.collapsed, "too_large": m.too_large,
                   "patch": bytearray(), "messages": 0}
        else:
            # continuation messages carry only patch bytes
            assert (m.from_path, m.to_path, m.from_id, m.old_mode) == (b"", b"", "", 0)
        cur["patch"] += m.raw_patch_data
        cur["messages"] += 1
        if m.end_of_patch:
            cur["patch"] = bytes(cur["patch"])   # a bytearray while it grows: long patches stay linear
            files.append(cur)
            cur = None
    assert cur is None, "stream ended inside a patch"
    return files


def raw_z(facts, *args):
    """`git diff --raw -z` entries as (status, old mode, new mode, old id, new id, from, to)."""
    toks = git_bytes(facts, "diff", "--raw", "-z", "--abbrev=40", "--full-index", *args).split(b"\0")
    out, i = [], 0
    while i < len(toks) and toks[i]:
        meta = toks[i][1:].decode().split(" ")
        status = meta[4][0]
        src = toks[i + 1]
        if status in "RC":
            dst, i = toks[i + 2], i + 3
        else:
            dst, i = src, i + 2
        out.append((status, int(meta[0], 8), int(meta[1], 8), meta[2], meta[3], src, dst))
    return out


def git_patches(facts, *args):
    """git's patch for each file section: from its first hunk (or Binary line) on, headers dropped."""
    out = git_bytes(facts, "diff", "--patch", "--full-index", *args)
    sections = [b"diff --git " + s for s in out.split(b"\ndiff --git ")]
    sections[0] = sections[0][len(b"diff --git "):]
    res = []
    for s in sections:
        if not s.endswith(b"\n"):
            s += b"\n"
        lines = s.split(b"\n")[:-1]
        start = next((k for k, ln in enumerate(lines) if ln.startswith(b"@@") or ln.startswith(b"Binary")),
                     len(lines))
        res.append(b"".join(ln + b"\n" for ln in lines[start:]))
    return res


# --- CommitDiff ---

def test_commit_diff_matches_git(node, facts):
    files = commit_diff(node, facts["base"], facts["change"])
    expected = []
    for st, om, nm, oid, nid, src, dst in raw_z(facts, "--find-renames=30%", facts["base"], facts["change"]):
        if st == "T":
            # a type change is shown as a deletion followed by an addition
            expected.append((src, src, oid, ZERO, om, 0))
            expected.append((src, src, ZERO, nid, 0, nm))
        else:
            expected.append((src, dst, oid, nid, om, nm))
    got = [(f["from_path"], f["to_path"], f["from_id"], f["to_id"], f["old_mode"], f["new_mode"]) for f in files]
    assert got == expected
    statuses = {e[0] for e in raw_z(facts, "--find-renames=30%", facts["base"], facts["change"])}
    assert {"M", "A", "D", "R", "T"} <= statuses
    assert [f["patch"] for f in files] == git_patches(facts, "--find-renames=30%", facts["base"], facts["change"])
    by_path = {f["to_path"]: f for f in files}
    assert by_path[b"bin.dat"]["binary"] and by_path[b"bin.dat"]["patch"].startswith(b"Binary files")
    assert not by_path[b"mod.txt"]["binary"]
    assert by_path["dir with space/f\u00e9.txt".encode()]["patch"] == b"@@ -1 +1 @@\n-unicode\n+unicode changed\n"
    assert by_path[b"script.sh"]["patch"] == b"" and by_path[b"script.sh"]["new_mode"] == 0o100755
    assert by_path[b"sub"]["patch"] == b"@@ -1 +1 @@\n-Subproject commit %s\n+Subproject commit %s\n" % (
        b"1" * 40, b"2" * 40)
    assert by_path[b"ren_dst.txt"]["from_path"] == b"ren_src.txt"
    assert not any(f["overflow"] or f["collapsed"] or f["too_large"] for f in files)


def test_commit_diff_long_patch_is_chunked(node, facts):
    files = commit_diff(node, facts["change"], facts["many"], paths=[b"many/huge.txt"])
    assert len(files) == 1
    f = files[0]
    assert f["patch"] == git_patches(facts, facts["change"], facts["many"], "--", "many/huge.txt")[0]
    # 5 KiB per message
    assert f["messages"] == (len(f["patch"]) + 5119) // 5120 and f["messages"] > 10


def test_commit_diff_paths_and_whitespace(node, facts):
    files = commit_diff(node, facts["base"], facts["change"], paths=[b"mod.txt", b"ws.txt"])
    assert [f["to_path"] for f in files] == [b"mod.txt", b"ws.txt"]
    W = D().CommitDiffRequest.WhitespaceChanges
    files = commit_diff(node, facts["base"], facts["change"], paths=[b"ws.txt", b"mod.txt"],
                        whitespace_changes=W.Value("WHITESPACE_CHANGES_IGNORE"))
    # git prints no patch for ws.txt, but the raw section still names it
    assert {f["to_path"]: f["patch"] for f in files}[b"ws.txt"] == b""
    assert {f["to_path"]: f["patch"] for f in files}[b"mod.txt"] != b""


def test_commit_diff_word_diff(node, facts):
    files = commit_diff(node, facts["base"], facts["change"], paths=[b"mod.txt"],
                        diff_mode=D().CommitDiffRequest.DiffMode.Value("WORDDIFF"))
    expected = git_bytes(facts, "diff", "--word-diff=porcelain", facts["base"], facts["change"], "--", "mod.txt")
    assert files[0]["patch"] == expected[expected.index(b"@@"):]
    assert b"~\n" in files[0]["patch"]


MANY = ["many/f%02d.txt" % i for i in range(40)] + ["many/huge.txt"]
BIG = dict(max_files=10000, max_lines=1000000, max_bytes=100000000, max_patch_bytes=10000000)


def counted_bytes(patch):
    """What the limits count of a patch: every line but hunk headers, newline included."""
    return sum(len(ln) + 1 for ln in patch.split(b"\n")[:-1] if not ln.startswith(b"@@"))


def test_commit_diff_max_files_overflow(node, facts):
    files = commit_diff(node, facts["change"], facts["many"], enforce_limits=True, **dict(BIG, max_files=5))
    assert [f["to_path"].decode() for f in files[:5]] == MANY[:5]
    assert len(files) == 6
    last = files[5]
    assert last["overflow"] and (last["from_path"], last["to_path"], last["from_id"], last["patch"]) == \
        (b"", b"", "", b"")
    assert not any(f["overflow"] for f in files[:5])
    # without enforce_limits the same numbers do nothing
    assert len(commit_diff(node, facts["change"], facts["many"], **dict(BIG, max_files=5))) == 41


def test_commit_diff_max_lines_and_bytes(node, facts):
    # 30 counted lines per file: the fourth file reaches 100 and becomes the overflow marker
    files = commit_diff(node, facts["change"], facts["many"], enforce_limits=True, **dict(BIG, max_lines=100))
    assert [f["to_path"].decode() for f in files[:3]] == MANY[:3]
    assert len(files) == 4 and files[3]["overflow"] and files[3]["to_path"] == b""
    patches = git_patches(facts, facts["change"], facts["many"])
    limit = counted_bytes(patches[0]) + counted_bytes(patches[1]) + 1
    files = commit_diff(node, facts["change"], facts["many"], enforce_limits=True, **dict(BIG, max_bytes=limit))
    assert len(files) == 3 and files[2]["overflow"] and [f["patch"] for f in files[:2]] == patches[:2]
    files = commit_diff(node, facts["change"], facts["many"], enforce_limits=True,
                        **dict(BIG, max_bytes=limit - 1))
    assert len(files) == 2 and files[1]["overflow"]


def test_commit_diff_collapse_after_safe_limits(node, facts):
    files = commit_diff(node, facts["change"], facts["many"], collapse_diffs=True, safe_max_files=3,
                        safe_max_lines=1000000, safe_max_bytes=100000000)
    assert len(files) == 41
    assert [f["collapsed"] for f in files] == [False] * 3 + [True] * 38
    assert all(f["patch"] == b"" for f in files[3:]) and all(f["patch"] for f in files[:3])
    assert files[10]["to_path"] == MANY[10].encode()
    # safe_max_lines: 30 lines per file, so the third file (90 > 70) collapses, and each later one
    files = commit_diff(node, facts["change"], facts["many"], collapse_diffs=True, safe_max_files=1000,
                        safe_max_lines=70, safe_max_bytes=100000000)
    assert [f["collapsed"] for f in files[:4]] == [False, False, True, True]
    # collapsing gives the lines back: the count never passes 70 + 30
    assert not files[2]["patch"]


def test_commit_diff_max_patch_bytes(node, facts):
    files = commit_diff(node, facts["change"], facts["many"], enforce_limits=True,
                        **dict(BIG, max_patch_bytes=2000))
    by = {f["to_path"]: f for f in files}
    assert by[b"many/huge.txt"]["too_large"] and by[b"many/huge.txt"]["patch"] == b""
    assert not by[b"many/f00.txt"]["too_large"] and by[b"many/f00.txt"]["patch"]
    # a limit for an extension overrides max_patch_bytes
    files = commit_diff(node, facts["change"], facts["many"], enforce_limits=True,
                        max_patch_bytes_for_file_extension={".txt": 100}, **dict(BIG, max_patch_bytes=2000))
    assert all(f["too_large"] and f["patch"] == b"" for f in files)
    files = commit_diff(node, facts["change"], facts["many"], enforce_limits=True,
                        max_patch_bytes_for_file_extension={".md": 1}, **BIG)
    assert not any(f["too_large"] for f in files)


def test_commit_diff_collect_all_paths(node, facts):
    files = commit_diff(node, facts["change"], facts["many"], enforce_limits=True, collect_all_paths=True,
                        **dict(BIG, max_files=5))
    assert [f["to_path"].decode() for f in files] == MANY
    assert [f["overflow"] for f in files] == [False] * 5 + [True] * 36
    assert all(f["patch"] == b"" for f in files[5:])


def test_commit_diff_errors(node, facts):
    def err(**kw):
        return rpc_error(lambda: commit_diff(node, kw.pop("left", facts["base"]), kw.pop("right", facts["change"]),
                                             **kw))
    e = err(left="")
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "empty LeftCommitId")
    e = err(right="")
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "empty RightCommitId")
    e = err(repo=node.repo("missing.git"))
    assert e.code() == grpc.StatusCode.NOT_FOUND and "missing.git" in e.details()
    e = err(repo=node.repo("../escape.git"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    e = err(right="nope")
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "exit status 128")
    out = os.path.join(node.dir, "written")
    e = err(right="--output=" + out)
    # refused as upstream refuses it, while building git's command line
    assert (e.code(), e.details()) == (grpc.StatusCode.INTERNAL, 'cmd: positional arg "--output=%s" cannot start '
                                       "with dash '-': invalid argument" % out) and not os.path.exists(out)
    e = err(paths=[b"../../etc/passwd"])
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "exit status 128")


def test_commit_diff_cancelled_midway_leaves_no_git(node, facts):
    req = D().CommitDiffRequest(repository=node.diff_repo, left_commit_id=facts["base"],
                                right_commit_id=facts["many"])
    it = stub(node).CommitDiff(req)
    next(it)
    it.cancel()
    path = node.repo_path("diff.git").encode()

    def diffs():
        n = 0
        for d in os.listdir("/proc"):
            try:
                argv = open("/proc/%s/cmdline" % d, "rb").read().split(b"\0") if d.isdigit() else []
            except OSError:
                continue
            n += b"diff" in argv and path in argv
        return n
    wait_for(lambda: diffs() == 0, what="git diff gone")
    assert len(commit_diff(node, facts["base"], facts["change"])) > 5


# --- CommitDelta ---

def test_commit_delta_matches_git(node, facts):
    req = D().CommitDeltaRequest(repository=node.diff_repo, left_commit_id=facts["base"],
                                 right_commit_id=facts["many"])
    msgs = list(stub(node).CommitDelta(req))
    got = [(d.from_path, d.to_path, d.from_id, d.to_id, d.old_mode, d.new_mode) for m in msgs for d in m.deltas]
    expected = []
    for st, om, nm, oid, nid, src, dst in raw_z(facts, "--find-renames", facts["base"], facts["many"]):
        if st == "T":
            expected += [(src, src, oid, ZERO, om, 0), (src, src, ZERO, nid, 0, nm)]
        else:
            expected.append((src, dst, oid, nid, om, nm))
    assert got == expected and len(msgs) > 1   # batches of about 5 KiB
    req = D().CommitDeltaRequest(repository=node.diff_repo, left_commit_id=facts["base"],
                                 right_commit_id=facts["change"], paths=[b"mod.txt"])
    assert [d.to_path for m in stub(node).CommitDelta(req) for d in m.deltas] == [b"mod.txt"]
    e = rpc_error(lambda: stub(node).CommitDelta(D().CommitDeltaRequest(
        repository=node.diff_repo, left_commit_id="nope", right_commit_id=facts["change"])))
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "exit status 128")
    e = rpc_error(lambda: stub(node).CommitDelta(D().CommitDeltaRequest(
        repository=node.diff_repo, left_commit_id=facts["base"])))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "empty RightCommitId")


# --- DiffStats ---

def numstat(facts, left, right):
    toks = git_bytes(facts, "diff", "--numstat", "-z", left, right).split(b"\0")
    out, i = [], 0
    while i < len(toks) and toks[i]:
        a, d, p = toks[i].split(b"\t", 2)
        conv = lambda v: 0 if v == b"-" else int(v)  # noqa: E731
        if p == b"":
            out.append((toks[i + 2], toks[i + 1], conv(a), conv(d)))
            i += 3
        else:
            out.append((p, b"", conv(a), conv(d)))
            i += 1
    return out


def test_diff_stats_matches_git(node, facts):
    req = D().DiffStatsRequest(repository=node.diff_repo, left_commit_id=facts["base"],
                               right_commit_id=facts["change"])
    got = [(s.path, s.old_path, s.additions, s.deletions) for m in stub(node).DiffStats(req) for s in m.stats]
    assert got == numstat(facts, facts["base"], facts["change"])
    assert (b"ren_dst.txt", b"ren_src.txt", 1, 0) in got and (b"bin.dat", b"", 0, 0) in got
    for left, right, code, msg in (("", "x", grpc.StatusCode.INVALID_ARGUMENT, "empty LeftCommitId"),
                                   ("x", "", grpc.StatusCode.INVALID_ARGUMENT, "empty RightCommitId"),
                                   ("nope", facts["base"], grpc.StatusCode.FAILED_PRECONDITION, "exit status 128"),
                                   (facts["base"], "1" * 40, grpc.StatusCode.FAILED_PRECONDITION,
                                    "exit status 128")):
        e = rpc_error(lambda: stub(node).DiffStats(D().DiffStatsRequest(
            repository=node.diff_repo, left_commit_id=left, right_commit_id=right)))
        assert (e.code(), e.details()) == (code, msg)


# --- FindChangedPaths ---

def diff_tree(facts, stdin, *flags):
    import subprocess as sp
    e = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_SYSTEM="/dev/null")
    out = sp.run(["git", "--git-dir", facts["path"], "diff-tree", "-z", "--stdin", "-r", "--no-renames",
                  "--no-commit-id", "--diff-filter=AMDTC"] + list(flags), input=stdin.encode(), env=e,
                 capture_output=True, check=True).stdout
    res = []
    parts = out.split(b":")
    for p in parts[1:]:
        if not p or p.startswith(b":"):
            continue
        hdr, path = p.split(b"\0")[:2]
        f = hdr.decode().split(" ")
        res.append((path, "MDTCA".index(f[-1][0]), int(f[0], 8), int(f[1], 8)))
    return res


S = lambda: D().ChangedPaths.Status  # noqa: E731


def changed(node, **kw):
    req = D().FindChangedPathsRequest(repository=node.diff_repo, **kw)
    return [(p.path, p.status, p.old_mode, p.new_mode) for m in stub(node).FindChangedPaths(req) for p in m.paths]


def test_find_changed_paths_matches_git(node, facts):
    order = {"M": S().MODIFIED, "D": S().DELETED, "T": S().TYPE_CHANGE, "C": S().COPIED, "A": S().ADDED}
    fix = lambda rows: [(p, order["MDTCA"[s]], o, n) for p, s, o, n in rows]  # noqa: E731
    R = D().FindChangedPathsRequest.Request
    got = changed(node, requests=[R(commit_request=R.CommitRequest(commit_revision=facts["change"]))])
    assert got == fix(diff_tree(facts, facts["change"] + "\n", "-m"))
    assert (b"del.txt", S().DELETED, 0o100644, 0) in got and (b"type.txt", S().TYPE_CHANGE, 0o100644, 0o120000) in got
    # the deprecated field means the same
    assert changed(node, commits=[facts["change"]]) == got
    # trees, and a commit against chosen parents
    t1 = git_bytes(facts, "rev-parse", facts["base"] + "^{tree}").decode().strip()
    t2 = git_bytes(facts, "rev-parse", facts["many"] + "^{tree}").decode().strip()
    got = changed(node, requests=[R(tree_request=R.TreeRequest(left_tree_revision=facts["base"],
                                                               right_tree_revision=facts["many"]))])
    assert got == fix(diff_tree(facts, "%s %s\n" % (t1, t2)))
    got = changed(node, requests=[R(commit_request=R.CommitRequest(commit_revision=facts["many"],
                                                                   parent_commit_revisions=[facts["base"]]))])
    assert got == fix(diff_tree(facts, "%s %s\n" % (facts["many"], facts["base"]), "-m"))
    # merges: each parent by default, the combined diff on request
    M = D().FindChangedPathsRequest.MergeCommitDiffMode
    got = changed(node, commits=[facts["merge"]])
    assert got == fix(diff_tree(facts, facts["merge"] + "\n", "-m")) and len(got) == 4
    got = changed(node, commits=[facts["merge"]], merge_commit_diff_mode=M.Value("MERGE_COMMIT_DIFF_MODE_ALL_PARENTS"))
    assert got == [(b"mod.txt", S().MODIFIED, 0o100644, 0o100644)] * 2


def test_find_changed_paths_errors(node, facts):
    R = D().FindChangedPathsRequest.Request
    tree = git_bytes(facts, "rev-parse", facts["base"] + "^{tree}").decode().strip()
    blob = git_bytes(facts, "rev-parse", facts["base"] + ":mod.txt").decode().strip()
    cases = [
        (dict(commits=[""]), grpc.StatusCode.INVALID_ARGUMENT, "resolving commit: revision cannot be empty"),
        (dict(commits=["notfound", facts["base"]]), grpc.StatusCode.NOT_FOUND,
         'resolving commit: revision can not be found: "notfound"'),
        (dict(commits=[facts["base"]], requests=[R(commit_request=R.CommitRequest(commit_revision=facts["base"]))]),
         grpc.StatusCode.INVALID_ARGUMENT, "cannot specify both commits and requests"),
        (dict(requests=[R(commit_request=R.CommitRequest(commit_revision=tree))]), grpc.StatusCode.NOT_FOUND,
         'resolving commit: revision can not be found: "%s"' % tree),
        (dict(requests=[R(commit_request=R.CommitRequest(commit_revision=facts["base"],
                                                         parent_commit_revisions=[tree]))]),
         grpc.StatusCode.NOT_FOUND, 'resolving commit parent: revision can not be found: "%s"' % tree),
        (dict(requests=[R(tree_request=R.TreeRequest(left_tree_revision=blob, right_tree_revision=tree))]),
         grpc.StatusCode.NOT_FOUND, 'resolving left tree: revision can not be found: "%s"' % blob),
        (dict(requests=[R(tree_request=R.TreeRequest(left_tree_revision=tree, right_tree_revision=blob))]),
         grpc.StatusCode.NOT_FOUND, 'resolving right tree: revision can not be found: "%s"' % blob),
    ]
    for kw, code, msg in cases:
        e = rpc_error(lambda: changed(node, **kw))
        assert (e.code(), e.details()) == (code, msg), kw
    e = rpc_error(lambda: changed(node, repo=None) if False else list(stub(node).FindChangedPaths(
        D().FindChangedPathsRequest(repository=node.repo("missing.git"), commits=[facts["base"]]))))
    assert e.code() == grpc.StatusCode.NOT_FOUND


# --- RawDiff, RawPatch ---

def raw(node, method, left, right):
    req = getattr(D(), method + "Request")(repository=node.diff_repo, left_commit_id=left, right_commit_id=right)
    return b"".join(m.data for m in getattr(stub(node), method)(req))


def test_raw_diff_and_patch_match_git(node, facts):
    assert raw(node, "RawDiff", facts["base"], facts["many"]) == \
        git_bytes(facts, "diff", "--full-index", facts["base"], facts["many"])
    got = raw(node, "RawPatch", facts["base"], facts["many"])
    assert got == git_bytes(facts, "format-patch", "--stdout", "--signature", "GitLab",
                            facts["base"] + ".." + facts["many"])
    assert got.count(b"\nFrom ") == 1 and got.endswith(b"-- \nGitLab\n\n")
    for method in ("RawDiff", "RawPatch"):
        e = rpc_error(lambda: raw(node, method, "", facts["many"]))
        assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "empty LeftCommitId")
        e = rpc_error(lambda: raw(node, method, facts["base"], ""))
        assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "empty RightCommitId")
        e = rpc_error(lambda: raw(node, method, "nope", facts["many"]))
        assert (e.code(), e.details()) == (grpc.StatusCode.UNKNOWN, "exit status 128")


# --- GetPatchID ---

def patch_id(node, old, new, **kw):
    return stub(node).GetPatchID(D().GetPatchIDRequest(repository=kw.get("repo") or node.diff_repo,
                                                       old_revision=old, new_revision=new)).patch_id


def test_get_patch_id_matches_git(node, facts):
    diff = git_bytes(facts, "diff", "--full-index", facts["base"], facts["many"])
    want = subprocess.run(["git", "patch-id", "--stable"], input=diff, capture_output=True,
                          check=True).stdout.split(b" ")[0].decode()
    assert patch_id(node, facts["base"].encode(), facts["many"].encode()) == want
    assert patch_id(node, b"main~3", b"main~2") != want
    e = rpc_error(lambda: patch_id(node, b"main", b"main"))
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "no difference between old and new revision")
    e = rpc_error(lambda: patch_id(node, b"nope", b"main"))
    assert (e.code(), e.details()) == (grpc.StatusCode.INTERNAL, "waiting for git-diff: exit status 128")
    e = rpc_error(lambda: patch_id(node, b"", b"main"))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "empty OldRevision")
    e = rpc_error(lambda: patch_id(node, b"main", b""))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "empty NewRevision")
    e = rpc_error(lambda: patch_id(node, b"main~1", b"main", repo=node.repo("missing.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND


# --- SHA-256 repositories ---

def test_commit_diff_in_a_sha256_repository(gitaly_node, tmp_path):
    from gitaly_itest import git
    work = str(tmp_path / "w256")
    git("init", "-q", "--object-format=sha256", "-b", "main", work)
    with open(os.path.join(work, "a.txt"), "w") as f:
        f.write("one\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    with open(os.path.join(work, "a.txt"), "w") as f:
        f.write("two\n")
    os.symlink("a.txt", os.path.join(work, "link"))
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "two", cwd=work)
    bare = gitaly_node.repo_path("s256.git")
    git("clone", "-q", "--bare", work, bare)
    gitaly_node.diff_repo = gitaly_node.repo("s256.git")
    facts = {"path": bare}
    files = commit_diff(gitaly_node, "main~1", "main")
    rows = raw_z(facts, "--abbrev=64", "main~1", "main")
    assert [(f["from_path"], f["from_id"], f["to_id"]) for f in files] == [(r[5], r[3], r[4]) for r in rows]
    assert all(len(f["to_id"]) == 64 for f in files)
    assert files[0]["patch"] == b"@@ -1 +1 @@\n-one\n+two\n"
    req = D().CommitDeltaRequest(repository=gitaly_node.diff_repo, left_commit_id="main~1", right_commit_id="main")
    assert [d.to_id for m in stub(gitaly_node).CommitDelta(req) for d in m.deltas] == [r[4] for r in rows]


def test_commit_diff_limits_have_upper_bounds(gitaly_node, tmp_path):
    """max_patch_bytes above 512,000 counts as 512,000."""
    from gitaly_itest import git
    work = str(tmp_path / "wbig")
    git("init", "-q", "-b", "main", work)
    git("commit", "-q", "--allow-empty", "-m", "empty", cwd=work)
    with open(os.path.join(work, "big.txt"), "w") as f:
        f.write("".join("a line of text number %d\n" % i for i in range(25000)))
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "big", cwd=work)
    git("clone", "-q", "--bare", work, gitaly_node.repo_path("big.git"))
    gitaly_node.diff_repo = gitaly_node.repo("big.git")
    files = commit_diff(gitaly_node, "main~1", "main", enforce_limits=True, **dict(BIG, max_patch_bytes=10 ** 7))
    assert len(files) == 1 and files[0]["too_large"] and files[0]["patch"] == b""
    files = commit_diff(gitaly_node, "main~1", "main")
    assert 512000 < len(files[0]["patch"]) < 10 ** 7 and not files[0]["too_large"]
