"""[[concurrency]]: calls beyond max_per_repo wait per repository, a full queue
or a long wait is refused with RESOURCE_EXHAUSTED, and the call log says so.

SSHUploadPack holds its slot while git upload-pack waits for the client, so a
test decides when a slot frees by closing the first call's stdin."""
import os
import queue
import subprocess
import threading
import time

import grpc
import pytest

from gitaly_itest import BUILD, GitalyNode, make_bare_repo, pb
from helpers_reads import status_detail
from helpers_transport import log_calls

UPLOAD_PACK = "/gitaly.SSHService/SSHUploadPack"


def limits(rpc=UPLOAD_PACK, **kw):
    lines = ["", "[[concurrency]]", 'rpc = "%s"' % rpc]
    for k, v in kw.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, str):
            v = '"%s"' % v
        lines.append("%s = %s" % (k, v))
    return "\n".join(lines) + "\n"


class UploadPack:
    """An SSHUploadPack call run in a thread: responses land in a queue, stdin is fed on demand."""

    def __init__(self, node, relative_path, timeout=20):
        ssh = pb("ssh")
        self.req = queue.Queue()
        self.req.put(ssh.SSHUploadPackRequest(repository=node.repo(relative_path)))
        self.out = queue.Queue()
        self.error = None
        self.statuses = []
        self.call = node.stub("SSHService").SSHUploadPack(iter(self.req.get, None), timeout=timeout)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for r in self.call:
                if r.stdout:
                    self.out.put(r.stdout)
                if r.HasField("exit_status"):
                    self.statuses.append(r.exit_status.value)
        except grpc.RpcError as e:
            self.error = e

    def advertised(self, timeout):
        """Whether git's ref advertisement arrived within `timeout` seconds."""
        try:
            return b"refs/heads/main" in self.out.get(timeout=timeout)
        except queue.Empty:
            return False

    def send(self, data):
        self.req.put(pb("ssh").SSHUploadPackRequest(stdin=data))

    def end(self):
        """A flush ends the negotiation; upload-pack exits 0 and the slot frees."""
        self.send(b"0000")
        self.req.put(None)

    def cancel(self):
        self.call.cancel()

    def wait(self, timeout=20):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "call did not end"
        return self

    def ok(self):
        """The call ended well: upload-pack exited 0 (success sends no exit status)."""
        self.wait()
        return self.error is None and self.statuses == []


@pytest.fixture
def limited(tmp_path):
    """start(**concurrency keys) -> a gitaly limiting SSHUploadPack, with repositories a.git and b.git."""
    nodes = []

    def start(**kw):
        node = GitalyNode(str(tmp_path / ("n%d" % len(nodes))), extra_config=limits(**kw)).start()
        nodes.append(node)
        for name in ("a.git", "b.git"):
            make_bare_repo(node.repo_path(name))
        return node
    yield start
    for n in nodes:
        n.stop()


def test_a_second_call_on_the_same_repository_waits_for_the_first(limited):
    node = limited(max_per_repo=1)
    first = UploadPack(node, "a.git")
    assert first.advertised(10)
    second = UploadPack(node, "a.git")
    # the request and stdin it sends while it waits are kept for its handler
    second.end()
    assert not second.advertised(0.5)
    first.end()
    assert second.advertised(10)
    assert second.ok(), second.error
    assert first.ok(), first.error


def test_a_call_on_another_repository_does_not_wait(limited):
    node = limited(max_per_repo=1)
    first = UploadPack(node, "a.git")
    assert first.advertised(10)
    other = UploadPack(node, "b.git")
    assert other.advertised(5)
    other.end()
    first.end()
    assert other.ok()
    first.wait()


