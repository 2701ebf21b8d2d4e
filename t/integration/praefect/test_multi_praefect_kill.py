"""A praefect of three killed mid-push (docs/technical/multi-praefect.md, "A praefect that dies"): HAProxy sends
the clients to the others, no acknowledged push is lost, and replication jobs left in progress without a live
holder are released after `[replication] stale_job_timeout` and finished by the surviving praefects."""
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

from pg_server import PG_BIN
from praefect_itest import Cluster, Praefect, wait_for
from gitaly_itest import git
from test_praefect import gitaly_ssh_env, work_repo, create_repo, push, replicas_in_sync
from test_multi_praefect import commit, tcp_port, free_port

pytestmark = [
    pytest.mark.skipif(not os.path.exists(os.path.join(PG_BIN, "initdb")), reason="PostgreSQL 15 is not installed"),
    pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy is not installed (tools/deps.sh)"),
    pytest.mark.xdist_group("timing"),
]

STALE = '\n[replication]\nstale_job_timeout = "2s"\n'


def haproxy(tmp_path, praefects):
    port = free_port()
    cfg = tmp_path / "haproxy.cfg"
    # health checks take a dead praefect out of the rotation; a refused connection is sent to another one
    cfg.write_text("\n".join([
        "global", "  maxconn 100", "defaults", "  mode tcp", "  timeout connect 2s", "  timeout client 60s",
        "  timeout server 60s", "  retries 3", "  option redispatch",
        "frontend praefects", "  bind 127.0.0.1:%d" % port, "  default_backend all",
        "backend all", "  balance roundrobin"] +
        ["  server p%d 127.0.0.1:%d check inter 200ms fall 1" % (i, tcp_port(p)) for i, p in enumerate(praefects)])
        + "\n")
    proc = subprocess.Popen(["haproxy", "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: socket.create_connection(("127.0.0.1", port), 1).close() or True, what="haproxy")
    return proc, "tcp://127.0.0.1:%d" % port


def sql(postgres, db, query):
    return postgres.psql(db, query).stdout.strip()


def take_jobs_as_dead_praefect(postgres, db, target):
    """What a praefect that dequeued the jobs for `target` and then died leaves: jobs in progress, a job lock
    per job, the lock acquired, and nobody refreshing it. Returns the job ids."""
    ids = sql(postgres, db,
              "WITH j AS (UPDATE replication_queue SET state = 'in_progress', updated_at = timezone('UTC', now())"
              " WHERE state IN ('ready', 'failed') AND job->>'target_node_storage' = '%s' RETURNING id, lock_id),"
              " l AS (INSERT INTO replication_queue_job_lock (job_id, lock_id, triggered_at)"
              " SELECT id, lock_id, timezone('UTC', now()) FROM j RETURNING job_id, lock_id),"
              " a AS (UPDATE replication_queue_lock SET acquired = true WHERE id IN (SELECT lock_id FROM l))"
              " SELECT string_agg(job_id::text, ',') FROM l" % target)
    return [int(i) for i in ids.split(",") if i]


def test_praefect_killed_mid_push_loses_no_acknowledged_push(tmp_path, postgres):
    db = postgres.create_database()
    lines = postgres.database_config(db)
    cluster = Cluster(tmp_path, database=lines, extra=STALE)
    a = cluster.praefect
    b = Praefect(os.path.join(cluster.tmp, "praefect-b"), cluster.nodes, database=lines, migrate=False,
                 extra=STALE).start()
    c = Praefect(os.path.join(cluster.tmp, "praefect-c"), cluster.nodes, database=lines, migrate=False,
                 extra=STALE).start()
    proxy = None
    try:
        create_repo(cluster, "k.git")
        src = work_repo(tmp_path, branches=("main",), tags=())
        push(cluster, src, "k.git", "main")
        wait_for(lambda: replicas_in_sync(cluster, "k.git"), what="replication")
        primary = a.metadata("k.git").primary
        victim = next(n for n in cluster.nodes if n != primary)

        proxy, address = haproxy(tmp_path, (a, b, c))
        env = dict(os.environ, **dict(gitaly_ssh_env(a, "k.git", "receive-pack"), GITALY_ADDRESS=address))
        acked, failed, stop = [], [], threading.Event()

        def pusher():
            i = 100
            while not stop.is_set():
                i += 1
                head = commit(src, i)
                # a push cut by the kill is retried, as a client would
                for _ in range(20):
                    r = subprocess.run(["git", "push", "-q", "ssh://gitaly/repo.git", "main"], cwd=src, env=env,
                                       capture_output=True)
                    if r.returncode == 0:
                        acked.append(head)
                        break
                    failed.append(r.stderr)
                    time.sleep(0.1)
                else:
                    return

        t = threading.Thread(target=pusher)
        t.start()
        try:
            wait_for(lambda: len(acked) >= 3, timeout=60, what="pushes before the kill")
            c.kill()
            n = len(acked)
            wait_for(lambda: len(acked) >= n + 4, timeout=60, what="pushes after the kill")
        finally:
            stop.set()
            t.join(120)
        assert not t.is_alive()

        # every acknowledged push is in main, read through a survivor (HAProxy: A or B)
        out = str(tmp_path / "clone")
        git("clone", "-q", "ssh://gitaly/repo.git", out,
            env=dict(os.environ, **dict(gitaly_ssh_env(a, "k.git", "upload-pack"), GITALY_ADDRESS=address)))
        assert git("rev-parse", "main", cwd=out).strip() == acked[-1]
        for head in acked:
            subprocess.run(["git", "merge-base", "--is-ancestor", head, "main"], cwd=out, check=True)

        # C died holding jobs: a write while a secondary is down queues a job for it, which we mark taken the
        # way a praefect that dequeued it and died leaves it (C is gone, so nobody refreshes the lock)
        cluster.nodes[victim].stop()
        for p in (a, b):
            wait_for(lambda: "node default/%s is unhealthy" % victim in p.log(), what="the secondary seen dead")
        commit(src, 1)
        push(cluster, src, "k.git", "main")
        wait_for(lambda: sql(postgres, db, "SELECT count(*) FROM replication_queue WHERE state IN ('ready', 'failed')"
                             " AND job->>'target_node_storage' = '%s'" % victim) != "0", what="a job for the victim")
        held = take_jobs_as_dead_praefect(postgres, db, victim)
        assert held
        cluster.nodes[victim].start()

        # released after the stale period by A or B, then done by them (done jobs are deleted)
        wait_for(lambda: sql(postgres, db, "SELECT count(*) FROM replication_queue WHERE id IN (%s)"
                             % ",".join(map(str, held))) == "0", timeout=30, what="the held jobs finished")
        assert any(re.search(r"released \d+ stale replication jobs", p.log()) for p in (a, b)), (a.log(), b.log())
        wait_for(lambda: replicas_in_sync(cluster, "k.git"), timeout=30, what="replicas in sync")
        wait_for(lambda: sql(postgres, db, "SELECT count(*) FROM replication_queue_job_lock") == "0",
                 timeout=30, what="no job lock left")
        for p in (a, b):
            assert p.metadata("k.git").primary == primary
    finally:
        if proxy:
            proxy.terminate()
            proxy.wait(10)
        for p in (c, b):
            p.stop()
        cluster.stop()
