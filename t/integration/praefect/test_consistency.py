"""Strong consistency: writes are voted on by the replicas before they are acknowledged."""
import os
import subprocess
import threading

import grpc
import pytest

from praefect_itest import Cluster, wait_for
from gitaly_itest import git, make_bare_repo, pb
from test_praefect import create_repo, gitaly_ssh_env, push, replicas_in_sync, work_repo
from test_failover import commit_on, try_push


def refs_on(cluster, name, replica_path):
    path = os.path.join(cluster.nodes[name].storages[name], replica_path)
    return git("for-each-ref", "--format=%(objectname) %(refname)", cwd=path)


def test_push_is_on_every_node_when_acknowledged(cluster, tmp_path):
    create_repo(cluster, "strong.git")
    src = work_repo(tmp_path)
    push(cluster, src, "strong.git", "--all")
    # no waiting: the push returned, so every replica has it at the same generation
    md = cluster.praefect.metadata("strong.git")
    assert len(md.replicas) == 3
    assert all(r.generation == md.generation for r in md.replicas)
    sums = {r.storage: cluster.checksum(r.storage, md.replica_path) for r in md.replicas}
    assert len(set(sums.values())) == 1
    refs = {r.storage: refs_on(cluster, r.storage, md.replica_path) for r in md.replicas}
    assert len(set(refs.values())) == 1 and "refs/heads/feature" in refs[md.primary]
    # and no replication job was needed for it
    for name, node in cluster.nodes.items():
        assert "ReplicateRepository" not in node.log()


def test_diverged_secondary_votes_differently_and_is_repaired(cluster, tmp_path):
    create_repo(cluster, "diverge.git")
    src = work_repo(tmp_path, branches=("main", "feature"), tags=())
    push(cluster, src, "diverge.git", "main", "feature")
    md = cluster.praefect.metadata("diverge.git")
    secondary = next(r.storage for r in md.replicas if r.storage != md.primary)
    path = os.path.join(cluster.nodes[secondary].storages[secondary], md.replica_path)
    # change a ref on disk behind praefect's back
    main = git("rev-parse", "refs/heads/main", cwd=path).strip()
    git("update-ref", "refs/heads/feature", main, cwd=path)

    commit_on(src, 1)
    git("-C", src, "branch", "-f", "feature", "main")
    assert try_push(cluster, src, "diverge.git")   # main moves: the diverged node's feature is wrong
    subprocess.run(["git", "push", "-q", "-f", "ssh://gitaly/repo.git", "feature"], cwd=src, check=True,
                   env=dict(os.environ, **gitaly_ssh_env(cluster.praefect, "diverge.git", "receive-pack")))
    md2 = cluster.praefect.metadata("diverge.git")
    gens = {r.storage: r.generation for r in md2.replicas}
    assert gens[md2.primary] == md2.generation
    # the diverged secondary was outdated by its differing vote, then repaired by replication
    wait_for(lambda: replicas_in_sync(cluster, "diverge.git"), what="repair of the diverged secondary")
    assert refs_on(cluster, secondary, md.replica_path) == refs_on(cluster, md2.primary, md.replica_path)


def test_no_quorum_refuses_the_write_and_applies_nothing(cluster, tmp_path):
    create_repo(cluster, "quorum.git")
    src = work_repo(tmp_path, branches=("main",), tags=())
    push(cluster, src, "quorum.git", "main")
    md = cluster.praefect.metadata("quorum.git")
    before = refs_on(cluster, md.primary, md.replica_path)
    secondaries = [r.storage for r in md.replicas if r.storage != md.primary]
    for s in secondaries:
        cluster.nodes[s].stop()
    wait_for(lambda: all(not r.healthy for r in cluster.praefect.metadata("quorum.git").replicas
                         if r.storage in secondaries), what="secondaries unhealthy")
    commit_on(src, 1)
    r = subprocess.run(["git", "push", "ssh://gitaly/repo.git", "main"], cwd=src, capture_output=True, text=True,
                       env=dict(os.environ, **gitaly_ssh_env(cluster.praefect, "quorum.git", "receive-pack")))
    assert r.returncode != 0
    assert "write quorum" in r.stderr
    # nothing reached the primary, and reads still see the acknowledged state
    assert refs_on(cluster, md.primary, md.replica_path) == before
    clone = str(tmp_path / "after")
    git("clone", "-q", "--bare", "ssh://gitaly/repo.git", clone,
        env=gitaly_ssh_env(cluster.praefect, "quorum.git", "upload-pack"))
    assert git("for-each-ref", "--format=%(objectname) %(refname)", cwd=clone) == before


