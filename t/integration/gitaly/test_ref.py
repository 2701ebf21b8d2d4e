"""RefService reads: default branch, branches, refs and tags against a real gitaly."""
import grpc
import pytest

from gitaly_itest import git, make_bare_repo, pb
from helpers_reads import catfile_pids, install_read_repo, make_read_repo, rpc_error, status_detail


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    return make_read_repo(str(tmp_path_factory.mktemp("reads")))


@pytest.fixture
def node(gitaly_node, facts):
    gitaly_node.read_repo = install_read_repo(gitaly_node, facts)
    return gitaly_node


R = lambda: pb("ref")  # noqa: E731
P = lambda **kw: pb("shared").PaginationParameter(**kw)  # noqa: E731


def stub(node):
    return node.stub("RefService")


def git_in(node, *args, rel="read.git"):
    return git("--git-dir", node.repo_path(rel), *args)


# --- FindDefaultBranchName ---

def default_branch(node, head_only=False, rel="read.git"):
    return stub(node).FindDefaultBranchName(R().FindDefaultBranchNameRequest(
        repository=node.repo(rel), head_only=head_only)).name


def test_default_branch(node):
    assert default_branch(node) == b"refs/heads/main"
    assert default_branch(node, head_only=True) == b"refs/heads/main"


def test_default_branch_fallbacks(gitaly_node):
    node = gitaly_node
    make_bare_repo(node.repo_path("fb.git"), branches=("master", "zeta", "alpha"))
    git_in(node, "symbolic-ref", "HEAD", "refs/heads/gone", rel="fb.git")
    # HEAD unborn: main, then master
    assert default_branch(node, rel="fb.git") == b"refs/heads/master"
    assert default_branch(node, head_only=True, rel="fb.git") == b"refs/heads/gone"
    # no main/master: the first branch by name
    git_in(node, "update-ref", "-d", "refs/heads/master", rel="fb.git")
    assert default_branch(node, rel="fb.git") == b"refs/heads/alpha"
    # no branches at all: empty, no error
    git_in(node, "update-ref", "-d", "refs/heads/zeta", rel="fb.git")
    git_in(node, "update-ref", "-d", "refs/heads/alpha", rel="fb.git")
    assert default_branch(node, rel="fb.git") == b""


def test_default_branch_detached_head_is_internal(node, facts):
    git_in(node, "update-ref", "--no-deref", "HEAD", facts["c1"])
    e = rpc_error(lambda: default_branch(node))
    assert e.code() == grpc.StatusCode.INTERNAL


