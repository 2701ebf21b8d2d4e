"""Slow is not dead: a node stopped or starved for a while fails no push in flight, new calls
go to the other nodes meanwhile, and a stalled secondary does not hold up acknowledgements.
See docs/technical/praefect-health.md."""
import os
import signal
import subprocess
import time

import pytest

from praefect_itest import wait_for
from gitaly_itest import git, make_bare_repo
from test_praefect import create_repo, gitaly_ssh_env, push, replicas_in_sync
from test_faults import Writer

pytestmark = pytest.mark.xdist_group("timing")


def healthy(cluster, rel, storage):
    return {r.storage: r.healthy for r in cluster.praefect.metadata(rel).replicas}[storage]


def ls_remote(cluster, rel):
    start = time.time()
    r = subprocess.run(["git", "ls-remote", "ssh://gitaly/repo.git"], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, **gitaly_ssh_env(cluster.praefect, rel, "upload-pack")))
    return r.returncode, time.time() - start, r.stderr


def test_nodes_stopped_again_and_again_fail_no_push_and_reads_go_elsewhere(cluster, tmp_path):
    create_repo(cluster, "starve.git")
    base = make_bare_repo(str(tmp_path / "base.git"), branches=("main",), files={"f.txt": "0\n"})
    push(cluster, base, "starve.git", "main")
    wait_for(lambda: replicas_in_sync(cluster, "starve.git"), what="replication")
    writers = [Writer(cluster, base, str(tmp_path / ("w%d" % i)), "starve.git", "w%d" % i) for i in range(3)]
    for w in writers:
        w.start()
    reads = []
    try:
        time.sleep(1)
        # the primary twice, then each secondary: stopped 1.5 s (longer if praefect is slow to
        # notice), as a starved or swapping machine would be, with pushes in flight
        order = [cluster.praefect.metadata("starve.git").primary] * 2
        order += sorted(n for n in cluster.nodes if n != order[0])
        for name in order:
            proc = cluster.nodes[name].proc
            stopped = time.time()
            proc.send_signal(signal.SIGSTOP)
            try:
                wait_for(lambda: not healthy(cluster, "starve.git", name), timeout=5, what="%s unhealthy" % name)
                reads.append((name,) + ls_remote(cluster, "starve.git"))
                time.sleep(max(0.0, 1.5 - (time.time() - stopped)))
            finally:
                proc.send_signal(signal.SIGCONT)
            wait_for(lambda: healthy(cluster, "starve.git", name), timeout=10, what="%s healthy" % name)
            # a secondary cancelled while stopped is repaired before the next node stops: this
            # is about one slow node at a time (t/fault/run.py primary-stop runs them back to back)
            wait_for(lambda: replicas_in_sync(cluster, "starve.git"), timeout=30, what="replicas in sync")
            time.sleep(1)
    finally:
        for w in writers:
            w.stop.set()
        for w in writers:
            w.join(60)
    attempts = [a for w in writers for a in w.attempts]
    failed = [a for a in attempts if not a[2]]
    errors = [e for w in writers for e in w.errors]
    assert len(attempts) >= 10 and failed == [], "%d of %d pushes failed: %s" % (len(failed), len(attempts), errors[:3])
    # a read while the node was stopped went to another replica: it answered at once
    for name, rc, took, err in reads:
        assert rc == 0 and took < 5, "ls-remote while %s was stopped: exit %d after %.1f s: %s" % (
            name, rc, took, err)


