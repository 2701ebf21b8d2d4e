"""RepositoryService/GetFileAttributes (compared with `git check-attr` in a checkout of the same
revision), and FullPath/SetFullPath (compared with `git config`), against a node."""
import os
import shutil
import subprocess

import grpc
import pytest

from gitaly_itest import git, pb
from helpers_reads import rpc_error

R = lambda: pb("repository")  # noqa: E731
ATTRS = ["diff", "text", "binary", "filter", "linguist-generated"]
PATHS = ["a.txt", "img.bin", "lfs/x.psd", "docs/gen.md", "README"]


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("attrs"))
    work, bare = os.path.join(base, "work"), os.path.join(base, "attrs.git")
    git("init", "-q", "-b", "main", work)
    with open(os.path.join(work, ".gitattributes"), "w") as f:
        f.write("*.txt diff=plain text\n*.bin binary\nlfs/* filter=lfs -text\n")
    os.makedirs(os.path.join(work, "docs"))
    with open(os.path.join(work, "docs", ".gitattributes"), "w") as f:
        f.write("gen.md linguist-generated\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "attributes", cwd=work)
    first = git("rev-parse", "HEAD", cwd=work).strip()
    with open(os.path.join(work, ".gitattributes"), "w") as f:
        f.write("*.txt -diff\n")
    git("commit", "-q", "-am", "fewer attributes", cwd=work)
    git("clone", "-q", "--bare", work, bare)
    return {"path": bare, "work": work, "first": first}


@pytest.fixture
def node(gitaly_node, facts):
    shutil.copytree(facts["path"], gitaly_node.repo_path("attrs.git"), copy_function=os.link)
    gitaly_node.attrs_repo = gitaly_node.repo("attrs.git")
    return gitaly_node


def check_attr_in_checkout(facts, rev):
    git("checkout", "-q", rev, cwd=facts["work"])
    out = subprocess.run(["git", "check-attr", "-z"] + ATTRS + ["--"] + PATHS, cwd=facts["work"],
                         capture_output=True, check=True).stdout.split(b"\0")
    triples = [tuple(x.decode() for x in out[i:i + 3]) for i in range(0, len(out) - 1, 3)]
    return [t for t in triples if t[2] != "unspecified"]


def attributes(node, revision, **kw):
    resp = node.stub("RepositoryService").GetFileAttributes(R().GetFileAttributesRequest(
        repository=kw.pop("repository", node.attrs_repo), revision=revision, attributes=ATTRS, paths=PATHS, **kw))
    return [(a.path, a.attribute, a.value) for a in resp.attribute_infos]


def test_file_attributes_are_the_revisions(node, facts):
    got = attributes(node, facts["first"].encode())
    assert got == check_attr_in_checkout(facts, facts["first"])
    assert ("a.txt", "diff", "plain") in got and ("lfs/x.psd", "text", "unset") in got
    assert ("docs/gen.md", "linguist-generated", "set") in got
    latest = attributes(node, b"main")
    assert latest == check_attr_in_checkout(facts, "main") == [("a.txt", "diff", "unset"),
                                                               ("docs/gen.md", "linguist-generated", "set")]
    # no temporary index is left behind
    tmp = os.path.join(node.storages["default"], "+gitaly", "tmp")
    assert [f for f in os.listdir(tmp) if f.startswith("attributes-index")] == []


def test_file_attributes_bad_requests(node):
    S = R().GetFileAttributesRequest
    call = node.stub("RepositoryService").GetFileAttributes
    for req, msg in ((S(repository=node.attrs_repo, attributes=ATTRS, paths=PATHS), "revision is required"),
                     (S(repository=node.attrs_repo, revision=b"main", attributes=ATTRS), "file paths are required"),
                     (S(repository=node.attrs_repo, revision=b"main", paths=PATHS), "attributes are required")):
        e = rpc_error(lambda: call(req))
        assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, msg)
    e = rpc_error(lambda: call(S(repository=node.repo("missing.git"), revision=b"main", attributes=ATTRS,
                                 paths=PATHS)))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: call(S(repository=node.attrs_repo, revision=b"no-such-rev", attributes=ATTRS,
                                 paths=PATHS)))
    assert e.code() == grpc.StatusCode.UNKNOWN


def test_set_full_path_writes_the_config_and_full_path_reads_it(node):
    s = node.stub("RepositoryService")
    path = node.repo_path("attrs.git")
    e = rpc_error(lambda: s.FullPath(R().FullPathRequest(repository=node.attrs_repo)))
    assert (e.code(), e.details()) == (grpc.StatusCode.INTERNAL, "fetch config: exit status 1")
    s.SetFullPath(R().SetFullPathRequest(repository=node.attrs_repo, path="group/project"))
    assert git("--git-dir", path, "config", "gitlab.fullpath").strip() == "group/project"
    s.SetFullPath(R().SetFullPathRequest(repository=node.attrs_repo, path="other group/with \"quotes\""))
    assert git("--git-dir", path, "config", "--get-all", "gitlab.fullpath") == 'other group/with "quotes"\n'
    assert s.FullPath(R().FullPathRequest(repository=node.attrs_repo)).path == 'other group/with "quotes"'
    # the rest of the config is untouched, nothing is left behind
    assert git("--git-dir", path, "config", "core.bare").strip() == "true"
    assert not os.path.exists(os.path.join(path, "config.lock"))
    tmp = os.path.join(node.storages["default"], "+gitaly", "tmp")
    assert [f for f in os.listdir(tmp) if f.startswith("config-")] == []


def test_set_full_path_bad_requests(node):
    s = node.stub("RepositoryService")
    e = rpc_error(lambda: s.SetFullPath(R().SetFullPathRequest(repository=node.attrs_repo, path="")))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "no path provided")
    e = rpc_error(lambda: s.SetFullPath(R().SetFullPathRequest(repository=node.repo("missing.git"), path="x")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: s.FullPath(R().FullPathRequest(repository=node.repo("missing.git"))))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    # a config locked by someone else is not overwritten
    lock = os.path.join(node.repo_path("attrs.git"), "config.lock")
    with open(lock, "w") as f:
        f.write("someone else's\n")
    e = rpc_error(lambda: s.SetFullPath(R().SetFullPathRequest(repository=node.attrs_repo, path="x")))
    assert (e.code(), e.details()) == (grpc.StatusCode.INTERNAL,
                                       "setting config: committing config: locking file: file already locked")
    assert open(lock).read() == "someone else's\n"
    os.unlink(lock)
