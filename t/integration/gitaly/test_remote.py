"""Remotes against a real gitaly (docs/technical/remotes.md): RepositoryService/FetchRemote and
RemoteService/FindRemoteRepository, FindRemoteRootRef and UpdateRemoteMirror, with real remotes
on disk and behind `git http-backend` on loopback."""
import base64
import os
import threading

import grpc
import pytest

from gitaly_itest import git, make_bare_repo, pb
from helpers_remote import GitHTTP


def rpc_error(fn, *args, **kw):
    with pytest.raises(grpc.RpcError) as e:
        fn(*args, **kw)
    return e.value


def refs(path):
    return git("for-each-ref", "--format=%(objectname) %(refname)", cwd=path)


def ref(path, name):
    return git("rev-parse", "--verify", "-q", name, cwd=path, check=False).strip()


def commit_on(path, branch, name, parent=True):
    """A new commit on `branch` of the bare repository at `path` (on top of it unless parent=False)."""
    tree = git("hash-object", "-w", "-t", "tree", "/dev/null", cwd=path).strip()
    blob = git("hash-object", "-w", "--stdin", cwd=path, input=name.encode()).strip()
    tree = git("mktree", cwd=path, input=("100644 blob %s\t%s.txt\n" % (blob, name)).encode()).strip()
    args = ["commit-tree", tree, "-m", name]
    old = ref(path, "refs/heads/" + branch)
    if parent and old:
        args += ["-p", old]
    oid = git(*args, cwd=path).strip()
    git("update-ref", "refs/heads/" + branch, oid, cwd=path)
    return oid


def fetch(node, rel, url, **kw):
    params = {k: kw.pop(k) for k in ("http_authorization_header", "mirror_refmaps", "resolved_address") if k in kw}
    req = pb("repository").FetchRemoteRequest(repository=node.repo(rel),
                                              remote_params=pb("repository").Remote(url=url, **params), **kw)
    return node.stub("RepositoryService").FetchRemote(req, timeout=60)


def tmp_empty(node):
    tmp = os.path.join(node.storages["default"], "+gitaly", "tmp")
    return not os.path.exists(tmp) or os.listdir(tmp) == []


@pytest.fixture
def remote_root(tmp_path):
    root = str(tmp_path / "remotes")
    os.makedirs(root)
    return root


@pytest.fixture
def http_remote(remote_root):
    srv = GitHTTP(remote_root)
    yield srv
    srv.stop()


# --- FetchRemote --------------------------------------------------------------------------------

def test_fetch_remote_brings_new_refs_and_reports_tags(gitaly_node, remote_root):
    src = make_bare_repo(os.path.join(remote_root, "src.git"), branches=("main", "feature"), tags=("v1.0",))
    dst = make_bare_repo(gitaly_node.repo_path("dst.git"), branches=("other",))
    r = fetch(gitaly_node, "dst.git", src, check_tags_changed=True)
    assert r.tags_changed
    # a mirror: the source's refs exactly, the local-only branch pruned
    assert refs(dst) == refs(src)
    git("fsck", "--no-dangling", cwd=dst)
    assert tmp_empty(gitaly_node)
    # nothing new: tags did not change; without check_tags_changed the answer is always true
    assert not fetch(gitaly_node, "dst.git", src, check_tags_changed=True).tags_changed
    assert fetch(gitaly_node, "dst.git", src).tags_changed
    # a new tag is seen, a new branch alone is not a tag change
    commit_on(src, "feature", "more")
    assert not fetch(gitaly_node, "dst.git", src, check_tags_changed=True).tags_changed
    git("tag", "v2.0", "feature", cwd=src)
    assert fetch(gitaly_node, "dst.git", src, check_tags_changed=True).tags_changed
    assert refs(dst) == refs(src)


