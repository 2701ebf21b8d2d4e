#!/usr/bin/python3
"""Fault-injection harness: three gitaly nodes behind praefect, writers pushing with
real git over gitaly-ssh, one fault repeated for a bounded number of rounds, then
checks against the availability goals. Not part of the test suite; see README.md.

    t/fault/run.py SCENARIO [--rounds N] [--seconds S] [--writers W] [--repos R]

SCENARIO: primary-kill, primary-stop, praefect-kill, corrupt, overload.
Exit status: 0 when every goal holds, 1 when one is missed, 2 on a harness error.
"""
import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ITEST = os.path.join(HERE, "..", "integration")
sys.path.insert(0, os.path.join(ITEST, "praefect"))
sys.path.insert(0, os.path.join(ITEST, "gitaly"))

from praefect_itest import Cluster  # noqa: E402
from gitaly_itest import BUILD, git, make_bare_repo  # noqa: E402
from test_praefect import create_repo, gitaly_ssh_env  # noqa: E402

SCENARIOS = ("primary-kill", "primary-stop", "praefect-kill", "corrupt", "overload")

# point 4 of the issue
GOAL_WRITABLE_S = 1.0
GOAL_ACKED = 0.95
GOAL_SYNC_S = 10.0


def log(msg):
    print("[%6.1f] %s" % (time.time() - T0, msg), flush=True)


T0 = time.time()


# --- the cluster -------------------------------------------------------------

def rotate(path):
    """Move a daemon's log aside so that its start() waits for the new process's lines."""
    n = 1
    while os.path.exists("%s.%d" % (path, n)):
        n += 1
    if os.path.exists(path):
        os.rename(path, "%s.%d" % (path, n))


def restart_node(node):
    if node.proc and node.proc.poll() is None:
        return
    if node.proc:
        node.proc.wait()
        node._log.close()
    rotate(node.log_path)
    node.start()


def restart_praefect(pf):
    if pf.proc and pf.proc.poll() is None:
        return
    rotate(pf.log_path)
    pf.start()


def replica_dir(cluster, storage, replica_path):
    return os.path.join(cluster.nodes[storage].storages[storage], replica_path)


