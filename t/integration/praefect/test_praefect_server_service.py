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


def readiness(cluster, **kw):
    return cluster.praefect.stub("ServerService").ReadinessCheck(pb("server").ReadinessCheckRequest(**kw), timeout=60)


def test_readiness_check_runs_the_checks_of_praefect_check(cluster, monkeypatch):
    ntp = FakeNTP()
    try:
        monkeypatch.setenv("NTP_HOST", ntp.address)
        cluster.praefect.stop()
        cluster.praefect.start()
        resp = readiness(cluster)
        assert resp.WhichOneof("Result") == "ok_response"
        assert ntp.requests == 1 + len(cluster.nodes)      # praefect's clock, then each node's
        down = sorted(cluster.nodes)[0]
        cluster.nodes[down].stop()
        resp = readiness(cluster)
        assert resp.WhichOneof("Result") == "failure_response"
        failed = {f.name: f.error_message for f in resp.failure_response.failed_checks}
        names = [f.name for f in resp.failure_response.failed_checks]
        assert names == sorted(names)
        assert "the following nodes are not healthy: unix:%s" % cluster.nodes[down].socket in \
            failed["gitaly node connectivity & disk access"]
        assert "clock synchronization" in failed
        # a timeout shorter than the checks: those not done by then fail as cancelled
        resp = readiness(cluster, timeout=duration_pb2.Duration(nanos=1000000))
        assert resp.WhichOneof("Result") == "failure_response"
        assert "context deadline exceeded" in [f.error_message for f in resp.failure_response.failed_checks]
    finally:
        ntp.close()
