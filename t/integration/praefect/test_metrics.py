"""Prometheus metrics of praefect and its gitaly nodes, scraped by a real Prometheus.

The test starts Debian's prometheus with its own storage directory, a scrape
interval of 1 s and one job per daemon (praefect's /metrics and /db_metrics,
each node's /metrics), then drives the cluster and reads the series back
through Prometheus's HTTP API.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from praefect_itest import NODE_TOKEN, Praefect
from gitaly_itest import GitalyNode, git, make_bare_repo, pb

from test_praefect import create_repo, gitaly_ssh_env

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepend(path, line):
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(line + "\n" + text)


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


class Prometheus:
    def __init__(self, workdir, jobs):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.port = free_port()
        lines = ["global:", "  scrape_interval: 1s", "  scrape_timeout: 1s", "scrape_configs:"]
        for name, (path, target) in jobs.items():
            lines += ["  - job_name: %s" % name, "    metrics_path: %s" % path,
                      "    static_configs:", "      - targets: ['%s']" % target]
        self.config = os.path.join(workdir, "prometheus.yml")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log = open(os.path.join(workdir, "prometheus.log"), "wb")
        self.proc = subprocess.Popen([PROMETHEUS, "--config.file=" + self.config,
                                      "--storage.tsdb.path=" + os.path.join(workdir, "data"),
                                      "--web.listen-address=127.0.0.1:%d" % self.port],
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if http_get("http://127.0.0.1:%d/-/ready" % self.port)[0] == 200:
                    return
            except OSError:
                pass
            assert self.proc.poll() is None, open(os.path.join(workdir, "prometheus.log")).read()
            time.sleep(0.1)
        raise RuntimeError("prometheus did not become ready")

    def query(self, expr):
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (self.port, urllib.parse.urlencode({"query": expr}))
        body = json.loads(http_get(url)[2])
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, expr):
        """The sum of an instant query's samples, or None when it has none."""
        res = self.query(expr)
        return sum(float(r["value"][1]) for r in res) if res else None

    def wait_value(self, expr, pred, what, timeout=60):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = self.value(expr)
            if last is not None and pred(last):
                return last
            time.sleep(0.5)
        raise AssertionError("%s: %s stayed %r" % (what, expr, last))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def monitored(tmp_path):
    """Three gitaly nodes and praefect, each with prometheus_listen_addr, and a Prometheus scraping them."""
    tmp = str(tmp_path)
    nodes, jobs, ports = {}, {}, {}
    for i in range(1, 4):
        name = "gitaly-%d" % i
        node = GitalyNode(os.path.join(tmp, name), storages=(name,), token=NODE_TOKEN)
        ports[name] = free_port()
        prepend(node.config_path, 'prometheus_listen_addr = "127.0.0.1:%d"' % ports[name])
        nodes[name] = node.start()
        jobs[name] = ("/metrics", "127.0.0.1:%d" % ports[name])
    praefect = Praefect(os.path.join(tmp, "praefect"), nodes,
                        extra='\n[prometheus]\ngrpc_latency_buckets = [0.001, 0.01, 0.1, 1, 10]\n')
    ports["praefect"] = free_port()
    prepend(praefect.config_path, 'prometheus_listen_addr = "127.0.0.1:%d"' % ports["praefect"])
    praefect.start()
    jobs["praefect"] = ("/metrics", "127.0.0.1:%d" % ports["praefect"])
    jobs["praefect_db"] = ("/db_metrics", "127.0.0.1:%d" % ports["praefect"])
    prom = Prometheus(os.path.join(tmp, "prometheus"), jobs)
    yield praefect, nodes, prom, ports
    prom.stop()
    praefect.stop()
    for n in nodes.values():
        n.stop()


def push(praefect, src, relative_path, refspec):
    git("push", "ssh://gitaly/repo.git", refspec, cwd=src,
        env=gitaly_ssh_env(praefect, relative_path, "receive-pack"))


