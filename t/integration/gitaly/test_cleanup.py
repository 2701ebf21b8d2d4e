"""Interrupted writes (docs/technical/gitaly-node.md, "Interrupted writes"): what a killed
gitaly or git leaves behind (lock files, quarantines, temporary objects) does not block the
next push or replication, is removed at start-up, and a lock a running writer of ours holds
is never touched."""
import json
import os
import signal
import subprocess
import time

import pytest

from gitaly_itest import BUILD, GitalyNode, git, make_bare_repo, pb, wait_for
from helpers_transport import payload, ssh_env

URL = "ssh://gitaly/internal.git"

needs_gitaly_ssh = pytest.mark.skipif(not os.path.exists(os.path.join(BUILD, "gitaly-ssh", "gitaly-ssh")),
                                      reason="gitaly-ssh is not built")


def push_env(node, rel):
    return ssh_env(node, "receive-pack", payload(node, rel, glId="user-1", glRepository="project-1"))


def push(node, src, rel, refspec, check=True):
    return git("push", "-q", URL, refspec, cwd=src, env=push_env(node, rel), check=check)


def locks(path):
    r = subprocess.run(["find", path, "-name", "*.lock"], capture_output=True, text=True)
    return sorted(r.stdout.split())


def backdate(path, seconds=120):
    t = time.time() - seconds
    os.utime(path, (t, t))


def plant(path, content=b"", age=120):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)
    if age:
        backdate(path, age)


def removed_logged(node, path):
    for line in node.log().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("msg") == "removed a leftover of an interrupted write" and e.get("path") == path:
            return e
    return None