def test_fetch_remote_keeps_diverged_refs_unless_forced(gitaly_node, remote_root):
    src = make_bare_repo(os.path.join(remote_root, "src.git"), branches=("main", "branch"))
    dst = gitaly_node.repo_path("dst.git")
    git("clone", "-q", "--bare", src, dst)
    remote_main = commit_on(src, "main", "remote-side")
    remote_branch = commit_on(src, "branch", "fast-forward")
    local_main = commit_on(dst, "main", "local-side")
    # without force: the diverged main stays, the fast-forward still lands, and the call succeeds
    fetch(gitaly_node, "dst.git", src)
    assert ref(dst, "refs/heads/main") == local_main
    assert ref(dst, "refs/heads/branch") == remote_branch
    # with force the remote wins
    fetch(gitaly_node, "dst.git", src, force=True)
    assert ref(dst, "refs/heads/main") == remote_main
    assert refs(dst) == refs(src)


def test_fetch_remote_no_tags_and_no_prune(gitaly_node, remote_root):
    src = make_bare_repo(os.path.join(remote_root, "src.git"), branches=("main", "feature"), tags=("v1.0",))
    dst = make_bare_repo(gitaly_node.repo_path("dst.git"), branches=("local",))
    local = ref(dst, "refs/heads/local")
    fetch(gitaly_node, "dst.git", src, no_tags=True, no_prune=True, mirror_refmaps=["heads"])
    assert ref(dst, "refs/tags/v1.0") == ""
    assert ref(dst, "refs/heads/main") == ref(src, "refs/heads/main")
    assert ref(dst, "refs/heads/local") == local
    # pruning follows the refspec: a tags-only mirror leaves branches alone
    fetch(gitaly_node, "dst.git", src, mirror_refmaps=["tags"])
    assert ref(dst, "refs/tags/v1.0") == ref(src, "refs/tags/v1.0")
    assert ref(dst, "refs/heads/local") == local
    # and the default mirror prunes what the remote lacks
    fetch(gitaly_node, "dst.git", src)
    assert ref(dst, "refs/heads/local") == ""
    assert refs(dst) == refs(src)


def test_fetch_remote_resolves_directory_file_conflicts_by_pruning(gitaly_node, remote_root):
    src = make_bare_repo(os.path.join(remote_root, "src.git"), branches=("main",))
    dst = gitaly_node.repo_path("dst.git")
    git("clone", "-q", "--bare", src, dst)
    oid = ref(src, "main")
    git("update-ref", "refs/heads/branch", oid, cwd=src)
    git("update-ref", "refs/heads/branch/conflict", oid, cwd=dst)
    fetch(gitaly_node, "dst.git", src)
    assert ref(dst, "refs/heads/branch") == oid
    assert ref(dst, "refs/heads/branch/conflict") == ""
    # without pruning the conflict stays and the fetch fails
    git("update-ref", "-d", "refs/heads/branch", cwd=dst)
    git("update-ref", "refs/heads/branch/conflict", oid, cwd=dst)
    e = rpc_error(fetch, gitaly_node, "dst.git", src, no_prune=True)
    assert e.code() == grpc.StatusCode.INTERNAL
    assert "refs/heads/branch" in e.details()
    assert ref(dst, "refs/heads/branch/conflict") == oid
    assert tmp_empty(gitaly_node)


def test_fetch_remote_bad_input(gitaly_node, remote_root):
    make_bare_repo(gitaly_node.repo_path("dst.git"))
    svc = gitaly_node.stub("RepositoryService")
    FR = pb("repository").FetchRemoteRequest
    e = rpc_error(svc.FetchRemote, FR(remote_params=pb("repository").Remote(url="/x")))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "repository not set")
    e = rpc_error(svc.FetchRemote, FR(repository=gitaly_node.repo("dst.git")))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "missing remote params")
    e = rpc_error(fetch, gitaly_node, "dst.git", "")
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "blank or empty remote URL")
    e = rpc_error(fetch, gitaly_node, "missing.git", "/x")
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(fetch, gitaly_node, "dst.git", "/dev/null")
    assert e.code() == grpc.StatusCode.INTERNAL
    assert e.details() == ('fetch remote: "fatal: \'/dev/null\' does not appear to be a git repository\\n'
                           'fatal: Could not read from remote repository.\\n\\nPlease make sure you have the '
                           'correct access rights\\nand the repository exists.\\n": exit status 128')
    e = rpc_error(fetch, gitaly_node, "dst.git", "http://127.0.0.1:1/nothing.git")
    assert e.code() == grpc.StatusCode.INTERNAL and e.details().startswith("fetch remote: ")
    e = rpc_error(fetch, gitaly_node, "dst.git", "http://host/x.git", resolved_address="not-an-ip")
    assert e.code() == grpc.StatusCode.INTERNAL
    assert "resolved address has invalid IPv4/IPv6 address" in e.details()
    assert tmp_empty(gitaly_node)


