"""The cluster's memory beside each replica (docs/technical/recovery.md): after a creation, a push
and a replication, every replica the store holds at a generation carries gitaly-cluster.json with
its virtual storage, relative path, repository id and that generation."""
import json
import os

import grpc
import pytest

from praefect_itest import Cluster, NODE_TOKEN, pb, wait_for
from test_praefect import create_repo, push, replicas_in_sync, work_repo
from test_failover import commit_on

pytestmark = pytest.mark.xdist_group("timing")


def replica_info(cluster, storage, replica_path):
    path = os.path.join(cluster.nodes[storage].storages[storage], replica_path, "gitaly-cluster.json")
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def infos_match_store(cluster, rel, storages=None):
    md = cluster.praefect.metadata(rel)
    want_vs = cluster.praefect.repo(rel).storage_name
    for r in md.replicas:
        if storages is not None and r.storage not in storages:
            continue
        info = replica_info(cluster, r.storage, md.replica_path)
        if info is None:
            return None
        epoch = info.pop("primary_epoch", None)
        # the record names the primary praefect knew when it wrote it, with its wall clock
        if info != {"virtual_storage": want_vs, "relative_path": rel, "repository_id": md.repository_id,
                    "generation": r.generation, "primary": md.primary}:
            return None
        if not isinstance(epoch, int) or epoch <= 0:
            return None
    return md


def test_replica_info_follows_creation_push_and_replication(tmp_path):
    cluster = Cluster(tmp_path)
    try:
        rel = "group/info.git"
        create_repo(cluster, rel)
        md = wait_for(lambda: infos_match_store(cluster, rel), what="replica info after creation")
        assert md.generation == 0 and len(md.replicas) == 3

        src = work_repo(tmp_path, branches=("main",), tags=())
        push(cluster, src, rel, "main")
        md = wait_for(lambda: replicas_in_sync(cluster, rel), what="replication")[0]
        md = wait_for(lambda: infos_match_store(cluster, rel), what="replica info after the push")
        assert md.generation >= 1
        before = md.generation

        # a secondary misses a push: its record stays behind with it, the others move on
        lagging = next(r.storage for r in md.replicas if r.storage != md.primary)
        cluster.nodes[lagging].stop()
        # a push before praefect saw it go could still pick it as a voter and fail
        wait_for(lambda: not {r.storage: r.healthy for r in cluster.praefect.metadata(rel).replicas}[lagging],
                 what="%s marked unhealthy" % lagging)
        commit_on(src, 1)
        push(cluster, src, rel, "main")
        others = [r.storage for r in md.replicas if r.storage != lagging]
        md = wait_for(lambda: (lambda m: m if m and m.generation > before else None)(
            infos_match_store(cluster, rel, others)), what="replica info on the replicas that voted")
        assert replica_info(cluster, lagging, md.replica_path)["generation"] == before

        # replication brings the lagging replica and its record up to the generation
        cluster.nodes[lagging].start()
        md = wait_for(lambda: replicas_in_sync(cluster, rel), timeout=60, what="catch-up")[0]
        md = wait_for(lambda: infos_match_store(cluster, rel), what="replica info after replication")
        assert replica_info(cluster, lagging, md.replica_path)["generation"] == md.generation
    finally:
        cluster.stop()


