"""CommitService history reads against one node, checked against what git itself says."""
import grpc
import pytest
from google.protobuf import timestamp_pb2

from gitaly_itest import pb
from helpers_history import history_git, install_history_repo, make_history_repo
from helpers_reads import rpc_error


@pytest.fixture(scope="module")
def hist(tmp_path_factory):
    return make_history_repo(str(tmp_path_factory.mktemp("history")))


@pytest.fixture
def node(gitaly_node, hist):
    gitaly_node.hist_repo = install_history_repo(gitaly_node, hist)
    return gitaly_node


def stub(node):
    return node.stub("CommitService")


C = lambda: pb("commit")  # noqa: E731
S = lambda: pb("shared")  # noqa: E731


def missing_repo(node):
    return node.repo("does/not/exist.git")


def git_last(hist, rev, path, literal=False):
    lit = "--literal-pathspecs" if literal else "--no-literal-pathspecs"
    return history_git(hist, lit, "log", "--format=%H", "--max-count=1", rev, "--", path).strip()


# --- LastCommitForPath ---

def last_commit(node, rev, path, **kw):
    return stub(node).LastCommitForPath(C().LastCommitForPathRequest(
        repository=kw.pop("repo", node.hist_repo), revision=rev, path=path, **kw))


@pytest.mark.parametrize("path", [b"src/app.rb", b"docs/manual.md", b"feature.txt", b"README.md",
                                  b"sub/lib", b"-dash/file", b"src", b"", b"/"])
def test_last_commit_for_path_matches_git_log(node, hist, path):
    want = git_last(hist, "main", (path.decode() or ".") if path != b"/" else ".")
    c = last_commit(node, b"main", path).commit
    assert c.id == want
    assert c.subject == history_git(hist, "log", "-1", "--format=%s", want).strip().encode()
    assert list(c.parent_ids) == history_git(hist, "log", "-1", "--format=%P", want).split()


def test_last_commit_for_path_at_an_older_revision(node, hist):
    assert last_commit(node, hist["edit_app"].encode(), b"README.md").commit.id == hist["init"]
    assert last_commit(node, b"v1.0", b"src/app.rb").commit.id == hist["edit_app"]


def test_last_commit_for_path_unknown_or_deleted_path_is_an_empty_answer(node, hist):
    assert not last_commit(node, b"main", b"does-not-exist").HasField("commit")
    # docs/guide.md was renamed away: its last commit is the rename itself
    assert last_commit(node, b"main", b"docs/guide.md").commit.id == hist["rename"]


def test_last_commit_for_path_literal_pathspec(node, hist):
    # ":wq" is pathspec magic unless literal pathspecs are asked for
    lit = last_commit(node, b"main", b":wq", global_options=S().GlobalOptions(literal_pathspecs=True))
    assert lit.commit.id == hist["init"]
    lit2 = last_commit(node, b"main", b":wq", literal_pathspec=True)
    assert lit2.commit.id == hist["init"]
    magic = last_commit(node, b"main", b":wq")
    assert magic.commit.id == git_last(hist, "main", ":wq") and magic.commit.id != hist["init"]