def test_a_full_queue_refuses_with_resource_exhausted(limited):
    node = limited(max_per_repo=1, max_queue_size=1)
    first = UploadPack(node, "a.git")
    assert first.advertised(10)
    waiting = UploadPack(node, "a.git")
    time.sleep(0.2)
    t0 = time.time()
    third = UploadPack(node, "a.git").wait(5)
    assert time.time() - t0 < 3, "a full queue must refuse at once"
    assert third.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert third.error.details() == "maximum queue size reached"
    detail = status_detail(third.error, pb("errors").LimitError)
    assert detail.error_message == "maximum queue size reached"
    assert detail.HasField("retry_after") and detail.retry_after.seconds == 0
    # the waiting call is untouched and gets its turn
    waiting.end()
    first.end()
    assert waiting.ok()
    first.wait()
    dropped = [r for r in log_calls(node, "SSHUploadPack") if r.get("limit.concurrency_dropped")]
    assert len(dropped) == 1 and dropped[0]["limit.concurrency_dropped"] == "max_size"
    assert dropped[0]["grpc.code"] == "ResourceExhausted"
    assert dropped[0]["limit.limiting_key"] == "a.git"


def test_a_call_that_waits_too_long_is_refused(limited):
    node = limited(max_per_repo=1, max_queue_wait="300ms")
    first = UploadPack(node, "a.git")
    assert first.advertised(10)
    t0 = time.time()
    late = UploadPack(node, "a.git").wait(10)
    waited = time.time() - t0
    assert late.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert late.error.details() == "maximum time in concurrency queue reached"
    assert status_detail(late.error, pb("errors").LimitError).error_message == \
        "maximum time in concurrency queue reached"
    assert 0.25 < waited < 5, waited
    # the holder was not disturbed
    first.end()
    assert first.ok()
    rec = [r for r in log_calls(node, "SSHUploadPack") if r.get("limit.concurrency_dropped")]
    assert rec and rec[0]["limit.concurrency_dropped"] == "max_time"
    assert rec[0]["limit.concurrency_queue_ms"] >= 290


def test_a_cancelled_waiter_leaves_the_queue(limited):
    node = limited(max_per_repo=1, max_queue_size=1)
    first = UploadPack(node, "a.git")
    assert first.advertised(10)
    gone = UploadPack(node, "a.git")
    time.sleep(0.2)
    gone.cancel()
    gone.wait()
    assert gone.error.code() == grpc.StatusCode.CANCELLED
    # its place in the queue is free: the next caller waits instead of being refused
    nxt = UploadPack(node, "a.git")
    nxt.end()
    assert not nxt.advertised(0.3)
    assert nxt.error is None
    first.end()
    assert nxt.ok()
    first.wait()


def test_the_call_log_says_how_long_a_call_waited(limited):
    node = limited(max_per_repo=1)
    first = UploadPack(node, "a.git")
    assert first.advertised(10)
    second = UploadPack(node, "a.git")
    second.end()
    time.sleep(0.4)
    first.end()
    second.wait()
    first.wait()
    recs = log_calls(node, "SSHUploadPack")
    assert len(recs) == 2
    waited = max(recs, key=lambda r: r["acquire_ms"])
    assert waited["acquire_ms"] >= 350
    assert waited["limit.concurrency_queue_ms"] == waited["acquire_ms"]
    assert waited["limit.limiting_type"] == "per-rpc"
    assert waited["limit.limiting_key"] == "a.git"
    assert waited["limit.concurrency_in_progress"] == 1
    assert min(r["acquire_ms"] for r in recs) < 100


def test_unary_methods_are_limited_by_their_request(limited):
    node = limited(rpc="/gitaly.RefService/FindAllBranches", max_per_repo=1)
    ref = pb("ref")
    res = list(node.stub("RefService").FindAllBranches(ref.FindAllBranchesRequest(repository=node.repo("a.git"))))
    assert [b.name for r in res for b in r.branches] == [b"refs/heads/main"]
    rec = log_calls(node, "FindAllBranches")
    assert rec and rec[-1]["limit.limiting_key"] == "a.git" and "acquire_ms" in rec[-1]
    # calls without a repository are not limited and carry no limit fields
    err = None
    try:
        list(node.stub("RefService").FindAllBranches(ref.FindAllBranchesRequest()))
    except grpc.RpcError as e:
        err = e
    assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "limit.limiting_key" not in log_calls(node, "FindAllBranches")[-1]


def test_max_per_repo_zero_does_not_limit(limited):
    node = limited(max_per_repo=0, max_queue_size=1)
    calls = [UploadPack(node, "a.git") for _ in range(3)]
    for c in calls:
        assert c.advertised(10)
    for c in calls:
        c.end()
        assert c.ok()
    assert not any("limit.limiting_key" in r for r in log_calls(node, "SSHUploadPack"))