def test_set_replica_info_refuses_bad_input_and_writes_the_whole_record(tmp_path):
    cluster = Cluster(tmp_path, n=1)
    try:
        rel = "bad/info.git"
        create_repo(cluster, rel)
        md = wait_for(lambda: infos_match_store(cluster, rel), what="replica info after creation")
        node = cluster.nodes["gitaly-1"]
        stub = node.stub("ClusterReplicaService", secret=NODE_TOKEN)
        ipb = pb("internal")
        repo = pb("shared").Repository(storage_name="gitaly-1", relative_path=md.replica_path)
        good = ipb.ReplicaInfo(virtual_storage="vs \"quoted\"\n", relative_path="a/\u00e9.git",
                               repository_id=42, generation=9)
        for req, code in [
            (ipb.SetReplicaInfoRequest(info=good), grpc.StatusCode.INVALID_ARGUMENT),
            (ipb.SetReplicaInfoRequest(repository=pb("shared").Repository(storage_name="gitaly-1",
                                                                          relative_path="nope.git"), info=good),
             grpc.StatusCode.NOT_FOUND),
            (ipb.SetReplicaInfoRequest(repository=repo), grpc.StatusCode.INVALID_ARGUMENT),
            (ipb.SetReplicaInfoRequest(repository=repo, info=ipb.ReplicaInfo(
                virtual_storage="vs", relative_path="x.git", repository_id=0, generation=1)),
             grpc.StatusCode.INVALID_ARGUMENT),
            (ipb.SetReplicaInfoRequest(repository=repo, info=ipb.ReplicaInfo(
                virtual_storage="vs", relative_path="x.git", repository_id=1, generation=-1)),
             grpc.StatusCode.INVALID_ARGUMENT),
        ]:
            with pytest.raises(grpc.RpcError) as e:
                stub.SetReplicaInfo(req, timeout=10)
            assert e.value.code() == code, (req, e.value.details())
        # the refusals left the record alone
        assert replica_info(cluster, "gitaly-1", md.replica_path)["repository_id"] == md.repository_id
        stub.SetReplicaInfo(ipb.SetReplicaInfoRequest(repository=repo, info=good), timeout=10)
        assert replica_info(cluster, "gitaly-1", md.replica_path) == {
            "virtual_storage": "vs \"quoted\"\n", "relative_path": "a/\u00e9.git", "repository_id": 42,
            "generation": 9}
        # a primary is written with its epoch; a negative epoch is refused
        with_primary = ipb.ReplicaInfo(virtual_storage="vs", relative_path="a.git", repository_id=3, generation=1,
                                       primary="gitaly-\u00e9", primary_epoch=1765000000000)
        with pytest.raises(grpc.RpcError) as e:
            stub.SetReplicaInfo(ipb.SetReplicaInfoRequest(repository=repo, info=ipb.ReplicaInfo(
                virtual_storage="vs", relative_path="a.git", repository_id=3, generation=1, primary="x",
                primary_epoch=-1)), timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        stub.SetReplicaInfo(ipb.SetReplicaInfoRequest(repository=repo, info=with_primary), timeout=10)
        assert replica_info(cluster, "gitaly-1", md.replica_path) == {
            "virtual_storage": "vs", "relative_path": "a.git", "repository_id": 3, "generation": 1,
            "primary": "gitaly-\u00e9", "primary_epoch": 1765000000000}
        leftovers = [f for f in os.listdir(os.path.join(node.storages["gitaly-1"], md.replica_path))
                     if "gitaly-cluster" in f and f != "gitaly-cluster.json"]
        assert leftovers == []
    finally:
        cluster.stop()


def test_get_replica_info_reads_the_record_back_and_refuses_a_broken_one(tmp_path):
    cluster = Cluster(tmp_path, n=1)
    try:
        rel = "read/info.git"
        create_repo(cluster, rel)
        md = wait_for(lambda: infos_match_store(cluster, rel), what="replica info after creation")
        stub = cluster.nodes["gitaly-1"].stub("ClusterReplicaService", secret=NODE_TOKEN)
        ipb = pb("internal")
        repo = pb("shared").Repository(storage_name="gitaly-1", relative_path=md.replica_path)
        info = stub.GetReplicaInfo(ipb.GetReplicaInfoRequest(repository=repo), timeout=10).info
        assert (info.virtual_storage, info.relative_path, info.repository_id, info.generation) == (
            cluster.praefect.repo(rel).storage_name, rel, md.repository_id, 0)

        odd = ipb.ReplicaInfo(virtual_storage="vs \"q\"\t", relative_path="a/\u00e9\u2603.git",
                              repository_id=2 ** 62, generation=5)
        stub.SetReplicaInfo(ipb.SetReplicaInfoRequest(repository=repo, info=odd), timeout=10)
        assert stub.GetReplicaInfo(ipb.GetReplicaInfoRequest(repository=repo), timeout=10).info == odd
        odd.primary, odd.primary_epoch = "gitaly-\"2\"", 2 ** 41
        stub.SetReplicaInfo(ipb.SetReplicaInfoRequest(repository=repo, info=odd), timeout=10)
        assert stub.GetReplicaInfo(ipb.GetReplicaInfoRequest(repository=repo), timeout=10).info == odd

        path = os.path.join(cluster.nodes["gitaly-1"].storages["gitaly-1"], md.replica_path, "gitaly-cluster.json")
        for broken in ['{"virtual_storage":"a","relative_path":"b","repository_id":1}',
                       '{"virtual_storage":"a","relative_path":"b","repository_id":1,"generation":1,"x":1}',
                       '{"virtual_storage":"a","relative_path":"b","repository_id":-1,"generation":1}',
                       '{"virtual_storage":"a\\u0000","relative_path":"b","repository_id":1,"generation":1}',
                       '{"virtual_storage":"a","relative_path":"b","repository_id":99999999999999999999,"generation":1}',
                       # a primary comes with its epoch and is never empty
                       '{"virtual_storage":"a","relative_path":"b","repository_id":1,"generation":1,"primary":"p"}',
                       '{"virtual_storage":"a","relative_path":"b","repository_id":1,"generation":1,"primary_epoch":5}',
                       '{"virtual_storage":"a","relative_path":"b","repository_id":1,"generation":1,"primary":"",'
                       '"primary_epoch":5}',
                       'not json', '']:
            with open(path, "w") as f:
                f.write(broken)
            with pytest.raises(grpc.RpcError) as e:
                stub.GetReplicaInfo(ipb.GetReplicaInfoRequest(repository=repo), timeout=10)
            assert e.value.code() == grpc.StatusCode.DATA_LOSS, broken
        os.unlink(path)
        with pytest.raises(grpc.RpcError) as e:
            stub.GetReplicaInfo(ipb.GetReplicaInfoRequest(repository=repo), timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as e:
            stub.GetReplicaInfo(ipb.GetReplicaInfoRequest(), timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        cluster.stop()
