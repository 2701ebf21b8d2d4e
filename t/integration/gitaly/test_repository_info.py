"""RepositoryService reads of a project page: RepositoryInfo, GetObjectDirectorySize, ObjectFormat,
HasLocalBranches, FindMergeBase, compared with the files on disk and with git."""
import os
import time

import grpc
import pytest

from gitaly_itest import git, pb
from helpers_diff import git_bytes, install_diff_repo, make_diff_repo
from helpers_reads import rpc_error

R = lambda: pb("repository")  # noqa: E731


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    return make_diff_repo(str(tmp_path_factory.mktemp("diffs")))


@pytest.fixture
def node(gitaly_node, facts):
    gitaly_node.diff_repo = install_diff_repo(gitaly_node, facts)
    return gitaly_node


def stub(node):
    return node.stub("RepositoryService")


def tree_size(path):
    return sum(os.lstat(os.path.join(d, f)).st_size for d, _, fs in os.walk(path) for f in fs)


def test_repository_info_matches_the_disk(node):
    path = node.repo_path("diff.git")
    # a stale loose object (older than ten days), a kept pack and a cruft pack
    oid = git("--git-dir", path, "hash-object", "-w", "--stdin", input=b"stale object\n").strip()
    loose = os.path.join(path, "objects", oid[:2], oid[2:])
    old = time.time() - 11 * 24 * 3600
    os.utime(loose, (old, old))
    fresh = git("--git-dir", path, "hash-object", "-w", "--stdin", input=b"fresh object\n").strip()
    pack_dir = os.path.join(path, "objects", "pack")
    for name, size, sibling in (("pack-" + "a" * 40, 300, ".keep"), ("pack-" + "b" * 40, 500, ".mtimes")):
        with open(os.path.join(pack_dir, name + ".pack"), "wb") as f:
            f.write(b"P" * size)
        open(os.path.join(pack_dir, name + sibling), "w").close()
    git("--git-dir", path, "update-ref", "refs/heads/loose-one", "main")
    info = stub(node).RepositoryInfo(R().RepositoryInfoRequest(repository=node.diff_repo))
    assert info.size == tree_size(path)
    refs = [f for _, _, fs in os.walk(os.path.join(path, "refs")) for f in fs]
    assert info.references.loose_count == len(refs) >= 1
    assert info.references.packed_size == os.path.getsize(os.path.join(path, "packed-refs"))
    packs = sum(os.path.getsize(os.path.join(pack_dir, f)) for f in os.listdir(pack_dir)
                if f.startswith("pack-") and f.endswith(".pack"))
    objects = os.path.join(path, "objects")
    loose_size = sum(os.path.getsize(os.path.join(objects, d, f)) for d in os.listdir(objects)
                     if len(d) == 2 for f in os.listdir(os.path.join(objects, d)))
    assert os.path.exists(os.path.join(objects, fresh[:2], fresh[2:]))
    assert info.objects.size == packs + loose_size
    assert info.objects.stale_size == os.path.getsize(loose) + 500
    assert info.objects.keep_size == 300
    assert info.objects.recent_size == info.objects.size - info.objects.stale_size
    e = rpc_error(lambda: stub(node).RepositoryInfo(R().RepositoryInfoRequest(repository=node.repo("missing.git"))))
    assert e.code() == grpc.StatusCode.NOT_FOUND


def test_get_object_directory_size(node):
    path = node.repo_path("diff.git")
    S = lambda repo: stub(node).GetObjectDirectorySize(R().GetObjectDirectorySizeRequest(repository=repo))  # noqa
    assert S(node.repo("diff.git", git_object_directory="objects/")).size == tree_size(os.path.join(path, "objects")) // 1024
    assert S(node.repo("diff.git", git_object_directory="/objects")).size == tree_size(os.path.join(path, "objects")) // 1024
    # the repository's own quarantine in the storage's temporary directory is allowed, another's is not
    import hashlib
    tmp = os.path.join(os.path.dirname(path), "+gitaly", "tmp")
    own = os.path.join(tmp, "quarantine-%s-abc" % hashlib.sha1(b"diff.git").hexdigest()[:16])
    other = os.path.join(tmp, "quarantine-%s-abc" % hashlib.sha1(b"other.git").hexdigest()[:16])
    for d in (own, other):
        os.makedirs(d)
        with open(os.path.join(d, "obj"), "wb") as f:
            f.write(b"q" * 4096)
    assert S(node.repo("diff.git", git_object_directory=os.path.relpath(own, path))).size == 4
    e = rpc_error(lambda: S(node.repo("diff.git", git_object_directory=os.path.relpath(other, path))))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    for rel, code, msg in (("", grpc.StatusCode.INVALID_ARGUMENT, "object directory path is not set"),
                           ("../../x", grpc.StatusCode.INVALID_ARGUMENT,
                            "not a valid relative path: relative path escapes root directory"),
                           ("nope", grpc.StatusCode.NOT_FOUND,
                            'object directory does not exist: "%s"' % os.path.join(path, "nope"))):
        e = rpc_error(lambda: S(node.repo("diff.git", git_object_directory=rel)))
        assert (e.code(), e.details()) == (code, msg)


