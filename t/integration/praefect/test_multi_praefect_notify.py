"""Praefect B's in-memory model follows what praefect A does to the shared database without any call through B
(docs/technical/multi-praefect.md, "The listener"): creations, generation bumps, primary changes and deletions
arrive by LISTEN/NOTIFY and show on B's status page, and a change made while B's listener was not hearing is
picked up by the full reload after the listener's connection is killed and comes back, or after a
notification that does not parse."""
import os
import re

import pytest

from pg_server import PG_BIN
from praefect_itest import Praefect, wait_for
from gitaly_itest import pb
from test_metrics import free_port, prepend, http_get
from test_multi_praefect import start_cluster, stop_all
from test_praefect import create_repo, push, work_repo

pytestmark = [
    pytest.mark.skipif(not os.path.exists(os.path.join(PG_BIN, "initdb")), reason="PostgreSQL 15 is not installed"),
    pytest.mark.xdist_group("timing"),
]


def counts(url):
    """B's repository counts by state, from its status page (its in-memory model)."""
    page = http_get(url)[2]
    return {m.group(1): int(m.group(2)) for m in
            re.finditer(r'data-state="([a-z ]+)"><b class="count">(\d+)</b>', page)}


def primaries(url):
    page = http_get(url)[2]
    return {m.group(1): int(m.group(2)) for m in
            re.finditer(r'<tr class="node" data-storage="([^"]+)".*?<td class="primaries">(\d+)</td>', page)}


def reconnects(url):
    out = {}
    for line in http_get(url + "metrics")[2].splitlines():
        m = re.match(r'gitaly_praefect_notifications_reconnects_total\{state="(\w+)"\} (\S+)$', line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def silent_delete(postgres, db, path):
    """Delete a repository with every notifying trigger off: no praefect is told."""
    postgres.psql(db, "BEGIN; ALTER TABLE repositories DISABLE TRIGGER USER;"
                      " ALTER TABLE storage_repositories DISABLE TRIGGER USER;"
                      " ALTER TABLE repository_assignments DISABLE TRIGGER USER;"
                      " DELETE FROM repositories WHERE relative_path = '%s';"
                      " ALTER TABLE repositories ENABLE TRIGGER USER;"
                      " ALTER TABLE storage_repositories ENABLE TRIGGER USER;"
                      " ALTER TABLE repository_assignments ENABLE TRIGGER USER; COMMIT;" % path)


def total(url):
    return sum(counts(url).values())


def test_changes_through_a_reach_bs_model_and_a_lost_listener_reloads(tmp_path, postgres):
    cluster, db, lines, a = start_cluster(tmp_path, postgres)
    role = "listener_" + db
    postgres.psql(db, "CREATE ROLE %s LOGIN SUPERUSER" % role)
    b = None
    try:
        # B listens as another role ([database.session_pooled] over [database], key by key)
        b = Praefect(os.path.join(cluster.tmp, "praefect-b"), cluster.nodes, database=lines, migrate=False,
                     extra='\n[database.session_pooled]\nuser = "%s"\n' % role)
        port = free_port()
        prepend(b.config_path, 'prometheus_listen_addr = "127.0.0.1:%d"' % port)
        url = "http://127.0.0.1:%d/" % port
        b.start()
        wait_for(lambda: "listening for repository changes on the database" in b.log(), what="B's listener")
        listener = postgres.psql(db, "SELECT usename FROM pg_stat_activity WHERE datname = '%s' AND "
                                     "query ILIKE 'LISTEN%%'" % db).stdout.split()
        assert role in listener, listener
        assert total(url) == 0

        # created through A: in B's model, no call through B
        for path in ("n1.git", "n2.git", "n3.git"):
            create_repo(cluster, path)
        wait_for(lambda: counts(url).get("in sync") == 3, what="B sees three repositories")

        # a generation bump through A while a secondary is down: B sees that secondary behind
        src = work_repo(tmp_path, branches=("main",), tags=())
        primary = a.metadata("n1.git").primary
        victim = next(n for n in cluster.nodes if n != primary)
        cluster.nodes[victim].stop()
        wait_for(lambda: not {r.storage: r.healthy for r in a.metadata("n1.git").replicas}[victim],
                 what="A sees the secondary down")
        push(cluster, src, "n1.git", "main")
        wait_for(lambda: counts(url).get("outdated") == 1, what="B sees n1.git outdated")
        cluster.nodes[victim].start()
        wait_for(lambda: counts(url).get("in sync") == 3, timeout=60, what="B sees n1.git repaired")

        # a primary change in the database (as an election elsewhere writes it)
        before = primaries(url)
        other = next(n for n in cluster.nodes if n != primary)
        postgres.psql(db, "UPDATE repositories SET \"primary\" = '%s' WHERE relative_path = 'n1.git'" % other)
        wait_for(lambda: primaries(url)[other] == before[other] + 1, what="B sees the new primary")

        # deleted through A
        a.stub("RepositoryService").RemoveRepository(
            pb("repository").RemoveRepositoryRequest(repository=a.repo("n2.git")), timeout=10)
        wait_for(lambda: total(url) == 2, what="B sees n2.git gone")

        # a deletion nobody is told about (triggers off): B cannot know of it ...
        silent_delete(postgres, db, "n3.git")
        create_repo(cluster, "n4.git")     # (a notified change after it, to know B heard everything before)
        wait_for(lambda: total(url) == 3, what="B sees n4.git")
        assert total(url) == 3             # n3.git still there
        # ... until its listener loses its connection: reconnected, it reloads the whole model
        was = reconnects(url)
        assert was.get("connected") == 1 and "disconnected" not in was, was
        killed = postgres.psql(db, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                                   "usename = '%s' AND query ILIKE 'LISTEN%%'" % role).stdout.strip()
        assert killed == "1"
        wait_for(lambda: total(url) == 2, what="B reloaded: n3.git gone")
        now = reconnects(url)
        assert now.get("connected") == 2 and now.get("disconnected") == 1, now
        assert "listening for repository changes was interrupted" in b.log()
        # still listening after the reconnection
        create_repo(cluster, "n5.git")
        wait_for(lambda: total(url) == 3, what="B sees n5.git")

        # a payload that does not parse: what changed is unknown, so B reloads everything
        silent_delete(postgres, db, "n5.git")
        postgres.psql(db, "SELECT pg_notify('repositories_updates', '[{\"virtual_storage\": 1}]')")
        wait_for(lambda: total(url) == 2, what="B reloaded after a bad payload: n5.git gone")
        assert "cannot be processed" in b.log()
    finally:
        stop_all(cluster, *(p for p in (b,) if p))