def test_hook_refusal_on_the_primary_applies_nothing(cluster, tmp_path):
    create_repo(cluster, "hooked.git")
    src = work_repo(tmp_path, branches=("main",), tags=())
    push(cluster, src, "hooked.git", "main")
    md = cluster.praefect.metadata("hooked.git")
    hooks = os.path.join(cluster.nodes[md.primary].storages[md.primary], md.replica_path, "custom_hooks")
    os.makedirs(hooks, exist_ok=True)
    with open(os.path.join(hooks, "pre-receive"), "w") as f:
        f.write("#!/bin/sh\necho 'refused by policy' >&2\nexit 1\n")
    os.chmod(os.path.join(hooks, "pre-receive"), 0o755)
    before = {r.storage: refs_on(cluster, r.storage, md.replica_path) for r in md.replicas}
    commit_on(src, 1)
    r = subprocess.run(["git", "push", "ssh://gitaly/repo.git", "main"], cwd=src, capture_output=True, text=True,
                       env=dict(os.environ, **gitaly_ssh_env(cluster.praefect, "hooked.git", "receive-pack")))
    assert r.returncode != 0 and "refused by policy" in r.stderr
    after = {r.storage: refs_on(cluster, r.storage, md.replica_path) for r in md.replicas}
    assert after == before


def test_concurrent_pushes_all_land_everywhere(tmp_path):
    # 70 pushes at once on 2 cores (and under ASan in CI): nodes answer health checks
    # late; this test is about consistency, so give them a generous failure window
    cluster = Cluster(tmp_path, extra='\n[failover]\nunhealthy_after = "10s"\nhealth_check_timeout = "5s"\n')
    try:
        _concurrent_pushes(cluster, tmp_path)
    finally:
        cluster.stop()


def _concurrent_pushes(cluster, tmp_path):
    paths = ["many-%02d.git" % i for i in range(20)]
    for p in paths:
        create_repo(cluster, p)
    create_repo(cluster, "busy.git")
    base = make_bare_repo(str(tmp_path / "base.git"), branches=("main",))
    push(cluster, base, "busy.git", "main")

    def push_branch(i):
        work = str(tmp_path / ("w%d" % i))
        git("clone", "-q", base, work)
        git("checkout", "-q", "-b", "b%02d" % i, cwd=work)
        with open(os.path.join(work, "f.txt"), "w") as f:
            f.write("%d\n" % i)
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", "branch %d" % i, cwd=work)
        env = dict(os.environ, **gitaly_ssh_env(cluster.praefect, "busy.git", "receive-pack"))
        r = subprocess.run(["git", "push", "-q", "ssh://gitaly/repo.git", "b%02d" % i], cwd=work, env=env,
                           capture_output=True, text=True)
        if r.returncode == 0:
            results[i] = git("rev-parse", "HEAD", cwd=work).strip()
        else:
            errors[i] = r.stderr

    def push_repo(i):
        env = dict(os.environ, **gitaly_ssh_env(cluster.praefect, paths[i], "receive-pack"))
        if subprocess.run(["git", "push", "-q", "ssh://gitaly/repo.git", "main"], cwd=base, env=env,
                          capture_output=True).returncode == 0:
            repo_results[i] = True

    results, repo_results, errors = {}, {}, {}
    threads = [threading.Thread(target=push_branch, args=(i,)) for i in range(50)]
    threads += [threading.Thread(target=push_repo, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 50, "every push should be acknowledged; failures: %r" % list(errors.values())[:3]
    wait_for(lambda: replicas_in_sync(cluster, "busy.git"), timeout=60, what="busy.git in sync")
    md = cluster.praefect.metadata("busy.git")
    for name in cluster.nodes:
        refs = refs_on(cluster, name, md.replica_path)
        for i, sha in results.items():
            assert "%s refs/heads/b%02d" % (sha, i) in refs, (name, i)
    for i in repo_results:
        wait_for(lambda: replicas_in_sync(cluster, paths[i]), timeout=60, what="%s in sync" % paths[i])
    assert len(repo_results) == 20
