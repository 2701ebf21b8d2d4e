"""upload-pack packs through gitaly-hooks and HookService/PackObjectsHookWithSidechannel
(docs/technical/pack-objects-cache.md): clones over every upload-pack path, and the RPC's
answers to bad requests."""
import os
import socket
import tempfile
import threading

import grpc
import pytest

from gitaly_itest import auth_md, git, make_bare_repo, pb
from helpers_transport import fsck, log_calls, payload, refs, ssh_env
from test_sidechannel import BackchannelConn, Workhorse, ssh_clone_env

HOOK = "PackObjectsHookWithSidechannel"   # as the log records grpc.method


@pytest.fixture
def conn(gitaly_node):
    c = BackchannelConn("unix:" + gitaly_node.socket)
    yield c
    c.close()


def src_repo(node, name="r.git"):
    return make_bare_repo(node.repo_path(name), branches=("main", "feature"), tags=("v1",),
                          files={"README.md": "hello\n", "dir/f.txt": "x" * 5000 + "\n"})


def hook_calls(node):
    return [r for r in log_calls(node, HOOK) if r.get("grpc.code") == "OK"]


@pytest.mark.parametrize("version", ["0", "2"])
def test_clone_ssh_upload_pack_uses_hook(gitaly_node, tmp_path, version):
    src = src_repo(gitaly_node)
    env = ssh_env(gitaly_node, "upload-pack", payload(gitaly_node, "r.git"))
    dst = str(tmp_path / "clone.git")
    git("-c", "protocol.version=" + version, "clone", "-q", "--mirror", "ssh://gitaly/r.git", dst, env=env)
    assert refs(dst) == refs(src)
    fsck(dst)
    assert len(hook_calls(gitaly_node)) >= 1


@pytest.mark.parametrize("version", ["0", "2"])
def test_clone_ssh_sidechannel_uses_hook(gitaly_node, tmp_path, version):
    src = src_repo(gitaly_node)
    dst = str(tmp_path / "clone.git")
    env = ssh_clone_env(gitaly_node, tmp_path)
    git("-c", "protocol.version=" + version, "clone", "-q", "--bare", "ssh://gitaly/r.git", dst, env=env)
    assert refs(dst) == refs(src)
    fsck(dst)
    assert len(hook_calls(gitaly_node)) >= 1


@pytest.mark.parametrize("version", ["0", "2"])
def test_clone_http_sidechannel_uses_hook(gitaly_node, conn, tmp_path, version):
    src = src_repo(gitaly_node)
    wh = Workhorse(gitaly_node, conn)
    try:
        dst = str(tmp_path / "clone.git")
        git("-c", "protocol.version=" + version, "clone", "-q", "--bare", wh.url + "/r.git", dst)
        assert refs(dst) == refs(src)
        fsck(dst)
    finally:
        wh.close()
    assert len(hook_calls(gitaly_node)) >= 1


def test_shallow_clone_uses_hook(gitaly_node, tmp_path):
    src = src_repo(gitaly_node)
    env = ssh_env(gitaly_node, "upload-pack", payload(gitaly_node, "r.git"))
    dst = str(tmp_path / "shallow")
    git("clone", "-q", "--depth", "1", "ssh://gitaly/r.git", dst, env=env)
    git("fsck", "--no-progress", cwd=dst)
    assert git("rev-parse", "HEAD", cwd=dst).strip() == git("rev-parse", "HEAD", cwd=src).strip()
    assert len(hook_calls(gitaly_node)) >= 1


# --- the RPC itself ---

def hook_stub(node):
    return node.stub("HookService")


def request(node, args, name="r.git"):
    return pb("hook").PackObjectsHookWithSidechannelRequest(repository=node.repo(name), args=args)


class Side:
    """The gitaly-hooks end of the sidechannel: a Unix socket named .../sidechannel."""

    def __init__(self, stdin):
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "sidechannel")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.out, self.err, self.bad = b"", b"", []
        self.t = threading.Thread(target=self._run, args=(stdin,), daemon=True)
        self.t.start()

    def _run(self, stdin):
        c, _ = self.sock.accept()
        c.sendall(stdin)
        c.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            b = c.recv(65536)
            if not b:
                break
            data += b
        c.close()
        i = 0
        while i < len(data):
            n = int(data[i:i + 4], 16)
            if n == 0:
                i += 4
                continue
            band, body = data[i + 4], data[i + 5:i + n]
            if band == 1:
                self.out += body
            elif band == 2:
                self.err += body
            else:
                self.bad.append(band)
            i += n

    def md(self):
        return [("gitaly-sidechannel-socket", self.path)] + auth_md()

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.rmdir(self.dir)


def test_rpc_streams_a_pack(gitaly_node, tmp_path):
    check_pack(gitaly_node, tmp_path, src_repo(gitaly_node))


