"""Helpers for tests of praefect in front of real gitaly nodes.

cluster() starts N gitaly nodes (one storage each, named gitaly-1..N) and a
praefect with virtual storage "default" over them, an embedded SQLite store
(or PostgreSQL: STORE below) and auth tokens on every hop. Stubs talk to
praefect exactly as GitLab would.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "gitaly"))
from gitaly_itest import BUILD, GitalyNode, auth_md, check_sanitizer_log, pb, pb_grpc, SERVICE_FILES, _make_interceptor  # noqa: E402

PRAEFECT_TOKEN = "praefect-secret"
NODE_TOKEN = "node-secret"

# The store of praefects built without an explicit `database`: None (SQLite), or
# the [database] lines of a PostgreSQL database (`migrated`: a copy of the
# migrated template, so no sql-migrate; `server`, `dbname`: the pg_server.PgServer
# and the database, for sql()); conftest.py's `store_backend` sets it.
STORE = {"database": None, "migrated": False, "server": None, "dbname": None, "template": None, "used": False}


def fresh_store():
    """[database] lines of another, empty store for a test's second cluster: a new PostgreSQL database
    (migrated), or None on SQLite, where every praefect has its own file already."""
    server = STORE["server"]
    if server is None:
        return None
    STORE["used"] = True
    return server.database_config(server.create_database(template=STORE["template"]))


class Praefect:
    def __init__(self, workdir, nodes, replication_factor=0, extra="", addresses=None, database=None,
                 migrate=True):
        self.dir = workdir
        # PostgreSQL: serve never migrates, so the fixture runs sql-migrate once before the first start
        own = database is not None
        self.database = database if own else STORE["database"]
        self._migrate = migrate and self.database is not None and (own or not STORE["migrated"])
        self._pg = None if own or self.database is None else (STORE["server"], STORE["dbname"])
        STORE["used"] = STORE["used"] or self._pg is not None
        os.makedirs(workdir, exist_ok=True)
        self.nodes = nodes
        self.socket = os.path.join(workdir, "praefect.socket")
        self.db = os.path.join(workdir, "praefect.db")
        self.config_path = os.path.join(workdir, "praefect.toml")
        lines = [
            'socket_path = "%s"' % self.socket,
            'listen_addr = "127.0.0.1:0"',
            "", "[auth]", 'token = "%s"' % PRAEFECT_TOKEN,
            "", "[logging]", 'format = "json"', 'level = "info"',
            "", "[database]",
        ] + (self.database or ['sqlite_path = "%s"' % self.db]) + [
            "", "[[virtual_storage]]", 'name = "default"',
        ]
        if replication_factor:
            lines.append("default_replication_factor = %d" % replication_factor)
        for name, node in nodes.items():
            address = (addresses or {}).get(name, "unix:" + node.socket)
            lines += ["", "[[virtual_storage.node]]", 'storage = "%s"' % name,
                      'address = "%s"' % address, 'token = "%s"' % NODE_TOKEN]
        if "[background_verification]" not in extra:
            # the verifier (on by default, as upstream) would verify replicas under every test's feet:
            # only tests that ask for it get it (test_verifier.py)
            lines += ["", "[background_verification]", 'verification_interval = "0"']
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n" + extra)
        self.log_path = os.path.join(workdir, "praefect.log")
        self.proc = None
        self._channels = []

    def start(self):
        if self._migrate:
            self._migrate = False
            subprocess.run([os.path.join(BUILD, "praefect", "praefect"), "-config", self.config_path, "sql-migrate"],
                           check=True, capture_output=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([os.path.join(BUILD, "praefect", "praefect"), "-config", self.config_path],
                                     stdout=self._log, stderr=self._log)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("praefect exited: " + open(self.log_path).read())
            log = open(self.log_path).read()
            # serving, and every node seen healthy (slow machines: checks may time out at first)
            if os.path.exists(self.socket) and "listening on" in log and \
                    all("node default/%s is healthy" % n in log for n in self.nodes
                        if self.nodes[n].proc and self.nodes[n].proc.poll() is None):
                return self
            time.sleep(0.02)
        raise RuntimeError("praefect did not start: " + open(self.log_path).read())

    def stop(self, sig=signal.SIGTERM):
        for ch in self._channels:
            ch.close()
        self._channels = []
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self._log.close()
            self.proc = None
            check_sanitizer_log(self.log_path)

    def kill(self):
        self.stop(signal.SIGKILL)

    def channel(self, secret=PRAEFECT_TOKEN):
        import grpc
        ch = grpc.insecure_channel("unix:" + self.socket)
        self._channels.append(ch)
        return grpc.intercept_channel(ch, _make_interceptor(secret)) if secret is not None else ch

    def stub(self, service, secret=PRAEFECT_TOKEN):
        mod = pb_grpc(SERVICE_FILES.get(service, "praefect"))
        return getattr(mod, service + "Stub")(self.channel(secret))

    def info(self):
        return getattr(pb_grpc("praefect"), "PraefectInfoServiceStub")(self.channel())

    def repo(self, relative_path, **kw):
        return pb("shared").Repository(storage_name="default", relative_path=relative_path, **kw)

    def metadata(self, relative_path):
        req = pb("praefect").GetRepositoryMetadataRequest(
            path=pb("praefect").GetRepositoryMetadataRequest.Path(virtual_storage="default",
                                                                  relative_path=relative_path))
        return self.info().GetRepositoryMetadata(req)

    def log(self):
        return open(self.log_path).read()

    def store_kind(self):
        return "postgres" if self.database is not None else "sqlite"

    def sql(self, query, postgres=None):
        """Run `query` (one or more statements, no parameters) on this praefect's store, SQLite or the
        PostgreSQL database the suite gave it, or `postgres` there when the schemas differ (the
        queue's job is JSON, times are timestamps, not Unix ms); the last statement's rows as
        tuples of strings (NULL as "")."""
        if self._pg:
            query = postgres or query
            server, dbname = self._pg
            out = server.psql(dbname, query).stdout
            return [tuple(line.split("|")) for line in out.splitlines()]
        if self.database is not None:
            raise RuntimeError("sql(): a praefect with its own [database] lines runs its SQL itself")
        import sqlite3
        with sqlite3.connect(self.db, timeout=30) as db:
            *head, last = [q for q in query.split(";") if q.strip()]
            for q in head:
                db.execute(q)
            return [tuple("" if v is None else str(v) for v in row) for row in db.execute(last)]


class Cluster:
    def __init__(self, tmp, n=3, replication_factor=0, addresses=None, extra="", database=None, migrate=True,
                 start=True, node_extra=""):
        self.tmp = str(tmp)
        self.nodes = {}
        for i in range(1, n + 1):
            name = "gitaly-%d" % i
            self.nodes[name] = GitalyNode(os.path.join(self.tmp, name), storages=(name,), token=NODE_TOKEN,
                                          extra_config=node_extra).start()
        addrs = addresses(self) if callable(addresses) else addresses
        self.praefect = Praefect(os.path.join(self.tmp, "praefect"), self.nodes, replication_factor,
                                 extra=extra, addresses=addrs, database=database, migrate=migrate)
        if start:
            self.praefect.start()

    def node_stub(self, name, service):
        return self.nodes[name].stub(service, secret=NODE_TOKEN)

    def checksum(self, name, replica_path):
        r = self.node_stub(name, "RepositoryService").CalculateChecksum(
            pb("repository").CalculateChecksumRequest(
                repository=pb("shared").Repository(storage_name=name, relative_path=replica_path)))
        return r.checksum

    def stop(self):
        self.praefect.stop()
        for n in self.nodes.values():
            n.stop()


def wait_for(cond, timeout=20.0, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = cond()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))
