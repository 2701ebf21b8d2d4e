"""Corrupt replicas: a read failing on a replica with corrupt or missing objects moves to another
replica while nothing has reached the client, the failing replica is avoided by later reads, and,
with gitaly's Fsck, it is verified and rebuilt from a healthy one.
See docs/technical/praefect-health.md."""
import os
import signal
import subprocess
import time

import grpc
import pytest

from praefect_itest import wait_for
from gitaly_itest import git, make_bare_repo, pb
from test_praefect import create_repo, gitaly_ssh_env, push, replicas_in_sync

pytestmark = pytest.mark.xdist_group("timing")


def replica_dir(cluster, storage, replica_path):
    return os.path.join(cluster.nodes[storage].storages[storage], replica_path)


def setup_repo(cluster, tmp_path, rel):
    create_repo(cluster, rel)
    src = make_bare_repo(str(tmp_path / "src.git"), branches=("main",), files={"a.txt": "hello\n" * 100})
    push(cluster, src, rel, "main")
    md, _ = wait_for(lambda: replicas_in_sync(cluster, rel), what="replication")
    return src, md


def corrupt_loose_blob(cluster, storage, replica_path, blob):
    """Flip the bytes of a loose object behind praefect's back, as a failing disk would."""
    p = os.path.join(replica_dir(cluster, storage, replica_path), "objects", blob[:2], blob[2:])
    os.chmod(p, 0o644)
    data = open(p, "rb").read()
    with open(p, "wb") as f:
        f.write(data[:2] + bytes(x ^ 0xFF for x in data[2:]))


