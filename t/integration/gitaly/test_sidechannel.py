"""SSHUploadPackWithSidechannel and PostUploadPackWithSidechannel, driven by
t/integration/sidechannel_client.py (a yamux + backchannel + sidechannel
client written from the protocol facts) and real git on the client side."""
import http.server
import json
import os
import random
import socketserver
import subprocess
import sys
import threading
import time

import grpc
import pytest

from gitaly_itest import TOKEN, auth_md, git, make_bare_repo, pb, pb_grpc
from helpers_transport import fsck, processes_touching, refs, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from sidechannel_client import BackchannelConn  # noqa: E402

PYTHON = "/usr/bin/python3"


def ssh():
    return pb("ssh")


def smarthttp():
    return pb("smarthttp")


def big_repo(node, name="big.git", mib=3):
    """A repository whose pack is well past the yamux windows and our output queue bound."""
    rnd = random.Random(7)
    files = {"blob%d.bin" % i: "".join("%08x" % rnd.getrandbits(32) for _ in range(32 * 1024))
             for i in range(mib * 4)}
    return make_bare_repo(node.repo_path(name), branches=("main", "feature"), files=files)


def head(path):
    return git("rev-parse", "refs/heads/main", cwd=path).strip()


def pkts(lines):
    return b"".join(b"%04x%s" % (len(l) + 4, l.encode()) for l in lines)


def want_request(oid, caps="multi_ack_detailed side-band-64k ofs-delta agent=test/1", extra=(), haves=()):
    """A v0 fetch request: want with capabilities, extra lines, flush, haves, done."""
    return pkts(["want %s %s\n" % (oid, caps)] + list(extra)) + b"0000" + pkts(haves) + b"0009done\n"


def demux_sideband(data):
    """SSH sidechannel output: (band 1 bytes, band 2 bytes)."""
    out, err, i = bytearray(), bytearray(), 0
    while i < len(data):
        n = int(data[i:i + 4], 16)
        if n == 0:
            i += 4
            continue
        band, payload = data[i + 4], data[i + 5:i + n]
        (out if band == 1 else err).extend(payload)
        i += n
    return bytes(out), bytes(err)


@pytest.fixture
def conn(gitaly_node):
    c = BackchannelConn("unix:" + gitaly_node.socket)
    yield c
    c.close()


def stubs(node, conn):
    """One grpcio channel per backchannel connection (its bridge takes one connection)."""
    if not hasattr(conn, "stubs"):
        ch = grpc.insecure_channel(conn.target)
        node._channels.append(ch)
        conn.stubs = (pb_grpc("ssh").SSHServiceStub(ch), pb_grpc("smarthttp").SmartHTTPServiceStub(ch))
    return conn.stubs


def no_upload_pack_left(path):
    return not processes_touching(path) or wait_until(lambda: not processes_touching(path))


# --- clones with real git ---

# A stand-in for ssh (GitLab Shell's part): runs the sidechannel RPC and
# pipes git's stdin/stdout through it.
SSH_HELPER = r'''
import json, os, sys, threading
sys.path.insert(0, os.environ["SC_LIBDIR"]); sys.path.insert(0, os.environ["SC_GENDIR"])
import grpc, ssh_pb2, ssh_pb2_grpc, shared_pb2
from sidechannel_client import BackchannelConn
cmd = sys.argv[-1]
rel = cmd.split("'")[1].lstrip("/")
conn = BackchannelConn(os.environ["SC_ADDR"])
stub = ssh_pb2_grpc.SSHServiceStub(grpc.insecure_channel(conn.target))

def handler(sc):
    def pump():
        while True:
            d = os.read(0, 65536)
            if not d:
                break
            sc.write(d)
        sc.close_write()
    threading.Thread(target=pump, daemon=True).start()
    buf = b""
    while True:
        d = sc.read()
        if not d:
            break
        buf += d
        while len(buf) >= 4:
            n = int(buf[:4], 16)
            if n == 0:
                buf = buf[4:]
                continue
            if len(buf) < n:
                break
            fd = 1 if buf[4] == 1 else 2
            os.write(fd, buf[5:n])
            buf = buf[n:]

req = ssh_pb2.SSHUploadPackWithSidechannelRequest(
    repository=shared_pb2.Repository(storage_name="default", relative_path=rel),
    git_protocol=os.environ.get("GIT_PROTOCOL", ""))
w = conn.sidechannel(handler)
with w as md:
    resp = stub.SSHUploadPackWithSidechannel(
        req, metadata=md + [("authorization", os.environ["SC_AUTH"])])
if w.error:
    raise w.error
with open(os.environ["SC_STATS"], "a") as f:
    s = resp.packfile_negotiation_statistics
    f.write(json.dumps({"wants": s.wants, "haves": s.haves, "caps": list(s.caps),
                        "packets": s.packets}) + "\n")
os._exit(0)
'''


