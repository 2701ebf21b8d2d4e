"""ServerService through praefect: DiskStatistics gathered from every node, ClockSynced about
praefect's own clock (docs/technical/clock-sync.md)."""
import grpc
import pytest
from google.protobuf import duration_pb2

from gitaly_itest import pb
from ntp_fake import FakeNTP


def test_disk_statistics_lists_every_node_storage(cluster):
    resp = cluster.praefect.stub("ServerService").DiskStatistics(pb("server").DiskStatisticsRequest())
    assert sorted(s.storage_name for s in resp.storage_statuses) == sorted(cluster.nodes)
    assert all(s.available > 0 and s.used > 0 for s in resp.storage_statuses)


def test_disk_statistics_fails_when_a_node_does_not_answer(cluster):
    down = sorted(cluster.nodes)[1]
    cluster.nodes[down].stop()
    with pytest.raises(grpc.RpcError) as e:
        cluster.praefect.stub("ServerService").DiskStatistics(pb("server").DiskStatisticsRequest(), timeout=30)
    assert e.value.code() == grpc.StatusCode.UNKNOWN
    assert e.value.details() == "error when requesting disk statistics from internal storage %s" % down


def test_clock_synced_on_praefect(cluster):
    stub = cluster.praefect.stub("ServerService")
    good, off = FakeNTP(), FakeNTP(offset=-120)
    try:
        req = pb("server").ClockSyncedRequest(ntp_host=good.address, drift_threshold=duration_pb2.Duration(seconds=5))
        assert stub.ClockSynced(req, timeout=20).synced
        req.ntp_host = off.address
        assert not stub.ClockSynced(req, timeout=20).synced
        assert good.requests == 1 and off.requests == 1
        with pytest.raises(grpc.RpcError) as e:
            stub.ClockSynced(pb("server").ClockSyncedRequest(ntp_host=good.address))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.details() == "invalid nil Duration"
    finally:
        good.close()
        off.close()
