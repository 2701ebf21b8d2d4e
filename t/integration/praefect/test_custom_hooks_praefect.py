"""SetCustomHooks through praefect: a transactional mutator whose two directory
votes make every replica install the same hooks in one step."""
import io
import os
import tarfile

import grpc
import pytest

from praefect_itest import wait_for
from gitaly_itest import pb


def hooks_tar(script):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        d = tarfile.TarInfo("custom_hooks")
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 1700000000
        t.addfile(d)
        f = tarfile.TarInfo("custom_hooks/pre-receive")
        f.mode, f.mtime, f.size = 0o755, 1700000000, len(script)
        t.addfile(f, io.BytesIO(script))
    return buf.getvalue()


def send(cluster, rel, data):
    req = pb("repository").SetCustomHooksRequest
    msgs = [req(repository=cluster.praefect.repo(rel))] + [req(data=data[i:i + 5000])
                                                           for i in range(0, len(data), 5000)]
    return cluster.praefect.stub("RepositoryService").SetCustomHooks(iter(msgs), timeout=30)


def node_hooks(cluster, name, replica_path):
    req = pb("repository").GetCustomHooksRequest(
        repository=pb("shared").Repository(storage_name=name, relative_path=replica_path))
    return b"".join(c.data for c in cluster.node_stub(name, "RepositoryService").GetCustomHooks(req))


def count_calls(node, method):
    return sum(1 for line in open(node.log_path) if '"grpc.method":"%s"' % method in line)


def in_sync(cluster, rel):
    md = cluster.praefect.metadata(rel)
    ok = len(md.replicas) == 3 and all(r.generation == md.generation for r in md.replicas)
    return md if ok else None


def test_set_custom_hooks_reaches_every_replica_in_one_generation(cluster):
    cluster.praefect.stub("RepositoryService").CreateRepository(
        pb("repository").CreateRepositoryRequest(repository=cluster.praefect.repo("h.git")), timeout=10)
    before = wait_for(lambda: in_sync(cluster, "h.git"), what="replicas in sync")
    script = b"#!/bin/sh\necho from-praefect\n"
    assert send(cluster, "h.git", hooks_tar(script)) == pb("repository").SetCustomHooksResponse()

    # right after the call, without waiting for replication: every replica voted and swapped
    md = cluster.praefect.metadata("h.git")
    assert md.generation == before.generation + 1
    assert sorted((r.storage, r.generation) for r in md.replicas) == \
        sorted((name, before.generation + 1) for name in cluster.nodes)
    # each node ran the call itself (no replication job copied the hooks)
    for name, node in cluster.nodes.items():
        assert count_calls(node, "SetCustomHooks") == 1, name
        assert count_calls(node, "ReplicateRepository") == 0, name
    tars = {name: node_hooks(cluster, name, md.replica_path) for name in cluster.nodes}
    assert len(set(tars.values())) == 1
    for name, node in cluster.nodes.items():
        hook = os.path.join(node.storages[name], md.replica_path, "custom_hooks", "pre-receive")
        assert open(hook, "rb").read() == script
        assert os.stat(hook).st_mode & 0o777 == 0o755

    # a refused archive changes no replica and no generation
    with pytest.raises(grpc.RpcError) as e:
        send(cluster, "h.git", b"garbage" * 1000)
    assert e.value.code() == grpc.StatusCode.INTERNAL
    after = cluster.praefect.metadata("h.git")
    assert after.generation == md.generation
    assert {name: node_hooks(cluster, name, md.replica_path) for name in cluster.nodes} == tars
