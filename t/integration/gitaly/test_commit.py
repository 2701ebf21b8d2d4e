"""CommitService reads (FindCommit, ListCommits, CommitIsAncestor, TreeEntry, GetTreeEntries)."""
import base64
import hashlib
import json

import grpc
import pytest
from google.protobuf import timestamp_pb2

from gitaly_itest import git, make_bare_repo, pb
from helpers_reads import (BIG_SIZE, big_blob_bytes, catfile_pids, install_read_repo, make_read_repo,
                           rpc_error, status_detail)


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    return make_read_repo(str(tmp_path_factory.mktemp("reads")))


@pytest.fixture
def node(gitaly_node, facts):
    gitaly_node.read_repo = install_read_repo(gitaly_node, facts)
    return gitaly_node


def stub(node):
    return node.stub("CommitService")


C = lambda: pb("commit")  # noqa: E731


def find_commit(node, rev, trailers=False, repo=None):
    return stub(node).FindCommit(C().FindCommitRequest(repository=repo or node.read_repo,
                                                       revision=rev, trailers=trailers))


# --- FindCommit ---

def test_find_commit_fields(node, facts):
    c = find_commit(node, b"main~1", trailers=True).commit
    assert c.id == facts["c2"]
    assert c.subject == b"second commit"
    assert c.body == (b"second commit\n\nA body line.\n\nSigned-off-by: Alice <alice@example.com>\n"
                      b"Reviewed-by: Bob <bob@example.com>\n")
    assert c.body_size == len(c.body)
    assert list(c.parent_ids) == [facts["c1"]]
    assert c.tree_id == git("--git-dir", node.repo_path("read.git"), "rev-parse", "main~1^{tree}").strip()
    assert (c.author.name, c.author.email, c.author.date.seconds, c.author.timezone) == \
        (b"Test", b"test@example.com", 1600001000, b"+0100")
    assert c.committer.date.seconds == 1600001000
    assert [(t.key, t.value) for t in c.trailers] == [
        (b"Signed-off-by", b"Alice <alice@example.com>"), (b"Reviewed-by", b"Bob <bob@example.com>")]
    assert c.signature_type == pb("shared").NONE
    # without the flag, no trailers
    assert list(find_commit(node, facts["c2"].encode()).commit.trailers) == []


def test_find_commit_peels_tags(node, facts):
    assert find_commit(node, b"v1.0").commit.id == facts["c2"]
    assert find_commit(node, b"v1.0-again").commit.id == facts["c2"]


def test_find_commit_not_found_is_empty(node, facts):
    for rev in (b"nope", b"1" * 40, b"treetag"):
        resp = find_commit(node, rev)
        assert not resp.HasField("commit"), rev


def test_find_commit_long_message_is_truncated(node):
    path = node.repo_path("read.git")
    msg = "subject line\n\n" + "x" * 20000 + "\n"
    oid = git("--git-dir", path, "commit-tree", "main^{tree}", "-m", msg).strip()
    c = find_commit(node, oid.encode()).commit
    assert c.body_size == len(msg)
    assert len(c.body) == 10240 and c.body == msg.encode()[:10240]
    assert c.subject == b"subject line"


def test_find_commit_odd_dates(node):
    path = node.repo_path("read.git")
    tree = git("--git-dir", path, "rev-parse", "main^{tree}").strip()
    raw = ("tree %s\nauthor Weird <w@x> 99999999999999999999 +0000\ncommitter NoDate <n@x>\n\nodd\n" % tree)
    oid = git("--git-dir", path, "hash-object", "-t", "commit", "-w", "--literally", "--stdin",
              input=raw.encode()).strip()
    c = find_commit(node, oid.encode()).commit
    assert c.author.date.seconds == 9223371974719179007
    assert c.author.timezone == b"+0000"
    assert not c.committer.HasField("date") and c.committer.email == b"n@x"


