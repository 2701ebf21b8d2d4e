"""RefService name listings against a node: ListBranchNamesContainingCommit,
ListTagNamesContainingCommit and FindRefsByOID, compared with git for-each-ref
(docs/technical/refs.md)."""
import subprocess

import grpc
import pytest

from gitaly_itest import pb
from helpers_reads import git_out, install_read_repo, make_read_repo, rpc_error

R = lambda: pb("ref")  # noqa: E731


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    return make_read_repo(str(tmp_path_factory.mktemp("reads")))


@pytest.fixture
def node(gitaly_node, facts):
    gitaly_node.read_repo = install_read_repo(gitaly_node, facts)
    return gitaly_node


def names(facts, *args):
    out = git_out("--git-dir", facts["path"], "for-each-ref", "--format=%(refname:lstrip=2)", *args)
    return out.splitlines()


def branches_containing(node, commit, **kw):
    req = R().ListBranchNamesContainingCommitRequest(repository=kw.pop("repo", None) or node.read_repo,
                                                     commit_id=commit, **kw)
    return [n for m in node.stub("RefService").ListBranchNamesContainingCommit(req) for n in m.branch_names]


def tags_containing(node, commit, **kw):
    req = R().ListTagNamesContainingCommitRequest(repository=kw.pop("repo", None) or node.read_repo,
                                                  commit_id=commit, **kw)
    return [n for m in node.stub("RefService").ListTagNamesContainingCommit(req) for n in m.tag_names]


def test_branch_names_containing_commit_match_git(node, facts):
    for c in ("c1", "c2", "f1"):
        got = branches_containing(node, facts[c])
        assert got == names(facts, "--contains=" + facts[c], "refs/heads"), c
    assert branches_containing(node, facts["c1"]) == [b"feature", b"main", b"nested/topic"]
    assert branches_containing(node, facts["f1"]) == [b"feature"]
    assert branches_containing(node, facts["c1"], limit=2) == [b"feature", b"main"]


def test_tag_names_containing_commit_match_git(node, facts):
    for c in ("c1", "c2", "c3", "f1"):
        got = tags_containing(node, facts[c])
        assert got == names(facts, "--contains=" + facts[c], "refs/tags"), c
    assert tags_containing(node, facts["c2"]) == [b"v1.0", b"v1.0-again"]
    assert tags_containing(node, facts["c1"], limit=1) == names(facts, "--contains=" + facts["c1"],
                                                                "--count=1", "refs/tags")
    assert tags_containing(node, facts["c3"]) == []


def test_names_containing_commit_errors(node, facts):
    for call in (branches_containing, tags_containing):
        e = rpc_error(lambda: call(node, "abc"))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.details() == 'invalid object ID: "abc", expected length 40, got 3'
        e = rpc_error(lambda: call(node, "G" * 40))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.details() == 'invalid object ID: "%s", invalid character \'G\'' % ("G" * 40)
        e = rpc_error(lambda: call(node, ""))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
        # a well-formed id of no object: git refuses it
        e = rpc_error(lambda: call(node, "1" * 40))
        assert e.code() == grpc.StatusCode.INTERNAL and e.details().startswith("exit status ")
        e = rpc_error(lambda: call(node, facts["c1"], repo=node.repo("nope.git")))
        assert e.code() == grpc.StatusCode.NOT_FOUND


def refs_by_oid(node, oid, **kw):
    req = R().FindRefsByOIDRequest(repository=kw.pop("repo", None) or node.read_repo, oid=oid, **kw)
    return list(node.stub("RefService").FindRefsByOID(req).refs)


def test_find_refs_by_oid_matches_git(node, facts):
    def git_refs(*args):
        out = git_out("--git-dir", facts["path"], "for-each-ref", "--format=%(refname)", *args)
        return out.decode().splitlines()
    c1 = facts["c1"]
    assert refs_by_oid(node, c1) == git_refs("--points-at=" + c1, "refs/tags/", "refs/heads/")
    assert refs_by_oid(node, c1) == ["refs/heads/nested/topic"]
    # a tag object is found by its own id, and so is a tag of that tag (git peels one level)
    assert refs_by_oid(node, facts["v1_oid"]) == ["refs/tags/v1.0", "refs/tags/v1.0-again"] == \
        git_refs("--points-at=" + facts["v1_oid"], "refs/tags/", "refs/heads/")
    # git sorts by refname whatever the patterns' order
    assert refs_by_oid(node, facts["f1"]) == ["refs/heads/feature", "refs/tags/light"] == \
        git_refs("--points-at=" + facts["f1"], "refs/tags/", "refs/heads/")
    assert refs_by_oid(node, facts["f1"], ref_patterns=["refs/heads/"]) == ["refs/heads/feature"]
    assert refs_by_oid(node, facts["f1"], limit=1) == ["refs/heads/feature"]
    assert refs_by_oid(node, facts["f1"], sort_field="-refname") == \
        git_refs("--sort=-refname", "--points-at=" + facts["f1"], "refs/tags/", "refs/heads/")
    assert refs_by_oid(node, "1" * 40) == []


