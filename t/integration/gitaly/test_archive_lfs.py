"""GetArchive include_lfs_blobs: LFS pointers under filter=lfs replaced by their objects, fetched from
GitLab's internal API (GET /lfs?gl_repository=...&oid=...) as upstream's gitaly-lfs-smudge does."""
import hashlib
import io
import os
import random
import shutil
import subprocess
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gitaly_itest import GitalyNode, git, pb
from helpers_hooks import GITLAB_SECRET, check_jwt

F = lambda: pb("repository").GetArchiveRequest  # noqa: E731


def pointer(data):
    return ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n"
            % (hashlib.sha256(data).hexdigest(), len(data)))


class LFSServer:
    """GitLab's GET /api/v4/internal/lfs: the objects it has by oid, 404 for the others."""

    def __init__(self, objects):
        self.objects = {hashlib.sha256(o).hexdigest(): o for o in objects}
        self.requests = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake.requests.append((self.path, dict(self.headers)))
                q = dict(p.split("=", 1) for p in self.path.split("?", 1)[-1].split("&") if "=" in p)
                data = fake.objects.get(q.get("oid"))
                self.send_response(200 if data is not None else 404)
                body = data if data is not None else b'{"message":"404 Not found"}'
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("archive_lfs"))
    big = random.Random(3).randbytes(3 * 1024 * 1024)   # more than any JSON answer may be
    small, missing = b"small LFS object\n", b"an object GitLab does not have\n"
    work, bare = os.path.join(base, "work"), os.path.join(base, "repo.git")
    git("init", "-q", "-b", "main", work)
    files = {
        ".gitattributes": "*.lfs filter=lfs diff=lfs merge=lfs -text\n",
        "big.lfs": pointer(big),
        "sub/small.lfs": pointer(small),
        "sub/again.lfs": pointer(small),
        "missing.lfs": pointer(missing),
        # a pointer outside filter=lfs is not smudged, as with git-lfs
        "plain.txt": pointer(small),
        "not-a-pointer.lfs": "just text\n",
    }
    for name, content in files.items():
        full = os.path.join(work, name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(content)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "lfs", cwd=work)
    git("clone", "-q", "--bare", work, bare)
    server = LFSServer([big, small])
    yield {"bare": bare, "files": files, "big": big, "small": small, "server": server,
           "commit": git("--git-dir", bare, "rev-parse", "main").strip()}
    server.stop()


def _contents(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}


def test_lfs_pointers_become_their_objects_fetched_from_gitlab(tmp_path, world):
    srv = world["server"]
    node = GitalyNode(str(tmp_path / "n"), extra_config='\n[gitlab]\nurl = "%s"\nsecret = "%s"\n'
                      % (srv.url, GITLAB_SECRET)).start()
    try:
        shutil.copytree(world["bare"], node.repo_path("r.git"))
        repo = node.repo("r.git", gl_repository="project-7")
        stub = node.stub("RepositoryService")

        def archive(**kw):
            return b"".join(m.data for m in stub.GetArchive(F()(repository=repo, commit_id=world["commit"],
                                                                prefix="p", format=F().TAR, **kw)))

        del srv.requests[:]
        got = _contents(archive(include_lfs_blobs=True))
        f = world["files"]
        assert got["p/big.lfs"] == world["big"]
        assert got["p/sub/small.lfs"] == got["p/sub/again.lfs"] == world["small"]
        # GitLab answered 404: the pointer stays; files that are no pointers, or not under filter=lfs, too
        assert got["p/missing.lfs"] == f["missing.lfs"].encode()
        assert got["p/plain.txt"] == f["plain.txt"].encode()
        assert got["p/not-a-pointer.lfs"] == b"just text\n"
        # one GET per distinct pointer, with GitLab's JWT
        oids = sorted(hashlib.sha256(o).hexdigest() for o in (world["big"], world["small"],
                                                               b"an object GitLab does not have\n"))
        assert sorted(p for p, _ in srv.requests) == sorted(
            "/api/v4/internal/lfs?gl_repository=project-7&oid=" + o for o in oids)
        for _, headers in srv.requests:
            assert check_jwt(headers["Gitlab-Shell-Api-Request"])["iss"] == "gitlab-shell"
        # a subtree only fetches what it holds
        del srv.requests[:]
        got = _contents(archive(include_lfs_blobs=True, path=b"sub"))
        assert got["p/sub/small.lfs"] == world["small"] and "p/big.lfs" not in got
        assert [p.rsplit("=", 1)[1] for p, _ in srv.requests] == [hashlib.sha256(world["small"]).hexdigest()]
        # without the flag nothing is fetched and the bytes are git archive's
        del srv.requests[:]
        plain = archive()
        assert srv.requests == [] and _contents(plain)["p/big.lfs"] == f["big.lfs"].encode()
        assert plain == subprocess.run(["git", "--git-dir", world["bare"], "archive", "--format=tar", "--prefix=p/",
                                        world["commit"]], capture_output=True, check=True).stdout
        # nothing of the call is left in the storage's temporary directory
        tmp = os.path.join(node.storages["default"], "+gitaly", "tmp")
        assert not [d for d in (os.listdir(tmp) if os.path.isdir(tmp) else []) if d.startswith("archive-lfs-")]
    finally:
        node.stop()


def test_gitlab_unreachable_keeps_the_pointers(tmp_path, world):
    node = GitalyNode(str(tmp_path / "n"), extra_config='\n[gitlab]\nurl = "http://127.0.0.1:1"\nsecret = "s"\n')
    node.start()
    try:
        shutil.copytree(world["bare"], node.repo_path("r.git"))
        data = b"".join(m.data for m in node.stub("RepositoryService").GetArchive(F()(
            repository=node.repo("r.git", gl_repository="project-7"), commit_id=world["commit"], prefix="p",
            format=F().TAR, include_lfs_blobs=True)))
        assert _contents(data)["p/big.lfs"] == world["files"]["big.lfs"].encode()
    finally:
        node.stop()
