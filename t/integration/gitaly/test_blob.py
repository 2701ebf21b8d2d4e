"""BlobService reads (GetBlob, GetBlobs) against a real gitaly, and the cat-file process cache."""
import hashlib
import os
import subprocess
import time

import grpc
import pytest

from gitaly_itest import BUILD, make_bare_repo, pb
from helpers_reads import (BIG_SIZE, big_blob_bytes, catfile_pids, install_read_repo, make_read_repo,
                           rpc_error)


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    return make_read_repo(str(tmp_path_factory.mktemp("reads")))


@pytest.fixture
def node(gitaly_node, facts):
    gitaly_node.read_repo = install_read_repo(gitaly_node, facts)
    return gitaly_node


def get_blob(node, oid, limit=-1, repo=None):
    req = pb("blob").GetBlobRequest(repository=repo or node.read_repo, oid=oid, limit=limit)
    return list(node.stub("BlobService").GetBlob(req))


def test_get_blob_small(node, facts):
    [m] = get_blob(node, facts["readme_oid"])
    assert m.oid == facts["readme_oid"] and m.size == 12 and m.data == b"hello again\n"


def test_get_blob_by_revision_path(node, facts):
    # the oid field takes any revision cat-file understands
    [m] = get_blob(node, "main:dir/a.txt")
    assert m.data == b"a\n" and m.size == 2


def test_get_blob_limits(node, facts):
    [m] = get_blob(node, facts["readme_oid"], limit=5)
    assert (m.size, m.data, m.oid) == (12, b"hello", facts["readme_oid"])
    [m] = get_blob(node, facts["readme_oid"], limit=0)
    assert (m.size, m.data, m.oid) == (12, b"", facts["readme_oid"])
    [m] = get_blob(node, facts["readme_oid"], limit=100)
    assert m.data == b"hello again\n"


def test_get_blob_big_streams_in_chunks(node, facts):
    msgs = get_blob(node, facts["big_oid"])
    assert msgs[0].size == BIG_SIZE and msgs[0].oid == facts["big_oid"]
    assert all(m.size == 0 and m.oid == "" for m in msgs[1:])
    assert all(len(m.data) <= 128 * 1024 for m in msgs)
    assert len(msgs) >= BIG_SIZE // (128 * 1024)
    data = b"".join(m.data for m in msgs)
    assert hashlib.sha1(data).digest() == hashlib.sha1(big_blob_bytes()).digest()


def test_get_blob_big_with_limit(node, facts):
    msgs = get_blob(node, facts["big_oid"], limit=300000)
    assert b"".join(m.data for m in msgs) == big_blob_bytes()[:300000]
    assert msgs[0].size == BIG_SIZE


def _sanitized(node):
    out = subprocess.run(["ldd", os.path.join(BUILD, "gitaly", "gitaly")], capture_output=True).stdout
    return b"libasan" in out


