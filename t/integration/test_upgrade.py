"""Zero-downtime upgrades (SIGHUP) of gitaly and praefect under gitaly-wrapper, with RPCs and a clone in flight."""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import grpc
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "gitaly"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "praefect"))
from gitaly_itest import BUILD, TOKEN, GitalyNode, _make_interceptor, alive, git, pb, pb_grpc, read_pid, wait_for  # noqa: E402
from praefect_itest import NODE_TOKEN, PRAEFECT_TOKEN, Praefect  # noqa: E402

WRAPPER = os.path.join(BUILD, "gitaly-wrapper", "gitaly-wrapper")
GITALY = os.path.join(BUILD, "gitaly", "gitaly")
PRAEFECT = os.path.join(BUILD, "praefect", "praefect")
GITALY_SSH = os.path.join(BUILD, "gitaly-ssh", "gitaly-ssh")

BIG_MB = 64
# The clone is slowed down on the client side so that both upgrades happen
# while it streams: 64 MiB at 6 MiB/s takes about ten seconds.
CLONE_RATE = 6 << 20

THROTTLE = r"""
import os, sys, time
rate = int(sys.argv[1])
start, sent = time.time(), 0
while True:
    b = os.read(0, 65536)
    if not b:
        break
    mv = memoryview(b)
    while mv:
        mv = mv[os.write(1, mv):]
    sent += len(b)
    ahead = sent / rate - (time.time() - start)
    if ahead > 0:
        time.sleep(ahead)
"""


def find_tcp(log_path):
    for line in open(log_path):
        if '"listening on ' in line and "unix:" not in line:
            return line.split('"listening on ')[1].split('"')[0]
    return None


