#!/usr/bin/python3
"""Praefect with many tracked repositories: start-up, memory, idle CPU, routed calls/s.

For each size N the tracking store is filled directly (the schema comes from
`praefect sql-migrate`, the rows from one transaction of prepared inserts):
N repositories of virtual storage "default", three replicas each on gitaly-1..3,
all at generation 1, primary gitaly-1, no assignment rows (every configured
storage is assigned). Then praefect starts against three real gitaly nodes and
the script measures, per praefect binary given:

  listen s   start to the "listening on" log line
  start CPU  user+system CPU seconds praefect used by then (on a loaded machine
             the honest start-up figure: wall time there is mostly waiting for a core)
  loaded s   start to the "loaded N repositories" log line
  RSS MiB    resident set after the settle; B/replica is RSS / (3 N)
  idle CPU   user+system over --idle seconds (30) with no client, % of one core, taken
             --settle seconds (20) after listening (the first reconciler run and
             metrics walk after start-up are not idle)
  exists/s   RepositoryExists calls/s from one Python client, random repositories
             among the N (praefect answers these from its records, no node is called)
  (calls: praefect's CPU microseconds per call are net of its idle CPU rate)
  routed/s   FindDefaultBranchName calls/s, Python client, random repositories
             among the N: praefect looks the record up, picks a replica and forwards
             the call to that node, which answers NOT_FOUND (the repositories are
             not on disk; NOT_FOUND is not a sign of corruption, so nothing else
             happens); every answer is checked to be that NOT_FOUND

and prints a table with each column's ratio to the smallest size of the same binary.

usage: bench/scale.py [--sizes 1000,100000,1000000] [--bin NAME=PATH ...] [--store sqlite|postgres]
                      [--settle 20] [--idle 30] [--seconds 3]
env:   BUILD_DIR (default build) for gitaly and the default praefect, KEEP=1 keeps the scratch dir.
See bench/README.md.
"""
import argparse
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "t", "integration", "gitaly"))
sys.path.insert(0, os.path.join(ROOT, "t", "integration"))
from gitaly_itest import auth_md, pb, pb_grpc  # noqa: E402
import grpc  # noqa: E402

