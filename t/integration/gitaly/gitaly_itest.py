"""Helpers and fixtures for tests that drive a real gitaly with grpcio and real git.

gitaly_node() starts a gitaly from the build directory (env BUILD_DIR, default
build) with a throw-away storage, a v2 auth token and Unix + TCP listeners;
`node.stub("RepositoryService")` returns a grpcio stub whose calls carry a
fresh v2 token. Protocol stubs are generated from proto/*.proto once per run.
"""
import hashlib
import hmac
import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BUILD = os.path.abspath(os.path.join(ROOT, os.environ.get("BUILD_DIR", "build")))
PROTO = os.path.join(ROOT, "proto")
TOKEN = "the-secret-token"

_gen_dir = None


def proto_modules():
    """Generate Python stubs for our .proto files (once) and return the dir."""
    global _gen_dir
    if _gen_dir is None:
        _gen_dir = tempfile.mkdtemp(prefix="gitaly-pb-")
        protos = [os.path.join(PROTO, p) for p in sorted(os.listdir(PROTO)) if p.endswith(".proto")]
        subprocess.run(
            ["protoc", "-I", PROTO, "-I", "/usr/include", "--python_out", _gen_dir,
             "--grpc_python_out", _gen_dir,
             "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin"] + protos,
            check=True)
        sys.path.insert(0, _gen_dir)
    return _gen_dir


def pb(name):
    """pb("repository") -> the repository_pb2 module."""
    proto_modules()
    return importlib.import_module(name + "_pb2")


def pb_grpc(name):
    proto_modules()
    return importlib.import_module(name + "_pb2_grpc")


def v2_token(secret, now=None):
    ts = str(int(time.time() if now is None else now))
    sig = hmac.new(secret.encode(), ts.encode(), hashlib.sha256).hexdigest()
    return "v2.%s.%s" % (sig, ts)


def auth_md(secret=TOKEN):
    return [("authorization", "Bearer " + v2_token(secret))]


# service name -> proto file that declares it
SERVICE_FILES = {
    "RepositoryService": "repository", "SSHService": "ssh", "SmartHTTPService": "smarthttp",
    "RefService": "ref", "CommitService": "commit", "BlobService": "blob",
    "OperationService": "operations", "HookService": "hook", "ServerService": "server",
    "ObjectPoolService": "objectpool", "InternalGitaly": "internal", "RemoteService": "remote",
    "DiffService": "diff", "AnalysisService": "analysis", "CleanupService": "cleanup",
    "ConflictsService": "conflicts",
    "ClusterReplicaService": "internal",
}


class _AuthInterceptor:
    """Adds a fresh v2 token to every call, as real Gitaly clients do."""

    def __init__(self, secret):
        self.secret = secret

    def _md(self, details):
        import grpc
        md = list(details.metadata or [])
        if self.secret is not None:
            md += auth_md(self.secret)
        return grpc._interceptor._ClientCallDetails(
            details.method, details.timeout, md, details.credentials,
            getattr(details, "wait_for_ready", None), getattr(details, "compression", None))

    def intercept_unary_unary(self, cont, details, req):
        return cont(self._md(details), req)

    def intercept_unary_stream(self, cont, details, req):
        return cont(self._md(details), req)

    def intercept_stream_unary(self, cont, details, it):
        return cont(self._md(details), it)

    def intercept_stream_stream(self, cont, details, it):
        return cont(self._md(details), it)


