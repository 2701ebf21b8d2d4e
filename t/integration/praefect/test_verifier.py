"""The background verifier ([background_verification]): every replica is checked on its node, without
any read, for existence, for references equal to its up-to-date peers' and for sound objects (Fsck);
a wrong one is logged with what differed and repaired. See docs/technical/praefect-health.md."""
import os
import shutil

import pytest

from praefect_itest import Cluster, wait_for
from gitaly_itest import git, make_bare_repo
from test_praefect import create_repo, push, replicas_in_sync
from test_admin_data import praefect_cmd
from test_corrupt_replicas import corrupt_pack, fsck_implemented, fsck_ok, replica_dir

pytestmark = pytest.mark.xdist_group("timing")


def verifier_cluster(tmp_path, interval, delete_invalid=True):
    extra = "\n[background_verification]\nverification_interval = \"%s\"\ndelete_invalid_records = %s\n" % (
        interval, "true" if delete_invalid else "false")
    return Cluster(tmp_path / "cluster", extra=extra)


def synced(cluster, tmp_path, rel):
    create_repo(cluster, rel)
    src = make_bare_repo(str(tmp_path / (rel + ".src")), branches=("main", "feature"),
                         files={"a.txt": "hello\n" * 100})
    push(cluster, src, rel, "--all")
    md, _ = wait_for(lambda: replicas_in_sync(cluster, rel), what="replication")
    return md


