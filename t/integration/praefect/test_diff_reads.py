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