def ssh_clone_env(node, tmp_path):
    helper = tmp_path / "ssh_helper.py"
    helper.write_text(SSH_HELPER)
    from gitaly_itest import proto_modules
    return {
        "GIT_SSH_COMMAND": "%s %s" % (PYTHON, helper),
        "SC_LIBDIR": os.path.dirname(HERE), "SC_GENDIR": proto_modules(),
        "SC_ADDR": "unix:" + node.socket, "SC_AUTH": auth_md(TOKEN)[0][1],
        "SC_STATS": str(tmp_path / "stats.jsonl"),
    }


@pytest.mark.parametrize("version", ["0", "2"])
def test_ssh_clone_through_sidechannel(gitaly_node, tmp_path, version):
    src = big_repo(gitaly_node)
    dst = str(tmp_path / "clone")
    env = ssh_clone_env(gitaly_node, tmp_path)
    git("-c", "protocol.version=" + version, "clone", "-q", "--bare", "ssh://gitaly/big.git", dst, env=env)
    assert refs(dst) == refs(src)
    fsck(dst)
    stats = [json.loads(l) for l in open(env["SC_STATS"])]
    assert stats and stats[-1]["wants"] >= 1
    if version == "0":
        assert "side-band-64k" in stats[-1]["caps"]
    no_upload_pack_left(src)


