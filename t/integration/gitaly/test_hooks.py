"""HookService (what gitaly-hooks calls while git runs hooks) and the
gitaly-hooks binary itself, against a real gitaly."""
import base64
import json
import os
import subprocess

import grpc
import pytest

from gitaly_itest import BUILD, GitalyNode, git, make_bare_repo, pb
from helpers_hooks import ZERO, FakeGitLab, check_jwt, hook_processes, payload, write_custom_hook

HOOKS_BIN = os.path.join(BUILD, "gitaly-hooks", "gitaly-hooks")


def hook():
    return pb("hook")


@pytest.fixture
def repo(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("r.git"))
    return gitaly_node.repo("r.git", gl_repository="project-1")


def head(node, rel="r.git"):
    return git("--git-dir", node.repo_path(rel), "rev-parse", "main").strip()


def collect(responses):
    out, err, status = b"", b"", None
    for r in responses:
        out += r.stdout
        err += r.stderr
        if r.HasField("exit_status"):
            status = r.exit_status.value
    return out, err, status


def pre_receive(node, repo, changes, env=None, push_options=()):
    env = env if env is not None else [payload(node, repo)]
    reqs = [hook().PreReceiveHookRequest(repository=repo, environment_variables=env,
                                         git_push_options=list(push_options)),
            hook().PreReceiveHookRequest(stdin=changes)]
    return collect(node.stub("HookService").PreReceiveHook(iter(reqs), timeout=30))


def post_receive(node, repo, changes, env=None, push_options=()):
    env = env if env is not None else [payload(node, repo)]
    reqs = [hook().PostReceiveHookRequest(repository=repo, environment_variables=env,
                                          git_push_options=list(push_options)),
            hook().PostReceiveHookRequest(stdin=changes)]
    return collect(node.stub("HookService").PostReceiveHook(iter(reqs), timeout=30))


def update(node, repo, ref, old, new, env=None):
    env = env if env is not None else [payload(node, repo)]
    req = hook().UpdateHookRequest(repository=repo, environment_variables=env, ref=ref,
                                   old_value=old, new_value=new)
    return collect(node.stub("HookService").UpdateHook(req, timeout=30))


def reftx(node, repo, state, changes, env=None):
    env = env if env is not None else [payload(node, repo)]
    reqs = [hook().ReferenceTransactionHookRequest(repository=repo, environment_variables=env,
                                                   state=state),
            hook().ReferenceTransactionHookRequest(stdin=changes)]
    return collect(node.stub("HookService").ReferenceTransactionHook(iter(reqs), timeout=30))


# --- pre-receive ---

def test_pre_receive_standalone_without_gitlab_succeeds(gitaly_node, repo):
    changes = ("%s %s refs/heads/new\n" % (ZERO, head(gitaly_node))).encode()
    out, err, status = pre_receive(gitaly_node, repo, changes)
    assert (out, err, status) == (b"", b"", 0)


def test_pre_receive_runs_custom_hooks_with_env_and_stdin(gitaly_node, repo):
    path = gitaly_node.repo_path("r.git")
    write_custom_hook(path, "pre-receive",
                      "#!/bin/sh\necho \"id=$GL_ID user=$GL_USERNAME proto=$GL_PROTOCOL "
                      "repo=$GL_REPOSITORY opt=$GIT_PUSH_OPTION_0 dir=$GIT_DIR\"\ncat\n"
                      "echo to-stderr >&2\n")
    write_custom_hook(path, "01-second", "#!/bin/sh\necho second\n", subdir="pre-receive.d")
    write_custom_hook(path, "00-first", "#!/bin/sh\necho first\n", subdir="pre-receive.d")
    write_custom_hook(path, "02-skipped~", "#!/bin/sh\necho skipped\n", subdir="pre-receive.d")
    changes = ("%s %s refs/heads/new\n" % (ZERO, head(gitaly_node))).encode()
    out, err, status = pre_receive(gitaly_node, repo, changes, push_options=["ci.skip"])
    assert status == 0
    assert out == ("id=user-123 user=jane proto=web repo=project-1 opt=ci.skip dir=%s\n" % path).encode() \
        + changes + b"first\nsecond\n"
    assert err == b"to-stderr\n"


