"""The PostgreSQL tracking store: sql-migrate, -down, -status and sql-ping against a real
PostgreSQL 15, serve refusing a database that lacks upstream's migrations, and a database laid
out as upstream praefect leaves it served as it is (docs/technical/store.md, "PostgreSQL")."""
import os
import re
import shutil
import subprocess

import grpc
import pytest

from pg_server import PgServer
from praefect_itest import Cluster, wait_for
from gitaly_itest import BUILD, git, make_bare_repo
from test_praefect import create_repo, gitaly_ssh_env, push, replicas_in_sync, work_repo

PRAEFECT = os.path.join(BUILD, "praefect", "praefect")
STAMP = r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d "
NR_UPSTREAM = 42
OURS = ["20261207000000_gitalyc_write_intents", "20261207100000_gitalyc_suspect_replicas",
        "20261207110000_gitalyc_outdated_since",   # replication-status
        "20261207120000_gitalyc_write_intents_praefect",
        "20261207130000_gitalyc_notify_primary_assignments"]
NR_ALL = NR_UPSTREAM + len(OURS)


def config(tmp_path, pg, dbname, extra="", name="praefect.toml"):
    path = tmp_path / name
    path.write_text("\n".join([
        'listen_addr = "127.0.0.1:0"', "", "[database]"] + pg.database_config(dbname) + [
        "", "[[virtual_storage]]", 'name = "default"',
        "", "[[virtual_storage.node]]", 'storage = "gitaly-1"', 'address = "tcp://127.0.0.1:1"', ""]) + extra)
    return str(path)


def praefect(cfg, *args, timeout=60):
    return subprocess.run([PRAEFECT, "-config", cfg] + list(args), capture_output=True, text=True, timeout=timeout)


def status_rows(cfg):
    res = praefect(cfg, "sql-migrate-status")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert re.fullmatch(r"\+-+\+-+\+", lines[0]) and lines[0] == lines[2] == lines[-1]
    assert re.fullmatch(r"\| +MIGRATION +\| +APPLIED +\|", lines[1])
    return dict(tuple(c.strip() for c in line.strip("|").split("|")) for line in lines[3:-1])