def test_find_commit_validation(node):
    for rev, what in ((b"", "empty revision"), (b"-x", "can't start with '-'"),
                      (b"a b", "whitespace"), (b"a:b", "':'")):
        e = rpc_error(lambda: find_commit(node, rev))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and what in e.details(), rev
    e = rpc_error(lambda: find_commit(node, b"main", repo=node.repo("nope.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: find_commit(node, b"main", repo=node.repo("../x.git")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    e = rpc_error(lambda: node.stub("CommitService", secret="bad").FindCommit(
        C().FindCommitRequest(repository=node.read_repo, revision=b"main")))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED


def test_find_commit_reuses_catfile(node):
    path = node.repo_path("read.git")
    find_commit(node, b"main")
    before = catfile_pids(path)
    for _ in range(50):
        find_commit(node, b"main")
    after = catfile_pids(path)
    assert after == before and len(after) == 1


def test_find_commit_make_bare_repo(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("s.git"), branches=("main", "dev"))
    c = gitaly_node.stub("CommitService").FindCommit(C().FindCommitRequest(
        repository=gitaly_node.repo("s.git"), revision=b"dev")).commit
    assert c.subject == b"commit on dev"


# --- ListCommits ---

def list_commits(node, revisions, **kw):
    req = C().ListCommitsRequest(repository=kw.pop("repo", None) or node.read_repo, revisions=revisions, **kw)
    return [c.id for m in stub(node).ListCommits(req) for c in m.commits]


def test_list_commits(node, facts):
    c1, c2, c3, f1 = facts["c1"], facts["c2"], facts["c3"], facts["f1"]
    assert list_commits(node, ["main"]) == [c3, c2, c1]
    assert list_commits(node, ["main"], reverse=True) == [c1, c2, c3]
    assert list_commits(node, ["main", "--not", "feature"]) == [c3, c2]
    assert set(list_commits(node, ["--all"])) >= {c1, c2, c3, f1}
    assert list_commits(node, ["main"], commit_message_patterns=[b"SECOND"], ignore_case=True) == [c2]
    assert list_commits(node, ["main"], max_parents=1) == [c3, c2, c1]
    assert list_commits(node, ["main"], disable_walk=True) == [c3]
    after = timestamp_pb2.Timestamp(seconds=1600000500)
    assert list_commits(node, ["main"], after=after) == [c3, c2]
    before = timestamp_pb2.Timestamp(seconds=1600000500)
    assert list_commits(node, ["main"], before=before) == [c1]
    assert list_commits(node, ["main"], author=b"Nobody") == []


def test_list_commits_pagination(node, facts):
    P = pb("shared").PaginationParameter
    c1, c2, c3 = facts["c1"], facts["c2"], facts["c3"]
    assert list_commits(node, ["main"], pagination_params=P(limit=1)) == [c3]
    assert list_commits(node, ["main"], pagination_params=P(page_token=c3)) == [c2, c1]
    assert list_commits(node, ["main"], pagination_params=P(page_token=c3, limit=1)) == [c2]
    assert list_commits(node, ["main"], pagination_params=P(page_token="f" * 40)) == []


def test_list_commits_many_batches(node):
    """A long history streams in several ≤1 MiB messages through the pipeline."""
    path = node.repo_path("read.git")
    msg = "m" * 9000
    script = "tree=$(git --git-dir %s rev-parse main^{tree}); p=$(git --git-dir %s rev-parse main); " \
             "for i in $(seq 1 300); do p=$(git --git-dir %s commit-tree $tree -p $p -m \"%s $i\"); done; " \
             "git --git-dir %s update-ref refs/heads/long $p" % (path, path, path, msg, path)
    import subprocess
    subprocess.run(["sh", "-c", script], check=True, env={"PATH": "/usr/bin:/bin", "GIT_AUTHOR_NAME": "T",
                   "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@x",
                   "GIT_CONFIG_GLOBAL": "/dev/null"})
    msgs = list(stub(node).ListCommits(C().ListCommitsRequest(repository=node.read_repo, revisions=["long"])))
    ids = [c.id for m in msgs for c in m.commits]
    assert len(ids) == 303 and len(set(ids)) == 303
    assert len(msgs) >= 3
    assert all(m.ByteSize() < 1024 * 1024 for m in msgs)
    assert msgs[0].commits[0].subject == (msg + " 300").encode()


def test_list_commits_errors(node):
    e = rpc_error(lambda: list_commits(node, []))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "missing revisions" in e.details()
    e = rpc_error(lambda: list_commits(node, ["--output=/tmp/x"]))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "invalid revision" in e.details()
    e = rpc_error(lambda: list_commits(node, ["no-such-rev"]))
    assert e.code() == grpc.StatusCode.INTERNAL
    e = rpc_error(lambda: list_commits(node, ["main"], repo=node.repo("nope.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: list_commits(node, ["main"], repo=node.repo("../../x")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- CommitIsAncestor ---

def is_ancestor(node, a, c, repo=None):
    return stub(node).CommitIsAncestor(C().CommitIsAncestorRequest(
        repository=repo or node.read_repo, ancestor_id=a, child_id=c)).value


def test_commit_is_ancestor(node, facts):
    assert is_ancestor(node, facts["c1"], facts["c3"]) is True
    assert is_ancestor(node, facts["c3"], facts["c1"]) is False
    assert is_ancestor(node, facts["f1"], "main") is False
    assert is_ancestor(node, "1" * 40, "main") is False
    assert is_ancestor(node, "--help", "main") is False


def test_commit_is_ancestor_errors(node, facts):
    e = rpc_error(lambda: is_ancestor(node, "", "main"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "empty ancestor sha" in e.details()
    e = rpc_error(lambda: is_ancestor(node, "main", ""))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "empty child sha" in e.details()
    e = rpc_error(lambda: is_ancestor(node, "main", "main", repo=node.repo("nope.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: is_ancestor(node, "main", "main", repo=node.repo("../x")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- TreeEntry ---

def tree_entry(node, rev, path, limit=0, max_size=0, repo=None):
    return list(stub(node).TreeEntry(C().TreeEntryRequest(repository=repo or node.read_repo, revision=rev,
                                                          path=path, limit=limit, max_size=max_size)))


def test_tree_entry_kinds(node, facts):
    T = C().TreeEntryResponse
    [m] = tree_entry(node, b"main", b"README.md")
    assert (m.type, m.oid, m.size, m.mode, m.data) == (T.BLOB, facts["readme_oid"], 12, 0o100644, b"hello again\n")
    [m] = tree_entry(node, b"main", b"dir/")
    assert (m.type, m.oid, m.mode) == (T.TREE, facts["dir_oid"], 0o40000) and m.size > 0
    [m] = tree_entry(node, b"main", b"sub/module")
    assert (m.type, m.oid, m.mode, m.size) == (T.COMMIT, "1" * 40, 0o160000, 0)
    [m] = tree_entry(node, b"v1.0", b"dir/sub/deep/b.txt")
    assert m.data == b"b\n"


def test_tree_entry_big_blob_limits(node, facts):
    msgs = tree_entry(node, b"main", b"big.bin")
    assert msgs[0].size == BIG_SIZE and msgs[0].oid == facts["big_oid"]
    assert all(not m.oid for m in msgs[1:]) and all(len(m.data) <= 128 * 1024 for m in msgs)
    assert hashlib.sha1(b"".join(m.data for m in msgs)).digest() == hashlib.sha1(big_blob_bytes()).digest()
    msgs = tree_entry(node, b"main", b"big.bin", limit=1000)
    assert b"".join(m.data for m in msgs) == big_blob_bytes()[:1000]
    e = rpc_error(lambda: tree_entry(node, b"main", b"big.bin", max_size=1000))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.details() == "object size (%d) is bigger than the maximum allowed size (1000)" % BIG_SIZE


def test_tree_entry_not_found(node):
    for rev, path in ((b"main", b"nope"), (b"main", b"dir/nope"), (b"nope", b"README.md"),
                      (b"main", b"README.md/x"), (b"main", b"../README.md")):
        e = rpc_error(lambda: tree_entry(node, rev, path))
        assert e.code() == grpc.StatusCode.NOT_FOUND and e.details() == "tree entry not found", (rev, path)


def test_tree_entry_validation(node):
    for kw, what in (({"path": b""}, "empty Path"), ({"path": b"x", "limit": -1}, "negative Limit"),
                     ({"path": b"x", "max_size": -1}, "negative MaxSize")):
        e = rpc_error(lambda: tree_entry(node, b"main", **kw))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and what in e.details()
    e = rpc_error(lambda: tree_entry(node, b"-main", b"README.md"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    e = rpc_error(lambda: tree_entry(node, b"main", b"README.md", repo=node.repo("nope.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: tree_entry(node, b"main", b"README.md", repo=node.repo("a/../../b")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- GetTreeEntries ---

def gte(node, rev, path, repo=None, **kw):
    msgs = list(stub(node).GetTreeEntries(C().GetTreeEntriesRequest(
        repository=repo or node.read_repo, revision=rev, path=path, **kw)))
    return msgs


def entries(msgs):
    return [(e.path, e.type) for m in msgs for e in m.entries]


def test_get_tree_entries_root(node, facts):
    E = C().TreeEntry
    msgs = gte(node, b"main", b".")
    assert entries(msgs) == [(b"README.md", E.BLOB), (b"big.bin", E.BLOB), (b"dir", E.TREE),
                             (b"only", E.TREE), (b"sub", E.TREE)]
    flat = {e.path: e.flat_path for m in msgs for e in m.entries}
    assert flat == {b"README.md": b"README.md", b"big.bin": b"big.bin", b"dir": b"dir",
                    b"only": b"only/one/level", b"sub": b"sub"}
    e = msgs[0].entries[2]
    assert (e.oid, e.mode, e.commit_oid) == (facts["dir_oid"], 0o40000, "main")
    assert msgs[0].HasField("pagination_cursor") and msgs[0].pagination_cursor.next_cursor == ""


def test_get_tree_entries_subdir_sorted_and_flat_skipped(node):
    E = C().TreeEntry
    S = C().GetTreeEntriesRequest
    msgs = gte(node, b"main", b"dir", sort=S.TREES_FIRST, skip_flat_paths=True)
    assert entries(msgs) == [(b"dir/sub", E.TREE), (b"dir/a.txt", E.BLOB)]
    assert all(e.flat_path == b"" for m in msgs for e in m.entries)
    msgs = gte(node, b"main", b".", sort=S.TREES_FIRST)
    # trees, then blobs, then submodules (upstream's order)
    assert [p for p, _ in entries(msgs)] == [b"dir", b"only", b"sub", b"README.md", b"big.bin"]
    assert entries(gte(node, b"main", b"sub")) == [(b"sub/module", E.COMMIT)]


def test_get_tree_entries_recursive(node):
    E = C().TreeEntry
    got = entries(gte(node, b"main", b"dir", recursive=True))
    assert got == [(b"dir/a.txt", E.BLOB), (b"dir/sub", E.TREE), (b"dir/sub/deep", E.TREE),
                   (b"dir/sub/deep/b.txt", E.BLOB)]
    got = entries(gte(node, b"main", b".", recursive=True))
    assert (b"only/one/level/c.txt", E.BLOB) in got and (b"sub/module", E.COMMIT) in got
    assert len(got) == 13


def test_get_tree_entries_pagination(node):
    P = pb("shared").PaginationParameter
    msgs = gte(node, b"main", b".", pagination_params=P(limit=2))
    assert [p for p, _ in entries(msgs)] == [b"README.md", b"big.bin"]
    token = msgs[0].pagination_cursor.next_cursor
    assert json.loads(base64.b64decode(token)) == {"file_name": "big.bin"}
    msgs = gte(node, b"main", b".", pagination_params=P(limit=2, page_token=token))
    assert [p for p, _ in entries(msgs)] == [b"dir", b"only"]
    msgs = gte(node, b"main", b".", pagination_params=P(limit=10, page_token=msgs[0].pagination_cursor.next_cursor))
    assert [p for p, _ in entries(msgs)] == [b"sub"] and msgs[0].pagination_cursor.next_cursor == ""
    assert gte(node, b"main", b".", pagination_params=P(limit=0)) == []
    e = rpc_error(lambda: gte(node, b"main", b".", pagination_params=P(limit=1, page_token="nope")))
    assert "could not find starting OID" in e.details()


def test_get_tree_entries_errors(node):
    e = rpc_error(lambda: gte(node, b"main", b""))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "empty path"
    det = status_detail(e, C().GetTreeEntriesError)
    assert det.path.error_type == pb("errors").PathError.ERROR_TYPE_EMPTY_PATH
    e = rpc_error(lambda: gte(node, b"main", b"nope"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "invalid revision or path"
    assert status_detail(e, C().GetTreeEntriesError).resolve_tree.revision == b"main"
    e = rpc_error(lambda: gte(node, b"nope", b".", recursive=True))
    assert e.code() == grpc.StatusCode.NOT_FOUND and e.details() == "invalid revision or path"
    e = rpc_error(lambda: gte(node, b"main\n", b"."))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    e = rpc_error(lambda: gte(node, b"main", b".", repo=node.repo("nope.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: gte(node, b"main", b".", repo=node.repo("../nope.git")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    # a blob at the path: no entries, no error
    assert gte(node, b"main", b"README.md") == []
    assert gte(node, b"main", b"README.md", recursive=True) == []