def test_endpoints_serve_the_text_format_apart_from_grpc(monitored):
    praefect, nodes, prom, ports = monitored
    praefect.stub("ServerService").ServerInfo(pb("server").ServerInfoRequest(), timeout=10)
    with pytest.raises(Exception):
        praefect.stub("ServerService", secret="wrong").ServerInfo(pb("server").ServerInfoRequest(), timeout=10)
    status, ctype, body = http_get("http://127.0.0.1:%d/metrics" % ports["praefect"])
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    assert "# TYPE grpc_server_handled_total counter" in body
    # counted before authentication, as upstream's interceptor order has it
    for code in ("OK", "PermissionDenied"):
        assert 'grpc_server_handled_total{grpc_code="%s",grpc_method="ServerInfo",grpc_service="gitaly.ServerService",' \
               'grpc_type="unary"} 1\n' % code in body
    assert 'grpc_server_started_total{grpc_method="ServerInfo",grpc_service="gitaly.ServerService",' \
           'grpc_type="unary"} 2\n' in body
    # upstream pre-registers the change types on the replication histograms
    assert 'gitaly_praefect_replication_latency_bucket{type="update",le="+Inf"} 0' in body
    status, _, body = http_get("http://127.0.0.1:%d/db_metrics" % ports["praefect"])
    assert 'gitaly_praefect_unavailable_repositories{virtual_storage="default"} 0' in body
    status, _, body = http_get("http://127.0.0.1:%d/metrics" % ports["gitaly-1"])
    assert "# TYPE gitaly_commands_running gauge" in body
    with pytest.raises(urllib.error.HTTPError) as e:
        http_get("http://127.0.0.1:%d/nothing" % ports["gitaly-1"])
    assert e.value.code == 404
    # every target is up for Prometheus
    prom.wait_value('sum(up)', lambda v: v == 5, "all five targets scraped")
    # praefect reconciles once at start-up
    prom.wait_value('gitaly_praefect_reconciliation_scheduling_seconds_count', lambda v: v >= 1,
                    "a reconciliation run timed")


def test_a_push_shows_up_in_transactions_calls_and_replication(monitored, tmp_path):
    praefect, nodes, prom, ports = monitored
    prom.wait_value('sum(up)', lambda v: v == 5, "all five targets scraped")
    handled = 'sum(grpc_server_handled_total{job="praefect",grpc_service="gitaly.SSHService",' \
              'grpc_method="SSHReceivePack",grpc_code="OK",grpc_type="bidi_stream"})'
    committed = 'sum(gitaly_praefect_transactions_total{action="committed"})'
    assert prom.value(handled) is None
    create_repo(type("C", (), {"praefect": praefect})(), "metrics.git")
    src = make_bare_repo(os.path.join(str(tmp_path), "src.git"), branches=("main", "feature"))
    push(praefect, src, "metrics.git", "main")

    assert prom.wait_value(handled, lambda v: v >= 1, "praefect counted the push") == 1
    # the nodes counted the same call, as gitaly's own service
    prom.wait_value('sum(grpc_server_handled_total{job=~"gitaly-.*",grpc_method="SSHReceivePack",'
                    'grpc_code="OK",grpc_type="bidi_stream"})', lambda v: v >= 1, "the primary counted the push")
    first = prom.wait_value(committed, lambda v: v >= 1, "votes committed")
    prom.wait_value('sum(gitaly_praefect_transactions_total{action="registered"})', lambda v: v >= 3,
                    "three voters registered")
    # the votes arrived over the backchannel, counted as upstream counts them
    prom.wait_value('sum(grpc_server_handled_total{job="praefect",grpc_service="gitaly.RefTransaction",'
                    'grpc_method="VoteTransaction",grpc_code="OK",grpc_type="unary"})', lambda v: v >= 3,
                    "VoteTransaction calls counted")
    prom.wait_value('sum(gitaly_praefect_subtransactions_per_transaction_total_count)', lambda v: v >= 1,
                    "a finished transaction observed")
    # and each node timed its votes' round trips to praefect, on its grpc_latency_buckets as upstream
    prom.wait_value('sum(gitaly_hook_transaction_voting_delay_seconds_count{job=~"gitaly-.*"})', lambda v: v >= 3,
                    "the nodes timed their votes")
    # the nodes keep the default buckets: eleven and +Inf
    assert prom.value('count(gitaly_hook_transaction_voting_delay_seconds_bucket{job="gitaly-1"})') == 12
    prom.wait_value('sum(gitaly_praefect_voters_per_transaction_total_bucket{le="3"})', lambda v: v >= 1,
                    "a transaction with three voters")
    prom.wait_value('sum(grpc_server_handling_seconds_count{job="praefect",grpc_method="SSHReceivePack"})',
                    lambda v: v >= 1, "latency histogram with the configured buckets")
    assert prom.value('count(grpc_server_handling_seconds_bucket{job="praefect",grpc_method="SSHReceivePack"})') \
        == 6  # five configured buckets and +Inf
    assert prom.value('sum(gitaly_praefect_method_types{method_type="mutator"})') >= 2

    push(praefect, src, "metrics.git", "feature")
    prom.wait_value(handled, lambda v: v >= 2, "praefect counted the second push")
    prom.wait_value(committed, lambda v: v > first, "the second push committed more votes")

    # reads are spread and counted by storage
    ref = pb("ref")
    stub = praefect.stub("RefService")
    for _ in range(6):
        list(stub.FindAllBranches(ref.FindAllBranchesRequest(repository=praefect.repo("metrics.git")), timeout=10))
    prom.wait_value('sum(gitaly_praefect_read_distribution{virtual_storage="default"})', lambda v: v >= 6,
                    "reads counted by storage")
    prom.wait_value('sum(gitaly_catfile_cache_total{type=~"hit|miss"})', lambda v: v >= 1,
                    "a node leased cat-file processes")
    prom.wait_value('sum(gitaly_praefect_node_latency_count)', lambda v: v >= 3, "health checks timed")


