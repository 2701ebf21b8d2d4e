"""gitaly-wrapper: adopting or spawning the daemon named by GITALY_PID_FILE, forwarding signals, exiting with it."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "gitaly"))
from gitaly_itest import BUILD, TOKEN, GitalyNode, _make_interceptor, alive, pb, pb_grpc, read_pid  # noqa: E402
from gitaly_itest import wait_for as itest_wait_for  # noqa: E402

WRAPPER = os.path.join(BUILD, "gitaly-wrapper", "gitaly-wrapper")
GITALY = os.path.join(BUILD, "gitaly", "gitaly")


def wait_for(cond, timeout=15.0, what="condition"):
    return itest_wait_for(cond, timeout, what, interval=0.05)


def ppid(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def run_wrapper(args, env, log, **kw):
    e = dict(os.environ)
    e.pop("GITALY_PID_FILE", None)
    e.pop("WRAPPER_JSON_LOGGING", None)
    e.update(env)
    return subprocess.Popen([WRAPPER] + args, env=e, stdout=log, stderr=log, **kw)


class Node:
    """A gitaly node whose process is started by a wrapper (or by the test), with a PID file."""

    def __init__(self, tmp_path):
        self.node = GitalyNode(str(tmp_path / "gitaly"))
        self.pid_file = str(tmp_path / "gitaly.pid")
        self.log_path = self.node.log_path
        self.log = open(self.log_path, "ab")
        self.procs = []

    def wrapper(self, json_logs=False, extra_env=None):
        env = {"GITALY_PID_FILE": self.pid_file}
        if json_logs:
            env["WRAPPER_JSON_LOGGING"] = "true"
        env.update(extra_env or {})
        w = run_wrapper([GITALY, self.node.config_path], env, self.log)
        self.procs.append(w)
        return w

    def serving(self):
        # A channel of its own (grpcio shares connections between channels by
        # default): an idle connection to a process that has since stopped
        # fails its next call, which is not what these tests are about.
        import grpc
        ch = grpc.insecure_channel("unix:" + self.node.socket, options=[("grpc.use_local_subchannel_pool", 1)])
        try:
            stub = pb_grpc("repository").RepositoryServiceStub(grpc.intercept_channel(ch, _make_interceptor(TOKEN)))
            r = stub.RepositoryExists(
                pb("repository").RepositoryExistsRequest(repository=self.node.repo("none.git")), timeout=5)
            return r.exists is False
        except Exception as e:  # noqa: BLE001 - not up yet
            self.last_error = e
            return False
        finally:
            ch.close()

    def wait_serving(self, pid):
        wait_for(lambda: read_pid(self.pid_file) == pid, what="pid file naming %d" % pid)
        wait_for(self.serving, what="gitaly to serve")

    def text(self):
        with open(self.log_path) as f:
            return f.read()

    def cleanup(self):
        pids = [p.pid for p in self.procs]
        daemon = read_pid(self.pid_file)
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if daemon and daemon not in pids and alive(daemon):
            os.kill(daemon, signal.SIGTERM)
            wait_for(lambda: not alive(daemon), what="gitaly to stop")
        self.node.stop()
        self.log.close()


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path)
    yield n
    n.cleanup()


def wrapper_lines(text):
    return [line for line in text.splitlines() if "wrapper=" in line or '"wrapper":' in line]


def test_exits_1_without_pid_file(tmp_path):
    with open(tmp_path / "log", "wb") as log:
        for env in ({}, {"GITALY_PID_FILE": ""}):
            w = run_wrapper([GITALY, "config.toml"], env, log)
            assert w.wait(10) == 1
    text = open(tmp_path / "log").read()
    assert text.count('missing pid file ENV variable \\"GITALY_PID_FILE\\"') == 2
    assert "spawning" not in text


def test_exits_1_without_binary(tmp_path):
    with open(tmp_path / "log", "wb") as log:
        w = run_wrapper([], {"GITALY_PID_FILE": str(tmp_path / "pid")}, log)
        assert w.wait(10) == 1
    text = open(tmp_path / "log").read()
    assert "usage: " in text and "forking_binary [args]" in text


def test_spawns_when_pid_file_is_absent(node):
    w = node.wrapper()
    pid = wait_for(lambda: read_pid(node.pid_file), what="pid file")
    node.wait_serving(pid)
    assert ppid(pid) == w.pid
    with open("/proc/%d/environ" % pid, "rb") as f:
        assert b"GITALY_UPGRADES_ENABLED=true" in f.read().split(b"\0")
    text = node.text()
    assert "pid file does not exist" in text and "spawning a process" in text
    # every line of the wrapper names it
    lines = wrapper_lines(text)
    assert lines and all("wrapper=%d" % w.pid in line for line in lines)
    assert "monitoring process\" pid=%d wrapper=%d process=%d" % (w.pid, w.pid, pid) in text


@pytest.mark.parametrize("content", ["stale", "garbage", "other-program"])
def test_spawns_when_pid_file_names_no_gitaly(node, content):
    other = None
    if content == "stale":
        p = subprocess.Popen(["true"])
        p.wait()
        text = str(p.pid)
    elif content == "garbage":
        text = "not a pid\n"
    else:
        other = subprocess.Popen(["sleep", "60"])
        text = str(other.pid)
    with open(node.pid_file, "w") as f:
        f.write(text)
    before = read_pid(node.pid_file)
    try:
        w = node.wrapper()
        pid = wait_for(lambda: read_pid(node.pid_file) not in (None, before) and read_pid(node.pid_file),
                       what="the new gitaly's pid")
        node.wait_serving(pid)
        assert ppid(pid) == w.pid
        assert "spawning a process" in node.text()
        if content == "garbage":
            assert "pid file does not hold a process id" in node.text()
        if other:
            assert other.poll() is None, "the wrapper must leave the other program alone"
            # the wrapper follows gitaly, not the program the file named at first
            assert "process=%d" % other.pid not in node.text()
    finally:
        if other:
            other.kill()
            other.wait()


def test_adopts_running_gitaly_and_forwards_signals(node):
    env = dict(os.environ, GITALY_PID_FILE=node.pid_file)
    gitaly = subprocess.Popen([GITALY, node.node.config_path], env=env, stdout=node.log, stderr=node.log)
    try:
        node.wait_serving(gitaly.pid)
        w = node.wrapper(json_logs=True)
        wait_for(lambda: "adopting a process" in node.text(), what="adoption")
        time.sleep(0.5)
        # nothing else was started: the PID file still names the adopted gitaly
        assert read_pid(node.pid_file) == gitaly.pid
        assert "spawning a process" not in node.text()
        entries = [json.loads(line) for line in node.text().splitlines()
                   if line.startswith("{") and '"wrapper":' in line]
        assert entries and all(e["wrapper"] == w.pid for e in entries)
        assert any(e["msg"] == "monitoring process" and e["process"] == gitaly.pid for e in entries)

        # the supervisor stops the wrapper: gitaly gets the signal, then the wrapper exits
        w.send_signal(signal.SIGTERM)
        assert gitaly.wait(15) == 0
        assert w.wait(15) == 0
        entries = [json.loads(line) for line in node.text().splitlines()
                   if line.startswith("{") and '"wrapper":' in line]
        assert any(e["msg"] == "forwarding signal" and e["signal"] == "Terminated" for e in entries)
        assert entries[-1]["msg"] == "wrapper for process shutting down"
        assert entries[-1]["level"] == "error"
    finally:
        if gitaly.poll() is None:
            gitaly.kill()
            gitaly.wait()


def test_exits_when_spawned_daemon_exits(tmp_path):
    pid_file = str(tmp_path / "pid")
    with open(tmp_path / "log", "wb") as log:
        w = run_wrapper(["/bin/sh", "-c", "exit 3"], {"GITALY_PID_FILE": pid_file}, log)
        assert w.wait(10) == 3
    text = open(tmp_path / "log").read()
    assert "spawning a process" in text
    assert "wrapper for process shutting down" in text.splitlines()[-1]


def test_wrapper_follows_pid_file_and_stays_up(node):
    """A new process that writes the PID file is followed; the wrapper stays up while one lives."""
    w = node.wrapper()
    first = wait_for(lambda: read_pid(node.pid_file), what="pid file")
    node.wait_serving(first)
    w.send_signal(signal.SIGHUP)
    second = wait_for(lambda: read_pid(node.pid_file) != first and read_pid(node.pid_file),
                      what="a new gitaly")
    wait_for(lambda: not alive(first), what="the old gitaly to exit")
    wait_for(lambda: "new_process=%d" % second in node.text(), what="the wrapper to follow")
    time.sleep(0.5)
    assert w.poll() is None
    assert node.serving(), node.last_error
    # signals now go to the new process
    w.send_signal(signal.SIGTERM)
    assert w.wait(15) == 0
    assert not alive(second)
