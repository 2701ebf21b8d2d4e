"""OptimizeRepository and PruneUnreachableObjects through praefect: maintenance RPCs run on every
healthy assigned replica and move no generation (docs/technical/housekeeping.md)."""
import glob
import os
import subprocess
import time

import grpc
import pytest

from praefect_itest import wait_for
from gitaly_itest import git, make_bare_repo, pb
from test_praefect import gitaly_ssh_env, refs


def in_sync(cluster, rel):
    md = cluster.praefect.metadata(rel)
    ok = len(md.replicas) == 3 and all(r.generation == md.generation for r in md.replicas)
    return md if ok else None


def loose(path):
    return [p for p in glob.glob(os.path.join(path, "objects", "??", "*")) if len(os.path.basename(p)) == 38]


def replica_dirs(cluster, md):
    return {name: n.repo_path(md.replica_path, storage=name) for name, n in cluster.nodes.items()}


def seeded(cluster, tmp_path, rel):
    """A repository on every replica with the same history, all of it in loose objects."""
    cluster.praefect.stub("RepositoryService").CreateRepository(
        pb("repository").CreateRepositoryRequest(repository=cluster.praefect.repo(rel)), timeout=30)
    md = wait_for(lambda: in_sync(cluster, rel), what="replicas in sync")
    src = make_bare_repo(str(tmp_path / "src.git"), branches=("main", "dev"), tags=("v1",))
    dirs = replica_dirs(cluster, md)
    pack = subprocess.run(["git", "-C", src, "pack-objects", "--all", "--stdout"], input=b"",
                          capture_output=True, check=True).stdout
    for path in dirs.values():
        # unpacked: every object loose, as after many small writes
        subprocess.run(["git", "-C", path, "unpack-objects", "-q"], input=pack, check=True)
        for line in git("for-each-ref", "--format=%(refname) %(objectname)", cwd=src).splitlines():
            name, oid = line.split()
            git("update-ref", name, oid, cwd=path)
    return md, dirs


def calls(node, method):
    return sum(1 for line in open(node.log_path) if '"grpc.method":"%s"' % method in line)


def test_optimize_through_praefect_runs_on_every_replica_and_keeps_generations(cluster, tmp_path):
    md, dirs = seeded(cluster, tmp_path, "opt.git")
    assert all(loose(p) for p in dirs.values())
    before = {r.storage: r.generation for r in md.replicas}
    before_refs = refs(dirs["gitaly-1"])

    cluster.praefect.stub("RepositoryService").OptimizeRepository(
        pb("repository").OptimizeRepositoryRequest(repository=cluster.praefect.repo("opt.git"),
                                                   strategy=pb("repository").OptimizeRepositoryRequest.STRATEGY_EAGER),
        timeout=120)

    for name, path in dirs.items():
        assert loose(path) == [], name
        assert glob.glob(os.path.join(path, "objects", "pack", "*.pack")), name
        assert calls(cluster.nodes[name], "OptimizeRepository") == 1, name
        git("fsck", "--no-dangling", cwd=path)  # raises on any error
        assert refs(path) == before_refs, name
    # and praefect serves every ref from the optimized replicas
    served = str(tmp_path / "served.git")
    git("clone", "-q", "--mirror", "ssh://gitaly/repo.git", served,
        env=gitaly_ssh_env(cluster.praefect, "opt.git", "upload-pack"))
    assert refs(served) == before_refs
    after = cluster.praefect.metadata("opt.git")
    assert {r.storage: r.generation for r in after.replicas} == before
    assert after.generation == md.generation
    # nothing to replicate afterwards either
    time.sleep(0.5)
    assert {r.storage: r.generation for r in cluster.praefect.metadata("opt.git").replicas} == before


def test_prune_through_praefect_prunes_every_replica(cluster, tmp_path):
    md, dirs = seeded(cluster, tmp_path, "prune.git")
    old = {}
    for name, path in dirs.items():
        oid = git("hash-object", "-w", "--stdin", cwd=path, input=b"unreachable on " + name.encode()).strip()
        t = time.time() - 3600
        os.utime(os.path.join(path, "objects", oid[:2], oid[2:]), (t, t))
        old[name] = oid
    cluster.praefect.stub("RepositoryService").PruneUnreachableObjects(
        pb("repository").PruneUnreachableObjectsRequest(repository=cluster.praefect.repo("prune.git")), timeout=120)
    for name, path in dirs.items():
        r = subprocess.run(["git", "-C", path, "cat-file", "-e", old[name]], capture_output=True)
        assert r.returncode != 0, name
        assert git("rev-parse", "main", cwd=path).strip()
    assert cluster.praefect.metadata("prune.git").generation == md.generation


def test_optimize_of_an_unknown_repository_through_praefect(cluster):
    with pytest.raises(grpc.RpcError) as e:
        cluster.praefect.stub("RepositoryService").OptimizeRepository(
            pb("repository").OptimizeRepositoryRequest(repository=cluster.praefect.repo("nope.git")), timeout=30)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.both_stores
def test_remove_all_through_praefect_forgets_and_empties_every_node(cluster):
    svc = cluster.praefect.stub("RepositoryService")
    for rel in ("a.git", "group/b.git"):
        svc.CreateRepository(pb("repository").CreateRepositoryRequest(repository=cluster.praefect.repo(rel)),
                             timeout=30)
        wait_for(lambda: in_sync(cluster, rel), what="replicas in sync")
    svc.RemoveAll(pb("repository").RemoveAllRequest(storage_name="default"), timeout=60)
    for name, node in cluster.nodes.items():
        assert os.listdir(node.storages[name]) == [], name
    for rel in ("a.git", "group/b.git"):
        assert not svc.RepositoryExists(pb("repository").RepositoryExistsRequest(
            repository=cluster.praefect.repo(rel)), timeout=10).exists
        with pytest.raises(grpc.RpcError) as e:
            cluster.praefect.metadata(rel)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    # the virtual storage takes new repositories afterwards
    svc.CreateRepository(pb("repository").CreateRepositoryRequest(repository=cluster.praefect.repo("a.git")),
                         timeout=30)
    wait_for(lambda: in_sync(cluster, "a.git"), what="the new repository on every replica")
