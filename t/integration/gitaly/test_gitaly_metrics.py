"""gitaly's /metrics: the gRPC series, running commands and the [[concurrency]] limiter,
read straight from the endpoint as a scraper would (the Prometheus-driven test of the
whole cluster is t/integration/praefect/test_metrics.py)."""
import os
import re
import socket
import subprocess
import time
import urllib.request

import grpc
import pytest

from gitaly_itest import BUILD, GitalyNode, make_bare_repo, pb, wait_for
from test_concurrency import UploadPack, limits


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_metrics(node, addr):
    with open(node.config_path) as f:
        text = f.read()
    with open(node.config_path, "w") as f:
        f.write('prometheus_listen_addr = "%s"\n' % addr + text)
    return node


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def scrape(port):
    """{(name, frozenset of label pairs): value} from one GET /metrics."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        body = r.read().decode()
    out = {}
    for line in body.splitlines():
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        labels = frozenset(re.findall(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(samples, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@pytest.fixture
def node(tmp_path):
    port = free_port()
    n = with_metrics(GitalyNode(str(tmp_path / "n"), extra_config=limits(max_per_repo=1, max_queue_size=1)),
                     "127.0.0.1:%d" % port).start()
    make_bare_repo(n.repo_path("a.git"))
    n.metrics_port = port
    yield n
    n.stop()


LIMIT = dict(system="gitaly", grpc_service="gitaly.SSHService", grpc_method="SSHUploadPack")


def test_the_limiter_and_the_calls_it_refuses_are_counted(node):
    first = UploadPack(node, "a.git")
    assert first.advertised(10)
    waiting = UploadPack(node, "a.git")
    wait_for(lambda: value(scrape(node.metrics_port), "gitaly_concurrency_limiting_queued", **LIMIT) == 1,
             what="the second call queued")
    s = scrape(node.metrics_port)
    assert value(s, "gitaly_concurrency_limiting_in_progress", **LIMIT) == 1
    # the holder runs git upload-pack, a child process
    assert value(s, "gitaly_commands_running") >= 1
    refused = UploadPack(node, "a.git").wait(10)
    assert refused.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    waiting.end()
    first.end()
    assert first.ok() and waiting.ok()

    s = scrape(node.metrics_port)
    assert value(s, "gitaly_requests_dropped_total", reason="max_size", **LIMIT) == 1
    assert value(s, "gitaly_concurrency_limiting_in_progress", **LIMIT) == 0
    assert value(s, "gitaly_concurrency_limiting_queued", **LIMIT) == 0
    # two calls got a slot: one at once, one after waiting
    assert value(s, "gitaly_concurrency_limiting_acquiring_seconds_count", **LIMIT) == 2
    assert value(s, "gitaly_concurrency_limiting_acquiring_seconds_bucket", le="+Inf", **LIMIT) == 2

    call = dict(grpc_service="gitaly.SSHService", grpc_method="SSHUploadPack", grpc_type="bidi_stream")
    assert value(s, "grpc_server_started_total", **call) == 3
    assert value(s, "grpc_server_handled_total", grpc_code="OK", **call) == 2
    assert value(s, "grpc_server_handled_total", grpc_code="ResourceExhausted", **call) == 1
    assert value(s, "grpc_server_handling_seconds_count", **call) == 3
    # each call sent its request and a flush; the refused one only its request
    assert value(s, "grpc_server_msg_received_total", **call) >= 5
    assert value(s, "grpc_server_msg_sent_total", **call) >= 2
    wait_for(lambda: value(scrape(node.metrics_port), "gitaly_commands_running") == 0,
             what="upload-pack processes gone")
    # Go's process series, from /proc of the gitaly process
    assert value(s, "process_resident_memory_bytes") > 0
    assert value(s, "process_open_fds") > 3
    assert abs(value(s, "process_start_time_seconds") - time.time()) < 3600


def test_reads_count_cat_file_processes(node):
    stub = node.stub("RefService")
    for _ in range(3):
        list(stub.FindAllBranches(pb("ref").FindAllBranchesRequest(repository=node.repo("a.git")), timeout=10))
    s = scrape(node.metrics_port)
    hits, misses = value(s, "gitaly_catfile_cache_total", type="hit"), value(s, "gitaly_catfile_cache_total", type="miss")
    assert misses >= 1 and hits + misses >= 3
    assert value(s, "gitaly_catfile_processes_total") == misses
    # branches are read as commit objects; the process went back to the cache
    assert value(s, "gitaly_catfile_lookups_total", type="commit") >= 3
    assert value(s, "gitaly_catfile_cache_members", type="object_reader") >= 1
    assert value(s, "gitaly_catfile_cache_members", type="object_info_reader") == 0
    unary = dict(grpc_service="gitaly.RefService", grpc_method="FindAllBranches", grpc_type="server_stream")
    assert value(s, "grpc_server_handled_total", grpc_code="OK", **unary) == 3


def test_empty_latency_buckets_leave_the_handling_histogram_out(tmp_path):
    port = free_port()
    n = with_metrics(GitalyNode(str(tmp_path / "n"), extra_config="\n[prometheus]\ngrpc_latency_buckets = []\n"),
                     "127.0.0.1:%d" % port).start()
    try:
        n.stub("ServerService").ServerInfo(pb("server").ServerInfoRequest(), timeout=10)
        s = scrape(port)
        assert value(s, "grpc_server_handled_total", grpc_method="ServerInfo", grpc_code="OK") == 1
        assert not [k for k in s if k[0].startswith("grpc_server_handling_seconds")]
    finally:
        n.stop()


@pytest.mark.parametrize("addr,extra,message", [
    ("127.0.0.1:%d", "\n[prometheus]\ngrpc_latency_buckets = [1.0, 0.5]\n", "bad order: expected asc"),
    ("127.0.0.1:%d", '\n[prometheus]\nscrape_timeout = "soon"\n', '"scrape_timeout"'),
    ("nowhere", "", 'invalid prometheus listen address "nowhere"'),
])
def test_a_bad_prometheus_setup_stops_start_up(tmp_path, addr, extra, message):
    if "%d" in addr:
        addr = addr % free_port()
    node = with_metrics(GitalyNode(str(tmp_path / "bad"), extra_config=extra), addr)
    r = subprocess.run([os.path.join(BUILD, "gitaly", "gitaly"), node.config_path],
                       capture_output=True, timeout=10)
    err = r.stderr.decode()
    assert r.returncode != 0
    assert message in err, err


def test_metrics_keep_being_served_across_a_sighup_upgrade(tmp_path):
    """The new process binds the metrics port while the old one still holds it (SO_REUSEPORT)."""
    from gitaly_itest import alive, read_pid
    import signal

    port = free_port()
    node = with_metrics(GitalyNode(str(tmp_path / "n")), "127.0.0.1:%d" % port)
    pid_file = str(tmp_path / "gitaly.pid")
    log = open(node.log_path, "ab")
    env = dict(os.environ, GITALY_PID_FILE=pid_file)
    env.pop("GITALY_UPGRADES_ENABLED", None)
    wrapper = subprocess.Popen([os.path.join(BUILD, "gitaly-wrapper", "gitaly-wrapper"),
                                os.path.join(BUILD, "gitaly", "gitaly"), node.config_path],
                               env=env, stdout=log, stderr=log)
    try:
        old = wait_for(lambda: read_pid(pid_file), what="the pid file")
        wait_for(lambda: "starting prometheus listener" in node.log(), what="the metrics listener")
        assert "# TYPE gitaly_commands_running gauge" in urllib.request.urlopen(
            "http://127.0.0.1:%d/metrics" % port, timeout=10).read().decode()
        wrapper.send_signal(signal.SIGHUP)
        new = wait_for(lambda: read_pid(pid_file) != old and alive(read_pid(pid_file)) and read_pid(pid_file),
                       what="the new gitaly")
        wait_for(lambda: not alive(old), what="the old gitaly to exit")
        assert node.log().count("starting prometheus listener") == 2, node.log()
        s = scrape(port)
        assert ("gitaly_commands_running", frozenset()) in s
        assert "cannot listen" not in node.log()
        assert alive(new)
    finally:
        wrapper.send_signal(signal.SIGTERM)
        try:
            wrapper.wait(20)
        except subprocess.TimeoutExpired:
            wrapper.kill()
        log.close()
        for p in (read_pid(pid_file),):
            if p and alive(p):
                os.kill(p, signal.SIGKILL)


def test_a_second_daemon_on_the_same_metrics_port_does_not_start(node, tmp_path):
    """SO_REUSEPORT is for the upgrade hand-over only: a port another gitaly serves is refused."""
    other = with_metrics(GitalyNode(str(tmp_path / "other")), "127.0.0.1:%d" % node.metrics_port)
    r = subprocess.run([os.path.join(BUILD, "gitaly", "gitaly"), other.config_path],
                       capture_output=True, timeout=10)
    err = r.stderr.decode()
    assert r.returncode != 0
    assert 'cannot listen on "127.0.0.1:%d": Address already in use' % node.metrics_port in err, err
    assert value(scrape(node.metrics_port), "gitaly_commands_running") == 0
