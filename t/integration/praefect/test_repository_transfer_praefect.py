"""The rest of issue 19's RPCs through praefect, each also tested on a node directly (test_bundle.py,
test_create_from_snapshot.py, test_custom_hooks_set.py, test_backup_server_side.py):
CreateBundleFromRefList, CreateRepositoryFromSnapshot, RestoreCustomHooks, and a server-side backup
restored into a brand-new cluster."""
import http.server
import json
import os
import subprocess
import threading

import pytest

from praefect_itest import PRAEFECT_TOKEN, Cluster, fresh_store, wait_for
from gitaly_itest import BUILD, git, make_bare_repo, pb
from test_praefect import create_repo, push, refs
from test_custom_hooks_praefect import count_calls, hooks_tar, node_hooks


def rp():
    return pb("repository")


def in_sync(cluster, rel):
    md = cluster.praefect.metadata(rel)
    sums = {cluster.checksum(r.storage, md.replica_path) for r in md.replicas}
    ok = len(md.replicas) == 3 and len(sums) == 1 and all(r.generation == md.generation for r in md.replicas)
    return md if ok else None


def pushed(cluster, tmp_path, rel):
    create_repo(cluster, rel)
    src = make_bare_repo(str(tmp_path / (rel.replace("/", "_") + ".src")), branches=("main", "feature"),
                         tags=("v1",), files={"a.txt": "a\n"})
    push(cluster, src, rel, "--all")
    push(cluster, src, rel, "--tags")
    return src, wait_for(lambda: in_sync(cluster, rel), what="replicas in sync")


def on_disk(cluster, name, replica_path):
    return os.path.join(cluster.nodes[name].storages[name], replica_path)


def test_create_bundle_from_ref_list_through_praefect(cluster, tmp_path):
    src, _ = pushed(cluster, tmp_path, "bundled.git")

    def reqs():
        yield rp().CreateBundleFromRefListRequest(repository=cluster.praefect.repo("bundled.git"),
                                                  patterns=[b"refs/heads/main"])
        yield rp().CreateBundleFromRefListRequest(patterns=[b"refs/tags/v1"])
    data = b"".join(r.data for r in cluster.praefect.stub("RepositoryService").CreateBundleFromRefList(
        reqs(), timeout=30))
    bundle = str(tmp_path / "out.bundle")
    with open(bundle, "wb") as f:
        f.write(data)
    heads = sorted(l.split()[1] for l in git("bundle", "list-heads", bundle).splitlines())
    assert heads == ["refs/heads/main", "refs/tags/v1"]
    clone = str(tmp_path / "from-bundle.git")
    git("clone", "-q", "--mirror", bundle, clone)
    git("fsck", cwd=clone)
    assert git("rev-parse", "main", cwd=clone) == git("rev-parse", "main", cwd=src)


@pytest.fixture
def snapshot_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = srv.files.get(self.path)
            if body is None or self.headers.get("Authorization") != "Bearer s3cret":
                self.send_response(404 if body is None else 401)
                self.end_headers()
                return
            srv.served += 1
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.files, srv.served = {}, 0
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_create_repository_from_snapshot_through_praefect_is_made_on_every_replica(cluster, tmp_path,
                                                                                  snapshot_server):
    src, _ = pushed(cluster, tmp_path, "snap-src.git")
    snapshot_server.files["/snap.tar"] = b"".join(r.data for r in cluster.praefect.stub(
        "RepositoryService").GetSnapshot(rp().GetSnapshotRequest(repository=cluster.praefect.repo("snap-src.git")),
                                          timeout=30))
    cluster.praefect.stub("RepositoryService").CreateRepositoryFromSnapshot(rp().CreateRepositoryFromSnapshotRequest(
        repository=cluster.praefect.repo("snap-copy.git"),
        http_url="http://127.0.0.1:%d/snap.tar" % snapshot_server.server_address[1], http_auth="Bearer s3cret"),
        timeout=60)
    # a voted creation: right away, without replication, every replica exists at generation 0
    md = cluster.praefect.metadata("snap-copy.git")
    assert sorted((r.storage, r.generation) for r in md.replicas) == [(n, 0) for n in sorted(cluster.nodes)]
    assert snapshot_server.served == 3
    for name in cluster.nodes:
        path = on_disk(cluster, name, md.replica_path)
        assert refs(path) == refs(src), name
        git("fsck", cwd=path)
    assert in_sync(cluster, "snap-copy.git")
    # the same path again is refused, as any creation of an existing repository
    with pytest.raises(Exception) as e:
        cluster.praefect.stub("RepositoryService").CreateRepositoryFromSnapshot(
            rp().CreateRepositoryFromSnapshotRequest(repository=cluster.praefect.repo("snap-copy.git"),
                                                     http_url="http://127.0.0.1:1/x", http_auth="x"), timeout=30)
    assert e.value.code().name == "ALREADY_EXISTS"


