"""pytest fixtures for t/integration/praefect; helpers live in praefect_itest.py.

Every test runs once per tracking-store backend, `[sqlite]` and `[postgres]`
(docs/technical/store.md, "Tests"). GITALYC_STORES (a comma list, default
"sqlite,postgres") limits the backends; tests marked `both_stores` run on both
whatever it says. Exceptions:
  - a test that takes the `postgres` fixture itself picks its store (multi-praefect
    tests, test_store_postgres) and is not parametrised;
  - `sqlite_only(reason)`: the test is about the SQLite file itself;
  - `no_store(reason)`: the test starts no praefect on the suite's store (its own
    config, or none), so a second run would repeat the first. A `[postgres]` run in
    which no praefect took the suite's database fails, asking for this marker.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "gitaly"))

import praefect_itest  # noqa: E402
from praefect_itest import Cluster  # noqa: E402
from gitaly_itest import BUILD, make_gitaly  # noqa: E402,F401  (fixture: a standalone node)

BACKENDS = ("sqlite", "postgres")


def _stores():
    names = [s.strip() for s in os.environ.get("GITALYC_STORES", ",".join(BACKENDS)).split(",") if s.strip()]
    bad = [s for s in names if s not in BACKENDS]
    if bad or not names:
        raise pytest.UsageError("GITALYC_STORES=%r: a comma list of %s" % (os.environ.get("GITALYC_STORES"),
                                                                         ", ".join(BACKENDS)))
    return names


STORES = list(BACKENDS)  # pytest_configure reads GITALYC_STORES


@pytest.fixture
def cluster(tmp_path, store_backend):
    """Three gitaly nodes (gitaly-1..3) behind one praefect, virtual storage "default"."""
    c = Cluster(tmp_path)
    yield c
    c.stop()


def pytest_configure(config):
    STORES[:] = _stores()
    config.addinivalue_line("markers", "both_stores: run the test on both stores even when GITALYC_STORES "
                                       "names only one")
    config.addinivalue_line("markers", "sqlite_only(reason): the test is about the SQLite store itself")
    config.addinivalue_line("markers", "no_store(reason): the test starts no praefect on the suite's store")


def pytest_generate_tests(metafunc):
    if "postgres" in metafunc.fixturenames:
        return  # picks its store itself
    only = metafunc.definition.get_closest_marker("sqlite_only") or metafunc.definition.get_closest_marker("no_store")
    if only is not None:
        if not only.args:
            raise pytest.UsageError("%s: %s needs a reason" % (metafunc.definition.nodeid, only.name))
        if only.name == "no_store":
            return  # one run, on the default (SQLite) settings
        backends = ["sqlite"]
    elif metafunc.definition.get_closest_marker("both_stores"):
        backends = list(BACKENDS)
    else:
        backends = STORES
    params = [pytest.param(b, marks=pytest.mark.skip(reason="GITALYC_STORES=%s" % ",".join(STORES)))
              if b not in STORES and only is not None else b for b in backends]
    metafunc.parametrize("store_backend", params, indirect=True)


@pytest.fixture(scope="session")
def pg_template(postgres):
    """A database of this worker's server with praefect's migrations applied: each test's database is
    a copy of it (CREATE DATABASE ... TEMPLATE), not a fresh migration."""
    import subprocess
    name = postgres.create_database()
    cfg = os.path.join(postgres.dir, "template.toml")
    with open(cfg, "w") as f:
        f.write('listen_addr = "127.0.0.1:0"\n[[virtual_storage]]\nname = "default"\n'
                '[[virtual_storage.node]]\nstorage = "s"\naddress = "unix:/nonexistent"\n'
                '[database]\n' + "\n".join(postgres.database_config(name)) + "\n")
    subprocess.run([os.path.join(BUILD, "praefect", "praefect"), "-config", cfg, "sql-migrate"],
                   check=True, capture_output=True)
    return name


@pytest.fixture(autouse=True)
def store_backend(request):
    """The backend of the test's run: every praefect it starts without a `database` of its own gets
    the SQLite file in its directory, or a fresh, migrated PostgreSQL database."""
    backend = getattr(request, "param", "sqlite")
    if backend == "postgres":
        pg = request.getfixturevalue("postgres")
        template = request.getfixturevalue("pg_template")
        name = pg.create_database(template=template)
        praefect_itest.STORE.update(database=pg.database_config(name), migrated=True, server=pg, dbname=name,
                                    template=template, used=False)
    yield backend
    used = praefect_itest.STORE["used"]
    praefect_itest.STORE.update(database=None, migrated=False, server=None, dbname=None, template=None, used=False)
    if backend == "postgres" and not used:
        pytest.fail("no praefect of this test used the PostgreSQL store: the [postgres] run repeats the "
                    "[sqlite] one; mark the test no_store(reason)", pytrace=False)
