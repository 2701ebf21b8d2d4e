"""RepositoryService against a real gitaly: creation, removal, checksums, snapshots,
config/attributes/hooks streams, sizes, WriteRef and ObjectPoolService/GetObjectPool."""
import base64
import hashlib
import io
import json
import os
import subprocess
import tarfile

import grpc
import pytest

from gitaly_itest import git, make_bare_repo, pb

TX_MD = [("gitaly-reference-transaction",
          base64.b64encode(json.dumps({"id": 1, "node": "default", "primary": True}).encode()).decode())]


def rpc_error(fn, *args, **kw):
    with pytest.raises(grpc.RpcError) as e:
        r = fn(*args, **kw)
        if hasattr(r, "__iter__") and not hasattr(r, "ListFields"):
            list(r)
    return e.value


def repo_svc(node):
    return node.stub("RepositoryService")


def rp():
    return pb("repository")


def put_repo(node, rel, **kw):
    """A bare repository with commits, placed straight into the node's storage."""
    return make_bare_repo(node.repo_path(rel), **kw)


# --- CreateRepository ---------------------------------------------------------------------------

def test_create_repository_makes_a_bare_repo(gitaly_node):
    svc = repo_svc(gitaly_node)
    svc.CreateRepository(rp().CreateRepositoryRequest(repository=gitaly_node.repo("group/new.git")))
    path = gitaly_node.repo_path("group/new.git")
    assert git("rev-parse", "--is-bare-repository", cwd=path).strip() == "true"
    assert open(os.path.join(path, "HEAD")).read() == "ref: refs/heads/main\n"
    assert os.path.exists(os.path.join(path, ".gitaly-full-repack-timestamp"))
    # no template files: no hooks, no description
    assert not os.path.exists(os.path.join(path, "hooks"))
    assert not os.path.exists(os.path.join(path, "description"))
    assert not os.path.exists(path + ".lock")
    # nothing left behind in the temporary directory
    tmp = os.path.join(gitaly_node.storages["default"], "+gitaly", "tmp")
    assert os.listdir(tmp) == []
    assert svc.RepositoryExists(rp().RepositoryExistsRequest(repository=gitaly_node.repo("group/new.git"))).exists


def test_create_repository_with_default_branch_and_sha256(gitaly_node):
    svc = repo_svc(gitaly_node)
    svc.CreateRepository(rp().CreateRepositoryRequest(
        repository=gitaly_node.repo("b.git"), default_branch=b"develop"))
    assert open(gitaly_node.repo_path("b.git") + "/HEAD").read() == "ref: refs/heads/develop\n"
    svc.CreateRepository(rp().CreateRepositoryRequest(
        repository=gitaly_node.repo("s.git"), object_format=pb("shared").OBJECT_FORMAT_SHA256))
    assert git("rev-parse", "--show-object-format", cwd=gitaly_node.repo_path("s.git")).strip() == "sha256"


def test_create_repository_refuses_existing(gitaly_node):
    svc = repo_svc(gitaly_node)
    req = rp().CreateRepositoryRequest(repository=gitaly_node.repo("dup.git"))
    svc.CreateRepository(req)
    e = rpc_error(svc.CreateRepository, req)
    assert e.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "repository exists already" in e.details()
    # any file in the way counts as "exists"
    open(gitaly_node.repo_path("file.git"), "w").close()
    e = rpc_error(svc.CreateRepository, rp().CreateRepositoryRequest(repository=gitaly_node.repo("file.git")))
    assert e.code() == grpc.StatusCode.ALREADY_EXISTS


def test_create_repository_while_locked_fails_and_leaves_nothing(gitaly_node):
    svc = repo_svc(gitaly_node)
    os.makedirs(gitaly_node.repo_path("grp"))
    open(gitaly_node.repo_path("grp/locked.git") + ".lock", "w").close()
    e = rpc_error(svc.CreateRepository, rp().CreateRepositoryRequest(repository=gitaly_node.repo("grp/locked.git")))
    assert e.code() == grpc.StatusCode.INTERNAL
    assert "locking repository" in e.details()
    assert not os.path.exists(gitaly_node.repo_path("grp/locked.git"))
    assert os.listdir(os.path.join(gitaly_node.storages["default"], "+gitaly", "tmp")) == []


