"""pytest fixtures for t/integration/praefect; helpers live in praefect_itest.py."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "gitaly"))

import praefect_itest  # noqa: E402
from praefect_itest import Cluster  # noqa: E402
from gitaly_itest import make_gitaly  # noqa: E402,F401  (fixture: a standalone node)


@pytest.fixture
def cluster(tmp_path, store_backend):
    """Three gitaly nodes (gitaly-1..3) behind one praefect, virtual storage "default"."""
    c = Cluster(tmp_path)
    yield c
    c.stop()


def pytest_configure(config):
    config.addinivalue_line("markers", "both_stores: run the test on the SQLite and on the PostgreSQL store")


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("both_stores"):
        metafunc.parametrize("store_backend", ["sqlite", "postgres"], indirect=True)


@pytest.fixture(autouse=True)
def store_backend(request):
    """sqlite, or postgres for a both_stores test's second run: every praefect it starts gets a fresh database."""
    backend = getattr(request, "param", "sqlite")
    if backend == "postgres":
        pg = request.getfixturevalue("postgres")
        praefect_itest.STORE["database"] = pg.database_config(pg.create_database())
    yield backend
    praefect_itest.STORE["database"] = None