def corrupt_pack(cluster, storage, replica_path):
    d = replica_dir(cluster, storage, replica_path)
    subprocess.run(["git", "-C", d, "repack", "-adq"], check=True)
    packdir = os.path.join(d, "objects", "pack")
    pack = os.path.join(packdir, [p for p in os.listdir(packdir) if p.endswith(".pack")][0])
    size = os.path.getsize(pack)
    off = max(12, size // 2 - 48)
    with open(pack, "r+b") as f:
        f.seek(off)
        data = f.read(96)
        f.seek(off)
        f.write(bytes(x ^ 0xFF for x in data))


def fsck_ok(path):
    return subprocess.run(["git", "-C", path, "fsck", "--no-dangling"], capture_output=True).returncode == 0


def tree_entry(cluster, rel):
    stub = cluster.praefect.stub("CommitService")
    req = pb("commit").TreeEntryRequest(repository=cluster.praefect.repo(rel), revision=b"main", path=b"a.txt")
    return b"".join(r.data for r in stub.TreeEntry(req))


def test_a_read_failing_on_corrupt_replicas_is_answered_by_a_healthy_one(cluster, tmp_path):
    src, md = setup_repo(cluster, tmp_path, "tree.git")
    blob = git("rev-parse", "main:a.txt", cwd=src).strip()
    bad = sorted(cluster.nodes)[:2]
    for name in bad:
        corrupt_loose_blob(cluster, name, md.replica_path, blob)
    # two of three replicas cannot read the blob: without a retry two reads in three would fail
    for _ in range(10):
        assert tree_entry(cluster, "tree.git") == b"hello\n" * 100
    log = cluster.praefect.log()
    assert "retrying on" in log
    good = (set(cluster.nodes) - set(bad)).pop()
    assert "on %s is suspect" % good not in log
    # once a replica failed, reads avoid it: at most one failure per corrupt replica
    assert log.count("TreeEntry failed on") <= len(bad)


def clone(cluster, rel, dest):
    r = subprocess.run(["git", "clone", "-q", "--bare", "ssh://gitaly/repo.git", dest], capture_output=True, text=True,
                       env=dict(os.environ, **gitaly_ssh_env(cluster.praefect, rel, "upload-pack")), timeout=60)
    return r.returncode == 0 and fsck_ok(dest)


def only_healthy(cluster, rel, keep):
    """Stop every node but `keep` until praefect routes nothing to them; returns their processes."""
    procs = [cluster.nodes[n].proc for n in cluster.nodes if n != keep]
    for p in procs:
        p.send_signal(signal.SIGSTOP)
    wait_for(lambda: [r.storage for r in cluster.praefect.metadata(rel).replicas if r.healthy] == [keep],
             timeout=10, what="only %s healthy" % keep)
    return procs


def test_clones_after_one_failed_on_a_corrupt_replica_avoid_it(cluster, tmp_path):
    _, md = setup_repo(cluster, tmp_path, "clone.git")
    bad = md.primary
    corrupt_pack(cluster, bad, md.replica_path)
    # the first clone can only go to the corrupt replica: the ref advertisement reaches the client
    # before the pack fails, so it cannot be moved and fails
    procs = only_healthy(cluster, "clone.git", bad)
    try:
        assert not clone(cluster, "clone.git", str(tmp_path / "first"))
    finally:
        for p in procs:
            p.send_signal(signal.SIGCONT)
    wait_for(lambda: all(r.healthy for r in cluster.praefect.metadata("clone.git").replicas), what="all healthy")
    assert "on %s is suspect" % bad in cluster.praefect.log()
    # later clones avoid it (a random choice would hit it one time in three)
    failed = [i for i in range(10) if not clone(cluster, "clone.git", str(tmp_path / ("c%d" % i)))]
    assert failed == []


def fsck_implemented(cluster, name, replica_path):
    stub = cluster.node_stub(name, "RepositoryService")
    try:
        stub.Fsck(pb("repository").FsckRequest(repository=pb("shared").Repository(
            storage_name=name, relative_path=replica_path)))
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNIMPLEMENTED:
            return False
    return True


def test_a_corrupt_replica_is_verified_and_rebuilt_within_a_minute(cluster, tmp_path):
    """Needs gitaly's RepositoryService/Fsck: skipped while the node answers UNIMPLEMENTED."""
    src, md = setup_repo(cluster, tmp_path, "repair.git")
    if not fsck_implemented(cluster, md.primary, md.replica_path):
        pytest.skip("gitaly has no RepositoryService/Fsck yet")
    blob = git("rev-parse", "main:a.txt", cwd=src).strip()
    bad = sorted(cluster.nodes)[0]
    corrupt_loose_blob(cluster, bad, md.replica_path, blob)
    path = replica_dir(cluster, bad, md.replica_path)
    assert not fsck_ok(path)
    procs = only_healthy(cluster, "repair.git", bad)
    try:
        with pytest.raises(grpc.RpcError):
            tree_entry(cluster, "repair.git")
    finally:
        for p in procs:
            p.send_signal(signal.SIGCONT)
    marked = time.time()
    wait_for(lambda: "on %s repaired" % bad in cluster.praefect.log(), timeout=60, what="the replica repaired")
    assert fsck_ok(path)
    md, _ = wait_for(lambda: replicas_in_sync(cluster, "repair.git"), timeout=max(1, 60 - (time.time() - marked)),
                     what="the rebuilt replica in sync")
    assert tree_entry(cluster, "repair.git") == b"hello\n" * 100
    # the healthy replicas passed their Fsck and were not touched
    for name in cluster.nodes:
        if name != bad:
            assert "on %s is corrupt" % name not in cluster.praefect.log()


def test_a_corrupt_replica_gets_the_other_replicas_of_its_node_checked(cluster, tmp_path):
    """Needs gitaly's RepositoryService/Fsck: skipped while the node answers UNIMPLEMENTED."""
    src, md = setup_repo(cluster, tmp_path, "first.git")
    if not fsck_implemented(cluster, md.primary, md.replica_path):
        pytest.skip("gitaly has no RepositoryService/Fsck yet")
    create_repo(cluster, "second.git")
    push(cluster, src, "second.git", "main")
    md2, _ = wait_for(lambda: replicas_in_sync(cluster, "second.git"), what="replication")
    blob = git("rev-parse", "main:a.txt", cwd=src).strip()
    bad = sorted(cluster.nodes)[0]
    for m in (md, md2):
        corrupt_loose_blob(cluster, bad, m.replica_path, blob)
    procs = only_healthy(cluster, "first.git", bad)
    try:
        with pytest.raises(grpc.RpcError):
            tree_entry(cluster, "first.git")
    finally:
        for p in procs:
            p.send_signal(signal.SIGCONT)
    # nobody read second.git, yet its replica on the same node is found and rebuilt
    path = replica_dir(cluster, bad, md2.replica_path)
    wait_for(lambda: cluster.praefect.log().count("on %s repaired" % bad) >= 2, timeout=60,
             what="both replicas on %s repaired" % bad)
    assert fsck_ok(path)


def delete_loose_blob(cluster, storage, replica_path, blob):
    os.unlink(os.path.join(replica_dir(cluster, storage, replica_path), "objects", blob[:2], blob[2:]))


def test_two_corrupt_replicas_fail_only_the_first_clone(cluster, tmp_path):
    """Needs gitaly's RepositoryService/Fsck: skipped while the node answers UNIMPLEMENTED."""
    src, md = setup_repo(cluster, tmp_path, "two.git")
    if not fsck_implemented(cluster, md.primary, md.replica_path):
        pytest.skip("gitaly has no RepositoryService/Fsck yet")
    blob = git("rev-parse", "main:a.txt", cwd=src).strip()
    packed = md.primary
    loose = sorted(n for n in cluster.nodes if n != packed)[0]
    delete_loose_blob(cluster, loose, md.replica_path, blob)
    corrupt_pack(cluster, packed, md.replica_path)
    assert not fsck_ok(replica_dir(cluster, loose, md.replica_path))
    assert not fsck_ok(replica_dir(cluster, packed, md.replica_path))
    # the first clone goes to a corrupt replica and fails after its ref advertisement
    procs = only_healthy(cluster, "two.git", packed)
    try:
        assert not clone(cluster, "two.git", str(tmp_path / "first"))
    finally:
        for p in procs:
            p.send_signal(signal.SIGCONT)
    wait_for(lambda: all(r.healthy for r in cluster.praefect.metadata("two.git").replicas), what="all healthy")
    # the other corrupt replica is a sibling nobody verified yet: later clones wait for the
    # verification rather than try it (a random choice would hit it one time in two)
    failed = [i for i in range(10) if not clone(cluster, "two.git", str(tmp_path / ("c%d" % i)))]
    assert failed == []
    # both are deleted and replicated again (the reconciler may be the one that rebuilds a
    # deleted replica, so the replicas on disk are what counts, not a log line)
    for name in (packed, loose):
        path = replica_dir(cluster, name, md.replica_path)
        wait_for(lambda: os.path.isdir(path) and fsck_ok(path), timeout=120, what="the replica on %s rebuilt" % name)
    wait_for(lambda: replicas_in_sync(cluster, "two.git"), timeout=30, what="the rebuilt replicas in sync")
    log = cluster.praefect.log()
    for name in (packed, loose):
        assert "on %s is corrupt" % name in log


def stored_suspects(cluster, request):
    """(repository id, storage, avoid) rows of the store's suspect_replicas table, either backend."""
    rows = cluster.praefect.sql("SELECT repository_id, storage, avoid FROM suspect_replicas ORDER BY 1, 2",
                                postgres="SELECT repository_id, storage, avoid::int FROM suspect_replicas ORDER BY 1, 2")
    return [(int(a), b, int(c)) for a, b, c in rows]


@pytest.mark.both_stores
def test_a_suspect_replica_is_still_verified_and_repaired_after_a_praefect_restart(cluster, tmp_path, request):
    """Suspects live in the tracking store until verified: praefect killed while the only source
    of a repair is away still repairs the replica after its restart, with no read failing again.
    Needs gitaly's RepositoryService/Fsck."""
    src, md = setup_repo(cluster, tmp_path, "remember.git")
    if not fsck_implemented(cluster, md.primary, md.replica_path):
        pytest.skip("gitaly has no RepositoryService/Fsck yet")
    blob = git("rev-parse", "main:a.txt", cwd=src).strip()
    bad = sorted(cluster.nodes)[0]
    corrupt_loose_blob(cluster, bad, md.replica_path, blob)
    path = replica_dir(cluster, bad, md.replica_path)
    procs = only_healthy(cluster, "remember.git", bad)
    try:
        with pytest.raises(grpc.RpcError):
            tree_entry(cluster, "remember.git")
        # recorded: the failing replica avoided, its siblings to be checked
        want = [(md.repository_id, n, int(n == bad)) for n in sorted(cluster.nodes)]
        wait_for(lambda: stored_suspects(cluster, request) == want, what="the suspects recorded")
        # no healthy replica to rebuild it from while the others are stopped: nothing repaired yet
        assert "on %s repaired" % bad not in cluster.praefect.log()
        cluster.praefect.kill()
    finally:
        for p in procs:
            p.send_signal(signal.SIGCONT)

    def new_log(since):
        return cluster.praefect.log()[since:]

    since = len(cluster.praefect.log())
    cluster.praefect.start()
    wait_for(lambda: "on %s repaired" % bad in new_log(since), timeout=60, what="the replica repaired")
    log = new_log(since)
    assert "3 suspect replicas from the tracking store are verified again" in log
    assert "is suspect" not in log     # nothing had to fail again to find it
    assert fsck_ok(path)
    wait_for(lambda: replicas_in_sync(cluster, "remember.git"), timeout=30, what="in sync")
    # repaired, and the siblings verified clean: the store forgets them all
    wait_for(lambda: stored_suspects(cluster, request) == [], timeout=20, what="the suspects forgotten")
    for name in cluster.nodes:
        if name != bad:
            assert "on %s is corrupt" % name not in cluster.praefect.log()
