"""SSHUploadPackWithSidechannel and PostUploadPackWithSidechannel through praefect: the client's
sidechannel is proxied to the node's (docs/technical/sidechannel.md, "Through praefect"), driven by
t/integration/sidechannel_client.py and by gitaly-ssh, compared with the same calls made to a node
directly."""
import json
import os
import random
import subprocess
import sys

import grpc
import pytest

from praefect_itest import NODE_TOKEN, PRAEFECT_TOKEN, wait_for
from gitaly_itest import BUILD, auth_md, git, make_bare_repo, pb, pb_grpc, proto_modules
from helpers_transport import fsck, processes_touching, wait_until
from test_praefect import create_repo, gitaly_ssh_env, push, refs

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from sidechannel_client import BackchannelConn  # noqa: E402

PYTHON = "/usr/bin/python3"
CAPS_SSH = "multi_ack_detailed side-band-64k ofs-delta no-progress agent=test/1"
CAPS_HTTP = "multi_ack_detailed ofs-delta agent=test/1"


def pkts(lines):
    return b"".join(b"%04x%s" % (len(l) + 4, l.encode()) for l in lines)


def want_request(oids, caps):
    lines = ["want %s %s\n" % (oids[0], caps)] + ["want %s\n" % o for o in oids[1:]]
    return pkts(lines) + b"0000" + b"0009done\n"


def demux(data):
    """Sideband output: (band 1, band 2)."""
    out, err, i = bytearray(), bytearray(), 0
    while i < len(data):
        n = int(data[i:i + 4], 16)
        if n == 0:
            i += 4
            continue
        (out if data[i + 4] == 1 else err).extend(data[i + 5:i + n])
        i += n
    return bytes(out), bytes(err)


@pytest.fixture
def big(cluster, tmp_path):
    """A repository in the cluster whose pack (~2 MiB: hex text of random numbers) is well past every window."""
    rnd = random.Random(11)
    files = {"blob%d.bin" % i: "".join("%08x" % rnd.getrandbits(32) for _ in range(32 * 1024))
             for i in range(16)}
    src = make_bare_repo(str(tmp_path / "src.git"), branches=("main", "feature"), files=files)
    create_repo(cluster, "big.git")
    push(cluster, src, "big.git", "--all")
    md = cluster.praefect.metadata("big.git")
    # every replica up to date, so any of them may serve the read
    wait_for(lambda: all(r.generation == md.generation
                         for r in cluster.praefect.metadata("big.git").replicas), what="replicas in sync")
    return src, md.replica_path


def heads(path):
    return [l.split()[0] for l in refs(path).splitlines() if " refs/heads/" in l]


class Client:
    """A backchannel connection to praefect or to a node, with stubs and the matching token."""

    def __init__(self, address, secret):
        self.conn = BackchannelConn(address)
        self.ch = grpc.insecure_channel(self.conn.target)
        self.ssh = pb_grpc("ssh").SSHServiceStub(self.ch)
        self.http = pb_grpc("smarthttp").SmartHTTPServiceStub(self.ch)
        self.md = auth_md(secret)

    def call(self, rpc, repo, data, read=None, answer=b"ok", with_id=True, **req):
        got = {}

        def handler(sc):
            sc.write(data)
            sc.close_write()
            got["body"] = read(sc) if read else sc.read_all()

        if rpc == "ssh":
            method = self.ssh.SSHUploadPackWithSidechannel
            msg = pb("ssh").SSHUploadPackWithSidechannelRequest(repository=repo, **req)
        else:
            method = self.http.PostUploadPackWithSidechannel
            msg = pb("smarthttp").PostUploadPackWithSidechannelRequest(repository=repo, **req)
        w = self.conn.sidechannel(handler, answer=answer)
        with w as md:
            resp = method(msg, metadata=(md if with_id else []) + self.md, timeout=60)
        if w.error:
            raise w.error
        return resp, got.get("body")

    def close(self):
        self.ch.close()
        self.conn.close()


@pytest.fixture
def via_praefect(cluster):
    c = Client("unix:" + cluster.praefect.socket, PRAEFECT_TOKEN)
    yield c
    c.close()


def direct(cluster, name="gitaly-1"):
    return Client("unix:" + cluster.nodes[name].socket, NODE_TOKEN)