def _make_interceptor(secret):
    import grpc

    class I(_AuthInterceptor, grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
            grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
        pass
    return I(secret)


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def check_sanitizer_log(path):
    """Fail the test when a sanitizer reported anything in a server's log."""
    try:
        text = open(path, errors="replace").read()
    except FileNotFoundError:
        return
    for marker in SANITIZER_MARKERS:
        if marker in text:
            start = text.index(marker)
            raise AssertionError("sanitizer report in %s:\n%s" % (path, text[max(0, start - 200):start + 3000]))


def wait_for(cond, timeout=20.0, what="condition", interval=0.02):
    """Poll cond() until it returns something true, and return that."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("timed out waiting for " + what)


def read_pid(path):
    """The pid in a PID file, or None while it is missing or not yet written."""
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def alive(pid):
    """Whether pid runs (a zombie does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


class GitalyNode:
    def __init__(self, workdir, storages=("default",), token=TOKEN, extra_config=""):
        self.dir = workdir
        self.token = token
        self.storages = {}
        for name in storages:
            path = os.path.join(workdir, "storage-" + name)
            os.makedirs(path)
            self.storages[name] = path
        self.socket = os.path.join(workdir, "gitaly.socket")
        self.bin_dir = os.path.join(BUILD, "bin") if os.path.isdir(os.path.join(BUILD, "bin")) \
            else os.path.join(workdir, "bin")
        if not os.path.isdir(self.bin_dir):
            os.makedirs(self.bin_dir)
            for exe, sub in (("gitaly-hooks", "gitaly-hooks"), ("gitaly-ssh", "gitaly-ssh")):
                src = os.path.join(BUILD, sub, exe)
                if os.path.exists(src):
                    os.symlink(src, os.path.join(self.bin_dir, exe))
        self.config_path = os.path.join(workdir, "config.toml")
        # short: the internal socket inside it must fit a Unix socket path (108 bytes)
        self.runtime_dir = tempfile.mkdtemp(prefix="gr", dir="/tmp")
        lines = [
            'socket_path = "%s"' % self.socket,
            'listen_addr = "127.0.0.1:0"',
            'bin_dir = "%s"' % self.bin_dir,
            'runtime_dir = "%s"' % self.runtime_dir,
        ]
        for name, path in self.storages.items():
            lines += ["", "[[storage]]", 'name = "%s"' % name, 'path = "%s"' % path]
        if token:
            lines += ["", "[auth]", 'token = "%s"' % token]
        if "[daily_maintenance]" not in extra_config:
            # upstream's default window (12:00, every storage) must not repack a test's repositories
            lines += ["", "[daily_maintenance]", "disabled = true"]
        lines += ["", "[logging]", 'format = "json"', 'level = "info"']
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n" + extra_config)
        self.log_path = os.path.join(workdir, "gitaly.log")
        self.proc = None
        self.tcp_addr = None
        self._channels = []

    def start(self):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([os.path.join(BUILD, "gitaly", "gitaly"), self.config_path],
                                     stdout=self._log, stderr=self._log)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("gitaly exited: " + open(self.log_path).read())
            tcp = self._find_tcp()
            if tcp and os.path.exists(self.socket):
                self.tcp_addr = tcp
                return self
            time.sleep(0.02)
        raise RuntimeError("gitaly did not start: " + open(self.log_path).read())

    def _find_tcp(self):
        try:
            for line in open(self.log_path):
                if '"listening on ' in line and "unix:" not in line:
                    return line.split('"listening on ')[1].split('"')[0]
        except FileNotFoundError:
            pass
        return None

    def channel(self, secret=TOKEN, target=None):
        import grpc
        ch = grpc.insecure_channel(target or ("unix:" + self.socket))
        self._channels.append(ch)
        if secret is None:
            return ch
        return grpc.intercept_channel(ch, _make_interceptor(secret))

    def stub(self, service, secret=TOKEN, target=None):
        mod = pb_grpc(SERVICE_FILES[service])
        return getattr(mod, service + "Stub")(self.channel(secret, target))

    def repo(self, relative_path, storage="default", **kw):
        return pb("shared").Repository(storage_name=storage, relative_path=relative_path, **kw)

    def repo_path(self, relative_path, storage="default"):
        return os.path.join(self.storages[storage], relative_path)

    def stop(self):
        for ch in self._channels:
            ch.close()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self._log.close()
            check_sanitizer_log(self.log_path)
        # gitaly makes it again on the next start
        shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def log(self):
        return open(self.log_path).read()


@pytest.fixture
def gitaly_node(tmp_path):
    """A running gitaly with one storage named "default"."""
    node = GitalyNode(str(tmp_path / "gitaly")).start()
    yield node
    node.stop()


@pytest.fixture
def make_gitaly(tmp_path):
    """Factory for extra nodes: make_gitaly("name", storages=(...))."""
    nodes = []

    def make(name="node", **kw):
        node = GitalyNode(str(tmp_path / name), **kw).start()
        nodes.append(node)
        return node
    yield make
    for n in nodes:
        n.stop()


def git(*args, cwd=None, env=None, check=True, input=None):
    e = dict(os.environ)
    e.update({"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
              "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
              "GIT_AUTHOR_DATE": "1700000000 +0100", "GIT_COMMITTER_DATE": "1700000000 +0100",
              "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_SYSTEM": "/dev/null"})
    if env:
        e.update(env)
    r = subprocess.run(["git"] + list(args), cwd=cwd, env=e, capture_output=True, input=input)
    if check and r.returncode != 0:
        raise RuntimeError("git %s failed: %s" % (" ".join(args), r.stderr.decode(errors="replace")))
    return r.stdout.decode(errors="replace")


def make_bare_repo(path, branches=("main",), tags=(), files=None):
    """A bare repository at `path` with one commit per branch (and lightweight/annotated tags)."""
    work = path + ".work"
    os.makedirs(work)
    git("init", "-q", "-b", branches[0], work)
    for name, content in (files or {"README.md": "hello\n"}).items():
        full = os.path.join(work, name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(content)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "initial commit", cwd=work)
    for b in branches[1:]:
        git("checkout", "-q", "-b", b, cwd=work)
        with open(os.path.join(work, b.replace("/", "_") + ".txt"), "w") as f:
            f.write(b + "\n")
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", "commit on " + b, cwd=work)
    for t in tags:
        git("tag", "-a", "-m", "tag " + t, t, cwd=work)
    git("clone", "-q", "--bare", work, path)
    shutil.rmtree(work)
    return path