def test_fetch_remote_over_http_with_credentials_that_never_leak(gitaly_node, remote_root):
    make_bare_repo(os.path.join(remote_root, "src.git"), branches=("main",), tags=("v1",))
    dst = make_bare_repo(gitaly_node.repo_path("dst.git"))
    srv = GitHTTP(remote_root, auth="Bearer s3cr3t-token")
    try:
        # the authorization header is sent, scoped to the URL
        fetch(gitaly_node, "dst.git", srv.url("src.git"), http_authorization_header="Bearer s3cr3t-token")
        assert refs(dst) == refs(os.path.join(remote_root, "src.git"))
        # a wrong one: git's failure, without the secret
        e = rpc_error(fetch, gitaly_node, "dst.git", srv.url("src.git"),
                      http_authorization_header="Bearer wr0ng-t0ken")
        assert e.code() == grpc.StatusCode.INTERNAL
        assert "wr0ng-t0ken" not in e.details()
        # credentials in the URL: used, and filtered out of what git says
        srv.auth = "Basic " + base64.b64encode(b"alice:pa55word").decode()
        fetch(gitaly_node, "dst.git", srv.url("src.git", "alice:pa55word"))
        e = rpc_error(fetch, gitaly_node, "dst.git", srv.url("missing.git", "alice:pa55word"))
        assert e.code() == grpc.StatusCode.INTERNAL
        assert "pa55word" not in e.details() and "127.0.0.1" in e.details()
        # DNS pinning
        fetch(gitaly_node, "dst.git", "http://alice:pa55word@gitlab.invalid:%d/src.git" % srv.port,
              resolved_address="127.0.0.1")
    finally:
        srv.stop()
    log = gitaly_node.log()
    for secret in ("s3cr3t-token", "wr0ng-t0ken", "pa55word", base64.b64encode(b"alice:pa55word").decode()):
        assert secret not in log


def test_fetch_remote_timeout_stops_a_stalled_remote(gitaly_node, remote_root, http_remote):
    make_bare_repo(os.path.join(remote_root, "src.git"))
    dst = make_bare_repo(gitaly_node.repo_path("dst.git"))
    before = refs(dst)
    http_remote.hang = threading.Event()
    e = rpc_error(fetch, gitaly_node, "dst.git", http_remote.url("src.git"), timeout=1)
    http_remote.hang.set()
    assert (e.code(), e.details()) == (grpc.StatusCode.INTERNAL,
                                       "fetch remote: signal: terminated: context deadline exceeded")
    assert refs(dst) == before
    assert tmp_empty(gitaly_node)


# --- FindRemoteRepository, FindRemoteRootRef ----------------------------------------------------

def test_find_remote_repository(gitaly_node, remote_root, http_remote):
    make_bare_repo(os.path.join(remote_root, "src.git"))
    svc = gitaly_node.stub("RemoteService")
    Req = pb("remote").FindRemoteRepositoryRequest
    assert svc.FindRemoteRepository(Req(remote=http_remote.url("src.git"), storage_name="default")).exists
    assert svc.FindRemoteRepository(Req(remote=os.path.join(remote_root, "src.git"), storage_name="default")).exists
    assert not svc.FindRemoteRepository(Req(remote=http_remote.url("nope.git"), storage_name="default")).exists
    assert not svc.FindRemoteRepository(Req(remote="http://127.0.0.1:1/x.git", storage_name="default")).exists
    e = rpc_error(svc.FindRemoteRepository, Req(storage_name="default"))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "empty remote can't be checked.")