class Workhorse:
    """A minimal Workhorse for clones: InfoRefsUploadPack, then each POST
    through PostUploadPackWithSidechannel on one backchannel connection."""

    def __init__(self, node, conn):
        self.stats = []
        ssh_stub, http_stub = stubs(node, conn)
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _reply(self, status, ctype, body):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _repo(self, suffix):
                return node.repo(self.path.split("?")[0][1:-len(suffix)])

            def do_GET(self):
                req = smarthttp().InfoRefsRequest(repository=self._repo("/info/refs"),
                                                  git_protocol=self.headers.get("Git-Protocol", ""))
                body = b"".join(r.data for r in http_stub.InfoRefsUploadPack(req, metadata=auth_md()))
                self._reply(200, "application/x-git-upload-pack-advertisement", body)

            def do_POST(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        data += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    import gzip
                    data = gzip.decompress(data)
                got = {}

                def handler(sc):
                    sc.write(data)
                    sc.close_write()
                    got["body"] = sc.read_all()

                req = smarthttp().PostUploadPackWithSidechannelRequest(
                    repository=self._repo("/git-upload-pack"),
                    git_protocol=self.headers.get("Git-Protocol", ""))
                try:
                    with conn.sidechannel(handler) as md:
                        resp = http_stub.PostUploadPackWithSidechannel(req, metadata=md + auth_md())
                except grpc.RpcError as e:
                    return self._reply(500, "text/plain", (e.details() + "\n").encode())
                front.stats.append(resp.packfile_negotiation_statistics)
                self._reply(200, "application/x-git-upload-pack-result", got["body"])

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("version", ["0", "2"])
def test_http_clone_through_sidechannel(gitaly_node, conn, tmp_path, version):
    src = big_repo(gitaly_node)
    wh = Workhorse(gitaly_node, conn)
    try:
        dst = str(tmp_path / "clone")
        git("-c", "protocol.version=" + version, "clone", "-q", "--bare", wh.url + "/big.git", dst)
        assert refs(dst) == refs(src)
        fsck(dst)
        assert wh.stats and wh.stats[-1].wants >= 1
    finally:
        wh.close()
    no_upload_pack_left(src)


# --- exact bytes and statistics ---

def test_ssh_sidechannel_bytes_equal_streaming_rpc(gitaly_node, conn):
    """The same request through the sidechannel and through SSHUploadPack gives the same bytes."""
    src = big_repo(gitaly_node)
    ssh_stub, _ = stubs(gitaly_node, conn)
    caps = "multi_ack_detailed side-band-64k ofs-delta no-progress agent=test/1"
    req_bytes = want_request(head(src), caps=caps, haves=("have %s\n" % ("1" * 40),))
    cfg = ["pack.threads=1"]
    got = {}

    def handler(sc):
        sc.write(req_bytes)
        sc.close_write()
        got["raw"] = sc.read_all()

    with conn.sidechannel(handler) as md:
        resp = ssh_stub.SSHUploadPackWithSidechannel(
            ssh().SSHUploadPackWithSidechannelRequest(repository=gitaly_node.repo("big.git"),
                                                      git_config_options=cfg),
            metadata=md + auth_md())
    out, err = demux_sideband(got["raw"])

    def stream():
        yield ssh().SSHUploadPackRequest(repository=gitaly_node.repo("big.git"), git_config_options=cfg)
        yield ssh().SSHUploadPackRequest(stdin=req_bytes)
    plain = gitaly_node.stub("SSHService").SSHUploadPack(stream())
    ref_out = b"".join(r.stdout for r in plain)
    # git's own side-band chunking varies from run to run: compare the packs inside
    pack, ref_pack = demux_sideband(out)[0], demux_sideband(ref_out)[0]
    assert pack[:4] == b"PACK" and pack == ref_pack
    assert len(pack) > 1024 * 1024

    s = resp.packfile_negotiation_statistics
    want_line = "want %s %s" % (head(src), caps)
    # packets: want, have, flush (done is not counted); payload: the lines without newlines
    assert (s.wants, s.haves, s.shallows, s.packets) == (1, 1, 0, 3)
    assert s.payload_size == len(want_line) + 45 + len("done")
    assert list(s.caps) == caps.split(" ")
    assert s.deepen == "" and s.filter == ""


def http_call(node, conn, data, repo="big.git", read=None, answer=b"ok", raw=False, **req):
    _, http_stub = stubs(node, conn)
    got = {}

    def handler(sc):
        if raw:
            sc.write_raw(data)
        else:
            sc.write(data)
            sc.close_write()
        got["body"] = read(sc) if read else sc.read_all()

    w = conn.sidechannel(handler, answer=answer)
    with w as md:
        resp = http_stub.PostUploadPackWithSidechannel(
            smarthttp().PostUploadPackWithSidechannelRequest(repository=node.repo(repo), **req),
            metadata=md + auth_md())
    return resp, got.get("body"), w


def test_http_pack_is_a_valid_pack(gitaly_node, conn, tmp_path):
    src = big_repo(gitaly_node)
    caps = "multi_ack_detailed ofs-delta filter agent=test/1"
    resp, body, _ = http_call(gitaly_node, conn, want_request(head(src), caps=caps, extra=("filter blob:none\n",)))
    assert body.startswith(b"0008NAK\n")
    pack = body[8:]
    assert pack[:4] == b"PACK"
    out = tmp_path / "p.git"
    git("init", "-q", "--bare", str(out))
    subprocess.run(["git", "index-pack", "--stdin"], cwd=str(out), input=pack, check=True,
                   capture_output=True)
    s = resp.packfile_negotiation_statistics
    assert (s.wants, s.packets, s.filter) == (1, 3, "blob:none")


def test_http_shallow_request_is_not_an_error(gitaly_node, conn):
    """upload-pack ends a stateless deepen round without a pack; upstream answers OK with the stats."""
    src = big_repo(gitaly_node)
    req = b"".join(b"%04x%s" % (len(l) + 4, l.encode()) for l in
                   ["want %s multi_ack_detailed shallow\n" % head(src), "deepen 1\n"]) + b"0000"
    resp, body, _ = http_call(gitaly_node, conn, req)
    assert b"shallow " in body
    assert resp.packfile_negotiation_statistics.deepen == "deepen 1"


# --- errors ---

def test_ssh_without_sidechannel_id(gitaly_node, conn):
    make_bare_repo(gitaly_node.repo_path("a.git"))
    ssh_stub, _ = stubs(gitaly_node, conn)
    with pytest.raises(grpc.RpcError) as e:
        ssh_stub.SSHUploadPackWithSidechannel(
            ssh().SSHUploadPackWithSidechannelRequest(repository=gitaly_node.repo("a.git")),
            metadata=auth_md())
    assert e.value.code() == grpc.StatusCode.ABORTED
    assert e.value.details() == \
        "opennig sidechannel: sidechannel: sidechannel-id not found in incoming metadata"


def test_plain_connection_has_no_sidechannel(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("a.git"))
    with pytest.raises(grpc.RpcError) as e:
        gitaly_node.stub("SSHService").SSHUploadPackWithSidechannel(
            ssh().SSHUploadPackWithSidechannelRequest(repository=gitaly_node.repo("a.git")),
            metadata=[("gitaly-sidechannel-id", "1")])
    assert e.value.code() == grpc.StatusCode.ABORTED
    assert e.value.details() == \
        "opennig sidechannel: sidechannel: fail to extract yamux session: non-multiplexed connection"
    with pytest.raises(grpc.RpcError) as e:
        gitaly_node.stub("SmartHTTPService").PostUploadPackWithSidechannel(
            smarthttp().PostUploadPackWithSidechannelRequest(repository=gitaly_node.repo("a.git")),
            metadata=[("gitaly-sidechannel-id", "1")])
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert e.value.details() == \
        "open sidechannel: sidechannel: fail to extract yamux session: non-multiplexed connection"


def test_http_validates_before_opening(gitaly_node, conn):
    _, http_stub = stubs(gitaly_node, conn)
    with pytest.raises(grpc.RpcError) as e:
        http_stub.PostUploadPackWithSidechannel(
            smarthttp().PostUploadPackWithSidechannelRequest(repository=gitaly_node.repo("missing.git")),
            metadata=auth_md())
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_ssh_bad_repository_after_opening(gitaly_node, conn):
    ssh_stub, _ = stubs(gitaly_node, conn)
    w = conn.sidechannel(lambda sc: sc.read_all())
    with pytest.raises(grpc.RpcError) as e:
        with w as md:
            ssh_stub.SSHUploadPackWithSidechannel(
                ssh().SSHUploadPackWithSidechannelRequest(repository=gitaly_node.repo("missing.git")),
                metadata=md + auth_md())
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert w.arrived


def test_unknown_id_and_wrong_answer(gitaly_node, conn):
    make_bare_repo(gitaly_node.repo_path("a.git"))
    ssh_stub, _ = stubs(gitaly_node, conn)
    req = ssh().SSHUploadPackWithSidechannelRequest(repository=gitaly_node.repo("a.git"))
    with pytest.raises(grpc.RpcError) as e:
        ssh_stub.SSHUploadPackWithSidechannel(req, metadata=[("gitaly-sidechannel-id", "999")] + auth_md())
    assert e.value.code() == grpc.StatusCode.ABORTED
    assert e.value.details() == "opennig sidechannel: sidechannel: receive confirmation: EOF"
    assert conn.unknown == 1
    with pytest.raises(grpc.RpcError) as e:
        with conn.sidechannel(lambda sc: None, answer=b"no") as md:
            ssh_stub.SSHUploadPackWithSidechannel(req, metadata=md + auth_md())
    assert e.value.code() == grpc.StatusCode.ABORTED
    assert e.value.details() == 'opennig sidechannel: sidechannel: expected ok, got "no"'
    # the connection still serves
    resp, body, _ = http_call(gitaly_node, conn, want_request(head(gitaly_node.repo_path("a.git"))),
                              repo="a.git")
    assert b"PACK" in body


@pytest.mark.parametrize("data", [b"0032want " + b"1" * 40, b"zzzz", b"0001", b"0003"])
def test_client_input_ending_early_or_garbled(gitaly_node, conn, data):
    """Without the flush, or with bad framing, git's stdin just ends: upload-pack fails, nothing hangs."""
    path = make_bare_repo(gitaly_node.repo_path("a.git"))
    ssh_stub, _ = stubs(gitaly_node, conn)

    def handler(sc):
        sc.write_raw(data)
        sc.stream.close_write()   # yamux FIN instead of the flush packet
        return sc.read_all()

    with pytest.raises(grpc.RpcError) as e:
        with conn.sidechannel(handler) as md:
            ssh_stub.SSHUploadPackWithSidechannel(
                ssh().SSHUploadPackWithSidechannelRequest(repository=gitaly_node.repo("a.git")),
                metadata=md + auth_md())
    assert e.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL)
    assert e.value.details().startswith("running upload-pack: ")
    assert no_upload_pack_left(path)