def test_pre_receive_custom_hook_failure_gives_its_exit_code(gitaly_node, repo):
    write_custom_hook(gitaly_node.repo_path("r.git"), "pre-receive",
                      "#!/bin/sh\necho 'GL-HOOK-ERR: nope' >&2\nexit 3\n")
    out, err, status = pre_receive(gitaly_node, repo, ("%s %s refs/heads/x\n" % (ZERO, ZERO)).encode())
    assert status == 3
    assert err == b"GL-HOOK-ERR: nope\n"


def test_pre_receive_without_changes_fails(gitaly_node, repo):
    out, err, status = pre_receive(gitaly_node, repo, b"")
    assert status == 1
    assert err == b"hook got no reference updates"


def test_pre_receive_without_payload_fails(gitaly_node, repo):
    out, err, status = pre_receive(gitaly_node, repo, b"x", env=["PATH=/bin"])
    assert status == 1
    assert err == b"extracting hooks payload: no hooks payload found in environment"


def test_pre_receive_asks_gitlab(tmp_path):
    gl = FakeGitLab()
    node = GitalyNode(str(tmp_path / "n"), extra_config=gl.config()).start()
    try:
        make_bare_repo(node.repo_path("r.git"))
        repo = node.repo("r.git", gl_repository="project-1")
        changes = "%s %s refs/heads/new\n" % (ZERO, head(node))
        env = [payload(node, repo),
               "GIT_OBJECT_DIRECTORY=%s/objects/incoming-x" % node.repo_path("r.git"),
               "GIT_ALTERNATE_OBJECT_DIRECTORIES=%s/objects" % node.repo_path("r.git")]
        out, err, status = pre_receive(node, repo, changes.encode(), env=env)
        assert (err, status) == (b"", 0)
        assert gl.paths() == ["/api/v4/internal/allowed", "/api/v4/internal/pre_receive"]
        path, headers, body = gl.requests[0]
        claims = check_jwt(headers["Gitlab-Shell-Api-Request"])
        assert claims["iss"] == "gitlab-shell" and claims["exp"] - claims["iat"] == 60
        assert headers["Content-Type"] == "application/json"
        assert body == {
            "action": "git-receive-pack", "gl_repository": "project-1",
            "project": node.repo_path("r.git"), "changes": changes, "protocol": "web",
            "relative_path": "r.git", "user_id": "123",
            "env": json.dumps({"GIT_ALTERNATE_OBJECT_DIRECTORIES_RELATIVE": ["objects"],
                               "GIT_OBJECT_DIRECTORY_RELATIVE": "objects/incoming-x"},
                              separators=(",", ":")),
        }
        assert gl.requests[1][2] == {"gl_repository": "project-1"}
    finally:
        node.stop()
        gl.stop()


def test_pre_receive_refused_by_gitlab(tmp_path):
    gl = FakeGitLab(allowed=(401, {"status": False, "message": "You are not allowed to push code."}))
    node = GitalyNode(str(tmp_path / "n"), extra_config=gl.config()).start()
    try:
        make_bare_repo(node.repo_path("r.git"))
        repo = node.repo("r.git", gl_repository="project-1")
        write_custom_hook(node.repo_path("r.git"), "pre-receive", "#!/bin/sh\necho must-not-run\n")
        out, err, status = pre_receive(node, repo, ("%s %s refs/heads/n\n" % (ZERO, ZERO)).encode())
        assert status == 1
        assert err == b"GitLab: You are not allowed to push code."
        assert out == b""
        assert gl.paths() == ["/api/v4/internal/allowed"]
    finally:
        node.stop()
        gl.stop()