def test_find_remote_root_ref(gitaly_node, remote_root, http_remote):
    src = make_bare_repo(os.path.join(remote_root, "src.git"), branches=("main", "develop"))
    git("symbolic-ref", "HEAD", "refs/heads/develop", cwd=src)
    git("init", "-q", "--bare", os.path.join(remote_root, "empty.git"))
    make_bare_repo(gitaly_node.repo_path("local.git"))
    svc = gitaly_node.stub("RemoteService")
    Req = pb("remote").FindRemoteRootRefRequest
    repo = gitaly_node.repo("local.git")
    assert svc.FindRemoteRootRef(Req(repository=repo, remote_url=http_remote.url("src.git"))).ref == "develop"
    assert svc.FindRemoteRootRef(Req(repository=repo, remote_url=src)).ref == "develop"
    e = rpc_error(svc.FindRemoteRootRef, Req(repository=repo, remote_url=http_remote.url("empty.git")))
    assert (e.code(), e.details()) == (grpc.StatusCode.NOT_FOUND, "no remote HEAD found")
    e = rpc_error(svc.FindRemoteRootRef, Req(repository=repo, remote_url="/dev/null"))
    assert (e.code(), e.details()) == (grpc.StatusCode.INTERNAL, "exit status 128")
    e = rpc_error(svc.FindRemoteRootRef, Req(repository=repo))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "missing remote URL")
    e = rpc_error(svc.FindRemoteRootRef, Req(remote_url=src))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "repository not set")
    e = rpc_error(svc.FindRemoteRootRef, Req(repository=repo, remote_url="http://h/x", resolved_address="nope"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == "couldn't get curloptResolve config: resolved address has invalid IPv4/IPv6 address"
    # with an authorization header that the remote demands
    http_remote.auth = "Bearer t0k3n"
    assert svc.FindRemoteRootRef(Req(repository=repo, remote_url=http_remote.url("src.git"),
                                     http_authorization_header="Bearer t0k3n")).ref == "develop"
    assert "t0k3n" not in gitaly_node.log()


# --- UpdateRemoteMirror -------------------------------------------------------------------------

def mirror(node, rel, url, extra=(), **kw):
    R = pb("remote").UpdateRemoteMirrorRequest
    remote = R.Remote(url=url, http_authorization_header=kw.pop("http_authorization_header", ""))
    msgs = [R(repository=node.repo(rel), remote=remote, **kw)] + [R(only_branches_matching=m) for m in extra]
    return node.stub("RemoteService").UpdateRemoteMirror(iter(msgs), timeout=60)


def heads_and_tags(path):
    return git("for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/", "refs/tags/", cwd=path)


def test_update_remote_mirror_makes_the_mirror_equal(gitaly_node, remote_root):
    src = make_bare_repo(gitaly_node.repo_path("src.git"), branches=("main", "feature", "fix/a"), tags=("v1",))
    git("update-ref", "refs/merge-requests/1/head", ref(src, "feature"), cwd=src)
    git("symbolic-ref", "HEAD", "refs/heads/main", cwd=src)
    dst = os.path.join(remote_root, "mirror.git")
    git("init", "-q", "--bare", dst)
    assert list(mirror(gitaly_node, "src.git", dst).divergent_refs) == []
    assert heads_and_tags(dst) == heads_and_tags(src)
    assert ref(dst, "refs/merge-requests/1/head") == ""     # only branches and tags are mirrored
    # the mirror's extra branches: one merged into our default branch goes, an unmerged one stays
    git("update-ref", "refs/heads/merged", ref(src, "main"), cwd=dst)
    unmerged = commit_on(dst, "unmerged", "mirror-only", parent=False)
    commit_on(src, "feature", "more")
    git("tag", "-d", "v1", cwd=src)
    mirror(gitaly_node, "src.git", dst)
    assert ref(dst, "refs/heads/merged") == ""
    assert ref(dst, "refs/heads/unmerged") == unmerged
    assert ref(dst, "refs/heads/feature") == ref(src, "refs/heads/feature")
    # a tag we dropped goes only if its commit is in our default branch: v1 (on fix/a) is not
    assert ref(dst, "refs/tags/v1") != ""
    git("tag", "v0", "main", cwd=dst)
    mirror(gitaly_node, "src.git", dst)
    assert ref(dst, "refs/tags/v0") == ""


def test_update_remote_mirror_divergent_refs(gitaly_node, remote_root):
    src = make_bare_repo(gitaly_node.repo_path("src.git"), branches=("main", "feature"))
    dst = os.path.join(remote_root, "mirror.git")
    git("clone", "-q", "--bare", src, dst)
    theirs = commit_on(dst, "main", "mirror-side")
    ours = commit_on(src, "main", "our-side")
    new_feature = commit_on(src, "feature", "ff")
    # keep_divergent_refs: the diverged branch is reported and left, the others move
    r = mirror(gitaly_node, "src.git", dst, keep_divergent_refs=True)
    assert list(r.divergent_refs) == [b"refs/heads/main"]
    assert ref(dst, "refs/heads/main") == theirs
    assert ref(dst, "refs/heads/feature") == new_feature
    # without it, ours wins
    assert list(mirror(gitaly_node, "src.git", dst).divergent_refs) == []
    assert ref(dst, "refs/heads/main") == ours


def test_update_remote_mirror_only_branches_matching(gitaly_node, remote_root):
    src = make_bare_repo(gitaly_node.repo_path("src.git"), branches=("main", "feature-1", "feature-2", "other"),
                         tags=("v1",))
    dst = os.path.join(remote_root, "mirror.git")
    git("init", "-q", "--bare", dst)
    # patterns may come in later messages too
    mirror(gitaly_node, "src.git", dst, only_branches_matching=[b"main"], extra=([b"feature-*"],))
    got = set(git("for-each-ref", "--format=%(refname)", cwd=dst).split())
    assert got == {"refs/heads/main", "refs/heads/feature-1", "refs/heads/feature-2", "refs/tags/v1"}


def test_update_remote_mirror_over_http_and_bad_input(gitaly_node, remote_root):
    src = make_bare_repo(gitaly_node.repo_path("src.git"), branches=("main", "feature"))
    git("init", "-q", "--bare", os.path.join(remote_root, "mirror.git"))
    srv = GitHTTP(remote_root, auth="Bearer m1rr0r")
    try:
        mirror(gitaly_node, "src.git", srv.url("mirror.git"), http_authorization_header="Bearer m1rr0r")
        assert heads_and_tags(os.path.join(remote_root, "mirror.git")) == heads_and_tags(src)
        e = rpc_error(mirror, gitaly_node, "src.git", srv.url("mirror.git", "bob:hunter22"))
        assert e.code() == grpc.StatusCode.INTERNAL and "hunter22" not in e.details()
    finally:
        srv.stop()
    R = pb("remote").UpdateRemoteMirrorRequest
    svc = gitaly_node.stub("RemoteService")
    e = rpc_error(svc.UpdateRemoteMirror, iter([R(repository=gitaly_node.repo("src.git"))]))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "missing Remote")
    e = rpc_error(svc.UpdateRemoteMirror, iter([R(repository=gitaly_node.repo("src.git"), remote=R.Remote())]))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "remote is missing URL")
    e = rpc_error(svc.UpdateRemoteMirror, iter([R(remote=R.Remote(url="/x"))]))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "repository not set")
    e = rpc_error(mirror, gitaly_node, "src.git", "/dev/null")
    assert e.code() == grpc.StatusCode.INTERNAL and e.details().startswith("get remote references: ")
    log = gitaly_node.log()
    assert "m1rr0r" not in log and "hunter22" not in log