def test_last_commit_for_path_refuses_paths_outside_the_repository(node, hist):
    e = rpc_error(lambda: last_commit(node, b"main", b"/etc/passwd"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "path is an absolute path"
    for p in (b"..", b"../x", b"src/../../x", b"a/b/../../../c"):
        e = rpc_error(lambda: last_commit(node, b"main", p))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "path escapes repository", p
    # staying inside after cleaning is fine
    assert last_commit(node, b"main", b"src/../README.md").commit.id == hist["gpg_signed"]


def test_last_commit_for_path_bad_revision_and_repository(node, hist):
    e = rpc_error(lambda: last_commit(node, b"", b"README.md"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "empty revision"
    e = rpc_error(lambda: last_commit(node, b"--output=/tmp/x", b"README.md"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "revision can't start with '-'"
    e = rpc_error(lambda: last_commit(node, b"no-such-branch", b"README.md"))
    assert e.code() == grpc.StatusCode.INTERNAL and "logging last commit for path: exit status 128" in e.details()
    e = rpc_error(lambda: last_commit(node, b"main", b"README.md", repo=missing_repo(node)))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: stub(node).LastCommitForPath(C().LastCommitForPathRequest(revision=b"main")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- ListLastCommitsForTree ---

def last_for_tree(node, rev, path, limit=100, offset=0, **kw):
    kw.setdefault("global_options", S().GlobalOptions(literal_pathspecs=True))
    resps = list(stub(node).ListLastCommitsForTree(C().ListLastCommitsForTreeRequest(
        repository=kw.pop("repo", node.hist_repo), revision=rev, path=path, limit=limit, offset=offset,
        **kw)))
    return resps


def flat(resps):
    return [(c.path_bytes.decode(), c.commit.id) for r in resps for c in r.commits]


def git_tree_order(hist, rev, path):
    """ls-tree entries, trees first, then blobs, then submodules, git's order within each."""
    out = history_git(hist, "ls-tree", "-z", "--full-name", rev, "--", path).split("\0")
    ents = [(l.split(" ")[1], l.split("\t", 1)[1]) for l in out if l]
    rank = {"tree": 0, "blob": 1, "commit": 2}
    return [p for _, p in sorted(ents, key=lambda e: rank[e[0]])]


def test_list_last_commits_for_tree_root_matches_git(node, hist):
    got = flat(last_for_tree(node, "main", b"/"))
    paths = git_tree_order(hist, "main", ".")
    assert [p for p, _ in got] == paths
    # trees first, then blobs
    assert paths[:6] == ["-dash", "assets", "bin", "docs", "src", "sub"] and paths[6] == ".gitattributes"
    for p, oid in got:
        assert oid == git_last(hist, "main", p, literal=True), p


def test_list_last_commits_for_tree_subdirectory_and_older_revision(node, hist):
    got = flat(last_for_tree(node, "main", b"docs/"))
    assert got == [("docs/manual.md", hist["rename"])]
    got = flat(last_for_tree(node, hist["edit_app"], b"docs/"))
    assert got == [("docs/guide.md", hist["init"])]
    got = flat(last_for_tree(node, "main", b"sub/"))
    assert got == [("sub/lib", hist["submodule"])]
    got = flat(last_for_tree(node, "main", b"-dash/"))
    assert got == [("-dash/file", hist["init"])]


def test_list_last_commits_for_tree_limit_offset_and_batches(node, hist):
    everything = flat(last_for_tree(node, "main", b""))
    n = len(everything)
    assert n > 10
    resps = last_for_tree(node, "main", b"", limit=n)
    # ten entries per message
    assert [len(r.commits) for r in resps] == [10] * (n // 10) + ([n % 10] if n % 10 else [])
    assert flat(last_for_tree(node, "main", b"", limit=3)) == everything[:3]
    assert flat(last_for_tree(node, "main", b"", limit=3, offset=2)) == everything[2:5]
    assert flat(last_for_tree(node, "main", b"", limit=100, offset=n - 1)) == everything[-1:]
    assert flat(last_for_tree(node, "main", b"", limit=5, offset=n)) == []
    assert flat(last_for_tree(node, "main", b"", limit=0)) == []


def test_list_last_commits_for_tree_errors(node, hist):
    e = rpc_error(lambda: last_for_tree(node, "", b"/"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "empty revision"
    e = rpc_error(lambda: last_for_tree(node, "--output=x", b"/"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "revision can't start with '-'"
    e = rpc_error(lambda: last_for_tree(node, "main", b"/", offset=-1))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "offset negative"
    e = rpc_error(lambda: last_for_tree(node, "main", b"/", limit=-1))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "limit negative"
    e = rpc_error(lambda: last_for_tree(node, "no-such-branch", b"/"))
    assert e.code() == grpc.StatusCode.INTERNAL and e.details() == "exit status 128"
    # without literal pathspecs the root entry ":wq" is pathspec magic: git log finds no commit for it
    e = rpc_error(lambda: last_for_tree(node, "main", b"/", global_options=S().GlobalOptions()))
    assert e.code() == grpc.StatusCode.INTERNAL and e.details() == "object not found"
    e = rpc_error(lambda: last_for_tree(node, "main", b"/", repo=missing_repo(node)))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    # a path outside the repository is refused by git, never listed
    e = rpc_error(lambda: last_for_tree(node, "main", b"../../"))
    assert e.code() == grpc.StatusCode.INTERNAL


# --- CountCommits ---

def count(node, **kw):
    kw.setdefault("repository", node.hist_repo)
    return stub(node).CountCommits(C().CountCommitsRequest(**kw)).count


def git_count(hist, *args):
    return int(history_git(hist, "rev-list", "--count", *args).strip())


def test_count_commits_matches_rev_list(node, hist):
    assert count(node, revision=b"main") == git_count(hist, "main") == 10
    assert count(node, revision=b"v1.0") == 2
    assert count(node, revision=b"main", first_parent=True) == git_count(hist, "--first-parent", "main")
    assert count(node, revision=b"main", path=b"README.md") == git_count(hist, "main", "--", "README.md")
    assert count(node, revision=b"main", path=b"src") == 2
    assert count(node, all=True) == git_count(hist, "--all")
    assert count(node, revision=b"old..main") == 9


def test_count_commits_limits_and_dates(node, hist):
    assert count(node, revision=b"main", max_count=3) == 3
    t = lambda s: timestamp_pb2.Timestamp(seconds=s)  # noqa: E731
    # commits are one hour apart from 1600000000
    assert count(node, revision=b"main", before=t(1600000000 + 3600 * 2)) == \
        git_count(hist, "--before=1600007200", "main")
    assert count(node, revision=b"main", after=t(1600000000 + 3600 * 7)) == \
        git_count(hist, "--after=1600025200", "main")
    assert count(node, revision=b"main", after=t(1600000000 + 3600 * 7)) in (3, 4)


def test_count_commits_errors(node, hist):
    e = rpc_error(lambda: count(node))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "empty Revision and false All"
    e = rpc_error(lambda: count(node, revision=b"-x"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "revision can't start with '-'"
    e = rpc_error(lambda: count(node, revision=b"main", repository=missing_repo(node)))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    # an unknown revision or a path outside the repository counts nothing, as upstream
    assert count(node, revision=b"no-such-branch") == 0
    assert count(node, revision=b"main", path=b"../../etc") == 0


# --- CountDivergingCommits ---

def diverging(node, frm, to, **kw):
    kw.setdefault("repository", node.hist_repo)
    r = stub(node).CountDivergingCommits(C().CountDivergingCommitsRequest(**{"from": frm, "to": to}, **kw))
    return r.left_count, r.right_count


def test_count_diverging_commits_matches_rev_list(node, hist):
    want = history_git(hist, "rev-list", "--count", "--left-right", "feature...old").split()
    assert diverging(node, b"feature", b"old") == tuple(int(x) for x in want) == (3, 0)
    assert diverging(node, hist["rename"].encode(), b"feature") == (1, 2)
    assert diverging(node, b"main", b"main") == (0, 0)
    left, right = diverging(node, b"main", b"old", max_count=2)
    assert left + right == 2


def test_count_diverging_commits_errors(node, hist):
    e = rpc_error(lambda: diverging(node, b"", b"main"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "from and to are both required"
    e = rpc_error(lambda: diverging(node, b"main", b""))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "from and to are both required"
    e = rpc_error(lambda: diverging(node, b"main", b"no-such-branch"))
    assert e.code() == grpc.StatusCode.INTERNAL and e.details() == "gi rev-list error: exit status 128"
    e = rpc_error(lambda: diverging(node, b"main", b"old", repository=missing_repo(node)))
    assert e.code() == grpc.StatusCode.NOT_FOUND


# --- FindCommits ---

def find_commits(node, **kw):
    kw.setdefault("repository", node.hist_repo)
    kw.setdefault("limit", 1000)
    return list(stub(node).FindCommits(C().FindCommitsRequest(**kw)))


def ids(resps):
    return [c.id for r in resps for c in r.commits]


def git_log(hist, *args):
    return history_git(hist, "log", "--format=%H", *args).split()


def test_find_commits_matches_git_log(node, hist):
    assert ids(find_commits(node, revision=b"main")) == git_log(hist, "main")
    # the empty revision is the default branch
    assert ids(find_commits(node)) == git_log(hist, "main")
    assert ids(find_commits(node, revision=b"main", paths=[b"src/app.rb"])) == [hist["edit_app"], hist["init"]]
    assert ids(find_commits(node, revision=b"main", paths=[b"README.md", b"feature.txt"])) == \
        git_log(hist, "main", "--", "README.md", "feature.txt")
    assert ids(find_commits(node, revision=b"main", first_parent=True)) == git_log(hist, "--first-parent", "main")
    assert ids(find_commits(node, revision=b"main", order=C().FindCommitsRequest.TOPO)) == \
        git_log(hist, "--topo-order", "main")
    assert ids(find_commits(node, all=True)) == git_log(hist, "--all", "--reverse")
    assert ids(find_commits(node, revision=b"main", author=b"Author 2")) == [hist["feature1"]]


def test_find_commits_follow_and_skip_merges(node, hist):
    plain = ids(find_commits(node, revision=b"main", paths=[b"docs/manual.md"]))
    assert plain == [hist["rename"]]
    followed = ids(find_commits(node, revision=b"main", paths=[b"docs/manual.md"], follow=True))
    assert followed == [hist["rename"], hist["init"]] == git_log(hist, "--follow", "main", "--", "docs/manual.md")
    # with --follow the offset is applied by the server, not by git --skip
    assert ids(find_commits(node, revision=b"main", paths=[b"docs/manual.md"], follow=True, offset=1)) == \
        [hist["init"]]
    assert ids(find_commits(node, revision=b"main", paths=[b"docs/manual.md"], follow=True, offset=5)) == []
    no_merges = ids(find_commits(node, revision=b"main", skip_merges=True))
    assert hist["merge"] not in no_merges and no_merges == git_log(hist, "--no-merges", "main")


def test_find_commits_limit_offset_and_dates(node, hist):
    everything = git_log(hist, "main")
    assert ids(find_commits(node, revision=b"main", limit=3)) == everything[:3]
    assert ids(find_commits(node, revision=b"main", limit=3, offset=2)) == everything[2:5]
    assert ids(find_commits(node, revision=b"main", limit=0)) == []
    assert ids(find_commits(node, revision=b"main", offset=100)) == []
    t = lambda n: timestamp_pb2.Timestamp(seconds=1600000000 + 3600 * n)  # noqa: E731
    got = ids(find_commits(node, revision=b"main", before=t(4), after=t(1)))
    assert got == git_log(hist, "--before=1600014400", "--after=1600003600", "main")
    assert hist["rename"] in got and hist["init"] not in got and hist["lfs"] not in got


def test_find_commits_trailers_stats_and_refs(node, hist):
    c = find_commits(node, revision=b"main", limit=1, include_shortstat=True, trailers=True,
                     include_referenced_by=[b"refs/heads/", b"refs/tags/"])[0].commits[0]
    assert c.id == hist["gpg_signed"]
    stat = history_git(hist, "show", "--shortstat", "--format=", hist["gpg_signed"]).strip()
    assert stat == "1 file changed, 1 insertion(+)"
    assert (c.short_stats.changed_files, c.short_stats.additions, c.short_stats.deletions) == (1, 1, 0)
    assert list(c.referenced_by) == [b"refs/heads/main"]
    edit = [c for r in find_commits(node, revision=b"v1.0", include_shortstat=True,
                                    include_referenced_by=[b"refs/tags/"]) for c in r.commits]
    assert edit[0].id == hist["edit_app"]
    assert (edit[0].short_stats.changed_files, edit[0].short_stats.additions, edit[0].short_stats.deletions) == \
        (1, 4, 2)
    assert list(edit[0].referenced_by) == [b"refs/tags/v1.0"]
    # a merge has no stats of its own
    merge = [c for r in find_commits(node, revision=hist["merge"].encode(), include_shortstat=True, limit=1)
             for c in r.commits][0]
    assert not merge.HasField("short_stats")


def test_find_commits_errors(node, hist):
    e = rpc_error(lambda: find_commits(node, revision=b"-x"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "revision can't start with '-'"
    e = rpc_error(lambda: find_commits(node, revision=b"main", paths=[b"README.md", b""]))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "path is empty string"
    e = rpc_error(lambda: find_commits(node, revision=b"main", repository=missing_repo(node)))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    # an unknown revision or a path outside the repository finds nothing, as upstream
    assert ids(find_commits(node, revision=b"no-such-branch")) == []
    assert ids(find_commits(node, revision=b"main", paths=[b"../../etc/passwd"])) == []


# --- FindAllCommits ---

def find_all(node, **kw):
    kw.setdefault("repository", node.hist_repo)
    return ids(stub(node).FindAllCommits(C().FindAllCommitsRequest(**kw)))


def test_find_all_commits(node, hist):
    assert find_all(node) == git_log(hist, "--branches")
    assert find_all(node, revision=b"feature") == git_log(hist, "feature")
    assert find_all(node, revision=b"main", max_count=2, skip=1) == git_log(hist, "main")[1:3]
    assert find_all(node, order=C().FindAllCommitsRequest.TOPO) == git_log(hist, "--topo-order", "--branches")
    assert find_all(node, order=C().FindAllCommitsRequest.DATE) == git_log(hist, "--date-order", "--branches")
    assert find_all(node, revision=b"no-such-branch") == []
    e = rpc_error(lambda: find_all(node, revision=b"-x"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    e = rpc_error(lambda: find_all(node, repository=missing_repo(node)))
    assert e.code() == grpc.StatusCode.NOT_FOUND


# --- CommitsByMessage ---

def by_message(node, **kw):
    kw.setdefault("repository", node.hist_repo)
    return ids(stub(node).CommitsByMessage(C().CommitsByMessageRequest(**kw)))


def test_commits_by_message(node, hist):
    assert by_message(node, query="FEATURE") == git_log(hist, "--grep=feature", "-i", "main")
    assert len(by_message(node, query="feature")) == 3   # feature1, feature2 and the merge
    assert by_message(node, query="feature", limit=1, offset=1) == [hist["feature2"]]
    assert by_message(node, query="signed", revision=b"main~1") == [hist["ssh_signed"]]
    assert by_message(node, query="feature", path=b"feature.txt") == [hist["feature2"], hist["feature1"]]
    e = rpc_error(lambda: by_message(node, query=""))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "empty Query"
    e = rpc_error(lambda: by_message(node, query="x", revision=b"-x"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    e = rpc_error(lambda: by_message(node, query="x", repository=missing_repo(node)))
    assert e.code() == grpc.StatusCode.NOT_FOUND


# --- ListCommitsByOid / ListCommitsByRefName / GetCommitMessages ---

def test_list_commits_by_oid_skips_unknown_and_peels(node, hist):
    resps = list(stub(node).ListCommitsByOid(C().ListCommitsByOidRequest(
        repository=node.hist_repo,
        oid=[hist["merge"], "f" * 40, hist["init"][:10], hist["tags"]["v1.0"], "main", "a\0b"])))
    got = [c for r in resps for c in r.commits]
    # an abbreviated id and a tag name are revisions too; unknown ones are left out
    assert [c.id for c in got] == [hist["merge"], hist["init"], hist["edit_app"], hist["gpg_signed"]]
    assert list(got[0].parent_ids) == [hist["rename"], hist["feature2"]]
    assert got[0].subject == b"Merge branch 'feature'"
    assert list(stub(node).ListCommitsByOid(C().ListCommitsByOidRequest(repository=node.hist_repo))) == []
    e = rpc_error(lambda: stub(node).ListCommitsByOid(C().ListCommitsByOidRequest(
        repository=missing_repo(node), oid=[hist["init"]])))
    assert e.code() == grpc.StatusCode.NOT_FOUND


def test_list_commits_by_oid_many_commits_in_order_and_chunked(node, hist):
    want = git_log(hist, "--all") * 600
    resps = list(stub(node).ListCommitsByOid(C().ListCommitsByOidRequest(repository=node.hist_repo, oid=want)))
    assert [c.id for r in resps for c in r.commits] == want
    # as upstream's chunker: a message is cut before its commits' own sizes add up to 1 MiB
    sizes = [sum(c.ByteSize() for c in r.commits) for r in resps]
    assert len(sizes) >= 2 and max(sizes) < 1024 * 1024 and sizes[0] > 1000 * 1000


def test_list_commits_by_ref_name(node, hist):
    resps = list(stub(node).ListCommitsByRefName(C().ListCommitsByRefNameRequest(
        repository=node.hist_repo,
        ref_names=[b"refs/heads/main", b"refs/heads/nope", b"feature", b"refs/tags/v2.0"])))
    got = [(c.ref_name, c.commit.id) for r in resps for c in r.commit_refs]
    assert got == [(b"refs/heads/main", hist["gpg_signed"]), (b"feature", hist["feature2"]),
                   (b"refs/tags/v2.0", hist["merge"])]
    e = rpc_error(lambda: stub(node).ListCommitsByRefName(C().ListCommitsByRefNameRequest(
        repository=missing_repo(node), ref_names=[b"main"])))
    assert e.code() == grpc.StatusCode.NOT_FOUND


def test_get_commit_messages(node, hist):
    resps = list(stub(node).GetCommitMessages(C().GetCommitMessagesRequest(
        repository=node.hist_repo, commit_ids=[hist["edit_app"], hist["ssh_signed"]])))
    msgs, cur = {}, None
    for r in resps:
        if r.commit_id:
            cur = r.commit_id
            msgs[cur] = b""
        msgs[cur] += r.message
    for oid in (hist["edit_app"], hist["ssh_signed"]):
        raw = history_git(hist, "cat-file", "commit", oid).encode()
        assert msgs[oid] == raw.split(b"\n\n", 1)[1]
    assert msgs[hist["edit_app"]] == b"edit app\n\nChange two lines and add two.\n"
    e = rpc_error(lambda: list(stub(node).GetCommitMessages(C().GetCommitMessagesRequest(
        repository=node.hist_repo, commit_ids=["f" * 40]))))
    assert e.code() == grpc.StatusCode.INTERNAL and e.details() == "failed to get commit message: object not found"
    e = rpc_error(lambda: list(stub(node).GetCommitMessages(C().GetCommitMessagesRequest(
        repository=missing_repo(node), commit_ids=[hist["init"]]))))
    assert e.code() == grpc.StatusCode.NOT_FOUND


# --- CommitStats ---

def stats(node, rev, **kw):
    return stub(node).CommitStats(C().CommitStatsRequest(repository=kw.pop("repo", node.hist_repo), revision=rev))


def git_numstat(hist, a, b):
    add = dele = 0
    for line in history_git(hist, "diff", "--numstat", a, b).splitlines():
        x, y, _ = line.split("\t", 2)
        if x != "-":
            add, dele = add + int(x), dele + int(y)
    return add, dele


def test_commit_stats_matches_numstat(node, hist):
    r = stats(node, b"v1.0")
    assert (r.oid, r.additions, r.deletions) == (hist["edit_app"], 4, 2)
    # the root commit compares with the empty tree; the binary logo counts nothing
    r = stats(node, hist["init"].encode())
    assert (r.additions, r.deletions) == git_numstat(hist, "4b825dc642cb6eb9a060e54bf8d69288fbee4904", hist["init"])
    assert r.additions == 20 + 1 + 2 + 1 + 1
    # a merge compares with its first parent
    r = stats(node, b"main~4")
    assert r.oid == hist["merge"] and (r.additions, r.deletions) == git_numstat(hist, hist["rename"], hist["merge"])


def test_commit_stats_errors(node, hist):
    e = rpc_error(lambda: stats(node, b"no-such-branch"))
    assert e.code() == grpc.StatusCode.INTERNAL and e.details() == "object not found"
    e = rpc_error(lambda: stats(node, b""))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "empty revision"
    e = rpc_error(lambda: stats(node, b"-x"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    e = rpc_error(lambda: stats(node, b"main", repo=missing_repo(node)))
    assert e.code() == grpc.StatusCode.NOT_FOUND


# --- ListFiles ---

def list_files(node, rev, **kw):
    return list(stub(node).ListFiles(C().ListFilesRequest(repository=kw.pop("repo", node.hist_repo), revision=rev)))


def test_list_files_matches_ls_tree(node, hist):
    want = [l.split("\t", 1)[1] for l in history_git(hist, "ls-tree", "-r", "-z", "main").split("\0")
            if l and " blob " in l]
    got = [p.decode() for r in list_files(node, b"main") for p in r.paths]
    assert got == want and "sub/lib" not in got and "assets/big.psd" in got
    # the default branch when no revision is given
    assert [p.decode() for r in list_files(node, b"") for p in r.paths] == want
    old = [p for r in list_files(node, b"old") for p in r.paths]
    assert b"docs/guide.md" in old and b"docs/manual.md" not in old


def test_list_files_unknown_revision_and_errors(node, hist):
    resps = list_files(node, b"no-such-branch")
    assert len(resps) == 1 and list(resps[0].paths) == []
    e = rpc_error(lambda: list_files(node, b"-x"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    e = rpc_error(lambda: list_files(node, b"main", repo=missing_repo(node)))
    assert e.code() == grpc.StatusCode.NOT_FOUND


# --- CheckObjectsExist ---

def exists(node, *batches, repo=None):
    repo = repo or node.hist_repo
    reqs = [C().CheckObjectsExistRequest(repository=repo if i == 0 else None, revisions=b)
            for i, b in enumerate(batches)]
    resps = list(stub(node).CheckObjectsExist(iter(reqs)))
    return [(r.name, r.exists) for resp in resps for r in resp.revisions]


def test_check_objects_exist(node, hist):
    revs = [hist["init"].encode(), b"f" * 40, b"main", b"refs/tags/v2.0", b"nope", b"main:README.md",
            b"main:no such file", b"main:src/app.rb"]
    got = exists(node, revs[:3], [], revs[3:6], revs[6:])
    assert got == [(r, e) for r, e in zip(revs, [True, False, True, True, False, True, False, True])]
    # many revisions over several messages come back in order
    many = [hist[k].encode() for k in ("init", "merge", "lfs")] * 200 + [b"x" * 40]
    got = exists(node, many[:250], many[250:])
    assert [n for n, _ in got] == many and [e for _, e in got] == [True] * 600 + [False]


def test_check_objects_exist_errors(node, hist):
    e = rpc_error(lambda: exists(node, [b"main", b"-x"]))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and \
        e.details() == "invalid revision: revision can't start with '-'"
    e = rpc_error(lambda: exists(node, [b"main"], [b"a b"]))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and \
        e.details() == "invalid revision: revision can't contain whitespace"
    e = rpc_error(lambda: list(stub(node).CheckObjectsExist(iter([]))))
    assert e.code() == grpc.StatusCode.INTERNAL and e.details() == "EOF"
    e = rpc_error(lambda: exists(node, [b"main"], repo=missing_repo(node)))
    assert e.code() == grpc.StatusCode.NOT_FOUND


# --- RawBlame ---

def blame(node, rev, path, rng=b"", **kw):
    resps = stub(node).RawBlame(C().RawBlameRequest(repository=kw.pop("repo", node.hist_repo), revision=rev,
                                                    path=path, range=rng))
    return b"".join(r.data for r in resps)


def test_raw_blame_matches_git_blame(node, hist):
    want = history_git(hist, "blame", "-p", "main", "--", "src/app.rb").encode()
    assert blame(node, b"main", b"src/app.rb") == want
    assert want.count(hist["edit_app"].encode()) >= 4 and want.startswith(hist["init"].encode()) is True
    assert blame(node, b"main", b"src/app.rb", b"3,5") == \
        history_git(hist, "blame", "-p", "-L", "3,5", "main", "--", "src/app.rb").encode()
    # a path that stays inside after cleaning, and the binary file
    assert blame(node, b"main", b"src/../README.md") == history_git(hist, "blame", "-p", "main", "--", "README.md").encode()
    assert blame(node, b"main", b"bin/logo.png").startswith(hist["init"].encode())


def test_raw_blame_errors(node, hist):
    from helpers_reads import status_detail
    e = rpc_error(lambda: blame(node, b"main", b"does-not-exist"))
    assert e.code() == grpc.StatusCode.NOT_FOUND and e.details() == "path not found in revision"
    assert status_detail(e, C().RawBlameError).path_not_found.path == b"does-not-exist"
    e = rpc_error(lambda: blame(node, b"main", b"src/app.rb", b"30,31"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "range is outside of the file length"
    assert status_detail(e, C().RawBlameError).out_of_range.actual_lines == 22
    for rng in (b"foo", b"1", b"1,", b",2", b"1,2x", b"-1,2"):
        e = rpc_error(lambda: blame(node, b"main", b"src/app.rb", rng))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "invalid Range", rng
    for p in (b"../x", b"/etc/passwd", b"a/../../x"):
        e = rpc_error(lambda: blame(node, b"main", p))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "path escapes repository root", p
    e = rpc_error(lambda: blame(node, b"main", b""))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "empty Path"
    e = rpc_error(lambda: blame(node, b"", b"README.md"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "empty revision"
    e = rpc_error(lambda: blame(node, b"no-such-branch", b"README.md"))
    assert e.code() == grpc.StatusCode.UNKNOWN and e.details().startswith("blaming file: exit status 128")
    e = rpc_error(lambda: blame(node, b"main", b"README.md", repo=missing_repo(node)))
    assert e.code() == grpc.StatusCode.NOT_FOUND


# --- GetCommitSignatures / FilterShasWithSignatures ---

def signatures(node, ids, repo=None):
    out, cur = {}, None
    for r in stub(node).GetCommitSignatures(C().GetCommitSignaturesRequest(
            repository=repo or node.hist_repo, commit_ids=ids)):
        if r.commit_id:
            cur = r.commit_id
            out[cur] = [r.signature, b"", r.signer]
        out[cur][1] += r.signed_text
    return out


def split_signed(raw):
    """The signature header's value and the commit without it, from git's own cat-file output."""
    head, msg = raw.split(b"\n\n", 1)
    lines, sig, text, inside = head.split(b"\n"), [], [], False
    for l in lines:
        if l.startswith(b"gpgsig ") and not sig:
            inside = True
            sig.append(l[len(b"gpgsig "):])
        elif inside and l.startswith(b" "):
            sig.append(l[1:])
        else:
            inside = False
            text.append(l)
    return b"\n".join(sig), b"\n".join(text) + b"\n\n" + msg


def test_get_commit_signatures_ssh_and_gpg(node, hist):
    ids = [hist["ssh_signed"], hist["init"], "f" * 40] + ([hist["gpg_signed"]] if hist["gpg"] else [])
    got = signatures(node, ids)
    # unsigned and unknown commits are left out
    assert set(got) == {hist["ssh_signed"]} | ({hist["gpg_signed"]} if hist["gpg"] else set())
    sig, text, signer = got[hist["ssh_signed"]]
    want_sig, want_text = split_signed(history_git(hist, "cat-file", "commit", hist["ssh_signed"]).encode())
    assert sig == want_sig and sig.startswith(b"-----BEGIN SSH SIGNATURE-----")
    assert text == want_text and b"gpgsig" not in text
    assert signer == C().GetCommitSignaturesResponse.SIGNER_USER
    # what we report verifies with git's own ssh-keygen verification
    import subprocess
    import tempfile
    with tempfile.NamedTemporaryFile() as f:
        f.write(sig + b"\n")
        f.flush()
        r = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", hist["allowed_signers"], "-I", "test@example.com",
                            "-n", "git", "-s", f.name], input=text, capture_output=True)
        assert r.returncode == 0, r.stderr
    if hist["gpg"]:
        sig, text, _ = got[hist["gpg_signed"]]
        assert sig.startswith(b"-----BEGIN PGP SIGNATURE-----") and sig.endswith(b"-----END PGP SIGNATURE-----")


def test_get_commit_signatures_errors(node, hist):
    e = rpc_error(lambda: signatures(node, []))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "empty CommitIds"
    e = rpc_error(lambda: signatures(node, ["main"]))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and \
        e.details() == 'invalid object ID: "main", expected length 40, got 4'
    e = rpc_error(lambda: signatures(node, ["g" * 40]))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and \
        e.details() == 'invalid object ID: "%s", invalid character \'g\'' % ("g" * 40)
    e = rpc_error(lambda: signatures(node, [hist["init"]], repo=missing_repo(node)))
    assert e.code() == grpc.StatusCode.NOT_FOUND


def test_filter_shas_with_signatures(node, hist):
    reqs = [C().FilterShasWithSignaturesRequest(repository=node.hist_repo, shas=[
                hist["init"].encode(), hist["ssh_signed"].encode(), b"f" * 40]),
            C().FilterShasWithSignaturesRequest(shas=[]),
            C().FilterShasWithSignaturesRequest(shas=[hist["gpg_signed"].encode(), hist["merge"].encode()])]
    resps = list(stub(node).FilterShasWithSignatures(iter(reqs)))
    # one answer per request message
    assert [list(r.shas) for r in resps] == [[hist["ssh_signed"].encode()], [],
                                             [hist["gpg_signed"].encode()] if hist["gpg"] else []]
    e = rpc_error(lambda: list(stub(node).FilterShasWithSignatures(iter([]))))
    assert e.code() == grpc.StatusCode.INTERNAL and e.details() == "EOF"
    e = rpc_error(lambda: list(stub(node).FilterShasWithSignatures(iter([
        C().FilterShasWithSignaturesRequest(repository=missing_repo(node), shas=[b"x"])]))))
    assert e.code() == grpc.StatusCode.NOT_FOUND


# --- ListAllCommits ---

def test_list_all_commits_includes_unreachable_and_paginates(node, hist):
    from gitaly_itest import git
    path = node.repo_path("history.git")
    dangling = git("--git-dir", path, "commit-tree", "-m", "dangling", hist["init"] + "^{tree}").strip()
    listing = git("--git-dir", path, "cat-file", "--batch-check", "--batch-all-objects", "--buffer", "--unordered")
    objs = [l.split(" ") for l in listing.splitlines()]
    want = [o for o, t, _ in objs if t == "commit"]
    assert dangling in want and len(want) == 11

    def page(**kw):
        resps = stub(node).ListAllCommits(C().ListAllCommitsRequest(
            repository=node.hist_repo, pagination_params=S().PaginationParameter(**kw)))
        return [c.id for r in resps for c in r.commits]
    assert page() == want
    assert page(limit=3) == want[:3]
    assert page(page_token=want[2], limit=4) == want[3:7]
    # a token that is not a commit still counts as a position in the object listing
    first_blob = next(o for o, t, _ in objs if t == "blob")
    after = [o for o, t, _ in objs[[o for o, _, _ in objs].index(first_blob) + 1:] if t == "commit"]
    assert page(page_token=first_blob) == after
    assert page(page_token="0" * 40) == []
    e = rpc_error(lambda: list(stub(node).ListAllCommits(C().ListAllCommitsRequest(repository=missing_repo(node)))))
    assert e.code() == grpc.StatusCode.NOT_FOUND


# --- robustness ---

NEW_METHODS = ["LastCommitForPath", "ListLastCommitsForTree", "CountCommits", "CountDivergingCommits",
               "FindCommits", "FindAllCommits", "CommitsByMessage", "ListCommitsByOid", "ListCommitsByRefName",
               "GetCommitMessages", "CommitStats", "ListFiles", "RawBlame", "GetCommitSignatures",
               "ListAllCommits", "CheckObjectsExist", "FilterShasWithSignatures"]
STREAMING_IN = {"CheckObjectsExist", "FilterShasWithSignatures"}


def test_malformed_requests_get_a_status_and_the_node_keeps_serving(node, hist):
    import random
    rnd = random.Random(7)
    ch = node.channel()
    junk = [b"\xff\xff\xff", b"\x0a\x05abc", bytes(rnd.randrange(256) for _ in range(64)), b"\x12\x80\x80\x80\x80\x10"]
    for m in NEW_METHODS:
        path = "/gitaly.CommitService/" + m
        for body in junk:
            if m in STREAMING_IN:
                call = ch.stream_stream(path, request_serializer=None, response_deserializer=None)
                res = call(iter([body]))
            else:
                call = ch.unary_stream(path, request_serializer=None, response_deserializer=None)
                res = call(body)
            try:
                list(res)
            except grpc.RpcError as e:
                assert e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                                    grpc.StatusCode.INTERNAL), (m, body, e.code(), e.details())
    # still serving, and right
    assert count(node, revision=b"main") == 10


def test_empty_repository_answers(node, hist):
    from gitaly_itest import git
    git("init", "-q", "--bare", "-b", "main", node.repo_path("empty.git"))
    empty = node.repo("empty.git")
    e = rpc_error(lambda: list(stub(node).ListFiles(C().ListFilesRequest(repository=empty))))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and \
        e.details() == "repository does not have a default branch"
    resps = list(stub(node).ListFiles(C().ListFilesRequest(repository=empty, revision=b"refs/heads/main")))
    assert [list(r.paths) for r in resps] == [[]]
    assert ids(find_commits(node, repository=empty)) == []
    assert find_all(node, repository=empty) == []
    assert count(node, repository=empty, all=True) == 0
    e = rpc_error(lambda: last_commit(node, b"main", b"README.md", repo=empty))
    assert e.code() == grpc.StatusCode.INTERNAL
