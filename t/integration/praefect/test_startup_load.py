"""Praefect's start-up load reads the tracking store in pages of id ranges (docs/technical/repository-model.md,
"Loading"): every repository of a store larger than one page, with gaps in its ids, or with one id far beyond
the others (a wider range per page, one page empty), ends up in the model once, and the missing ones do not."""
import os
import sqlite3
import subprocess

import pytest

from praefect_itest import BUILD, Cluster
from gitaly_itest import pb

N = 10000          # three pages of 4,096 ids when ids are dense


def rel(i):
    return "@hashed/%02x/%02x/load-%d.git" % (i % 256, i // 256 % 256, i)


def fill(db, far):
    c = sqlite3.connect(db)
    c.execute("BEGIN")
    series = "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %d) " % N
    path = "printf('@hashed/%02x/%02x/load-%d.git', i % 256, i / 256 % 256, i)"
    c.execute(series + "INSERT INTO repositories (repository_id, virtual_storage, relative_path, generation, "
              "\"primary\", replica_path) SELECT CASE i WHEN 9999 THEN %d ELSE i END, 'default', %s, 1, "
              "'gitaly-1', printf('@cluster/repositories/%%d', i) FROM s WHERE i %% 7 != 0" % (far, path))
    for st in ("gitaly-1", "gitaly-2"):
        c.execute("INSERT INTO storage_repositories (virtual_storage, relative_path, storage, generation, "
                  "repository_id) SELECT 'default', relative_path, ?, 1, repository_id FROM repositories", (st,))
    # every fifth repository assigned to gitaly-2 and gitaly-3, the latter without a replica
    for st in ("gitaly-2", "gitaly-3"):
        c.execute("INSERT INTO repository_assignments (virtual_storage, relative_path, storage, repository_id) "
                  "SELECT 'default', relative_path, ?, repository_id FROM repositories "
                  "WHERE repository_id % 5 = 0", (st,))
    c.execute("UPDATE sequences SET value = ? WHERE name = 'repositories_repository_id_seq'", (far,))
    c.execute("COMMIT")
    c.close()


# 9999 stays (dense ids: ranges of 4,096), or moves to 30,000: ranges of 3 x 4,096 ids, the second one empty
@pytest.mark.sqlite_only("fills the SQLite file directly with 8,600 repositories; the paged load query of PostgreSQL is covered by test_store_postgres and the suite's [postgres] runs")
@pytest.mark.parametrize("far", [9999, 30000])
def test_a_store_of_several_pages_loads_every_repository_once(tmp_path, far):
    c = Cluster(tmp_path, start=False)
    try:
        p = c.praefect
        subprocess.run([os.path.join(BUILD, "praefect", "praefect"), "-config", p.config_path, "sql-migrate"],
                       check=True, capture_output=True)
        fill(p.db, far)
        p.start()
        expected = sum(1 for i in range(1, N + 1) if i % 7)
        assert "loaded %d repositories from the tracking store" % expected in p.log()

        rs = p.stub("RepositoryService")
        exists = pb("repository").RepositoryExistsRequest
        # first, last and middle of each page, and the far id's path
        for i in (1, 4094, 4096, 4097, 8192, 8193, 9998, 9999, 10000):
            assert rs.RepositoryExists(exists(repository=p.repo(rel(i)))).exists, i
        for i in (7, 4095, 8190, 10003):   # multiples of 7 were never stored; 10003 is beyond them
            assert not rs.RepositoryExists(exists(repository=p.repo(rel(i)))).exists, i

        # the record of a page's repository carries its replicas and assignments
        md = p.metadata(rel(10000))
        assert md.repository_id == 10000
        got = {r.storage: (r.generation, r.assigned) for r in md.replicas}
        assert got == {"gitaly-1": (1, False), "gitaly-2": (1, True), "gitaly-3": (-1, True)}, got
        md = p.metadata(rel(9999))
        assert md.repository_id == far
        assert {r.storage: r.generation for r in md.replicas} == {"gitaly-1": 1, "gitaly-2": 1, "gitaly-3": -1}
    finally:
        c.stop()
