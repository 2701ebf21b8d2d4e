"""CommitService history reads through praefect: routed by the proto annotations, answered like a node."""
import grpc
import pytest

from praefect_itest import wait_for
from gitaly_itest import pb
from helpers_history import history_git, make_history_repo
from helpers_reads import rpc_error
from test_praefect import create_repo, push, replicas_in_sync

C = lambda: pb("commit")  # noqa: E731
S = lambda: pb("shared")  # noqa: E731


@pytest.fixture(scope="module")
def hist(tmp_path_factory):
    return make_history_repo(str(tmp_path_factory.mktemp("history")))


@pytest.fixture
def routed(cluster, hist):
    create_repo(cluster, "group/history.git")
    push(cluster, hist["path"], "group/history.git", "--all")
    push(cluster, hist["path"], "group/history.git", "--tags")
    wait_for(lambda: replicas_in_sync(cluster, "group/history.git"), what="replication")
    return cluster


def stub(cluster):
    return cluster.praefect.stub("CommitService")


def repo(cluster, rel="group/history.git"):
    return cluster.praefect.repo(rel)


def git_log(hist, *args):
    return history_git(hist, "log", "--format=%H", *args).split()


def test_history_reads_through_praefect_match_git(routed, hist):
    s, r = stub(routed), repo(routed)
    assert s.LastCommitForPath(C().LastCommitForPathRequest(
        repository=r, revision=b"main", path=b"docs/manual.md")).commit.id == hist["rename"]
    resps = s.ListLastCommitsForTree(C().ListLastCommitsForTreeRequest(
        repository=r, revision="main", path=b"src/", limit=10,
        global_options=S().GlobalOptions(literal_pathspecs=True)))
    assert [(c.path_bytes, c.commit.id) for m in resps for c in m.commits] == [(b"src/app.rb", hist["edit_app"])]
    assert s.CountCommits(C().CountCommitsRequest(repository=r, revision=b"main")).count == 10
    d = s.CountDivergingCommits(C().CountDivergingCommitsRequest(repository=r, **{"from": b"feature", "to": b"old"}))
    assert (d.left_count, d.right_count) == (3, 0)
    got = [c.id for m in s.FindCommits(C().FindCommitsRequest(
        repository=r, revision=b"main", limit=100, paths=[b"docs/manual.md"], follow=True)) for c in m.commits]
    assert got == git_log(hist, "--follow", "main", "--", "docs/manual.md")
    got = [c.id for m in s.FindAllCommits(C().FindAllCommitsRequest(repository=r)) for c in m.commits]
    assert got == git_log(hist, "--branches")
    got = [c.id for m in s.ListCommitsByOid(C().ListCommitsByOidRequest(
        repository=r, oid=[hist["init"], "0" * 40])) for c in m.commits]
    assert got == [hist["init"]]
    st = s.CommitStats(C().CommitStatsRequest(repository=r, revision=b"v1.0"))
    assert (st.oid, st.additions, st.deletions) == (hist["edit_app"], 4, 2)
    files = [p for m in s.ListFiles(C().ListFilesRequest(repository=r, revision=b"main")) for p in m.paths]
    assert b"assets/big.psd" in files and b"sub/lib" not in files
    ex = s.CheckObjectsExist(iter([C().CheckObjectsExistRequest(repository=r, revisions=[b"main", b"nope"]),
                                   C().CheckObjectsExistRequest(revisions=[b"v2.0"])]))
    assert [(x.name, x.exists) for m in ex for x in m.revisions] == [(b"main", True), (b"nope", False),
                                                                     (b"v2.0", True)]


def test_history_reads_through_praefect_refuse_bad_input(routed, hist):
    s, r = stub(routed), repo(routed)
    e = rpc_error(lambda: s.LastCommitForPath(C().LastCommitForPathRequest(
        repository=r, revision=b"main", path=b"../../etc/passwd")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "path escapes repository"
    e = rpc_error(lambda: s.CountCommits(C().CountCommitsRequest(repository=r, revision=b"--output=x")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "revision can't start with '-'"
    e = rpc_error(lambda: list(s.FindCommits(C().FindCommitsRequest(repository=r, revision=b"-x", limit=1))))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    # a repository praefect does not know
    e = rpc_error(lambda: s.LastCommitForPath(C().LastCommitForPathRequest(
        repository=repo(routed, "no/such.git"), revision=b"main", path=b"README.md")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: list(s.CheckObjectsExist(iter([C().CheckObjectsExistRequest(
        repository=repo(routed, "no/such.git"), revisions=[b"main"])]))))
    assert e.code() == grpc.StatusCode.NOT_FOUND


def test_blame_signatures_and_streams_through_praefect(routed, hist):
    s, r = stub(routed), repo(routed)
    data = b"".join(m.data for m in s.RawBlame(C().RawBlameRequest(
        repository=r, revision=b"main", path=b"src/app.rb", range=b"1,3")))
    assert data == history_git(hist, "blame", "-p", "-L", "1,3", "main", "--", "src/app.rb").encode()
    sigs = [m for m in s.GetCommitSignatures(C().GetCommitSignaturesRequest(
        repository=r, commit_ids=[hist["ssh_signed"], hist["init"]]))]
    assert sigs[0].commit_id == hist["ssh_signed"] and sigs[0].signature.startswith(b"-----BEGIN SSH SIGNATURE")
    assert all(not m.commit_id for m in sigs[1:]) and b"".join(m.signed_text for m in sigs).startswith(b"tree ")
    # a bidirectional stream, routed by its first message
    got = [list(m.shas) for m in s.FilterShasWithSignatures(iter([
        C().FilterShasWithSignaturesRequest(repository=r, shas=[hist["init"].encode(), hist["ssh_signed"].encode()]),
        C().FilterShasWithSignaturesRequest(shas=[hist["merge"].encode()])]))]
    assert got == [[hist["ssh_signed"].encode()], []]
    got = [c.id for m in s.CommitsByMessage(C().CommitsByMessageRequest(repository=r, query="feature"))
           for c in m.commits]
    assert got == git_log(hist, "--grep=feature", "-i", "main")
    got = [c.id for m in s.ListAllCommits(C().ListAllCommitsRequest(repository=r)) for c in m.commits]
    assert sorted(got) == sorted(git_log(hist, "--all"))
    e = rpc_error(lambda: list(s.RawBlame(C().RawBlameRequest(repository=r, revision=b"main", path=b"../x"))))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "path escapes repository root"