def test_a_stopped_secondary_does_not_hold_up_acknowledgements(cluster, tmp_path):
    create_repo(cluster, "ack.git")
    src = make_bare_repo(str(tmp_path / "src.git"), branches=("main",), files={"f.txt": "0\n"})
    push(cluster, src, "ack.git", "main")
    md, _ = wait_for(lambda: replicas_in_sync(cluster, "ack.git"), what="replication")
    secondary = sorted(n for n in cluster.nodes if n != md.primary)[0]
    work = str(tmp_path / "work")
    git("clone", "-q", src, work)
    with open(os.path.join(work, "f.txt"), "w") as f:
        f.write("1\n")
    git("commit", "-q", "-a", "-m", "one", cwd=work)
    proc = cluster.nodes[secondary].proc
    proc.send_signal(signal.SIGSTOP)
    try:
        # routed while the secondary still counts as healthy: it is a voter that never votes
        start = time.time()
        r = subprocess.run(["git", "push", "-q", "ssh://gitaly/repo.git", "HEAD:refs/heads/main"], cwd=work,
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, **gitaly_ssh_env(cluster.praefect, "ack.git", "receive-pack")))
        took = time.time() - start
        still_stopped = proc.poll() is None
        assert r.returncode == 0, r.stderr
        # acknowledged once praefect gave up on the silent secondary (about 1 s), long before the
        # node came back
        assert took < 4.0, "the push waited %.1f s for a stopped secondary" % took
        assert still_stopped
        time.sleep(max(0.0, 6.0 - (time.time() - start)))
    finally:
        proc.send_signal(signal.SIGCONT)
    # the secondary missed the push: it is outdated, not up to date with other refs
    md = cluster.praefect.metadata("ack.git")
    assert {r.storage: r.generation for r in md.replicas}[secondary] < md.generation


def commit_and_push(cluster, work, rel, n):
    with open(os.path.join(work, "f.txt"), "w") as f:
        f.write("%d\n" % n)
    git("commit", "-q", "-a", "-m", "change %d" % n, cwd=work)
    return subprocess.run(["git", "push", "-q", "ssh://gitaly/repo.git", "HEAD:refs/heads/main"], cwd=work,
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **gitaly_ssh_env(cluster.praefect, rel, "receive-pack")))


def test_a_replication_whose_source_is_stopped_mid_job_is_retried_from_another_replica(cluster, tmp_path):
    rel = "resource.git"
    create_repo(cluster, rel)
    src = make_bare_repo(str(tmp_path / "src.git"), branches=("main",), files={"f.txt": "0\n"})
    push(cluster, src, rel, "main")
    md, _ = wait_for(lambda: replicas_in_sync(cluster, rel), what="replication")
    source = md.primary
    target, other = sorted(n for n in cluster.nodes if n != source)
    work = str(tmp_path / "work")
    git("clone", "-q", src, work)

    def generation(storage):
        m = cluster.praefect.metadata(rel)
        return {r.storage: r.generation for r in m.replicas}[storage], m.generation

    # the target misses a push, so a job from the primary is queued for it
    tproc, sproc = cluster.nodes[target].proc, cluster.nodes[source].proc
    tproc.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: not healthy(cluster, rel, target), timeout=10, what="%s unhealthy" % target)
        r = commit_and_push(cluster, work, rel, 1)
        assert r.returncode == 0, r.stderr
    finally:
        # the primary stops as the target comes back: the job starts while the primary still
        # counts as healthy, and the target's fetch from it hangs
        sproc.send_signal(signal.SIGSTOP)
        tproc.send_signal(signal.SIGCONT)
    try:
        # the source stays stopped far longer than the replicator waits on a silent source, and
        # longer than any keepalive would give up in this wait: the target can only catch up
        # from the other replica
        wait_for(lambda: healthy(cluster, rel, target) and not healthy(cluster, rel, source) and
                 generation(target)[0] == generation(target)[1], timeout=15,
                 what="%s caught up from %s while %s is stopped" % (target, other, source))
        # two healthy up-to-date replicas of three: a write quorum without the stopped node
        r = commit_and_push(cluster, work, rel, 2)
        assert r.returncode == 0, r.stderr
        assert not healthy(cluster, rel, source)
    finally:
        sproc.send_signal(signal.SIGCONT)
    assert "replicating from another replica" in cluster.praefect.log()
    wait_for(lambda: replicas_in_sync(cluster, rel), timeout=30, what="replicas in sync")
