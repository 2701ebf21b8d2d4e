"""SmartHTTPService: info/refs advertisements and PostReceivePack, with a real
git client pushing through a small smart-HTTP front end."""
import os
import queue
import subprocess

import grpc
import pytest

from gitaly_itest import git, make_bare_repo, pb
from helpers_transport import SmartHTTP, fsck, processes_touching, refs, wait_until


def smarthttp():
    return pb("smarthttp")


def info_refs(node, service, **kw):
    stub = node.stub("SmartHTTPService", secret=kw.pop("secret", "the-secret-token"))
    call = stub.InfoRefsUploadPack if service == "upload-pack" else stub.InfoRefsReceivePack
    return b"".join(r.data for r in call(smarthttp().InfoRefsRequest(**kw)))


def ref_lines(adv):
    """{refname: oid} from a v0 advertisement (after the service header)."""
    out, data = {}, adv
    while data:
        n = int(data[:4], 16)
        if n == 0:
            data = data[4:]
            continue
        line = data[4:n].rstrip(b"\n").split(b"\0")[0]
        oid, name = line.split(b" ", 1)
        out[name.decode()] = oid.decode()
        data = data[n:]
    return out


def test_info_refs_upload_pack(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("a.git"), branches=("main", "dev"), tags=("v1",))
    head = git("rev-parse", "HEAD", cwd=path).strip()
    git("update-ref", "refs/keep-around/" + head, head, cwd=path)
    data = info_refs(gitaly_node, "upload-pack", repository=gitaly_node.repo("a.git"))
    header = b"001e# service=git-upload-pack\n0000"
    assert data.startswith(header)
    adv = data[len(header):]
    first = adv[4:int(adv[:4], 16)]
    assert first.startswith(head.encode() + b" HEAD\0")
    assert b"allow-tip-sha1-in-want" in first or b"allow-reachable-sha1-in-want" in first
    assert b" filter" in first                    # uploadpack.allowFilter
    got = ref_lines(adv)
    expected = {l.split()[1]: l.split()[0] for l in refs(path).splitlines()
                if not l.split()[1].startswith("refs/keep-around/")}
    expected["HEAD"] = head
    # tags are advertised with their peeled value too
    expected.update({k: v for k, v in got.items() if k.endswith("^{}")})
    assert got == expected
    assert adv.endswith(b"0000")


def test_info_refs_protocol_v2(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("a.git"))
    data = info_refs(gitaly_node, "upload-pack", repository=gitaly_node.repo("a.git"), git_protocol="version=2")
    assert data.startswith(b"001e# service=git-upload-pack\n0000000eversion 2\n")
    assert b"ls-refs" in data


def test_info_refs_receive_pack(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("a.git"), branches=("main", "dev"))
    head = git("rev-parse", "main", cwd=path).strip()
    git("update-ref", "refs/merge-requests/1/head", head, cwd=path)
    git("update-ref", "refs/keep-around/" + head, head, cwd=path)
    data = info_refs(gitaly_node, "receive-pack", repository=gitaly_node.repo("a.git"))
    header = b"001f# service=git-receive-pack\n0000"
    assert data.startswith(header)
    adv = data[len(header):]
    assert b"report-status" in adv and b"push-options" in adv
    assert set(ref_lines(adv)) == {"refs/heads/main", "refs/heads/dev"}


def test_info_refs_streams_large_advertisements(gitaly_node):
    """Thousands of refs: the advertisement spans several response messages."""
    path = make_bare_repo(gitaly_node.repo_path("many.git"))
    head = git("rev-parse", "main", cwd=path).strip()
    lines = "".join("create refs/heads/branch-%05d %s\n" % (i, head) for i in range(5000))
    git("update-ref", "--stdin", cwd=path, input=lines.encode())
    stub = gitaly_node.stub("SmartHTTPService")
    msgs = list(stub.InfoRefsUploadPack(smarthttp().InfoRefsRequest(repository=gitaly_node.repo("many.git"))))
    assert len(msgs) >= 2
    assert all(len(m.data) <= 128 * 1024 for m in msgs)
    assert len(ref_lines(b"".join(m.data for m in msgs)[34:])) == 5002


@pytest.mark.parametrize("service", ["upload-pack", "receive-pack"])
def test_info_refs_errors(gitaly_node, service):
    make_bare_repo(gitaly_node.repo_path("a.git"))
    cases = [
        (dict(repository=gitaly_node.repo("missing.git")), grpc.StatusCode.NOT_FOUND),
        (dict(repository=gitaly_node.repo("../a.git")), grpc.StatusCode.INVALID_ARGUMENT),
        (dict(), grpc.StatusCode.INVALID_ARGUMENT),
        (dict(repository=gitaly_node.repo("a.git"), git_config_options=["=x"]), grpc.StatusCode.INVALID_ARGUMENT),
        (dict(repository=gitaly_node.repo("a.git"), secret="wrong"), grpc.StatusCode.PERMISSION_DENIED),
    ]
    for kw, code in cases:
        with pytest.raises(grpc.RpcError) as e:
            info_refs(gitaly_node, service, **kw)
        assert e.value.code() == code, kw


