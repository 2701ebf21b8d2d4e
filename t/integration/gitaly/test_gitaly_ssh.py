"""gitaly-ssh with real git: push, clone, fetch and archive through SSHService,
cancellation of a large clone, and gitaly-ssh's own error handling."""
import json
import os
import signal
import subprocess
import time

import pytest

from gitaly_itest import git, make_bare_repo
from helpers_transport import (GITALY_SSH, fsck, log_calls, payload, processes_touching, refs,
                               rss_kib, run_gitaly_ssh, ssh_env, wait_until, write_throttle)

URL = "ssh://gitaly/internal.git"


def source_repo(tmp_path):
    return make_bare_repo(str(tmp_path / "src.git"), branches=("main", "feature/a", "b"),
                          tags=("v1.0", "v2.0"), files={"README.md": "hello\n", "dir/f.txt": "x\n"})


def empty_repo(node, rel):
    path = node.repo_path(rel)
    git("init", "-q", "--bare", path)
    return path


def push_all(node, src, rel, **kw):
    env = ssh_env(node, "receive-pack",
                  payload(node, rel, glId="user-1", glRepository="project-1", glUsername="user"), **kw)
    return git("push", "-q", URL, "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*",
               cwd=src, env=env)


def test_push_clone_fetch_roundtrip(gitaly_node, tmp_path):
    src = source_repo(tmp_path)
    dst = empty_repo(gitaly_node, "group/x.git")
    push_all(gitaly_node, src, "group/x.git")
    assert refs(dst) == refs(src)
    assert len(refs(dst).splitlines()) == 5
    fsck(dst)

    up = ssh_env(gitaly_node, "upload-pack", payload(gitaly_node, "group/x.git"))
    clone = str(tmp_path / "clone.git")
    git("clone", "-q", "--mirror", URL, clone, env=up)
    assert refs(clone) == refs(src)
    fsck(clone)

    # a new commit pushed through the node reaches the clone with git fetch
    work = str(tmp_path / "work")
    git("clone", "-q", src, work)
    with open(os.path.join(work, "new.txt"), "w") as f:
        f.write("new\n")
    git("add", "new.txt", cwd=work)
    git("commit", "-q", "-m", "second", cwd=work)
    git("push", "-q", URL, "HEAD:refs/heads/main", cwd=work,
        env=ssh_env(gitaly_node, "receive-pack", payload(gitaly_node, "group/x.git", glId="user-1")))
    git("fetch", "-q", URL, "+refs/*:refs/*", cwd=clone, env=up)
    assert refs(clone) == refs(dst)
    assert git("rev-parse", "main", cwd=clone) == git("rev-parse", "HEAD", cwd=work)
    fsck(clone)
    fsck(dst)


def test_protocol_v2_is_passed_to_git(gitaly_node, tmp_path):
    src = make_bare_repo(gitaly_node.repo_path("v2.git"), branches=("main", "dev"))
    clone = str(tmp_path / "clone.git")
    env = ssh_env(gitaly_node, "upload-pack", payload(gitaly_node, "v2.git", gitProtocol="version=2"),
                  GIT_TRACE_PACKET="1")
    out = subprocess.run(["git", "-c", "protocol.version=2", "clone", "--mirror", URL, clone],
                         env=dict(os.environ, **env), capture_output=True)
    assert out.returncode == 0, out.stderr
    assert b"< version 2" in out.stderr
    assert refs(clone) == refs(src)

    # without gitProtocol the server speaks v0 even when the client asks for v2
    clone0 = str(tmp_path / "clone0.git")
    env = ssh_env(gitaly_node, "upload-pack", payload(gitaly_node, "v2.git"), GIT_TRACE_PACKET="1")
    out = subprocess.run(["git", "-c", "protocol.version=2", "clone", "--mirror", URL, clone0],
                         env=dict(os.environ, **env), capture_output=True)
    assert out.returncode == 0, out.stderr
    assert b"< version 2" not in out.stderr


def test_upload_pack_shows_hidden_refs(gitaly_node, tmp_path):
    """gitaly-ssh adds transfer.hideRefs=!refs, so mirrors see refs upload-pack hides by default."""
    path = make_bare_repo(gitaly_node.repo_path("hidden.git"))
    head = git("rev-parse", "main", cwd=path).strip()
    git("update-ref", "refs/keep-around/" + head, head, cwd=path)
    git("update-ref", "refs/tmp/scratch", head, cwd=path)
    clone = str(tmp_path / "m.git")
    git("clone", "-q", "--mirror", URL, clone,
        env=ssh_env(gitaly_node, "upload-pack", payload(gitaly_node, "hidden.git")))
    assert refs(clone) == refs(path)
    assert "refs/keep-around/" in refs(clone)


