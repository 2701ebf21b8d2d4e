"""Housekeeping against a real gitaly and real git: OptimizeRepository (heuristical and eager),
stale file removal, PruneUnreachableObjects, RemoveAll and the [daily_maintenance] window
(docs/technical/housekeeping.md)."""
import glob
import json
import os
import shutil
import subprocess
import time

import grpc
import pytest

from gitaly_itest import GitalyNode, git, make_bare_repo, pb, wait_for

HEURISTICAL = 1
EAGER = 2


def optimize(node, rel, strategy=0, storage="default"):
    return node.stub("RepositoryService").OptimizeRepository(
        pb("repository").OptimizeRepositoryRequest(repository=node.repo(rel, storage=storage), strategy=strategy),
        timeout=120)


def loose_objects(path):
    return [p for p in glob.glob(os.path.join(path, "objects", "??", "*")) if len(os.path.basename(p)) == 38]


def packs(path):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(path, "objects", "pack", "pack-*.pack")))


def refs(path):
    return git("for-each-ref", "--format=%(refname) %(objectname)", cwd=path)


def fsck_clean(path):
    r = git("fsck", "--no-dangling", "--no-progress", cwd=path, check=False)
    assert r == "" or "error" not in r


def served_branches(node, rel):
    stub = node.stub("RefService")
    out = {}
    for resp in stub.FindAllBranches(pb("ref").FindAllBranchesRequest(repository=node.repo(rel)), timeout=60):
        for b in resp.branches:
            out[b.name.decode()] = b.target.id
    return out


def age(path, seconds):
    t = time.time() - seconds
    os.utime(path, (t, t))