def test_default_branch_repo_errors(node):
    e = rpc_error(lambda: default_branch(node, rel="nope.git"))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: default_branch(node, rel="../escape.git"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    e = rpc_error(lambda: node.stub("RefService", secret="bad").FindDefaultBranchName(
        R().FindDefaultBranchNameRequest(repository=node.read_repo)))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED


def test_default_branch_reuses_catfile(node):
    path = node.repo_path("read.git")
    default_branch(node)
    before = catfile_pids(path)
    for _ in range(50):
        assert default_branch(node) == b"refs/heads/main"
    after = catfile_pids(path)
    assert after == before and len(after) == 1


# --- RefExists ---

def test_ref_exists(node):
    ex = lambda ref, repo=None: stub(node).RefExists(R().RefExistsRequest(  # noqa: E731
        repository=repo or node.read_repo, ref=ref)).value
    assert ex(b"refs/heads/main") is True
    assert ex(b"refs/tags/v1.0") is True
    assert ex(b"refs/heads/nope") is False
    for bad in (b"main", b"", b"HEAD"):
        e = rpc_error(lambda: ex(bad))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "invalid refname"
    e = rpc_error(lambda: ex(b"refs/heads/main", node.repo("nope.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: ex(b"refs/heads/main", node.repo("../x")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- FindLocalBranches / FindAllBranches ---

def local_branches(node, repo=None, **kw):
    msgs = list(stub(node).FindLocalBranches(R().FindLocalBranchesRequest(repository=repo or node.read_repo, **kw)))
    return msgs, [(b.name, b.target_commit.id) for m in msgs for b in m.local_branches]


def test_find_local_branches(node, facts):
    S = R().FindLocalBranchesRequest
    _, got = local_branches(node)
    assert got == [(b"refs/heads/feature", facts["f1"]), (b"refs/heads/main", facts["c3"]),
                   (b"refs/heads/nested/topic", facts["c1"])]
    _, got = local_branches(node, sort_by=S.UPDATED_DESC)
    assert [n for n, _ in got] == [b"refs/heads/feature", b"refs/heads/main", b"refs/heads/nested/topic"]
    _, got = local_branches(node, sort_by=S.UPDATED_ASC)
    assert [n for n, _ in got] == [b"refs/heads/nested/topic", b"refs/heads/main", b"refs/heads/feature"]
    msgs, _ = local_branches(node)
    c = msgs[0].local_branches[1].target_commit
    assert c.subject == b"add submodule" and c.author.email == b"test@example.com"


def test_find_local_branches_pagination(node, facts):
    _, got = local_branches(node, pagination_params=P(limit=1))
    assert [n for n, _ in got] == [b"refs/heads/feature"]
    _, got = local_branches(node, pagination_params=P(page_token="refs/heads/feature", limit=-1))
    assert [n for n, _ in got] == [b"refs/heads/main", b"refs/heads/nested/topic"]
    # as upstream: a token with limit 0 reads nothing, so the token is never found
    e = rpc_error(lambda: local_branches(node, pagination_params=P(page_token="refs/heads/feature")))
    assert e.code() == grpc.StatusCode.INTERNAL and "could not find page token" in e.details()
    _, got = local_branches(node, pagination_params=P(page_token="refs/heads/feature", limit=1))
    assert [n for n, _ in got] == [b"refs/heads/main"]
    assert local_branches(node, pagination_params=P(limit=0)) == ([], [])
    e = rpc_error(lambda: local_branches(node, pagination_params=P(page_token="refs/heads/nope", limit=-1)))
    assert e.code() == grpc.StatusCode.INTERNAL and "could not find page token" in e.details()


def test_find_local_branches_batches_of_20(node, facts):
    for i in range(47):
        git_in(node, "update-ref", "refs/heads/many-%02d" % i, facts["c2"])
    msgs, got = local_branches(node)
    assert [len(m.local_branches) for m in msgs] == [20, 20, 10]
    assert len(got) == 50


def test_find_local_branches_errors(node):
    e = rpc_error(lambda: local_branches(node, repo=node.repo("nope.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: local_branches(node, repo=node.repo("../../x")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


def all_branches(node, **kw):
    msgs = stub(node).FindAllBranches(R().FindAllBranchesRequest(repository=node.read_repo, **kw))
    return [(b.name, b.target.id) for m in msgs for b in m.branches]


def test_find_all_branches(node, facts):
    git_in(node, "update-ref", "refs/remotes/origin/x", facts["c2"])
    assert all_branches(node) == [(b"refs/heads/feature", facts["f1"]), (b"refs/heads/main", facts["c3"]),
                                  (b"refs/heads/nested/topic", facts["c1"]),
                                  (b"refs/remotes/origin/x", facts["c2"])]
    merged = [n for n, _ in all_branches(node, merged_only=True)]
    assert merged == [b"refs/heads/main", b"refs/heads/nested/topic", b"refs/remotes/origin/x"]
    assert all_branches(node, merged_only=True, merged_branches=[b"refs/heads/feature"]) == []
    assert [n for n, _ in all_branches(node, merged_only=True, merged_branches=[b"refs/heads/nested"])] == \
        [b"refs/heads/nested/topic"]
    e = rpc_error(lambda: list(stub(node).FindAllBranches(R().FindAllBranchesRequest(
        repository=node.repo("nope.git")))))
    assert e.code() == grpc.StatusCode.NOT_FOUND


# --- FindBranch ---

def find_branch(node, name, repo=None):
    return stub(node).FindBranch(R().FindBranchRequest(repository=repo or node.read_repo, name=name))


def test_find_branch(node, facts):
    b = find_branch(node, b"feature").branch
    assert b.name == b"feature" and b.target_commit.id == facts["f1"]
    assert b.target_commit.subject == b"feature work"
    assert find_branch(node, b"nested/topic").branch.target_commit.id == facts["c1"]
    # not found: an empty response
    assert not find_branch(node, b"nope").HasField("branch")
    # the name is always qualified with refs/heads/ (as upstream does)
    assert not find_branch(node, b"refs/heads/main").HasField("branch")


def test_find_branch_errors(node):
    e = rpc_error(lambda: find_branch(node, b""))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "Branch name cannot be empty"
    e = rpc_error(lambda: find_branch(node, b"f*"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "ambiguous" in e.details()
    assert '"refs/heads/feature"' in e.details()
    e = rpc_error(lambda: find_branch(node, b"main", repo=node.repo("nope.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: find_branch(node, b"main", repo=node.repo("../nope.git")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- ListRefs ---

def list_refs(node, patterns, repo=None, **kw):
    msgs = list(stub(node).ListRefs(R().ListRefsRequest(repository=repo or node.read_repo,
                                                          patterns=patterns, **kw)))
    return msgs, [(r.name, r.target, r.peeled_target) for m in msgs for r in m.references]


def test_list_refs(node, facts):
    _, got = list_refs(node, [b"refs/heads/"])
    assert got == [(b"refs/heads/feature", facts["f1"], ""), (b"refs/heads/main", facts["c3"], ""),
                   (b"refs/heads/nested/topic", facts["c1"], "")]
    _, got = list_refs(node, [b"refs/heads/"], head=True)
    assert got[0] == (b"HEAD", facts["c3"], "") and len(got) == 4
    _, got = list_refs(node, [b"refs/tags/"], peel_tags=True)
    assert (b"refs/tags/v1.0", facts["v1_oid"], facts["c2"]) in got
    assert (b"refs/tags/light", facts["f1"], "") in got
    _, got = list_refs(node, [b"refs/"], pointing_at_oids=[facts["c1"].encode()])
    assert [n for n, _, _ in got] == [b"refs/heads/nested/topic"]
    S = R().ListRefsRequest.SortBy
    _, got = list_refs(node, [b"refs/heads/"], sort_by=S(key=S.REFNAME, direction=pb("shared").DESCENDING))
    assert [n for n, _, _ in got] == [b"refs/heads/nested/topic", b"refs/heads/main", b"refs/heads/feature"]
    # nothing matched: no message at all, HEAD included
    assert list_refs(node, [b"refs/nothing/"], head=True) == ([], [])


def test_list_refs_batches(node, facts):
    for i in range(45):
        git_in(node, "update-ref", "refs/x/r%02d" % i, facts["c2"])
    msgs, got = list_refs(node, [b"refs/x/"], head=True)
    assert [len(m.references) for m in msgs] == [21, 20, 5]
    assert got[0][0] == b"HEAD"


def test_list_refs_unborn_head(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("u.git"))
    git("--git-dir", gitaly_node.repo_path("u.git"), "symbolic-ref", "HEAD", "refs/heads/unborn")
    _, got = list_refs(gitaly_node, [b"refs/heads/"], head=True, repo=gitaly_node.repo("u.git"))
    assert [n for n, _, _ in got] == [b"refs/heads/main"]


def test_list_refs_errors(node):
    e = rpc_error(lambda: list_refs(node, []))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "patterns must have at least one entry" in e.details()
    e = rpc_error(lambda: list_refs(node, [b"refs/"], repo=node.repo("nope.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: list_refs(node, [b"refs/"], repo=node.repo("../x")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- FindTag / FindAllTags ---

def find_tag(node, name, repo=None):
    return stub(node).FindTag(R().FindTagRequest(repository=repo or node.read_repo, tag_name=name)).tag


def test_find_tag_annotated(node, facts):
    t = find_tag(node, b"v1.0")
    assert (t.name, t.id) == (b"v1.0", facts["v1_oid"])
    assert t.message == b"release 1.0\n\nnotes" and t.message_size == len(t.message)
    assert t.tagger.name == b"Test" and t.tagger.date.seconds == 1600004000
    assert t.target_commit.id == facts["c2"]
    t = find_tag(node, b"v1.0-again")
    assert t.id == facts["v1_again_oid"] and t.target_commit.id == facts["c2"]


def test_find_tag_lightweight(node, facts):
    t = find_tag(node, b"light")
    assert (t.name, t.id, t.target_commit.id, t.message) == (b"light", facts["f1"], facts["f1"], b"")
    t = find_tag(node, b"treetag")
    assert (t.name, t.id) == (b"treetag", facts["tree_c1"]) and not t.HasField("target_commit")


def test_find_tag_not_found(node):
    e = rpc_error(lambda: find_tag(node, b"nope"))
    assert e.code() == grpc.StatusCode.NOT_FOUND and e.details() == "tag does not exist"
    det = status_detail(e, R().FindTagError)
    assert det.tag_not_found.reference_name == b"refs/tags/nope"


def test_find_tag_errors(node):
    e = rpc_error(lambda: find_tag(node, b""))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    e = rpc_error(lambda: find_tag(node, b"v1.0", repo=node.repo("nope.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: find_tag(node, b"v1.0", repo=node.repo("../x")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


def all_tags(node, repo=None, **kw):
    msgs = stub(node).FindAllTags(R().FindAllTagsRequest(repository=repo or node.read_repo, **kw))
    return [t for m in msgs for t in m.tags]


def test_find_all_tags(node, facts):
    tags = all_tags(node)
    assert [t.name for t in tags] == [b"light", b"treetag", b"v1.0", b"v1.0-again"]
    by = {t.name: t for t in tags}
    assert by[b"v1.0"].id == facts["v1_oid"] and by[b"v1.0"].target_commit.id == facts["c2"]
    assert by[b"v1.0"].message == b"release 1.0\n\nnotes"
    assert by[b"v1.0-again"].target_commit.id == facts["c2"]
    assert by[b"light"].id == facts["f1"] and by[b"light"].target_commit.id == facts["f1"]
    assert by[b"treetag"].id == facts["tree_c1"] and not by[b"treetag"].HasField("target_commit")
    S = R().FindAllTagsRequest.SortBy
    tags = all_tags(node, sort_by=S(key=S.REFNAME, direction=pb("shared").DESCENDING))
    assert [t.name for t in tags] == [b"v1.0-again", b"v1.0", b"treetag", b"light"]


def test_find_all_tags_pagination(node):
    assert [t.name for t in all_tags(node, pagination_params=P(limit=2))] == [b"light", b"treetag"]
    assert [t.name for t in all_tags(node, pagination_params=P(page_token="refs/tags/treetag", limit=-1))] == \
        [b"v1.0", b"v1.0-again"]
    assert [t.name for t in all_tags(node, pagination_params=P(page_token="refs/tags/light", limit=1))] == \
        [b"treetag"]
    assert all_tags(node, pagination_params=P(limit=0)) == []
    e = rpc_error(lambda: all_tags(node, pagination_params=P(page_token="refs/tags/nope", limit=5)))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "could not find page token" in e.details()


def test_find_all_tags_on_make_bare_repo(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("t.git"), tags=("a", "b"))
    tags = all_tags(gitaly_node, repo=gitaly_node.repo("t.git"))
    assert [(t.name, t.message) for t in tags] == [(b"a", b"tag a"), (b"b", b"tag b")]


def test_find_all_tags_errors(node):
    e = rpc_error(lambda: all_tags(node, repo=node.repo("nope.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: all_tags(node, repo=node.repo("../x")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