class Wrapped:
    """A daemon run by gitaly-wrapper with a PID file, as runit would run it."""

    def __init__(self, argv, pid_file, log_path, ready):
        self.argv = argv
        self.pid_file = pid_file
        self.log_path = log_path
        self.ready = ready
        self.seen = set()
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "ab")
        env = dict(os.environ, GITALY_PID_FILE=self.pid_file)
        env.pop("GITALY_UPGRADES_ENABLED", None)
        self.proc = subprocess.Popen([WRAPPER] + self.argv, env=env, stdout=self.log, stderr=self.log)
        pid = wait_for(lambda: self.pid(), what="the daemon's pid file")
        wait_for(self.ready, what="the daemon to serve")
        return pid

    def pid(self):
        p = read_pid(self.pid_file)
        if p:
            self.seen.add(p)
        return p

    def upgrade(self):
        """SIGHUP through the wrapper; returns (old pid, new pid) once the new one wrote the PID file."""
        old = self.pid()
        self.proc.send_signal(signal.SIGHUP)
        new = wait_for(lambda: self.pid() != old and alive(self.pid()) and self.pid(), what="the new process")
        return old, new

    def text(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.pid()
        for p in self.seen:
            if alive(p):
                os.kill(p, signal.SIGKILL)
        self.log.close()
        self.proc = None


def channel(target, secret):
    # Every channel gets its own connections (grpcio shares them by default).
    ch = grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
    return ch, grpc.intercept_channel(ch, _make_interceptor(secret))


class CallLoop(threading.Thread):
    """Calls RepositoryExists back to back: on long-lived channels and on a fresh connection each time."""

    def __init__(self, targets, secret, repo):
        super().__init__(daemon=True)
        self.targets, self.secret, self.repo = targets, secret, repo
        self.ok = 0
        self.failures = []
        self.halt = threading.Event()

    def call(self, ch):
        stub = pb_grpc("repository").RepositoryServiceStub(ch)
        r = stub.RepositoryExists(pb("repository").RepositoryExistsRequest(repository=self.repo), timeout=15)
        assert r.exists

    def run(self):
        long_lived = [channel(t, self.secret) for t in self.targets]
        try:
            while not self.halt.is_set():
                for i, t in enumerate(self.targets):
                    for fresh in (False, True):
                        raw, ch = channel(t, self.secret) if fresh else long_lived[i]
                        try:
                            self.call(ch)
                            self.ok += 1
                        except Exception as e:  # noqa: BLE001 - every failure is reported
                            self.failures.append("%s%s: %r" % (t, " (new connection)" if fresh else "", e))
                        finally:
                            if fresh:
                                raw.close()
        finally:
            for raw, _ in long_lived:
                raw.close()

    def stop(self):
        self.halt.set()
        self.join(30)


def make_big_repo(path, mb=BIG_MB):
    """A bare repository at `path` whose one commit holds `mb` MiB of random (incompressible) data, packed."""
    work = path + ".work"
    os.makedirs(work)
    for i in range(16):
        with open(os.path.join(work, "blob%02d.bin" % i), "wb") as f:
            f.write(os.urandom((mb << 20) // 16))
    if not os.path.isdir(path):
        git("init", "-q", "--bare", "-b", "main", path)
    # random data neither compresses nor deltifies: do not spend minutes trying
    for key, value in (("core.compression", "0"), ("pack.compression", "0"), ("pack.window", "0"),
                       ("core.bigFileThreshold", "1m")):
        git("-C", path, "config", key, value)
    tree = ["--git-dir=" + path, "--work-tree=" + work]
    git(*tree, "add", "-A")
    git(*tree, "commit", "-q", "-m", "big")
    git("-C", path, "symbolic-ref", "HEAD", "refs/heads/main")
    git("-C", path, "repack", "-adq")
    head = git("-C", path, "rev-parse", "refs/heads/main").strip()
    shutil.rmtree(work)
    return head


def start_slow_clone(tmp, address, token, storage, relative_path, dest):
    script = os.path.join(tmp, "slow-ssh.sh")
    throttle = os.path.join(tmp, "throttle.py")
    with open(throttle, "w") as f:
        f.write(THROTTLE)
    with open(script, "w") as f:
        f.write('#!/bin/sh\n"%s" upload-pack "$@" | /usr/bin/python3 "%s" %d\n' % (GITALY_SSH, throttle, CLONE_RATE))
    os.chmod(script, 0o755)
    payload = '{"repository":{"storageName":"%s","relativePath":"%s"}}' % (storage, relative_path)
    env = dict(os.environ, GIT_SSH_COMMAND=script, GIT_SSH_VARIANT="simple", GITALY_PAYLOAD=payload,
               GITALY_ADDRESS=address, GITALY_TOKEN=token, GIT_CONFIG_GLOBAL="/dev/null",
               GIT_CONFIG_SYSTEM="/dev/null")
    log = open(os.path.join(tmp, "clone.log"), "wb")
    proc = subprocess.Popen(["git", "clone", "-q", "--bare", "ssh://gitaly/repo.git", dest],
                            env=env, stdout=log, stderr=log)
    proc.log_path = log.name

    def receiving():
        packdir = os.path.join(dest, "objects", "pack")
        try:
            return any(n.startswith("tmp_pack_") and os.path.getsize(os.path.join(packdir, n)) > (4 << 20)
                       for n in os.listdir(packdir))
        except FileNotFoundError:
            return False
    wait_for(lambda: receiving() or proc.poll() is not None, what="the clone to receive data")
    assert proc.poll() is None, "clone ended early: " + open(proc.log_path).read()
    return proc


def finish_clone(proc, dest, head):
    assert proc.wait(120) == 0, open(proc.log_path).read()
    assert git("-C", dest, "rev-parse", "refs/heads/main").strip() == head


def gitaly_serves(node, secret):
    raw, ch = channel("unix:" + node.socket, secret)
    try:
        stub = pb_grpc("repository").RepositoryServiceStub(ch)
        repo = node.repo("x.git", storage=next(iter(node.storages)))
        stub.RepositoryExists(pb("repository").RepositoryExistsRequest(repository=repo), timeout=5)
        return True
    except grpc.RpcError:
        return False
    finally:
        raw.close()


def wrapped_gitaly(workdir, binary=GITALY, storages=("default",), token=TOKEN):
    node = GitalyNode(workdir, storages=storages, token=token)
    w = Wrapped([binary, node.config_path], os.path.join(workdir, "gitaly.pid"), node.log_path,
                lambda: os.path.exists(node.socket) and find_tcp(node.log_path) and gitaly_serves(node, token))
    return node, w


@pytest.fixture
def cleanup():
    things = []
    yield things
    for t in reversed(things):
        t.stop()


def test_gitaly_upgrade_under_load(tmp_path, cleanup):
    node, w = wrapped_gitaly(str(tmp_path / "gitaly"))
    cleanup += [node, w]
    head = make_big_repo(node.repo_path("big.git"))
    w.start()
    tcp = find_tcp(node.log_path)

    loop = CallLoop(["unix:" + node.socket, tcp], TOKEN, node.repo("big.git"))
    cleanup.append(loop)
    loop.start()
    dest = str(tmp_path / "clone.git")
    clone = start_slow_clone(str(tmp_path), "unix:" + node.socket, TOKEN, "default", "big.git", dest)

    old, new = w.upgrade()
    before = loop.ok
    wait_for(lambda: loop.ok > before + 20, what="calls served by the new gitaly")
    # the old gitaly drains the clone it serves; it stopped accepting
    assert clone.poll() is None, "the clone ended before the upgrade finished"
    assert alive(old)
    finish_clone(clone, dest, head)
    wait_for(lambda: not alive(old), what="the old gitaly to exit after draining")
    loop.stop()
    assert not loop.failures, loop.failures[:5]
    assert loop.ok > 50

    text = w.text()
    assert "upgrade: took over inherited listener unix:%s" % node.socket in text
    assert find_tcp(node.log_path) == tcp  # the same port: the socket itself was handed over
    assert "new_process=%d" % new in text
    assert w.proc.poll() is None, "the wrapper must stay up"
    assert read_pid(w.pid_file) == new
    # the wrapper now forwards to the new gitaly
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(20) == 0
    assert not alive(new)
    assert not os.path.exists(node.socket), "a stopped gitaly removes its socket"


def test_cluster_upgrade_gitaly_then_praefect(tmp_path, cleanup):
    node, gw = wrapped_gitaly(str(tmp_path / "gitaly-1"), storages=("gitaly-1",), token=NODE_TOKEN)
    cleanup += [node, gw]
    gw.start()
    # A loaded test machine must not make the node look dead: that is not what this test is about.
    pr = Praefect(str(tmp_path / "praefect"), {"gitaly-1": node},
                  extra='\n[failover]\nhealth_check_timeout = "5s"\nunhealthy_after = "20s"\n')
    pw = Wrapped([PRAEFECT, "-config", pr.config_path], str(tmp_path / "praefect" / "praefect.pid"),
                 pr.log_path, lambda: os.path.exists(pr.socket) and find_tcp(pr.log_path))
    cleanup += [pr, pw]
    pw.start()

    repo = pr.repo("group/big.git")
    pr.stub("RepositoryService").CreateRepository(pb("repository").CreateRepositoryRequest(repository=repo),
                                                  timeout=10)
    replica = pr.metadata("group/big.git").replica_path
    head = make_big_repo(os.path.join(node.storages["gitaly-1"], replica))

    loop = CallLoop(["unix:" + pr.socket, find_tcp(pr.log_path)], PRAEFECT_TOKEN, repo)
    cleanup.append(loop)
    loop.start()
    dest = str(tmp_path / "clone.git")
    clone = start_slow_clone(str(tmp_path), "unix:" + pr.socket, PRAEFECT_TOKEN, "default",
                             "group/big.git", dest)

    g_old, g_new = gw.upgrade()
    before = loop.ok
    wait_for(lambda: loop.ok > before + 20, what="calls after the gitaly upgrade")
    p_old, p_new = pw.upgrade()
    before = loop.ok
    wait_for(lambda: loop.ok > before + 20, what="calls after the praefect upgrade")
    assert clone.poll() is None, "the clone ended before both upgrades finished"
    assert alive(g_old) and alive(p_old), "the old processes drain the clone"
    finish_clone(clone, dest, head)
    wait_for(lambda: not alive(g_old) and not alive(p_old), what="the old processes to exit")
    loop.stop()
    assert not loop.failures, loop.failures[:5]

    for w, new in ((gw, g_new), (pw, p_new)):
        assert w.proc.poll() is None
        assert read_pid(w.pid_file) == new
        assert "new_process=%d" % new in w.text()
    assert "upgrade: took over inherited listener unix:%s" % pr.socket in pr.log()


def test_broken_new_binary_keeps_old_gitaly_serving(tmp_path, cleanup):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    binary = str(bindir / "gitaly")
    shutil.copy2(GITALY, binary)
    node, w = wrapped_gitaly(str(tmp_path / "gitaly"), binary=binary)
    cleanup += [node, w]
    make_big_repo(node.repo_path("small.git"), mb=1)
    first = w.start()

    loop = CallLoop(["unix:" + node.socket], TOKEN, node.repo("small.git"))
    cleanup.append(loop)
    loop.start()

    # "install" a binary that cannot start, then ask for an upgrade
    with open(binary + ".new", "w") as f:
        f.write("#!/bin/sh\necho 'broken gitaly' >&2\nexit 1\n")
    os.chmod(binary + ".new", 0o755)
    os.replace(binary + ".new", binary)
    w.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "upgrade failed, this process keeps serving" in w.text(), what="the failed upgrade")
    before = loop.ok
    wait_for(lambda: loop.ok > before + 20, what="calls after the failed upgrade")
    assert "broken gitaly" in w.text()
    assert read_pid(w.pid_file) == first and alive(first)
    assert w.proc.poll() is None

    # a working binary again: the next SIGHUP upgrades
    shutil.copy2(GITALY, binary + ".new")
    os.replace(binary + ".new", binary)
    old, new = w.upgrade()
    assert old == first
    before = loop.ok
    wait_for(lambda: loop.ok > before + 20, what="calls served by the new gitaly")
    wait_for(lambda: not alive(first), what="the old gitaly to exit")
    loop.stop()
    assert not loop.failures, loop.failures[:5]


def test_sighup_without_upgrades_is_harmless(tmp_path, cleanup):
    node = GitalyNode(str(tmp_path / "gitaly"))
    cleanup.append(node)
    pid_file = str(tmp_path / "gitaly.pid")
    os.environ["GITALY_PID_FILE"] = pid_file
    try:
        node.start()
    finally:
        del os.environ["GITALY_PID_FILE"]
    wait_for(lambda: read_pid(pid_file) == node.proc.pid, what="the pid file")
    node.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "upgrades are disabled" in node.log(), what="the SIGHUP to be logged")
    time.sleep(0.3)
    assert node.proc.poll() is None
    assert gitaly_serves(node, TOKEN)
    assert read_pid(pid_file) == node.proc.pid
    assert "upgrade: started new process" not in node.log()


def test_sigterm_lets_inflight_clone_finish(tmp_path, cleanup):
    node, w = wrapped_gitaly(str(tmp_path / "gitaly"))
    cleanup += [node, w]
    head = make_big_repo(node.repo_path("big.git"), mb=32)
    pid = w.start()
    dest = str(tmp_path / "clone.git")
    clone = start_slow_clone(str(tmp_path), "unix:" + node.socket, TOKEN, "default", "big.git", dest)
    w.proc.send_signal(signal.SIGTERM)
    # no new connections, but the clone in flight completes
    wait_for(lambda: not gitaly_serves(node, TOKEN), what="gitaly to stop accepting")
    assert alive(pid)
    finish_clone(clone, dest, head)
    assert w.proc.wait(20) == 0
    assert not alive(pid)
