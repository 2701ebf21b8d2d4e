"""DiffService and the project-page RepositoryService reads through praefect: routed as accessors by
their proto annotations, answered by a replica, equal to what git says about the pushed history."""
import os
import subprocess

import grpc

from praefect_itest import wait_for
from gitaly_itest import pb
from helpers_diff import git_bytes, make_diff_repo
from test_praefect import create_repo, push, replicas_in_sync

D = lambda: pb("diff")  # noqa: E731
R = lambda: pb("repository")  # noqa: E731


def setup_repo(cluster, tmp_path):
    facts = make_diff_repo(str(tmp_path / "fixture"))
    create_repo(cluster, "diffs.git")
    push(cluster, facts["path"], "diffs.git", "--all")
    wait_for(lambda: replicas_in_sync(cluster, "diffs.git"), what="replication")
    return facts, cluster.praefect.repo("diffs.git")


def test_diff_rpcs_through_praefect(cluster, tmp_path):
    facts, repo = setup_repo(cluster, tmp_path)
    s = cluster.praefect.stub("DiffService")
    left, right = facts["base"], facts["change"]

    msgs = list(s.CommitDiff(D().CommitDiffRequest(repository=repo, left_commit_id=left, right_commit_id=right)))
    paths = [m.to_path for m in msgs if m.to_path]
    toks = git_bytes(facts, "diff", "--raw", "-z", "--find-renames=30%", left, right).split(b"\0")
    assert b"mod.txt" in paths and b"ren_dst.txt" in paths and len(paths) == len([t for t in toks if t.startswith(b":")]) + 1

    # the limits work the same through the router
    msgs = list(s.CommitDiff(D().CommitDiffRequest(repository=repo, left_commit_id=facts["change"],
                                                   right_commit_id=facts["many"], enforce_limits=True, max_files=2,
                                                   max_lines=100000, max_bytes=10000000, max_patch_bytes=1000000)))
    ends = [m for m in msgs if m.end_of_patch]
    assert len(ends) == 3 and ends[-1].overflow_marker and not ends[0].overflow_marker

    stats = [st for m in s.DiffStats(D().DiffStatsRequest(repository=repo, left_commit_id=left, right_commit_id=right))
             for st in m.stats]
    numstat = git_bytes(facts, "diff", "--numstat", left, right).decode().splitlines()
    assert len(stats) == len(numstat)

    raw = b"".join(m.data for m in s.RawDiff(D().RawDiffRequest(repository=repo, left_commit_id=left,
                                                                right_commit_id=right)))
    assert raw == git_bytes(facts, "diff", "--full-index", left, right)

    diff = git_bytes(facts, "diff", "--full-index", left, right)
    want = subprocess.run(["git", "patch-id", "--stable"], input=diff, capture_output=True,
                          check=True).stdout.split(b" ")[0].decode()
    got = s.GetPatchID(D().GetPatchIDRequest(repository=repo, old_revision=left.encode(), new_revision=right.encode()))
    assert got.patch_id == want

    paths = [p.path for m in s.FindChangedPaths(D().FindChangedPathsRequest(repository=repo, commits=[right]))
             for p in m.paths]
    assert b"del.txt" in paths and b"added.txt" in paths

    try:
        list(s.CommitDiff(D().CommitDiffRequest(repository=repo, left_commit_id="nope", right_commit_id=right)))
        raise AssertionError("bad revision accepted")
    except grpc.RpcError as e:
        assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "exit status 128")
    try:
        list(s.CommitDiff(D().CommitDiffRequest(repository=cluster.praefect.repo("missing.git"),
                                                left_commit_id=left, right_commit_id=right)))
        raise AssertionError("missing repository accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND


def test_repository_reads_through_praefect(cluster, tmp_path):
    facts, repo = setup_repo(cluster, tmp_path)
    s = cluster.praefect.stub("RepositoryService")
    base = s.FindMergeBase(R().FindMergeBaseRequest(repository=repo, revisions=[b"main~1", b"side"])).base
    assert base == git_bytes(facts, "merge-base", "main~1", "side").decode().strip()
    assert s.HasLocalBranches(R().HasLocalBranchesRequest(repository=repo)).value is True
    assert s.ObjectFormat(R().ObjectFormatRequest(repository=repo)).format == pb("shared").OBJECT_FORMAT_SHA1
    size = s.ObjectsSize(iter([R().ObjectsSizeRequest(repository=repo, revisions=[b"main"])])).size
    # on-disk sizes are per replica (pushed objects may be loose on one, packed on another)
    md = cluster.praefect.metadata("diffs.git")
    per_replica = {int(git_bytes({"path": os.path.join(cluster.nodes[r.storage].storages[r.storage], md.replica_path)},
                                 "rev-list", "--disk-usage", "--objects", "main").strip()) for r in md.replicas}
    assert size in per_replica
    info = s.RepositoryInfo(R().RepositoryInfoRequest(repository=repo))
    assert info.size > 0 and info.objects.size > 0
    # an accessor: exactly one replica served it
    served = sum(1 for n in cluster.nodes.values() for line in open(n.log_path)
                 if '"grpc.method":"RepositoryInfo"' in line)
    assert served == 1


def test_diff_limits_and_long_patches_through_praefect(cluster, tmp_path):
    """CommitDiff's limits, a long patch in 5120-byte pieces, a patch line of several MiB, DiffStats batches and
    the dash refusal pass the router unchanged."""
    from gitaly_itest import git
    work = str(tmp_path / "lw")
    git("init", "-q", "-b", "main", work)
    for i in range(1001):
        os.makedirs(os.path.join(work, "s"), exist_ok=True)
        with open(os.path.join(work, "s", "f%04d" % i), "w") as f:
            f.write("%d\n" % i)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "many", cwd=work)
    with open(os.path.join(work, "long.txt"), "w") as f:
        f.write("x" * (3 * 1024 * 1024) + "\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "long line", cwd=work)
    create_repo(cluster, "limits.git")
    push(cluster, work, "limits.git", "main")
    wait_for(lambda: replicas_in_sync(cluster, "limits.git"), what="replication")
    repo = cluster.praefect.repo("limits.git")
    s = cluster.praefect.stub("DiffService")

    msgs = list(s.CommitDiff(D().CommitDiffRequest(repository=repo, left_commit_id="main~1", right_commit_id="main")))
    assert msgs[0].to_path == b"long.txt" and not msgs[0].end_of_patch and msgs[-1].end_of_patch
    patch = b"".join(m.raw_patch_data for m in msgs)
    assert patch == b"@@ -0,0 +1 @@\n+" + b"x" * (3 * 1024 * 1024) + b"\n"
    assert all(len(m.raw_patch_data) == 5120 for m in msgs[:-1]) and len(msgs) == (len(patch) + 5119) // 5120
    msgs = list(s.CommitDiff(D().CommitDiffRequest(repository=repo, left_commit_id="main~1", right_commit_id="main",
                                                   enforce_limits=True, max_files=10, max_lines=10, max_bytes=10 ** 8,
                                                   max_patch_bytes=100000)))
    assert [(m.to_path, m.too_large, m.raw_patch_data, m.end_of_patch) for m in msgs] == [
        (b"long.txt", True, b"", True)]

    first = git("rev-list", "--max-parents=0", "main", cwd=work).strip()
    stats = list(s.DiffStats(D().DiffStatsRequest(repository=repo, left_commit_id=first + "~0",
                                                  right_commit_id="main")))
    assert [len(m.stats) for m in stats] == [1]    # first..main: long.txt only
    empty = git("hash-object", "-t", "tree", "/dev/null", cwd=work).strip()
    stats = list(s.DiffStats(D().DiffStatsRequest(repository=repo, left_commit_id=empty, right_commit_id="main")))
    assert [len(m.stats) for m in stats] == [1000, 2]

    try:
        list(s.CommitDiff(D().CommitDiffRequest(repository=repo, left_commit_id="--cached", right_commit_id="main")))
        raise AssertionError("dash revision accepted")
    except grpc.RpcError as e:
        assert (e.code(), e.details()) == (grpc.StatusCode.INTERNAL, "cmd: positional arg \"--cached\" cannot start "
                                           "with dash '-': invalid argument")