def test_pre_receive_gitlab_unreachable(tmp_path):
    node = GitalyNode(str(tmp_path / "n"),
                      extra_config='\n[gitlab]\nurl = "http://127.0.0.1:1"\nsecret = "s"\n').start()
    try:
        make_bare_repo(node.repo_path("r.git"))
        repo = node.repo("r.git", gl_repository="project-1")
        out, err, status = pre_receive(node, repo, ("%s %s refs/heads/n\n" % (ZERO, ZERO)).encode())
        assert status == 1
        assert err == b"GitLab: Internal API unreachable"
    finally:
        node.stop()


def test_pre_receive_requires_gl_repository_with_gitlab(tmp_path):
    gl = FakeGitLab()
    node = GitalyNode(str(tmp_path / "n"), extra_config=gl.config()).start()
    try:
        make_bare_repo(node.repo_path("r.git"))
        repo = node.repo("r.git")
        out, err, status = pre_receive(node, repo, ("%s %s refs/heads/n\n" % (ZERO, ZERO)).encode())
        assert (err, status) == (b"repository not set", 1)
        assert gl.requests == []
    finally:
        node.stop()
        gl.stop()


def test_pre_receive_validates_repository(gitaly_node, repo):
    stub = gitaly_node.stub("HookService")
    for r, code in ((gitaly_node.repo("missing.git"), grpc.StatusCode.NOT_FOUND),
                    (gitaly_node.repo("../x"), grpc.StatusCode.INVALID_ARGUMENT),
                    (None, grpc.StatusCode.INVALID_ARGUMENT)):
        reqs = [hook().PreReceiveHookRequest(repository=r, environment_variables=[payload(gitaly_node, repo)])]
        with pytest.raises(grpc.RpcError) as e:
            collect(stub.PreReceiveHook(iter(reqs), timeout=30))
        assert e.value.code() == code


def test_hook_service_requires_token(gitaly_node, repo):
    stub = gitaly_node.stub("HookService", secret="wrong")
    with pytest.raises(grpc.RpcError) as e:
        collect(stub.UpdateHook(hook().UpdateHookRequest(repository=repo), timeout=30))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


# --- post-receive ---

def test_post_receive_prints_gitlab_messages_and_runs_custom_hooks(tmp_path):
    gl = FakeGitLab(post_receive=(200, {"reference_counter_decreased": True, "messages": [
        {"message": "To create a merge request, visit: http://x/mr", "type": "basic"},
        {"message": "This is a long alert message that has to be wrapped because it does not fit", "type": "alert"},
    ]}))
    node = GitalyNode(str(tmp_path / "n"), extra_config=gl.config()).start()
    try:
        make_bare_repo(node.repo_path("r.git"))
        repo = node.repo("r.git", gl_repository="project-1")
        write_custom_hook(node.repo_path("r.git"), "post-receive", "#!/bin/sh\necho custom-post\n")
        changes = "%s %s refs/heads/new\n" % (ZERO, head(node))
        out, err, status = post_receive(node, repo, changes.encode(), push_options=["a=b"])
        assert (err, status) == (b"", 0)
        alert = ("=" * 72 + "\n\n" +
                 " " * 2 + "This is a long alert message that has to be wrapped because it does" + "\n" +
                 " " * 32 + "not fit" + "\n\n" + "=" * 72)
        assert out.decode() == ("\nTo create a merge request, visit: http://x/mr\n\n\n" + alert + "\n\ncustom-post\n")
        assert gl.requests[0][0] == "/api/v4/internal/post_receive"
        assert gl.requests[0][2] == {"gl_repository": "project-1", "identifier": "user-123",
                                     "changes": changes, "push_options": ["a=b"]}
    finally:
        node.stop()
        gl.stop()


