"""DeleteRefs against a node: the refs git itself lists afterwards, the request checks,
malformed names and a held lock (docs/technical/refs.md, "DeleteRefs")."""
import os

import grpc
import pytest

from gitaly_itest import pb
from helpers_reads import git_out, install_read_repo, make_read_repo, rpc_error, status_detail

R = lambda: pb("ref")  # noqa: E731


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    return make_read_repo(str(tmp_path_factory.mktemp("reads")))


@pytest.fixture
def node(gitaly_node, facts):
    gitaly_node.read_repo = install_read_repo(gitaly_node, facts)
    return gitaly_node


def refs(node):
    out = git_out("--git-dir", node.repo_path("read.git"), "for-each-ref", "--format=%(refname)")
    return out.decode().splitlines()


def delete(node, repo=None, **kw):
    return node.stub("RefService").DeleteRefs(R().DeleteRefsRequest(repository=repo or node.read_repo, **kw))


def test_delete_refs_by_name(node):
    before = refs(node)
    assert "refs/heads/feature" in before and "refs/tags/light" in before
    delete(node, refs=[b"refs/heads/feature", b"refs/tags/light", b"refs/heads/no-such-branch"])
    assert refs(node) == [r for r in before if r not in ("refs/heads/feature", "refs/tags/light")]


def test_delete_refs_except_with_prefix(node):
    before = refs(node)
    delete(node, except_with_prefix=[b"refs/heads/ma", b"refs/tags/v1"])
    assert refs(node) == [r for r in before if r.startswith("refs/heads/ma") or r.startswith("refs/tags/v1")]
    assert refs(node) == ["refs/heads/main", "refs/tags/v1.0", "refs/tags/v1.0-again"]
    # HEAD is not a reference to delete: it still names main
    assert git_out("--git-dir", node.repo_path("read.git"), "symbolic-ref", "HEAD").strip() == b"refs/heads/main"


def test_delete_refs_request_checks(node):
    cases = [
        ({"refs": [b"refs/heads/main"], "except_with_prefix": [b"refs/tags"]},
         "ExceptWithPrefix and Refs are mutually exclusive"),
        ({}, "empty ExceptWithPrefix and Refs"),
        ({"except_with_prefix": [b"refs/tags", b""]}, "empty prefix for exclusion"),
        ({"refs": [b"refs/heads/main", b""]}, "empty ref"),
    ]
    for kw, msg in cases:
        e = rpc_error(lambda: delete(node, **kw))
        assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, msg), kw
    e = rpc_error(lambda: delete(node, repo=node.repo("nope.git"), refs=[b"refs/heads/main"]))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: node.stub("RefService").DeleteRefs(R().DeleteRefsRequest(refs=[b"refs/heads/main"])))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_delete_refs_refuses_malformed_names_and_deletes_nothing(node):
    before = refs(node)
    e = rpc_error(lambda: delete(node, refs=[b"refs/heads/main", b"refs/heads/a b", b"-dash",
                                             b"refs/heads/main\0tail"]))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid references")
    det = status_detail(e, R().DeleteRefsError)
    assert list(det.invalid_format.refs) == [b"refs/heads/a b", b"-dash", b"refs/heads/main\0tail"]
    assert refs(node) == before


def test_delete_refs_locked_reference_is_aborted(node):
    before = refs(node)
    lock = os.path.join(node.repo_path("read.git"), "refs", "heads", "feature.lock")
    with open(lock, "w") as f:
        f.write("")
    try:
        e = rpc_error(lambda: delete(node, refs=[b"refs/heads/main", b"refs/heads/feature"]))
        assert (e.code(), e.details()) == (grpc.StatusCode.ABORTED, "cannot lock references")
        det = status_detail(e, R().DeleteRefsError)
        assert list(det.references_locked.refs) == [b"refs/heads/feature"]
        assert refs(node) == before      # all or nothing
    finally:
        os.unlink(lock)
    delete(node, refs=[b"refs/heads/feature"])
    assert "refs/heads/feature" not in refs(node)


# --- UpdateReferences ---

def U(ref, new, old=""):
    return R().UpdateReferencesRequest.Update(reference=ref.encode(), new_object_id=new.encode(),
                                              old_object_id=old.encode())


