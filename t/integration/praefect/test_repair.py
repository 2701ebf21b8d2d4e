"""Repair after faults: the generation follows what each node committed, a praefect killed
mid-write verifies the replicas at restart, failed replication jobs are retried with back-off
until the replica catches up."""
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from praefect_itest import Cluster, wait_for
from gitaly_itest import git
from test_praefect import create_repo, gitaly_ssh_env, push, replicas_in_sync, work_repo
from test_failover import commit_on, try_push

# timing-sensitive: one worker
pytestmark = pytest.mark.xdist_group("timing")


def storage_path(cluster, name, replica_path):
    return os.path.join(cluster.nodes[name].storages[name], replica_path)


def ref_on(cluster, name, replica_path, ref):
    r = subprocess.run(["git", "rev-parse", "-q", "--verify", ref], cwd=storage_path(cluster, name, replica_path),
                       capture_output=True, text=True)
    return r.stdout.strip()


def custom_hook(cluster, name, replica_path, hook, script):
    d = os.path.join(storage_path(cluster, name, replica_path), "custom_hooks")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, hook)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + script + "\n")
    os.chmod(path, 0o755)
    return path


def start_push(cluster, src, rel):
    return subprocess.Popen(["git", "push", "-q", "ssh://gitaly/repo.git", "main"], cwd=src,
                            env=dict(os.environ, **gitaly_ssh_env(cluster.praefect, rel, "receive-pack")),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def log_lines(path):
    out = []
    for line in open(path):
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def test_primary_killed_mid_push_leaves_the_secondaries_that_committed_up_to_date_and_the_repository_writable(tmp_path):
    cluster = Cluster(tmp_path)
    try:
        create_repo(cluster, "mid.git")
        src = work_repo(tmp_path, branches=("main",), tags=())
        push(cluster, src, "mid.git", "main")
        md = wait_for(lambda: replicas_in_sync(cluster, "mid.git"), what="replication")[0]
        primary = md.primary
        secondaries = [r.storage for r in md.replicas if r.storage != primary]
        # the primary lingers in its post-receive hook: every node has updated main by then
        custom_hook(cluster, primary, md.replica_path, "post-receive", "sleep 20")
        commit_on(src, 1)
        sha = git("rev-parse", "main", cwd=src).strip()
        p = start_push(cluster, src, "mid.git")
        wait_for(lambda: all(ref_on(cluster, s, md.replica_path, "refs/heads/main") == sha for s in secondaries),
                 what="the secondaries applying the push")
        cluster.nodes[primary].proc.send_signal(signal.SIGKILL)
        cluster.nodes[primary].proc.wait()
        killed = time.time()
        p.communicate(timeout=30)
        assert p.returncode != 0     # not acknowledged: the primary died before answering

        # writable at once without the old primary: the secondaries were not outdated for it
        commit_on(src, 2)
        while not try_push(cluster, src, "mid.git"):
            assert time.time() - killed < 5, "no write accepted within 5 s of the primary's death"
            time.sleep(0.05)
        md2 = cluster.praefect.metadata("mid.git")
        gens = {r.storage: r.generation for r in md2.replicas}
        assert md2.primary in secondaries
        assert all(gens[s] == md2.generation for s in secondaries), gens
        assert gens[primary] < md2.generation
        head = git("rev-parse", "main", cwd=src).strip()
        assert all(ref_on(cluster, s, md.replica_path, "refs/heads/main") == head for s in secondaries)

        # the old primary comes back (without its slow hook) and is repaired
        os.unlink(os.path.join(storage_path(cluster, primary, md.replica_path), "custom_hooks", "post-receive"))
        cluster.nodes[primary]._log.close()
        cluster.nodes[primary].start()
        wait_for(lambda: replicas_in_sync(cluster, "mid.git"), timeout=20, what="repair of the old primary")
        assert ref_on(cluster, primary, md.replica_path, "refs/heads/main") == head
    finally:
        cluster.stop()


def test_praefect_killed_mid_push_verifies_the_replicas_at_restart_and_they_converge(tmp_path):
    cluster = Cluster(tmp_path)
    try:
        create_repo(cluster, "crash.git")
        src = work_repo(tmp_path, branches=("main",), tags=())
        push(cluster, src, "crash.git", "main")
        md = wait_for(lambda: replicas_in_sync(cluster, "crash.git"), what="replication")[0]
        primary = md.primary
        fast, slow = [r.storage for r in md.replicas if r.storage != primary]
        # one secondary cannot update main (a lock left behind); the primary lingers in its
        # post-receive hook, so the write is still in flight once the others applied it
        lock = os.path.join(storage_path(cluster, slow, md.replica_path), "refs", "heads", "main.lock")
        open(lock, "w").close()
        hook = custom_hook(cluster, primary, md.replica_path, "post-receive", "sleep 20")
        commit_on(src, 1)
        sha = git("rev-parse", "main", cwd=src).strip()
        p = start_push(cluster, src, "crash.git")
        wait_for(lambda: all(ref_on(cluster, s, md.replica_path, "refs/heads/main") == sha for s in (primary, fast)),
                 what="primary and one secondary applying the push")
        cluster.praefect.kill()
        p.communicate(timeout=30)
        assert p.returncode != 0
        os.unlink(hook)
        os.unlink(lock)
        # the store never heard of the write's end: equal generations, different refs
        assert ref_on(cluster, slow, md.replica_path, "refs/heads/main") != sha

        os.rename(cluster.praefect.log_path, cluster.praefect.log_path + ".1")
        cluster.praefect.start()
        restarted = time.time()
        wait_for(lambda: replicas_in_sync(cluster, "crash.git"), timeout=10, what="the replicas converging")
        print("\nreplicas in sync %.1f s after the restart" % (time.time() - restarted))
        # towards the primary's content
        assert ref_on(cluster, slow, md.replica_path, "refs/heads/main") == sha
        msgs = [l.get("msg", "") for l in log_lines(cluster.praefect.log_path)]
        assert any("queued for verification" in m for m in msgs)
        assert any(("replica %s of crash.git differs" % slow) in m for m in msgs)
        # and writable afterwards
        commit_on(src, 2)
        assert try_push(cluster, src, "crash.git")
    finally:
        cluster.stop()


def test_failed_replication_is_retried_with_back_off_until_the_replica_catches_up(cluster, tmp_path):
    create_repo(cluster, "retry.git")
    src = work_repo(tmp_path, branches=("main", "feature"), tags=())
    push(cluster, src, "retry.git", "main")
    md = wait_for(lambda: replicas_in_sync(cluster, "retry.git"), what="replication")[0]
    secondary = next(r.storage for r in md.replicas if r.storage != md.primary)
    cluster.nodes[secondary].stop()
    wait_for(lambda: not {r.storage: r.healthy for r in cluster.praefect.metadata("retry.git").replicas}[secondary],
             what="secondary marked unhealthy")
    push(cluster, src, "retry.git", "feature")
    # the replica cannot take the new branch for a while: its ref is locked by a process that is
    # not gitaly's and keeps it fresh (gitaly removes only locks nobody touched for 5 s)
    lock = os.path.join(storage_path(cluster, secondary, md.replica_path), "refs", "heads", "feature.lock")
    open(lock, "w").close()
    holding = threading.Event()
    holding.set()

    def hold():
        while holding.is_set():
            try:
                os.utime(lock)
            except FileNotFoundError:
                open(lock, "w").close()
            time.sleep(0.5)
    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    cluster.nodes[secondary]._log.close()
    cluster.nodes[secondary].start()
    wait_for(lambda: "cannot lock ref" in cluster.praefect.log(), what="a replication attempt failing")
    time.sleep(18)     # far longer than the attempts of old took (three per job, back to back)
    holding.clear()
    holder.join()
    if os.path.exists(lock):
        os.unlink(lock)
    unlocked = time.time()
    wait_for(lambda: replicas_in_sync(cluster, "retry.git"), timeout=10, what="the replica catching up")
    print("\nreplica caught up %.1f s after the lock went" % (time.time() - unlocked))
    failures = []
    for l in log_lines(cluster.praefect.log_path):
        m = l.get("msg", "")
        if "replication job" in m and "-> %s, retry.git) failed" % secondary in m:
            t = l["time"]
            failures.append(time.mktime(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + t[19:-1]))
    failures.sort()
    # it kept trying while the replica could not take the change, spaced out rather than hammering
    assert len(failures) >= 3, failures
    assert failures[-1] - failures[0] >= 9, failures
    assert len(failures) <= 12, failures


def test_two_verifications_of_one_pair_in_opposite_directions_leave_it_equal(cluster, tmp_path):
    """Writes cut off together by a primary's death can each queue a verification with its own
    reference: A against B and B against A. Both find the difference; repairing both would swap
    the contents and leave them different at one generation. One repair, the other stands down."""
    create_repo(cluster, "cross.git")
    src = work_repo(tmp_path, branches=("main",), tags=())
    push(cluster, src, "cross.git", "main")
    md = wait_for(lambda: replicas_in_sync(cluster, "cross.git"), what="replication")[0]
    a, b = sorted(r.storage for r in md.replicas if r.storage != md.primary)
    cluster.praefect.stop()
    # equal generations, other refs: b has a branch the others lack
    git("update-ref", "refs/heads/only-on-b", "refs/heads/main", cwd=storage_path(cluster, b, md.replica_path))
    now = int(time.time() * 1000)
    for source, target in ((a, b), (b, a)):
        lock = "default|%s|cross.git" % target
        values = (md.repository_id, source, target)
        cluster.praefect.sql(
            "INSERT INTO replication_queue_lock (id) VALUES ('%s') ON CONFLICT DO NOTHING;"
            "INSERT INTO replication_queue (state, created_at, attempt, lock_id, change, repository_id,"
            " virtual_storage, relative_path, replica_path, source_node_storage, target_node_storage,"
            " correlation_id, params) VALUES ('ready', %d, 3, '%s', 'update', %d, 'default', 'cross.git', '',"
            " '%s', '%s', 'test', '{\"force\":true}')" % ((lock, now, lock) + values),
            postgres="INSERT INTO replication_queue_lock (id) VALUES ('%s') ON CONFLICT DO NOTHING;"
            "INSERT INTO replication_queue (state, created_at, attempt, lock_id, job, meta) VALUES ('ready',"
            " to_timestamp(%d / 1000.0) AT TIME ZONE 'UTC', 3, '%s', jsonb_build_object('change', 'update',"
            " 'repository_id', %d, 'virtual_storage', 'default', 'relative_path', 'cross.git', 'replica_path', '',"
            " 'source_node_storage', '%s', 'target_node_storage', '%s', 'params', '{\"force\": true}'::jsonb),"
            " '{\"correlation_id\": \"test\"}'::jsonb)" % ((lock, now, lock) + values))
    cluster.praefect.start()
    wait_for(lambda: "of cross.git differs from" in cluster.praefect.log(), what="a difference found")

    def pair_equal():
        m = cluster.praefect.metadata("cross.git")
        gens = {r.storage: r.generation for r in m.replicas}
        return gens[a] == gens[b] == m.generation and \
            cluster.checksum(a, m.replica_path) == cluster.checksum(b, m.replica_path)
    # (the primary was left out of the pair's verifications: only the pair is compared)
    wait_for(pair_equal, timeout=20, what="the pair equal at the repository's generation")