def test_post_receive_custom_hook_failure(gitaly_node, repo):
    write_custom_hook(gitaly_node.repo_path("r.git"), "post-receive", "#!/bin/sh\nexit 5\n")
    out, err, status = post_receive(gitaly_node, repo, ("%s %s refs/heads/x\n" % (ZERO, ZERO)).encode())
    assert status == 5


# --- update ---

def test_update_runs_custom_hook_with_arguments(gitaly_node, repo):
    write_custom_hook(gitaly_node.repo_path("r.git"), "update", "#!/bin/sh\necho \"$1 $2 $3\"\nexit 0\n")
    new = head(gitaly_node)
    out, err, status = update(gitaly_node, repo, b"refs/heads/x", ZERO, new)
    assert (out, status) == (("refs/heads/x %s %s\n" % (ZERO, new)).encode(), 0)


def test_update_custom_hook_refusal(gitaly_node, repo):
    write_custom_hook(gitaly_node.repo_path("r.git"), "update", "#!/bin/sh\necho no >&2\nexit 7\n")
    out, err, status = update(gitaly_node, repo, b"refs/heads/x", ZERO, head(gitaly_node))
    assert (err, status) == (b"no\n", 7)


def test_update_invalid_values_are_internal_errors(gitaly_node, repo):
    with pytest.raises(grpc.RpcError) as e:
        update(gitaly_node, repo, b"refs/heads/x", "abc", ZERO)
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert e.value.details() == 'hook got invalid old value: invalid object ID: "abc", expected length 40, got 3'
    with pytest.raises(grpc.RpcError) as e:
        update(gitaly_node, repo, b"", ZERO, ZERO)
    assert e.value.details() == "hook got no reference"


# --- reference-transaction ---

def test_reference_transaction_without_transaction_succeeds(gitaly_node, repo):
    for state in (0, 1, 2):
        out, err, status = reftx(gitaly_node, repo, state, ("%s %s refs/heads/x\n" % (ZERO, ZERO)).encode())
        assert status == 0


def test_reference_transaction_with_transaction_votes(gitaly_node, repo):
    """No praefect backchannel here: a vote cannot succeed, so git must be told to stop."""
    tx = {"id": 1, "node": "default", "primary": True}
    env = [payload(gitaly_node, repo, tx=tx)]
    with pytest.raises(grpc.RpcError) as e:
        reftx(gitaly_node, repo, 0, ("%s %s refs/heads/x\n" % (ZERO, "1" * 40)).encode(), env=env)
    assert e.value.details().startswith("reference-transaction hook: error voting on transaction")
    # force-deletions only and aborted transactions are not voted on
    out, err, status = reftx(gitaly_node, repo, 0, ("%s %s refs/heads/x\n" % (ZERO, ZERO)).encode(), env=env)
    assert status == 0
    out, err, status = reftx(gitaly_node, repo, 2, ("%s %s refs/heads/x\n" % (ZERO, "1" * 40)).encode(), env=env)
    assert status == 0


def test_reference_transaction_invalid_state(gitaly_node, repo):
    reqs = [hook().ReferenceTransactionHookRequest(repository=repo, state=7,
                                                   environment_variables=[payload(gitaly_node, repo)])]
    with pytest.raises(grpc.RpcError) as e:
        collect(gitaly_node.stub("HookService").ReferenceTransactionHook(iter(reqs), timeout=30))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == "invalid hook state"


# --- the gitaly-hooks binary ---

def run_hook(name, env, args=(), stdin=b"", tmp_path=None):
    d = tmp_path / "hookbin"
    d.mkdir(exist_ok=True)
    link = d / name
    if not link.exists():
        os.symlink(HOOKS_BIN, link)
    return subprocess.run([str(link)] + list(args), env=env, input=stdin, capture_output=True, timeout=30)


def hook_env(payload_kv, extra=None):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    k, v = payload_kv.split("=", 1)
    env[k] = v
    env.update(extra or {})
    return env


