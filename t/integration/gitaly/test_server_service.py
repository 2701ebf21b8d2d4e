"""ServerService and authentication against a real gitaly."""
import grpc
import pytest

from gitaly_itest import pb, v2_token


def test_server_info_reports_storages_and_git(gitaly_node):
    resp = gitaly_node.stub("ServerService").ServerInfo(pb("server").ServerInfoRequest())
    assert resp.git_version.count(".") >= 2
    assert resp.server_version
    [st] = resp.storage_statuses
    assert st.storage_name == "default"
    assert st.readable and st.writeable
    assert len(st.filesystem_id) == 36
    assert st.replication_factor == 1


def test_disk_statistics(gitaly_node):
    resp = gitaly_node.stub("ServerService").DiskStatistics(pb("server").DiskStatisticsRequest())
    [st] = resp.storage_statuses
    assert st.storage_name == "default"
    assert st.available > 0 and st.used > 0


def test_missing_token_is_unauthenticated(gitaly_node):
    stub = gitaly_node.stub("ServerService", secret=None)
    with pytest.raises(grpc.RpcError) as e:
        stub.ServerInfo(pb("server").ServerInfoRequest())
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert e.value.details() == "authentication required"


@pytest.mark.parametrize("token", [
    lambda: "Bearer " + v2_token("wrong-secret"),
    lambda: "Bearer " + v2_token("the-secret-token", now=1000),
    lambda: "Bearer v1." + v2_token("the-secret-token")[3:],
])
def test_bad_token_is_permission_denied(gitaly_node, token):
    stub = gitaly_node.stub("ServerService", secret=None)
    with pytest.raises(grpc.RpcError) as e:
        stub.ServerInfo(pb("server").ServerInfoRequest(), metadata=[("authorization", token())])
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_health_over_tcp_needs_auth_too(gitaly_node):
    health = pb("health")
    import health_pb2_grpc
    ch = gitaly_node.channel(secret="the-secret-token", target=gitaly_node.tcp_addr)
    resp = health_pb2_grpc.HealthStub(ch).Check(health.HealthCheckRequest())
    assert resp.status == health.HealthCheckResponse.SERVING
    bare = gitaly_node.channel(secret=None, target=gitaly_node.tcp_addr)
    with pytest.raises(grpc.RpcError) as e:
        health_pb2_grpc.HealthStub(bare).Check(health.HealthCheckRequest())
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_bad_config_is_refused_with_file_and_line(tmp_path):
    import subprocess
    import os
    from gitaly_itest import BUILD
    cfg = tmp_path / "c.toml"
    cfg.write_text('socket_path = "/tmp/x.sock"\nbin_dir = "%s"\n[[storage]]\nname = "a"\npath = 12\n' % tmp_path)
    r = subprocess.run([os.path.join(BUILD, "gitaly", "gitaly"), str(cfg)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "c.toml:5" in r.stderr and '"path"' in r.stderr


# --- ClockSynced and ReadinessCheck (docs/technical/clock-sync.md) ---

def clock_synced(stub, host, threshold_s=None):
    from google.protobuf import duration_pb2
    req = pb("server").ClockSyncedRequest(ntp_host=host)
    if threshold_s is not None:
        req.drift_threshold.CopyFrom(duration_pb2.Duration(seconds=threshold_s))
    return stub.ClockSynced(req, timeout=20)


@pytest.fixture
def fake_ntp():
    from ntp_fake import FakeNTP
    made = []

    def make(**kw):
        made.append(FakeNTP(**kw))
        return made[-1]
    yield make
    for f in made:
        f.close()


def test_clock_synced_compares_the_offset_with_the_threshold(gitaly_node, fake_ntp):
    stub = gitaly_node.stub("ServerService")
    assert clock_synced(stub, fake_ntp().address, 5).synced
    off = fake_ntp(offset=30)
    assert not clock_synced(stub, off.address, 5).synced
    assert clock_synced(stub, off.address, 60).synced
    assert not clock_synced(stub, fake_ntp(offset=-30).address, 5).synced
    assert off.requests == 2


@pytest.mark.parametrize("kw,message", [
    (dict(stratum=0), "validate ntp response: kiss of death received"),
    (dict(stratum=16), "validate ntp response: invalid stratum in response"),
    (dict(leap=3), "validate ntp response: invalid leap second in response"),
    (dict(dispersion=20), "validate ntp response: invalid dispersion in response"),
    (dict(mode=3), "query ntp host {host}: invalid mode in response"),
    (dict(echo_origin=False), "query ntp host {host}: server response didn't match request"),
])
def test_clock_synced_refuses_answers_not_to_be_believed(gitaly_node, fake_ntp, kw, message):
    srv = fake_ntp(**kw)
    with pytest.raises(grpc.RpcError) as e:
        clock_synced(gitaly_node.stub("ServerService"), srv.address, 5)
    assert e.value.code() == grpc.StatusCode.UNKNOWN
    assert e.value.details() == message.format(host=srv.address)


def test_clock_synced_errors(gitaly_node, fake_ntp):
    stub = gitaly_node.stub("ServerService")
    with pytest.raises(grpc.RpcError) as e:
        clock_synced(stub, fake_ntp().address)          # no drift_threshold
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == "invalid nil Duration"
    from google.protobuf import duration_pb2
    req = pb("server").ClockSyncedRequest(ntp_host=fake_ntp().address,
                                          drift_threshold=duration_pb2.Duration(seconds=1, nanos=-5))
    with pytest.raises(grpc.RpcError) as e:
        stub.ClockSynced(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == "duration (seconds:1 nanos:-5) has seconds and nanos with different signs"
    # nobody answers: no reply within the query's 5 s
    silent = fake_ntp(silent=True)
    with pytest.raises(grpc.RpcError) as e:
        clock_synced(stub, silent.address, 1)
    assert e.value.code() == grpc.StatusCode.UNKNOWN
    assert e.value.details().startswith("query ntp host %s: " % silent.address)
    assert silent.requests == 1
    with pytest.raises(grpc.RpcError) as e:
        clock_synced(stub, "no-such-host.invalid", 1)
    assert e.value.details().startswith("query ntp host no-such-host.invalid: lookup no-such-host.invalid")
    # the node still serves
    assert clock_synced(stub, fake_ntp().address, 5).synced


def test_readiness_check_is_ok(gitaly_node):
    resp = gitaly_node.stub("ServerService").ReadinessCheck(pb("server").ReadinessCheckRequest())
    assert resp.WhichOneof("Result") == "ok_response"