def node_repo(name, replica_path):
    return pb("shared").Repository(storage_name=name, relative_path=replica_path)


def no_upload_pack_left(cluster, replica_path):
    paths = [os.path.join(n.storages[name], replica_path) for name, n in cluster.nodes.items()]
    return wait_until(lambda: not any(processes_touching(p) for p in paths))


@pytest.mark.parametrize("rpc", ["ssh", "http"])
def test_pack_through_praefect_is_byte_equal_to_the_nodes(cluster, big, via_praefect, rpc):
    """The same request through praefect's sidechannel and straight to a node's gives the same bytes,
    with the same negotiation statistics."""
    src, replica_path = big
    req = want_request(heads(src), CAPS_SSH if rpc == "ssh" else CAPS_HTTP)
    cfg = ["pack.threads=1"]
    resp, body = via_praefect.call(rpc, cluster.praefect.repo("big.git"), req, git_config_options=cfg)
    d = direct(cluster)
    try:
        ref_resp, ref_body = d.call(rpc, node_repo("gitaly-1", replica_path), req, git_config_options=cfg)
    finally:
        d.close()
    if rpc == "ssh":
        pack, ref_pack = demux(body)[0], demux(ref_body)[0]
        pack, ref_pack = demux(pack)[0], demux(ref_pack)[0]   # git's own side-band inside
    else:
        assert body.startswith(b"0008NAK\nPACK")
        pack, ref_pack = body, ref_body
    assert len(pack) > 2 * 1024 * 1024
    assert pack == ref_pack
    assert resp.packfile_negotiation_statistics == ref_resp.packfile_negotiation_statistics
    assert resp.packfile_negotiation_statistics.wants == 2


def test_http_pack_through_praefect_makes_a_clean_clone(cluster, big, via_praefect, tmp_path):
    src, replica_path = big
    _, body = via_praefect.call("http", cluster.praefect.repo("big.git"), want_request(heads(src), CAPS_HTTP))
    assert body.startswith(b"0008NAK\n")
    dst = str(tmp_path / "clone.git")
    git("init", "-q", "--bare", dst)
    subprocess.run(["git", "index-pack", "--stdin", "--fix-thin"], input=body[8:], cwd=dst, check=True,
                   capture_output=True)
    for line in refs(src).splitlines():
        oid, name = line.split()
        git("update-ref", name, oid, cwd=dst)
    assert refs(dst) == refs(src)
    fsck(dst)
    assert no_upload_pack_left(cluster, replica_path)


SSH_HELPER = r'''
import os, sys, threading
sys.path.insert(0, os.environ["SC_LIBDIR"]); sys.path.insert(0, os.environ["SC_GENDIR"])
import grpc, ssh_pb2, ssh_pb2_grpc, shared_pb2
from sidechannel_client import BackchannelConn
rel = sys.argv[-1].split("'")[1].lstrip("/")
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
            os.write(1 if buf[4] == 1 else 2, buf[5:n])
            buf = buf[n:]

req = ssh_pb2.SSHUploadPackWithSidechannelRequest(
    repository=shared_pb2.Repository(storage_name="default", relative_path=rel),
    git_protocol=os.environ.get("GIT_PROTOCOL", ""))
w = conn.sidechannel(handler)
with w as md:
    stub.SSHUploadPackWithSidechannel(req, metadata=md + [("authorization", os.environ["SC_AUTH"])])
if w.error:
    raise w.error
os._exit(0)
'''


@pytest.mark.parametrize("version", ["0", "2"])
def test_git_clone_over_ssh_sidechannel_through_praefect(cluster, big, tmp_path, version):
    """git clone with a GitLab Shell stand-in that speaks SSHUploadPackWithSidechannel to praefect."""
    src, replica_path = big
    helper = tmp_path / "ssh_helper.py"
    helper.write_text(SSH_HELPER)
    env = {"GIT_SSH_COMMAND": "%s %s" % (PYTHON, helper), "SC_LIBDIR": os.path.dirname(HERE),
           "SC_GENDIR": proto_modules(), "SC_ADDR": "unix:" + cluster.praefect.socket,
           "SC_AUTH": auth_md(PRAEFECT_TOKEN)[0][1]}
    dst = str(tmp_path / "clone")
    git("-c", "protocol.version=" + version, "clone", "-q", "--bare", "ssh://gitaly/big.git", dst, env=env)
    assert refs(dst) == refs(src)
    fsck(dst)
    assert no_upload_pack_left(cluster, replica_path)