def verified_at(cluster, rel):
    """storage -> verified_at in ms (0: never verified)."""
    md = cluster.praefect.metadata(rel)
    return {r.storage: (r.verified_at.seconds * 1000 + r.verified_at.nanos // 1000000) if r.HasField("verified_at")
            else 0 for r in md.replicas}


def all_verified(cluster, rel, after=0):
    v = verified_at(cluster, rel)
    return v if len(v) == 3 and all(t > after for t in v.values()) else None


@pytest.fixture
def short(tmp_path):
    """A cluster whose verifier checks every replica again every second."""
    c = verifier_cluster(tmp_path, "1s")
    yield c
    c.stop()


@pytest.fixture
def long(tmp_path):
    """A cluster whose verifier checks a replica once, then not for an hour."""
    c = verifier_cluster(tmp_path, "1h")
    yield c
    c.stop()


@pytest.mark.both_stores
def test_healthy_replicas_are_verified_and_verify_makes_them_due_again(long, tmp_path):
    md = synced(long, tmp_path, "a.git")
    synced(long, tmp_path, "b.git")
    first = wait_for(lambda: all_verified(long, "a.git"), what="a.git verified")
    other = wait_for(lambda: all_verified(long, "b.git"), what="b.git verified")
    assert "is corrupt" not in long.praefect.log() and "differs from" not in long.praefect.log()
    res = praefect_cmd(long, "verify", "-repository-id", str(md.repository_id))
    assert (res.returncode, res.stdout) == (0, "3 replicas marked unverified\n"), res.stderr
    # verified again soon, each time anew; the other repository is not due for an hour and keeps its times
    wait_for(lambda: all_verified(long, "a.git", after=max(first.values())), what="a.git verified again")
    assert verified_at(long, "b.git") == other


@pytest.mark.parametrize("storage_index", [0, 2])
def test_flipped_pack_bytes_are_found_without_a_read_and_repaired(short, tmp_path, storage_index):
    md = synced(short, tmp_path, "pack.git")
    bad = sorted(short.nodes)[storage_index]
    if not fsck_implemented(short, bad, md.replica_path):
        pytest.skip("gitaly has no Fsck")
    wait_for(lambda: all_verified(short, "pack.git"), what="verified")
    corrupt_pack(short, bad, md.replica_path)
    path = replica_dir(short, bad, md.replica_path)
    assert not fsck_ok(path)
    # references unchanged: only the objects check can find it
    assert short.checksum(bad, md.replica_path) == replicas_in_sync_sums(short, "pack.git", bad)
    wait_for(lambda: "replica of repository %d on %s is corrupt, repairing it: background verification"
             % (md.repository_id, bad) in short.praefect.log(), timeout=30, what="corruption found")
    wait_for(lambda: "replica of repository %d on %s repaired" % (md.repository_id, bad) in short.praefect.log(),
             timeout=60, what="repaired")
    wait_for(lambda: fsck_ok(path) and replicas_in_sync(short, "pack.git"), timeout=30, what="sound and in sync")
    log = short.praefect.log()
    assert "is suspect" not in log  # no read failed on it: the verifier found it on its own


def replicas_in_sync_sums(cluster, rel, skip):
    md = cluster.praefect.metadata(rel)
    sums = {cluster.checksum(r.storage, md.replica_path) for r in md.replicas if r.storage != skip}
    assert len(sums) == 1
    return sums.pop()


def test_a_ref_changed_behind_praefects_back_is_found_and_repaired(short, tmp_path):
    md = synced(short, tmp_path, "refs.git")
    wait_for(lambda: all_verified(short, "refs.git"), what="verified")
    bad = sorted(short.nodes)[1]
    path = replica_dir(short, bad, md.replica_path)
    feature = git("rev-parse", "refs/heads/feature", cwd=path).strip()
    git("update-ref", "refs/heads/main", feature, cwd=path)
    git("update-ref", "refs/heads/rogue", feature, cwd=path)
    bad_sum, good_sum = short.checksum(bad, md.replica_path), replicas_in_sync_sums(short, "refs.git", bad)
    assert bad_sum != good_sum
    before = short.praefect.metadata("refs.git")
    assert all(r.generation == before.generation for r in before.replicas)  # same generation, other content
    wait_for(lambda: "replica of repository %d (\\\"refs.git\\\") on %s differs from its up-to-date peers"
             % (md.repository_id, bad) in short.praefect.log(), timeout=30, what="difference found")
    line = [ln for ln in short.praefect.log().splitlines() if "differs from its up-to-date peers" in ln][0]
    assert "checksum is %s" % bad_sum in line and "has %s" % good_sum in line
    wait_for(lambda: replicas_in_sync(short, "refs.git"), timeout=30, what="repaired")
    refs = git("for-each-ref", "--format=%(refname)", cwd=path).split()
    assert "refs/heads/rogue" not in refs
    good = replica_dir(short, sorted(short.nodes)[0], md.replica_path)
    assert git("rev-parse", "refs/heads/main", cwd=path) == git("rev-parse", "refs/heads/main", cwd=good)


@pytest.mark.both_stores
def test_a_replica_deleted_from_disk_loses_its_record_and_is_recreated(short, tmp_path):
    md = synced(short, tmp_path, "gone.git")
    wait_for(lambda: all_verified(short, "gone.git"), what="verified")
    bad = sorted(short.nodes)[2]
    path = replica_dir(short, bad, md.replica_path)
    shutil.rmtree(path)
    wait_for(lambda: "removing metadata record of non-existent replica: repository %d (\\\"gone.git\\\") on %s"
             % (md.repository_id, bad) in short.praefect.log(), timeout=30, what="record removed")
    # the reconciler creates it again from a healthy replica
    wait_for(lambda: os.path.isdir(path) and replicas_in_sync(short, "gone.git"), timeout=30, what="re-created")
    assert fsck_ok(path)


def test_without_delete_invalid_records_the_record_is_kept(tmp_path):
    c = verifier_cluster(tmp_path, "1s", delete_invalid=False)
    try:
        md = synced(c, tmp_path, "kept.git")
        bad = sorted(c.nodes)[2]
        shutil.rmtree(replica_dir(c, bad, md.replica_path))
        wait_for(lambda: "keeping (delete_invalid_records off) the metadata record of non-existent replica: "
                 "repository %d" % md.repository_id in c.praefect.log(), timeout=30, what="invalid replica found")
        reps = {r.storage: r for r in c.praefect.metadata("kept.git").replicas}
        assert reps[bad].generation == md.generation
        assert reps[bad].HasField("verified_at")
    finally:
        c.stop()


def test_background_verification_keys_defaults_and_validation(tmp_path):
    # an empty table: upstream's defaults, the verifier on
    c = Cluster(tmp_path / "defaults", extra="\n[background_verification]\n")
    try:
        assert "background verifier started: verification_interval 604800000ms, delete_invalid_records true, " \
               "1 verifications per node" in c.praefect.log()
        config = c.praefect.config_path
        base = open(config).read()
    finally:
        c.stop()
    for table, message in [
            ('verification_interval = "1h"\nmax_verifications_per_node = 0',
             '"max_verifications_per_node": 0 is out of range (1 to 1024)'),
            ('verification_interval = "soon"', '"verification_interval": expected a duration'),
            ('delete_invalid_records = "yes"', '"delete_invalid_records"')]:
        with open(config, "w") as f:
            f.write(base.replace("[background_verification]\n", "[background_verification]\n" + table + "\n"))
        res = praefect_cmd(c, "list-storages")
        assert res.returncode == 1 and message in res.stderr, res.stderr
    # 0 turns it off (what the harness sets for every other test)
    c = Cluster(tmp_path / "off")
    try:
        assert 'verification_interval = "0"' in open(c.praefect.config_path).read()
        assert "background verifier is disabled" in c.praefect.log()
    finally:
        c.stop()


def test_two_corrupt_replicas_are_both_rebuilt_from_the_sound_one(short, tmp_path):
    md = synced(short, tmp_path, "two.git")
    names = sorted(short.nodes)
    if not fsck_implemented(short, names[0], md.replica_path):
        pytest.skip("gitaly has no Fsck")
    wait_for(lambda: all_verified(short, "two.git"), what="verified")
    bad = [names[0], names[2]]
    for name in bad:
        corrupt_pack(short, name, md.replica_path)
    for name in bad:
        wait_for(lambda: "replica of repository %d on %s repaired" % (md.repository_id, name)
                 in short.praefect.log(), timeout=90, what="%s repaired" % name)
    wait_for(lambda: all(fsck_ok(replica_dir(short, n, md.replica_path)) for n in names)
             and replicas_in_sync(short, "two.git"), timeout=30, what="all sound and in sync")


def test_a_deleted_loose_object_is_found_without_a_read_and_repaired(short, tmp_path):
    md = synced(short, tmp_path, "loose.git")
    bad = sorted(short.nodes)[1]
    if not fsck_implemented(short, bad, md.replica_path):
        pytest.skip("gitaly has no Fsck")
    wait_for(lambda: all_verified(short, "loose.git"), what="verified")
    path = replica_dir(short, bad, md.replica_path)
    # a small push is unpacked into loose objects (receive.unpackLimit): remove one blob's file
    blob = git("rev-parse", "refs/heads/main:a.txt", cwd=path).strip()
    loose = os.path.join(path, "objects", blob[:2], blob[2:])
    assert os.path.exists(loose), "the push was kept as a pack"
    os.unlink(loose)
    assert not fsck_ok(path)
    # references unchanged: only the objects check can find it
    assert short.checksum(bad, md.replica_path) == replicas_in_sync_sums(short, "loose.git", bad)
    wait_for(lambda: "replica of repository %d on %s is corrupt, repairing it: background verification"
             % (md.repository_id, bad) in short.praefect.log(), timeout=30, what="corruption found")
    assert "missing blob %s" % blob in short.praefect.log()   # logged with what differed
    wait_for(lambda: fsck_ok(path) and replicas_in_sync(short, "loose.git"), timeout=60, what="sound and in sync")
    assert os.path.exists(loose) or git("cat-file", "-t", blob, cwd=path).strip() == "blob"
