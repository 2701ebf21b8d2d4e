#!/usr/bin/env python3
"""Routed accessor calls with the PostgreSQL store and 1, 2, 3 praefects, next to SQLite with one.

Three gitaly nodes; praefect with SQLite, and praefects A, B, C on one PostgreSQL database
(docs/technical/multi-praefect.md), each group behind its own HAProxy frontend (TCP, round robin
over connections). Every scenario gets the same load: LOADERS bench/unary-load processes (one
HTTP/2 connection each, so HAProxy spreads them over the praefects) keeping CONCURRENCY calls of
RefService/FindDefaultBranchName in flight each, for BENCH_SECONDS. Printed per scenario: calls/s
(summed), p50 (the median of the loaders' p50s) and p99 (the largest), the ratio to SQLite, and per
routed call: the database's committed transactions (pg_stat_database xact_commit, background work
included; the idle rate is printed) and its reads of a repository (index and sequential scans of
`repositories` in pg_stat_user_tables, which the idle cluster does not touch).

usage: /usr/bin/python3 bench/multi-praefect.py
env: BUILD_DIR (default build), BENCH_SECONDS (5), CONCURRENCY (8), LOADERS (3), KEEP=1
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
os.environ.setdefault("BUILD_DIR", os.path.join(ROOT, "build"))
sys.path.insert(0, os.path.join(ROOT, "t/integration"))
sys.path.insert(0, os.path.join(ROOT, "t/integration/gitaly"))
sys.path.insert(0, os.path.join(ROOT, "t/integration/praefect"))

from pg_server import PgServer  # noqa: E402
from praefect_itest import Cluster, Praefect, PRAEFECT_TOKEN, wait_for  # noqa: E402
from gitaly_itest import BUILD, pb  # noqa: E402
from test_praefect import create_repo, replicas_in_sync  # noqa: E402

SECS = float(os.environ.get("BENCH_SECONDS", "5"))
CONC = int(os.environ.get("CONCURRENCY", "8"))
LOADERS = int(os.environ.get("LOADERS", "3"))
METHOD = "/gitaly.RefService/FindDefaultBranchName"
REPO = "bench/project.git"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def tcp_port(praefect):
    import re
    m = re.search(r"listening on (?:tcp://)?127\.0\.0\.1:(\d+)", praefect.log())
    return int(m.group(1))


def haproxy(tmp, groups):
    """One frontend per group of praefects; returns the process and {group: port}."""
    ports = {name: free_port() for name in groups}
    lines = ["global", "  maxconn 1000", "defaults", "  mode tcp", "  timeout connect 2s",
             "  timeout client 120s", "  timeout server 120s"]
    for name, praefects in groups.items():
        lines += ["frontend f_%s" % name, "  bind 127.0.0.1:%d" % ports[name], "  default_backend b_%s" % name,
                  "backend b_%s" % name, "  balance roundrobin"]
        lines += ["  server p%d 127.0.0.1:%d" % (i, tcp_port(p)) for i, p in enumerate(praefects)]
    cfg = os.path.join(tmp, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write("\n".join(lines) + "\n")
    proc = subprocess.Popen(["haproxy", "-f", cfg, "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for port in ports.values():
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), 1).close() or True, what="haproxy")
    return proc, ports


def load(port, body):
    """(calls/s summed, median p50, largest p99, errors)."""
    procs = [subprocess.Popen([os.path.join(BUILD, "bench", "unary-load"), "tcp://127.0.0.1:%d" % port, METHOD,
                               body, str(SECS), str(CONC), PRAEFECT_TOKEN], stdout=subprocess.PIPE, text=True)
             for _ in range(LOADERS)]
    rows = []
    for p in procs:
        out, _ = p.communicate(timeout=SECS + 60)
        rate, p50, p99, err = out.split()
        rows.append((float(rate), float(p50), float(p99), int(err)))
    rate = sum(r[0] for r in rows)
    p50 = sorted(r[1] for r in rows)[len(rows) // 2]
    p99 = max(r[2] for r in rows)
    errors = sum(r[3] for r in rows)
    return rate, p50, p99, errors


def handled(praefects):
    """FindDefaultBranchName calls the praefects finished (grpc_server_handled_total on their /metrics)."""
    import re
    import urllib.request
    n = 0
    for p in praefects:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % p.metrics_port, timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("grpc_server_handled_total{") and 'grpc_method="FindDefaultBranchName"' in line:
                    n += float(line.rsplit(" ", 1)[1])
    return n


def with_metrics(p):
    p.metrics_port = free_port()
    with open(p.config_path) as f:
        text = f.read()
    with open(p.config_path, "w") as f:
        f.write('prometheus_listen_addr = "127.0.0.1:%d"\n' % p.metrics_port + text)
    return p


def counters(pg, db):
    """(transactions committed in the database, scans of the repositories table): a read of a repository by
    path is one index scan of it; the idle cluster's background work (health records and votes, the queue)
    does not touch that table."""
    time.sleep(2.5)   # backends report their counts at most once a second
    out = pg.psql(db, "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),"
                      " (SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables"
                      "  WHERE relname = 'repositories')").stdout.strip().split("|")
    return int(out[0]), int(out[1])


def main():
    if not shutil.which("haproxy"):
        sys.exit("haproxy is not installed (tools/deps.sh)")
    subprocess.run(["ninja", "-C", BUILD, "bench/unary-load", "praefect/praefect", "gitaly/gitaly"], check=True,
                   stdout=subprocess.DEVNULL)
    tmp = tempfile.mkdtemp(prefix="bench-multi-praefect-")
    pg = PgServer()
    db = pg.create_database()
    lines = pg.database_config(db)
    cluster = Cluster(tmp, database=lines, start=False)   # praefect A on PostgreSQL (migrates), three nodes
    a = with_metrics(cluster.praefect)
    a.start()
    others, proxy = [], None
    sqlite = with_metrics(Praefect(os.path.join(tmp, "praefect-sqlite"), cluster.nodes, database=None))
    try:
        # both stores put replicas on the same nodes under @cluster/.../<id>: keep the ids apart
        pg.psql(db, "SELECT setval('repositories_repository_id_seq', 1000)")
        create_repo(cluster, REPO)
        wait_for(lambda: replicas_in_sync(cluster, REPO), timeout=60, what="replicas in sync")
        sqlite.start()
        sqlite.stub("RepositoryService").CreateRepository(
            pb("repository").CreateRepositoryRequest(repository=sqlite.repo(REPO + ".sqlite")), timeout=30)
        for name in ("praefect-b", "praefect-c"):
            others.append(with_metrics(Praefect(os.path.join(tmp, name), cluster.nodes, database=lines,
                                                migrate=False)).start())
        b, c = others
        groups = {"sqlite": [sqlite], "pg1": [a], "pg2": [a, b], "pg3": [a, b, c]}
        proxy, ports = haproxy(tmp, groups)
        bodies = {}
        for name, path in (("pg", REPO), ("sqlite", REPO + ".sqlite")):
            bodies[name] = os.path.join(tmp, name + ".bin")
            with open(bodies[name], "wb") as f:
                f.write(pb("ref").FindDefaultBranchNameRequest(repository=a.repo(path)).SerializeToString())

        print("3 gitaly nodes; %d loaders x %d calls in flight, %.0f s per run, %s through HAProxy; BUILD_DIR=%s"
              % (LOADERS, CONC, SECS, METHOD, BUILD))
        results = {}
        # the idle cluster's own transactions (3 praefects: health votes and records), per second
        t0, (x0, r0) = time.time(), counters(pg, db)
        time.sleep(SECS)
        x1, r1 = counters(pg, db)
        idle_per_s = (x1 - x0 - 1) / (time.time() - t0)
        idle_reads = r1 - r0
        for name in ("sqlite", "pg1", "pg2", "pg3"):
            x0, r0 = counters(pg, db)
            h0 = handled(groups[name])
            rate, p50, p99, errors = load(ports[name], bodies["sqlite" if name == "sqlite" else "pg"])
            x1, r1 = counters(pg, db)
            calls = handled(groups[name]) - h0
            results[name] = (rate, p50, p99, errors, (x1 - x0 - 1) / calls if calls else 0.0,
                             (r1 - r0) / calls if calls else 0.0)
        base = results["sqlite"][0]
        print()
        print("%-24s %9s %9s %9s %6s %9s %10s %10s" % ("store", "calls/s", "p50 us", "p99 us", "errors",
                                                     "vs sqlite", "xact/call", "reads/call"))
        labels = {"sqlite": "SQLite, 1 praefect", "pg1": "PostgreSQL, 1 praefect", "pg2": "PostgreSQL, 2 praefects",
                  "pg3": "PostgreSQL, 3 praefects"}
        for name, (rate, p50, p99, errors, xact, reads) in results.items():
            print("%-24s %9.0f %9.0f %9.0f %6d %8.2fx %10s %10s" % (
                labels[name], rate, p50, p99, errors, rate / base if base else 0,
                "-" if name == "sqlite" else "%.3f" % xact, "-" if name == "sqlite" else "%.3f" % reads))
        print()
        print("per call, calls counted by the praefects (grpc_server_handled_total, warm-up calls included)")
        print("xact/call: transactions committed in the database during the run per call, background included")
        print("  (the idle cluster commits %.1f/s); reads/call: repository lookups per call (idle: %d in %.0f s)"
              % (idle_per_s, idle_reads, SECS + 2.5))
    finally:
        if proxy:
            proxy.terminate()
            proxy.wait(10)
        for p in others + [sqlite]:
            p.stop()
        cluster.stop()
        pg.stop()
        if os.environ.get("KEEP") == "1":
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
