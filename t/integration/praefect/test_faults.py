"""Surviving faults: a killed push leaves no lock behind, killed primaries leave the repository
writable and lose no acknowledged push, a node stalled for 2.5 s fails no push.

Short versions of t/fault/run.py (the long runs, which also measure how long writes stop).
"""
import os
import signal
import subprocess
import threading
import time

import pytest

from praefect_itest import Cluster, wait_for
from gitaly_itest import git, make_bare_repo
from test_praefect import create_repo, gitaly_ssh_env, push, replicas_in_sync
from helpers_transport import SmartHTTP

pytestmark = pytest.mark.xdist_group("timing")


def replica(cluster, storage, replica_path):
    return os.path.join(cluster.nodes[storage].storages[storage], replica_path)


def locks_under(cluster, replica_path):
    found = []
    for name in cluster.nodes:
        r = subprocess.run(["find", replica(cluster, name, replica_path), "-name", "*.lock"],
                           capture_output=True, text=True)
        found += ["%s: %s" % (name, p) for p in r.stdout.split()]
    return found


def push_env(cluster, rel):
    return dict(os.environ, **gitaly_ssh_env(cluster.praefect, rel, "receive-pack"))


def test_killed_push_leaves_no_lock_file_behind(cluster, tmp_path):
    create_repo(cluster, "locks.git")
    src = make_bare_repo(str(tmp_path / "src.git"), branches=("main",))
    push(cluster, src, "locks.git", "main")
    md = cluster.praefect.metadata("locks.git")
    head = git("rev-parse", "main", cwd=src).strip()
    heads = os.path.join(replica(cluster, md.primary, md.replica_path), "refs", "heads")
    left = []
    # receive-pack runs one voted ref transaction per ref, so about half of a push of many
    # refs is spent with a refs/heads/*.lock held on each node: a few tries catch one
    for k in range(4):
        git("update-ref", "--stdin", cwd=src,
            input="".join("create refs/heads/k%d-%03d %s\n" % (k, i, head) for i in range(150)).encode())
        before = len(os.listdir(heads))
        p = subprocess.Popen(["git", "push", "-q", "ssh://gitaly/repo.git", "refs/heads/k%d-*:refs/heads/k%d-*" % (k, k)],
                             cwd=src, env=push_env(cluster, "locks.git"), start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: len(os.listdir(heads)) > before + 10, timeout=20, what="the push updating refs")
        os.killpg(p.pid, signal.SIGKILL)     # the user's connection is gone mid-push
        p.wait()
        # git removes its locks once stopped; under load that takes a while: left behind means
        # still there long after
        deadline = time.time() + 20
        left = locks_under(cluster, md.replica_path)
        while left and time.time() < deadline:
            time.sleep(0.2)
            left = locks_under(cluster, md.replica_path)
        if left:
            break
    assert left == []
    # and the same push goes through afterwards
    r = subprocess.run(["git", "push", "-q", "ssh://gitaly/repo.git", "refs/heads/k0-*:refs/heads/k0-*"], cwd=src,
                       env=push_env(cluster, "locks.git"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


class Writer(threading.Thread):
    """Pushes one branch in a loop and records every attempt: (start, end, ok, sha)."""

    def __init__(self, cluster, base, work, rel, branch):
        super().__init__(daemon=True)
        self.cluster, self.rel, self.branch, self.work = cluster, rel, branch, work
        git("clone", "-q", base, work)
        self.stop = threading.Event()
        self.attempts = []
        self.errors = []             # first line of stderr of each failed attempt

    def run(self):
        k = 0
        while not self.stop.is_set():
            k += 1
            with open(os.path.join(self.work, "f.txt"), "w") as f:
                f.write("%s %d\n" % (self.branch, k))
            git("commit", "-q", "-a", "-m", "change %d" % k, cwd=self.work)
            sha = git("rev-parse", "HEAD", cwd=self.work).strip()
            start = time.time()
            r = subprocess.run(["git", "push", "-q", "-f", "ssh://gitaly/repo.git", "HEAD:refs/heads/" + self.branch],
                               cwd=self.work, env=push_env(self.cluster, self.rel), capture_output=True, timeout=60)
            self.attempts.append((start, time.time(), r.returncode == 0, sha))
            if r.returncode:
                err = r.stderr.decode(errors="replace").strip().splitlines()
                self.errors.append(err[0] if err else "exit %d" % r.returncode)
                time.sleep(0.05)


def test_primary_kills_leave_the_repository_writable_and_lose_no_acknowledged_push(tmp_path):
    # How long writes stop after a kill is a measurement (t/fault/run.py primary-kill holds
    # the 1 s goal); here: writable again between kills, nothing acknowledged lost, in sync.
    cluster = Cluster(tmp_path)
    try:
        base = make_bare_repo(str(tmp_path / "base.git"), branches=("main",), files={"f.txt": "0\n"})
        create_repo(cluster, "kills.git")
        push(cluster, base, "kills.git", "main")
        writers = [Writer(cluster, base, str(tmp_path / ("w%d" % i)), "kills.git", "w%d" % i) for i in range(3)]
        for w in writers:
            w.start()
        time.sleep(1)
        kills = []
        for _ in range(3):
            name = cluster.praefect.metadata("kills.git").primary
            node = cluster.nodes[name]
            kills.append(time.time())
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait()
            node._log.close()
            time.sleep(0.5)
            os.rename(node.log_path, node.log_path + ".%d" % len(kills))
            node.start()
            # long enough for a push to go through after the failover even under ASan on a busy
            # machine (t/fault/run.py measures how soon it does)
            time.sleep(3.5)
        last = time.time()
        time.sleep(1)
        for w in writers:
            w.stop.set()
        for w in writers:
            w.join(60)
        attempts = sorted(a for w in writers for a in w.attempts)
        for k, t in enumerate(kills):
            until = kills[k + 1] if k + 1 < len(kills) else last
            acked = [end for start, end, ok, _ in attempts if ok and t <= start and end <= until + 1]
            assert acked, "no push acknowledged between kill %d and the next (two of three nodes were up)" % (k + 1)
            print("kill %d: first acknowledged push %.2f s later" % (k + 1, min(acked) - t))
        md, _ = wait_for(lambda: replicas_in_sync(cluster, "kills.git"), timeout=30, what="every replica in sync")
        for name in cluster.nodes:
            path = replica(cluster, name, md.replica_path)
            for w in writers:
                have = set(git("rev-list", "refs/heads/" + w.branch, cwd=path).split())
                lost = [sha for _, _, ok, sha in w.attempts if ok and sha not in have]
                assert not lost, "%s lacks acknowledged pushes %s" % (name, lost[:3])
    finally:
        cluster.stop()


def test_node_stalled_for_two_and_a_half_seconds_fails_no_push_in_flight(cluster, tmp_path):
    create_repo(cluster, "stall.git")
    base = make_bare_repo(str(tmp_path / "base.git"), branches=("main",))
    push(cluster, base, "stall.git", "main")
    wait_for(lambda: replicas_in_sync(cluster, "stall.git"), what="replication")
    primary = cluster.praefect.metadata("stall.git").primary
    works = []
    for i in range(4):
        work = str(tmp_path / ("w%d" % i))
        git("clone", "-q", base, work)
        with open(os.path.join(work, "big.bin"), "wb") as f:
            f.write(os.urandom(4 << 20))   # incompressible: the push is still streaming at the stall
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", "big %d" % i, cwd=work)
        works.append(work)
    procs = [subprocess.Popen(["git", "push", "-q", "ssh://gitaly/repo.git", "HEAD:refs/heads/big%d" % i], cwd=w,
                              env=push_env(cluster, "stall.git"), stderr=subprocess.PIPE, text=True)
             for i, w in enumerate(works)]
    time.sleep(0.3)
    proc = cluster.nodes[primary].proc
    proc.send_signal(signal.SIGSTOP)
    time.sleep(2.5)     # slow, not dead: well inside the 5 s + 2 s keepalive
    proc.send_signal(signal.SIGCONT)
    errors = []
    for p in procs:
        _, err = p.communicate(timeout=60)
        if p.returncode:
            errors.append(err.strip().splitlines()[0] if err.strip() else "exit %d" % p.returncode)
    assert errors == []


def test_a_write_lacking_its_quorum_waits_for_a_returning_replica(cluster, tmp_path):
    """A secondary that was away is healthy again but still catching up, and the other secondary
    has just stopped: the write has no quorum without the returning one, so it waits for its
    catch-up (bounded, docs/technical/transactions.md, "Quorum") instead of failing."""
    create_repo(cluster, "wait.git")
    src = make_bare_repo(str(tmp_path / "src.git"), branches=("main",))
    push(cluster, src, "wait.git", "main")
    wait_for(lambda: replicas_in_sync(cluster, "wait.git"), what="replication")
    md = cluster.praefect.metadata("wait.git")
    away, other = sorted(r.storage for r in md.replicas if r.storage != md.primary)

    def healthy(name):
        return next(r.healthy for r in cluster.praefect.metadata("wait.git").replicas if r.storage == name)

    work = str(tmp_path / "work")
    git("clone", "-q", src, work)
    cluster.nodes[away].proc.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: not healthy(away), timeout=10, what="%s unhealthy" % away)
        # what it misses is large, so its catch-up takes a while
        with open(os.path.join(work, "big.bin"), "wb") as f:
            f.write(os.urandom(8 << 20))
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", "while away", cwd=work)
        subprocess.run(["git", "push", "-q", "ssh://gitaly/repo.git", "HEAD:refs/heads/main"], cwd=work,
                       env=push_env(cluster, "wait.git"), check=True, timeout=60)
        cluster.nodes[other].proc.send_signal(signal.SIGSTOP)
        wait_for(lambda: not healthy(other), timeout=10, what="%s unhealthy" % other)
    finally:
        cluster.nodes[away].proc.send_signal(signal.SIGCONT)
    try:
        wait_for(lambda: healthy(away), timeout=10, what="%s healthy again" % away)
        git("commit", "-q", "--allow-empty", "-m", "needs the returning replica", cwd=work)
        r = subprocess.run(["git", "push", "-q", "ssh://gitaly/repo.git", "HEAD:refs/heads/main"], cwd=work,
                           env=push_env(cluster, "wait.git"), capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        head = git("rev-parse", "HEAD", cwd=work).strip()
        assert git("rev-parse", "refs/heads/main", cwd=replica(cluster, away, md.replica_path)).strip() == head
    finally:
        cluster.nodes[other].proc.send_signal(signal.SIGCONT)
    wait_for(lambda: replicas_in_sync(cluster, "wait.git"), what="every replica in sync")


def restart(node, suffix):
    node.proc.wait()
    node._log.close()
    os.rename(node.log_path, node.log_path + "." + suffix)
    node.start()


def test_a_secondary_killed_just_before_a_push_does_not_fail_it(cluster, tmp_path):
    """kill -9 of a secondary right before a push: praefect has not yet seen the node go, so it
    may still route the push to it. The two others are a quorum: the push is acknowledged, the
    dead replica is outdated and repaired once the node is back."""
    create_repo(cluster, "deadsec.git")
    base = make_bare_repo(str(tmp_path / "base.git"), branches=("main",), files={"f.txt": "0\n"})
    push(cluster, base, "deadsec.git", "main")
    md, _ = wait_for(lambda: replicas_in_sync(cluster, "deadsec.git"), what="replication")
    work = str(tmp_path / "work")
    git("clone", "-q", base, work)
    secondaries = sorted(n for n in cluster.nodes if n != md.primary)
    for k, name in enumerate(secondaries * 2):
        with open(os.path.join(work, "f.txt"), "w") as f:
            f.write("change %d\n" % k)
        git("commit", "-q", "-a", "-m", "change %d" % k, cwd=work)
        node = cluster.nodes[name]
        node.proc.send_signal(signal.SIGKILL)
        r = subprocess.run(["git", "push", "-q", "ssh://gitaly/repo.git", "HEAD:refs/heads/main"], cwd=work,
                           env=push_env(cluster, "deadsec.git"), capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, "push %d with %s just killed: %s" % (k, name, r.stderr)
        head = git("rev-parse", "HEAD", cwd=work).strip()
        gens = {r.storage: r.generation for r in cluster.praefect.metadata("deadsec.git").replicas}
        assert gens[name] < cluster.praefect.metadata("deadsec.git").generation
        restart(node, str(k))
        md, _ = wait_for(lambda: replicas_in_sync(cluster, "deadsec.git"), timeout=20,
                         what="%s repaired after its restart" % name)
        assert git("rev-parse", "refs/heads/main", cwd=replica(cluster, name, md.replica_path)).strip() == head


def test_a_secondary_killed_during_a_push_does_not_fail_it(cluster, tmp_path):
    """The same, with the node killed while the push is in flight (at several points of it): the
    secondary is a voter that will never vote or whose call breaks; the other two commit."""
    create_repo(cluster, "midsec.git")
    base = make_bare_repo(str(tmp_path / "base.git"), branches=("main",), files={"f.txt": "0\n"})
    push(cluster, base, "midsec.git", "main")
    md, _ = wait_for(lambda: replicas_in_sync(cluster, "midsec.git"), what="replication")
    work = str(tmp_path / "work")
    git("clone", "-q", base, work)
    secondaries = sorted(n for n in cluster.nodes if n != md.primary)
    for k, delay in enumerate((0.0, 0.05, 0.15, 0.3)):
        name = secondaries[k % 2]
        with open(os.path.join(work, "big.bin"), "wb") as f:
            f.write(os.urandom(2 << 20))
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", "change %d" % k, cwd=work)
        p = subprocess.Popen(["git", "push", "-q", "ssh://gitaly/repo.git", "HEAD:refs/heads/main"], cwd=work,
                             env=push_env(cluster, "midsec.git"), stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        node = cluster.nodes[name]
        node.proc.send_signal(signal.SIGKILL)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, "push %d with %s killed after %.2f s: %s" % (k, name, delay, err)
        head = git("rev-parse", "HEAD", cwd=work).strip()
        restart(node, str(k))
        md, _ = wait_for(lambda: replicas_in_sync(cluster, "midsec.git"), timeout=20,
                         what="%s repaired after its restart" % name)
        for n in cluster.nodes:
            assert git("rev-parse", "refs/heads/main", cwd=replica(cluster, n, md.replica_path)).strip() == head


class Relay(threading.Thread):
    """A Unix socket between praefect and one gitaly, passing everything through unchanged
    until refuse(): then the node's side of praefect's connection gets an HTTP/2 GOAWAY (so
    praefect opens a new connection for its next call, while the node still counts as
    healthy), and the socket refuses every new connection (bound, not listening:
    ECONNREFUSED), as a node that just died does in the moment before praefect notices.

    praefect talks to a node over a backchannel: yamux frames (12-byte header: version, type,
    flags, stream id, length; only data frames, type 0, carry `length` bytes), praefect's own
    HTTP/2 connection on the first stream it opens (id 1). The node's side is passed on one
    whole yamux frame at a time, and the GOAWAY goes in as a yamux data frame of stream 1
    where an HTTP/2 frame of that stream ends."""

    def __init__(self, path, target):
        super().__init__(daemon=True)
        import selectors
        import socket
        self.socket_mod, self.path, self.target = socket, path, target
        self.sel = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.pairs = {}        # fd -> (sock, peer, node side state or None)
        self.goaway_due = False
        self.refusing = False
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        self.sel.register(self.listener, selectors.EVENT_READ)
        self.start()

    def refuse(self):
        with self.lock:
            self.goaway_due = True

    @staticmethod
    def _goaway():
        import struct
        # HTTP/2 GOAWAY (type 7, stream 0): last stream id 2^31-1 (nothing in flight refused), NO_ERROR
        h2 = struct.pack(">I", 8)[1:] + bytes([7, 0]) + struct.pack(">III", 0, 0x7fffffff, 0)
        return struct.pack(">BBHII", 0, 0, 0, 1, len(h2)) + h2

    def _node_side(self, st, peer):
        """Forward the whole yamux frames in st["buf"]; inject the GOAWAY when due and possible."""
        b = st["buf"]
        off = 0
        while len(b) - off >= 12:
            typ = b[off + 1]
            sid = int.from_bytes(b[off + 4:off + 8], "big")
            ln = int.from_bytes(b[off + 8:off + 12], "big")
            n = 12 + (ln if typ == 0 else 0)
            if len(b) - off < n:
                break
            if typ == 0 and sid == 1:
                # follow HTTP/2 frame boundaries through the stream's bytes
                for byte in b[off + 12:off + n]:
                    if st["skip"]:
                        st["skip"] -= 1
                        continue
                    st["hdr"].append(byte)
                    if len(st["hdr"]) == 9:
                        st["skip"] = int.from_bytes(st["hdr"][:3], "big")
                        st["hdr"].clear()
            off += n
        peer.sendall(bytes(b[:off]))
        del b[:off]
        if self.goaway_due and not st["sent"] and not st["skip"] and not st["hdr"]:
            st["sent"] = True
            peer.sendall(self._goaway())

    def run(self):
        import selectors
        socket = self.socket_mod
        while True:
            with self.lock:
                due = self.goaway_due
            if due and not self.refusing:
                self.refusing = True
                self.sel.unregister(self.listener)
                self.listener.close()
                os.unlink(self.path)
                self.dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.dead.bind(self.path)   # never listens: connect() is refused
            if due:
                for sock, peer, st in list(self.pairs.values()):
                    if st is not None and not st["sent"]:
                        self._node_side(st, peer)
            for key, _ in self.sel.select(0.05):
                s = key.fileobj
                if s is self.listener:
                    c, _ = s.accept()
                    n = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    n.connect(self.target)
                    self.pairs[c.fileno()] = (c, n, None)
                    self.pairs[n.fileno()] = (n, c, {"buf": bytearray(), "hdr": bytearray(), "skip": 0,
                                                     "sent": False})
                    self.sel.register(c, selectors.EVENT_READ)
                    self.sel.register(n, selectors.EVENT_READ)
                    continue
                if s.fileno() not in self.pairs:
                    continue
                sock, peer, st = self.pairs[s.fileno()]
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    for x in (sock, peer):
                        if x.fileno() in self.pairs:
                            del self.pairs[x.fileno()]
                            self.sel.unregister(x)
                            x.close()
                    continue
                try:
                    if st is None:
                        peer.sendall(data)
                    else:
                        st["buf"] += data
                        self._node_side(st, peer)
                except OSError:
                    pass


@pytest.mark.parametrize("call", ["push", "unary"])
def test_a_write_refused_by_its_primary_is_routed_again(tmp_path, call):
    """The primary's socket refuses the write (it died a moment ago) while praefect still counts
    it healthy: nothing of the call reached it, so praefect routes the call again, to the new
    primary, instead of failing it with "connection refused"."""
    import tempfile
    relays = {}
    short = tempfile.mkdtemp(prefix="relay")  # Unix socket paths are short

    def addresses(cluster):
        for name, node in cluster.nodes.items():
            relays[name] = Relay(os.path.join(short, name + ".sock"), node.socket)
        return {name: "unix:" + os.path.join(short, name + ".sock") for name in cluster.nodes}

    # health checks far apart: only the write itself finds the refusing socket
    cluster = Cluster(tmp_path, addresses=addresses,
                      extra='\n[failover]\nhealth_check_interval = "60s"\n')
    try:
        create_repo(cluster, "refused.git")
        src = make_bare_repo(str(tmp_path / "src.git"), branches=("main",))
        push(cluster, src, "refused.git", "main")
        old = cluster.praefect.metadata("refused.git").primary
        head = git("rev-parse", "main", cwd=src).strip()
        relays[old].refuse()
        wait_for(lambda: relays[old].refusing, what="the relay refusing")
        time.sleep(0.2)  # the GOAWAY reached praefect
        if call == "push":
            r = subprocess.run(["git", "push", "-q", "ssh://gitaly/repo.git", "main:refs/heads/rerouted"], cwd=src,
                               env=push_env(cluster, "refused.git"), capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
        else:
            from gitaly_itest import pb
            cluster.praefect.stub("RepositoryService").WriteRef(
                pb("repository").WriteRefRequest(repository=cluster.praefect.repo("refused.git"),
                                                 ref=b"refs/heads/rerouted", revision=head.encode()), timeout=20)
        log = cluster.praefect.log()
        assert "refused the call before receiving any of it" in log
        md = cluster.praefect.metadata("refused.git")
        assert md.primary != old
        new_replica = replica(cluster, md.primary, md.replica_path)
        assert git("rev-parse", "refs/heads/rerouted", cwd=new_replica).strip() == head
    finally:
        cluster.stop()



def _push_with_primary_killed_in_pre_receive(cluster, tmp_path, rel, meanwhile=None, http=False):
    """A push of refs/heads/inflight whose primary is SIGKILLed while its custom pre-receive hook
    runs (installed on the primary's replica only, it stalls that ref's pushes): no vote but hook
    synchronisation can have been committed, nothing is applied anywhere. `meanwhile(md, base)`
    runs while it is stalled; `http`: through smart HTTP (PostReceivePack) rather than SSH.
    Returns (exit status, stderr, metadata before, pushed sha)."""
    create_repo(cluster, rel)
    base = make_bare_repo(str(tmp_path / "base.git"), branches=("main",), files={"f.txt": "0\n"})
    push(cluster, base, rel, "main")
    md, _ = wait_for(lambda: replicas_in_sync(cluster, rel), what="replication")
    marker = str(tmp_path / "in-pre-receive")
    hooks = os.path.join(replica(cluster, md.primary, md.replica_path), "custom_hooks")
    os.makedirs(hooks)
    with open(os.path.join(hooks, "pre-receive"), "w") as f:
        f.write("#!/bin/sh\ngrep -q ' refs/heads/inflight$' || exit 0\ntouch '%s'\nexec sleep 30\n" % marker)
    os.chmod(os.path.join(hooks, "pre-receive"), 0o755)
    work = str(tmp_path / "work")
    git("clone", "-q", base, work)
    with open(os.path.join(work, "f.txt"), "w") as f:
        f.write("1\n")
    git("commit", "-q", "-a", "-m", "in flight", cwd=work)
    sha = git("rev-parse", "HEAD", cwd=work).strip()
    front = SmartHTTP(cluster.praefect) if http else None
    url, env = (front.url + "/" + rel, None) if http else ("ssh://gitaly/repo.git", push_env(cluster, rel))
    try:
        p = subprocess.Popen(["git", "push", "-q", url, "HEAD:refs/heads/inflight"], cwd=work, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: os.path.exists(marker), timeout=30, what="the primary's pre-receive hook running")
        if meanwhile:
            meanwhile(md, base)
        node = cluster.nodes[md.primary]
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait()
        out, err = p.communicate(timeout=60)
    finally:
        if front:
            front.close()
    return p.returncode, err, md, sha


@pytest.mark.parametrize("concurrent,http", [(False, False), (True, False), (False, True)],
                         ids=["same-advertisement", "another-push-meanwhile", "smart-http"])
def test_a_push_whose_primary_dies_before_anything_was_applied_is_resumed(cluster, tmp_path, concurrent, http):
    """The primary dies in its pre-receive hook: nothing is applied anywhere, so praefect resumes
    the push on the next primary (coordinator/resume.c) and the client sees it acknowledged. With
    another push acknowledged meanwhile, the next primary advertises one more ref than the client
    was shown, with the same capabilities: resumed too (git checks the commands). Through smart
    HTTP (PostReceivePack) nothing reached the client yet: resumed without a gate."""
    def other_push(md, base):
        push(cluster, base, "resume.git", "main:refs/heads/other")

    rc, err, md, sha = _push_with_primary_killed_in_pre_receive(cluster, tmp_path, "resume.git",
                                                                other_push if concurrent else None, http)
    assert rc == 0, err
    log = cluster.praefect.log()
    assert "resuming the call on the next primary" in log
    if not http:
        assert ("other refs with the same capabilities" if concurrent else "is the one the client has") in log
    after = cluster.praefect.metadata("resume.git")
    assert after.primary != md.primary
    for r in after.replicas:
        if r.storage != md.primary:
            assert r.generation == after.generation
            assert git("rev-parse", "refs/heads/inflight",
                       cwd=replica(cluster, r.storage, md.replica_path)).strip() == sha
    restart(cluster.nodes[md.primary], "killed")
    md, _ = wait_for(lambda: replicas_in_sync(cluster, "resume.git"), timeout=30, what="the old primary repaired")
    assert git("rev-parse", "refs/heads/inflight", cwd=replica(cluster, md.primary, md.replica_path)).strip() == sha


def test_a_push_is_not_resumed_on_a_primary_with_other_capabilities(cluster, tmp_path):
    """The same kill, but the secondaries do not advertise `atomic` (configured behind praefect's
    back): the client chose its protocol from the dead primary's capabilities, so the push fails
    as it did before resuming existed, and nothing of it lands anywhere."""
    def no_atomic(md, base):
        for r in md.replicas:
            if r.storage != md.primary:
                git("config", "receive.advertiseAtomic", "false", cwd=replica(cluster, r.storage, md.replica_path))

    rc, err, md, sha = _push_with_primary_killed_in_pre_receive(cluster, tmp_path, "noresume.git", no_atomic)
    assert rc != 0
    assert "Unavailable" in err and "lost" in err, err
    assert "its capabilities differ from the ones the client has" in cluster.praefect.log()
    for r in md.replicas:
        if r.storage != md.primary:
            path = replica(cluster, r.storage, md.replica_path)
            assert subprocess.run(["git", "rev-parse", "-q", "--verify", "refs/heads/inflight"], cwd=path,
                                  capture_output=True).returncode != 0
