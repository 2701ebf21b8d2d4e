"""SSHService driven directly with grpcio: request validation, exit statuses,
cancellation codes and the negotiation timeout."""
import queue
import threading
import time

import grpc
import pytest

from gitaly_itest import git, make_bare_repo, pb
from helpers_transport import log_calls, processes_touching, wait_until


def ssh():
    return pb("ssh")


class Stream:
    """A bidi call fed from a queue, so a test decides when to send and half-close."""

    def __init__(self, method, first, timeout=30):
        self.q = queue.Queue()
        self.q.put(first)
        self.call = method(iter(self.q.get, None), timeout=timeout)

    def send(self, msg):
        self.q.put(msg)

    def close(self):
        self.q.put(None)

    def collect(self):
        """(stdout, stderr, [exit values], rpc error or None)."""
        out, err, statuses = b"", b"", []
        try:
            for r in self.call:
                out += r.stdout
                err += r.stderr
                if r.HasField("exit_status"):
                    statuses.append(r.exit_status.value)
        except grpc.RpcError as e:
            return out, err, statuses, e
        return out, err, statuses, None


def upload_pack(node, first, stdin_msgs=(), close=True, stub=None):
    st = Stream((stub or node.stub("SSHService")).SSHUploadPack, first)
    for m in stdin_msgs:
        st.send(ssh().SSHUploadPackRequest(stdin=m))
    if close:
        st.close()
    return st


def pkt(line):
    return ("%04x%s" % (len(line) + 4, line)).encode()


def want_done(oid):
    return pkt("want %s\n" % oid) + b"0000" + pkt("done\n")


def test_upload_pack_serves_a_pack(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("a.git"))
    head = git("rev-parse", "main", cwd=path).strip()
    first = ssh().SSHUploadPackRequest(repository=gitaly_node.repo("a.git"))
    out, err, statuses, e = upload_pack(gitaly_node, first, [want_done(head)]).collect()
    assert e is None, e
    assert statuses == []            # success sends no exit status
    assert head.encode() + b" HEAD" in out
    assert b"PACK" in out


def test_upload_pack_git_failure_sends_exit_status_first(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("a.git"))
    first = ssh().SSHUploadPackRequest(repository=gitaly_node.repo("a.git"))
    out, err, statuses, e = upload_pack(gitaly_node, first, [b"zzzzgarbage"]).collect()
    assert statuses == [128]
    assert e.code() == grpc.StatusCode.INTERNAL
    assert "protocol error" in e.details()
    assert b"protocol error" in err    # stderr is streamed to the client too


def test_upload_pack_hang_up_is_canceled(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("a.git"))
    first = ssh().SSHUploadPackRequest(repository=gitaly_node.repo("a.git"))
    out, err, statuses, e = upload_pack(gitaly_node, first).collect()
    assert statuses == [128]
    assert err == b"fatal: the remote end hung up unexpectedly\n"
    assert e.code() == grpc.StatusCode.CANCELLED
    assert e.details() == "user canceled the request"