def test_sql_migrate_status_and_down_on_a_fresh_database(postgres, tmp_path):
    cfg = config(tmp_path, postgres, postgres.create_database())
    rows = status_rows(cfg)
    assert len(rows) == NR_ALL and set(rows.values()) == {"no"}
    assert list(rows)[0] == "20200109161404_hello_world" and list(rows)[-len(OURS):] == OURS

    res = praefect(cfg, "sql-migrate")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.split("\n")
    assert lines[:2] == ["praefect sql-migrate: migrations to apply: %d" % NR_ALL, ""]
    body = lines[2:-3]
    assert len(body) == 2 * NR_ALL
    for i, mig in enumerate(rows):
        assert re.fullmatch(r"=  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d %s: migrating" % mig, body[2 * i]), body[2 * i]
        assert re.fullmatch(r"== \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d %s: applied \(\d+ms\)" % mig, body[2 * i + 1])
    assert lines[-3:] == ["", "praefect sql-migrate: OK (applied %d migrations)" % NR_ALL, ""]
    assert praefect(cfg, "sql-migrate").stdout == "praefect sql-migrate: all migrations are up\n"
    rows = status_rows(cfg)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? [+-]\d{4} \S+", v) for v in rows.values()), rows

    # upstream's tables, checked in the catalogue
    tables = postgres.psql(postgres_db(cfg), "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM "
                           "information_schema.tables WHERE table_schema = 'public'").stdout.strip().split(",")
    for t in ("repositories", "storage_repositories", "repository_assignments", "replication_queue",
              "replication_queue_lock", "replication_queue_job_lock", "node_status", "shard_primaries",
              "storage_cleanups", "virtual_storages", "valid_primaries", "healthy_storages", "schema_migrations",
              "write_intents", "suspect_replicas"):
        assert t in tables, (t, tables)

    res = praefect(cfg, "sql-migrate-down", "1")
    assert (res.returncode, res.stdout) == (0, "DRY RUN -- would roll back:\n\n- %s\n\n"
                                                "To apply these migrations run with -f\n" % OURS[-1]), res.stderr
    assert status_rows(cfg)[OURS[-1]] != "no"
    res = praefect(cfg, "sql-migrate-down", "-f", "1")
    assert (res.returncode, res.stdout) == (0, 'OK (applied 1 "down" migrations)\n'), res.stderr
    assert status_rows(cfg)[OURS[4]] == "no" and status_rows(cfg)[OURS[3]] != "no"
    assert postgres.psql(postgres_db(cfg), "SELECT count(*) FROM pg_trigger WHERE "
                         "tgname LIKE 'gitalyc_notify%'").stdout.strip() == "0"
    res = praefect(cfg, "sql-migrate-down", "-f", "1")
    assert (res.returncode, res.stdout) == (0, 'OK (applied 1 "down" migrations)\n'), res.stderr
    assert status_rows(cfg)[OURS[3]] == "no" and status_rows(cfg)[OURS[2]] != "no"
    assert postgres.psql(postgres_db(cfg), "SELECT count(*) FROM information_schema.columns WHERE "
                         "table_name = 'write_intents' AND column_name = 'praefect_name'").stdout.strip() == "0"
    res = praefect(cfg, "sql-migrate-down", "-f", "1")
    assert (res.returncode, res.stdout) == (0, 'OK (applied 1 "down" migrations)\n'), res.stderr
    assert status_rows(cfg)[OURS[2]] == "no" and status_rows(cfg)[OURS[1]] != "no"
    assert postgres.psql(postgres_db(cfg), "SELECT count(*) FROM information_schema.columns WHERE "
                         "column_name = 'outdated_since'").stdout.strip() == "0"
    res = praefect(cfg, "sql-migrate-down", "-f", "1")
    assert (res.returncode, res.stdout) == (0, 'OK (applied 1 "down" migrations)\n'), res.stderr
    assert status_rows(cfg)[OURS[1]] == "no" and status_rows(cfg)[OURS[0]] != "no"
    assert postgres.psql(postgres_db(cfg), "SELECT to_regclass('suspect_replicas') IS NULL").stdout.strip() == "t"
    res = praefect(cfg, "sql-migrate-down", "-f", "1")
    assert (res.returncode, res.stdout) == (0, 'OK (applied 1 "down" migrations)\n'), res.stderr
    assert status_rows(cfg)[OURS[0]] == "no"
    assert postgres.psql(postgres_db(cfg), "SELECT to_regclass('write_intents') IS NULL").stdout.strip() == "t"

    # upstream's migrations are one schema here: they are not rolled back one by one
    res = praefect(cfg, "sql-migrate-down", "-f", "1")
    assert res.returncode == 1
    assert re.fullmatch(STAMP + 'migration "20220520083313_remove_maintenance_replication_events" is upstream\'s '
                        "schema and cannot be rolled back by this praefect\n", res.stderr), res.stderr
    res = praefect(cfg, "sql-migrate-down", "0")
    assert res.returncode == 1 and res.stderr.endswith("number of migrations to roll back must be 1 or more\n")
    res = praefect(cfg, "sql-migrate-down")
    assert res.returncode == 1 and "sql-migrate-down requires a single positional argument" in res.stderr

    res = praefect(cfg, "sql-migrate", "-verbose")
    assert res.stdout.startswith("praefect sql-migrate: migrations to apply: %d\n\n=  " % len(OURS)), res.stdout
    assert "\tCREATE TABLE write_intents (" in res.stdout and "\tCREATE TABLE suspect_replicas (" in res.stdout
    assert "\tALTER TABLE storage_repositories ADD COLUMN outdated_since timestamptz;" in res.stdout
    assert "\tALTER TABLE write_intents ADD COLUMN praefect_name text NOT NULL DEFAULT '';" in res.stdout
    assert res.stdout.endswith("praefect sql-migrate: OK (applied %d migrations)\n" % len(OURS))


def postgres_db(cfg):
    return re.search(r'dbname = "([^"]+)"', open(cfg).read()).group(1)