def update(node, *batches, repo=None):
    def gen():
        for i, updates in enumerate(batches):
            yield R().UpdateReferencesRequest(repository=(repo or node.read_repo) if i == 0 else None,
                                              updates=updates)
    return node.stub("RefService").UpdateReferences(gen())


def ref_map(node):
    out = git_out("--git-dir", node.repo_path("read.git"), "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ") for line in out.decode().splitlines())


ZERO = "0" * 40


def test_update_references_in_several_messages_is_one_transaction(node, facts):
    before = ref_map(node)
    update(node, [U("refs/heads/new", facts["c1"]), U("refs/heads/main", facts["c1"], facts["c3"])],
           [U("refs/heads/feature", ZERO, facts["f1"])], [U("refs/custom/x", facts["c2"])])
    after = ref_map(node)
    want = dict(before)
    want.update({"refs/heads/new": facts["c1"], "refs/heads/main": facts["c1"], "refs/custom/x": facts["c2"]})
    del want["refs/heads/feature"]
    assert after == want


def test_update_references_old_value_mismatch_changes_nothing(node, facts):
    before = ref_map(node)
    e = rpc_error(lambda: update(node, [U("refs/heads/other", facts["c1"]),
                                        U("refs/heads/main", facts["c1"], facts["c2"])]))
    assert (e.code(), e.details()) == (grpc.StatusCode.ABORTED, "reference does not point to expected object")
    det = status_detail(e, R().UpdateReferencesError).reference_state_mismatch
    assert (det.reference_name, det.expected_object_id, det.actual_object_id) == \
        (b"refs/heads/main", facts["c2"].encode(), facts["c3"].encode())
    assert ref_map(node) == before


def test_update_references_locked_and_missing_object(node, facts):
    before = ref_map(node)
    lock = os.path.join(node.repo_path("read.git"), "refs", "heads", "main.lock")
    open(lock, "w").close()
    try:
        e = rpc_error(lambda: update(node, [U("refs/heads/main", facts["c1"])]))
        assert (e.code(), e.details()) == (grpc.StatusCode.ABORTED, "reference is already locked")
        assert list(status_detail(e, R().UpdateReferencesError).references_locked.refs) == [b"refs/heads/main"]
    finally:
        os.unlink(lock)
    e = rpc_error(lambda: update(node, [U("refs/heads/main", "1" * 40)]))
    assert (e.code(), e.details()) == (grpc.StatusCode.NOT_FOUND, "target object missing")
    assert ref_map(node) == before


def test_update_references_request_checks(node, facts):
    before = ref_map(node)
    cases = [
        ([[U("HEAD", facts["c1"])]], "validating reference: HEAD reference not allowed"),
        ([[U("main", facts["c1"])]], "validating reference: reference is not fully qualified"),
        ([[U("refs/heads/a..b", facts["c1"])]], "validating reference: reference must not contain double dots"),
        ([[U("refs/heads/x.lock", facts["c1"])]], "validating reference: component must not end with .lock"),
        ([[U("refs/heads/x", "abc")]],
         'validating new object ID: invalid object ID: "abc", expected length 40, got 3'),
        ([[U("refs/heads/x", facts["c1"], "Z" * 40)]],
         'validating old object ID: invalid object ID: "%s", invalid character \'Z\'' % ("Z" * 40)),
        ([[]], "no updates specified"),
        ([[U("refs/heads/x", facts["c1"])], []], "no updates specified"),
    ]
    for batches, msg in cases:
        e = rpc_error(lambda: update(node, *batches))
        assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, msg), batches
    e = rpc_error(lambda: update(node, [U("refs/heads/a b", facts["c1"])]))
    assert list(status_detail(e, R().UpdateReferencesError).invalid_format.refs) == [b"refs/heads/a b"]

    def twice():
        yield R().UpdateReferencesRequest(repository=node.read_repo, updates=[U("refs/heads/x", facts["c1"])])
        yield R().UpdateReferencesRequest(repository=node.read_repo, updates=[U("refs/heads/y", facts["c1"])])
    e = rpc_error(lambda: node.stub("RefService").UpdateReferences(twice()))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "repository set in subsequent request")
    e = rpc_error(lambda: update(node, [U("refs/heads/x", facts["c1"])], repo=node.repo("nope.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert ref_map(node) == before