def new_commit(src, branch, n):
    work = src + ".w%d" % n
    git("clone", "-q", "-b", branch, src, work)
    with open(os.path.join(work, "f%d.txt" % n), "w") as f:
        f.write("%d\n" % n)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "change %d" % n, cwd=work)
    git("push", "-q", "origin", "HEAD:" + branch, cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


def test_gitaly_killed_mid_push_leaves_no_lock_once_restarted(tmp_path):
    node = GitalyNode(str(tmp_path / "gitaly")).start()
    try:
        dst = make_bare_repo(node.repo_path("kill.git"))
        src = make_bare_repo(str(tmp_path / "src.git"))
        head = git("rev-parse", "main", cwd=src).strip()
        git("update-ref", "--stdin", cwd=src,
            input="".join("create refs/heads/k-%03d %s\n" % (i, head) for i in range(150)).encode())
        # git holding ref locks when the node dies: a ref transaction prepared and waiting for its
        # commit. A push waits like that in its reference-transaction hook while it votes; a node
        # without a transaction gives git no such hook (docs/technical/hooks.md), so the test
        # holds the transaction itself, with git's own update-ref
        own = git("rev-parse", "main", cwd=dst).strip()
        u = subprocess.Popen(["git", "update-ref", "--stdin"], cwd=dst, stdin=subprocess.PIPE,
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        u.stdin.write(("start\n" + "".join("create refs/heads/k-%03d %s\n" % (i, own) for i in range(150))
                       + "prepare\n").encode())
        u.stdin.flush()
        wait_for(lambda: len(locks(dst)) == 150, timeout=30, what="git holding the ref locks")
        # and the whole node dies at once, git with it: nothing gets to clean up
        os.killpg(u.pid, signal.SIGSTOP)
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait()
        os.killpg(u.pid, signal.SIGKILL)
        u.wait()
        left = locks(dst)
        assert left, "the kill left no lock to clean up"
        time.sleep(1.2)   # the leftovers are older than the new process
        node.stop()
        node.start()
        wait_for(lambda: not locks(dst), timeout=20, what="the start-up pass removing the locks")
        wait_for(lambda: removed_logged(node, left[0]), timeout=10, what="the removal logged")
        # the same push goes through
        push(node, src, "kill.git", "refs/heads/k-*:refs/heads/k-*")
        assert git("rev-parse", "k-149", cwd=dst).strip() == head
        assert locks(dst) == []
    finally:
        node.stop()


@needs_gitaly_ssh
def test_stale_ref_lock_does_not_block_a_push(gitaly_node, tmp_path):
    dst = make_bare_repo(gitaly_node.repo_path("stale.git"))
    src = make_bare_repo(str(tmp_path / "src.git"))
    lock = os.path.join(dst, "refs", "heads", "main.lock")
    plant(lock, b"0" * 40 + b"\n")
    plant(os.path.join(dst, "packed-refs.lock"))
    new = new_commit(src, "main", 1)
    push(gitaly_node, src, "stale.git", "main:main")
    assert git("rev-parse", "main", cwd=dst).strip() == new
    assert locks(dst) == []
    e = removed_logged(gitaly_node, lock)
    assert e and e["age_seconds"] >= 100


def test_stale_ref_lock_does_not_block_a_smart_http_push(gitaly_node, tmp_path):
    from helpers_transport import SmartHTTP
    dst = make_bare_repo(gitaly_node.repo_path("group/http.git"))
    src = make_bare_repo(str(tmp_path / "src.git"))
    plant(os.path.join(dst, "refs", "heads", "main.lock"))
    new = new_commit(src, "main", 1)
    front = SmartHTTP(gitaly_node)
    try:
        git("push", "-q", front.url + "/group/http.git", "main:main", cwd=src)
    finally:
        front.close()
    assert git("rev-parse", "main", cwd=dst).strip() == new
    assert locks(dst) == []


@needs_gitaly_ssh
def test_young_lock_of_another_process_is_left_alone(gitaly_node, tmp_path):
    """A lock younger than a few seconds may belong to a process that is not ours."""
    dst = make_bare_repo(gitaly_node.repo_path("young.git"))
    src = make_bare_repo(str(tmp_path / "src.git"))
    lock = os.path.join(dst, "refs", "heads", "main.lock")
    plant(lock, age=0)
    new_commit(src, "main", 1)
    push(gitaly_node, src, "young.git", "main:main", check=False)
    assert os.path.exists(lock)
    backdate(lock)
    new = new_commit(src, "main", 2)
    push(gitaly_node, src, "young.git", "main:main")
    assert git("rev-parse", "main", cwd=dst).strip() == new


def test_stale_head_lock_does_not_block_write_ref(gitaly_node):
    dst = make_bare_repo(gitaly_node.repo_path("head.git"), branches=("main", "dev"))
    plant(os.path.join(dst, "HEAD.lock"), b"ref: refs/heads/main\n")
    gitaly_node.stub("RepositoryService").WriteRef(pb("repository").WriteRefRequest(
        repository=gitaly_node.repo("head.git"), ref=b"HEAD", revision=b"refs/heads/dev"), timeout=30)
    assert open(os.path.join(dst, "HEAD")).read() == "ref: refs/heads/dev\n"
    assert locks(dst) == []


def test_stale_lock_does_not_block_user_create_branch(gitaly_node):
    dst = make_bare_repo(gitaly_node.repo_path("op.git"))
    plant(os.path.join(dst, "refs", "heads", "feature.lock"))
    op = pb("operations")
    user = pb("shared").User(gl_id="user-1", name=b"Test", email=b"test@example.com", gl_username="test")
    gitaly_node.stub("OperationService").UserCreateBranch(op.UserCreateBranchRequest(
        repository=gitaly_node.repo("op.git"), branch_name=b"feature", start_point=b"main", user=user), timeout=30)
    assert git("rev-parse", "feature", cwd=dst) == git("rev-parse", "main", cwd=dst)
    assert locks(dst) == []


REL = "@cluster/repositories/6b/86/1"


@pytest.fixture
def pair(make_gitaly):
    return make_gitaly("a", storages=("gitaly-1",)), make_gitaly("b", storages=("gitaly-2",))


def replicate(a, b, **kw):
    import base64
    info = {"gitaly-1": {"address": "unix:" + a.socket, "token": a.token}}
    md = [("gitaly-servers", base64.b64encode(json.dumps(info).encode()).decode())]
    req = pb("repository").ReplicateRepositoryRequest(repository=b.repo(REL, storage="gitaly-2"),
                                                      source=a.repo(REL, storage="gitaly-1"))
    return b.stub("RepositoryService").ReplicateRepository.future(req, metadata=md, timeout=60, **kw)


@needs_gitaly_ssh
def test_stale_lock_does_not_block_replication(pair):
    a, b = pair
    src = make_bare_repo(a.repo_path(REL, "gitaly-1"), branches=("main", "dev"))
    replicate(a, b).result()
    dst = b.repo_path(REL, "gitaly-2")
    # the replica missed an update and kept the lock of the one that was killed
    plant(os.path.join(dst, "refs", "heads", "main.lock"), b"1" * 40 + b"\n")
    plant(os.path.join(dst, "objects", "pack", "tmp_pack_Xy12ab"), b"PACK")
    new = new_commit(src, "main", 1)
    replicate(a, b).result()
    assert git("rev-parse", "main", cwd=dst).strip() == new
    assert locks(dst) == []
    assert not os.path.exists(os.path.join(dst, "objects", "pack", "tmp_pack_Xy12ab"))


@needs_gitaly_ssh
def test_lock_of_a_running_writer_is_kept(pair, tmp_path):
    """While a writer of ours runs in the repository (a replication waiting on its source),
    another writer's pass would find its locks: no pass runs, however old the lock looks."""
    a, b = pair
    make_bare_repo(a.repo_path(REL, "gitaly-1"))
    replicate(a, b).result()
    dst = b.repo_path(REL, "gitaly-2")
    a.proc.send_signal(signal.SIGSTOP)
    try:
        running = replicate(a, b)
        time.sleep(0.5)   # it entered the repository and waits on the stopped source
        held = os.path.join(dst, "refs", "heads", "held.lock")
        plant(held)       # stands for a lock the running writer holds, back-dated
        src = make_bare_repo(str(tmp_path / "src.git"))
        env = ssh_env(b, "receive-pack", payload(b, REL, storage="gitaly-2", glId="user-1"))
        git("push", "-q", URL, "main:refs/heads/other", cwd=src, env=env)
        assert os.path.exists(held)
    finally:
        a.proc.send_signal(signal.SIGCONT)
    running.result()
    # once nobody of ours writes there, the next writer's pass removes it
    git("push", "-q", URL, "main:refs/heads/other2", cwd=src, env=env)
    assert not os.path.exists(held)


def test_leftovers_are_removed_at_start_up(tmp_path):
    node = GitalyNode(str(tmp_path / "gitaly"))
    storage = node.storages["default"]
    repo = make_bare_repo(os.path.join(storage, "@hashed", "ab", "cd", "abcd.git"))
    before = git("for-each-ref", cwd=repo)
    objects = os.path.join(repo, "objects")
    leftovers = [
        os.path.join(repo, "refs", "heads", "main.lock"),
        os.path.join(repo, "refs", "heads", "deep", "er.lock"),
        os.path.join(repo, "packed-refs.lock"),
        os.path.join(repo, "HEAD.lock"),
        os.path.join(repo, "config.lock"),
        os.path.join(objects, "tmp_objdir-incoming-AbCdEf", "pack", "tmp_pack_x"),
        os.path.join(objects, "incoming-QwErTy", "ab", "cdef"),
        os.path.join(objects, "pack", "tmp_idx_123456"),
        os.path.join(objects, "ab", "tmp_obj_zzzzzz"),
        os.path.join(storage, "+gitaly", "tmp", "quarantine-0123456789abcdef-xyz", "pack", "p.pack"),
        os.path.join(storage, "+gitaly", "tmp", "repo-being-removed", "HEAD"),
    ]
    for p in leftovers:
        plant(p, b"x", age=0)
    # older than the process that starts now (files and the directories holding them), whatever
    # the rounding of file times to seconds, and younger than the 5 s a writer's pass waits for
    time.sleep(2.2)
    node.start()
    try:
        for d in (os.path.join(objects, "tmp_objdir-incoming-AbCdEf"), os.path.join(objects, "incoming-QwErTy"),
                  os.path.join(storage, "+gitaly", "tmp", "quarantine-0123456789abcdef-xyz"),
                  os.path.join(storage, "+gitaly", "tmp", "repo-being-removed")):
            wait_for(lambda d=d: not os.path.exists(d), timeout=20, what="%s removed" % d)
        # the pass removes one file after the other: wait for it to be through
        wait_for(lambda: not any(os.path.exists(p) for p in leftovers), timeout=20, what="every leftover removed")
        for p in leftovers:
            assert not os.path.exists(p), p
        assert git("for-each-ref", cwd=repo) == before
        git("fsck", "--no-dangling", cwd=repo)
        wait_for(lambda: removed_logged(node, os.path.join(repo, "HEAD.lock")), timeout=10, what="the removal logged")
        assert os.path.isdir(os.path.join(storage, "+gitaly", "tmp"))
    finally:
        node.stop()


@needs_gitaly_ssh
def test_upgrade_spares_the_previous_process_locks_until_it_exited(tmp_path):
    """After a graceful upgrade the old gitaly may still run writers: what could be theirs stays
    until it exited, then the start-up pass removes it."""
    from gitaly_itest import read_pid
    from helpers_transport import GITALY_SSH
    node = GitalyNode(str(tmp_path / "gitaly"))
    pid_file = str(tmp_path / "gitaly.pid")
    node._log = open(node.log_path, "ab")
    node.proc = subprocess.Popen([os.path.join(BUILD, "gitaly", "gitaly"), node.config_path],
                                 env=dict(os.environ, GITALY_UPGRADES_ENABLED="true", GITALY_PID_FILE=pid_file),
                                 stdout=node._log, stderr=node._log)
    hanging = None
    new_pid = None
    try:
        wait_for(lambda: os.path.exists(node.socket) and read_pid(pid_file) == node.proc.pid, what="gitaly")
        dst = make_bare_repo(node.repo_path("upg.git"), branches=("main", "other"))
        src = make_bare_repo(str(tmp_path / "src.git"))
        # a push in flight on the old process keeps it draining
        env = dict(os.environ, **push_env(node, "upg.git"))
        hanging = subprocess.Popen([GITALY_SSH, "receive-pack", "gitaly", "x"], env=env, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        hanging.stdout.read(4)   # the advertisement: the old process runs receive-pack
        lock = os.path.join(dst, "refs", "heads", "main.lock")
        plant(lock, age=30)      # older than a few seconds, younger than graceful_restart_timeout
        node.proc.send_signal(signal.SIGHUP)
        new_pid = wait_for(lambda: read_pid(pid_file) != node.proc.pid and read_pid(pid_file), what="the new gitaly")
        wait_for(lambda: "started by an upgrade" in node.log(), what="the new process's start")
        push(node, src, "upg.git", "main:refs/heads/pushed")   # served by the new process
        assert os.path.exists(lock)
        assert node.proc.poll() is None
        hanging.stdin.write(b"0000")
        hanging.stdin.close()
        hanging.wait(20)
        node.proc.wait(20)
        wait_for(lambda: not os.path.exists(lock), timeout=20, what="the lock removed once the old process exited")
        assert "the previous gitaly process exited" in node.log()
    finally:
        if hanging and hanging.poll() is None:
            hanging.kill()
        if new_pid:
            os.kill(new_pid, signal.SIGTERM)
            wait_for(lambda: not os.path.exists("/proc/%d" % new_pid) or
                     open("/proc/%d/stat" % new_pid).read().split()[2] == "Z", timeout=20, what="the new gitaly stopped")
        node.stop()