def test_archive_remote_matches_local_archive(gitaly_node, tmp_path):
    path = make_bare_repo(gitaly_node.repo_path("arch.git"),
                          files={"a.txt": "a\n", "sub/b.txt": "b\n" * 1000})
    env = ssh_env(gitaly_node, "upload-archive", payload(gitaly_node, "arch.git"))
    remote = subprocess.run(["git", "archive", "--remote=" + URL, "--format=tar", "main"],
                            env=dict(os.environ, **env), capture_output=True)
    assert remote.returncode == 0, remote.stderr
    local = subprocess.run(["git", "archive", "--format=tar", "main"], cwd=path, capture_output=True,
                           check=True)
    assert remote.stdout == local.stdout and len(local.stdout) > 2048

    # a path the tree does not have: git upload-archive fails and the client says so
    bad = subprocess.run(["git", "archive", "--remote=" + URL, "main", "no-such-path"],
                         env=dict(os.environ, **env), capture_output=True)
    assert bad.returncode != 0
    assert b"no-such-path" in bad.stderr


def test_push_rejected_by_git_reports_failure(gitaly_node, tmp_path):
    """A non-fast-forward push is refused by receive-pack; git sees the refusal."""
    src = source_repo(tmp_path)
    dst = empty_repo(gitaly_node, "ff.git")
    push_all(gitaly_node, src, "ff.git")
    work = str(tmp_path / "w")
    git("init", "-q", "-b", "main", work)
    git("commit", "-q", "--allow-empty", "-m", "unrelated", cwd=work)
    env = ssh_env(gitaly_node, "receive-pack", payload(gitaly_node, "ff.git", glId="user-1"))
    r = subprocess.run(["git", "push", URL, "main:main"], cwd=work, env=dict(os.environ, **env),
                       capture_output=True)
    assert r.returncode != 0
    assert b"rejected" in r.stderr
    assert refs(dst) == refs(src)


# --- cancellation ---

@pytest.fixture(scope="module")
def big_repo(tmp_path_factory):
    """~64 MB of incompressible blobs in one pack."""
    base = str(tmp_path_factory.mktemp("big"))
    work = os.path.join(base, "work")
    git("init", "-q", "-b", "main", work)
    for i in range(8):
        with open(os.path.join(work, "blob%d.bin" % i), "wb") as f:
            f.write(os.urandom(8 * 1024 * 1024))
    # random bytes do not compress: do not spend time trying
    git("-c", "core.compression=0", "add", "-A", cwd=work)
    git("commit", "-q", "-m", "big", cwd=work)
    bare = os.path.join(base, "big.git")
    git("clone", "-q", "--bare", work, bare)
    git("-c", "pack.compression=0", "repack", "-q", "-a", "-d", "--window=0", cwd=bare)
    return bare


def install_big(node, big_repo, rel):
    path = node.repo_path(rel)
    git("clone", "-q", "--bare", "--local", big_repo, path)
    return path