def test_stopped_nodes_show_up_as_unavailable_repositories(monitored, tmp_path):
    praefect, nodes, prom, ports = monitored
    unavailable = 'gitaly_praefect_unavailable_repositories{job="praefect_db",virtual_storage="default"}'
    prom.wait_value(unavailable, lambda v: v == 0, "nothing unavailable at first")
    create_repo(type("C", (), {"praefect": praefect})(), "down.git")
    for node in nodes.values():
        node.stop()
    prom.wait_value(unavailable, lambda v: v == 1, "the repository counted as unavailable")
    prom.wait_value('sum(gitaly_praefect_node_last_healthcheck_up)', lambda v: v == 0, "every node seen down")
    for node in nodes.values():
        node.start()
    prom.wait_value(unavailable, lambda v: v == 0, "available again once the nodes are back")


def test_a_stopped_secondary_queues_replication_that_runs_when_it_is_back(monitored, tmp_path):
    praefect, nodes, prom, ports = monitored
    create_repo(type("C", (), {"praefect": praefect})(), "late.git")
    src = make_bare_repo(os.path.join(str(tmp_path), "src.git"), branches=("main", "feature"))
    push(praefect, src, "late.git", "main")
    md = praefect.metadata("late.git")
    secondary = next(r.storage for r in md.replicas if r.storage != md.primary)
    nodes[secondary].stop()
    prom.wait_value('gitaly_praefect_node_last_healthcheck_up{gitaly_storage="%s"}' % secondary,
                    lambda v: v == 0, "the secondary seen down")
    push(praefect, src, "late.git", "feature")
    depth = 'sum(gitaly_praefect_replication_queue_depth{job="praefect_db",target_node="%s"})' % secondary
    prom.wait_value(depth, lambda v: v >= 1, "a job queued for the stopped secondary")
    latency = 'sum(gitaly_praefect_replication_latency_count{type="update"})'
    before = prom.value(latency)
    nodes[secondary].start()
    prom.wait_value(latency, lambda v: v > before, "the job ran and its latency was observed")
    prom.wait_value('sum(gitaly_praefect_replication_delay_count{type="update"})', lambda v: v >= 1,
                    "its delay observed")
    # done jobs leave the queue
    prom.wait_value('sum(gitaly_praefect_replication_queue_depth{job="praefect_db",target_node="%s"}) or vector(0)'
                    % secondary, lambda v: v == 0, "the queue drained")
    prom.wait_value('sum(gitaly_praefect_replication_jobs) or vector(0)', lambda v: v == 0, "no job in flight")
    # the secondary's own limiter let ReplicateRepository through (upstream's default limit of one)
    prom.wait_value('sum(gitaly_concurrency_limiting_acquiring_seconds_count{job="%s",'
                    'grpc_method="ReplicateRepository"})' % secondary, lambda v: v >= 1,
                    "the secondary's ReplicateRepository limiter counted")