@pytest.mark.parametrize("repo,code,msg", [
    (None, grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
    (dict(storage_name="default", relative_path=""), grpc.StatusCode.INVALID_ARGUMENT, "repository path not set"),
    (dict(storage_name="nope", relative_path="x.git"), grpc.StatusCode.INVALID_ARGUMENT, "storage name not found"),
    (dict(storage_name="default", relative_path="../x.git"), grpc.StatusCode.INVALID_ARGUMENT,
     "relative path escapes root directory"),
])
def test_create_repository_validation(gitaly_node, repo, code, msg):
    req = rp().CreateRepositoryRequest()
    if repo is not None:
        req.repository.CopyFrom(pb("shared").Repository(**repo))
    e = rpc_error(repo_svc(gitaly_node).CreateRepository, req)
    assert e.code() == code
    assert msg in e.details()


def test_create_repository_unknown_object_format(gitaly_node):
    e = rpc_error(repo_svc(gitaly_node).CreateRepository,
                  rp().CreateRepositoryRequest(repository=gitaly_node.repo("f.git"), object_format=7))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not os.path.exists(gitaly_node.repo_path("f.git"))


def test_create_repository_in_failed_transaction_changes_nothing(gitaly_node):
    # This node cannot reach a praefect, so the preparatory vote fails: nothing may appear.
    e = rpc_error(repo_svc(gitaly_node).CreateRepository,
                  rp().CreateRepositoryRequest(repository=gitaly_node.repo("tx.git")), metadata=TX_MD)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "preparatory vote" in e.details()
    assert not os.path.exists(gitaly_node.repo_path("tx.git"))
    assert not os.path.exists(gitaly_node.repo_path("tx.git") + ".lock")
    assert os.listdir(os.path.join(gitaly_node.storages["default"], "+gitaly", "tmp")) == []


def test_wrong_token_is_refused(gitaly_node):
    svc = gitaly_node.stub("RepositoryService", secret="wrong")
    e = rpc_error(svc.CreateRepository, rp().CreateRepositoryRequest(repository=gitaly_node.repo("t.git")))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert not os.path.exists(gitaly_node.repo_path("t.git"))


# --- RepositoryExists ---------------------------------------------------------------------------

def test_repository_exists(gitaly_node):
    svc = repo_svc(gitaly_node)
    ask = lambda rel: svc.RepositoryExists(rp().RepositoryExistsRequest(repository=gitaly_node.repo(rel))).exists
    assert ask("missing.git") is False
    os.makedirs(gitaly_node.repo_path("notarepo.git/refs"))
    assert ask("notarepo.git") is False
    put_repo(gitaly_node, "real.git")
    assert ask("real.git") is True
    e = rpc_error(svc.RepositoryExists, rp().RepositoryExistsRequest(repository=gitaly_node.repo("../x")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    e = rpc_error(svc.RepositoryExists, rp().RepositoryExistsRequest(
        repository=pb("shared").Repository(storage_name="other", relative_path="a.git")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- RemoveRepository ---------------------------------------------------------------------------

def test_remove_repository(gitaly_node):
    svc = repo_svc(gitaly_node)
    put_repo(gitaly_node, "rm/me.git")
    svc.RemoveRepository(rp().RemoveRepositoryRequest(repository=gitaly_node.repo("rm/me.git")))
    assert not os.path.exists(gitaly_node.repo_path("rm/me.git"))
    assert not os.path.exists(gitaly_node.repo_path("rm/me.git") + ".lock")
    assert os.listdir(os.path.join(gitaly_node.storages["default"], "+gitaly", "tmp")) == []
    e = rpc_error(svc.RemoveRepository, rp().RemoveRepositoryRequest(repository=gitaly_node.repo("rm/me.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert e.details() == "repository does not exist"


def test_remove_repository_locked(gitaly_node):
    svc = repo_svc(gitaly_node)
    put_repo(gitaly_node, "locked.git")
    open(gitaly_node.repo_path("locked.git") + ".lock", "w").close()
    e = rpc_error(svc.RemoveRepository, rp().RemoveRepositoryRequest(repository=gitaly_node.repo("locked.git")))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.details() == "repository is already locked"
    assert os.path.isdir(gitaly_node.repo_path("locked.git"))
    # the lock is not ours: it stays
    assert os.path.exists(gitaly_node.repo_path("locked.git") + ".lock")


def test_remove_repository_validation_and_failed_vote(gitaly_node):
    svc = repo_svc(gitaly_node)
    e = rpc_error(svc.RemoveRepository, rp().RemoveRepositoryRequest(repository=gitaly_node.repo("../../etc")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    put_repo(gitaly_node, "keep.git")
    e = rpc_error(svc.RemoveRepository, rp().RemoveRepositoryRequest(repository=gitaly_node.repo("keep.git")),
                  metadata=TX_MD)
    assert e.code() == grpc.StatusCode.INTERNAL
    assert "vote on rename" in e.details()
    assert os.path.isdir(gitaly_node.repo_path("keep.git"))
    assert not os.path.exists(gitaly_node.repo_path("keep.git") + ".lock")


# --- CalculateChecksum --------------------------------------------------------------------------

CHECKSUM_REFS = __import__("re").compile(rb"HEAD|(refs/(heads|tags|keep-around|merge-requests|environments|notes)/)")


def expected_checksum(path):
    """Upstream's algorithm, computed independently from `git show-ref --head`."""
    out = subprocess.run(["git", "--git-dir", path, "show-ref", "--head"], capture_output=True).stdout
    acc = 0
    for line in out.split(b"\n"):
        if line and CHECKSUM_REFS.search(line):
            acc ^= int.from_bytes(hashlib.sha1(line).digest(), "big")
    if acc == 0:
        return "0" * 40
    return acc.to_bytes((acc.bit_length() + 7) // 8, "big").hex()


def checksum(node, rel):
    return repo_svc(node).CalculateChecksum(rp().CalculateChecksumRequest(repository=node.repo(rel))).checksum


def test_checksum_matches_independent_computation(gitaly_node):
    path = put_repo(gitaly_node, "c.git", branches=("main", "feature"), tags=("v1",))
    got = checksum(gitaly_node, "c.git")
    assert got == expected_checksum(path)
    assert len(got) <= 40 and got != "0" * 40
    # refs outside the list do not count, but the unanchored filter lets any "HEAD" in
    oid = git("rev-parse", "main", cwd=path).strip()
    git("update-ref", "refs/pipelines/1", oid, cwd=path)
    git("update-ref", "refs/remotes/origin/main", oid, cwd=path)
    assert checksum(gitaly_node, "c.git") == got
    git("update-ref", "refs/remotes/origin/HEAD", oid, cwd=path)
    got2 = checksum(gitaly_node, "c.git")
    assert got2 != got and got2 == expected_checksum(path)
    git("update-ref", "refs/keep-around/" + oid, oid, cwd=path)
    assert checksum(gitaly_node, "c.git") == expected_checksum(path) != got2


def test_checksum_drops_leading_zero_bytes(gitaly_node):
    path = put_repo(gitaly_node, "z.git")
    oid = git("rev-parse", "main", cwd=path).strip()
    base = 0
    for line in (oid + " HEAD", oid + " refs/heads/main"):
        base ^= int.from_bytes(hashlib.sha1(line.encode()).digest(), "big")
    # find a branch name that makes the XOR start with a zero byte
    for i in range(100000):
        name = "refs/heads/z%d" % i
        v = base ^ int.from_bytes(hashlib.sha1(("%s %s" % (oid, name)).encode()).digest(), "big")
        if v >> 152 == 0:
            break
    git("update-ref", name, oid, cwd=path)
    got = checksum(gitaly_node, "z.git")
    assert got == expected_checksum(path)
    assert len(got) < 40 and not got.startswith("00")


def test_checksum_of_empty_and_broken_repos(gitaly_node):
    svc = repo_svc(gitaly_node)
    svc.CreateRepository(rp().CreateRepositoryRequest(repository=gitaly_node.repo("empty.git")))
    assert checksum(gitaly_node, "empty.git") == "0" * 40
    # objects/refs/HEAD present but not a git repository: DATA_LOSS
    broken = gitaly_node.repo_path("broken.git")
    for d in ("objects", "refs"):
        os.makedirs(os.path.join(broken, d))
    open(os.path.join(broken, "HEAD"), "w").write("garbage\n")
    e = rpc_error(checksum, gitaly_node, "broken.git")
    assert e.code() == grpc.StatusCode.DATA_LOSS
    assert "not a git repository" in e.details()
    e = rpc_error(checksum, gitaly_node, "missing.git")
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(checksum, gitaly_node, "../x.git")
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- GetSnapshot --------------------------------------------------------------------------------

def snapshot(node, rel):
    chunks = list(repo_svc(node).GetSnapshot(rp().GetSnapshotRequest(repository=node.repo(rel))))
    return chunks, b"".join(c.data for c in chunks)


def test_snapshot_contains_refs_and_objects_only(gitaly_node, tmp_path):
    path = put_repo(gitaly_node, "snap.git", branches=("main", "dev"), tags=("v1",))
    git("repack", "-q", cwd=path)
    git("pack-refs", "--all", cwd=path)
    # a loose object and a ref, besides the pack
    blob = git("hash-object", "-w", "--stdin", cwd=path, input=b"loose\n").strip()
    git("update-ref", "refs/heads/loose", git("rev-parse", "main", cwd=path).strip(), cwd=path)
    os.makedirs(os.path.join(path, "custom_hooks"))
    open(os.path.join(path, "info", "attributes"), "w").write("* text\n")
    open(os.path.join(path, "objects", "pack", "junk.keep"), "w").close()
    chunks, data = snapshot(gitaly_node, "snap.git")
    assert all(len(c.data) <= 128 * 1024 for c in chunks)
    names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
    assert names[0] == "HEAD" and names[1] == "packed-refs"
    assert "refs" in names and "refs/heads/loose" in names
    assert "objects/%s/%s" % (blob[:2], blob[2:]) in names
    assert any(n.startswith("objects/pack/pack-") and n.endswith(".pack") for n in names)
    assert any(n.startswith("objects/pack/pack-") and n.endswith(".idx") for n in names)
    for n in names:
        assert not n.startswith(("config", "custom_hooks", "info", "hooks", "objects/info"))
        assert not n.endswith((".keep", ".rev", ".bitmap"))
    # the archive is a working repository once a config is added
    out = tmp_path / "restored"
    out.mkdir()
    tarfile.open(fileobj=io.BytesIO(data)).extractall(out)
    git("init", "-q", "--bare", str(out))
    assert git("rev-parse", "dev", cwd=str(out)) == git("rev-parse", "dev", cwd=path)
    git("fsck", "--no-dangling", cwd=str(out))


def test_snapshot_includes_alternate_objects(gitaly_node, tmp_path):
    pool = put_repo(gitaly_node, "@pools/ab/cd/pool.git")
    git("repack", "-adq", cwd=pool)
    member = gitaly_node.repo_path("member.git")
    git("clone", "-q", "--bare", "--shared", pool, member)
    _, data = snapshot(gitaly_node, "member.git")
    names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
    assert any(n.startswith("objects/pack/pack-") for n in names)


def test_snapshot_large_file_streams_in_chunks(gitaly_node):
    path = put_repo(gitaly_node, "big.git")
    big = os.urandom(3 * 1024 * 1024 + 17)
    blob = git("hash-object", "-w", "--stdin", cwd=path, input=big).strip()
    chunks, data = snapshot(gitaly_node, "big.git")
    assert len(chunks) > 20
    t = tarfile.open(fileobj=io.BytesIO(data))
    member = t.extractfile("objects/%s/%s" % (blob[:2], blob[2:]))
    assert len(member.read()) == os.path.getsize(os.path.join(path, "objects", blob[:2], blob[2:]))


def test_snapshot_long_names_use_pax(gitaly_node):
    path = put_repo(gitaly_node, "long.git")
    ref = "refs/heads/" + "/".join(["d" * 40] * 4)
    git("update-ref", ref, git("rev-parse", "main", cwd=path).strip(), cwd=path)
    _, data = snapshot(gitaly_node, "long.git")
    assert ref in tarfile.open(fileobj=io.BytesIO(data)).getnames()


def test_snapshot_errors(gitaly_node):
    e = rpc_error(snapshot, gitaly_node, "missing.git")
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(snapshot, gitaly_node, "../../x")
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- GetConfig, GetInfoAttributes ---------------------------------------------------------------

def test_get_config_streams_raw_file(gitaly_node):
    path = put_repo(gitaly_node, "cfg.git")
    git("config", "gitlab.fullpath", "group/project", cwd=path)
    chunks = list(repo_svc(gitaly_node).GetConfig(rp().GetConfigRequest(repository=gitaly_node.repo("cfg.git"))))
    assert b"".join(c.data for c in chunks) == open(os.path.join(path, "config"), "rb").read()
    os.unlink(os.path.join(path, "config"))
    e = rpc_error(repo_svc(gitaly_node).GetConfig, rp().GetConfigRequest(repository=gitaly_node.repo("cfg.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert "opening gitconfig" in e.details()
    e = rpc_error(repo_svc(gitaly_node).GetConfig, rp().GetConfigRequest(repository=gitaly_node.repo("nope.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND


def test_get_info_attributes(gitaly_node):
    path = put_repo(gitaly_node, "attr.git")
    svc = repo_svc(gitaly_node)
    req = rp().GetInfoAttributesRequest(repository=gitaly_node.repo("attr.git"))
    chunks = list(svc.GetInfoAttributes(req))
    assert len(chunks) == 1 and chunks[0].attributes == b""
    os.makedirs(os.path.join(path, "info"), exist_ok=True)
    content = b"*.png binary\n" * 20000
    open(os.path.join(path, "info", "attributes"), "wb").write(content)
    chunks = list(svc.GetInfoAttributes(req))
    assert len(chunks) > 1 and b"".join(c.attributes for c in chunks) == content
    e = rpc_error(svc.GetInfoAttributes, rp().GetInfoAttributesRequest(repository=gitaly_node.repo("../a")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- GetCustomHooks / BackupCustomHooks ---------------------------------------------------------

def test_get_custom_hooks(gitaly_node):
    path = put_repo(gitaly_node, "hooks.git")
    svc = repo_svc(gitaly_node)
    req = rp().GetCustomHooksRequest(repository=gitaly_node.repo("hooks.git"))
    assert list(svc.GetCustomHooks(req)) == []
    os.makedirs(os.path.join(path, "custom_hooks", "pre-receive.d"))
    hook = os.path.join(path, "custom_hooks", "pre-receive.d", "check")
    open(hook, "w").write("#!/bin/sh\nexit 0\n")
    os.chmod(hook, 0o755)
    data = b"".join(c.data for c in svc.GetCustomHooks(req))
    t = tarfile.open(fileobj=io.BytesIO(data))
    assert "custom_hooks/pre-receive.d/check" in t.getnames()
    assert t.getmember("custom_hooks/pre-receive.d/check").mode & 0o777 == 0o755
    backup = b"".join(c.data for c in svc.BackupCustomHooks(
        rp().BackupCustomHooksRequest(repository=gitaly_node.repo("hooks.git"))))
    assert tarfile.open(fileobj=io.BytesIO(backup)).getnames() == t.getnames()
    e = rpc_error(svc.GetCustomHooks, rp().GetCustomHooksRequest(repository=gitaly_node.repo("none.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND


# --- RepositorySize -----------------------------------------------------------------------------

def test_repository_size_in_kib(gitaly_node):
    path = put_repo(gitaly_node, "size.git")
    git("hash-object", "-w", "--stdin", cwd=path, input=os.urandom(300 * 1024))
    total = 0
    for root, dirs, files in os.walk(path):
        for f in files:
            total += os.lstat(os.path.join(root, f)).st_size
    size = repo_svc(gitaly_node).RepositorySize(rp().RepositorySizeRequest(repository=gitaly_node.repo("size.git")))
    assert size.size == total // 1024 and size.size >= 300
    e = rpc_error(repo_svc(gitaly_node).RepositorySize,
                  rp().RepositorySizeRequest(repository=gitaly_node.repo("nope.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND


# --- WriteRef -----------------------------------------------------------------------------------

def write_ref(node, rel, ref, rev, old=b"", **kw):
    return repo_svc(node).WriteRef(rp().WriteRefRequest(
        repository=node.repo(rel), ref=ref, revision=rev, old_revision=old), **kw)


def test_write_ref_head_and_branches(gitaly_node):
    path = put_repo(gitaly_node, "w.git", branches=("main", "dev"))
    main = git("rev-parse", "main", cwd=path).strip()
    dev = git("rev-parse", "dev", cwd=path).strip()
    write_ref(gitaly_node, "w.git", b"HEAD", b"refs/heads/dev")
    assert open(os.path.join(path, "HEAD")).read() == "ref: refs/heads/dev\n"
    assert not os.path.exists(os.path.join(path, "HEAD.lock"))
    write_ref(gitaly_node, "w.git", b"refs/heads/new", b"main")
    assert git("rev-parse", "refs/heads/new", cwd=path).strip() == main
    # compare-and-swap on the old value
    write_ref(gitaly_node, "w.git", b"refs/heads/new", dev.encode(), old=main.encode())
    assert git("rev-parse", "refs/heads/new", cwd=path).strip() == dev
    e = rpc_error(write_ref, gitaly_node, "w.git", b"refs/heads/new", main.encode(), old=main.encode())
    assert e.code() == grpc.StatusCode.INTERNAL
    # "must not exist yet"
    e = rpc_error(write_ref, gitaly_node, "w.git", b"refs/heads/new", main.encode(), old=b"0" * 40)
    assert e.code() == grpc.StatusCode.INTERNAL
    write_ref(gitaly_node, "w.git", b"refs/heads/fresh", main.encode(), old=b"0" * 40)
    # delete with the zero id
    write_ref(gitaly_node, "w.git", b"refs/heads/new", b"0" * 40)
    assert git("show-ref", "--verify", "refs/heads/new", cwd=path, check=False) == ""


def test_write_ref_errors(gitaly_node):
    path = put_repo(gitaly_node, "we.git")
    for ref, rev, msg in ((b"heads/main", b"main", "ref has to be a full reference"),
                          (b"refs/heads/x", b"-main", "revision can't start with '-'"),
                          (b"refs/heads/x", b"ma in", "whitespace"),
                          (b"refs/heads/x\x00y", b"main", "invalid ref")):
        e = rpc_error(write_ref, gitaly_node, "we.git", ref, rev)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, ref
        assert msg in e.details()
    e = rpc_error(write_ref, gitaly_node, "we.git", b"refs/heads/x", b"does-not-exist")
    assert e.code() == grpc.StatusCode.INTERNAL and "resolving new revision" in e.details()
    e = rpc_error(write_ref, gitaly_node, "we.git", b"HEAD", b"refs/heads/a..b")
    assert e.code() == grpc.StatusCode.INTERNAL and "malformed refname" in e.details()
    assert open(os.path.join(path, "HEAD")).read() == "ref: refs/heads/main\n"
    # a locked ref
    open(os.path.join(path, "refs", "heads", "locked.lock"), "w").close()
    e = rpc_error(write_ref, gitaly_node, "we.git", b"refs/heads/locked", b"main")
    assert e.code() == grpc.StatusCode.ABORTED and e.details() == "reference is locked already"
    # HEAD in a failed transaction stays as it was, and unlocked
    e = rpc_error(write_ref, gitaly_node, "we.git", b"HEAD", b"refs/heads/other", metadata=TX_MD)
    assert e.code() != grpc.StatusCode.OK
    assert open(os.path.join(path, "HEAD")).read() == "ref: refs/heads/main\n"
    assert not os.path.exists(os.path.join(path, "HEAD.lock"))
    e = rpc_error(write_ref, gitaly_node, "nope.git", b"HEAD", b"refs/heads/main")
    assert e.code() == grpc.StatusCode.NOT_FOUND


# --- ObjectPoolService/GetObjectPool ------------------------------------------------------------

POOL = "@pools/6b/86/6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b.git"


def get_pool(node, rel):
    return node.stub("ObjectPoolService").GetObjectPool(
        pb("objectpool").GetObjectPoolRequest(repository=node.repo(rel)))


def test_get_object_pool(gitaly_node):
    put_repo(gitaly_node, POOL)
    member = put_repo(gitaly_node, "@hashed/aa/bb/member.git")
    assert not get_pool(gitaly_node, "@hashed/aa/bb/member.git").HasField("object_pool")
    alt = os.path.join(member, "objects", "info", "alternates")
    os.makedirs(os.path.dirname(alt), exist_ok=True)
    open(alt, "w").write("../../../../../" + POOL + "/objects\n")
    resp = get_pool(gitaly_node, "@hashed/aa/bb/member.git")
    assert resp.object_pool.repository.storage_name == "default"
    assert resp.object_pool.repository.relative_path == POOL
    # not a pool path, a missing pool, a commented line: no pool, no error
    put_repo(gitaly_node, "plain.git")
    for line in ("../../../../plain.git/objects", "../../../../../@pools/6b/86/missing.git/objects",
                 "#" + "../../../../../" + POOL + "/objects", "/etc"):
        open(alt, "w").write(line + "\n")
        assert not get_pool(gitaly_node, "@hashed/aa/bb/member.git").HasField("object_pool"), line
    e = rpc_error(get_pool, gitaly_node, "missing.git")
    assert e.code() == grpc.StatusCode.NOT_FOUND


# --- CreateRepositoryFromURL --------------------------------------------------------------------

def from_url(node, rel, url, **kw):
    return repo_svc(node).CreateRepositoryFromURL(rp().CreateRepositoryFromURLRequest(
        repository=node.repo(rel), url=url, **kw))


def test_create_from_url_clones_a_path(gitaly_node, tmp_path):
    src = make_bare_repo(str(tmp_path / "src.git"), branches=("main", "dev"), tags=("v1",))
    git("update-ref", "refs/merge-requests/1/head", git("rev-parse", "dev", cwd=src).strip(), cwd=src)
    from_url(gitaly_node, "cloned.git", src)
    path = gitaly_node.repo_path("cloned.git")
    assert git("rev-parse", "dev", cwd=path) == git("rev-parse", "dev", cwd=src)
    assert git("remote", cwd=path).strip() == ""          # origin is removed
    assert "merge-requests" not in git("show-ref", cwd=path)
    from_url(gitaly_node, "mirror.git", src, mirror=True)
    assert "refs/merge-requests/1/head" in git("show-ref", cwd=gitaly_node.repo_path("mirror.git"))
    e = rpc_error(from_url, gitaly_node, "cloned.git", src)
    assert e.code() == grpc.StatusCode.ALREADY_EXISTS


def test_create_from_url_errors(gitaly_node, tmp_path):
    e = rpc_error(from_url, gitaly_node, "x.git", "")
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "empty Url"
    e = rpc_error(from_url, gitaly_node, "../x.git", str(tmp_path))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    e = rpc_error(from_url, gitaly_node, "x.git", str(tmp_path / "does-not-exist.git"))
    assert e.code() == grpc.StatusCode.INTERNAL and "cloning repository" in e.details()
    assert not os.path.exists(gitaly_node.repo_path("x.git"))
    assert os.listdir(os.path.join(gitaly_node.storages["default"], "+gitaly", "tmp")) == []
    e = rpc_error(from_url, gitaly_node, "x.git", "http://host/x.git", resolved_address="not-an-ip")
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def http_recorder():
    """An HTTP server that records request lines and headers and answers 404."""
    import http.server
    import threading
    seen = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, dict(self.headers)))
            self.send_response(404)
            self.end_headers()

        def log_message(self, *a):
            pass
    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1], seen
    srv.shutdown()


def test_create_from_url_moves_credentials_into_a_header(gitaly_node, http_recorder):
    port, seen = http_recorder
    e = rpc_error(from_url, gitaly_node, "creds.git", "http://alice:s%%40cret@127.0.0.1:%d/r.git" % port)
    assert e.code() == grpc.StatusCode.INTERNAL
    assert seen, "git never reached the server"
    path, headers = seen[0]
    assert path.startswith("/r.git/info/refs")
    assert headers.get("Authorization") == "Basic " + base64.b64encode(b"alice:s@cret").decode()
    seen.clear()
    rpc_error(from_url, gitaly_node, "tok.git", "http://127.0.0.1:%d/t.git" % port,
              http_authorization_header="Bearer abc")
    assert seen[0][1].get("Authorization") == "Bearer abc"
    seen.clear()
    # DNS pinning: an unresolvable host name reaches the pinned address
    rpc_error(from_url, gitaly_node, "pin.git", "http://gitlab.invalid:%d/p.git" % port,
              resolved_address="127.0.0.1")
    assert seen and seen[0][0].startswith("/p.git/")
    # the secret never appears on a command line: the node's log holds no password
    assert "s%40cret" not in gitaly_node.log() and "s@cret" not in gitaly_node.log()


# --- cancellation -------------------------------------------------------------------------------

def test_cancelled_snapshot_leaves_the_node_healthy(gitaly_node):
    path = put_repo(gitaly_node, "cancel.git")
    for i in range(3):
        git("hash-object", "-w", "--stdin", cwd=path, input=os.urandom(2 * 1024 * 1024))
    svc = repo_svc(gitaly_node)
    for _ in range(5):
        it = svc.GetSnapshot(rp().GetSnapshotRequest(repository=gitaly_node.repo("cancel.git")))
        next(it)
        it.cancel()
    # deadlines that expire while git or the stream runs
    for call in (lambda: list(svc.GetSnapshot(rp().GetSnapshotRequest(repository=gitaly_node.repo("cancel.git")),
                                              timeout=0.001)),
                 lambda: svc.CalculateChecksum(rp().CalculateChecksumRequest(
                     repository=gitaly_node.repo("cancel.git")), timeout=0.001),
                 lambda: svc.CreateRepository(rp().CreateRepositoryRequest(
                     repository=gitaly_node.repo("dl.git")), timeout=0.001)):
        try:
            call()
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert checksum(gitaly_node, "cancel.git") == expected_checksum(path)
    import time
    time.sleep(0.5)
    assert not os.path.exists(gitaly_node.repo_path("dl.git") + ".lock")
    tmp = os.path.join(gitaly_node.storages["default"], "+gitaly", "tmp")
    assert not os.path.exists(tmp) or os.listdir(tmp) == []