@pytest.mark.parametrize("victim,sidechannel", [("git", "0"), ("gitaly-ssh", "0"), ("git", "1")])
def test_cancelled_clone_kills_server_processes(gitaly_node, big_repo, tmp_path, victim, sidechannel):
    path = install_big(gitaly_node, big_repo, "big.git")
    wrapper = write_throttle(str(tmp_path))
    count, pidfile = str(tmp_path / "count"), str(tmp_path / "pid")
    env = ssh_env(gitaly_node, "upload-pack", payload(gitaly_node, "big.git"), wrapper=wrapper,
                  THROTTLE_RATE="4000000", THROTTLE_COUNT=count, THROTTLE_PID=pidfile,
                  GITALY_USE_SIDECHANNEL=sidechannel)
    peak_before = rss_kib(gitaly_node.proc.pid, "VmHWM")
    clone = subprocess.Popen(["git", "clone", "-q", "--bare", URL, str(tmp_path / "c.git")],
                             env=dict(os.environ, **env), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)

    def transferred():
        try:
            return int(open(count).read() or "0")
        except (OSError, ValueError):
            return 0
    assert wait_until(lambda: transferred() > 6 * 1024 * 1024, timeout=60), clone.stderr
    assert processes_touching(path), "upload-pack should be running"
    # the slow reader holds the server back: it does not buffer the pack in memory
    if not sanitized(gitaly_node.proc.pid):
        assert rss_kib(gitaly_node.proc.pid, "VmHWM") - peak_before < 12 * 1024
    ssh_pid = int(open(pidfile).read())

    if victim == "git":
        clone.kill()
    else:
        os.kill(ssh_pid, signal.SIGKILL)
    clone.wait(30)
    assert transferred() < 60 * 1024 * 1024, "the clone finished before it was cancelled"

    assert wait_until(lambda: not processes_touching(path), timeout=15), processes_touching(path)
    method = "SSHUploadPackWithSidechannel" if sidechannel == "1" else "SSHUploadPack"
    assert wait_until(lambda: log_calls(gitaly_node, method), timeout=10)
    [rec] = log_calls(gitaly_node, method)
    assert rec["grpc.code"] == "Canceled"
    # gitaly-ssh noticed too and is gone
    assert wait_until(lambda: not os.path.exists("/proc/%d" % ssh_pid) or
                      open("/proc/%d/stat" % ssh_pid).read().split()[2] == "Z", timeout=15)


def sanitized(pid):
    """ASan keeps freed memory in quarantine: peak RSS says nothing there."""
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


def test_large_push(gitaly_node, big_repo):
    """64 MB pushed through gitaly-ssh and SSHReceivePack arrive whole."""
    dst = empty_repo(gitaly_node, "bigpush.git")
    env = ssh_env(gitaly_node, "receive-pack", payload(gitaly_node, "bigpush.git", glId="user-1"))
    git("push", "-q", URL, "refs/heads/*:refs/heads/*", cwd=big_repo, env=env)
    assert refs(dst) == refs(big_repo)
    fsck(dst)


def test_large_push_memory_stays_flat(gitaly_node, big_repo):
    """stdin is streamed into git with backpressure, not buffered in the node."""
    pid = gitaly_node.proc.pid
    if sanitized(pid):
        pytest.skip("peak RSS is meaningless under ASan")
    dst = empty_repo(gitaly_node, "bigpush.git")
    peak_before = rss_kib(pid, "VmHWM")
    env = ssh_env(gitaly_node, "receive-pack", payload(gitaly_node, "bigpush.git", glId="user-1"))
    git("push", "-q", URL, "refs/heads/*:refs/heads/*", cwd=big_repo, env=env)
    assert refs(dst) == refs(big_repo)
    assert rss_kib(pid, "VmHWM") - peak_before < 12 * 1024


@pytest.mark.parametrize("protocol", ["", "version=2"])
def test_negotiation_timeout_spares_a_slow_transfer(make_gitaly, tmp_path, protocol):
    """The negotiation ends with "done": a pack that takes longer than the
    timeout to arrive must still arrive whole."""
    node = make_gitaly("slow", extra_config='\n[timeout]\nupload_pack_negotiation = "1s"\n')
    # one 8 MB blob takes ~3 s at 3 MB/s
    work = str(tmp_path / "w")
    git("init", "-q", "-b", "main", work)
    with open(os.path.join(work, "blob.bin"), "wb") as f:
        f.write(os.urandom(8 * 1024 * 1024))
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "one blob", cwd=work)
    small = node.repo_path("small.git")
    git("clone", "-q", "--bare", work, small)
    wrapper = write_throttle(str(tmp_path))
    env = ssh_env(node, "upload-pack", payload(node, "small.git", gitProtocol=protocol), wrapper=wrapper,
                  THROTTLE_RATE="3000000", THROTTLE_COUNT=str(tmp_path / "n"),
                  THROTTLE_PID=str(tmp_path / "p"))
    start = time.time()
    git("-c", "protocol.version=%d" % (2 if protocol else 0), "clone", "-q", "--bare", URL,
        str(tmp_path / "c.git"), env=env)
    assert time.time() - start > 1.5
    assert refs(str(tmp_path / "c.git")) == refs(small)


# --- gitaly-ssh's own behaviour ---