def test_info_refs_git_failure_is_internal(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("a.git"))
    # a broken ref store: git fails after the header went out
    with open(os.path.join(path, "HEAD"), "w") as f:
        f.write("garbage\n")
    with pytest.raises(grpc.RpcError) as e:
        info_refs(gitaly_node, "upload-pack", repository=gitaly_node.repo("a.git"))
    assert e.value.code() == grpc.StatusCode.INTERNAL


def test_push_through_smart_http(gitaly_node, tmp_path):
    """A real `git push` over HTTP, relayed to InfoRefsReceivePack and PostReceivePack."""
    src = make_bare_repo(str(tmp_path / "src.git"), branches=("main", "feature", "fix/1"),
                         tags=("v1", "v2"))
    work = str(tmp_path / "work")
    git("clone", "-q", src, work)
    # big enough for git to send the pack in chunks (more than http.postBuffer)
    with open(os.path.join(work, "big.bin"), "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024))
    git("add", "big.bin", cwd=work)
    git("commit", "-q", "-m", "big", cwd=work)
    git("push", "-q", src, "HEAD:refs/heads/main", cwd=work)

    dst = gitaly_node.repo_path("group/p.git")
    git("init", "-q", "--bare", dst)
    front = SmartHTTP(gitaly_node)
    try:
        git("push", "-q", front.url + "/group/p.git", "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*",
            cwd=src)
        assert refs(dst) == refs(src)
        fsck(dst)
        assert front.posts >= 1

        # a refused update is reported to git (non-fast-forward), the refs stay
        other = str(tmp_path / "other")
        git("init", "-q", "-b", "main", other)
        git("commit", "-q", "--allow-empty", "-m", "unrelated", cwd=other)
        r = subprocess.run(["git", "push", front.url + "/group/p.git", "main:main"], cwd=other,
                           capture_output=True)
        assert r.returncode != 0 and b"rejected" in r.stderr
        assert refs(dst) == refs(src)

        # deleting through HTTP
        git("push", "-q", front.url + "/group/p.git", ":refs/heads/feature", cwd=src)
        assert "refs/heads/feature" not in refs(dst)
    finally:
        front.close()


def post_receive(node, first, data=(), stub=None):
    q = queue.Queue()
    q.put(first)
    for d in data:
        q.put(smarthttp().PostReceivePackRequest(data=d))
    q.put(None)
    stub = stub or node.stub("SmartHTTPService")
    return b"".join(r.data for r in stub.PostReceivePack(iter(q.get, None)))


def test_post_receive_pack_validation(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("a.git"))
    R = smarthttp().PostReceivePackRequest
    cases = [
        (R(repository=gitaly_node.repo("a.git")), grpc.StatusCode.INVALID_ARGUMENT, "empty GlId"),
        (R(repository=gitaly_node.repo("a.git"), gl_id="user-1", data=b"0000"), grpc.StatusCode.INVALID_ARGUMENT,
         "non-empty Data"),
        (R(repository=gitaly_node.repo("nope.git"), gl_id="user-1"), grpc.StatusCode.NOT_FOUND, "repository not found"),
        (R(repository=gitaly_node.repo("a/../../x"), gl_id="user-1"), grpc.StatusCode.INVALID_ARGUMENT,
         "relative path escapes root directory"),
        (R(repository=gitaly_node.repo("a.git"), gl_id="user-1", git_config_options=["x"]),
         grpc.StatusCode.INVALID_ARGUMENT, "x"),
    ]
    for first, code, text in cases:
        with pytest.raises(grpc.RpcError) as e:
            post_receive(gitaly_node, first)
        assert e.value.code() == code, first
        assert text in e.value.details()

    with pytest.raises(grpc.RpcError) as e:
        post_receive(gitaly_node, R(repository=gitaly_node.repo("a.git"), gl_id="user-1"),
                     stub=gitaly_node.stub("SmartHTTPService", secret="wrong"))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_post_receive_pack_git_failure(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("a.git"))
    first = smarthttp().PostReceivePackRequest(repository=gitaly_node.repo("a.git"), gl_id="user-1")
    with pytest.raises(grpc.RpcError) as e:
        post_receive(gitaly_node, first, [b"zzzz"])
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.value.details().startswith("waiting for receive-pack")
    # an empty request (flush) is a clean no-op
    assert post_receive(gitaly_node, first, [b"0000"]) == b""
    assert not processes_touching(path) or wait_until(lambda: not processes_touching(path))
