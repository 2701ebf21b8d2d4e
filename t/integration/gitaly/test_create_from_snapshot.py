"""CreateRepositoryFromSnapshot against a real node: the archive GetSnapshot
made, served by a loopback HTTP server that wants an Authorization header."""
import http.server
import os
import threading

import grpc
import pytest

from gitaly_itest import git, make_bare_repo, pb


def rp():
    return pb("repository")


def refs(path):
    return sorted(git("--git-dir", path, "for-each-ref", "--format=%(objectname) %(refname)").splitlines())


@pytest.fixture
def http_server():
    """Serves {path: bytes} from .files when the Authorization header is .auth; records requests."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            srv.requests.append((self.path, self.headers.get("Authorization"), self.headers.get("Host")))
            if self.headers.get("Authorization") != srv.auth:
                self.send_response(401, "Unauthorized")
                self.end_headers()
                return
            if self.path == "/redirect":
                self.send_response(302, "Found")
                self.send_header("Location", "/snap.tar")
                self.end_headers()
                return
            body = srv.files.get(self.path)
            if body is None:
                self.send_response(404, "Not Found")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.files, srv.auth, srv.requests = {}, "Bearer s3cret", []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def snapshot(node, rel):
    return b"".join(r.data for r in node.stub("RepositoryService").GetSnapshot(
        rp().GetSnapshotRequest(repository=node.repo(rel))))


def create(node, rel, url, auth="Bearer s3cret", resolved=""):
    return node.stub("RepositoryService").CreateRepositoryFromSnapshot(rp().CreateRepositoryFromSnapshotRequest(
        repository=node.repo(rel), http_url=url, http_auth=auth, resolved_address=resolved), timeout=30)


def test_create_repository_from_snapshot_over_http(gitaly_node, http_server):
    src = make_bare_repo(gitaly_node.repo_path("src.git"), branches=("main", "topic"), tags=("v1",))
    http_server.files["/snap.tar"] = snapshot(gitaly_node, "src.git")
    port = http_server.server_address[1]
    create(gitaly_node, "copy.git", "http://127.0.0.1:%d/snap.tar" % port)
    copy = gitaly_node.repo_path("copy.git")
    assert refs(copy) == refs(src)
    git("--git-dir", copy, "fsck")
    assert os.path.exists(os.path.join(copy, "config"))
    assert http_server.requests[-1][1] == "Bearer s3cret"

    # resolved_address: the host name is never looked up
    create(gitaly_node, "resolved.git", "http://snapshots.invalid:%d/snap.tar" % port, resolved="127.0.0.1")
    assert refs(gitaly_node.repo_path("resolved.git")) == refs(src)
    assert http_server.requests[-1][2] == "snapshots.invalid:%d" % port


def test_create_repository_from_snapshot_errors(gitaly_node, http_server):
    port = http_server.server_address[1]
    base = "http://127.0.0.1:%d" % port
    http_server.files["/junk.tar"] = b"this is not a tar archive" * 100
    cases = [
        ("a.git", base + "/missing.tar", "Bearer s3cret", "",
         grpc.StatusCode.INTERNAL, "creating repository: extracting snapshot: HTTP server: 404 Not Found"),
        ("b.git", base + "/snap.tar", "Bearer wrong", "",
         grpc.StatusCode.INTERNAL, "creating repository: extracting snapshot: HTTP server: 401 Unauthorized"),
        ("c.git", base + "/redirect", "Bearer s3cret", "",
         grpc.StatusCode.INTERNAL, "creating repository: extracting snapshot: HTTP server: 302 Found"),
        ("d.git", base + "/junk.tar", "Bearer s3cret", "",
         grpc.StatusCode.INTERNAL, "creating repository: extracting snapshot: exit status 2"),
        ("e.git", "ftp://127.0.0.1/x.tar", "", "", grpc.StatusCode.INVALID_ARGUMENT, None),
        ("f.git", base + "/snap.tar", "", "not-an-ip", grpc.StatusCode.INVALID_ARGUMENT,
         'creating resolved HTTP client: invalid resolved address "not-an-ip"'),
    ]
    for rel, url, auth, resolved, code, details in cases:
        with pytest.raises(grpc.RpcError) as e:
            create(gitaly_node, rel, url, auth, resolved)
        assert e.value.code() == code, rel
        if details:
            assert e.value.details() == details, rel
        assert not os.path.exists(gitaly_node.repo_path(rel)), rel
    make_bare_repo(gitaly_node.repo_path("exists.git"))
    with pytest.raises(grpc.RpcError) as e:
        create(gitaly_node, "exists.git", base + "/snap.tar")
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    tmp = os.path.join(gitaly_node.storages["default"], "+gitaly", "tmp")
    assert not os.listdir(tmp)
