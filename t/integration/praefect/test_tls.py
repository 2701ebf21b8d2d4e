"""TLS listeners on gitaly and praefect, and praefect dialing tls:// nodes (docs/technical/tls.md)."""
import datetime
import os
import re
import socket
import ssl
import subprocess

import grpc
import pytest

from praefect_itest import NODE_TOKEN, PRAEFECT_TOKEN, Praefect, wait_for
from gitaly_itest import BUILD, TOKEN, GitalyNode, _make_interceptor, git, make_bare_repo, pb, pb_grpc
from test_praefect import gitaly_ssh_env

pytestmark = pytest.mark.xdist_group("tls")


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def make_ca(d):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=test CA", cwd=d)
    return os.path.join(d, "ca.pem")


def make_cert(d, name, san, days=2):
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
            "-subj", "/CN=" + name, cwd=d)
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write("subjectAltName=%s\n" % san)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", name + ".pem", "-days", str(days), "-extfile", name + ".ext", cwd=d)
    return os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")


def make_expired_cert(d, name):
    """Signed by the CA, valid for localhost, but expired yesterday (openssl x509 cannot backdate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    import ipaddress
    ca_cert = x509.load_pem_x509_certificate(open(os.path.join(d, "ca.pem"), "rb").read())
    ca_key = serialization.load_pem_private_key(open(os.path.join(d, "ca.key"), "rb").read(), None)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.utcnow()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=3)).not_valid_after(now - datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    cp, kp = os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
    open(cp, "wb").write(cert.public_bytes(serialization.Encoding.PEM))
    open(kp, "wb").write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cp, kp


@pytest.fixture
def pki(tmp_path):
    d = str(tmp_path / "pki")
    os.makedirs(d)
    ca = make_ca(d)
    cert, key = make_cert(d, "server", "DNS:localhost,IP:127.0.0.1")
    return {"dir": d, "ca": ca, "cert": cert, "key": key}


def prepend_config(path, lines):
    body = open(path).read()
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n" + body)


def tls_node(workdir, cert, key, storages=("default",), token=TOKEN):
    node = GitalyNode(workdir, storages=storages, token=token)
    prepend_config(node.config_path, ['tls_listen_addr = "127.0.0.1:0"'])
    with open(node.config_path, "a") as f:
        f.write('\n[tls]\ncertificate_path = "%s"\nkey_path = "%s"\n' % (cert, key))
    node.start()
    node.tls_addr = wait_for(lambda: tls_addr(node.log_path), what="TLS listener")
    return node


def tls_addr(log_path):
    m = re.findall(r'listening with TLS on ([0-9.]+:\d+)', open(log_path).read())
    return m[-1] if m else None


def tls_channel(ca, target, secret):
    creds = grpc.ssl_channel_credentials(root_certificates=open(ca, "rb").read())
    ch = grpc.secure_channel(target, creds)
    return ch, grpc.intercept_channel(ch, _make_interceptor(secret))


def check_unary_and_stream(ch, make_repo=True, storage="default"):
    repo = pb("shared").Repository(storage_name=storage, relative_path="tls.git")
    rs = pb_grpc("repository").RepositoryServiceStub(ch)
    if make_repo:
        rs.CreateRepository(pb("repository").CreateRepositoryRequest(repository=repo), timeout=10)
    assert rs.RepositoryExists(pb("repository").RepositoryExistsRequest(repository=repo), timeout=10).exists
    # server streaming
    refs = list(pb_grpc("ref").RefServiceStub(ch).FindLocalBranches(
        pb("ref").FindLocalBranchesRequest(repository=repo), timeout=10))
    assert refs is not None


@pytest.mark.no_store("gitaly's TLS listener alone: no praefect")
def test_gitaly_tls_listener_unary_and_streaming(pki, tmp_path):
    node = tls_node(str(tmp_path / "g"), pki["cert"], pki["key"])
    try:
        raw, ch = tls_channel(pki["ca"], "localhost:" + node.tls_addr.split(":")[1], TOKEN)
        check_unary_and_stream(ch)
        raw.close()
        # the IP SAN works too
        raw, ch = tls_channel(pki["ca"], node.tls_addr, TOKEN)
        check_unary_and_stream(ch, make_repo=False)
        raw.close()
    finally:
        node.stop()


@pytest.mark.no_store("gitaly's TLS listener alone: no praefect")
def test_bad_clients_do_not_disturb_tls_or_plain_listeners(pki, tmp_path):
    node = tls_node(str(tmp_path / "g"), pki["cert"], pki["key"])
    try:
        host, port = node.tls_addr.split(":")
        # plaintext HTTP/2 preface on the TLS port
        s = socket.create_connection((host, int(port)), timeout=10)
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\0" * 64)
        s.settimeout(10)
        try:
            while s.recv(4096):
                pass
        except (ConnectionResetError, socket.timeout):
            pass
        s.close()
        wait_for(lambda: "TLS handshake failed" in node.log(), what="handshake failure logged")
        # a plaintext gRPC client on the TLS port fails, the listener stays up
        plain = grpc.insecure_channel(node.tls_addr)
        with pytest.raises(grpc.RpcError) as e:
            pb_grpc("repository").RepositoryServiceStub(grpc.intercept_channel(plain, _make_interceptor(TOKEN))) \
                .RepositoryExists(pb("repository").RepositoryExistsRequest(
                    repository=pb("shared").Repository(storage_name="default", relative_path="x.git")), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        plain.close()
        # a TLS client on the plaintext port fails
        ctx = ssl.create_default_context(cafile=pki["ca"])
        ctx.set_alpn_protocols(["h2"])
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            phost, pport = node.tcp_addr.split(":")
            with socket.create_connection((phost, int(pport)), timeout=10) as s2:
                with ctx.wrap_socket(s2, server_hostname="localhost") as ts:
                    ts.recv(1)
        wait_for(lambda: "on a plaintext listener" in node.log(), what="TLS client on the plain port logged")
        # both listeners still serve
        raw, ch = tls_channel(pki["ca"], node.tls_addr, TOKEN)
        check_unary_and_stream(ch)
        raw.close()
        r = node.stub("RepositoryService").RepositoryExists(pb("repository").RepositoryExistsRequest(
            repository=node.repo("tls.git")), timeout=10)
        assert r.exists
        # ALPN without h2 is refused
        ctx2 = ssl.create_default_context(cafile=pki["ca"])
        ctx2.set_alpn_protocols(["http/1.1"])
        with pytest.raises(ssl.SSLError):
            with socket.create_connection((host, int(port)), timeout=10) as s3:
                with ctx2.wrap_socket(s3, server_hostname="localhost"):
                    pass
        assert node.proc.poll() is None
    finally:
        node.stop()


def tls_cluster(tmp_path, pki, certs=None, praefect_tls=False):
    nodes = {}
    for i in (1, 2, 3):
        name = "gitaly-%d" % i
        cert, key = (certs or {}).get(name, (pki["cert"], pki["key"]))
        nodes[name] = tls_node(str(tmp_path / name), cert, key, storages=(name,), token=NODE_TOKEN)
    addrs = {n: "tls://localhost:%s" % node.tls_addr.split(":")[1] for n, node in nodes.items()}
    p = Praefect(str(tmp_path / "praefect"), nodes, addresses=addrs)
    if praefect_tls:
        prepend_config(p.config_path, ['tls_listen_addr = "127.0.0.1:0"'])
        with open(p.config_path, "a") as f:
            f.write('\n[tls]\ncertificate_path = "%s"\nkey_path = "%s"\n' % (pki["cert"], pki["key"]))
    return nodes, p


def stop_all(nodes, p):
    p.stop()
    for n in nodes.values():
        n.stop()


def test_cluster_over_tls_push_clone(pki, tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", pki["ca"])
    nodes, p = tls_cluster(tmp_path, pki, praefect_tls=True)
    try:
        p.start()
        paddr = wait_for(lambda: tls_addr(p.log_path), what="praefect TLS listener")
        raw, ch = tls_channel(pki["ca"], "localhost:" + paddr.split(":")[1], PRAEFECT_TOKEN)
        check_unary_and_stream(ch)
        raw.close()

        src = make_bare_repo(str(tmp_path / "src.git"), branches=("main", "feature"), tags=("v1.0",))
        # gitaly-ssh dials praefect's TLS listener; praefect dials the nodes over TLS
        env = gitaly_ssh_env(p, "tls.git", "receive-pack")
        env["GITALY_ADDRESS"] = "tls://localhost:" + paddr.split(":")[1]
        git("push", "ssh://gitaly/repo.git", "--all", cwd=src, env=env)
        clone = str(tmp_path / "clone")
        env = gitaly_ssh_env(p, "tls.git", "upload-pack")
        env["GITALY_ADDRESS"] = "tls://localhost:" + paddr.split(":")[1]
        git("clone", "--bare", "ssh://gitaly/repo.git", clone, env=env)
        fmt = "--format=%(objectname) %(refname)"
        assert git("for-each-ref", fmt, "refs/heads", cwd=clone) == git("for-each-ref", fmt, "refs/heads", cwd=src)
        # the push replicated to every node over TLS
        md = p.metadata("tls.git")

        def synced():
            sums = set()
            for r in md.replicas:
                rch = grpc.intercept_channel(tls_channel(pki["ca"], nodes[r.storage].tls_addr, NODE_TOKEN)[1],
                                             _make_interceptor(NODE_TOKEN))
                sums.add(pb_grpc("repository").RepositoryServiceStub(rch).CalculateChecksum(
                    pb("repository").CalculateChecksumRequest(repository=pb("shared").Repository(
                        storage_name=r.storage, relative_path=md.replica_path)), timeout=10).checksum)
            return len(md.replicas) == 3 and len(sums) == 1
        wait_for(synced, what="replication over TLS")
    finally:
        stop_all(nodes, p)


def test_bad_node_certificates_mark_nodes_unhealthy(pki, tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", pki["ca"])
    d = pki["dir"]
    wrong = make_cert(d, "wrong", "DNS:other.example")
    expired = make_expired_cert(d, "expired")
    nodes, p = tls_cluster(tmp_path, pki, certs={"gitaly-2": wrong, "gitaly-3": expired})
    try:
        try:
            p.start()
        except RuntimeError:
            pass  # start() waits for every node to be healthy; two never are
        assert p.proc.poll() is None
        wait_for(lambda: "hostname mismatch" in p.log() and "certificate has expired" in p.log(),
                 what="verification failures logged")
        assert "node default/gitaly-1 is healthy" in p.log()
        assert "node default/gitaly-2 is healthy" not in p.log()
        assert "node default/gitaly-3 is healthy" not in p.log()
        # praefect keeps serving, and counts only the node it could verify
        with pytest.raises(grpc.RpcError) as e:
            p.stub("RepositoryService").CreateRepository(
                pb("repository").CreateRepositoryRequest(repository=p.repo("ok.git")), timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "1 of 3" in e.value.details()
    finally:
        stop_all(nodes, p)


@pytest.mark.no_store("gitaly's TLS listener alone: no praefect")
def test_sighup_upgrade_keeps_tls_listener(pki, tmp_path):
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from test_upgrade import GITALY, Wrapped, gitaly_serves
    from gitaly_itest import alive
    workdir = str(tmp_path / "g")
    node = GitalyNode(workdir)
    prepend_config(node.config_path, ['tls_listen_addr = "127.0.0.1:0"'])
    with open(node.config_path, "a") as f:
        f.write('\n[tls]\ncertificate_path = "%s"\nkey_path = "%s"\n' % (pki["cert"], pki["key"]))

    def tls_serves(addr):
        raw, ch = tls_channel(pki["ca"], addr, TOKEN)
        try:
            pb_grpc("repository").RepositoryServiceStub(ch).RepositoryExists(pb("repository").RepositoryExistsRequest(
                repository=node.repo("x.git")), timeout=5)
            return True
        except grpc.RpcError:
            return False
        finally:
            raw.close()

    w = Wrapped([GITALY, node.config_path], os.path.join(workdir, "gitaly.pid"), node.log_path,
                lambda: tls_addr(node.log_path) and gitaly_serves(node, TOKEN))
    try:
        w.start()
        addr = tls_addr(node.log_path)
        assert tls_serves(addr)
        old, new = w.upgrade()
        wait_for(lambda: "upgrade: took over inherited listener tls:127.0.0.1:0" in w.text(), what="TLS hand-over")
        wait_for(lambda: not alive(old), what="the old gitaly to exit")
        assert tls_addr(node.log_path) == addr  # the same socket
        assert tls_serves(addr)
    finally:
        w.stop()
        node.stop()


@pytest.mark.no_store("gitaly's TLS listener alone: no praefect")
def test_configuration_validate_checks_tls_files(pki, tmp_path):
    from test_admin_config import base, run as praefect_run
    gitaly_bin = os.path.join(BUILD, "gitaly", "gitaly")
    shell = tmp_path / "gitlab-shell"
    shell.mkdir()
    node = GitalyNode(str(tmp_path / "g"), extra_config='\n[gitlab]\nurl = "http://127.0.0.1:1"\nsecret = "s"\n'
                      '[gitlab-shell]\ndir = "%s"\n' % shell)
    good = 'tls_listen_addr = "127.0.0.1:0"\n' + open(node.config_path).read()
    other_key = make_cert(pki["dir"], "other", "DNS:localhost")[1]
    missing = str(tmp_path / "missing.pem")
    cases = [
        ((pki["cert"], pki["key"]), []),
        ((missing, missing), [{"key": ["tls", "certificate_path"], "message": 'doesn\'t exist: "%s"' % missing},
                              {"key": ["tls", "key_path"], "message": 'doesn\'t exist: "%s"' % missing}]),
        ((pki["dir"], pki["key"]), [{"key": ["tls", "certificate_path"], "message": 'not a file: "%s"' % pki["dir"]}]),
    ]
    for (cert, key), want in cases:
        tls = '\n[tls]\ncertificate_path = "%s"\nkey_path = "%s"\n' % (cert, key)
        for argv, text in (([gitaly_bin, "configuration", "validate"], good + tls),
                           ([None], base(tmp_path, tls))):
            if argv[0] is None:
                r = praefect_run("configuration", "validate", input=text)
            else:
                r = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=30)
            if not want:
                assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r.stdout
            else:
                assert r.returncode == 2
                import json
                got = [e for e in json.loads(r.stdout)["errors"] if e.get("key", [""])[0] == "tls"]
                assert got == want
    # a key that does not belong to the certificate
    tls = '\n[tls]\ncertificate_path = "%s"\nkey_path = "%s"\n' % (pki["cert"], other_key)
    r = subprocess.run([gitaly_bin, "configuration", "validate"], input=good + tls, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2
    import json
    (e,) = json.loads(r.stdout)["errors"]
    assert e["key"] == ["tls", "key_path"] and e["message"].startswith("loading x509 keypair: ")