@pytest.mark.parametrize("how", ["reset", "hangup"])
def test_client_disconnecting_mid_pack(gitaly_node, conn, how):
    src = big_repo(gitaly_node)
    seen = {}

    def read_some(sc):
        first = sc.read(65536)
        seen["n"] = len(first)
        if how == "reset":
            sc.stream.abort()
        else:
            conn.session.close()
        return first

    req = want_request(head(src), caps="multi_ack_detailed ofs-delta")
    with pytest.raises(grpc.RpcError) as e:
        http_call(gitaly_node, conn, req, read=read_some)
    if how == "reset":
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert e.value.details().startswith("running upload-pack: copying stdout from upload-pack: ")
    assert seen["n"] > 0
    assert no_upload_pack_left(src)
    # the node is fine and serves the next client
    c2 = BackchannelConn("unix:" + gitaly_node.socket)
    try:
        resp, body, _ = http_call(gitaly_node, c2, req)
        assert body.startswith(b"0008NAK\nPACK")
    finally:
        c2.close()


def test_slow_reader_is_backpressure_not_buffering(gitaly_node, conn, tmp_path):
    """A reader that stops: the server never exceeds the yamux window (the client checks every
    frame), and the whole pack arrives once it reads again."""
    src = big_repo(gitaly_node, mib=6)

    def slow(sc):
        first = sc.read(1024)
        time.sleep(1.5)
        return first + sc.read_all()

    resp, body, _ = http_call(gitaly_node, conn, want_request(head(src), caps="ofs-delta"), read=slow)
    pack = body[8:]
    out = tmp_path / "p.git"
    git("init", "-q", "--bare", str(out))
    subprocess.run(["git", "index-pack", "--stdin"], cwd=str(out), input=pack, check=True, capture_output=True)
    assert not conn.session.dead


