"""pytest fixtures for t/integration/praefect; helpers live in praefect_itest.py."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "gitaly"))

from praefect_itest import Cluster  # noqa: E402
from gitaly_itest import make_gitaly  # noqa: E402,F401  (fixture: a standalone node)


@pytest.fixture
def cluster(tmp_path):
    """Three gitaly nodes (gitaly-1..3) behind one praefect, virtual storage "default"."""
    c = Cluster(tmp_path)
    yield c
    c.stop()