def test_unknown_and_partial_migrations_are_refused(postgres, tmp_path):
    db = postgres.create_database()
    cfg = config(tmp_path, postgres, db)
    assert praefect(cfg, "sql-migrate").returncode == 0
    postgres.psql(db, "INSERT INTO schema_migrations (id, applied_at) VALUES ('20991231000000_from_the_future', now())")
    res = praefect(cfg, "sql-migrate")
    assert res.returncode == 1
    assert re.fullmatch(STAMP + r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d: fail: unknown migration in database: "
                        r"20991231000000_from_the_future\n", res.stderr), res.stderr
    res = praefect(cfg, "sql-migrate", "-ignore-unknown")
    assert (res.returncode, res.stdout) == (0, "praefect sql-migrate: all migrations are up\n"), res.stderr
    assert status_rows(cfg)["20991231000000_from_the_future"] == "unknown migration"
    res = praefect(cfg, "serve", timeout=30)
    assert res.returncode != 0 and "unknown migration in database: 20991231000000_from_the_future" in res.stderr

    # a database upstream's praefect migrated only half-way is its business
    postgres.psql(db, "DELETE FROM schema_migrations WHERE id >= '2021'")
    res = praefect(cfg, "sql-migrate", "-ignore-unknown")
    assert res.returncode == 1
    assert "the database has 19 of upstream's 42 migrations: migrate it with upstream's praefect" in res.stderr


def test_serve_refuses_a_database_without_upstreams_migrations(postgres, tmp_path):
    cfg = config(tmp_path, postgres, postgres.create_database())
    res = praefect(cfg, "serve", timeout=30)
    assert res.returncode != 0
    assert ("tracking database: %d migrations not applied (first: 20200109161404_hello_world): "
            "run `praefect sql-migrate`" % NR_UPSTREAM) in res.stderr, res.stderr


def test_sql_ping_and_check_on_postgres(postgres, tmp_path):
    cfg = config(tmp_path, postgres, postgres.create_database())
    res = praefect(cfg, "sql-ping")
    assert (res.returncode, res.stdout) == (0, "praefect sql-ping: OK\n"), res.stderr
    bad = config(tmp_path, postgres, "no_such_database", name="bad.toml")
    res = praefect(bad, "sql-ping")
    assert res.returncode == 1
    assert re.fullmatch(STAMP + 'praefect sql-ping: fail: sql open: send ping: cannot connect to database: .*'
                        'database "no_such_database" does not exist\n', res.stderr, re.S), res.stderr

    assert praefect(cfg, "sql-migrate").returncode == 0
    res = praefect(cfg, "check", "-q", timeout=120)
    assert "Checking praefect migrations...Passed" in res.stdout, res.stdout
    assert "Checking database read/write...Passed" in res.stdout, res.stdout


def test_a_database_upstream_praefect_migrated_is_served_as_it_is(postgres, tmp_path):
    db = postgres.create_database()
    replica_path = "@cluster/repositories/aa/bb/7"
    sql = open(os.path.join(os.path.dirname(__file__), "data", "upstream-schema.sql")).read()
    (tmp_path / "schema.sql").write_text(sql.replace("@REPLICA_PATH@", replica_path))
    postgres.psql_file(db, str(tmp_path / "schema.sql"))

    src = work_repo(tmp_path)
    cluster = Cluster(tmp_path / "c", database=postgres.database_config(db), migrate=False, start=False)
    try:
        for name, node in cluster.nodes.items():
            for path in (replica_path, "@cluster/repositories/cc/dd/8"):
                dest = os.path.join(node.storages[name], path)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                shutil.copytree(src, dest, symlinks=True)
        cluster.praefect.start()

        md = cluster.praefect.metadata("@hashed/aa/bb/upstream.git")
        assert (md.repository_id, md.replica_path, md.primary, md.generation) == (7, replica_path, "gitaly-1", 2)
        assert sorted((r.storage, r.generation, r.assigned) for r in md.replicas) == [
            ("gitaly-1", 2, True), ("gitaly-2", 2, True), ("gitaly-3", 2, True)]
        behind = cluster.praefect.metadata("@hashed/cc/dd/behind.git")
        assert (behind.repository_id, behind.replica_path, behind.generation) == (
            8, "@cluster/repositories/cc/dd/8", 1)

        clone = str(tmp_path / "clone.git")
        git("clone", "-q", "--bare", "ssh://gitaly/repo.git", clone,
            env=gitaly_ssh_env(cluster.praefect, "@hashed/aa/bb/upstream.git", "upload-pack"))
        assert git("rev-parse", "main", cwd=clone) == git("rev-parse", "main", cwd=src)

        # a write goes through and bumps upstream's generation in upstream's tables
        work = str(tmp_path / "w")
        git("clone", "-q", src, work)
        (tmp_path / "w" / "new.txt").write_text("new\n")
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", "on top", cwd=work)
        push(cluster, work, "@hashed/aa/bb/upstream.git", "HEAD:main")
        wait_for(lambda: replicas_in_sync(cluster, "@hashed/aa/bb/upstream.git"), what="replication")
        assert postgres.psql(db, "SELECT generation FROM repositories WHERE repository_id = 7").stdout.strip() == "3"
        # serve added only our own table; upstream's 42 ids are as they were
        assert postgres.psql(db, "SELECT count(*) FROM schema_migrations WHERE applied_at = "
                                 "'2023-03-01 10:00:00+00'").stdout.strip() == "42"
        assert postgres.psql(db, "SELECT to_regclass('write_intents') IS NOT NULL").stdout.strip() == "t"
    finally:
        cluster.stop()


