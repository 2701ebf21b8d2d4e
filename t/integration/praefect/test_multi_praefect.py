"""Several praefects sharing one PostgreSQL database are one cluster (docs/technical/multi-praefect.md):
health is the majority's view, so a node one praefect cannot reach keeps its role; a node dead for all
fails over once, and every praefect ends up on the primary the database holds; pushes and clones work
through each praefect and through HAProxy in front of them."""
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from pg_server import PG_BIN
from praefect_itest import Cluster, Praefect, wait_for, PRAEFECT_TOKEN
from gitaly_itest import BUILD, git, pb
from test_praefect import gitaly_ssh_env, work_repo, create_repo, push, replicas_in_sync

pytestmark = [
    pytest.mark.skipif(not os.path.exists(os.path.join(PG_BIN, "initdb")), reason="PostgreSQL 15 is not installed"),
    pytest.mark.xdist_group("timing"),
]


def start_cluster(tmp_path, postgres, dead_for_third=None):
    """Three gitaly nodes, praefect A alone first (it migrates), then B and C on the same database.
    `dead_for_third`: a storage whose address in C's config leads nowhere."""
    db = postgres.create_database()
    lines = postgres.database_config(db)
    cluster = Cluster(tmp_path, database=lines, start=False)
    a = cluster.praefect
    a.start()
    return cluster, db, lines, a


def more_praefect(cluster, lines, name, addresses=None):
    p = Praefect(os.path.join(cluster.tmp, name), cluster.nodes, database=lines, migrate=False,
                 addresses=addresses)
    if addresses:
        # start() waits for every running node to look healthy: not those it cannot reach
        p.nodes = {k: v for k, v in cluster.nodes.items() if k not in addresses}
    return p.start()


def try_push(praefect, src, relative_path):
    r = subprocess.run(["git", "push", "-q", "ssh://gitaly/repo.git", "main"], cwd=src, capture_output=True,
                       env=dict(os.environ, **gitaly_ssh_env(praefect, relative_path, "receive-pack")))
    return r.returncode == 0


def commit(src, n):
    work = src + ".w%d" % n
    if not os.path.exists(work):
        git("clone", "-q", src, work)
    with open(os.path.join(work, "f.txt"), "w") as f:
        f.write("%d\n" % n)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "change %d" % n, cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    return git("rev-parse", "main", cwd=src).strip()


def db_primary(postgres, db, relative_path):
    return postgres.psql(db, "SELECT \"primary\" FROM repositories WHERE relative_path = '%s'"
                         % relative_path).stdout.strip()


def stop_all(cluster, *praefects):
    for p in praefects:
        p.stop()
    cluster.stop()


def test_node_unreachable_from_one_praefect_is_not_failed_over(tmp_path, postgres):
    cluster, db, lines, a = start_cluster(tmp_path, postgres)
    b = c = None
    try:
        create_repo(cluster, "mp.git")
        src = work_repo(tmp_path, branches=("main",), tags=())
        push(cluster, src, "mp.git", "main")
        wait_for(lambda: replicas_in_sync(cluster, "mp.git"), what="replication")
        primary = a.metadata("mp.git").primary
        assert db_primary(postgres, db, "mp.git") == primary

        b = more_praefect(cluster, lines, "praefect-b")
        c = more_praefect(cluster, lines, "praefect-c",
                          addresses={primary: "unix:%s/nowhere.sock" % cluster.tmp})
        wait_for(lambda: postgres.psql(db, "SELECT count(DISTINCT praefect_name) FROM node_status")
                 .stdout.strip() == "3", what="three praefects in node_status")
        # C never reached it: its row has no last_seen_active_at
        wait_for(lambda: postgres.psql(db, "SELECT count(*) FROM node_status WHERE node_name = '%s'"
                                       " AND last_seen_active_at IS NULL" % primary).stdout.strip() == "1",
                 what="C's view of the primary recorded")
        time.sleep(0.5)  # C's peer votes arrive (every health check)

        # C cannot reach the primary, but A and B can: the majority keeps it, nobody fails it over
        for i in range(1, 6):
            commit(src, i)
            assert not try_push(c, src, "mp.git")
            assert try_push(a, src, "mp.git")
            commit(src, 100 + i)
            assert try_push(b, src, "mp.git")
        assert db_primary(postgres, db, "mp.git") == primary
        for p in (a, b, c):
            assert "primary node changed" not in p.log(), p.log()
    finally:
        stop_all(cluster, *(p for p in (c, b) if p))