def test_exit_code_follows_exit_status(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("e.git"))
    env = ssh_env(gitaly_node, "upload-pack", payload(gitaly_node, "e.git"))
    # garbage instead of pkt-lines: upload-pack dies with 128, the call fails
    r = run_gitaly_ssh(["upload-pack", "gitaly", "git-upload-pack 'x'"], env, input=b"zzzz")
    assert r.returncode == 1
    assert b"protocol error" in r.stderr
    assert b"rpc error: code = Internal" in r.stderr
    # a clean end of session (flush, nothing wanted): exit 0 and the advertisement on stdout
    r = run_gitaly_ssh(["upload-pack", "gitaly", "git-upload-pack 'x'"], env, input=b"0000")
    assert r.returncode == 0, r.stderr
    assert b"refs/heads/main" in r.stdout
    assert r.stderr == b""


def test_stdout_to_a_file_and_stdin_from_a_file(gitaly_node, tmp_path):
    make_bare_repo(gitaly_node.repo_path("f.git"))
    env = ssh_env(gitaly_node, "upload-pack", payload(gitaly_node, "f.git"))
    inp, outp = tmp_path / "in", tmp_path / "out"
    inp.write_bytes(b"0000")
    e = dict(os.environ, **env)
    with open(inp, "rb") as i, open(outp, "wb") as o:
        r = subprocess.run([GITALY_SSH, "upload-pack", "gitaly", "x"], stdin=i, stdout=o, env=e,
                           stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 0, r.stderr
    assert b"refs/heads/main" in outp.read_bytes()


@pytest.mark.parametrize("args,message", [
    (["upload-pack", "gitaly"], b"invalid number of arguments"),
    (["upload-packs", "gitaly", "cmd"], b"invalid pack command"),
])
def test_bad_arguments(gitaly_node, args, message):
    env = ssh_env(gitaly_node, "upload-pack", payload(gitaly_node, "x.git"))
    r = run_gitaly_ssh(args, env)
    assert r.returncode == 1
    assert message in r.stderr


@pytest.mark.parametrize("body,message", [
    ('{"repository": {"storageName": "default", "relativePath": "p.git"}, "bogus": 1}',
     b'unknown field "bogus"'),
    ('{"repository": {"storageName": "default", "relativPath": "p.git"}}', b'unknown field "relativPath"'),
    ('{"repository": "p.git"}', b"invalid value"),
    ("not json", b"json unmarshal"),
    ("", b"json unmarshal"),
])
def test_bad_payload(gitaly_node, body, message):
    make_bare_repo(gitaly_node.repo_path("p.git"))
    r = run_gitaly_ssh(["upload-pack", "gitaly", "x"], ssh_env(gitaly_node, "upload-pack", body))
    assert r.returncode == 1
    assert message in r.stderr


def test_snake_case_payload_keys_are_accepted(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("s.git"))
    body = json.dumps({"repository": {"storage_name": "default", "relative_path": "s.git"},
                       "git_config_options": [], "gitProtocol": None})
    r = run_gitaly_ssh(["upload-pack", "gitaly", "x"], ssh_env(gitaly_node, "upload-pack", body),
                       input=b"0000")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("address,message", [
    ("tls://127.0.0.1:1", b"tls://"),
    ("", b"gitaly address can not be empty"),
    ("http://x", b"unsupported address"),
])
def test_bad_address(gitaly_node, address, message):
    env = ssh_env(gitaly_node, "upload-pack", payload(gitaly_node, "x.git"), address=address)
    r = run_gitaly_ssh(["upload-pack", "gitaly", "x"], env)
    assert r.returncode == 1
    assert message in r.stderr


def test_tcp_address_and_dns_scheme(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("t.git"))
    for addr in ("tcp://" + gitaly_node.tcp_addr, "dns:///" + gitaly_node.tcp_addr):
        env = ssh_env(gitaly_node, "upload-pack", payload(gitaly_node, "t.git"), address=addr)
        r = run_gitaly_ssh(["upload-pack", "gitaly", "x"], env, input=b"0000")
        assert r.returncode == 0, (addr, r.stderr)
        assert b"refs/heads/main" in r.stdout


def test_unreachable_node(tmp_path):
    env = ssh_env(None, "upload-pack", '{"repository":{"storageName":"default","relativePath":"x"}}',
                  address="unix:" + str(tmp_path / "nothing.sock"))
    r = run_gitaly_ssh(["upload-pack", "gitaly", "x"], env)
    assert r.returncode == 1
    assert b"Unavailable" in r.stderr


@pytest.mark.parametrize("token,code", [("wrong-secret", b"PermissionDenied"),
                                        ("", b"Unauthenticated")])
def test_wrong_token(gitaly_node, tmp_path, token, code):
    make_bare_repo(gitaly_node.repo_path("tok.git"))
    env = ssh_env(gitaly_node, "upload-pack", payload(gitaly_node, "tok.git"), token=token)
    r = subprocess.run(["git", "clone", "-q", URL, str(tmp_path / "c")], env=dict(os.environ, **env),
                       capture_output=True)
    assert r.returncode != 0
    assert code in r.stderr


def test_missing_repository_and_invalid_path(gitaly_node, tmp_path):
    for rel, code in (("nope.git", b"NotFound"), ("../x.git", b"InvalidArgument")):
        env = ssh_env(gitaly_node, "receive-pack", payload(gitaly_node, rel, glId="user-1"))
        r = run_gitaly_ssh(["receive-pack", "gitaly", "x"], env)
        assert r.returncode == 1
        assert code in r.stderr, r.stderr


def test_working_directory_feature_flags_and_correlation_id(gitaly_node, tmp_path):
    make_bare_repo(gitaly_node.repo_path("wd.git"))
    env = ssh_env(gitaly_node, "upload-pack", payload(gitaly_node, "wd.git"),
                  GITALY_WD=str(tmp_path), CORRELATION_ID="corr-1234",
                  GITALY_FEATUREFLAGS="some_flag:true,bad,other:nope")
    r = run_gitaly_ssh(["upload-pack", "gitaly", "x"], env, input=b"0000")
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: log_calls(gitaly_node, "SSHUploadPack"))
    [rec] = log_calls(gitaly_node, "SSHUploadPack")
    assert rec.get("correlation_id") == "corr-1234"

    env["GITALY_WD"] = str(tmp_path / "missing")
    r = run_gitaly_ssh(["upload-pack", "gitaly", "x"], env)
    assert r.returncode == 1
    assert b"unable to chdir" in r.stderr


