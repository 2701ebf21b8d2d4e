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
