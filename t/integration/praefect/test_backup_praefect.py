"""gitaly-backup (the real binary) through praefect: `create -server-side` of
several repositories, then `restore -server-side` into an emptied cluster
gives back the same repositories on every replica."""
import io
import json
import os
import subprocess
import tarfile

from praefect_itest import PRAEFECT_TOKEN, Cluster, wait_for
from gitaly_itest import BUILD, git, make_bare_repo, pb

BACKUP = os.path.join(BUILD, "gitaly-backup", "gitaly-backup")


def rp():
    return pb("repository")


def hooks_tar():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        d = tarfile.TarInfo("custom_hooks")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        t.addfile(d)
        body = b"#!/bin/sh\nexit 0\n"
        f = tarfile.TarInfo("custom_hooks/post-receive")
        f.mode, f.size = 0o755, len(body)
        t.addfile(f, io.BytesIO(body))
    return buf.getvalue()


def in_sync(cluster, rel):
    md = cluster.praefect.metadata(rel)
    ok = len(md.replicas) == 3 and all(r.generation == md.generation for r in md.replicas)
    return md if ok else None


def run_backup(cluster, args, rels, always_create=False):
    lines = "".join(json.dumps({"address": "unix:" + cluster.praefect.socket, "token": PRAEFECT_TOKEN,
                                "storage_name": "default", "relative_path": rel, "gl_project_path": "g/" + rel,
                                "always_create": always_create}) + "\n" for rel in rels)
    return subprocess.run([BACKUP] + args, input=lines.encode(), capture_output=True, timeout=120)


def test_gitaly_backup_create_then_restore_through_praefect(tmp_path):
    sink = str(tmp_path / "backups")
    cluster = Cluster(tmp_path, node_extra='\n[backup]\ngo_cloud_url = "file://%s"\n' % sink)
    try:
        svc = cluster.praefect.stub("RepositoryService")
        rels = ["@hashed/aa/one.git", "@hashed/bb/two.git", "@hashed/cc/empty.git"]
        originals = {}
        for i, rel in enumerate(rels[:2]):
            src = make_bare_repo(str(tmp_path / ("src%d.git" % i)), branches=("main", "b%d" % i), tags=("t%d" % i,))
            bundle = str(tmp_path / ("src%d.bundle" % i))
            git("--git-dir", src, "bundle", "create", bundle, "--all")
            data = open(bundle, "rb").read()
            svc.CreateRepositoryFromBundle(iter([rp().CreateRepositoryFromBundleRequest(
                repository=cluster.praefect.repo(rel)), rp().CreateRepositoryFromBundleRequest(data=data)]), timeout=30)
        svc.CreateRepository(rp().CreateRepositoryRequest(repository=cluster.praefect.repo(rels[2])), timeout=30)
        svc.SetCustomHooks(iter([rp().SetCustomHooksRequest(repository=cluster.praefect.repo(rels[0])),
                                 rp().SetCustomHooksRequest(data=hooks_tar())]), timeout=30)
        for rel in rels:
            md = wait_for(lambda: in_sync(cluster, rel), what="replicas in sync")
            sums = {n: cluster.checksum(n, md.replica_path) for n in cluster.nodes}
            assert len(set(sums.values())) == 1
            originals[rel] = sums.popitem()[1]

        r = run_backup(cluster, ["create", "-server-side", "-id", "first", "-parallel", "2"], rels + ["@hashed/dd/missing.git"])
        assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
        log = [json.loads(line) for line in r.stdout.decode().splitlines()]
        assert sum(1 for e in log if e["msg"] == "completed create") == 3
        assert [e["relative_path"] for e in log if e["msg"] == "skipped create"] == ["@hashed/dd/missing.git"]
        assert open(os.path.join(sink, "@hashed", "aa", "one", "LATEST")).read() == "first"

        # empty the cluster, then restore
        for rel in rels:
            svc.RemoveRepository(rp().RemoveRepositoryRequest(repository=cluster.praefect.repo(rel)), timeout=30)
        r = run_backup(cluster, ["restore", "-server-side"], rels, always_create=True)
        assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
        for rel in rels:
            md = wait_for(lambda: in_sync(cluster, rel), what="replicas in sync")
            sums = {n: cluster.checksum(n, md.replica_path) for n in cluster.nodes}
            assert set(sums.values()) == {originals[rel]}, rel
        md = cluster.praefect.metadata(rels[0])
        for name, node in cluster.nodes.items():
            hook = os.path.join(node.storages[name], md.replica_path, "custom_hooks", "post-receive")
            assert open(hook, "rb").read() == b"#!/bin/sh\nexit 0\n"

        # a repository never backed up is skipped, without always_create nothing is made
        r = run_backup(cluster, ["restore", "-server-side"], ["@hashed/ee/never.git"])
        assert r.returncode == 0
        assert "skipped restore" in r.stdout.decode()
        # bad input
        r = subprocess.run([BACKUP, "create", "-server-side"], input=b"{not json\n", capture_output=True)
        assert r.returncode == 1
        r = subprocess.run([BACKUP, "create", "-server-side", "-path", sink], input=b"", capture_output=True)
        assert r.returncode == 1 and b"path cannot be used with server-side backups" in r.stdout
    finally:
        cluster.stop()