def test_tcp_listener_and_concurrent_sidechannels(gitaly_node, tmp_path):
    """Sidechannels on the TCP listener too, several at once on one connection, each to its own call."""
    repos = []
    for i in range(4):
        path = make_bare_repo(gitaly_node.repo_path("r%d.git" % i), files={"f.txt": "repo %d\n" % i})
        repos.append(("r%d.git" % i, head(path)))
    c = BackchannelConn(gitaly_node.tcp_addr)
    stubs(gitaly_node, c)
    results = {}

    def one(i):
        rel, oid = repos[i]
        try:
            resp, body, _ = http_call(gitaly_node, c, want_request(oid, caps="ofs-delta"), repo=rel)
            results[i] = body
        except Exception as e:  # noqa: BLE001
            results[i] = e

    try:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        c.close()
    for i in range(4):
        body = results[i]
        assert isinstance(body, bytes) and body.startswith(b"0008NAK\nPACK"), body
        # the pack holds this call's repository's commit: the sidechannels did not cross
        out = str(tmp_path / ("p%d.git" % i))
        git("init", "-q", "--bare", out)
        subprocess.run(["git", "index-pack", "--stdin"], cwd=out, input=body[8:], check=True,
                       capture_output=True)
        assert git("cat-file", "-t", repos[i][1], cwd=out).strip() == "commit"


def test_ssh_negotiation_timeout(make_gitaly):
    """A client that opens the sidechannel and never finishes negotiating is cut off."""
    node = make_gitaly("impatient", extra_config='\n[timeout]\nupload_pack_negotiation = "1s"\n')
    path = make_bare_repo(node.repo_path("a.git"))
    c = BackchannelConn("unix:" + node.socket)
    ssh_stub, _ = stubs(node, c)
    try:
        with pytest.raises(grpc.RpcError) as e:
            with c.sidechannel(lambda sc: sc.read_all()) as md:
                ssh_stub.SSHUploadPackWithSidechannel(
                    ssh().SSHUploadPackWithSidechannelRequest(repository=node.repo("a.git")),
                    metadata=md + auth_md())
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert e.value.details() == "running upload-pack: waiting for negotiation: context canceled"
        # a negotiation that ends in time is not affected
        resp, body, _ = http_call(node, c, want_request(head(path), caps="ofs-delta"), repo="a.git")
        assert body.startswith(b"0008NAK\nPACK")
    finally:
        c.close()
    assert no_upload_pack_left(path)


def test_http_client_input_ending_early(gitaly_node, conn):
    path = make_bare_repo(gitaly_node.repo_path("a.git"))
    _, http_stub = stubs(gitaly_node, conn)

    def handler(sc):
        sc.write_raw(b"0032want " + head(path).encode())   # half a packet, then FIN
        sc.stream.close_write()
        return sc.read_all()

    with pytest.raises(grpc.RpcError) as e:
        with conn.sidechannel(handler) as md:
            http_stub.PostUploadPackWithSidechannel(
                smarthttp().PostUploadPackWithSidechannelRequest(repository=gitaly_node.repo("a.git")),
                metadata=md + auth_md())
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.value.details().startswith("running upload-pack: waiting for upload-pack: exit status ")
    assert no_upload_pack_left(path)