@pytest.mark.sqlite_only("sql-migrate on the SQLite file itself")
def test_sql_migrate_on_the_sqlite_store_reports_what_opening_applies(tmp_path):
    path = tmp_path / "praefect.toml"
    path.write_text("\n".join([
        'listen_addr = "127.0.0.1:0"', "", "[database]", 'sqlite_path = "%s"' % (tmp_path / "s.db"),
        "", "[[virtual_storage]]", 'name = "default"',
        "", "[[virtual_storage.node]]", 'storage = "gitaly-1"', 'address = "tcp://127.0.0.1:1"', ""]))
    cfg = str(path)
    known = list(status_rows(cfg))
    res = praefect(cfg, "sql-migrate")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("praefect sql-migrate: migrations to apply: %d\n\n" % len(known))
    assert res.stdout.endswith("\npraefect sql-migrate: OK (applied %d migrations)\n" % len(known))
    assert "== " in res.stdout and set(status_rows(cfg).values()) != {"no"}
    assert praefect(cfg, "sql-migrate").stdout == "praefect sql-migrate: all migrations are up\n"
    res = praefect(cfg, "sql-migrate-down", "-f", "1")
    assert res.returncode == 1 and "the SQLite tracking store has no down migrations" in res.stderr


@pytest.mark.no_store("starts its own PostgreSQL server, which it stops")
def test_a_lost_database_fails_writes_clearly_and_is_reconnected(tmp_path):
    pg = PgServer()  # its own server: this test stops it
    cluster = None
    try:
        cluster = Cluster(tmp_path, database=pg.database_config(pg.create_database()))
        create_repo(cluster, "r.git")
        src = work_repo(tmp_path)
        push(cluster, src, "r.git", "--all")
        wait_for(lambda: replicas_in_sync(cluster, "r.git"), what="replication")

        pg.halt()
        # routing goes on from praefect's model: reads are served
        clone = str(tmp_path / "clone.git")
        git("clone", "-q", "--bare", "ssh://gitaly/repo.git", clone,
            env=gitaly_ssh_env(cluster.praefect, "r.git", "upload-pack"))
        # a new repository needs the store: UNAVAILABLE, saying why
        try:
            create_repo(cluster, "new.git")
            raise AssertionError("created a repository without a database")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAVAILABLE, e
            assert "database connection lost" in e.details() or "database unavailable" in e.details(), e.details()

        pg.start()
        # reconnected with back-off: the store works again
        wait_for(lambda: create_repo(cluster, "new.git") or True, timeout=30, what="reconnection")
        assert cluster.praefect.metadata("new.git").relative_path == "new.git"
        assert cluster.praefect.proc.poll() is None
    finally:
        if cluster:
            cluster.stop()
        pg.stop()
