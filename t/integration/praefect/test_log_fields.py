"""The JSON fields of the per-call log line, on praefect and on the gitaly node behind it, after a
real call with a correlation id, a client name and a deadline (docs/technical/logging.md)."""
import json
import os
import time

from praefect_itest import Cluster, wait_for
from gitaly_itest import pb

from test_praefect import create_repo


def finished(log, method):
    for line in log.splitlines():
        if line.startswith("{"):
            e = json.loads(line)
            if e.get("msg") == "finished call" and e.get("grpc.method") == method:
                return e
    return None


def line_of(log, entry):
    """The raw line an entry was parsed from (to see a key is not written twice)."""
    for line in log.splitlines():
        if line.startswith("{") and json.loads(line) == entry:
            return line
    return ""


def test_a_call_is_logged_with_upstreams_field_names(tmp_path):
    cluster = Cluster(tmp_path / "cluster")
    try:
        create_repo(cluster, "log.git")
        repo = cluster.praefect.repo("log.git", gl_repository="project-7")
        before = int(time.time())
        cluster.praefect.stub("RepositoryService").HasLocalBranches(
            pb("repository").HasLocalBranchesRequest(repository=repo), timeout=10,
            metadata=(("x-gitlab-correlation-id", "corr-123"), ("client_name", "rails-test"),
                      ("deadline_type", "regular")))
        md = cluster.praefect.metadata("log.git")
        def node_log():
            # the read goes to one up-to-date node, whichever
            return "\n".join(n.log() for n in cluster.nodes.values())
        for daemon, log in (("praefect", cluster.praefect.log), ("node", node_log)):
            e = wait_for(lambda: finished(log(), "HasLocalBranches"), what="the %s's call log line" % daemon)
            assert e["grpc.service"] == "gitaly.RepositoryService", e
            assert e["grpc.request.fullMethod"] == "/gitaly.RepositoryService/HasLocalBranches", e
            assert e["grpc.code"] == "OK" and isinstance(e["grpc.time_ms"], float), e
            assert e["correlation_id"] == "corr-123", e
            assert e["grpc.meta.client_name"] == "rails-test", e
            assert e["grpc.meta.deadline_type"] == "regular", e
            assert e["system"] == "grpc" and e["span.kind"] == "server", e
            assert e["level"] == "info" and e["msg"] == "finished call" and e["time"].endswith("Z"), e
            assert isinstance(e["pid"], int) and e["pid"] > 0, e
            assert '"pid"' not in line_of(log(), e) .replace('"pid"', "", 1), "pid written twice"
            start = time.strptime(e["grpc.start_time"], "%Y-%m-%dT%H:%M:%SZ")
            assert before - 1 <= int(time.mktime(start) - time.timezone) <= int(time.time()) + 1, e
        # the node sees the rewritten repository and its gl_repository
        assert e["grpc.request.glRepository"] == "project-7", e
        assert e["grpc.request.repoStorage"] in cluster.nodes, e
    finally:
        cluster.stop()