def test_gitaly_backup_client_side_into_a_path_through_praefect(cluster, tmp_path):
    path = str(tmp_path / "client-backups")
    svc = cluster.praefect.stub("RepositoryService")
    rels = ["@hashed/11/a.git", "@hashed/22/b.git", "@hashed/33/empty.git"]
    for i, rel in enumerate(rels[:2]):
        src = make_bare_repo(str(tmp_path / ("c%d.git" % i)), branches=("main", "x%d" % i), tags=("v%d" % i,))
        bundle = str(tmp_path / ("c%d.bundle" % i))
        git("--git-dir", src, "bundle", "create", bundle, "--all")
        svc.CreateRepositoryFromBundle(iter([rp().CreateRepositoryFromBundleRequest(
            repository=cluster.praefect.repo(rel)),
            rp().CreateRepositoryFromBundleRequest(data=open(bundle, "rb").read())]), timeout=30)
    svc.CreateRepository(rp().CreateRepositoryRequest(repository=cluster.praefect.repo(rels[2])), timeout=30)
    svc.SetCustomHooks(iter([rp().SetCustomHooksRequest(repository=cluster.praefect.repo(rels[1])),
                             rp().SetCustomHooksRequest(data=hooks_tar())]), timeout=30)
    originals = {}
    for rel in rels:
        md = wait_for(lambda: in_sync(cluster, rel), what="replicas in sync")
        originals[rel] = cluster.checksum("gitaly-1", md.replica_path)

    r = run_backup(cluster, ["create", "-path", path, "-id", "c1", "-layout", "pointer"], rels + ["@hashed/44/none.git"])
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    d = os.path.join(path, "@hashed", "11", "a", "c1")
    assert open(os.path.join(path, "@hashed", "11", "a", "LATEST")).read() == "c1"
    assert open(os.path.join(d, "LATEST")).read() == "001"
    git("bundle", "list-heads", os.path.join(d, "001.bundle"))
    assert os.path.exists(os.path.join(path, "@hashed", "22", "b", "c1", "001.custom_hooks.tar"))
    assert os.path.getsize(os.path.join(path, "@hashed", "33", "empty", "c1", "001.refs")) == 0
    assert "skipped create" in r.stdout.decode()

    for rel in rels:
        svc.RemoveRepository(rp().RemoveRepositoryRequest(repository=cluster.praefect.repo(rel)), timeout=30)
    r = run_backup(cluster, ["restore", "-path", path, "-parallel-storage", "1"], rels, always_create=True)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    for rel in rels:
        md = wait_for(lambda: in_sync(cluster, rel), what="replicas in sync")
        sums = {n: cluster.checksum(n, md.replica_path) for n in cluster.nodes}
        assert set(sums.values()) == {originals[rel]}, rel
    md = cluster.praefect.metadata(rels[1])
    hook = os.path.join(cluster.nodes["gitaly-1"].storages["gitaly-1"], md.replica_path, "custom_hooks",
                        "post-receive")
    assert open(hook, "rb").read() == b"#!/bin/sh\nexit 0\n"
