"""pytest fixtures for t/integration/gitaly: everything lives in gitaly_itest.py.

Import helpers in tests with `from gitaly_itest import ...` (a module name that
no other directory uses, unlike `conftest`).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from gitaly_itest import *  # noqa: E402,F401,F403  (fixtures: gitaly_node, make_gitaly)
