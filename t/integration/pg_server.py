"""A throw-away PostgreSQL 15 server for the tests (docs/technical/store.md, "Tests").

PgServer() runs initdb in a fresh directory under /tmp and starts postgres on a
unix socket in that directory (and, asked for, on a free TCP port of 127.0.0.1),
with fsync off. As root (CI) the
server runs as user `nobody`, which owns the directory. create_database() gives
each test its own database (a copy of a template one when asked); psql() runs SQL
against one.
"""
import itertools
import os
import shutil
import socket
import subprocess
import tempfile

PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
SUPERUSER = "postgres"


def _as_server_user(cmd):
    if os.geteuid() == 0:
        return ["runuser", "-u", "nobody", "--"] + cmd
    return cmd


class PgServer:
    def __init__(self, tcp=False):
        """tcp: listen on a free port of 127.0.0.1 too (clients then connect by TCP)."""
        if not os.path.exists(os.path.join(PG_BIN, "initdb")):
            raise RuntimeError("PostgreSQL 15 is not installed in %s (tools/deps.sh installs it)" % PG_BIN)
        self.dir = tempfile.mkdtemp(prefix="pg-itest-", dir="/tmp")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "nobody")
        self.data = os.path.join(self.dir, "data")
        self.host = self.dir  # the socket directory
        self.port = None
        if tcp:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                self.port = sock.getsockname()[1]
        self._counter = itertools.count(1)
        subprocess.run(_as_server_user([os.path.join(PG_BIN, "initdb"), "-D", self.data, "-A", "trust",
                                        "-U", SUPERUSER, "--no-sync", "-E", "UTF8", "--locale=C"]),
                       check=True, capture_output=True, cwd=self.dir)
        self.start()

    def start(self):
        subprocess.run(_as_server_user([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-w", "-t", "60",
                                        "-l", os.path.join(self.dir, "server.log"),
                                        "-o", "-k %s -c listen_addresses='%s' %s-c fsync=off "
                                              "-c synchronous_commit=off -c full_page_writes=off"
                                              % (self.dir, "127.0.0.1" if self.port else "",
                                                 "-p %d " % self.port if self.port else ""),
                                        "start"]),
                       check=True, capture_output=True, cwd=self.dir)

    def halt(self):
        """Stop the server, keeping its data (start() brings it back): clients see their connections drop."""
        subprocess.run(_as_server_user([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-m", "fast", "-w",
                                        "stop"]), check=True, capture_output=True, cwd=self.dir)

    def psql(self, dbname, sql, check=True):
        return subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.host,
                               "-p", str(self.port or 5432), "-U", SUPERUSER, "-d", dbname, "-At", "-c", sql],
                              capture_output=True, text=True, check=check)

    def psql_file(self, dbname, path):
        return subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.host,
                               "-p", str(self.port or 5432), "-U", SUPERUSER, "-d", dbname, "-f", path],
                              capture_output=True, text=True, check=True)

    def create_database(self, template=None):
        """A new, empty database; or a copy of `template` (which must have no connections)."""
        name = "praefect_%d_%d" % (os.getpid(), next(self._counter))
        self.psql("postgres", "CREATE DATABASE %s" % name + (" TEMPLATE %s" % template if template else ""))
        return name

    def database_config(self, dbname):
        """[database] lines for praefect's config.toml."""
        if self.port:
            return ['host = "127.0.0.1"', "port = %d" % self.port, 'user = "%s"' % SUPERUSER,
                    'dbname = "%s"' % dbname, 'sslmode = "disable"']
        return ['host = "%s"' % self.host, 'user = "%s"' % SUPERUSER, 'dbname = "%s"' % dbname,
                'sslmode = "disable"']

    def stop(self):
        subprocess.run(_as_server_user([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-m", "immediate",
                                        "-w", "stop"]), capture_output=True, cwd=self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)