def write(path, data=b"", seconds=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if seconds:
        age(path, seconds)
    return path


def repo_with_history(node, rel, commits=5):
    path = make_bare_repo(node.repo_path(rel), branches=("main", "dev", "feature/x"), tags=("v1",))
    work = path + ".w"
    git("clone", "-q", path, work)
    for i in range(commits):
        with open(os.path.join(work, "f%d.txt" % i), "w") as f:
            f.write("line %d\n" % i * 50)
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", "commit %d" % i, cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    shutil.rmtree(work)
    return path


def test_optimize_packs_loose_objects_and_the_repository_stays_whole(gitaly_node):
    path = repo_with_history(gitaly_node, "a.git")
    before = refs(path)
    branches = served_branches(gitaly_node, "a.git")
    assert loose_objects(path) and not packs(path)

    optimize(gitaly_node, "a.git")

    assert loose_objects(path) == []
    assert len(packs(path)) == 1
    # heuristics: no multi-pack-index yet, so a geometric repack writes one, and a commit-graph chain
    assert os.path.exists(os.path.join(path, "objects", "pack", "multi-pack-index"))
    assert os.path.exists(os.path.join(path, "objects", "info", "commit-graphs", "commit-graph-chain"))
    fsck_clean(path)
    assert refs(path) == before
    assert served_branches(gitaly_node, "a.git") == branches
    git("commit-graph", "verify", cwd=path)
    git("multi-pack-index", "verify", cwd=path)


def test_heuristical_leaves_an_optimized_repository_alone_and_eager_repacks_fully(gitaly_node):
    path = repo_with_history(gitaly_node, "b.git")
    optimize(gitaly_node, "b.git", HEURISTICAL)
    first = packs(path)
    optimize(gitaly_node, "b.git", HEURISTICAL)
    assert packs(path) == first
    assert not os.path.exists(os.path.join(path, ".gitaly-full-repack-timestamp"))
    loose_refs = [p for p in glob.glob(os.path.join(path, "refs", "**"), recursive=True) if os.path.isfile(p)]
    assert loose_refs, "few loose references stay loose under the heuristics"

    before = refs(path)
    optimize(gitaly_node, "b.git", EAGER)
    assert len(packs(path)) == 1 and packs(path) != first
    assert os.path.exists(os.path.join(path, ".gitaly-full-repack-timestamp"))
    assert glob.glob(os.path.join(path, "objects", "pack", "*.bitmap")), "a full repack without alternates writes a bitmap"
    # eager packs every reference
    assert [p for p in glob.glob(os.path.join(path, "refs", "**"), recursive=True) if os.path.isfile(p)] == []
    assert refs(path) == before
    fsck_clean(path)


def test_heuristical_packs_references_past_the_loose_limit(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("refs.git"))
    head = git("rev-parse", "main", cwd=path).strip()
    for i in range(20):
        git("update-ref", "refs/heads/b%02d" % i, head, cwd=path)
    before = refs(path)
    optimize(gitaly_node, "refs.git")
    assert not glob.glob(os.path.join(path, "refs", "heads", "b*"))
    assert refs(path) == before
    assert len(served_branches(gitaly_node, "refs.git")) == 21


def test_heuristical_rolls_up_many_loose_objects_incrementally(gitaly_node):
    path = repo_with_history(gitaly_node, "loose.git")
    optimize(gitaly_node, "loose.git")
    first = packs(path)
    # 1100 new loose objects, unreachable: past the limit of 1024, the multi-pack-index is fine
    names = [write(os.path.join(path + ".blobs", "%d" % i), b"blob %d\n" % i) for i in range(1100)]
    git("hash-object", "-w", "--stdin-paths", cwd=path, input=("\n".join(names) + "\n").encode())
    assert len(loose_objects(path)) >= 1100
    optimize(gitaly_node, "loose.git")
    assert loose_objects(path) == []
    assert len(packs(path)) == 2 and set(first) < set(packs(path))
    fsck_clean(path)


def test_optimize_removes_stale_files_and_keeps_fresh_ones(gitaly_node):
    path = repo_with_history(gitaly_node, "stale.git")
    hour, day = 3600, 86400
    gone = [
        write(os.path.join(path, "refs", "heads", "old.lock"), b"x", 2 * hour),
        write(os.path.join(path, "objects", "info", "alternates.lock"), seconds=20 * 60),
        write(os.path.join(path, "objects", "info", "commit-graphs", "commit-graph-chain.lock"), seconds=20 * 60),
        write(os.path.join(path, "packed-refs.new"), seconds=20 * 60),
        write(os.path.join(path, "objects", "pack", "pack-%s.keep" % ("1" * 40)), b"receive-pack 123 on host\n",
              8 * day),
        write(os.path.join(path, "objects", "ab", "tmp_obj_XYZ"), b"t", 2 * day),
        write(os.path.join(path, "info", "refs"), b"x"),
        write(os.path.join(path, "objects", "info", "packs"), b"x"),
        write(os.path.join(path, "refs", "heads", "broken"), b"", 2 * day),
    ]
    empty_dir = os.path.join(path, "refs", "heads", "empty", "deeper")
    os.makedirs(empty_dir)
    age(empty_dir, 2 * day)
    age(os.path.dirname(empty_dir), 2 * day)
    kept = [
        write(os.path.join(path, "info", "attributes.lock"), b"x"),
        write(os.path.join(path, "HEAD.lock"), b"x"),
        write(os.path.join(path, "refs", "heads", "fresh.lock"), b"x"),
        # inside their grace periods
        write(os.path.join(path, "objects", "pack", "pack-%s.keep" % ("2" * 40)), b"receive-pack 1 on h\n", 2 * day),
        write(os.path.join(path, "objects", "cd", "tmp_obj_ABC"), b"t", hour),
        # written by an administrator: never ours to remove
        write(os.path.join(path, "objects", "pack", "pack-%s.keep" % ("3" * 40)), b"keep me\n", 30 * day),
    ]
    optimize(gitaly_node, "stale.git")
    for p in gone:
        assert not os.path.exists(p), p
    assert not os.path.exists(os.path.dirname(empty_dir))
    for p in kept:
        assert os.path.exists(p), p
    assert os.path.isdir(os.path.join(path, "refs", "heads"))
    log = gitaly_node.log()
    assert '"optimized repository"' in log


def test_optimize_errors(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("ok.git"))
    svc = gitaly_node.stub("RepositoryService")
    with pytest.raises(grpc.RpcError) as e:
        optimize(gitaly_node, "missing.git")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert "repository not found" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        svc.OptimizeRepository(pb("repository").OptimizeRepositoryRequest(), timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "repository not set" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        optimize(gitaly_node, "ok.git", storage="nope")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        optimize(gitaly_node, "ok.git", strategy=7)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == "unsupported optimization strategy 7"
    # an empty repository is fine
    git("init", "-q", "--bare", gitaly_node.repo_path("empty.git"))
    optimize(gitaly_node, "empty.git", EAGER)
    optimize(gitaly_node, "empty.git")


def test_a_repack_that_fails_is_an_internal_error_with_gits_words(gitaly_node):
    path = repo_with_history(gitaly_node, "broken.git")
    # a corrupt object makes git repack fail
    obj = loose_objects(path)[0]
    os.chmod(obj, 0o644)
    with open(obj, "wb") as f:
        f.write(b"garbage")
    with pytest.raises(grpc.RpcError) as e:
        optimize(gitaly_node, "broken.git", EAGER)
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert e.value.details().startswith("could not repack: repack failed with error code ")


def prune(node, rel):
    return node.stub("RepositoryService").PruneUnreachableObjects(
        pb("repository").PruneUnreachableObjectsRequest(repository=node.repo(rel)), timeout=120)


def test_prune_unreachable_objects_removes_old_unreachable_objects_only(gitaly_node):
    path = repo_with_history(gitaly_node, "p.git")
    old = git("hash-object", "-w", "--stdin", cwd=path, input=b"old unreachable\n").strip()
    new = git("hash-object", "-w", "--stdin", cwd=path, input=b"new unreachable\n").strip()
    age(os.path.join(path, "objects", old[:2], old[2:]), 3600)
    before = refs(path)

    prune(gitaly_node, "p.git")

    r = subprocess.run(["git", "-C", path, "cat-file", "-e", old], capture_output=True)
    assert r.returncode != 0, "the old unreachable object is gone"
    git("cat-file", "-e", new, cwd=path)   # within the 30 minute grace: kept (in the cruft pack)
    assert loose_objects(path) == []
    assert refs(path) == before
    fsck_clean(path)
    git("commit-graph", "verify", cwd=path)


def test_prune_unreachable_objects_refuses_pools_and_missing_repositories(gitaly_node):
    pool = "@pools/ab/cd/abcd" + "0" * 60 + ".git"
    make_bare_repo(gitaly_node.repo_path(pool))
    with pytest.raises(grpc.RpcError) as e:
        prune(gitaly_node, pool)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == "pruning objects for object pool"
    with pytest.raises(grpc.RpcError) as e:
        prune(gitaly_node, "missing.git")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_optimize_never_prunes_a_pool(gitaly_node):
    pool = "@pools/12/34/1234" + "0" * 60 + ".git"
    path = repo_with_history(gitaly_node, pool)
    dangling = git("hash-object", "-w", "--stdin", cwd=path, input=b"pool object\n").strip()
    age(os.path.join(path, "objects", dangling[:2], dangling[2:]), 30 * 86400)
    optimize(gitaly_node, pool, EAGER)
    git("cat-file", "-e", dangling, cwd=path)


def test_remove_all_empties_the_storage(make_gitaly):
    node = make_gitaly("n", storages=("default", "other"))
    make_bare_repo(node.repo_path("x/a.git"))
    make_bare_repo(node.repo_path("b.git"))
    make_bare_repo(node.repo_path("c.git", storage="other"))
    svc = node.stub("RepositoryService")
    svc.RemoveAll(pb("repository").RemoveAllRequest(storage_name="default"), timeout=60)
    assert os.path.isdir(node.storages["default"])
    assert os.listdir(node.storages["default"]) == []
    assert os.path.isdir(node.repo_path("c.git", storage="other"))
    # the storage still works afterwards
    svc.CreateRepository(pb("repository").CreateRepositoryRequest(repository=node.repo("new.git")), timeout=60)
    assert os.path.isdir(node.repo_path("new.git"))
    with pytest.raises(grpc.RpcError) as e:
        svc.RemoveAll(pb("repository").RemoveAllRequest(storage_name="nope"), timeout=60)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith("remove all: storage name not found")


# --- [daily_maintenance] ---

def daily_node(tmp_path, duration, repos):
    """A gitaly whose window opens about four seconds after it starts (the skew test hook)."""
    now = time.time()
    start = (int(now) // 60 + 2) * 60          # a minute boundary at least a minute away
    lt = time.localtime(start)
    extra = "\n[daily_maintenance]\nstart_hour = %d\nstart_minute = %d\nduration = \"%s\"\nstorages = [\"default\"]\n" % (
        lt.tm_hour, lt.tm_min, duration)
    node = GitalyNode(str(tmp_path / "daily"), extra_config=extra)
    paths = [repo_with_history(node, "g%d/r.git" % i, commits=1) for i in range(repos)]
    os.environ["GITALY_TESTING_DAILY_MAINTENANCE_SKEW_S"] = str(int(start - time.time()) - 4)
    try:
        node.start()
    finally:
        del os.environ["GITALY_TESTING_DAILY_MAINTENANCE_SKEW_S"]
    return node, paths


def log_lines(node, msg):
    out = []
    for line in node.log().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("msg") == msg:
            out.append(e)
    return out


def test_daily_maintenance_optimizes_every_repository_once(tmp_path):
    node, paths = daily_node(tmp_path, "5m", 3)
    try:
        assert all(loose_objects(p) for p in paths)
        wait_for(lambda: log_lines(node, "maintenance: daily completed"), timeout=60, what="the daily window")
        for p in paths:
            assert loose_objects(p) == [], p
            fsck_clean(p)
        done = log_lines(node, "maintenance: repo optimization succeeded")
        assert sorted(e["relative_path"] for e in done) == ["g0/r.git", "g1/r.git", "g2/r.git"]
        # the next window is tomorrow: new loose objects stay loose meanwhile
        scheduled = log_lines(node, "maintenance: daily scheduled")
        assert len(scheduled) == 2 and scheduled[0]["scheduled"] != scheduled[1]["scheduled"]
        git("hash-object", "-w", "--stdin", cwd=paths[0], input=b"after the window\n")
        time.sleep(3)
        assert len(log_lines(node, "maintenance: repo optimization succeeded")) == 3
        assert len(loose_objects(paths[0])) == 1
    finally:
        node.stop()


def test_daily_maintenance_stops_when_the_window_closes(tmp_path):
    node, paths = daily_node(tmp_path, "2s", 6)
    try:
        wait_for(lambda: log_lines(node, "maintenance: daily completed"), timeout=60, what="the daily window")
        time.sleep(2)
        untouched = [p for p in paths if loose_objects(p)]
        # one repository per second at most, and the window lasts two
        assert len(untouched) >= 4
        assert len(log_lines(node, "maintenance: repo optimization succeeded")) <= 2
    finally:
        node.stop()


def test_daily_maintenance_config_is_checked(tmp_path):
    from gitaly_itest import BUILD
    for extra, want in (
        ('start_hour = 24\nduration = "1m"', "outside range (0-23)"),
        ('start_minute = 60\nduration = "1m"', "outside range (0-59)"),
        ('duration = "25h"', "must be less than 24 hours"),
        ('duration = "1m"\nstorages = ["nope"]', 'specified storage "nope" does not exist in configuration'),
    ):
        node = GitalyNode(str(tmp_path / ("c%d" % abs(hash(extra)))), extra_config="\n[daily_maintenance]\n" + extra + "\n")
        r = subprocess.run([os.path.join(BUILD, "gitaly", "gitaly"), node.config_path], capture_output=True, timeout=30)
        assert r.returncode != 0
        assert want in r.stderr.decode() + r.stdout.decode()


def test_concurrent_optimizations_of_one_repository_both_succeed(gitaly_node):
    from concurrent.futures import ThreadPoolExecutor
    path = repo_with_history(gitaly_node, "c.git", commits=8)
    before = refs(path)
    svc = gitaly_node.stub("RepositoryService")
    req = pb("repository").OptimizeRepositoryRequest(repository=gitaly_node.repo("c.git"), strategy=EAGER)
    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda _: svc.OptimizeRepository(req, timeout=120), range(4)))
    assert len(results) == 4
    assert loose_objects(path) == []
    assert refs(path) == before
    fsck_clean(path)
    # nothing left locked: a later write works
    head = git("rev-parse", "main", cwd=path).strip()
    git("update-ref", "refs/heads/after", head, cwd=path)
    assert not glob.glob(os.path.join(path, "**", "*.lock"), recursive=True)


def test_a_cancelled_optimization_leaves_the_repository_usable(gitaly_node):
    path = repo_with_history(gitaly_node, "cancel.git", commits=8)
    stub = gitaly_node.stub("RepositoryService")
    fut = stub.OptimizeRepository.future(
        pb("repository").OptimizeRepositoryRequest(repository=gitaly_node.repo("cancel.git"), strategy=EAGER),
        timeout=120)
    fut.cancel()
    with pytest.raises(grpc.FutureCancelledError):
        fut.result()
    # the node stays up and a new optimization completes (one that finds the cancelled run still
    # stopping answers OK without work, as upstream: so ask until the objects are packed)
    wait_for(lambda: optimize(gitaly_node, "cancel.git", EAGER) is not None and not loose_objects(path),
             what="a later optimization")
    fsck_clean(path)


def test_optimizations_are_counted_in_upstreams_series(tmp_path):
    from test_gitaly_metrics import free_port, scrape, value, with_metrics
    port = free_port()
    node = with_metrics(GitalyNode(str(tmp_path / "m")), "127.0.0.1:%d" % port).start()
    try:
        path = repo_with_history(node, "m.git")
        write(os.path.join(path, "objects", "ab", "tmp_obj_1"), b"x", 2 * 86400)
        write(os.path.join(path, "info", "refs"), b"x")
        optimize(node, "m.git")
        s = scrape(port)
        task = "gitaly_housekeeping_tasks_total"
        assert value(s, task, housekeeping_task="total", status="success") == 1
        assert value(s, task, housekeeping_task="packed_objects_geometric", status="success") == 1
        assert value(s, task, housekeeping_task="written_multi_pack_index", status="success") == 1
        assert value(s, task, housekeeping_task="written_commit_graph_full", status="success") == 1
        assert value(s, task, housekeeping_task="pruned_objects") == 0
        pruned = "gitaly_housekeeping_pruned_files_total"
        assert value(s, pruned, filetype="objects") == 1
        assert value(s, pruned, filetype="serverinfo") == 1
        assert (pruned, frozenset({("filetype", "reflocks")})) in s   # every kind, 0 included
        with pytest.raises(grpc.RpcError):
            optimize(node, "missing.git")
        assert value(scrape(port), task, housekeeping_task="total") == 1
    finally:
        node.stop()


def test_configuration_validate_checks_the_daily_window(tmp_path):
    from gitaly_itest import BUILD
    node = GitalyNode(str(tmp_path / "v"), extra_config="\n[daily_maintenance]\nstart_hour = 24\nstart_minute = 60\n"
                      'duration = "25h"\nstorages = ["default", "nope"]\n')
    with open(node.config_path) as f:
        text = f.read()
    r = subprocess.run([os.path.join(BUILD, "gitaly", "gitaly"), "configuration", "validate"], input=text,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    errors = [e for e in json.loads(r.stdout)["errors"] if e["key"][0] == "daily_maintenance"]
    assert errors == [
        {"key": ["daily_maintenance", "start_hour"], "message": "not in range: 24 out of [0, 23]"},
        {"key": ["daily_maintenance", "start_minute"], "message": "not in range: 60 out of [0, 59]"},
        {"key": ["daily_maintenance", "duration"], "message": "not in range: 25h0m0s out of [0s, 24h0m0s]"},
        {"key": ["daily_maintenance", "storages", "[1]"], "message": 'doesn\'t exist: "nope"'},
    ]
    r = subprocess.run([os.path.join(BUILD, "gitaly", "gitaly"), "configuration", "validate"],
                       input=text.replace("start_hour = 24", "disabled = true"), capture_output=True, text=True,
                       timeout=30)
    assert not [e for e in json.loads(r.stdout or '{"errors": []}')["errors"] if e["key"][0] == "daily_maintenance"]


def test_a_repository_that_joined_a_pool_is_repacked_fully_without_a_bitmap(gitaly_node):
    pool_rel = "@pools/aa/bb/aabb" + "1" * 60 + ".git"
    pool = repo_with_history(gitaly_node, pool_rel, commits=3)
    git("repack", "-adq", cwd=pool)
    member = gitaly_node.repo_path("member.git")
    git("clone", "-q", "--bare", "--shared", pool, member)
    # the member's own objects: a new commit on top of the pool's history
    tree = git("rev-parse", "main^{tree}", cwd=member).strip()
    head = git("commit-tree", "-p", "main", "-m", "member only", tree, cwd=member).strip()
    git("update-ref", "refs/heads/main", head, cwd=member)
    git("repack", "-dq", cwd=member)
    git("repack", "-dq", cwd=member)   # and a second pack
    with open(os.path.join(member, "objects", "info", "alternates"), "a"):
        pass
    assert len(packs(member)) >= 1
    before = refs(member)
    optimize(gitaly_node, "member.git")
    assert os.path.exists(os.path.join(member, ".gitaly-full-repack-timestamp"))
    assert not glob.glob(os.path.join(member, "objects", "pack", "*.bitmap"))
    assert refs(member) == before
    fsck_clean(member)
    # the pool's objects stay in the pool: the member's pack holds only its own commit
    out = git("verify-pack", "-v", glob.glob(os.path.join(member, "objects", "pack", "pack-*.idx"))[0])
    assert head in out and git("rev-parse", "main~1", cwd=member).strip() not in out


def test_optimize_unsets_the_config_keys_upstream_removes(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("cfg.git"))
    for k, v in (("remote.origin.url", "https://example.com/x.git"), ("remote.origin.fetch", "+refs/*:refs/*"),
                 ("remote.origin.mirror", "true"), ("http.https://example.com.extraheader", "Authorization: x"),
                 ("core.commitGraph", "true"), ("core.splitIndex", "true"), ("gitlab.fullpath", "group/cfg"),
                 ("remote.origin.tagOpt", "--no-tags")):
        git("config", k, v, cwd=path)
    optimize(gitaly_node, "cfg.git")
    left = git("config", "--local", "--list", cwd=path)
    for gone in ("remote.origin.url", "remote.origin.fetch", "remote.origin.mirror", "extraheader",
                 "core.commitgraph", "core.splitindex"):
        assert gone not in left.lower(), gone
    assert "gitlab.fullpath=group/cfg" in left
    assert "remote.origin.tagopt=--no-tags" in left
    assert "core.bare=true" in left
    # nothing left to unset: the next run has no config work and still succeeds
    optimize(gitaly_node, "cfg.git")
    assert git("config", "--local", "--list", cwd=path) == left


def test_a_fresh_config_lock_stays_and_blocks_the_config_cleanup(gitaly_node):
    path = make_bare_repo(gitaly_node.repo_path("locked.git"))   # a clone: remote.origin.url is set
    lock = write(os.path.join(path, "config.lock"), b"x")
    with pytest.raises(grpc.RpcError) as e:
        optimize(gitaly_node, "locked.git")
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert "housekeeping could not unset unnecessary config lines" in e.value.details()
    assert "could not lock config file" in e.value.details()
    assert os.path.exists(lock)
    # once older than its 15 minute grace the lock is stale: removed, and the cleanup goes through
    age(lock, 20 * 60)
    optimize(gitaly_node, "locked.git")
    assert not os.path.exists(lock)
    assert "remote.origin.url" not in git("config", "--local", "--list", cwd=path)
