"""SetCustomHooks / RestoreCustomHooks against a real node with grpcio and real
git and tar, and `gitaly hooks set` (the real binary) on top of them."""
import base64
import io
import json
import os
import subprocess
import tarfile

import grpc
import pytest

from gitaly_itest import BUILD, git, make_bare_repo, pb, wait_for
from helpers_transport import payload, ssh_env

URL = "ssh://gitaly/internal.git"


def rp():
    return pb("repository")


def make_tar(entries):
    """entries: (name, kind, data-or-target, mode); kind is "file", "dir", "symlink", "link" or "fifo"."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, kind, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.mtime = 1700000000
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = data
                t.addfile(info)
            elif kind == "link":
                info.type = tarfile.LNKTYPE
                info.linkname = data
                t.addfile(info)
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
                t.addfile(info)
            elif kind == "chr":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = 1, 3
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


GOOD = [
    ("custom_hooks", "dir", None, 0o755),
    ("custom_hooks/pre-receive", "file", b"#!/bin/sh\necho 'GL-HOOK-ERR: refused by the set hook' >&2\nexit 1\n", 0o755),
    ("custom_hooks/post-receive.d", "dir", None, 0o755),
    ("custom_hooks/post-receive.d/notify", "file", b"#!/bin/sh\nexit 0\n", 0o700),
    ("custom_hooks/post-receive.d/alias", "symlink", "notify", 0o777),
    ("custom_hooks/post-receive.d/up", "symlink", "../pre-receive", 0o777),
]


def chunks(repo, data, size=7000, method_request=None):
    req = method_request or rp().SetCustomHooksRequest
    yield req(repository=repo)
    for i in range(0, len(data), size):
        yield req(data=data[i:i + size])


def set_hooks(node, rel, data, restore=False):
    svc = node.stub("RepositoryService")
    if restore:
        return svc.RestoreCustomHooks(chunks(node.repo(rel), data, method_request=rp().RestoreCustomHooksRequest))
    return svc.SetCustomHooks(chunks(node.repo(rel), data))


def get_hooks(node, rel):
    svc = node.stub("RepositoryService")
    return b"".join(c.data for c in svc.GetCustomHooks(rp().GetCustomHooksRequest(repository=node.repo(rel))))


def tree(path):
    """Every entry below path: name -> (type, mode, content or link target)."""
    out = {}
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            p = os.path.join(root, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, path)
            if os.path.islink(p):
                out[rel] = ("l", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("d", st.st_mode & 0o7777)
            else:
                out[rel] = ("f", st.st_mode & 0o7777, open(p, "rb").read())
    return out


def tmp_entries(node):
    tmp = os.path.join(node.storages["default"], "+gitaly", "tmp")
    return sorted(os.listdir(tmp)) if os.path.isdir(tmp) else []


def test_set_then_get_round_trip(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("r.git"))
    data = make_tar(GOOD)
    assert set_hooks(gitaly_node, "r.git", data) == rp().SetCustomHooksResponse()
    hooks = os.path.join(path, "custom_hooks")
    assert tree(hooks)["pre-receive"][1] == 0o755
    assert tree(hooks)["post-receive.d/notify"] == ("f", 0o700, b"#!/bin/sh\nexit 0\n")
    assert tree(hooks)["post-receive.d/alias"] == ("l", "notify")
    # GetCustomHooks runs tar over the same tree: repack our tar the same way and compare bytes
    expected = subprocess.run(["tar", "-c", "-f", "-", "-C", path, "custom_hooks"],
                              capture_output=True, check=True).stdout
    got = get_hooks(gitaly_node, "r.git")
    assert got == expected
    names = tarfile.open(fileobj=io.BytesIO(got)).getnames()
    assert sorted(names) == sorted(n for n, *_ in GOOD)
    # and the tar GetCustomHooks gave, set again, changes nothing: byte for byte the same afterwards
    set_hooks(gitaly_node, "r.git", got)
    assert get_hooks(gitaly_node, "r.git") == got
    assert not os.path.exists(os.path.join(path, "custom_hooks.lock"))
    assert tmp_entries(gitaly_node) == []


def test_restore_custom_hooks_and_empty_archive_removes_hooks(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("r.git"))
    assert set_hooks(gitaly_node, "r.git", make_tar(GOOD), restore=True) == rp().RestoreCustomHooksResponse()
    assert "pre-receive" in tree(os.path.join(path, "custom_hooks"))
    # an empty stream means "no hooks": an empty directory replaces them
    set_hooks(gitaly_node, "r.git", b"")
    assert os.listdir(os.path.join(path, "custom_hooks")) == []
    # an archive without custom_hooks/ is accepted and also empties them
    set_hooks(gitaly_node, "r.git", make_tar(GOOD))
    set_hooks(gitaly_node, "r.git", make_tar([("other/file", "file", b"x", 0o644)]))
    assert os.listdir(os.path.join(path, "custom_hooks")) == []
    assert not os.path.exists(os.path.join(path, "other"))


def test_set_hook_runs_on_push(gitaly_node, tmp_path):
    make_bare_repo(gitaly_node.repo_path("p.git"))
    set_hooks(gitaly_node, "p.git", make_tar(GOOD))
    work = str(tmp_path / "w")
    git("clone", "-q", gitaly_node.repo_path("p.git"), work)
    git("commit", "-q", "--allow-empty", "-m", "new", cwd=work)
    env = ssh_env(gitaly_node, "receive-pack", payload(gitaly_node, "p.git", glId="user-1"))
    r = subprocess.run(["git", "push", URL, "HEAD:refs/heads/pushed"], cwd=work,
                       env=dict(os.environ, **env), capture_output=True)
    assert r.returncode != 0
    assert b"refused by the set hook" in r.stderr
    assert git("for-each-ref", "refs/heads/pushed", cwd=gitaly_node.repo_path("p.git")) == ""
    # with the hooks emptied the same push goes through
    set_hooks(gitaly_node, "p.git", b"")
    subprocess.run(["git", "push", "-q", URL, "HEAD:refs/heads/pushed"], cwd=work,
                   env=dict(os.environ, **env), check=True, capture_output=True)
    assert git("rev-parse", "refs/heads/pushed", cwd=gitaly_node.repo_path("p.git")) == \
        git("rev-parse", "HEAD", cwd=work)


MALICIOUS = {
    "dotdot": ([("custom_hooks/../../../escaped", "file", b"x", 0o755)], grpc.StatusCode.INTERNAL,
               "setting custom hooks: extracting hooks: waiting for tar command completion: exit status 2"),
    "absolute_symlink": ([("custom_hooks/pre-receive", "symlink", "/etc/passwd", 0o777)],
                         grpc.StatusCode.INVALID_ARGUMENT,
                         "setting custom hooks: extracting hooks: symbolic link \"custom_hooks/pre-receive\" "
                         "points outside of the hooks directory"),
    "relative_symlink_out": ([("custom_hooks/d", "dir", None, 0o755),
                              ("custom_hooks/d/up", "symlink", "../../config", 0o777)],
                             grpc.StatusCode.INVALID_ARGUMENT,
                             "setting custom hooks: extracting hooks: symbolic link \"custom_hooks/d/up\" "
                             "points outside of the hooks directory"),
    "climb_through_symlink": ([("custom_hooks/here", "symlink", ".", 0o777),
                               ("custom_hooks/cfg", "symlink", "here/../config", 0o777)],
                              grpc.StatusCode.INVALID_ARGUMENT,
                              "setting custom hooks: extracting hooks: symbolic link \"custom_hooks/cfg\" "
                              "points outside of the hooks directory"),
    "write_through_symlink": ([("custom_hooks/up", "symlink", "..", 0o777),
                               ("custom_hooks/up/config", "file", b"[core]\n\tbare = false\n", 0o644)],
                              grpc.StatusCode.INTERNAL,
                              "setting custom hooks: extracting hooks: waiting for tar command completion: "
                              "exit status 2"),
    "fifo": ([("custom_hooks/fifo", "fifo", None, 0o644)], grpc.StatusCode.INVALID_ARGUMENT,
             "setting custom hooks: extracting hooks: \"custom_hooks/fifo\" is not a regular file, "
             "directory or symbolic link"),
    "device": ([("custom_hooks/null", "chr", None, 0o666)], None, None),
    "not_a_tar": (None, grpc.StatusCode.INTERNAL,
                  "setting custom hooks: extracting hooks: waiting for tar command completion: exit status 2"),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_archive_is_refused_and_changes_nothing(gitaly_node, case):
    path = make_bare_repo(gitaly_node.repo_path("m.git"))
    set_hooks(gitaly_node, "m.git", make_tar(GOOD))
    before = tree(os.path.join(path, "custom_hooks"))
    storage_before = sorted(os.listdir(gitaly_node.storages["default"]))
    config_before = open(os.path.join(path, "config"), "rb").read()
    entries, code, msg = MALICIOUS[case]
    data = make_tar(entries) if entries else b"This is a corrupted tar file" * 100
    with pytest.raises(grpc.RpcError) as e:
        set_hooks(gitaly_node, "m.git", data)
    if code is None:
        # a device file: tar as root makes it and our check refuses it, tar as anyone else cannot
        assert e.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL)
    else:
        assert (e.value.code(), e.value.details()) == (code, msg)
    assert tree(os.path.join(path, "custom_hooks")) == before
    assert sorted(os.listdir(gitaly_node.storages["default"])) == storage_before
    assert open(os.path.join(path, "config"), "rb").read() == config_before
    assert not os.path.exists(os.path.join(path, "custom_hooks.lock"))
    assert tmp_entries(gitaly_node) == []
    assert not os.path.exists("/escaped") and not os.path.exists(os.path.join(path, "escaped"))


def test_validation(gitaly_node):
    svc = gitaly_node.stub("RepositoryService")
    make_bare_repo(gitaly_node.repo_path("v.git"))
    for method, req in ((svc.SetCustomHooks, rp().SetCustomHooksRequest),
                        (svc.RestoreCustomHooks, rp().RestoreCustomHooksRequest)):
        with pytest.raises(grpc.RpcError) as e:
            method(iter([req(data=make_tar(GOOD))]))
        assert (e.value.code(), e.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "repository not set")
        with pytest.raises(grpc.RpcError) as e:
            method(iter([req(repository=gitaly_node.repo("missing.git"), data=make_tar(GOOD))]))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as e:
            method(iter([]))
        assert (e.value.code(), e.value.details()) == (grpc.StatusCode.INTERNAL, "getting first request: EOF")
    assert not os.path.exists(os.path.join(gitaly_node.repo_path("v.git"), "custom_hooks"))


def test_large_archive_streams(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("big.git"))
    blob = os.urandom(6 * 1024 * 1024)
    set_hooks(gitaly_node, "big.git", make_tar([("custom_hooks/big", "file", blob, 0o644)]))
    assert open(os.path.join(path, "custom_hooks", "big"), "rb").read() == blob


# --- gitaly hooks set ---------------------------------------------------------------------------

GITALY = os.path.join(BUILD, "gitaly", "gitaly")


def hooks_cli(node_or_config, *args, stdin=b""):
    config = getattr(node_or_config, "config_path", node_or_config)
    argv = [GITALY, "hooks", "set"] + (["--config", config] if config else []) + list(args)
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=60)


def test_cli_sets_hooks(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("c.git"))
    data = make_tar(GOOD)
    r = hooks_cli(gitaly_node, "--storage", "default", "--repository", "c.git", stdin=data)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    assert tree(os.path.join(path, "custom_hooks"))["post-receive.d/notify"] == ("f", 0o700, b"#!/bin/sh\nexit 0\n")
    got = get_hooks(gitaly_node, "c.git")
    # what GetCustomHooks gave, set again through the CLI (-c, storage from the config), reads back the same
    r = subprocess.run([GITALY, "hooks", "set", "-c", gitaly_node.config_path, "--repository", "c.git"],
                       input=got, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert get_hooks(gitaly_node, "c.git") == got
    # an empty stdin removes them
    r = hooks_cli(gitaly_node, "--repository", "c.git")
    assert r.returncode == 0, r.stderr
    assert os.listdir(os.path.join(path, "custom_hooks")) == []


def test_cli_large_archive(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("big.git"))
    blob = os.urandom(5 * 1024 * 1024 + 17)
    r = hooks_cli(gitaly_node, "--repository", "big.git",
                  stdin=make_tar([("custom_hooks/big", "file", blob, 0o755)]))
    assert r.returncode == 0, r.stderr
    assert open(os.path.join(path, "custom_hooks", "big"), "rb").read() == blob


def test_cli_errors(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("e.git"))
    hooks_cli(gitaly_node, "--repository", "e.git", stdin=make_tar(GOOD))
    before = tree(os.path.join(path, "custom_hooks"))
    cases = [
        ((None, "--repository", "e.git"), 'Required flag "config" not set\n'),
        ((gitaly_node,), 'Required flag "repository" not set\n'),
        ((gitaly_node, "--storage", "non-existent", "--repository", "e.git"),
         "closing hooks archive stream: rpc error: code = InvalidArgument desc = "),
        ((gitaly_node, "--repository", "missing.git"),
         "closing hooks archive stream: rpc error: code = NotFound desc = "),
        ((gitaly_node, "--repository", "e.git", "--bogus"), "flag provided but not defined: -bogus\n"),
    ]
    for args, expected in cases:
        r = hooks_cli(*args, stdin=make_tar(GOOD))
        assert r.returncode == 1, args
        assert expected in r.stderr.decode(), (args, r.stderr)
    r = hooks_cli(gitaly_node, "--repository", "e.git",
                  stdin=make_tar([("custom_hooks/x", "symlink", "/etc/shadow", 0o777)]))
    assert r.returncode == 1
    assert r.stderr.decode().endswith(
        "closing hooks archive stream: rpc error: code = InvalidArgument desc = setting custom hooks: "
        "extracting hooks: symbolic link \"custom_hooks/x\" points outside of the hooks directory\n")
    r = hooks_cli(gitaly_node, "--repository", "e.git", stdin=b"not a tar" * 10000)
    assert r.returncode == 1
    assert "code = Internal desc = setting custom hooks: extracting hooks: waiting for tar command completion: " \
        "exit status 2\n" in r.stderr.decode()
    assert tree(os.path.join(path, "custom_hooks")) == before
    r = hooks_cli(str(os.path.join(gitaly_node.dir, "nope.toml")), "--repository", "e.git")
    assert r.returncode == 1 and "load config: " in r.stderr.decode()


def test_cli_needs_storage_when_several(make_gitaly):
    node = make_gitaly("two", storages=("a", "b"))
    make_bare_repo(node.repo_path("r.git", storage="b"))
    r = hooks_cli(node, "--repository", "r.git", stdin=make_tar(GOOD))
    assert r.returncode == 1
    assert r.stderr.decode().endswith("multiple storages configured: use --storage to target storage explicitly\n")
    r = hooks_cli(node, "--storage", "b", "--repository", "r.git", stdin=make_tar(GOOD))
    assert r.returncode == 0, r.stderr
    assert os.path.exists(os.path.join(node.repo_path("r.git", storage="b"), "custom_hooks", "pre-receive"))


TX_MD = [("gitaly-reference-transaction",
          base64.b64encode(json.dumps({"id": 1, "node": "default", "primary": True}).encode()).decode())]


def test_failed_prepared_vote_leaves_old_hooks(gitaly_node):
    # this node reaches no praefect, so the prepared vote fails before the swap
    path = make_bare_repo(gitaly_node.repo_path("tx.git"))
    set_hooks(gitaly_node, "tx.git", make_tar(GOOD))
    before = tree(os.path.join(path, "custom_hooks"))
    svc = gitaly_node.stub("RepositoryService")
    with pytest.raises(grpc.RpcError) as e:
        svc.SetCustomHooks(chunks(gitaly_node.repo("tx.git"), make_tar([("custom_hooks/x", "file", b"y", 0o755)])),
                           metadata=TX_MD)
    assert e.value.details().startswith("setting custom hooks: casting prepared vote: vote failed: ")
    assert tree(os.path.join(path, "custom_hooks")) == before
    assert not os.path.exists(os.path.join(path, "custom_hooks.lock"))
    assert tmp_entries(gitaly_node) == []


def test_cancelled_stream_leaves_old_hooks_and_no_temp_dir(gitaly_node):
    import threading
    path = make_bare_repo(gitaly_node.repo_path("cx.git"))
    set_hooks(gitaly_node, "cx.git", make_tar(GOOD))
    before = tree(os.path.join(path, "custom_hooks"))
    data = make_tar([("custom_hooks/big", "file", os.urandom(3 * 1024 * 1024), 0o644)])
    sent = threading.Event()

    def requests():
        yield rp().SetCustomHooksRequest(repository=gitaly_node.repo("cx.git"))
        yield rp().SetCustomHooksRequest(data=data[:1024 * 1024])
        sent.set()
        threading.Event().wait(30)   # never half-close: the call is cancelled meanwhile
        yield rp().SetCustomHooksRequest(data=data[1024 * 1024:])

    fut = gitaly_node.stub("RepositoryService").SetCustomHooks.future(requests())
    assert sent.wait(20)
    wait_for(lambda: tmp_entries(gitaly_node), what="the temporary directory")
    fut.cancel()
    wait_for(lambda: tmp_entries(gitaly_node) == [], what="the temporary directory to go")
    assert tree(os.path.join(path, "custom_hooks")) == before
    assert not os.path.exists(os.path.join(path, "custom_hooks.lock"))