def test_object_format(node):
    F = pb("shared")
    r = stub(node).ObjectFormat(R().ObjectFormatRequest(repository=node.diff_repo))
    assert r.format == F.OBJECT_FORMAT_SHA1
    git("init", "-q", "--bare", "--object-format=sha256", node.repo_path("s256.git"))
    r = stub(node).ObjectFormat(R().ObjectFormatRequest(repository=node.repo("s256.git")))
    assert r.format == F.OBJECT_FORMAT_SHA256
    e = rpc_error(lambda: stub(node).ObjectFormat(R().ObjectFormatRequest(repository=node.repo("missing.git"))))
    assert e.code() == grpc.StatusCode.NOT_FOUND


def test_has_local_branches(node):
    H = lambda repo: stub(node).HasLocalBranches(R().HasLocalBranchesRequest(repository=repo)).value  # noqa
    assert H(node.diff_repo) is True
    git("init", "-q", "--bare", node.repo_path("empty.git"))
    assert H(node.repo("empty.git")) is False
    # tags alone are no branches
    git("--git-dir", node.repo_path("empty.git"), "fetch", "-q", node.repo_path("diff.git"), "refs/heads/main:refs/tags/t")
    assert H(node.repo("empty.git")) is False
    e = rpc_error(lambda: H(node.repo("missing.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND


def test_find_merge_base(node, facts):
    M = lambda *revs: stub(node).FindMergeBase(R().FindMergeBaseRequest(repository=node.diff_repo,  # noqa
                                                                         revisions=list(revs))).base
    want = git_bytes(facts, "merge-base", facts["main2"], facts["side"]).decode().strip()
    assert want == facts["many"]
    assert M(facts["main2"].encode(), facts["side"].encode()) == want
    assert M(b"main", b"side", b"main~1") == git_bytes(facts, "merge-base", "main", "side", "main~1").decode().strip()
    assert M(b"main", b"nope") == ""
    out = os.path.join(node.dir, "written")
    assert M(b"--output=" + out.encode(), b"main") == "" and not os.path.exists(out)
    e = rpc_error(lambda: M(b"main"))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "at least 2 revisions are required")


def objects_size(node, *messages):
    return stub(node).ObjectsSize(iter(messages)).size


def test_objects_size_matches_git(node, facts):
    Q = R().ObjectsSizeRequest
    want = int(git_bytes(facts, "rev-list", "--disk-usage", "--objects", "main").strip())
    assert objects_size(node, Q(repository=node.diff_repo, revisions=[b"main"])) == want
    # revisions of later messages add up, as with one command line
    want = int(git_bytes(facts, "rev-list", "--disk-usage", "--objects", "main~2", "side", "--not", "main~3").strip())
    assert objects_size(node, Q(repository=node.diff_repo, revisions=[b"main~2"]), Q(revisions=[b"side"]),
                        Q(revisions=[b"^main~3"])) == want
    for msgs, code, msg in (
            ([Q(repository=node.diff_repo)], grpc.StatusCode.INVALID_ARGUMENT, "no revisions specified"),
            ([Q(repository=node.diff_repo, revisions=[b"main"]), Q(repository=node.diff_repo, revisions=[b"main"])],
             grpc.StatusCode.INVALID_ARGUMENT, "subsequent requests must not contain repository"),
            ([Q(repository=node.diff_repo, revisions=[b"-x"])], grpc.StatusCode.INVALID_ARGUMENT,
             "validating revision: revision can't start with '-'"),
            ([Q(repository=node.diff_repo, revisions=[b"nope"])], grpc.StatusCode.NOT_FOUND, "revision not found")):
        e = rpc_error(lambda: objects_size(node, *msgs))
        assert (e.code(), e.details()) == (code, msg)
    e = rpc_error(lambda: objects_size(node, Q(repository=node.repo("missing.git"), revisions=[b"main"])))
    assert e.code() == grpc.StatusCode.NOT_FOUND