def test_get_blob_big_memory_stays_flat(node, facts):
    """A slow reader of a 20 MB blob: the server must not buffer the blob."""
    if _sanitized(node):
        pytest.skip("ASan's allocator quarantine makes RSS meaningless")
    def rss_kb():
        with open("/proc/%d/status" % node.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    get_blob(node, facts["readme_oid"])  # warm up
    before = rss_kb()
    it = node.stub("BlobService").GetBlob(pb("blob").GetBlobRequest(
        repository=node.read_repo, oid=facts["big_oid"], limit=-1))
    first = next(it)
    time.sleep(1.0)  # the client reads nothing: the server has to stop reading git
    during = rss_kb()
    total = len(first.data) + sum(len(m.data) for m in it)
    assert total == BIG_SIZE
    assert during - before < 12 * 1024, (before, during)


def test_get_blob_cancelled_mid_stream_kills_catfile(node, facts):
    path = node.repo_path("read.git")
    it = node.stub("BlobService").GetBlob(pb("blob").GetBlobRequest(
        repository=node.read_repo, oid=facts["big_oid"], limit=-1))
    next(it)
    it.cancel()
    deadline = time.time() + 5
    # the process that was mid-blob is killed, not returned to the cache
    while time.time() < deadline and catfile_pids(path):
        time.sleep(0.05)
    assert catfile_pids(path) == []
    # and the next call is served correctly by a fresh process
    [m] = get_blob(node, facts["readme_oid"])
    assert m.data == b"hello again\n"


def test_get_blob_missing_or_not_a_blob_is_one_empty_message(node, facts):
    for oid in ("1" * 40, "main:nope", facts["tree_c1"], facts["c1"]):
        [m] = get_blob(node, oid)
        assert m == pb("blob").GetBlobResponse(), oid


def test_get_blob_validation(node, facts):
    e = rpc_error(lambda: get_blob(node, ""))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "empty Oid" in e.details()
    e = rpc_error(lambda: get_blob(node, facts["readme_oid"], repo=node.repo("nope.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: get_blob(node, facts["readme_oid"], repo=node.repo("../x")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_blob_wrong_token(node, facts):
    stub = node.stub("BlobService", secret="wrong")
    e = rpc_error(lambda: list(stub.GetBlob(pb("blob").GetBlobRequest(
        repository=node.read_repo, oid=facts["readme_oid"]))))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED


def test_get_blob_on_make_bare_repo(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("simple.git"), files={"a/b/c.txt": "nested\n"})
    [m] = list(gitaly_node.stub("BlobService").GetBlob(pb("blob").GetBlobRequest(
        repository=gitaly_node.repo("simple.git"), oid="HEAD:a/b/c.txt", limit=-1)))
    assert m.data == b"nested\n"


def test_repeated_calls_reuse_catfile_processes(node, facts):
    path = node.repo_path("read.git")
    get_blob(node, facts["readme_oid"])
    before = catfile_pids(path)
    assert len(before) == 1
    for _ in range(50):
        get_blob(node, facts["readme_oid"])
    assert catfile_pids(path) == before


def test_concurrent_calls_use_bounded_processes(node, facts):
    path = node.repo_path("read.git")
    stub = node.stub("BlobService")
    req = pb("blob").GetBlobRequest(repository=node.read_repo, oid=facts["readme_oid"], limit=-1)
    calls = [stub.GetBlob(req) for _ in range(40)]
    for c in calls:
        assert [m.data for m in c] == [b"hello again\n"]
    n = len(catfile_pids(path))
    assert 1 <= n <= 16
    for _ in range(20):
        get_blob(node, facts["readme_oid"])
    assert len(catfile_pids(path)) == n


# --- GetBlobs ---

def RP(rev, path):
    return pb("blob").GetBlobsRequest.RevisionPath(revision=rev, path=path)


def get_blobs(node, rps, limit=-1, repo=None):
    req = pb("blob").GetBlobsRequest(repository=repo or node.read_repo, revision_paths=rps, limit=limit)
    return list(node.stub("BlobService").GetBlobs(req))


def test_get_blobs_kinds(node, facts):
    O = pb("shared")
    msgs = get_blobs(node, [RP("main", b"README.md"), RP("main", b"dir/"), RP("main", b"sub/module"),
                            RP("main", b"missing.txt"), RP(facts["c1"], b"dir/sub/deep/b.txt")])
    by = [(m.revision, m.path) for m in msgs]
    assert by == [("main", b"README.md"), ("main", b"dir"), ("main", b"sub/module"),
                  ("main", b"missing.txt"), (facts["c1"], b"dir/sub/deep/b.txt")]
    readme, d, sub, missing, deep = msgs
    assert (readme.oid, readme.size, readme.data, readme.mode, readme.type) == \
        (facts["readme_oid"], 12, b"hello again\n", 0o100644, O.BLOB)
    assert (d.oid, d.type, d.mode, d.data) == (facts["dir_oid"], O.TREE, 0o40000, b"")
    assert d.size > 0
    assert (sub.is_submodule, sub.type, sub.oid, sub.mode) == (True, O.COMMIT, "1" * 40, 0o160000)
    assert missing == pb("blob").GetBlobsResponse(revision="main", path=b"missing.txt")
    assert deep.data == b"b\n"


def test_get_blobs_limit_and_big(node, facts):
    msgs = get_blobs(node, [RP("main", b"big.bin"), RP("main", b"README.md")], limit=-1)
    assert msgs[0].size == BIG_SIZE and msgs[0].path == b"big.bin"
    big = [m for m in msgs if m.path in (b"big.bin", b"")]
    rest = [m for m in msgs if m.path == b"README.md"]
    assert hashlib.sha1(b"".join(m.data for m in big)).digest() == hashlib.sha1(big_blob_bytes()).digest()
    assert rest[0].data == b"hello again\n"
    msgs = get_blobs(node, [RP("main", b"README.md"), RP("main", b"big.bin")], limit=3)
    assert [m.data for m in msgs] == [b"hel", big_blob_bytes()[:3]]
    msgs = get_blobs(node, [RP("main", b"README.md")], limit=0)
    assert msgs[0].data == b"" and msgs[0].size == 12


def test_get_blobs_validation(node):
    e = rpc_error(lambda: get_blobs(node, []))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    e = rpc_error(lambda: get_blobs(node, [RP("-main", b"README.md")]))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "can't start with '-'" in e.details()
    e = rpc_error(lambda: get_blobs(node, [RP("main", b"README.md")], repo=node.repo("nope.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: get_blobs(node, [RP("main", b"README.md")], repo=node.repo("../../etc")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_blobs_path_outside_tree(node):
    [m] = get_blobs(node, [RP("main", b"../README.md")])
    assert m.oid == "" and m.path == b"../README.md"


def test_sigterm_with_idle_catfile_processes_exits_promptly(node, facts):
    """Cached cat-file processes must not keep a stopping server alive."""
    import signal
    path = node.repo_path("read.git")
    get_blob(node, facts["readme_oid"])
    assert catfile_pids(path)
    start = time.time()
    node.proc.send_signal(signal.SIGTERM)
    node.proc.wait(10)
    assert time.time() - start < 3
    deadline = time.time() + 3
    while time.time() < deadline and catfile_pids(path):
        time.sleep(0.05)
    assert catfile_pids(path) == []


def test_cache_size_zero_keeps_no_process(make_gitaly, facts):
    node = make_gitaly("nocache", extra_config="\n[git]\ncatfile_cache_size = 0\n")
    node.read_repo = install_read_repo(node, facts)
    path = node.repo_path("read.git")
    for _ in range(3):
        [m] = get_blob(node, facts["readme_oid"])
        assert m.data == b"hello again\n"
    deadline = time.time() + 3
    while time.time() < deadline and catfile_pids(path):
        time.sleep(0.05)
    assert catfile_pids(path) == []
