"""The RepositoryService reads of issue 17 through praefect (GetArchive, SearchFilesByName/Content,
GetFileAttributes, GetRawChanges, FullPath), routed as accessors by their proto annotations, and
SetFullPath as a voted mutator that every replica applies alike."""
import os
import subprocess

import grpc

from praefect_itest import wait_for
from gitaly_itest import git, make_bare_repo, pb, pb_grpc
from test_license import MIT
from test_praefect import create_repo, push, replicas_in_sync

R = lambda: pb("repository")  # noqa: E731
FILES = {"README.md": "hello\nworld\n", ".gitattributes": "*.txt diff=plain\n", "dir/a.txt": "alpha\nbeta\n",
         "LICENSE": MIT}


def setup_repo(cluster, tmp_path):
    src = make_bare_repo(os.path.join(str(tmp_path), "src.git"), branches=("main", "feature"), files=FILES)
    create_repo(cluster, "reads.git")
    push(cluster, src, "reads.git", "--all")
    wait_for(lambda: replicas_in_sync(cluster, "reads.git"), what="replication")
    return src, cluster.praefect.repo("reads.git")


def git_out(src, *args):
    return subprocess.run(["git", "--git-dir", src] + list(args), capture_output=True, check=True).stdout


def test_repository_reads_through_praefect(cluster, tmp_path):
    src, repo = setup_repo(cluster, tmp_path)
    s = cluster.praefect.stub("RepositoryService")
    main = git_out(src, "rev-parse", "main").decode().strip()
    feature = git_out(src, "rev-parse", "feature").decode().strip()

    tar = b"".join(m.data for m in s.GetArchive(R().GetArchiveRequest(
        repository=repo, commit_id=main, prefix="p", format=R().GetArchiveRequest.TAR)))
    assert tar == git_out(src, "archive", "--format=tar", "--prefix=p/", main)

    files = [f for m in s.SearchFilesByName(R().SearchFilesByNameRequest(repository=repo, ref=b"feature", query="."))
             for f in m.files]
    assert files == [p for p in git_out(src, "ls-tree", "-r", "-z", "--name-only", "feature").split(b"\0") if p]

    msgs = list(s.SearchFilesByContent(R().SearchFilesByContentRequest(repository=repo, ref=b"main", query="beta")))
    assert b"".join(m.match_data for m in msgs) == git_out(
        src, "grep", "--ignore-case", "-I", "--line-number", "--null", "--before-context=2", "--after-context=2",
        "--perl-regexp", "-e", "beta", "main")
    assert msgs[-1].end_of_match

    attrs = s.GetFileAttributes(R().GetFileAttributesRequest(repository=repo, revision=b"main", attributes=["diff"],
                                                             paths=["dir/a.txt", "README.md"]))
    assert [(a.path, a.attribute, a.value) for a in attrs.attribute_infos] == [("dir/a.txt", "diff", "plain")]

    changes = [c for m in s.GetRawChanges(R().GetRawChangesRequest(repository=repo, from_revision=main,
                                                                   to_revision=feature)) for c in m.raw_changes]
    assert [(c.new_path_bytes, c.size) for c in changes] == [(b"feature.txt", len("feature\n"))]

    lic = s.FindLicense(R().FindLicenseRequest(repository=repo))
    assert (lic.license_short_name, lic.license_path) == ("mit", "LICENSE")

    A = pb("analysis")
    analysis = pb_grpc("analysis").AnalysisServiceStub(cluster.praefect.channel())
    [resp] = list(analysis.CheckBlobsGenerated(iter([A.CheckBlobsGeneratedRequest(repository=repo, blobs=[
        A.CheckBlobsGeneratedRequest.Blob(revision=b"main:README.md", path=b"package-lock.json"),
        A.CheckBlobsGeneratedRequest.Blob(revision=b"main:README.md", path=b"README.md")])])))
    assert [b.generated for b in resp.blobs] == [True, False]

    try:
        list(s.GetArchive(R().GetArchiveRequest(repository=cluster.praefect.repo("missing.git"), commit_id=main)))
        raise AssertionError("missing repository accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND
    try:
        list(s.GetArchive(R().GetArchiveRequest(repository=repo, commit_id=main, path=b"../../etc")))
        raise AssertionError("path traversal accepted")
    except grpc.RpcError as e:
        assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "relative path escapes root directory")


def test_set_full_path_is_voted_and_lands_on_every_replica(cluster, tmp_path):
    _, repo = setup_repo(cluster, tmp_path)
    s = cluster.praefect.stub("RepositoryService")
    before = cluster.praefect.metadata("reads.git").generation
    s.SetFullPath(R().SetFullPathRequest(repository=repo, path="group/project"))
    md = cluster.praefect.metadata("reads.git")
    assert md.generation == before + 1
    configs = set()
    for r in md.replicas:
        path = os.path.join(cluster.nodes[r.storage].storages[r.storage], md.replica_path)
        assert git("--git-dir", path, "config", "gitlab.fullpath").strip() == "group/project"
        configs.add(open(os.path.join(path, "config"), "rb").read())
        assert not os.path.exists(os.path.join(path, "config.lock"))
    assert len(configs) == 1
    # a mutator: no replica is left behind (same generation everywhere)
    wait_for(lambda: replicas_in_sync(cluster, "reads.git"), what="replicas agree")
    assert s.FullPath(R().FullPathRequest(repository=repo)).path == "group/project"
    try:
        s.SetFullPath(R().SetFullPathRequest(repository=repo, path=""))
        raise AssertionError("empty path accepted")
    except grpc.RpcError as e:
        assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "no path provided")