def test_gitaly_ssh_clone_with_sidechannel_through_praefect(cluster, big, tmp_path):
    src, replica_path = big
    env = gitaly_ssh_env(cluster.praefect, "big.git", "upload-pack")
    env["GITALY_USE_SIDECHANNEL"] = "1"
    dst = str(tmp_path / "clone")
    git("clone", "-q", "--bare", "ssh://gitaly/big.git", dst, env=env)
    assert refs(dst) == refs(src)
    fsck(dst)
    logs = "".join(open(n.log_path).read() for n in cluster.nodes.values()
                   if hasattr(n, "log_path") and os.path.exists(n.log_path))
    if logs:
        assert "SSHUploadPackWithSidechannel" in logs
    assert no_upload_pack_left(cluster, replica_path)


def test_missing_or_unusable_sidechannel_gets_upstreams_errors(cluster, big, via_praefect):
    src, _ = big
    repo = cluster.praefect.repo("big.git")
    req = want_request(heads(src), CAPS_HTTP)
    # no id: the node's own answer, passed on
    with pytest.raises(grpc.RpcError) as e:
        via_praefect.call("ssh", repo, req, with_id=False)
    assert e.value.code() == grpc.StatusCode.ABORTED
    assert e.value.details() == "opennig sidechannel: sidechannel: sidechannel-id not found in incoming metadata"
    with pytest.raises(grpc.RpcError) as e:
        via_praefect.call("http", repo, req, with_id=False)
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert e.value.details() == "open sidechannel: sidechannel: sidechannel-id not found in incoming metadata"
    # an id nobody on the client waits for, and a wrong answer: the node's words, through praefect
    with pytest.raises(grpc.RpcError) as e:
        via_praefect.ssh.SSHUploadPackWithSidechannel(
            pb("ssh").SSHUploadPackWithSidechannelRequest(repository=repo),
            metadata=[("gitaly-sidechannel-id", "999")] + via_praefect.md, timeout=30)
    assert e.value.code() == grpc.StatusCode.ABORTED
    assert e.value.details() == "opennig sidechannel: sidechannel: receive confirmation: EOF"
    assert via_praefect.conn.unknown == 1
    with pytest.raises(grpc.RpcError) as e:
        via_praefect.call("ssh", repo, req, answer=b"no")
    assert e.value.code() == grpc.StatusCode.ABORTED
    assert e.value.details() == 'opennig sidechannel: sidechannel: expected ok, got "no"'
    # an id on a plain (not multiplexed) connection
    for stub, code, prefix in ((cluster.praefect.stub("SSHService").SSHUploadPackWithSidechannel,
                                grpc.StatusCode.ABORTED, "opennig sidechannel"),
                               (cluster.praefect.stub("SmartHTTPService").PostUploadPackWithSidechannel,
                                grpc.StatusCode.INTERNAL, "open sidechannel")):
        msg = (pb("ssh").SSHUploadPackWithSidechannelRequest if prefix.startswith("opennig")
               else pb("smarthttp").PostUploadPackWithSidechannelRequest)(repository=repo)
        with pytest.raises(grpc.RpcError) as e:
            stub(msg, metadata=[("gitaly-sidechannel-id", "1")], timeout=30)
        assert e.value.code() == code
        assert e.value.details() == \
            prefix + ": sidechannel: fail to extract yamux session: non-multiplexed connection"
    # and the connection still serves
    _, body = via_praefect.call("http", repo, req)
    assert body.startswith(b"0008NAK\nPACK")