def test_restore_custom_hooks_through_praefect_reaches_every_replica_in_one_generation(cluster, tmp_path):
    _, before = pushed(cluster, tmp_path, "restored-hooks.git")
    script = b"#!/bin/sh\necho restored\n"
    data = hooks_tar(script)
    req = rp().RestoreCustomHooksRequest
    msgs = [req(repository=cluster.praefect.repo("restored-hooks.git"))] + [
        req(data=data[i:i + 4000]) for i in range(0, len(data), 4000)]
    assert cluster.praefect.stub("RepositoryService").RestoreCustomHooks(iter(msgs), timeout=30) == \
        rp().RestoreCustomHooksResponse()
    md = cluster.praefect.metadata("restored-hooks.git")
    assert md.generation == before.generation + 1
    assert sorted((r.storage, r.generation) for r in md.replicas) == \
        sorted((n, md.generation) for n in cluster.nodes)
    for name, node in cluster.nodes.items():
        assert count_calls(node, "RestoreCustomHooks") == 1, name
        with open(os.path.join(on_disk(cluster, name, md.replica_path), "custom_hooks", "pre-receive"), "rb") as f:
            assert f.read() == script
    assert len({node_hooks(cluster, n, md.replica_path) for n in cluster.nodes}) == 1


def run_backup(cluster, args, rels, always_create=False):
    lines = "".join(json.dumps({"address": "unix:" + cluster.praefect.socket, "token": PRAEFECT_TOKEN,
                                "storage_name": "default", "relative_path": rel, "gl_project_path": "g/" + rel,
                                "always_create": always_create}) + "\n" for rel in rels)
    r = subprocess.run([os.path.join(BUILD, "gitaly-backup", "gitaly-backup")] + args, input=lines.encode(),
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    return r.stdout.decode()


def test_a_server_side_backup_restores_into_a_new_empty_cluster(tmp_path):
    """BackupRepository into a file:// sink from one cluster, RestoreRepository from it into another
    with new nodes and a new tracking store: refs, objects and custom hooks come back on every replica."""
    sink = str(tmp_path / "sink")
    extra = '\n[backup]\ngo_cloud_url = "file://%s"\n' % sink
    rels = ["@hashed/5a/one.git", "@hashed/6b/empty.git"]
    old = Cluster(tmp_path / "old", node_extra=extra)
    try:
        src, _ = pushed(old, tmp_path, rels[0])
        create_repo(old, rels[1])
        req = rp().SetCustomHooksRequest
        old.praefect.stub("RepositoryService").SetCustomHooks(
            iter([req(repository=old.praefect.repo(rels[0])), req(data=hooks_tar(b"#!/bin/sh\nexit 0\n"))]),
            timeout=30)
        want = {rel: wait_for(lambda: in_sync(old, rel), what="in sync") for rel in rels}
        sums = {rel: old.checksum(md.primary, md.replica_path) for rel, md in want.items()}
        objects = sorted(git("cat-file", "--batch-all-objects", "--batch-check",
                             cwd=on_disk(old, want[rels[0]].primary, want[rels[0]].replica_path)).splitlines())
        out = run_backup(old, ["create", "-server-side", "-id", "b1"], rels)
        assert out.count("completed create") == 2, out
    finally:
        old.stop()

    new = Cluster(tmp_path / "new", node_extra=extra, database=fresh_store())
    try:
        assert new.praefect.stub("RepositoryService").RepositoryExists(
            rp().RepositoryExistsRequest(repository=new.praefect.repo(rels[0])), timeout=10).exists is False
        out = run_backup(new, ["restore", "-server-side"], rels, always_create=True)
        assert out.count("completed restore") == 2, out
        for rel in rels:
            md = wait_for(lambda: in_sync(new, rel), what="restored everywhere")
            assert {new.checksum(n, md.replica_path) for n in new.nodes} == {sums[rel]}, rel
        md = new.praefect.metadata(rels[0])
        for name in new.nodes:
            path = on_disk(new, name, md.replica_path)
            assert refs(path) == refs(src), name
            git("fsck", cwd=path)
            assert sorted(git("cat-file", "--batch-all-objects", "--batch-check", cwd=path).splitlines()) == objects
            with open(os.path.join(path, "custom_hooks", "pre-receive"), "rb") as f:
                assert f.read() == b"#!/bin/sh\nexit 0\n"
    finally:
        new.stop()
