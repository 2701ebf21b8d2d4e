"""praefect's PostgreSQL connections carry TCP keepalives (docs/technical/store.md, "PostgreSQL"):
seen from the kernel's side, through `ss`, on the store's and the listener's connections."""
import os
import re
import subprocess

import pytest

from pg_server import PgServer
from praefect_itest import Cluster, wait_for


def praefect_connections(pid, port):
    """`ss -o` lines of the established TCP connections of process `pid` to `port`."""
    out = subprocess.run(["ss", "-tnpoH", "state", "established", "( dport = :%d )" % port],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "pid=%d," % pid in line]


def seconds(timer):
    """ss's time left, e.g. "14sec", "1min59sec", "119min", "1h59min", "204ms": seconds."""
    units = {"h": 3600, "min": 60, "sec": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)(h|min|sec|ms)", timer))


@pytest.fixture
def tcp_pg():
    pg = PgServer(tcp=True)
    yield pg
    pg.stop()


@pytest.mark.no_store("its own PostgreSQL server, on TCP: keepalives do not apply to a Unix socket")
@pytest.mark.parametrize("service", [None, "keepalives_idle=120"], ids=["default", "service-file"])
def test_store_and_listener_connections_keep_alive_unless_a_service_file_says_otherwise(tmp_path, tcp_pg,
                                                                                          service, monkeypatch):
    if service:
        path = tmp_path / "pg_service.conf"
        path.write_text("[praefect]\n%s\n" % service)
        monkeypatch.setenv("PGSERVICEFILE", str(path))
        monkeypatch.setenv("PGSERVICE", "praefect")
    cluster = Cluster(tmp_path, n=1, database=tcp_pg.database_config(tcp_pg.create_database()))
    try:
        pid = cluster.praefect.proc.pid
        wait_for(lambda: "listening for repository changes" in cluster.praefect.log(), what="the listener")
        # the store's connection and the listener's, idle (a connection with data in flight shows its
        # retransmission timer instead)
        def timers():
            conns = praefect_connections(pid, tcp_pg.port)
            found = [re.search(r"timer:\((\w+),([^,]+),", c) for c in conns]
            if len(conns) < 2 or not all(t and t.group(1) == "keepalive" for t in found):
                return None
            return [seconds(t.group(2)) for t in found]
        # libpq turns keepalives on by itself, but with the kernel's times (2 h idle)
        idle = wait_for(timers, what="two idle connections")
        if service:
            assert all(15 < s <= 120 for s in idle), idle
        else:
            assert all(s <= 15 for s in idle), idle
    finally:
        cluster.stop()