@pytest.mark.parametrize("flag", ["1", "true"])
def test_clone_through_the_sidechannel(gitaly_node, tmp_path, flag):
    """GITALY_USE_SIDECHANNEL: upload-pack goes through SSHUploadPackWithSidechannel, as upstream's."""
    src = make_bare_repo(gitaly_node.repo_path("sc.git"), branches=("main", "x"))
    env = ssh_env(gitaly_node, "upload-pack", payload(gitaly_node, "sc.git"), GITALY_USE_SIDECHANNEL=flag)
    git("clone", "-q", "--mirror", URL, str(tmp_path / "c.git"), env=env)
    assert refs(str(tmp_path / "c.git")) == refs(src)
    fsck(str(tmp_path / "c.git"))
    assert wait_until(lambda: log_calls(gitaly_node, "SSHUploadPackWithSidechannel"), timeout=10)
    [rec] = log_calls(gitaly_node, "SSHUploadPackWithSidechannel")
    assert rec["grpc.code"] == "OK"
    assert not log_calls(gitaly_node, "SSHUploadPack")


def test_sidechannel_errors_reach_git(gitaly_node, tmp_path):
    env = ssh_env(gitaly_node, "upload-pack", payload(gitaly_node, "missing.git"), GITALY_USE_SIDECHANNEL="1")
    r = run_gitaly_ssh(["upload-pack", "gitaly", "x"], env)
    assert r.returncode == 1
    assert b"SSHUploadPack" not in r.stderr
    assert b"upload-pack: rpc error: code = NotFound" in r.stderr, r.stderr


def test_sidechannel_off_uses_streaming(gitaly_node, tmp_path):
    src = make_bare_repo(gitaly_node.repo_path("sc.git"))
    env = ssh_env(gitaly_node, "upload-pack", payload(gitaly_node, "sc.git"), GITALY_USE_SIDECHANNEL="false")
    git("clone", "-q", "--mirror", URL, str(tmp_path / "c.git"), env=env)
    assert refs(str(tmp_path / "c.git")) == refs(src)
    assert wait_until(lambda: log_calls(gitaly_node, "SSHUploadPack"), timeout=10)
    assert not log_calls(gitaly_node, "SSHUploadPackWithSidechannel")