@pytest.mark.parametrize("extra,message", [
    (limits(max_per_repo=-1), '"max_per_repo": not in range: -1 is not greater than or equal to 0'),
    (limits(max_per_repo=1, max_queue_size=-2),
     '"max_queue_size": not in range: -2 is not greater than or equal to 0'),
    (limits(max_per_repo=1, max_queue_wait="-1m"),
     '"max_queue_wait": not in range: -1m0s is not greater than or equal to 0s'),
    (limits(adaptive=True, initial_limit=5, max_limit=2, min_limit=1),
     '"max_limit": not in range: 2 is not greater than or equal to 5'),
    ("\n[[concurrency]]\nmax_per_repo = 1\n", '[[concurrency]] needs "rpc"'),
    ("\n[pack_objects_limiting]\nmax_concurrency = -1\n",
     '"max_concurrency": not in range: -1 is not greater than or equal to 0'),
])
def test_a_bad_limit_stops_start_up(tmp_path, extra, message):
    node = GitalyNode(str(tmp_path / "bad"), extra_config=extra)
    r = subprocess.run([os.path.join(BUILD, "gitaly", "gitaly"), node.config_path],
                       capture_output=True, timeout=10)
    err = r.stderr.decode()
    assert r.returncode != 0
    assert message in err, err
    assert node.config_path + ":" in err, err


def test_upstream_limit_keys_are_accepted(tmp_path):
    extra = (limits(max_per_repo=2, max_queue_size=10, max_queue_wait="1m") +
             limits(rpc="/gitaly.SmartHTTPService/PostUploadPackWithSidechannel", adaptive=True,
                    initial_limit=4, max_limit=8, min_limit=1) +
             "\n[pack_objects_limiting]\nmax_concurrency = 10\nmax_queue_length = 200\n"
             'max_queue_wait = "30s"\n'
             "\n[adaptive_limiting]\ncpu_throttled_threshold = 0.5\nmemory_threshold = 0.9\n")
    node = GitalyNode(str(tmp_path / "ok"), extra_config=extra).start()
    try:
        make_bare_repo(node.repo_path("a.git"))
        c = UploadPack(node, "a.git")
        assert c.advertised(10)
        c.end()
        assert c.ok()
    finally:
        node.stop()


def test_a_unary_call_waits_before_its_handler_runs(limited, tmp_path):
    """UserCreateBranch holds its slot while a custom pre-receive hook waits for a file."""
    from helpers_hooks import write_custom_hook
    node = limited(rpc="/gitaly.OperationService/UserCreateBranch", max_per_repo=1, max_queue_size=1)
    started, release = tmp_path / "started", tmp_path / "release"
    write_custom_hook(node.repo_path("a.git"), "pre-receive",
                      "#!/bin/sh\ncat >/dev/null\necho x >> %s\n"
                      "while [ ! -e %s ]; do sleep 0.02; done\n" % (started, release))
    ops, shared = pb("operations"), pb("shared")
    stub = node.stub("OperationService")
    user = shared.User(gl_id="user-1", name=b"Jane", email=b"jane@example.com", gl_username="jane")

    def create(branch):
        return stub.UserCreateBranch.future(ops.UserCreateBranchRequest(
            repository=node.repo("a.git"), branch_name=branch, start_point=b"main", user=user), timeout=20)

    def hooks_run():
        return len(open(started).read().split()) if started.exists() else 0

    first = create(b"one")
    deadline = time.time() + 10
    while hooks_run() < 1 and time.time() < deadline:
        time.sleep(0.02)
    second = create(b"two")
    time.sleep(0.5)
    assert hooks_run() == 1, "the queued call must not have started"
    third = create(b"three")
    err = third.exception(timeout=5)
    assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == "maximum queue size reached"
    release.write_text("")
    assert first.result(timeout=10).branch.name == b"one"
    assert second.result(timeout=10).branch.name == b"two"
    assert hooks_run() == 2
    waited = [r for r in log_calls(node, "UserCreateBranch") if r.get("grpc.code") == "OK"]
    assert max(r["acquire_ms"] for r in waited) >= 450