def test_node_dead_for_all_fails_over_once(tmp_path, postgres):
    cluster, db, lines, a = start_cluster(tmp_path, postgres)
    b = c = None
    try:
        create_repo(cluster, "fo.git")
        src = work_repo(tmp_path, branches=("main",), tags=())
        push(cluster, src, "fo.git", "main")
        wait_for(lambda: replicas_in_sync(cluster, "fo.git"), what="replication")
        old = a.metadata("fo.git").primary
        b = more_praefect(cluster, lines, "praefect-b")
        c = more_praefect(cluster, lines, "praefect-c")

        cluster.nodes[old].stop()
        for p in (a, b, c):
            wait_for(lambda: "node default/%s is unhealthy" % old in p.log(), what="the node seen dead")
        # every praefect elects; the database takes one choice, the others adopt it
        acked = []
        for i, p in enumerate((a, b, c, a, b, c), 1):
            acked.append(commit(src, i))
            wait_for(lambda: try_push(p, src, "fo.git"), timeout=10, what="push %d after failover" % i)
        new = db_primary(postgres, db, "fo.git")
        assert new and new != old
        changes = sum(len(re.findall(r"primary node changed: repository \d+ from %s" % old, p.log()))
                      for p in (a, b, c))
        # B and C read the repository from the database before routing: they take A's choice, no election
        assert changes == 1, changes
        for p in (a, b, c):
            assert p.metadata("fo.git").primary == new
        # the latest push is on the primary the database names
        on_disk = os.path.join(cluster.nodes[new].storages[new], a.metadata("fo.git").replica_path)
        assert git("rev-parse", "main", cwd=on_disk).strip() == acked[-1]
    finally:
        stop_all(cluster, *(p for p in (c, b) if p))


def tcp_port(praefect):
    m = re.search(r"listening on (?:tcp://)?127\.0\.0\.1:(\d+)", praefect.log())
    return int(m.group(1))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy is not installed (tools/deps.sh)")
def test_pushes_and_clones_through_haproxy_and_each_praefect(tmp_path, postgres):
    cluster, db, lines, a = start_cluster(tmp_path, postgres)
    b = c = None
    proxy = None
    try:
        b = more_praefect(cluster, lines, "praefect-b")
        c = more_praefect(cluster, lines, "praefect-c")
        # created through A after B and C started: they read it from the database
        create_repo(cluster, "lb.git")
        src = work_repo(tmp_path, branches=("main",), tags=())
        push(cluster, src, "lb.git", "main")
        port = free_port()
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text("\n".join([
            "global", "  maxconn 100", "defaults", "  mode tcp", "  timeout connect 2s",
            "  timeout client 60s", "  timeout server 60s",
            "frontend praefects", "  bind 127.0.0.1:%d" % port, "  default_backend all",
            "backend all", "  balance roundrobin"] +
            ["  server p%d 127.0.0.1:%d" % (i, tcp_port(p)) for i, p in enumerate((a, b, c))]) + "\n")
        proxy = subprocess.Popen(["haproxy", "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), 1).close() or True, what="haproxy")
        env = dict(gitaly_ssh_env(a, "lb.git", "receive-pack"), GITALY_ADDRESS="tcp://127.0.0.1:%d" % port)
        for i in range(1, 4):
            head = commit(src, i)
            git("push", "-q", "ssh://gitaly/repo.git", "main", cwd=src, env=dict(os.environ, **env))
            out = str(tmp_path / ("clone%d" % i))
            cenv = dict(gitaly_ssh_env(a, "lb.git", "upload-pack"), GITALY_ADDRESS="tcp://127.0.0.1:%d" % port)
            git("clone", "-q", "ssh://gitaly/repo.git", out, env=dict(os.environ, **cenv))
            assert git("rev-parse", "main", cwd=out).strip() == head
        # and through each praefect directly
        for i, p in enumerate((a, b, c)):
            out = str(tmp_path / ("clone-p%d" % i))
            git("clone", "-q", "ssh://gitaly/repo.git", out,
                env=dict(os.environ, **gitaly_ssh_env(p, "lb.git", "upload-pack")))
            assert git("rev-parse", "main", cwd=out).strip() == head
    finally:
        if proxy:
            proxy.terminate()
            proxy.wait(10)
        stop_all(cluster, *(p for p in (c, b) if p))


def test_write_through_one_read_through_another_is_never_stale(tmp_path, postgres):
    cluster, db, lines, a = start_cluster(tmp_path, postgres)
    b = None
    try:
        b = more_praefect(cluster, lines, "praefect-b")
        create_repo(cluster, "rw.git")
        src = work_repo(tmp_path, branches=("main",), tags=())
        for i in range(1, 6):
            commit(src, i)
        push(cluster, src, "rw.git", "main")
        commits = git("rev-list", "main", cwd=src).split()
        primary = a.metadata("rw.git").primary
        victim = next(n for n in cluster.nodes if n != primary)
        write = a.stub("RepositoryService").WriteRef
        read = b.stub("RefService").FindBranch
        repo = a.repo("rw.git")
        stale = []
        for i in range(60):
            if i == 20:
                cluster.nodes[victim].stop()
            if i == 40:
                cluster.nodes[victim].start()
            target = commits[i % len(commits)]
            req = pb("repository").WriteRefRequest(repository=repo, ref=b"refs/heads/x", revision=target.encode())
            wait_for(lambda: write(req, timeout=10) is not None, timeout=15, what="write %d acknowledged" % i)
            got = read(pb("ref").FindBranchRequest(repository=repo, name=b"x"), timeout=10)
            if got.branch.target_commit.id != target:
                stale.append((i, got.branch.target_commit.id, target))
        assert not stale, stale
    finally:
        stop_all(cluster, *(p for p in (b,) if p))