STORAGES = ["gitaly-1", "gitaly-2", "gitaly-3"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


# Paths shaped like hashed storage's and praefect's own (same lengths), made from
# the id so that SQL can write them without a SHA-256: relative path
# "@hashed/<id%256>/<id/256%256>/<56 digit id><8 hex id>.git", replica path
# "@cluster/repositories/<same two>/<id>".
def rel_path(i):
    return "@hashed/%02x/%02x/%056d%08x.git" % (i % 256, i // 256 % 256, i, i)


def replica_path(i):
    return "@cluster/repositories/%02x/%02x/%d" % (i % 256, i // 256 % 256, i)


SQL_REL = "printf('@hashed/%02x/%02x/%056d%08x.git', i % 256, i / 256 % 256, i, i)"
SQL_REPLICA = "printf('@cluster/repositories/%02x/%02x/%d', i % 256, i / 256 % 256, i)"


def fill_sqlite(db, n):
    # one transaction, one statement per table over a generated series: the rows never leave SQLite
    c = sqlite3.connect(db)
    c.execute("PRAGMA synchronous=OFF")
    c.execute("BEGIN")
    # the migrations' explicit indexes are dropped and made again after the rows: one sort each
    # instead of a million random inserts (the constraints' own indexes stay)
    indexes = [r[0] for r in c.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                                       "AND tbl_name IN ('repositories', 'storage_repositories')")]
    for name, in list(c.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                                "AND tbl_name IN ('repositories', 'storage_repositories')")):
        c.execute('DROP INDEX "%s"' % name)
    series = "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %d) " % n
    c.execute(series + "INSERT INTO repositories (repository_id, virtual_storage, relative_path, generation, "
              "\"primary\", replica_path) SELECT i, 'default', %s, 1, 'gitaly-1', %s FROM s" % (SQL_REL, SQL_REPLICA))
    for st in STORAGES:
        c.execute("INSERT INTO storage_repositories (virtual_storage, relative_path, storage, generation, "
                  "repository_id) SELECT 'default', relative_path, ?, 1, repository_id FROM repositories "
                  "ORDER BY repository_id", (st,))
    for sql in indexes:
        c.execute(sql)
    c.execute("UPDATE sequences SET value = ? WHERE name = 'repositories_repository_id_seq'", (n,))
    c.execute("COMMIT")
    c.close()


def fill_postgres(pg, dbname, n, work):
    sql = os.path.join(work, "fill.sql")
    with open(sql, "w") as f:
        f.write("BEGIN;\n"
                "INSERT INTO repositories (repository_id, virtual_storage, relative_path, generation, \"primary\", "
                "replica_path) SELECT i, 'default', %s, 1, 'gitaly-1', %s FROM generate_series(1, %d) AS i;\n"
                "INSERT INTO storage_repositories (virtual_storage, relative_path, storage, generation, repository_id) "
                "SELECT 'default', relative_path, s, 1, repository_id FROM repositories, "
                "unnest(ARRAY['gitaly-1', 'gitaly-2', 'gitaly-3']) AS s;\n"
                "SELECT setval('repositories_repository_id_seq', %d);\nCOMMIT;\nANALYZE;\n"
                % (PG_REL, PG_REPLICA, n, n))
    pg.psql_file(dbname, sql)


# the same paths in PostgreSQL's terms
PG_REL = ("'@hashed/' || lpad(to_hex(i % 256), 2, '0') || '/' || lpad(to_hex(i / 256 % 256), 2, '0') || '/' "
          "|| lpad(i::text, 56, '0') || lpad(to_hex(i), 8, '0') || '.git'")
PG_REPLICA = ("'@cluster/repositories/' || lpad(to_hex(i % 256), 2, '0') || '/' || lpad(to_hex(i / 256 % 256), 2, '0') "
              "|| '/' || i::text")


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Cluster:
    def __init__(self, work, build):
        self.work, self.build, self.procs, self.addr = work, build, [], {}
        binp = os.path.join(work, "bin")
        os.makedirs(binp, exist_ok=True)
        for b in ("gitaly-hooks/gitaly-hooks", "gitaly-ssh/gitaly-ssh"):
            if os.path.exists(os.path.join(build, b)):
                os.symlink(os.path.join(build, b), os.path.join(binp, os.path.basename(b)))
        for s in STORAGES:
            d = os.path.join(work, s)
            os.makedirs(os.path.join(d, "storage"))
            self.addr[s] = "127.0.0.1:%d" % free_port()
            with open(os.path.join(d, "config.toml"), "w") as f:
                f.write('listen_addr = "%s"\nbin_dir = "%s"\nruntime_dir = "%s/run"\n[[storage]]\nname = "%s"\n'
                        'path = "%s/storage"\n[auth]\ntoken = "node"\n[logging]\nlevel = "warn"\n'
                        % (self.addr[s], binp, d, s, d))
            self.procs.append(subprocess.Popen([os.path.join(build, "gitaly/gitaly"), os.path.join(d, "config.toml")],
                                               stdout=open(os.path.join(d, "log"), "w"), stderr=subprocess.STDOUT))

    def praefect_config(self, path, database_lines):
        port = free_port()
        with open(path, "w") as f:
            f.write('listen_addr = "127.0.0.1:%d"\n[auth]\ntoken = "praefect"\n[logging]\nlevel = "info"\n'
                    '[database]\n%s\n'
                    # the verifier would start verifying every never-verified replica: not idle
                    '[background_verification]\nverification_interval = "0"\n'
                    '[[virtual_storage]]\nname = "default"\n' % (port, "\n".join(database_lines)))
            for s in STORAGES:
                f.write('[[virtual_storage.node]]\nstorage = "%s"\naddress = "tcp://%s"\ntoken = "node"\n'
                        % (s, self.addr[s]))
        return "127.0.0.1:%d" % port

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait()


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_ns(pid):
    """CPU time of all of pid's threads, ns (schedstat: finer than the 10 ms ticks of stat)."""
    total = 0
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def rate(fn, seconds, pid, idle):
    """
    calls/s, and praefect's CPU microseconds per call (what a loaded machine
    distorts least), net of its idle CPU (`idle`, % of a core) over the same time
    """
    n, t0, c0 = 0, time.monotonic(), cpu_ns(pid)
    while time.monotonic() - t0 < seconds:
        fn(n)
        n += 1
    dt = time.monotonic() - t0
    busy_ns = cpu_ns(pid) - c0 - idle / 100 * dt * 1e9
    return n / dt, max(busy_ns, 0) / 1000 / max(n, 1)


def measure(binary, config, target, n, work, secs, settle, idle_secs):
    log = open(os.path.join(work, "praefect.log"), "w+")
    t0 = time.monotonic()
    proc = subprocess.Popen([binary, "-config", config], stdout=log, stderr=subprocess.STDOUT)
    listen = loaded = None
    try:
        pos, buf = 0, ""
        while listen is None or loaded is None:
            if proc.poll() is not None:
                log.seek(0)
                sys.exit("praefect exited:\n" + log.read()[-3000:])
            if time.monotonic() - t0 > 600:
                sys.exit("praefect did not start in 600 s")
            log.seek(pos)
            chunk = log.read()
            pos += len(chunk)
            buf += chunk
            now = time.monotonic() - t0
            if loaded is None and re.search(r"loaded \d+ repositories", buf):
                loaded = now
            if listen is None and "listening on" in buf:
                listen = now
                start_cpu = cpu_ticks(proc.pid) / CLK_TCK
            time.sleep(0.005)
        ch = grpc.insecure_channel(target)
        grpc.channel_ready_future(ch).result(timeout=60)
        time.sleep(settle)
        rss = rss_bytes(proc.pid)
        c0, w0 = cpu_ticks(proc.pid), time.monotonic()
        time.sleep(idle_secs)
        idle = (cpu_ticks(proc.pid) - c0) / CLK_TCK / (time.monotonic() - w0) * 100
        repo = pb("shared").Repository
        rstub = pb_grpc("repository").RepositoryServiceStub(ch)
        exists_req = pb("repository").RepositoryExistsRequest
        ids = [random.randint(1, n) for _ in range(4096)]
        reqs = [exists_req(repository=repo(storage_name="default", relative_path=rel_path(i))) for i in ids]

        def exists(k):
            if not rstub.RepositoryExists(reqs[k % len(reqs)], metadata=md, timeout=10).exists:
                sys.exit("repository %d not found through praefect" % ids[k % len(ids)])
        md = auth_md("praefect")  # a v2 token: fresh for each measurement
        rate(exists, 0.5, proc.pid, idle)
        ex, ex_us = rate(exists, secs, proc.pid, idle)
        refs = pb_grpc("ref").RefServiceStub(ch)
        dreq = pb("ref").FindDefaultBranchNameRequest
        dreqs = [dreq(repository=repo(storage_name="default", relative_path=rel_path(i))) for i in ids]

        unavailable = [0]

        def routed(k):
            try:
                refs.FindDefaultBranchName(dreqs[k % len(dreqs)], metadata=md, timeout=10)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    return
                if e.code() == grpc.StatusCode.UNAVAILABLE:
                    # praefect's health checks timed out (its loop too busy to see the answers): counted
                    unavailable[0] += 1
                    return
                raise
            sys.exit("FindDefaultBranchName found repository %d on disk" % ids[k % len(ids)])
        md = auth_md("praefect")
        rate(routed, 0.5, proc.pid, idle)
        ro, ro_us = rate(routed, secs, proc.pid, idle)
        if unavailable[0]:
            print("  %d routed calls failed UNAVAILABLE (no healthy nodes)" % unavailable[0], flush=True)
        ch.close()
        return dict(listen=listen, loaded=loaded, cpu=start_cpu, rss=rss, bpr=rss / (3 * n), idle=idle, exists=ex, exists_us=ex_us, routed=ro,
                    routed_us=ro_us)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,100000,1000000")
    ap.add_argument("--bin", action="append", default=[], help="NAME=PATH of a praefect binary (repeatable)")
    ap.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--seconds", type=float, default=3.0, help="per throughput measurement")
    ap.add_argument("--settle", type=float, default=20.0, help="wait after listening before the idle window")
    ap.add_argument("--idle", type=float, default=30.0, help="length of the idle CPU window, s")
    a = ap.parse_args()
    build = os.path.realpath(os.environ.get("BUILD_DIR", os.path.join(ROOT, "build")))
    bins = [tuple(b.split("=", 1)) for b in a.bin] or [("praefect", os.path.join(build, "praefect/praefect"))]
    sizes = [int(s) for s in a.sizes.split(",")]
    # the stores live in memory when they can (a million repositories are about 1 GiB of SQLite)
    work = tempfile.mkdtemp(prefix="bench-scale-", dir="/dev/shm" if os.path.isdir("/dev/shm") else "/tmp")
    cluster = Cluster(work, build)
    pg = None
    results = {}
    try:
        if a.store == "postgres":
            from pg_server import PgServer
            pg = PgServer()
        time.sleep(0.5)
        for n in sizes:
            d = os.path.join(work, "n%d" % n)
            os.makedirs(d)
            t = time.monotonic()
            if pg:
                dbname = pg.create_database()
                dblines = pg.database_config(dbname)
            else:
                dblines = ['sqlite_path = "%s/praefect.db"' % d]
            config = os.path.join(d, "praefect.toml")
            target = cluster.praefect_config(config, dblines)
            subprocess.run([bins[0][1], "-config", config, "sql-migrate"], check=True, capture_output=True)
            if pg:
                fill_postgres(pg, dbname, n, d)
            else:
                fill_sqlite(os.path.join(d, "praefect.db"), n)
            print("filled %d repositories (%s) in %.1f s" % (n, a.store, time.monotonic() - t), flush=True)
            for name, path in bins:
                results[(name, n)] = measure(path, config, target, n, d, a.seconds, a.settle, a.idle)
                r = results[(name, n)]
                print("  %s: listen %.2f s, loaded %.2f s, start-up CPU %.2f s, RSS %.0f MiB, idle %.1f%%, %.0f exists/s (%.0f us), %.0f routed/s (%.0f us); load average %.1f"
                      % (name, r["listen"], r["loaded"], r["cpu"], r["rss"] / 2**20, r["idle"], r["exists"], r["exists_us"], r["routed"], r["routed_us"],
                         os.getloadavg()[0]),
                      flush=True)
            if not pg:
                os.unlink(os.path.join(d, "praefect.db"))
    finally:
        cluster.stop()
        if pg:
            pg.stop()
        if os.environ.get("KEEP") == "1":
            print("kept", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print("store: %s; ratios (x) are against %d repositories of the same binary" % (a.store, sizes[0]))
    print("x: the ratio to the first size; for calls, praefect CPU us per call at N over that at the first size")
    print("%-8s %8s %8s %8s %9s %8s %7s %7s %6s %9s %7s %6s %9s %7s %6s" % (
        "binary", "repos", "listen s", "loaded s", "start CPU", "RSS MiB", "B/repl", "idle %", "x",
        "exists/s", "us/call", "x", "routed/s", "us/call", "x"))
    for name, _ in bins:
        base = results[(name, sizes[0])]
        for n in sizes:
            r = results[(name, n)]
            print("%-8s %8d %8.2f %8.2f %9.2f %8.0f %7.0f %7.1f %6.2f %9.0f %7.0f %6.2f %9.0f %7.0f %6.2f" % (
                name, n, r["listen"], r["loaded"], r["cpu"], r["rss"] / 2**20, r["bpr"], r["idle"],
                r["idle"] / base["idle"] if base["idle"] else float("nan"),
                r["exists"], r["exists_us"], r["exists_us"] / base["exists_us"],
                r["routed"], r["routed_us"], r["routed_us"] / base["routed_us"]))
    if len(bins) > 1:
        print()
        print("%s over %s, same size:" % (bins[-1][0], bins[0][0]))
        for n in sizes:
            a, b = results[(bins[0][0], n)], results[(bins[-1][0], n)]
            print("  %8d repos: start CPU %.2fx, RSS %.2fx, idle CPU %.2fx, exists us/call %.2fx, routed us/call %.2fx"
                  % (n, b["cpu"] / a["cpu"] if a["cpu"] else float("nan"), b["rss"] / a["rss"],
                     b["idle"] / a["idle"] if a["idle"] else float("nan"), b["exists_us"] / a["exists_us"],
                     b["routed_us"] / a["routed_us"]))


if __name__ == "__main__":
    main()
