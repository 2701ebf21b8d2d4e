"""Adding and replacing nodes, the recovery document's procedures (docs/technical/praefect-replication.md):
a node added to a virtual storage without a replication factor receives every repository by
replication, and a node replaced under the same name (an empty disk) is refilled once `praefect
verify -storage` makes its replicas due for the background verifier."""
import os
import shutil

import pytest

from praefect_itest import NODE_TOKEN, Cluster, Praefect, wait_for
from gitaly_itest import GitalyNode, git, make_bare_repo
from test_praefect import create_repo, gitaly_ssh_env, push
from test_admin_data import praefect_cmd
from test_verifier import all_verified

pytestmark = pytest.mark.xdist_group("timing")

REPOS = ["group/a.git", "group/b.git", "c.git"]


def fill(cluster, tmp_path):
    for i, rel in enumerate(REPOS):
        create_repo(cluster, rel)
        src = make_bare_repo(str(tmp_path / ("src%d.git" % i)), branches=("main", "topic%d" % i),
                             files={"f%d.txt" % i: "line\n" * (i + 1)})
        push(cluster, src, rel, "--all")


def in_sync_on(cluster, rel, storages):
    """The repository's metadata when every storage in `storages` holds it at the current generation
    with the same checksum."""
    md = cluster.praefect.metadata(rel)
    reps = {r.storage: r for r in md.replicas}
    if not all(s in reps and reps[s].generation == md.generation for s in storages):
        return None
    sums = {cluster.checksum(s, md.replica_path) for s in storages}
    return md if len(sums) == 1 else None


def test_a_node_added_without_a_replication_factor_receives_every_repository(tmp_path):
    c = Cluster(tmp_path / "c")
    try:
        fill(c, tmp_path)
        for rel in REPOS:
            wait_for(lambda: in_sync_on(c, rel, list(c.nodes)), what="replication of " + rel)
        # the admin adds gitaly-4 to the configuration and restarts praefect
        c.praefect.stop()
        c.nodes["gitaly-4"] = GitalyNode(os.path.join(c.tmp, "gitaly-4"), storages=("gitaly-4",),
                                         token=NODE_TOKEN).start()
        c.praefect = Praefect(os.path.join(c.tmp, "praefect"), c.nodes).start()
        for rel in REPOS:
            md = wait_for(lambda: in_sync_on(c, rel, list(c.nodes)), timeout=30, what="%s on gitaly-4" % rel)
            path = os.path.join(c.nodes["gitaly-4"].storages["gitaly-4"], md.replica_path)
            assert git("fsck", "--no-progress", cwd=path) == ""
        # and it serves: a clone through praefect reads from whichever replica it picks
        out = str(tmp_path / "clone")
        git("clone", "--bare", "ssh://gitaly/repo.git", out,
            env=gitaly_ssh_env(c.praefect, "group/a.git", "upload-pack"))
        assert "topic0" in git("branch", "--list", cwd=out)
    finally:
        c.stop()


def test_a_node_replaced_under_the_same_name_is_refilled_after_verify(tmp_path):
    extra = '\n[background_verification]\nverification_interval = "1h"\ndelete_invalid_records = true\n'
    c = Cluster(tmp_path / "c", extra=extra)
    try:
        fill(c, tmp_path)
        for rel in REPOS:
            wait_for(lambda: in_sync_on(c, rel, list(c.nodes)), what="replication of " + rel)
            # each replica verified once: with an hour's interval none is due again until `verify`
            wait_for(lambda: all_verified(c, rel), timeout=30, what="first verification of " + rel)
        # gitaly-2's disk is replaced by an empty one under the same name
        node = c.nodes["gitaly-2"]
        node.stop()
        root = node.storages["gitaly-2"]
        shutil.rmtree(root)
        os.makedirs(root)
        node.start()   # praefect may not even have seen it go: its connection comes back by itself
        res = praefect_cmd(c, "verify", "-virtual-storage", "default", "-storage", "gitaly-2")
        assert res.returncode == 0, res.stderr
        assert res.stdout == "%d replicas marked unverified\n" % len(REPOS)
        for rel in REPOS:
            md = wait_for(lambda: in_sync_on(c, rel, list(c.nodes)), timeout=40, what="%s refilled" % rel)
            path = os.path.join(root, md.replica_path)
            assert git("fsck", "--no-progress", cwd=path) == ""
    finally:
        c.stop()


def assigned_counts(cluster, rels):
    counts = {s: 0 for s in cluster.nodes}
    for rel in rels:
        for r in cluster.praefect.metadata(rel).replicas:
            if r.assigned:
                counts[r.storage] += 1
    return counts


def test_adding_a_node_with_a_replication_factor_rebalances_without_dropping_below_it(tmp_path):
    rels = ["rb/%02d.git" % i for i in range(12)]
    c = Cluster(tmp_path / "c", replication_factor=2)
    try:
        src = make_bare_repo(str(tmp_path / "src.git"), branches=("main",), files={"a.txt": "a\n"})
        for rel in rels:
            create_repo(c, rel)
            push(c, src, rel, "--all")
        # three storages balance among themselves already; let any move in progress end
        wait_for(lambda: sum(assigned_counts(c, rels).values()) == 2 * len(rels), timeout=30, what="settled")
        c.praefect.stop()
        c.nodes["gitaly-4"] = GitalyNode(os.path.join(c.tmp, "gitaly-4"), storages=("gitaly-4",),
                                         token=NODE_TOKEN).start()
        c.praefect = Praefect(os.path.join(c.tmp, "praefect"), c.nodes, replication_factor=2).start()

        def balanced():
            # never below the factor while moving: two up-to-date assigned replicas at every look
            for rel in rels:
                md = c.praefect.metadata(rel)
                fresh = [r for r in md.replicas if r.assigned and r.generation == md.generation]
                assert len(fresh) >= 2, (rel, md)
            counts = assigned_counts(c, rels)
            settled = sum(counts.values()) == 2 * len(rels)     # no move half done
            return counts if settled and max(counts.values()) - min(counts.values()) <= 1 else None

        counts = wait_for(balanced, timeout=60, what="balanced assignments")
        assert counts["gitaly-4"] >= 5
        # every assigned replica is in sync, and the replicas left behind on old storages are deleted
        for rel in rels:
            md = c.praefect.metadata(rel)
            assigned = [r.storage for r in md.replicas if r.assigned]
            wait_for(lambda: in_sync_on(c, rel, assigned), timeout=30, what="%s in sync" % rel)
            wait_for(lambda: {r.storage for r in c.praefect.metadata(rel).replicas if r.generation >= 0}
                     == set(assigned), timeout=30, what="%s: unassigned replicas deleted" % rel)
        assert "rebalanced repository" in c.praefect.log()
    finally:
        c.stop()
