"""ListBlobs, ListAllBlobs and the LFS pointer RPCs against a node, compared with what
git rev-list --objects and cat-file say (docs/technical/blobs.md)."""
import grpc
import pytest

from gitaly_itest import pb
from helpers_blobs import blob_content, git_all_blobs, git_blobs, install_blob_repo, make_blob_repo
from helpers_reads import rpc_error

B = lambda: pb("blob")  # noqa: E731


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    return make_blob_repo(str(tmp_path_factory.mktemp("blobs")))


@pytest.fixture
def node(gitaly_node, facts):
    gitaly_node.blob_repo = install_blob_repo(gitaly_node, facts)
    return gitaly_node


def stub(node):
    return node.stub("BlobService")


def fold(msgs):
    """Blob entries joined: a piece without an oid continues the blob before it."""
    blobs = []
    for m in msgs:
        for b in m.blobs:
            if b.oid:
                blobs.append({"oid": b.oid, "size": b.size, "data": b.data,
                              "path": getattr(b, "path", b""), "pieces": 1})
            else:
                assert blobs, "a continuation piece came first"
                blobs[-1]["data"] += b.data
                blobs[-1]["pieces"] += 1
    return blobs


def list_blobs(node, revs, **kw):
    req = B().ListBlobsRequest(repository=kw.pop("repo", None) or node.blob_repo, revisions=revs, **kw)
    return list(stub(node).ListBlobs(req))


def test_list_blobs_matches_rev_list(node, facts):
    blobs = fold(list_blobs(node, ["main"], with_paths=True))
    assert [(b["oid"], b["path"]) for b in blobs] == git_blobs(facts, "main")
    sizes = git_all_blobs(facts)
    for b in blobs:
        assert b["size"] == sizes[b["oid"]] and b["data"] == b""
    assert len(blobs) > 64   # more than one window of reads


def test_list_blobs_without_paths_and_pseudo_revisions(node, facts):
    blobs = fold(list_blobs(node, ["--all", "--not", "main"]))
    assert [b["oid"] for b in blobs] == [o for o, _ in git_blobs(facts, "--all", "--not", "main")]
    assert [b["oid"] for b in blobs] == [facts["three"]]
    assert all(b["path"] == b"" for b in blobs)


def test_list_blobs_path_scoped_revision(node, facts):
    blobs = fold(list_blobs(node, ["main:lfs/one.bin"], with_paths=True))
    assert [b["oid"] for b in blobs] == [facts["one"]]


def test_list_blobs_contents_whole_and_chunked(node, facts):
    blobs = fold(list_blobs(node, ["main"], bytes_limit=-1))
    assert len(blobs) == len(git_blobs(facts, "main"))
    for b in blobs:
        assert b["data"] == blob_content(facts, b["oid"])
    big = [b for b in blobs if b["oid"] == facts["big"]][0]
    assert big["size"] == 300 * 1024 and big["pieces"] > 1


def test_list_blobs_bytes_limit_truncates_but_reports_size(node, facts):
    blobs = fold(list_blobs(node, ["main"], bytes_limit=5))
    for b in blobs:
        assert b["data"] == blob_content(facts, b["oid"])[:5]
    big = [b for b in blobs if b["oid"] == facts["big"]][0]
    assert big["size"] == 300 * 1024 and big["pieces"] == 1


def test_list_blobs_limit(node, facts):
    for limit in (1, 2, 70):
        blobs = fold(list_blobs(node, ["main"], limit=limit, bytes_limit=-1))
        assert [b["oid"] for b in blobs] == [o for o, _ in git_blobs(facts, "main")][:limit]


