"""Bundles against a real node: CreateBundle, CreateBundleFromRefList,
FetchBundle and CreateRepositoryFromBundle with grpcio and real git."""
import os

import grpc
import pytest

from gitaly_itest import git, make_bare_repo, pb


def rp():
    return pb("repository")


def refs(path):
    return sorted(git("--git-dir", path, "for-each-ref", "--format=%(objectname) %(refname)").splitlines())


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def create_bundle(node, rel):
    return b"".join(r.data for r in node.stub("RepositoryService").CreateBundle(
        rp().CreateBundleRequest(repository=node.repo(rel))))


def stream(first, data, make, size=5000, **kw):
    yield make(repository=first, **kw)
    for i in range(0, len(data), size):
        yield make(data=data[i:i + size])


def test_create_bundle_verifies_and_clones_to_the_same_refs(gitaly_node, tmp_path):
    src = make_bare_repo(gitaly_node.repo_path("a.git"), branches=("main", "feature", "x/y"), tags=("v1",))
    data = create_bundle(gitaly_node, "a.git")
    assert data.startswith(b"# v2 git bundle\n")
    bundle = write(str(tmp_path / "a.bundle"), data)
    git("--git-dir", src, "bundle", "verify", bundle)
    git("clone", "-q", "--mirror", bundle, str(tmp_path / "clone.git"))
    assert refs(str(tmp_path / "clone.git")) == refs(src)


def test_create_bundle_of_an_empty_repository_is_refused(gitaly_node):
    git("init", "-q", "--bare", gitaly_node.repo_path("empty.git"))
    with pytest.raises(grpc.RpcError) as e:
        create_bundle(gitaly_node, "empty.git")
    assert e.value.code() == grpc.StatusCode.UNKNOWN
    assert e.value.details() == "create bundle: refusing to create empty bundle"


def test_create_bundle_of_a_missing_repository_is_not_found(gitaly_node):
    with pytest.raises(grpc.RpcError) as e:
        create_bundle(gitaly_node, "missing.git")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def ref_list(node, rel, batches):
    def reqs():
        yield rp().CreateBundleFromRefListRequest(repository=node.repo(rel), patterns=batches[0])
        for b in batches[1:]:
            yield rp().CreateBundleFromRefListRequest(patterns=b)
    return b"".join(r.data for r in node.stub("RepositoryService").CreateBundleFromRefList(reqs()))


def test_create_bundle_from_ref_list_holds_only_the_listed_refs(gitaly_node, tmp_path):
    src = make_bare_repo(gitaly_node.repo_path("b.git"), branches=("main", "feature", "other"), tags=("v1",))
    data = ref_list(gitaly_node, "b.git", [[b"refs/heads/main", b"refs/heads/nope"], [b"refs/tags/v1"]])
    bundle = write(str(tmp_path / "b.bundle"), data)
    git("--git-dir", src, "bundle", "verify", bundle)
    heads = sorted(line.split()[1] for line in git("bundle", "list-heads", bundle).splitlines())
    assert heads == ["refs/heads/main", "refs/tags/v1"]


def test_create_bundle_from_ref_list_with_no_matching_ref_is_a_failed_precondition(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("c.git"))
    with pytest.raises(grpc.RpcError) as e:
        ref_list(gitaly_node, "c.git", [[b"refs/heads/nope"]])
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "refusing to create empty bundle" in e.value.details()


def fetch_bundle(node, rel, data, update_head=False):
    return node.stub("RepositoryService").FetchBundle(
        stream(node.repo(rel), data, rp().FetchBundleRequest, update_head=update_head))