# --- FetchSourceBranch --------------------------------------------------------------------------

def servers_md(node, storage):
    import json
    info = {storage: {"address": "unix:" + node.socket, "token": node.token}}
    return [("gitaly-servers", base64.b64encode(json.dumps(info).encode()).decode())]


def fetch_source(node, repo, source, branch, target, md):
    req = pb("repository").FetchSourceBranchRequest(repository=repo, source_repository=source,
                                                    source_branch=branch, target_ref=target)
    return node.stub("RepositoryService").FetchSourceBranch(req, metadata=md, timeout=60)


def test_fetch_source_branch_from_another_node(make_gitaly):
    a = make_gitaly("a", storages=("gitaly-1",))
    b = make_gitaly("b", storages=("gitaly-2",))
    src = make_bare_repo(a.repo_path("src.git", "gitaly-1"), branches=("main", "feature"))
    dst = make_bare_repo(b.repo_path("dst.git", "gitaly-2"), branches=("main",), files={"other.txt": "x\n"})
    source, target = a.repo("src.git", storage="gitaly-1"), b.repo("dst.git", storage="gitaly-2")
    md = servers_md(a, "gitaly-1")
    assert fetch_source(b, target, source, b"feature", b"refs/merge-requests/1/head", md).result
    assert ref(dst, "refs/merge-requests/1/head") == ref(src, "refs/heads/feature")
    git("fsck", "--no-dangling", cwd=dst)
    tmp = os.path.join(b.storages["gitaly-2"], "+gitaly", "tmp")
    assert os.listdir(tmp) == []
    # again, with the objects already here (no fetch): still true, the ref moves
    git("update-ref", "refs/heads/feature", ref(src, "refs/heads/main"), cwd=src)
    assert fetch_source(b, target, source, b"feature", b"refs/merge-requests/1/head", md).result
    assert ref(dst, "refs/merge-requests/1/head") == ref(src, "refs/heads/main")
    # a branch the source lacks: false, nothing written
    assert not fetch_source(b, target, source, b"nope", b"refs/merge-requests/2/head", md).result
    assert ref(dst, "refs/merge-requests/2/head") == ""
    # the same repository: resolved locally
    assert fetch_source(a, source, source, b"main", b"refs/heads/copy", md).result
    assert ref(src, "refs/heads/copy") == ref(src, "refs/heads/main")
    assert not fetch_source(a, source, source, b"nope", b"refs/heads/copy2", md).result
    # without gitaly-servers metadata the source cannot be reached
    e = rpc_error(fetch_source, b, target, source, b"main", b"refs/heads/x", [])
    assert (e.code(), e.details()) == (grpc.StatusCode.INTERNAL, "remote repository: empty gitaly-servers metadata")
    for branch, tgt, msg in ((b"", b"refs/heads/x", "empty revision"),
                             (b"a b", b"refs/heads/x", "revision can't contain whitespace"),
                             (b"-x", b"refs/heads/x", "revision can't start with '-'"),
                             (b"main", b"", "empty revision"),
                             (b"main", b"a:b", "revision can't contain ':'")):
        e = rpc_error(fetch_source, b, target, source, branch, tgt, md)
        assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, msg)
    e = rpc_error(fetch_source, b, None, source, b"main", b"refs/heads/x", md)
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "repository not set")