def test_list_blobs_errors(node, facts):
    e = rpc_error(lambda: list_blobs(node, []))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "missing revisions"
    e = rpc_error(lambda: list_blobs(node, ["-dashed"]))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == "invalid revision: revision can't start with '-'"
    e = rpc_error(lambda: list_blobs(node, ["main", "no such"]))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == "invalid revision: revision can't contain whitespace"
    e = rpc_error(lambda: list_blobs(node, ["doesnotexist"]))
    assert e.code() == grpc.StatusCode.INTERNAL
    assert e.details().startswith("processing blobs: rev-list pipeline command: exit status 128, stderr: ")
    assert "doesnotexist" in e.details()
    e = rpc_error(lambda: list_blobs(node, ["main"], repo=node.repo("nope.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: list(stub(node).ListBlobs(B().ListBlobsRequest(revisions=["main"]))))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


def list_all(node, **kw):
    req = B().ListAllBlobsRequest(repository=kw.pop("repo", None) or node.blob_repo, **kw)
    return fold(list(stub(node).ListAllBlobs(req)))


def test_list_all_blobs_matches_batch_all_objects(node, facts):
    expected = git_all_blobs(facts)
    blobs = list_all(node)
    assert {b["oid"]: b["size"] for b in blobs} == expected
    assert len(blobs) == len(expected) and facts["dangling"] in expected


def test_list_all_blobs_contents_and_limits(node, facts):
    blobs = list_all(node, bytes_limit=-1)
    assert len(blobs) == len(git_all_blobs(facts))
    for b in blobs:
        assert b["data"] == blob_content(facts, b["oid"])
    blobs = list_all(node, bytes_limit=3, limit=10)
    assert len(blobs) == 10
    for b in blobs:
        assert b["data"] == blob_content(facts, b["oid"])[:3]
    assert len(list_all(node, limit=4)) == 4


def test_list_all_blobs_missing_repository(node):
    e = rpc_error(lambda: list_all(node, repo=node.repo("nope.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND


# --- LFS pointers ---

def pointers(msgs):
    return {p.oid: (p.size, p.data) for m in msgs for p in m.lfs_pointers}


def expect(facts, *names):
    res = {}
    for n in names:
        data = blob_content(facts, facts[n])
        res[facts[n]] = (len(data), data)
    return res


def test_list_lfs_pointers_by_revision(node, facts):
    s = stub(node)
    got = pointers(s.ListLFSPointers(B().ListLFSPointersRequest(repository=node.blob_repo, revisions=["main"])))
    assert got == expect(facts, "one", "two")
    got = pointers(s.ListLFSPointers(B().ListLFSPointersRequest(repository=node.blob_repo, revisions=["--all"])))
    assert got == expect(facts, "one", "two", "three")
    # a blob id names itself; a tree id walks the tree
    revs = [facts["three"], facts["tree"]]
    got = pointers(s.ListLFSPointers(B().ListLFSPointersRequest(repository=node.blob_repo, revisions=revs)))
    assert got == expect(facts, "one", "two", "three")
    revs = [facts["three"], facts["big"]]
    got = pointers(s.ListLFSPointers(B().ListLFSPointersRequest(repository=node.blob_repo, revisions=revs)))
    assert got == expect(facts, "three")


def test_list_lfs_pointers_limit_and_errors(node, facts):
    s = stub(node)
    got = pointers(s.ListLFSPointers(B().ListLFSPointersRequest(repository=node.blob_repo, revisions=["--all"],
                                                                limit=1)))
    assert len(got) == 1 and set(got) <= set(expect(facts, "one", "two", "three"))
    e = rpc_error(lambda: s.ListLFSPointers(B().ListLFSPointersRequest(repository=node.blob_repo)))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "missing revisions"
    e = rpc_error(lambda: s.ListLFSPointers(B().ListLFSPointersRequest(repository=node.blob_repo,
                                                                       revisions=["-dashed"])))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == "invalid revision: revision can't start with '-'"
    e = rpc_error(lambda: s.ListLFSPointers(B().ListLFSPointersRequest(repository=node.blob_repo,
                                                                       revisions=["doesnotexist"])))
    assert e.code() == grpc.StatusCode.INTERNAL and "doesnotexist" in e.details()
    e = rpc_error(lambda: s.ListLFSPointers(B().ListLFSPointersRequest(repository=node.repo("nope.git"),
                                                                       revisions=["main"])))
    assert e.code() == grpc.StatusCode.NOT_FOUND


def test_list_all_lfs_pointers_finds_unreachable_ones(node, facts):
    s = stub(node)
    got = pointers(s.ListAllLFSPointers(B().ListAllLFSPointersRequest(repository=node.blob_repo)))
    assert got == expect(facts, "one", "two", "three", "dangling")
    got = pointers(s.ListAllLFSPointers(B().ListAllLFSPointersRequest(repository=node.blob_repo, limit=2)))
    assert len(got) == 2
    e = rpc_error(lambda: s.ListAllLFSPointers(B().ListAllLFSPointersRequest()))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_lfs_pointers(node, facts):
    s = stub(node)
    ids = [facts["one"], facts["tree"], facts["two"], facts["c1"], facts["big"], facts["dangling"]]
    got = pointers(s.GetLFSPointers(B().GetLFSPointersRequest(repository=node.blob_repo, blob_ids=ids)))
    assert got == expect(facts, "one", "two", "dangling")
    e = rpc_error(lambda: s.GetLFSPointers(B().GetLFSPointersRequest(repository=node.blob_repo)))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "empty BlobIds"
    e = rpc_error(lambda: s.GetLFSPointers(B().GetLFSPointersRequest(blob_ids=["f00"])))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    e = rpc_error(lambda: s.GetLFSPointers(B().GetLFSPointersRequest(repository=node.blob_repo,
                                                                     blob_ids=[facts["one"], "1" * 40])))
    assert e.code() == grpc.StatusCode.INTERNAL
    assert e.details() == 'retrieving object info for "%s": object not found' % ("1" * 40)


def test_cancelled_listing_leaves_the_node_serving(node, facts):
    # the whole content of every blob, read one message and dropped: the node cleans up and answers the next call
    it = stub(node).ListBlobs(B().ListBlobsRequest(repository=node.blob_repo, revisions=["--all"], bytes_limit=-1))
    next(it)
    it.cancel()
    blobs = fold(list_blobs(node, ["side"], limit=3))
    assert [b["oid"] for b in blobs] == [o for o, _ in git_blobs(facts, "side")][:3]