def test_upload_pack_first_request_validation(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("a.git"))
    R = ssh().SSHUploadPackRequest
    cases = [
        (R(repository=gitaly_node.repo("a.git"), stdin=b"0000"), grpc.StatusCode.INVALID_ARGUMENT,
         "non-empty stdin in first request"),
        (R(repository=gitaly_node.repo("missing.git")), grpc.StatusCode.NOT_FOUND, "repository not found"),
        (R(repository=gitaly_node.repo("../a.git")), grpc.StatusCode.INVALID_ARGUMENT,
         "relative path escapes root directory"),
        (R(repository=gitaly_node.repo("a.git", storage="nope")), grpc.StatusCode.INVALID_ARGUMENT,
         "storage name not found"),
        (R(), grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
        (R(repository=gitaly_node.repo("a.git"), git_config_options=["no-equals-sign"]),
         grpc.StatusCode.INVALID_ARGUMENT, "no-equals-sign"),
        (R(repository=gitaly_node.repo("a.git"), git_config_options=["bad key=1"]),
         grpc.StatusCode.INVALID_ARGUMENT, "bad key"),
    ]
    for first, code, text in cases:
        _, _, statuses, e = upload_pack(gitaly_node, first).collect()
        assert e is not None and e.code() == code, (first, e)
        assert text in e.details()
        assert statuses == []


def test_config_options_and_protocol_reach_git(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("a.git"))
    head = git("rev-parse", "main", cwd=path).strip()
    git("update-ref", "refs/custom/x", head, cwd=path)
    R = ssh().SSHUploadPackRequest
    # hidden through a per-call option
    out, _, _, e = upload_pack(gitaly_node, R(repository=gitaly_node.repo("a.git"),
                                              git_config_options=["uploadpack.hideRefs=refs/custom"]),
                               [b"0000"]).collect()
    assert e is None and b"refs/heads/main" in out and b"refs/custom/x" not in out
    out, _, _, e = upload_pack(gitaly_node, R(repository=gitaly_node.repo("a.git")), [b"0000"]).collect()
    assert b"refs/custom/x" in out
    # protocol v2 only for the exact value
    out, _, _, e = upload_pack(gitaly_node, R(repository=gitaly_node.repo("a.git"), git_protocol="version=2"),
                               [b"0000"]).collect()
    assert out.startswith(b"000eversion 2\n")
    out, _, _, e = upload_pack(gitaly_node, R(repository=gitaly_node.repo("a.git"), git_protocol="version=3"),
                               [b"0000"]).collect()
    assert b"version 2" not in out and b"refs/heads/main" in out


def test_wrong_token(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("a.git"))
    stub = gitaly_node.stub("SSHService", secret="not-the-token")
    _, _, _, e = upload_pack(gitaly_node, ssh().SSHUploadPackRequest(repository=gitaly_node.repo("a.git")),
                             [b"0000"], stub=stub).collect()
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED


def test_half_close_without_request(gitaly_node):
    st = Stream(gitaly_node.stub("SSHService").SSHUploadPack, None)
    _, _, _, e = st.collect()
    assert e.code() == grpc.StatusCode.INTERNAL


# --- negotiation timeout ---

@pytest.fixture
def impatient(make_gitaly):
    return make_gitaly("impatient", extra_config=(
        '\n[timeout]\nupload_pack_negotiation = "1s"\nupload_archive_negotiation = "1s"\n'))


def test_negotiation_timeout(impatient):
    path = make_bare_repo(impatient.repo_path("a.git"))
    head = git("rev-parse", "main", cwd=path).strip()
    first = ssh().SSHUploadPackRequest(repository=impatient.repo("a.git"))
    start = time.time()
    # wants but never "done", stream left open
    st = upload_pack(impatient, first, [pkt("want %s\n" % head) + b"0000"], close=False)
    out, err, statuses, e = st.collect()
    elapsed = time.time() - start
    st.close()
    assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert e.details().startswith("waiting for negotiation")
    assert statuses == [-1]
    assert b"refs/heads/main" in out       # the advertisement got through before
    assert 0.9 < elapsed < 10
    assert wait_until(lambda: not processes_touching(path), timeout=10)


def test_negotiation_ends_with_done_not_with_time(impatient):
    """A session that said "done" may take longer than the timeout."""
    path = make_bare_repo(impatient.repo_path("a.git"))
    head = git("rev-parse", "main", cwd=path).strip()
    first = ssh().SSHUploadPackRequest(repository=impatient.repo("a.git"))
    st = upload_pack(impatient, first, [want_done(head)], close=False)
    time.sleep(2)        # keep stdin open past the timeout
    st.close()
    out, _, statuses, e = st.collect()
    assert e is None and b"PACK" in out


def test_done_split_across_messages_still_ends_negotiation(impatient):
    path = make_bare_repo(impatient.repo_path("a.git"))
    head = git("rev-parse", "main", cwd=path).strip()
    data = want_done(head)
    first = ssh().SSHUploadPackRequest(repository=impatient.repo("a.git"))
    st = upload_pack(impatient, first, [data[i:i + 3] for i in range(0, len(data), 3)], close=False)
    time.sleep(2)
    st.close()
    out, _, statuses, e = st.collect()
    assert e is None and b"PACK" in out


def test_done_inside_another_packet_does_not_count(impatient):
    """Only a whole "0009done\n" packet ends the negotiation, not those bytes inside another one."""
    path = make_bare_repo(impatient.repo_path("a.git"))
    head = git("rev-parse", "main", cwd=path).strip()
    first = ssh().SSHUploadPackRequest(repository=impatient.repo("a.git"))
    st = upload_pack(impatient, first, [pkt("want %s 0009done\n" % head)], close=False)
    _, _, statuses, e = st.collect()
    st.close()
    assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_upload_archive_negotiation_timeout(impatient):
    make_bare_repo(impatient.repo_path("a.git"))
    first = ssh().SSHUploadArchiveRequest(repository=impatient.repo("a.git"))
    st = Stream(impatient.stub("SSHService").SSHUploadArchive, first)
    st.send(ssh().SSHUploadArchiveRequest(stdin=pkt("argument --format=tar\n")))
    out, err, statuses, e = st.collect()
    st.close()
    assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert statuses == [-1]


# --- receive-pack ---

def receive_pack(node, first, msgs=(), close=True):
    st = Stream(node.stub("SSHService").SSHReceivePack, first)
    for m in msgs:
        st.send(ssh().SSHReceivePackRequest(stdin=m))
    if close:
        st.close()
    return st


def test_receive_pack_first_request_validation(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("a.git"))
    R = ssh().SSHReceivePackRequest
    cases = [
        (R(repository=gitaly_node.repo("a.git")), grpc.StatusCode.INVALID_ARGUMENT, "empty GlId"),
        (R(repository=gitaly_node.repo("a.git"), gl_id="user-1", stdin=b"x"),
         grpc.StatusCode.INVALID_ARGUMENT, "non-empty data in first request"),
        (R(repository=gitaly_node.repo("missing.git"), gl_id="user-1"), grpc.StatusCode.NOT_FOUND,
         "repository not found"),
        (R(repository=gitaly_node.repo("../../a.git"), gl_id="user-1"), grpc.StatusCode.INVALID_ARGUMENT,
         "relative path escapes root directory"),
    ]
    for first, code, text in cases:
        _, _, _, e = receive_pack(gitaly_node, first).collect()
        assert e is not None and e.code() == code, (first, e)
        assert text in e.details()


def test_receive_pack_advertises_and_ends_cleanly(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("a.git"), branches=("main", "dev"))
    head = git("rev-parse", "main", cwd=path).strip()
    git("update-ref", "refs/merge-requests/1/head", head, cwd=path)
    first = ssh().SSHReceivePackRequest(repository=gitaly_node.repo("a.git"), gl_id="user-1")
    out, err, statuses, e = receive_pack(gitaly_node, first, [b"0000"]).collect()
    assert e is None, e
    assert b"refs/heads/dev" in out and b"report-status" in out
    assert b"refs/merge-requests/" not in out      # receive.hideRefs default
    assert statuses == []


def test_receive_pack_failure(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("a.git"))
    first = ssh().SSHReceivePackRequest(repository=gitaly_node.repo("a.git"), gl_id="user-1")
    out, err, statuses, e = receive_pack(gitaly_node, first, [b"zzzz"]).collect()
    assert statuses and statuses[-1] == 128
    assert e.code() == grpc.StatusCode.INTERNAL
    # and a client that goes away in the middle of the push
    out, err, statuses, e = receive_pack(gitaly_node, first, [b"00"]).collect()
    assert e.code() == grpc.StatusCode.CANCELLED
    assert e.details() == "user canceled the push"


def test_receive_pack_cancel_kills_git(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("a.git"))
    first = ssh().SSHReceivePackRequest(repository=gitaly_node.repo("a.git"), gl_id="user-1")
    st = receive_pack(gitaly_node, first, close=False)
    got = threading.Event()

    def reader():
        try:
            for r in st.call:
                if r.stdout:
                    got.set()
        except grpc.RpcError:
            pass
    t = threading.Thread(target=reader)
    t.start()
    assert got.wait(10)
    assert processes_touching(path)
    st.call.cancel()
    t.join(10)
    st.close()
    assert wait_until(lambda: not processes_touching(path), timeout=10)
    assert wait_until(lambda: log_calls(gitaly_node, "SSHReceivePack"))
    assert log_calls(gitaly_node, "SSHReceivePack")[-1]["grpc.code"] == "Canceled"


# --- upload-archive ---

def test_upload_archive_validation_and_exit_status(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("a.git"))
    R = ssh().SSHUploadArchiveRequest
    for first, code in ((R(repository=gitaly_node.repo("a.git"), stdin=b"0000"), grpc.StatusCode.INVALID_ARGUMENT),
                        (R(repository=gitaly_node.repo("gone.git")), grpc.StatusCode.NOT_FOUND),
                        (R(repository=gitaly_node.repo("/../..")), grpc.StatusCode.INVALID_ARGUMENT)):
        st = Stream(gitaly_node.stub("SSHService").SSHUploadArchive, first)
        st.close()
        _, _, _, e = st.collect()
        assert e is not None and e.code() == code, (first, e)

    # a successful archive ends with exit status 0 (unlike upload-pack)
    st = Stream(gitaly_node.stub("SSHService").SSHUploadArchive, R(repository=gitaly_node.repo("a.git")))
    st.send(R(stdin=pkt("argument --format=tar\n") + pkt("argument main\n") + b"0000"))
    st.close()
    out, err, statuses, e = st.collect()
    assert e is None, e
    assert statuses == [0]
    assert out.startswith(b"0008ACK\n")