def disk_refs(path):
    r = subprocess.run(["git", "-C", path, "for-each-ref", "--format=%(objectname) %(refname)"],
                       capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else "error: " + r.stderr.strip()


def metadata(cluster, rel):
    return cluster.praefect.metadata(rel)


# --- writers -----------------------------------------------------------------

class Writers:
    """W threads, each pushing its own branch w<i> to every repository in turn."""

    def __init__(self, cluster, work, base, repos, n):
        self.cluster, self.work, self.base, self.repos, self.n = cluster, work, base, repos, n
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.attempts = []   # (repo, branch, sha, start, end, ok, error line)
        self.threads = []

    def _clone(self, i, rel):
        d = os.path.join(self.work, "w%d-%s" % (i, rel.replace("/", "_")))
        if not os.path.isdir(d):
            git("clone", "-q", self.base, d)
            git("checkout", "-q", "-b", "w%d" % i, cwd=d)
        return d

    def push_once(self, i, rel, k):
        d = self._clone(i, rel)
        with open(os.path.join(d, "w%d.txt" % i), "w") as f:
            f.write("%d %d %f\n" % (i, k, time.time()))
        git("add", "-A", cwd=d)
        git("commit", "-q", "-m", "w%d change %d" % (i, k), cwd=d)
        sha = git("rev-parse", "HEAD", cwd=d).strip()
        env = dict(os.environ, **gitaly_ssh_env(self.cluster.praefect, rel, "receive-pack"))
        start = time.time()
        try:
            r = subprocess.run(["git", "push", "-q", "-f", "ssh://gitaly/repo.git", "HEAD:refs/heads/w%d" % i],
                               cwd=d, env=env, capture_output=True, text=True, timeout=60)
            ok, err = r.returncode == 0, r.stderr
        except subprocess.TimeoutExpired:
            ok, err = False, "push timed out after 60 s"
        end = time.time()
        line = ""
        if not ok:
            lines = [ln for ln in err.splitlines() if ln.strip()]
            line = lines[0][:160] if lines else "exit status without message"
        with self.lock:
            self.attempts.append((rel, "w%d" % i, sha, start, end, ok, line))
        return ok

    def _run(self, i):
        k = 0
        while not self.stop.is_set():
            rel = self.repos[(i + k) % len(self.repos)]
            k += 1
            try:
                if not self.push_once(i, rel, k):
                    time.sleep(0.2)   # as a client would before retrying: failures are not free
            except Exception as e:  # noqa: BLE001 - a local git failure must not end the run
                with self.lock:
                    self.attempts.append((rel, "w%d" % i, None, time.time(), time.time(), False, "harness: %s" % e))
                time.sleep(0.1)

    def start(self):
        for i in range(self.n):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(90)


# --- faults ------------------------------------------------------------------

def busiest_primary(cluster, repos, k):
    return metadata(cluster, repos[k % len(repos)]).primary


def fault_primary_kill(cluster, repos, k, args, faults):
    name = busiest_primary(cluster, repos, k)
    node = cluster.nodes[name]
    log("round %d: SIGKILL %s" % (k + 1, name))
    faults.append(time.time())
    node.proc.send_signal(signal.SIGKILL)
    time.sleep(args.down)
    restart_node(node)


def fault_primary_stop(cluster, repos, k, args, faults):
    name = busiest_primary(cluster, repos, k)
    node = cluster.nodes[name]
    log("round %d: SIGSTOP %s for %.1f s" % (k + 1, name, args.stop))
    faults.append(time.time())
    node.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(args.stop)
    finally:
        node.proc.send_signal(signal.SIGCONT)


def fault_praefect_kill(cluster, repos, k, args, faults):
    log("round %d: SIGKILL praefect" % (k + 1))
    faults.append(time.time())
    cluster.praefect.proc.send_signal(signal.SIGKILL)
    cluster.praefect.proc.wait()
    cluster.praefect._log.close()
    cluster.praefect.proc = None
    time.sleep(args.down)
    restart_praefect(cluster.praefect)


class Hogs:
    """CPU hogs pinned with taskset; each dies on its own after `limit` seconds."""

    def __init__(self, n, limit):
        ncpu = os.cpu_count() or 1
        self.procs = [subprocess.Popen(["timeout", str(int(limit) + 1), "taskset", "-c", str(i % ncpu),
                                        "sh", "-c", "while :; do :; done"], start_new_session=True)
                      for i in range(n)]

    def stop(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def fault_overload(cluster, repos, k, args, faults):
    name = busiest_primary(cluster, repos, k)
    node = cluster.nodes[name]
    log("round %d: overloaded, SIGSTOP %s for %.1f s" % (k + 1, name, args.stall))
    faults.append(time.time())
    node.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(args.stall)
    finally:
        node.proc.send_signal(signal.SIGCONT)


def burst(writers, n, rel):
    """n pushes to `rel` started at once, each on its own branch b<i>: how many were acknowledged."""
    results = []

    def one(i):
        d = os.path.join(writers.work, "burst-%d" % i)
        git("clone", "-q", writers.base, d)
        git("checkout", "-q", "-b", "b%d" % i, cwd=d)
        with open(os.path.join(d, "b.txt"), "w") as f:
            f.write("%d\n" % i)
        git("add", "-A", cwd=d)
        git("commit", "-q", "-m", "burst %d" % i, cwd=d)
        sha = git("rev-parse", "HEAD", cwd=d).strip()
        env = dict(os.environ, **gitaly_ssh_env(writers.cluster.praefect, rel, "receive-pack"))
        start = time.time()
        r = subprocess.run(["git", "push", "-q", "ssh://gitaly/repo.git", "HEAD:refs/heads/b%d" % i], cwd=d,
                           env=env, capture_output=True, text=True, timeout=120)
        err = [ln for ln in r.stderr.splitlines() if ln.strip()]
        with writers.lock:
            writers.attempts.append((rel, "b%d" % i, sha, start, time.time(), r.returncode == 0,
                                     err[0][:160] if r.returncode and err else ""))
        results.append(r.returncode == 0)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(150)
    return sum(results)


# --- corrupt -----------------------------------------------------------------

def corrupt_replicas(cluster, rel):
    """Flip 96 bytes of a pack on one replica, delete one loose blob on another."""
    md = metadata(cluster, rel)
    a, b = [r.storage for r in md.replicas][:2]
    pa = replica_dir(cluster, a, md.replica_path)
    packdir = os.path.join(pa, "objects", "pack")
    packs = [p for p in os.listdir(packdir) if p.endswith(".pack")] if os.path.isdir(packdir) else []
    if not packs:
        # behind praefect's back, as a disk would: the refs do not change
        subprocess.run(["git", "-C", pa, "repack", "-adq"], check=True)
        packs = [p for p in os.listdir(packdir) if p.endswith(".pack")]
    pack = os.path.join(packdir, max(packs, key=lambda p: os.path.getsize(os.path.join(packdir, p))))
    size = os.path.getsize(pack)
    off = max(12, size // 2 - 48)
    with open(pack, "r+b") as f:
        f.seek(off)
        data = f.read(96)
        f.seek(off)
        f.write(bytes(x ^ 0xFF for x in data))
    pb_ = replica_dir(cluster, b, md.replica_path)
    blobs = subprocess.run(["git", "-C", pb_, "cat-file", "--batch-all-objects", "--batch-check=%(objecttype) %(objectname)"],
                           capture_output=True, text=True).stdout.split("\n")
    removed = None
    for line in blobs:
        if line.startswith("blob "):
            sha = line.split()[1]
            p = os.path.join(pb_, "objects", sha[:2], sha[2:])
            if os.path.exists(p):
                os.chmod(p, 0o644)
                os.unlink(p)
                removed = sha
                break
    return "%s: 96 bytes flipped in %s; %s: loose blob %s deleted" % (
        a, os.path.basename(pack), b, removed or "(none found: no loose blob)")


def clones(cluster, work, rel, n):
    failed = []
    for i in range(n):
        d = os.path.join(work, "clone-%s-%d" % (rel.replace("/", "_"), i))
        env = dict(os.environ, **gitaly_ssh_env(cluster.praefect, rel, "upload-pack"))
        r = subprocess.run(["git", "clone", "-q", "--bare", "ssh://gitaly/repo.git", d], env=env,
                           capture_output=True, text=True, timeout=120)
        if r.returncode == 0:
            r = subprocess.run(["git", "-C", d, "fsck", "--no-dangling"], capture_output=True, text=True)
        if r.returncode != 0:
            lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
            failed.append(lines[-1][:160] if lines else "failed")
        shutil.rmtree(d, ignore_errors=True)
    return failed


# --- checks ------------------------------------------------------------------

def sync_state(cluster, repos):
    """None when every replica of every repository is at the repository's generation with the same
    refs on disk; otherwise a description of the first difference."""
    for rel in repos:
        try:
            md = metadata(cluster, rel)
        except Exception as e:  # noqa: BLE001 - praefect may be restarting
            return "%s: metadata: %s" % (rel, e.__class__.__name__)
        gens = {r.storage: r.generation for r in md.replicas}
        if len(gens) != len(cluster.nodes) or any(g != md.generation for g in gens.values()):
            return "%s: generations %s, repository at %d" % (rel, gens, md.generation)
        refs = {s: disk_refs(replica_dir(cluster, s, md.replica_path)) for s in gens}
        if len(set(refs.values())) != 1:
            return "%s: refs differ on disk at equal generation %d" % (rel, md.generation)
    return None


def equal_generation_divergence(cluster, repos):
    """Replicas at the repository generation whose refs differ from the primary's."""
    out = []
    for rel in repos:
        md = metadata(cluster, rel)
        want = disk_refs(replica_dir(cluster, md.primary, md.replica_path))
        for r in md.replicas:
            if r.generation == md.generation and r.storage != md.primary and \
                    disk_refs(replica_dir(cluster, r.storage, md.replica_path)) != want:
                out.append("%s on %s (generation %d)" % (rel, r.storage, r.generation))
    return out


def missing_acked(cluster, repos, attempts):
    """Acknowledged pushes (branch, sha) that an up-to-date replica does not have on that branch."""
    missing = []
    acked = {}
    for rel, branch, sha, _s, _e, ok, _l in attempts:
        if ok and sha:
            acked.setdefault((rel, branch), []).append(sha)
    for rel in repos:
        md = metadata(cluster, rel)
        for r in md.replicas:
            if r.generation != md.generation:
                continue
            path = replica_dir(cluster, r.storage, md.replica_path)
            for (rr, branch), shas in acked.items():
                if rr != rel:
                    continue
                have = set(subprocess.run(["git", "-C", path, "rev-list", "refs/heads/" + branch],
                                          capture_output=True, text=True).stdout.split())
                missing += ["%s %s %s on %s" % (rel, branch, s[:12], r.storage) for s in shas if s not in have]
    return missing


def fsck_failures(cluster, repos):
    out = []
    for rel in repos:
        md = metadata(cluster, rel)
        for r in md.replicas:
            path = replica_dir(cluster, r.storage, md.replica_path)
            # a replica being rebuilt may be missing for a moment: that is not repaired yet either
            if not os.path.isdir(path) or subprocess.run(["git", "-C", path, "fsck", "--no-dangling"],
                                                         capture_output=True).returncode:
                out.append("%s on %s" % (rel, r.storage))
    return out


def lock_files(cluster):
    out = []
    for name, node in cluster.nodes.items():
        for root in node.storages.values():
            r = subprocess.run(["find", root, "-name", "*.lock"], capture_output=True, text=True)
            out += [p[len(root) + 1:] + " (" + name + ")" for p in r.stdout.split()]
    return out


def queue_states(db):
    try:
        c = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=5)
        rows = c.execute("SELECT state, count(*) FROM replication_queue GROUP BY state").fetchall()
        c.close()
        return ", ".join("%s %d" % r for r in rows) or "empty"
    except sqlite3.Error as e:
        return "unreadable: %s" % e


AUDIT_SQL = """
CREATE TABLE IF NOT EXISTS fault_audit_jobs(t INTEGER, ev TEXT, id INTEGER, state TEXT, src TEXT, tgt TEXT,
    path TEXT, attempt INTEGER);
CREATE TABLE IF NOT EXISTS fault_audit_gen(t INTEGER, repo INTEGER, storage TEXT, old INTEGER, new INTEGER);
CREATE TRIGGER IF NOT EXISTS fault_aj_i AFTER INSERT ON replication_queue BEGIN INSERT INTO fault_audit_jobs
    VALUES (%(now)s, 'insert', NEW.id, NEW.state, NEW.source_node_storage, NEW.target_node_storage,
            NEW.relative_path, NEW.attempt); END;
CREATE TRIGGER IF NOT EXISTS fault_aj_u AFTER UPDATE ON replication_queue BEGIN INSERT INTO fault_audit_jobs
    VALUES (%(now)s, 'update', NEW.id, NEW.state, NEW.source_node_storage, NEW.target_node_storage,
            NEW.relative_path, NEW.attempt); END;
CREATE TRIGGER IF NOT EXISTS fault_aj_d AFTER DELETE ON replication_queue BEGIN INSERT INTO fault_audit_jobs
    VALUES (%(now)s, 'delete', OLD.id, OLD.state, OLD.source_node_storage, OLD.target_node_storage,
            OLD.relative_path, OLD.attempt); END;
CREATE TRIGGER IF NOT EXISTS fault_ag_u AFTER UPDATE OF generation ON storage_repositories BEGIN
    INSERT INTO fault_audit_gen VALUES (%(now)s, NEW.repository_id, NEW.storage, OLD.generation, NEW.generation); END;
""" % {"now": "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"}


def install_audit(db):
    """Triggers in the scratch database that record every job and generation change (--audit)."""
    c = sqlite3.connect(db, timeout=10)
    c.executescript(AUDIT_SQL)
    c.commit()
    c.close()


def audit_trail(cluster, repos):
    """The last job events of every replica behind its repository's generation."""
    lines = []
    c = sqlite3.connect("file:%s?mode=ro" % cluster.praefect.db, uri=True, timeout=5)
    try:
        for rel in repos:
            md = metadata(cluster, rel)
            for r in md.replicas:
                if r.generation == md.generation:
                    continue
                lines.append("%s on %s: generation %d, repository at %d; its last job events:" % (
                    rel, r.storage, r.generation, md.generation))
                rows = c.execute("SELECT t, ev, id, state, src, attempt FROM fault_audit_jobs WHERE path = ? AND tgt = ?"
                                 " ORDER BY t DESC, rowid DESC LIMIT 12", (rel, r.storage)).fetchall()
                for t, ev, jid, state, src, attempt in reversed(rows):
                    lines.append("  %s.%03d %-6s job %d from %s: %s, attempts left %d" % (
                        time.strftime("%H:%M:%S", time.gmtime(t / 1000)), t % 1000, ev, jid, src, state, attempt))
    finally:
        c.close()
    return lines


def dataloss(cluster):
    r = subprocess.run([os.path.join(BUILD, "praefect", "praefect"), "-config", cluster.praefect.config_path,
                        "dataloss", "-partially-unavailable"], capture_output=True, text=True)
    return (r.stdout + r.stderr).strip()


def refusal_windows(attempts, faults, repos):
    """Per fault: (refused, first): the longest any repository refused writes after it (until the
    end of its first acknowledged push started after the fault, counted only when a push to it
    failed meanwhile), and the longest wait for that first acknowledged push whatever happened."""
    out = []
    for tf in faults:
        refused = first = 0.0
        for rel in repos:
            ends = [e for r, _b, _sha, s, e, ok, _l in attempts if r == rel and ok and s >= tf]
            ack = min(ends) if ends else float("inf")
            failed = any(r == rel and not ok and e >= tf and s < ack for r, _b, _sha, s, e, ok, _l in attempts)
            first = max(first, ack - tf)
            if failed:
                refused = max(refused, ack - tf)
        out.append((refused, first))
    return out


def longest_refusal_run(attempts, repos):
    """The longest stretch, per repository, from a failed push to the next acknowledged one."""
    best, where = 0.0, ""
    for rel in repos:
        first_fail = None
        for _r, _b, _sha, s, e, ok, _l in sorted((a for a in attempts if a[0] == rel), key=lambda a: a[4]):
            if not ok and first_fail is None:
                first_fail = s
            elif ok and first_fail is not None:
                if e - first_fail > best:
                    best, where = e - first_fail, rel
                first_fail = None
        if first_fail is not None:
            # still refusing when the writers stopped: count up to its last attempt
            last = max(a[4] for a in attempts if a[0] == rel)
            if last - first_fail > best:
                best, where = last - first_fail, rel + ", still refusing at the end"
    return best, where


# --- main --------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=SCENARIOS)
    ap.add_argument("--rounds", type=int, default=5, help="faults to inject (default 5)")
    ap.add_argument("--seconds", type=float, default=60, help="stop injecting after this long (default 60)")
    ap.add_argument("--period", type=float, default=3.0, help="seconds between faults (default 3)")
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--repos", type=int, default=3)
    ap.add_argument("--down", type=float, default=0.5, help="kill scenarios: seconds before the restart")
    ap.add_argument("--stop", type=float, default=5.0, help="primary-stop: SIGSTOP length (default 5)")
    ap.add_argument("--stall", type=float, default=1.5, help="overload: SIGSTOP length (default 1.5)")
    ap.add_argument("--hogs", type=int, default=0, help="overload: busy loops (default 3 per CPU)")
    ap.add_argument("--burst", type=int, default=20, help="overload: concurrent pushes at the end (default 20)")
    ap.add_argument("--clones", type=int, default=12, help="corrupt: clones through praefect (default 12)")
    ap.add_argument("--settle", type=float, default=30, help="seconds to wait for every replica to be in sync")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--audit", action="store_true",
                    help="record job and generation changes with triggers in the scratch database and print "
                         "the job trail of replicas left behind")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="fault-")
    log("scratch directory %s, build %s" % (tmp, BUILD))
    cluster = writers = None
    rc = 2
    try:
        cluster = Cluster(tmp)
        if args.audit:
            install_audit(cluster.praefect.db)
        repos = ["fault-%02d.git" % i for i in range(args.repos)]
        base = make_bare_repo(os.path.join(tmp, "base.git"), branches=("main",),
                              files={"f%03d.txt" % i: "file %d\n" % i * 50 for i in range(120)})
        for rel in repos:
            create_repo(cluster, rel)
            git("push", "-q", "ssh://gitaly/repo.git", "main", cwd=base,
                env=gitaly_ssh_env(cluster.praefect, rel, "receive-pack"))
        work = os.path.join(tmp, "work")
        os.makedirs(work)
        writers = Writers(cluster, work, base, repos, 0 if args.scenario == "corrupt" else args.writers)
        rc = run(args, cluster, repos, writers, work)
    finally:
        if writers:
            writers.join()
        if cluster:
            for n in cluster.nodes.values():
                if n.proc and n.proc.poll() is None:
                    n.proc.send_signal(signal.SIGCONT)
            try:
                cluster.stop()
            except Exception as e:  # noqa: BLE001 - a sanitizer report is worth printing, not a traceback
                print("stopping the cluster: %s" % e)
                rc = max(rc, 1)
        if args.keep:
            print("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return rc


def run(args, cluster, repos, writers, work):
    faults = []
    extra = {}
    inject = {"primary-kill": fault_primary_kill, "primary-stop": fault_primary_stop,
              "praefect-kill": fault_praefect_kill, "overload": fault_overload}.get(args.scenario)
    hogs = None
    if args.scenario == "corrupt":
        hit = repos[:max(1, min(args.rounds, len(repos)))]
        for rel in hit:
            writers.push_once(0, rel, 1)      # a small push: its objects stay loose
            extra.setdefault("corrupted", []).append(corrupt_replicas(cluster, rel))
        per = max(1, args.clones // len(hit))
        # the goal: a corrupt replica may fail the first clone of its repository (its ref
        # advertisement was already sent), never a later one
        failed = {rel: clones(cluster, work, rel, per) for rel in hit}
        extra["clones"] = (per * len(hit), failed)
        sums = {}
        for rel in repos:
            md = metadata(cluster, rel)
            try:
                sums[rel] = "yes" if len({cluster.checksum(r.storage, md.replica_path) for r in md.replicas}) == 1 \
                    else "no"
            except Exception as e:  # noqa: BLE001 - a replica praefect is rebuilding answers NOT_FOUND
                sums[rel] = "unknown (%s)" % e.__class__.__name__
        extra["checksums equal"] = ", ".join("%s %s" % (r, v) for r, v in sums.items())
        faults.append(time.time())
    else:
        writers.start()
        time.sleep(2)
        if args.scenario == "overload":
            n = args.hogs or 3 * (os.cpu_count() or 1)
            hogs = Hogs(n, args.rounds * (args.period + args.stall) + 60)
            log("%d busy loops started" % n)
        deadline = time.time() + args.seconds
        try:
            for k in range(args.rounds):
                if time.time() > deadline:
                    break
                t = time.time()
                inject(cluster, repos, k, args, faults)
                if k + 1 < args.rounds:
                    time.sleep(max(0.0, args.period - (time.time() - t)))
            if args.scenario == "overload" and args.burst:
                ok = burst(writers, args.burst, repos[0])
                extra["burst"] = "%d of %d concurrent pushes acknowledged" % (ok, args.burst)
        finally:
            if hogs:
                hogs.stop()
        quiet = time.time()
        time.sleep(2)       # writes go on for a moment after the last fault
        writers.join()
    if args.scenario == "corrupt":
        quiet = time.time()
    last = quiet

    log("waiting up to %.0f s for every replica to be in sync" % args.settle)
    in_sync_after, why = None, None
    while True:
        why = sync_state(cluster, repos)
        if why is None and args.scenario == "corrupt":
            # in sync means repaired here: generations never moved
            bad = fsck_failures(cluster, repos)
            why = ("replicas failing git fsck: " + ", ".join(bad[:4])) if bad else None
        if why is None:
            in_sync_after = time.time() - last
            break
        if time.time() - last >= args.settle:
            break
        time.sleep(0.25)
    if in_sync_after is None:
        why = sync_state(cluster, repos)
    return report(args, cluster, repos, writers, faults, in_sync_after, why, extra)


def report(args, cluster, repos, writers, faults, in_sync_after, why, extra):
    att = writers.attempts
    acked = sum(1 for a in att if a[5])
    failed = len(att) - acked
    windows = refusal_windows(att, faults, repos) if att else []
    worst = max((w[0] for w in windows), default=0.0)
    slowest = max((w[1] for w in windows), default=0.0)
    run_len, run_repo = longest_refusal_run(att, repos)
    missing = missing_acked(cluster, repos, att)
    locks = lock_files(cluster)
    diverged = equal_generation_divergence(cluster, repos)
    errors = {}
    for a in att:
        if not a[5]:
            errors[a[6]] = errors.get(a[6], 0) + 1

    rows, misses = [], []

    def row(name, value, ok=None):
        rows.append((name, value, "" if ok is None else ("ok" if ok else "MISSED")))
        if ok is False:
            misses.append(name)

    row("scenario", "%s, %d fault(s), %d writers, %d repositories" % (args.scenario, len(faults),
                                                                      writers.n, len(repos)))
    if att:
        ratio = acked / len(att)
        row("pushes acked / failed", "%d / %d (%.0f%% acked)" % (acked, failed, 100 * ratio), ratio >= GOAL_ACKED)
        if args.scenario != "corrupt":
            row("longest refusal of writes after a fault", "%.2f s (per fault: %s)" % (
                worst, " ".join("%.1f" % w[0] for w in windows)), worst <= GOAL_WRITABLE_S)
            row("slowest first acknowledged push after a fault", "%.2f s" % slowest)
            row("longest run of refused writes", "%.2f s%s" % (run_len, " (%s)" % run_repo if run_repo else ""))
    row("every replica in sync after the last fault ended",
        "after %.2f s" % in_sync_after if in_sync_after is not None else "NOT after %.0f s: %s" % (args.settle, why),
        in_sync_after is not None and in_sync_after <= GOAL_SYNC_S)
    row("acked pushes missing from an up-to-date replica", "%d%s" % (len(missing), (": " + "; ".join(missing[:3]))
                                                                    if missing else ""), not missing)
    row("replicas at equal generation with other refs", "%d%s" % (len(diverged), (": " + "; ".join(diverged[:3]))
                                                                  if diverged else ""), not diverged)
    row("lock files left in the storages", "%d%s" % (len(locks), (": " + "; ".join(locks[:4])) if locks else ""),
        not locks)
    if "clones" in extra:
        n, by_repo = extra["clones"]
        bad = [e for errs in by_repo.values() for e in errs]
        later = sum(max(0, len(errs) - 1) for errs in by_repo.values())
        row("clones through praefect failed", "%d of %d, %d after the first of their repository%s" % (
            len(bad), n, later, (": " + bad[0]) if bad else ""), later == 0)
        bad = fsck_failures(cluster, repos)
        row("replicas failing git fsck after the wait", "%d%s" % (len(bad), (": " + ", ".join(bad[:4])) if bad else ""),
            not bad)
        row("corruption injected", "%s (and %d more)" % (extra["corrupted"][0], len(extra["corrupted"]) - 1))
        row("CalculateChecksum equal on every replica", extra["checksums equal"])
    if "burst" in extra:
        row("burst under load", extra["burst"])
    row("replication queue", queue_states(cluster.praefect.db))
    dl = dataloss(cluster).splitlines()
    row("praefect dataloss -partially-unavailable", " | ".join(dl[1:4]) + (" ..." if len(dl) > 4 else ""))

    width = max(len(r[0]) for r in rows)
    print()
    for name, value, verdict in rows:
        print("%-*s  %-6s %s" % (width, name, verdict, value))
    if args.audit and in_sync_after is None:
        print("\n" + "\n".join(audit_trail(cluster, repos)))
    if errors:
        print("\nfailed pushes by first line of stderr:")
        for line, n in sorted(errors.items(), key=lambda kv: -kv[1])[:6]:
            print("  %4d  %s" % (n, line))
    print("\n%s" % ("every goal met" if not misses else "goals missed: " + ", ".join(misses)))
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
