"""BlobService listings, LFS pointers and RefService name listings through praefect: routed as
accessors by their proto annotations, answered by a replica, equal to what git says about the
pushed history."""
import grpc

from praefect_itest import wait_for
from gitaly_itest import pb
from helpers_blobs import blob_content, git_blobs, make_blob_repo
from helpers_reads import git_out, make_read_repo
from test_blob_list import fold
from test_praefect import create_repo, push, replicas_in_sync

B = lambda: pb("blob")  # noqa: E731
R = lambda: pb("ref")  # noqa: E731


def setup_repo(cluster, tmp_path):
    facts = make_blob_repo(str(tmp_path / "fixture"))
    create_repo(cluster, "blobs.git")
    push(cluster, facts["path"], "blobs.git", "--all")
    wait_for(lambda: replicas_in_sync(cluster, "blobs.git"), what="replication")
    return facts, cluster.praefect.repo("blobs.git")


def test_blob_listings_through_praefect(cluster, tmp_path):
    facts, repo = setup_repo(cluster, tmp_path)
    s = cluster.praefect.stub("BlobService")
    expected = git_blobs(facts, "main")

    got = [(b.oid, b.path) for m in s.ListBlobs(B().ListBlobsRequest(repository=repo, revisions=["main"],
                                                                   with_paths=True)) for b in m.blobs]
    assert got == expected
    got = fold(s.ListBlobs(B().ListBlobsRequest(repository=repo, revisions=["main"], limit=3, bytes_limit=-1)))
    assert [b["oid"] for b in got] == [o for o, _ in expected][:3]
    assert all(b["data"] == blob_content(facts, b["oid"]) for b in got)

    # every blob the replica holds: those of the pushed branches
    all_oids = {b.oid for m in s.ListAllBlobs(B().ListAllBlobsRequest(repository=repo)) for b in m.blobs}
    assert all_oids == {o for o, _ in git_blobs(facts, "--all")}

    pointers = {p.oid for m in s.ListLFSPointers(B().ListLFSPointersRequest(repository=repo, revisions=["--all"]))
                for p in m.lfs_pointers}
    assert pointers == {facts["one"], facts["two"], facts["three"]}
    pointers = {p.oid for m in s.ListAllLFSPointers(B().ListAllLFSPointersRequest(repository=repo))
                for p in m.lfs_pointers}
    assert pointers == {facts["one"], facts["two"], facts["three"]}   # the unpushed dangling one is not there
    got = [p for m in s.GetLFSPointers(B().GetLFSPointersRequest(repository=repo,
                                                                 blob_ids=[facts["two"], facts["big"]]))
           for p in m.lfs_pointers]
    assert [(p.oid, p.data) for p in got] == [(facts["two"], blob_content(facts, facts["two"]))]

    try:
        list(s.ListBlobs(B().ListBlobsRequest(repository=repo, revisions=["doesnotexist"])))
        raise AssertionError("bad revision accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INTERNAL and e.details().startswith("processing blobs: ")
    try:
        list(s.ListBlobs(B().ListBlobsRequest(repository=cluster.praefect.repo("missing.git"), revisions=["main"])))
        raise AssertionError("missing repository accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND


def test_ref_name_listings_through_praefect(cluster, tmp_path):
    facts, repo = setup_repo(cluster, tmp_path)
    s = cluster.praefect.stub("RefService")

    def git_names(*args):
        return git_out("--git-dir", facts["path"], "for-each-ref", "--format=%(refname:lstrip=2)", *args).splitlines()
    names = [n for m in s.ListBranchNamesContainingCommit(R().ListBranchNamesContainingCommitRequest(
        repository=repo, commit_id=facts["c1"])) for n in m.branch_names]
    assert names == git_names("--contains=" + facts["c1"], "refs/heads") == [b"main", b"side"]
    names = [n for m in s.ListTagNamesContainingCommit(R().ListTagNamesContainingCommitRequest(
        repository=repo, commit_id=facts["c1"])) for n in m.tag_names]
    assert names == []
    refs = s.FindRefsByOID(R().FindRefsByOIDRequest(repository=repo, oid=facts["side"])).refs
    assert list(refs) == ["refs/heads/side"]
    try:
        list(s.ListBranchNamesContainingCommit(R().ListBranchNamesContainingCommitRequest(repository=repo,
                                                                                         commit_id="abc")))
        raise AssertionError("short id accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_tag_messages_and_signatures_through_praefect(cluster, tmp_path):
    facts = make_read_repo(str(tmp_path / "reads"))
    create_repo(cluster, "reads.git")
    push(cluster, facts["path"], "reads.git", "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*")
    wait_for(lambda: replicas_in_sync(cluster, "reads.git"), what="replication")
    repo = cluster.praefect.repo("reads.git")
    s = cluster.praefect.stub("RefService")
    v1 = facts["v1_oid"]
    raw = git_out("--git-dir", facts["path"], "cat-file", "tag", v1)

    msgs = list(s.GetTagMessages(R().GetTagMessagesRequest(repository=repo, tag_ids=[v1])))
    assert msgs[0].tag_id == v1 and b"".join(m.message for m in msgs) == raw.split(b"\n\n", 1)[1]
    sigs = [x for m in s.GetTagSignatures(R().GetTagSignaturesRequest(repository=repo, tag_revisions=[v1]))
            for x in m.signatures]
    assert [(x.tag_id, x.signature, x.content) for x in sigs] == [(v1, b"", raw)]
    names = [n for m in s.ListTagNamesContainingCommit(R().ListTagNamesContainingCommitRequest(
        repository=repo, commit_id=facts["c2"])) for n in m.tag_names]
    assert names == [b"v1.0", b"v1.0-again"]
    try:
        list(s.GetTagMessages(R().GetTagMessagesRequest(repository=repo, tag_ids=[facts["c1"]])))
        raise AssertionError("a commit accepted as a tag")
    except grpc.RpcError as e:
        assert (e.code(), e.details()) == (grpc.StatusCode.INTERNAL, "getting tag: expected tag, got commit")


def test_delete_refs_votes_and_every_replica_ends_up_equal(cluster, tmp_path):
    facts = make_read_repo(str(tmp_path / "reads"))
    create_repo(cluster, "del.git")
    push(cluster, facts["path"], "del.git", "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*")
    wait_for(lambda: replicas_in_sync(cluster, "del.git"), what="replication")
    gen = cluster.praefect.metadata("del.git").generation
    repo = cluster.praefect.repo("del.git")
    s = cluster.praefect.stub("RefService")

    s.DeleteRefs(R().DeleteRefsRequest(repository=repo, refs=[b"refs/heads/feature", b"refs/tags/light"]))
    # the write was voted on by all three: no replication job was needed to get them equal
    md, sums = replicas_in_sync(cluster, "del.git")
    assert md.generation == gen + 1 and len(set(sums.values())) == 1
    for name in cluster.nodes:
        branches = [b.name for m in cluster.node_stub(name, "RefService").FindAllBranches(
            R().FindAllBranchesRequest(repository=pb("shared").Repository(
                storage_name=name, relative_path=md.replica_path))) for b in m.branches]
        assert b"refs/heads/feature" not in branches and b"refs/heads/main" in branches, name

    s.DeleteRefs(R().DeleteRefsRequest(repository=repo, except_with_prefix=[b"refs/heads/"]))
    md, sums = replicas_in_sync(cluster, "del.git")
    assert md.generation == gen + 2
    names = [n for m in s.ListTagNamesContainingCommit(R().ListTagNamesContainingCommitRequest(
        repository=repo, commit_id=facts["c1"])) for n in m.tag_names]
    assert names == []
    try:
        s.DeleteRefs(R().DeleteRefsRequest(repository=repo, refs=[b"refs/heads/a b"]))
        raise AssertionError("malformed name accepted")
    except grpc.RpcError as e:
        assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid references")
    assert cluster.praefect.metadata("del.git").generation == gen + 2


def test_update_references_votes_and_every_replica_ends_up_equal(cluster, tmp_path):
    facts = make_read_repo(str(tmp_path / "reads"))
    create_repo(cluster, "upd.git")
    push(cluster, facts["path"], "upd.git", "refs/heads/*:refs/heads/*")
    wait_for(lambda: replicas_in_sync(cluster, "upd.git"), what="replication")
    gen = cluster.praefect.metadata("upd.git").generation
    repo = cluster.praefect.repo("upd.git")
    s = cluster.praefect.stub("RefService")
    Upd = R().UpdateReferencesRequest.Update

    def reqs():
        yield R().UpdateReferencesRequest(repository=repo, updates=[
            Upd(reference=b"refs/heads/created", new_object_id=facts["c2"].encode())])
        yield R().UpdateReferencesRequest(updates=[
            Upd(reference=b"refs/heads/main", new_object_id=facts["c1"].encode(),
                old_object_id=facts["c3"].encode())])
    s.UpdateReferences(reqs())
    md, sums = replicas_in_sync(cluster, "upd.git")
    assert md.generation == gen + 1 and len(set(sums.values())) == 1
    for name in cluster.nodes:
        r = cluster.node_stub(name, "RefService").FindBranch(R().FindBranchRequest(
            repository=pb("shared").Repository(storage_name=name, relative_path=md.replica_path),
            name=b"created"))
        assert r.branch.target_commit.id == facts["c2"], name
    # a refused update leaves every replica as it was
    try:
        s.UpdateReferences(iter([R().UpdateReferencesRequest(repository=repo, updates=[
            Upd(reference=b"refs/heads/main", new_object_id=facts["c2"].encode(),
                old_object_id=facts["c3"].encode())])]))
        raise AssertionError("stale old value accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.ABORTED
    md, sums = replicas_in_sync(cluster, "upd.git")
    assert len(set(sums.values())) == 1