def test_fetch_bundle_brings_every_ref_and_can_update_head(gitaly_node, tmp_path):
    src = make_bare_repo(str(tmp_path / "src.git"), branches=("feature", "main"), tags=("v2",))
    git("--git-dir", src, "symbolic-ref", "HEAD", "refs/heads/feature")
    git("--git-dir", src, "bundle", "create", str(tmp_path / "s.bundle"), "--all")
    data = open(str(tmp_path / "s.bundle"), "rb").read()
    dst = gitaly_node.repo_path("dst.git")
    git("init", "-q", "--bare", "-b", "main", dst)
    fetch_bundle(gitaly_node, "dst.git", data)
    assert refs(dst) == refs(src)
    assert git("--git-dir", dst, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    fetch_bundle(gitaly_node, "dst.git", data, update_head=True)
    assert git("--git-dir", dst, "symbolic-ref", "HEAD").strip() == "refs/heads/feature"
    assert not os.listdir(os.path.join(gitaly_node.storages["default"], "+gitaly", "tmp"))


def test_fetch_bundle_errors(gitaly_node):
    with pytest.raises(grpc.RpcError) as e:
        fetch_bundle(gitaly_node, "missing.git", b"# v2 git bundle\n\n")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    make_bare_repo(gitaly_node.repo_path("d.git"))
    with pytest.raises(grpc.RpcError) as e:
        fetch_bundle(gitaly_node, "d.git", b"not a bundle\n")
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert e.value.details().startswith("fetch bundle: ")
    with pytest.raises(grpc.RpcError) as e:
        gitaly_node.stub("RepositoryService").FetchBundle(iter([]))
    assert e.value.code() == grpc.StatusCode.INTERNAL


def from_bundle(node, rel, data):
    return node.stub("RepositoryService").CreateRepositoryFromBundle(
        stream(node.repo(rel), data, rp().CreateRepositoryFromBundleRequest, size=3000))


def test_create_repository_from_bundle_has_the_bundles_refs(gitaly_node, tmp_path):
    src = make_bare_repo(gitaly_node.repo_path("orig.git"), branches=("main", "a", "b"), tags=("t1",))
    data = create_bundle(gitaly_node, "orig.git")
    from_bundle(gitaly_node, "copy.git", data)
    copy = gitaly_node.repo_path("copy.git")
    assert refs(copy) == refs(src)
    git("--git-dir", copy, "fsck")
    assert "origin" not in git("--git-dir", copy, "remote")


def test_create_repository_from_bundle_errors(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("exists.git"))
    data = create_bundle(gitaly_node, "exists.git")
    with pytest.raises(grpc.RpcError) as e:
        from_bundle(gitaly_node, "exists.git", data)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert e.value.details() == "creating repository: repository exists already"
    with pytest.raises(grpc.RpcError) as e:
        from_bundle(gitaly_node, "empty.git", b"")
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert e.value.details() == "creating repository: cloning bundle: waiting for git-clone: exit status 128"
    assert not os.path.exists(gitaly_node.repo_path("empty.git"))
    with pytest.raises(grpc.RpcError) as e:
        from_bundle(gitaly_node, "", data)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_cancelled_fetch_bundle_leaves_nothing_behind(gitaly_node, tmp_path):
    import threading
    from gitaly_itest import wait_for
    make_bare_repo(gitaly_node.repo_path("c.git"))
    before = refs(gitaly_node.repo_path("c.git"))
    release = threading.Event()
    sent = threading.Event()

    def reqs():
        yield rp().FetchBundleRequest(repository=gitaly_node.repo("c.git"), data=b"# v2 git bundle\n")
        sent.set()
        release.wait(10)

    fut = gitaly_node.stub("RepositoryService").FetchBundle.future(reqs())
    assert sent.wait(10)
    tmp = os.path.join(gitaly_node.storages["default"], "+gitaly", "tmp")
    wait_for(lambda: os.path.isdir(tmp) and os.listdir(tmp), what="the bundle being received")
    fut.cancel()
    release.set()
    wait_for(lambda: not os.listdir(tmp), what="temporary bundle removed")
    assert refs(gitaly_node.repo_path("c.git")) == before
    # the node still serves
    assert create_bundle(gitaly_node, "c.git").startswith(b"# v2 git bundle\n")
