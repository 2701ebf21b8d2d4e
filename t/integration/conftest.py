"""Fixtures for the gRPC core integration tests: Python stubs, binaries, test servers.

Environment:
  BUILD_DIR        meson build directory holding t/integration/grpc-testserver
                   and grpc-testclient (default: <repo>/build; relative paths
                   are taken from the repository root), e.g. BUILD_DIR=build-asan.
  GRPC_ITEST_RSS_MIB  override the server RSS bound of the streaming tests
                   (default 100, which holds for plain and ASan+UBSan builds:
                   servers are started with a small ASan quarantine).
"""
import atexit
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _generate_stubs():
    out = tempfile.mkdtemp(prefix="grpc-itest-stubs-")
    atexit.register(shutil.rmtree, out, True)
    subprocess.run(
        ["protoc", f"--proto_path={HERE}", f"--proto_path={ROOT / 'proto'}",
         f"--python_out={out}", f"--grpc_python_out={out}",
         "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
         str(HERE / "testsvc.proto"), str(ROOT / "proto" / "health.proto")],
        check=True)
    sys.path.insert(0, out)


# Before the test module is collected: it imports the generated modules.
_generate_stubs()

import grpc_itest  # noqa: E402  (needs the stubs on sys.path)
from pg_server import PgServer  # noqa: E402


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL 15 server per test process (pg_server.py); tests create their own databases."""
    s = PgServer()
    yield s
    s.stop()


@pytest.fixture
def tmpdir_short():
    # Unix socket paths are limited to 107 bytes: pytest's tmp_path can be longer.
    d = tempfile.mkdtemp(prefix="grpc-itest-")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def start_server(tmpdir_short):
    """Factory: start_server(*args, addrs=None) -> grpc_itest.Server.

    Every server still running at teardown gets SIGTERM and must exit 0
    (a sanitizer report or a leak makes the exit status non-zero).
    """
    servers = []
    counter = [0]

    def start(*args, addrs=None):
        counter[0] += 1
        if addrs is None:
            addrs = [f"unix:{tmpdir_short}/s{counter[0]}.sock", "127.0.0.1:0"]
        s = grpc_itest.Server(list(args), addrs)
        servers.append(s)
        return s

    yield start
    bad = []
    for s in servers:
        rc = s.stop()
        if rc != 0 and not s.expected_exit:
            bad.append(f"server pid {s.pid} exited with {rc}")
    if bad:
        pytest.fail("; ".join(bad))


@pytest.fixture
def server(start_server):
    return start_server()