def test_gitaly_hooks_skips_hooks_not_requested(gitaly_node, repo, tmp_path):
    env = hook_env(payload(gitaly_node, repo, hooks=1))
    r = run_hook("pre-receive", env, stdin=b"whatever\n", tmp_path=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")


def test_gitaly_hooks_unreachable_socket(gitaly_node, repo, tmp_path):
    kv = payload(gitaly_node, repo)
    p = json.loads(base64.b64decode(kv.split("=", 1)[1]))
    p["internal_socket"] = str(tmp_path / "nothing-here")
    env = hook_env("GITALY_HOOKS_PAYLOAD=" + base64.b64encode(json.dumps(p).encode()).decode(),
                   {"GITALY_LOG_DIR": str(tmp_path)})
    r = run_hook("pre-receive", env, stdin=b"x\n", tmp_path=tmp_path)
    assert r.returncode == 1
    assert r.stderr == b"error executing git hook\n"
    assert "error executing git hook" in (tmp_path / "gitaly_hooks.log").read_text()


def test_gitaly_hooks_without_payload(tmp_path):
    r = run_hook("update", {"PATH": "/bin"}, args=("refs/heads/x", ZERO, ZERO), tmp_path=tmp_path)
    assert (r.returncode, r.stderr) == (1, b"error executing git hook\n")


def test_gitaly_hooks_forwards_to_the_node(gitaly_node, repo, tmp_path):
    path = gitaly_node.repo_path("r.git")
    write_custom_hook(path, "pre-receive", "#!/bin/sh\necho out-$GL_ID\ncat >&2\nexit 4\n")
    write_custom_hook(path, "update", "#!/bin/sh\necho \"update $1\"\n")
    env = hook_env(payload(gitaly_node, repo))
    changes = ("%s %s refs/heads/x\n" % (ZERO, head(gitaly_node))).encode()
    r = run_hook("pre-receive", env, stdin=changes, tmp_path=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (4, b"out-user-123\n", changes)
    r = run_hook("update", env, args=("refs/heads/x", ZERO, head(gitaly_node)), tmp_path=tmp_path)
    assert (r.returncode, r.stdout) == (0, b"update refs/heads/x\n")
    r = run_hook("reference-transaction", env, args=("prepared",), stdin=changes, tmp_path=tmp_path)
    assert (r.returncode, r.stderr) == (0, b"")
    r = run_hook("reference-transaction", env, args=("bogus",), stdin=changes, tmp_path=tmp_path)
    assert (r.returncode, r.stderr) == (1, b"error executing git hook\n")


def test_gitaly_hooks_wrong_token(gitaly_node, repo, tmp_path):
    kv = payload(gitaly_node, repo)
    p = json.loads(base64.b64decode(kv.split("=", 1)[1]))
    p["internal_socket_token"] = "not-the-token"
    env = hook_env("GITALY_HOOKS_PAYLOAD=" + base64.b64encode(json.dumps(p).encode()).decode())
    r = run_hook("post-receive", env, stdin=b"%s %s refs/heads/x\n" % (ZERO.encode(), ZERO.encode()),
                 tmp_path=tmp_path)
    assert (r.returncode, r.stderr) == (1, b"error executing git hook\n")


# --- end to end: git push through SSHReceivePack, git running gitaly-hooks ---

SSH_URL = "ssh://gitaly/internal.git"


def push(node, src, rel, refspec, gl_repository="project-1"):
    from helpers_transport import ssh_env
    body = json.dumps({"repository": {"storageName": "default", "relativePath": rel,
                                      "glRepository": gl_repository},
                       "glId": "user-1", "glUsername": "jane", "glRepository": gl_repository})
    env = dict(os.environ)
    env.update({"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_SYSTEM": "/dev/null"})
    env.update(ssh_env(node, "receive-pack", body))
    return subprocess.run(["git", "push", SSH_URL, refspec], cwd=src, env=env, capture_output=True, timeout=60)


def new_commit(tmp_path, node, rel):
    work = str(tmp_path / "work")
    git("clone", "-q", node.repo_path(rel), work)
    with open(os.path.join(work, "new.txt"), "w") as f:
        f.write("new\n")
    git("add", "new.txt", cwd=work)
    git("commit", "-q", "-m", "second", cwd=work)
    return work, git("rev-parse", "HEAD", cwd=work).strip()


def hook_calls(node):
    calls = []
    for line in node.log().splitlines():
        if '"grpc.service":"gitaly.HookService"' in line:
            calls.append(json.loads(line)["grpc.method"])
    return calls


def test_push_runs_hooks_on_standalone_node(gitaly_node, repo, tmp_path):
    path = gitaly_node.repo_path("r.git")
    write_custom_hook(path, "pre-receive", "#!/bin/sh\ncat > pre.txt\necho \"$GL_ID $GL_PROTOCOL\" >> pre.txt\n")
    write_custom_hook(path, "update", "#!/bin/sh\necho \"$1 $2 $3\" > update.txt\n")
    write_custom_hook(path, "post-receive", "#!/bin/sh\necho post says hi\n")
    old = head(gitaly_node)
    work, new = new_commit(tmp_path, gitaly_node, "r.git")
    r = push(gitaly_node, work, "r.git", "HEAD:refs/heads/main")
    assert r.returncode == 0, r.stderr
    assert b"remote: post says hi" in r.stderr
    assert head(gitaly_node) == new
    assert open(os.path.join(path, "pre.txt")).read() == "%s %s refs/heads/main\nuser-1 ssh\n" % (old, new)
    assert open(os.path.join(path, "update.txt")).read() == "refs/heads/main %s %s\n" % (old, new)
    calls = hook_calls(gitaly_node)
    for m in ("PreReceiveHook", "UpdateHook", "PostReceiveHook"):
        assert m in calls
    # no transaction: the reference-transaction hook would have nothing to vote on
    assert "ReferenceTransactionHook" not in calls


def test_push_without_custom_hooks_starts_no_hook(gitaly_node, repo, tmp_path):
    """No GitLab, no transaction, no custom hooks: git is given no hook to start."""
    work, new = new_commit(tmp_path, gitaly_node, "r.git")
    r = push(gitaly_node, work, "r.git", "HEAD:refs/heads/main")
    assert r.returncode == 0, r.stderr
    assert head(gitaly_node) == new
    assert hook_calls(gitaly_node) == []


def test_push_runs_only_the_hooks_that_exist(gitaly_node, repo, tmp_path):
    path = gitaly_node.repo_path("r.git")
    write_custom_hook(path, "a", "#!/bin/sh\necho \"$1\" > update.txt\n", subdir="update.d")
    work, new = new_commit(tmp_path, gitaly_node, "r.git")
    r = push(gitaly_node, work, "r.git", "HEAD:refs/heads/main")
    assert r.returncode == 0, r.stderr
    assert open(os.path.join(path, "update.txt")).read() == "refs/heads/main\n"
    assert hook_calls(gitaly_node) == ["UpdateHook"]
    # a hook added later is found by the next push
    write_custom_hook(path, "post-receive", "#!/bin/sh\necho post says hi\n")
    with open(os.path.join(work, "new.txt"), "w") as f:
        f.write("newer\n")
    git("commit", "-q", "-am", "third", cwd=work)
    r = push(gitaly_node, work, "r.git", "HEAD:refs/heads/main")
    assert r.returncode == 0, r.stderr
    assert b"remote: post says hi" in r.stderr
    assert hook_calls(gitaly_node) == ["UpdateHook", "UpdateHook", "PostReceiveHook"]


def test_push_runs_global_custom_hooks(tmp_path):
    hooks_dir = str(tmp_path / "global-hooks")
    os.makedirs(os.path.join(hooks_dir, "pre-receive.d"))
    marker = str(tmp_path / "global-pre.txt")
    script = os.path.join(hooks_dir, "pre-receive.d", "log")
    with open(script, "w") as f:
        f.write("#!/bin/sh\ncat > %s\n" % marker)
    os.chmod(script, 0o755)
    node = GitalyNode(str(tmp_path / "n"), extra_config='[hooks]\ncustom_hooks_dir = "%s"\n' % hooks_dir).start()
    try:
        make_bare_repo(node.repo_path("r.git"))
        old = head(node)
        work, new = new_commit(tmp_path, node, "r.git")
        r = push(node, work, "r.git", "HEAD:refs/heads/main")
        assert r.returncode == 0, r.stderr
        assert open(marker).read() == "%s %s refs/heads/main\n" % (old, new)
        assert hook_calls(node) == ["PreReceiveHook"]
    finally:
        node.stop()


def test_push_refused_by_custom_hook(gitaly_node, repo, tmp_path):
    write_custom_hook(gitaly_node.repo_path("r.git"), "pre-receive",
                      "#!/bin/sh\necho 'GL-HOOK-ERR: pushes are frozen' >&2\nexit 1\n")
    old = head(gitaly_node)
    work, new = new_commit(tmp_path, gitaly_node, "r.git")
    r = push(gitaly_node, work, "r.git", "HEAD:refs/heads/main")
    assert r.returncode != 0
    assert b"remote: GL-HOOK-ERR: pushes are frozen" in r.stderr
    assert b"pre-receive hook declined" in r.stderr
    assert head(gitaly_node) == old
    # the refused objects stayed in git's quarantine, which git removed
    assert git("--git-dir", gitaly_node.repo_path("r.git"), "cat-file", "-e", new, check=False) == ""


def test_push_refused_by_gitlab(tmp_path):
    gl = FakeGitLab(allowed=(401, {"status": False, "message": "You are not allowed to push code."}))
    node = GitalyNode(str(tmp_path / "n"), extra_config=gl.config()).start()
    try:
        make_bare_repo(node.repo_path("r.git"))
        old = head(node)
        work, new = new_commit(tmp_path, node, "r.git")
        r = push(node, work, "r.git", "HEAD:refs/heads/main")
        assert r.returncode != 0
        assert b"remote: GitLab: You are not allowed to push code." in r.stderr
        assert head(node) == old
        assert gl.paths() == ["/api/v4/internal/allowed"]
        body = gl.requests[0][2]
        env = json.loads(body.pop("env"))
        assert body == {"action": "git-receive-pack", "gl_repository": "project-1",
                        "project": node.repo_path("r.git"), "changes": "%s %s refs/heads/main\n" % (old, new),
                        "protocol": "ssh", "relative_path": "r.git", "user_id": "1"}
        # git's receive quarantine, relative to the repository
        rel = env["GIT_OBJECT_DIRECTORY_RELATIVE"]
        assert rel.startswith("objects/") and "incoming-" in rel
        assert env["GIT_ALTERNATE_OBJECT_DIRECTORIES_RELATIVE"] == ["objects"]

        # once GitLab agrees, the same push goes through
        gl.responses["/api/v4/internal/allowed"] = (200, {"status": True})
        r = push(node, work, "r.git", "HEAD:refs/heads/main")
        assert r.returncode == 0, r.stderr
        assert head(node) == new
        assert gl.paths()[1:] == ["/api/v4/internal/allowed", "/api/v4/internal/pre_receive",
                                  "/api/v4/internal/post_receive"]
    finally:
        node.stop()
        gl.stop()


def test_cancelled_hook_call_kills_custom_hook(gitaly_node, repo):
    import time
    write_custom_hook(gitaly_node.repo_path("r.git"), "pre-receive",
                      "#!/bin/sh\nexec sleep 31.4159\n")
    reqs = [hook().PreReceiveHookRequest(repository=repo, environment_variables=[payload(gitaly_node, repo)]),
            hook().PreReceiveHookRequest(stdin=("%s %s refs/heads/x\n" % (ZERO, ZERO)).encode())]
    with pytest.raises(grpc.RpcError) as e:
        collect(gitaly_node.stub("HookService").PreReceiveHook(iter(reqs), timeout=1))
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.time() + 10
    while hook_processes("31.4159") and time.time() < deadline:
        time.sleep(0.05)
    assert hook_processes("31.4159") == []
    # the node is fine afterwards
    out, err, status = update(gitaly_node, repo, b"refs/heads/x", ZERO, head(gitaly_node))
    assert status == 0


def test_cancelled_gitlab_request(tmp_path):
    """A hook call that goes away while GitLab is slow leaves no request behind."""
    import socket
    import time
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)   # accepts connections but never answers
    port = srv.getsockname()[1]
    node = GitalyNode(str(tmp_path / "n"),
                      extra_config='\n[gitlab]\nurl = "http://127.0.0.1:%d"\nsecret = "s"\n' % port).start()
    try:
        make_bare_repo(node.repo_path("r.git"))
        repo = node.repo("r.git", gl_repository="project-1")
        for _ in range(3):
            reqs = [hook().PreReceiveHookRequest(repository=repo, environment_variables=[payload(node, repo)]),
                    hook().PreReceiveHookRequest(stdin=("%s %s refs/heads/x\n" % (ZERO, ZERO)).encode())]
            with pytest.raises(grpc.RpcError) as e:
                collect(node.stub("HookService").PreReceiveHook(iter(reqs), timeout=0.5))
            assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(0.2)
        out, err, status = update(node, repo, b"refs/heads/x", ZERO, ZERO)
        assert status == 0
        assert node.proc.poll() is None
    finally:
        node.stop()
        srv.close()


def test_hook_output_is_streamed_with_backpressure(gitaly_node, repo):
    """64 MB of custom hook output reach a slow client without piling up in the node."""
    import time
    from helpers_transport import rss_kib
    write_custom_hook(gitaly_node.repo_path("r.git"), "update", "#!/bin/sh\nhead -c 67108864 /dev/zero\n")
    before = rss_kib(gitaly_node.proc.pid, "VmHWM")
    req = hook().UpdateHookRequest(repository=repo, environment_variables=[payload(gitaly_node, repo)],
                                   ref=b"refs/heads/x", old_value=ZERO, new_value=ZERO)
    total, status = 0, None
    for i, r in enumerate(gitaly_node.stub("HookService").UpdateHook(req, timeout=120)):
        if i == 0:
            time.sleep(1.0)   # let the node run into a full window
        total += len(r.stdout)
        if r.HasField("exit_status"):
            status = r.exit_status.value
    assert (total, status) == (64 * 1024 * 1024, 0)
    with open("/proc/%d/maps" % gitaly_node.proc.pid) as f:
        if "libasan" in f.read():
            return   # AddressSanitizer keeps freed memory in quarantine: RSS says nothing then
    assert rss_kib(gitaly_node.proc.pid, "VmHWM") - before < 32 * 1024


def test_gitlab_over_unix_socket_with_relative_root(tmp_path):
    gl = FakeGitLab(unix_path=str(tmp_path / "gitlab.socket"), url_root="/gitlab")
    node = GitalyNode(str(tmp_path / "n"), extra_config=gl.config()).start()
    try:
        make_bare_repo(node.repo_path("r.git"))
        repo = node.repo("r.git", gl_repository="project-1")
        out, err, status = pre_receive(node, repo, ("%s %s refs/heads/n\n" % (ZERO, ZERO)).encode())
        assert (err, status) == (b"", 0)
        assert gl.paths() == ["/gitlab/api/v4/internal/allowed", "/gitlab/api/v4/internal/pre_receive"]
    finally:
        node.stop()
        gl.stop()