def test_find_refs_by_oid_errors(node, facts):
    e = rpc_error(lambda: refs_by_oid(node, ""))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "empty Oid"
    # git's usage errors (exit 129) are the caller's, its other failures are internal
    e = rpc_error(lambda: refs_by_oid(node, "zzz"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details().startswith("for-each-ref pipeline command: exit status 129")
    e = rpc_error(lambda: refs_by_oid(node, facts["c1"], sort_field="nosuchfield"))
    assert e.code() == grpc.StatusCode.INTERNAL and "exit status 128" in e.details()
    e = rpc_error(lambda: refs_by_oid(node, facts["c1"], repo=node.repo("nope.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND


def tag_messages(node, ids, repo=None):
    req = R().GetTagMessagesRequest(repository=repo or node.read_repo, tag_ids=ids)
    res = []
    for m in node.stub("RefService").GetTagMessages(req):
        if m.tag_id:
            res.append([m.tag_id, b""])
        else:
            assert res, "message data before a tag id"
            res[-1][1] += m.message
    return [tuple(r) for r in res]


def git_tag_message(path, oid):
    raw = git_out("--git-dir", path, "cat-file", "tag", oid)
    return raw.split(b"\n\n", 1)[1]


def test_get_tag_messages_match_cat_file(node, facts):
    ids = [facts["v1_oid"], facts["v1_again_oid"], facts["v1_oid"]]
    got = tag_messages(node, ids)
    assert got == [(i, git_tag_message(facts["path"], i)) for i in ids]
    assert got[0][1] == b"release 1.0\n\nnotes\n"
    assert tag_messages(node, []) == []


def test_get_tag_messages_long_message_is_streamed_whole(node, facts, tmp_path):
    path = node.repo_path("read.git")
    body = "".join("line %06d of a long tag message\n" % i for i in range(12000))   # ~400 KB
    (tmp_path / "msg").write_text(body)
    subprocess.run(["git", "--git-dir", path, "-c", "user.name=T", "-c", "user.email=t@example.com", "tag", "-a",
                    "-F", str(tmp_path / "msg"), "long", facts["c1"]], check=True, capture_output=True)
    oid = git_out("--git-dir", path, "rev-parse", "refs/tags/long").decode().strip()
    msgs = list(node.stub("RefService").GetTagMessages(R().GetTagMessagesRequest(repository=node.read_repo,
                                                                                tag_ids=[oid])))
    assert len(msgs) > 2 and msgs[0].tag_id == oid
    assert b"".join(m.message for m in msgs) == git_tag_message(path, oid) == body.encode()


def test_get_tag_messages_errors(node, facts):
    e = rpc_error(lambda: tag_messages(node, [facts["c1"]]))
    assert (e.code(), e.details()) == (grpc.StatusCode.INTERNAL, "getting tag: expected tag, got commit")
    e = rpc_error(lambda: tag_messages(node, [facts["v1_oid"], "1" * 40]))
    assert (e.code(), e.details()) == (grpc.StatusCode.INTERNAL, "getting tag: object not found")
    e = rpc_error(lambda: tag_messages(node, [facts["v1_oid"]], repo=node.repo("nope.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: list(node.stub("RefService").GetTagMessages(R().GetTagMessagesRequest(tag_ids=["x"]))))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


def tag_signatures(node, revs, repo=None):
    req = R().GetTagSignaturesRequest(repository=repo or node.read_repo, tag_revisions=revs)
    return [(s.tag_id, s.signature, s.content) for m in node.stub("RefService").GetTagSignatures(req)
            for s in m.signatures]


def split_signature(raw):
    i = raw.find(b"-----BEGIN")
    if i > 0:
        sig = raw[i:]
        return (sig[:-1] if sig.endswith(b"\n") else sig), raw[:i]
    return b"", raw


def test_get_tag_signatures_split_ssh_signed_tags(node, facts, tmp_path):
    path = node.repo_path("read.git")
    key = str(tmp_path / "key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True, capture_output=True)
    subprocess.run(["git", "--git-dir", path, "-c", "user.name=T", "-c", "user.email=t@example.com",
                    "-c", "gpg.format=ssh", "-c", "user.signingkey=" + key + ".pub",
                    "tag", "-s", "-m", "signed release", "signed", facts["c2"]], check=True, capture_output=True)
    signed = git_out("--git-dir", path, "rev-parse", "refs/tags/signed").decode().strip()
    raw = git_out("--git-dir", path, "cat-file", "tag", signed)
    sig, content = split_signature(raw)
    assert sig.startswith(b"-----BEGIN SSH SIGNATURE-----") and content.endswith(b"signed release\n")

    assert tag_signatures(node, [signed]) == [(signed, sig, content)]
    # an unsigned tag: no signature, the whole object is the content; a tag of a tag walks both
    v1 = facts["v1_oid"]
    assert tag_signatures(node, [v1]) == [(v1, b"", git_out("--git-dir", path, "cat-file", "tag", v1))]
    got = tag_signatures(node, ["refs/tags/v1.0-again"])
    assert [g[0] for g in got] == [facts["v1_again_oid"], v1]
    # pseudo revisions: every tag the refs reach, as rev-list lists them
    out = git_out("--git-dir", path, "rev-list", "--objects", "--filter=object:type=tag", "--filter-provided-objects",
                  "--tags").decode().split()
    got = tag_signatures(node, ["--tags"])
    assert sorted(g[0] for g in got) == sorted(o for o in out if len(o) == 40)
    assert (signed, sig, content) in got
    # commits and blobs named directly are not tags: nothing comes back for them
    assert tag_signatures(node, [facts["c1"]]) == []


def test_get_tag_signatures_errors(node, facts):
    e = rpc_error(lambda: tag_signatures(node, []))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "missing revisions")
    e = rpc_error(lambda: tag_signatures(node, ["-dashed"]))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                       "invalid revision: revision can't start with '-'")
    e = rpc_error(lambda: tag_signatures(node, ["1" * 40]))
    assert e.code() == grpc.StatusCode.INTERNAL
    assert e.details() == ('cat-file iterator stop: rev-list pipeline command: exit status 128, '
                           'stderr: "fatal: bad object %s\\n"' % ("1" * 40))
    e = rpc_error(lambda: tag_signatures(node, ["v1.0"], repo=node.repo("nope.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND


def test_find_all_remote_branches_match_for_each_ref(node, facts):
    path = node.repo_path("read.git")
    updates = "".join("update refs/remotes/origin/b%02d %s\n" % (i, facts["c1"] if i % 2 else facts["f1"])
                      for i in range(25))
    updates += "update refs/remotes/other/x %s\nupdate refs/remotes/originals/y %s\n" % (facts["c2"], facts["c2"])
    subprocess.run(["git", "--git-dir", path, "update-ref", "--stdin"], input=updates.encode(), check=True)
    s = node.stub("RefService")

    def remote(name):
        msgs = list(s.FindAllRemoteBranches(R().FindAllRemoteBranchesRequest(repository=node.read_repo,
                                                                             remote_name=name)))
        return msgs, [(b.name, b.target_commit.id) for m in msgs for b in m.branches]

    msgs, got = remote("origin")
    want = git_out("--git-dir", path, "for-each-ref", "--format=%(refname) %(objectname)", "refs/remotes/origin")
    assert got == [(name, oid.decode()) for name, oid in (line.split(b" ") for line in want.splitlines())]
    assert len(got) == 25 and [len(m.branches) for m in msgs] == [20, 5]
    b = [b for m in msgs for b in m.branches][0]
    assert b.target_commit.subject and b.target_commit.author.email
    _, got = remote("other")
    assert got == [(b"refs/remotes/other/x", facts["c2"])]
    _, got = remote("nosuch")
    assert got == []
    e = rpc_error(lambda: remote(""))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "empty RemoteName")
    e = rpc_error(lambda: list(s.FindAllRemoteBranches(R().FindAllRemoteBranchesRequest(
        repository=node.repo("nope.git"), remote_name="origin"))))
    assert e.code() == grpc.StatusCode.NOT_FOUND
