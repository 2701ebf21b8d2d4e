"""Server-side backups against a real node: BackupRepository writes upstream's
pointer layout into the file:// sink, RestoreRepository rebuilds the
repository (refs, objects, custom hooks, HEAD) from it."""
import io
import os
import tarfile

import grpc
import pytest

from gitaly_itest import GitalyNode, git, make_bare_repo, pb


def rp():
    return pb("repository")


def refs(path):
    return sorted(git("--git-dir", path, "for-each-ref", "--format=%(objectname) %(refname)").splitlines())


@pytest.fixture
def node(tmp_path):
    sink = str(tmp_path / "backups")
    n = GitalyNode(str(tmp_path / "gitaly"), extra_config='\n[backup]\ngo_cloud_url = "file://%s"\nlayout = "manifest"\n'
                   % sink).start()
    n.sink = sink
    yield n
    n.stop()


def hooks_tar():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        d = tarfile.TarInfo("custom_hooks")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        t.addfile(d)
        body = b"#!/bin/sh\nexit 0\n"
        f = tarfile.TarInfo("custom_hooks/pre-receive")
        f.mode, f.size = 0o755, len(body)
        t.addfile(f, io.BytesIO(body))
    return buf.getvalue()


def backup(node, rel, backup_id, incremental=False):
    return node.stub("RepositoryService").BackupRepository(rp().BackupRepositoryRequest(
        repository=node.repo(rel), backup_id=backup_id, incremental=incremental), timeout=30)


def restore(node, rel, backup_id="", always_create=False):
    return node.stub("RepositoryService").RestoreRepository(rp().RestoreRepositoryRequest(
        repository=node.repo(rel), backup_id=backup_id, always_create=always_create), timeout=30)


def test_backup_then_restore_into_an_empty_repository_equals_the_original(node):
    src = make_bare_repo(node.repo_path("group/p.git"), branches=("dev", "main"), tags=("v1",))
    svc = node.stub("RepositoryService")
    svc.SetCustomHooks(iter([rp().SetCustomHooksRequest(repository=node.repo("group/p.git")),
                             rp().SetCustomHooksRequest(data=hooks_tar())]))
    original = refs(src)
    git("--git-dir", src, "symbolic-ref", "HEAD", "refs/heads/dev")
    backup(node, "group/p.git", "b1")

    d = os.path.join(node.sink, "group", "p", "b1")
    assert open(os.path.join(node.sink, "group", "p", "LATEST")).read() == "b1"
    assert open(os.path.join(d, "LATEST")).read() == "001"
    assert sorted(open(os.path.join(d, "001.refs")).read().splitlines()) == original
    git("--git-dir", src, "bundle", "verify", os.path.join(d, "001.bundle"))
    assert tarfile.open(os.path.join(d, "001.custom_hooks.tar")).getnames()[0] == "custom_hooks"
    manifest = open(os.path.join(node.sink, "manifests", "default", "group", "p.git", "b1.toml")).read()
    assert "head_reference = 'refs/heads/dev'" in manifest and "001.bundle" in manifest

    # an incremental backup after a new commit holds only what is new
    work = src + ".w"
    git("clone", "-q", src, work)
    git("commit", "-q", "--allow-empty", "-m", "next", cwd=work)
    git("push", "-q", src, "HEAD:refs/heads/dev", cwd=work)
    backup(node, "group/p.git", "b2", incremental=True)
    assert open(os.path.join(d, "LATEST")).read() == "002"
    assert "001.bundle" in open(os.path.join(node.sink, "manifests", "default", "group", "p.git", "b2.toml")).read()
    after = refs(src)

    # restore over the existing repository, then into a fresh path
    restore(node, "group/p.git")
    assert refs(src) == after
    assert git("--git-dir", src, "symbolic-ref", "HEAD").strip() == "refs/heads/dev"
    git("--git-dir", src, "fsck")
    hook = os.path.join(src, "custom_hooks", "pre-receive")
    assert open(hook, "rb").read() == b"#!/bin/sh\nexit 0\n"
    assert not os.listdir(os.path.join(node.storages["default"], "+gitaly", "tmp"))


def test_backup_and_restore_errors(node, tmp_path):
    with pytest.raises(grpc.RpcError) as e:
        backup(node, "missing.git", "x")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    make_bare_repo(node.repo_path("r.git"))
    with pytest.raises(grpc.RpcError) as e:
        backup(node, "r.git", "")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == "empty BackupId"
    # nothing backed up: skipped, with the SkippedError detail
    with pytest.raises(grpc.RpcError) as e:
        restore(node, "never.git")
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.value.details().startswith("restore repository: manager: repository skipped")
    md = dict(e.value.trailing_metadata())
    assert "grpc-status-details-bin" in md
    assert not os.path.exists(node.repo_path("never.git"))
    # an empty repository restores as an empty repository
    git("init", "-q", "--bare", node.repo_path("empty.git"))
    backup(node, "empty.git", "e1")
    restore(node, "empty.git", always_create=True)
    assert refs(node.repo_path("empty.git")) == []

    # not configured
    plain = GitalyNode(str(tmp_path / "plain")).start()
    try:
        with pytest.raises(grpc.RpcError) as e:
            plain.stub("RepositoryService").BackupRepository(rp().BackupRepositoryRequest(
                repository=plain.repo("r.git"), backup_id="x"))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert e.value.details() == "backup repository: server-side backups are not configured"
    finally:
        plain.stop()


def test_a_backup_sink_we_cannot_write_stops_the_start(tmp_path):
    n = GitalyNode(str(tmp_path / "bad"), extra_config='\n[backup]\ngo_cloud_url = "s3://bucket/backups"\n')
    with pytest.raises(RuntimeError) as e:
        n.start()
    assert 'unsupported backup sink "s3://bucket/backups"' in str(e.value)
    n.stop()


def test_gitaly_backup_restore_after_remove_all_repositories_on_a_node(node):
    import json
    import subprocess
    from gitaly_itest import BUILD
    exe = os.path.join(BUILD, "gitaly-backup", "gitaly-backup")
    rels = ["x/one.git", "x/two.git"]
    for rel in rels:
        make_bare_repo(node.repo_path(rel), branches=("main", "side"))
    originals = {rel: refs(node.repo_path(rel)) for rel in rels}
    make_bare_repo(node.repo_path("stray.git"))
    lines = "".join(json.dumps({"address": "unix:" + node.socket, "token": node.token, "storage_name": "default",
                                "relative_path": rel, "gl_project_path": rel}) + "\n" for rel in rels).encode()
    r = subprocess.run([exe, "create", "-server-side", "-id", "n1"], input=lines, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    r = subprocess.run([exe, "restore", "-server-side", "-remove-all-repositories", "default"], input=lines,
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    assert not os.path.exists(node.repo_path("stray.git"))
    for rel in rels:
        assert refs(node.repo_path(rel)) == originals[rel]
    # RemoveAll of an unknown storage (test_housekeeping.py has its answer)
    with pytest.raises(grpc.RpcError):
        node.stub("RepositoryService").RemoveAll(rp().RemoveAllRequest(storage_name="nope"))
