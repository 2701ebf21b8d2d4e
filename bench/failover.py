#!/usr/bin/env python3
"""Failover time of praefect: kill the primary N times under a steady write load.

Three gitaly nodes behind praefect (the integration-test cluster). A writer
pushes a new commit through praefect in a loop; each round SIGKILLs the
repository's current primary and measures the time from the kill to the next
successful push, then restarts the node and waits until it is repaired.
Prints min / median / max next to upstream's documented RTO of 10 s.

usage: /usr/bin/python3 bench/failover.py [ROUNDS]   env: BUILD_DIR (default build)
"""
import os
import signal
import statistics
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "t/integration/gitaly"))
sys.path.insert(0, os.path.join(ROOT, "t/integration/praefect"))

from praefect_itest import Cluster, wait_for  # noqa: E402
from test_praefect import create_repo, push, replicas_in_sync, work_repo  # noqa: E402
from test_failover import commit_on, try_push  # noqa: E402


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    tmp = tempfile.mkdtemp(prefix="bench-failover-")
    cluster = Cluster(tmp)
    times = []
    try:
        create_repo(cluster, "bench.git")
        src = work_repo(tmp, branches=("main",), tags=())
        push(cluster, src, "bench.git", "main")
        wait_for(lambda: replicas_in_sync(cluster, "bench.git"), what="replication")
        n = 0
        for r in range(rounds):
            n += 1
            commit_on(src, n)
            assert try_push(cluster, src, "bench.git")
            wait_for(lambda: replicas_in_sync(cluster, "bench.git"), what="replication")
            primary = cluster.praefect.metadata("bench.git").primary
            n += 1
            commit_on(src, n)
            cluster.nodes[primary].proc.send_signal(signal.SIGKILL)
            t0 = time.time()
            while not try_push(cluster, src, "bench.git"):
                if time.time() - t0 > 30:
                    raise SystemExit("round %d: no write succeeded within 30 s" % (r + 1))
            took = time.time() - t0
            times.append(took)
            print("round %2d: killed %s, first successful write after %4.0f ms" % (r + 1, primary, took * 1000))
            cluster.nodes[primary].proc.wait()
            cluster.nodes[primary].start()
            wait_for(lambda: replicas_in_sync(cluster, "bench.git"), timeout=60, what="repair")
    finally:
        cluster.stop()
    print()
    print("failover (kill -> first successful write), %d rounds:" % len(times))
    print("  min %6.0f ms   median %6.0f ms   max %6.0f ms" % (
        min(times) * 1000, statistics.median(times) * 1000, max(times) * 1000))
    print("  upstream documented RTO: 10000 ms -> median is %.0fx faster" % (10.0 / statistics.median(times)))


if __name__ == "__main__":
    main()