def check_pack(gitaly_node, tmp_path, src):
    head = git("rev-parse", "HEAD", cwd=src).strip()
    side = Side(("%s\n" % head).encode())
    try:
        hook_stub(gitaly_node).PackObjectsHookWithSidechannel(
            request(gitaly_node, ["pack-objects", "--revs", "--thin", "--stdout", "--progress", "--delta-base-offset"]),
            metadata=side.md(), timeout=30)
        side.t.join(10)
    finally:
        side.close()
    assert side.out.startswith(b"PACK") and side.bad == []
    # the pack indexes and holds the commit
    pack = tmp_path / "p.pack"
    pack.write_bytes(side.out)
    git("init", "-q", "--bare", str(tmp_path / "check.git"))
    git("index-pack", "--stdin", "--fix-thin", cwd=str(tmp_path / "check.git"), input=side.out)
    assert git("cat-file", "-t", head, cwd=str(tmp_path / "check.git")).strip() == "commit"


def test_rpc_git_failure_is_internal_with_stderr(gitaly_node):
    src_repo(gitaly_node)
    side = Side(b"not-an-object-id\n")
    try:
        with pytest.raises(grpc.RpcError) as e:
            hook_stub(gitaly_node).PackObjectsHookWithSidechannel(
                request(gitaly_node, ["pack-objects", "--revs", "--stdout"]), metadata=side.md(), timeout=30)
        side.t.join(10)
    finally:
        side.close()
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert "git-pack-objects: stderr:" in e.value.details()
    assert side.err   # git's complaint also reached band 2


@pytest.mark.parametrize("args,why", [
    ([], "missing pack-objects"),
    (["upload-pack", "--stdout"], "missing pack-objects"),
    (["--shallow-file", "x", "pack-objects", "--stdout"], "missing pack-objects"),
    (["pack-objects", "--revs"], "missing --stdout"),
    (["pack-objects", "--stdout", "/tmp/evil"], "non-flag argument"),
])
def test_rpc_bad_args(gitaly_node, args, why):
    src_repo(gitaly_node)
    with pytest.raises(grpc.RpcError) as e:
        hook_stub(gitaly_node).PackObjectsHookWithSidechannel(
            request(gitaly_node, args), metadata=[("gitaly-sidechannel-socket", "/x/sidechannel")] + auth_md(),
            timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == "invalid pack-objects command: [%s]: %s" % (" ".join(args), why)


@pytest.mark.parametrize("addr", [None, "", "/tmp/other-socket"])
def test_rpc_bad_sidechannel_address(gitaly_node, addr):
    src_repo(gitaly_node)
    md = auth_md() if addr is None else [("gitaly-sidechannel-socket", addr)] + auth_md()
    with pytest.raises(grpc.RpcError) as e:
        hook_stub(gitaly_node).PackObjectsHookWithSidechannel(
            request(gitaly_node, ["pack-objects", "--stdout"]), metadata=md, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == 'invalid side channel address: "%s"' % (addr or "")


def test_rpc_sidechannel_nobody_listening(gitaly_node, tmp_path):
    src_repo(gitaly_node)
    with pytest.raises(grpc.RpcError) as e:
        hook_stub(gitaly_node).PackObjectsHookWithSidechannel(
            request(gitaly_node, ["pack-objects", "--stdout"]),
            metadata=[("gitaly-sidechannel-socket", str(tmp_path / "sidechannel"))] + auth_md(), timeout=10)
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert "get side-channel" in e.value.details()


def test_rpc_missing_repository(gitaly_node):
    with pytest.raises(grpc.RpcError) as e:
        hook_stub(gitaly_node).PackObjectsHookWithSidechannel(
            pb("hook").PackObjectsHookWithSidechannelRequest(args=["pack-objects", "--stdout"]),
            metadata=[("gitaly-sidechannel-socket", "/x/sidechannel")] + auth_md(), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_rpc_deadline_while_peer_silent(gitaly_node, tmp_path):
    """A peer that never half-closes: the deadline ends the call, and the node keeps serving."""
    src = src_repo(gitaly_node)
    path = str(tmp_path / "sidechannel")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    lsock.listen(1)
    try:
        with pytest.raises(grpc.RpcError) as e:
            hook_stub(gitaly_node).PackObjectsHookWithSidechannel(
                request(gitaly_node, ["pack-objects", "--stdout"]),
                metadata=[("gitaly-sidechannel-socket", path)] + auth_md(), timeout=1)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        c, _ = lsock.accept()
        # the node gave up on the socket
        c.settimeout(10)
        assert c.recv(10) == b""
        c.close()
    finally:
        lsock.close()
    check_pack(gitaly_node, tmp_path, src)