@pytest.mark.parametrize("how", ["reset", "hangup"])
def test_client_vanishing_mid_pack_leaves_praefect_serving(cluster, big, how):
    src, replica_path = big
    c = Client("unix:" + cluster.praefect.socket, PRAEFECT_TOKEN)
    seen = {}

    def read_some(sc):
        first = sc.read(65536)
        seen["n"] = len(first)
        if how == "reset":
            sc.stream.abort()
        else:
            c.conn.session.close()
        return first

    req = want_request(heads(src), CAPS_HTTP)
    try:
        with pytest.raises(grpc.RpcError):
            c.call("http", cluster.praefect.repo("big.git"), req, read=read_some)
    finally:
        c.close()
    assert seen["n"] > 0
    assert no_upload_pack_left(cluster, replica_path)
    # praefect serves the next clients, on new connections and plain ones
    c2 = Client("unix:" + cluster.praefect.socket, PRAEFECT_TOKEN)
    try:
        _, body = c2.call("http", cluster.praefect.repo("big.git"), req)
        assert body.startswith(b"0008NAK\nPACK")
    finally:
        c2.close()
    assert cluster.praefect.stub("RepositoryService").RepositoryExists(
        pb("repository").RepositoryExistsRequest(repository=cluster.praefect.repo("big.git")), timeout=10).exists
    assert cluster.praefect.proc.poll() is None


def write_incompressible_repo(path, total_mb, blob_mb=64):
    """A bare repository at `path` whose one commit holds `total_mb` MiB of random blobs, written by
    git fast-import straight into one uncompressed pack (no work tree, no second copy)."""
    git("init", "-q", "--bare", path)
    fi = subprocess.Popen(["git", "-c", "pack.compression=0", "-c", "core.compression=0", "-c", "core.bigFileThreshold=1m",
                           "-c", "fastimport.unpackLimit=0",
                           "fast-import", "--quiet"],
                          cwd=path, stdin=subprocess.PIPE)
    n = max(1, total_mb // blob_mb)
    for i in range(n):
        fi.stdin.write(b"blob\nmark :%d\ndata %d\n" % (i + 1, blob_mb << 20))
        for _ in range(blob_mb):
            fi.stdin.write(os.urandom(1 << 20))
        fi.stdin.write(b"\n")
    fi.stdin.write(b"commit refs/heads/main\ncommitter T <t@example.com> 1700000000 +0000\ndata 4\nbig\n")
    for i in range(n):
        fi.stdin.write(b"M 100644 :%d f%d.bin\n" % (i + 1, i))
    fi.stdin.write(b"\n")
    fi.stdin.close()
    assert fi.wait(timeout=600) == 0


def test_large_clone_through_praefect_keeps_its_memory_small(cluster, tmp_path):
    """A 1 GiB clone with gitaly-ssh and the sidechannel through praefect: the peak RSS of praefect
    and of every node stays under 50 MB (the copy holds at most its windows, whatever the size of the pack; a proxy that
    buffered the pack would pass 1 GiB). bench/clone.sh measures the CPU cost of such clones."""
    from helpers_transport import rss_kib
    with open("/proc/%d/maps" % cluster.praefect.proc.pid) as f:
        if "libasan" in f.read():
            pytest.skip("peak RSS is meaningless under ASan")
    src = str(tmp_path / "src.git")
    write_incompressible_repo(src, 1024)
    create_repo(cluster, "huge.git")
    replica = cluster.praefect.metadata("huge.git").replica_path
    paths = [os.path.join(n.storages[name], replica) for name, n in cluster.nodes.items()]
    wait_for(lambda: all(os.path.isdir(os.path.join(p, "objects", "pack")) for p in paths), what="replicas")
    head = git("rev-parse", "refs/heads/main", cwd=src).strip()
    for path in paths:
        # the same content on every replica, without pushing 1 GiB three times
        for f in os.listdir(os.path.join(src, "objects", "pack")):
            os.link(os.path.join(src, "objects", "pack", f), os.path.join(path, "objects", "pack", f))
        git("update-ref", "refs/heads/main", head, cwd=path)
    env = gitaly_ssh_env(cluster.praefect, "huge.git", "upload-pack")
    env["GITALY_USE_SIDECHANNEL"] = "1"
    dst = str(tmp_path / "clone")
    git("clone", "-q", "--bare", "ssh://gitaly/huge.git", dst, env=env)
    assert refs(dst) == refs(src)
    peak = rss_kib(cluster.praefect.proc.pid, "VmHWM")
    assert peak < 50 * 1024, "praefect's peak RSS %d KiB" % peak
    # and the node that served it (whichever replica the read went to): git's output is bounded there too
    for name, node in cluster.nodes.items():
        peak = rss_kib(node.proc.pid, "VmHWM")
        assert peak < 50 * 1024, "%s's peak RSS %d KiB" % (name, peak)