# --- ssh_key and known_hosts ----------------------------------------------------------------------

FAKE_SSH = r'''#!/usr/bin/env python3
# Stands in for ssh (no sshd here): records its options and the files they name, then runs the
# remote command locally, as sshd would on the far side.
import json, os, stat, subprocess, sys
args = sys.argv[1:]
files = {}
for a in args:
    for opt in ("-oIdentityFile=", "-oUserKnownHostsFile="):
        if a.startswith(opt):
            p = a[len(opt):]
            st = os.stat(p)
            files[opt] = {"path": p, "content": open(p).read(), "mode": stat.S_IMODE(st.st_mode),
                          "dir_mode": stat.S_IMODE(os.stat(os.path.dirname(p)).st_mode)}
with open(os.environ.get("FAKE_SSH_LOG", os.path.join(os.path.dirname(sys.argv[0]), "log")), "a") as f:
    f.write(json.dumps({"args": args, "files": files}) + "\n")
sys.exit(subprocess.call(["sh", "-c", args[-1]]))
'''

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n"
KNOWN = "example.invalid ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFake\n"


@pytest.fixture
def ssh_node(tmp_path, make_gitaly, monkeypatch):
    """A gitaly whose PATH finds the fake ssh first; yields (node, read_log)."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    (bindir / "ssh").write_text(FAKE_SSH)
    (bindir / "ssh").chmod(0o755)
    log = bindir / "log"
    monkeypatch.setenv("PATH", "%s:%s" % (bindir, os.environ["PATH"]))
    node = make_gitaly("sshnode")

    def read_log():
        lines = log.read_text().splitlines() if log.exists() else []
        if log.exists():
            log.unlink()
        return [__import__("json").loads(l) for l in lines]
    return node, read_log


def assert_ssh_options(calls, key, known):
    assert calls, "ssh was not run"
    for c in calls:
        args, files = c["args"], c["files"]
        assert ("-oIdentitiesOnly=yes" in args) == bool(key), args
        assert ("-oStrictHostKeyChecking=yes" in args and "-oCheckHostIP=no" in args) == bool(known), args
        if key:
            f = files["-oIdentityFile="]
            assert (f["content"], f["mode"], f["dir_mode"]) == (key, 0o400, 0o700)
            assert not os.path.exists(f["path"])      # removed once the call ended
        if known:
            f = files["-oUserKnownHostsFile="]
            assert (f["content"], f["mode"]) == (known, 0o400)
            assert not os.path.exists(os.path.dirname(f["path"]))
        if not key and not known:
            assert files == {}


def test_fetch_remote_over_ssh_with_a_key_and_known_hosts(ssh_node, remote_root):
    node, read_log = ssh_node
    src = make_bare_repo(os.path.join(remote_root, "src.git"), branches=("main", "feature"), tags=("v1",))
    dst = make_bare_repo(node.repo_path("dst.git"), branches=("other",))
    url = "ssh://git@example.invalid" + src
    fetch(node, "dst.git", url, ssh_key=KEY, known_hosts=KNOWN)
    assert refs(dst) == refs(src)
    assert_ssh_options(read_log(), KEY, KNOWN)
    # the key alone, then neither: plain "ssh"
    commit_on(src, "feature", "more")
    fetch(node, "dst.git", url, ssh_key=KEY)
    assert refs(dst) == refs(src)
    assert_ssh_options(read_log(), KEY, "")
    commit_on(src, "feature", "again")
    fetch(node, "dst.git", url)
    assert refs(dst) == refs(src)
    assert_ssh_options(read_log(), "", "")


def test_update_remote_mirror_over_ssh_with_a_key_and_known_hosts(ssh_node, remote_root):
    node, read_log = ssh_node
    src = make_bare_repo(node.repo_path("src.git"), branches=("main", "feature"), tags=("v1",))
    git("symbolic-ref", "HEAD", "refs/heads/main", cwd=src)
    dst = os.path.join(remote_root, "mirror.git")
    git("init", "-q", "--bare", dst)
    R = pb("remote").UpdateRemoteMirrorRequest
    req = R(repository=node.repo("src.git"), remote=R.Remote(url="ssh://git@example.invalid" + dst),
            ssh_key=KEY, known_hosts=KNOWN)
    node.stub("RemoteService").UpdateRemoteMirror(iter([req]), timeout=60)
    assert heads_and_tags(dst) == heads_and_tags(src)
    calls = read_log()
    assert len(calls) >= 2  # ls-remote, then the push
    assert_ssh_options(calls, KEY, KNOWN)
