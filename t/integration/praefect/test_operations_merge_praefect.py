"""OperationService merges and branch moves through praefect with three real
nodes: every acknowledged operation is on all replicas (equal checksums and
generations, no replication job needed), a refused or abandoned one changes
nothing anywhere."""
import os

import grpc
import pytest

from gitaly_itest import git, pb
from helpers_hooks import detail, write_custom_hook
from test_praefect import create_repo, push, replicas_in_sync, work_repo
from test_operations_merge import Bidi, commit_files, expected_merge, ts, user

REL = "merge.git"


def ops():
    return pb("operations")


@pytest.fixture
def setup(cluster, tmp_path):
    """A repository on all three nodes: main, feature (mergeable into main), clash (conflicts with main)."""
    create_repo(cluster, REL)
    src = work_repo(tmp_path, branches=("main",), tags=())
    base = git("rev-parse", "main", cwd=src).strip()
    oids = {
        "main": commit_files(src, base, {"main.txt": "m\n", "README.md": "hello main\n"}, "on main"),
        "feature": commit_files(src, base, {"feature.txt": "f\n"}, "on feature"),
        "clash": commit_files(src, base, {"README.md": "hello clash\n"}, "clash"),
    }
    oids["ahead"] = commit_files(src, oids["main"], {"ahead.txt": "a\n"}, "ahead")
    for name in ("main", "feature", "clash", "ahead"):
        git("update-ref", "refs/heads/" + name, oids[name], cwd=src)
    push(cluster, src, REL, "--all")
    oids["base"] = base
    md = in_sync(cluster)
    return cluster, src, oids, md


def in_sync(cluster):
    r = replicas_in_sync(cluster, REL)
    assert r, "replicas differ"
    return r[0]


def settled(cluster):
    """After a refused update that had voted (pre-receive's synchronisation vote): a secondary
    that was still on its way may have been cut off and outdated; it is repaired by replication."""
    from praefect_itest import wait_for
    return wait_for(lambda: replicas_in_sync(cluster, REL), what="replicas in sync")[0]


def replica_path(cluster, md, storage):
    return os.path.join(cluster.nodes[storage].storages[storage], md.replica_path)


def branch_everywhere(cluster, md, ref):
    return {r.storage: git("rev-parse", "--verify", "-q", ref, cwd=replica_path(cluster, md, r.storage),
                           check=False).strip() for r in md.replicas}


def no_replication(cluster):
    return all("ReplicateRepository" not in n.log() for n in cluster.nodes.values())


def stub(cluster):
    return cluster.praefect.stub("OperationService")


def merge_request(cluster, oids, **kw):
    d = dict(repository=cluster.praefect.repo(REL, gl_repository="project-1"), user=user(),
             commit_id=oids["feature"], branch=b"main", message=b"Merge feature\n", timestamp=ts())
    d.update(kw)
    return ops().UserMergeBranchRequest(**d)


def test_merge_branch_lands_on_every_replica(setup):
    cluster, src, oids, md0 = setup
    b = Bidi(stub(cluster))
    b.send(merge_request(cluster, oids))
    first = b.recv().commit_id
    # three replicas computed the merge; none moved yet
    assert set(branch_everywhere(cluster, md0, "main").values()) == {oids["main"]}
    b.send(ops().UserMergeBranchRequest(apply=True))
    assert b.recv().branch_update.commit_id == first
    b.finish()   # the status comes after praefect recorded who holds the change
    # what git computes for the same inputs: the same commit on every replica, voted equal
    assert first == expected_merge(src, oids["main"], oids["feature"], b"Merge feature\n")
    md = in_sync(cluster)
    assert md.generation == md0.generation + 1
    assert set(branch_everywhere(cluster, md, "main").values()) == {first}
    assert no_replication(cluster)


def test_merge_branch_conflict_changes_nothing(setup):
    cluster, src, oids, md0 = setup
    b = Bidi(stub(cluster))
    b.send(merge_request(cluster, oids, commit_id=oids["clash"]))
    with pytest.raises(grpc.RpcError) as e:
        b.recv()
    b.close()
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                   "merging commits: merge: there are conflicting files")
    d = detail(e.value, ops().UserMergeBranchError)
    assert list(d.merge_conflict.conflicting_files) == [b"README.md"]
    assert list(d.merge_conflict.conflicting_commit_ids) == [oids["main"], oids["clash"]]
    md = in_sync(cluster)
    assert md.generation == md0.generation


def test_merge_branch_abandoned_half_way_changes_nothing(setup):
    cluster, src, oids, md0 = setup
    sums0 = {r.storage: cluster.checksum(r.storage, md0.replica_path) for r in md0.replicas}
    b = Bidi(stub(cluster))
    b.send(merge_request(cluster, oids))
    oid = b.recv().commit_id
    b.close()
    with pytest.raises(grpc.RpcError):
        b.recv()
    b = Bidi(stub(cluster))
    b.send(merge_request(cluster, oids))
    b.recv()
    b.send(ops().UserMergeBranchRequest(apply=False))
    with pytest.raises(grpc.RpcError) as e:
        b.recv()
    b.close()
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "merge aborted by client")
    md = in_sync(cluster)
    assert md.generation == md0.generation
    assert {r.storage: cluster.checksum(r.storage, md.replica_path) for r in md.replicas} == sums0
    for r in md.replicas:
        assert git("cat-file", "-t", oid, cwd=replica_path(cluster, md, r.storage), check=False).strip() == ""
        tmp = os.path.join(cluster.nodes[r.storage].storages[r.storage], "+gitaly", "tmp")
        assert not [d for d in (os.listdir(tmp) if os.path.isdir(tmp) else []) if d.startswith("quarantine-")]


def test_merge_branch_refused_by_pre_receive(setup):
    cluster, src, oids, md0 = setup
    for r in md0.replicas:
        write_custom_hook(replica_path(cluster, md0, r.storage), "pre-receive",
                          "#!/bin/sh\necho not today >&2\nexit 1\n")
    b = Bidi(stub(cluster))
    b.send(merge_request(cluster, oids))
    b.recv()
    b.send(ops().UserMergeBranchRequest(apply=True))
    with pytest.raises(grpc.RpcError) as e:
        b.recv()
    b.close()
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.PERMISSION_DENIED, "not today\n")
    assert detail(e.value, ops().UserMergeBranchError).custom_hook.stderr == b"not today\n"
    md = settled(cluster)
    assert set(branch_everywhere(cluster, md, "main").values()) == {oids["main"]}


def test_merge_branch_stale_expected_old_oid(setup):
    cluster, src, oids, md0 = setup
    b = Bidi(stub(cluster))
    b.send(merge_request(cluster, oids, expected_old_oid=oids["base"]))
    b.recv()
    b.send(ops().UserMergeBranchRequest(apply=True))
    with pytest.raises(grpc.RpcError) as e:
        b.recv()
    b.close()
    assert (e.value.code(), e.value.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION, "reference update: reference does not point to expected object")
    assert detail(e.value, ops().UserMergeBranchError).WhichOneof("error") == "reference_update"
    md = settled(cluster)
    assert set(branch_everywhere(cluster, md, "main").values()) == {oids["main"]}


def test_merge_to_ref_ff_and_update_branch_land_on_every_replica(setup):
    cluster, src, oids, md0 = setup
    repo = cluster.praefect.repo(REL, gl_repository="project-1")
    gen = md0.generation

    resp = stub(cluster).UserMergeToRef(ops().UserMergeToRefRequest(
        repository=repo, user=user(), source_sha=oids["feature"], first_parent_ref=b"refs/heads/main",
        target_ref=b"refs/merge-requests/7/merge", message=b"MR 7", timestamp=ts()), timeout=30)
    assert resp.commit_id == expected_merge(src, oids["main"], oids["feature"], b"MR 7")
    md = in_sync(cluster)
    assert md.generation == gen + 1
    assert set(branch_everywhere(cluster, md, "refs/merge-requests/7/merge").values()) == {resp.commit_id}

    resp = stub(cluster).UserFFBranch(ops().UserFFBranchRequest(
        repository=repo, user=user(), commit_id=oids["ahead"], branch=b"main"), timeout=30)
    assert resp.branch_update.commit_id == oids["ahead"]
    md = in_sync(cluster)
    assert md.generation == gen + 2
    assert set(branch_everywhere(cluster, md, "main").values()) == {oids["ahead"]}

    with pytest.raises(grpc.RpcError) as e:
        stub(cluster).UserFFBranch(ops().UserFFBranchRequest(
            repository=repo, user=user(), commit_id=oids["feature"], branch=b"main"), timeout=30)
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "not fast forward")

    resp = stub(cluster).UserUpdateBranch(ops().UserUpdateBranchRequest(
        repository=repo, user=user(), branch_name=b"feature", newrev=oids["clash"].encode(),
        oldrev=oids["feature"].encode()), timeout=30)
    assert resp.pre_receive_error == ""
    md = in_sync(cluster)
    assert md.generation == gen + 3
    assert set(branch_everywhere(cluster, md, "feature").values()) == {oids["clash"]}
    assert no_replication(cluster)

    # a stale oldrev: refused everywhere
    with pytest.raises(grpc.RpcError) as e:
        stub(cluster).UserUpdateBranch(ops().UserUpdateBranchRequest(
            repository=repo, user=user(), branch_name=b"feature", newrev=oids["main"].encode(),
            oldrev=oids["feature"].encode()), timeout=30)
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                   "Could not update feature. Please refresh and try again.")
    md = settled(cluster)
    assert set(branch_everywhere(cluster, md, "feature").values()) == {oids["clash"]}


def test_replica_computing_another_merge_loses_its_vote(setup):
    """A secondary whose branch diverged behind praefect's back writes another commit: its vote
    differs, so it is outdated and repaired from the primary rather than acknowledged."""
    from praefect_itest import wait_for
    cluster, src, oids, md0 = setup
    secondary = next(r.storage for r in md0.replicas if r.storage != md0.primary)
    git("update-ref", "refs/heads/main", oids["ahead"], cwd=replica_path(cluster, md0, secondary))
    b = Bidi(stub(cluster))
    b.send(merge_request(cluster, oids))
    oid = b.recv().commit_id
    b.send(ops().UserMergeBranchRequest(apply=True))
    assert b.recv().branch_update.commit_id == oid
    b.finish()
    md = cluster.praefect.metadata(REL)
    gens = {r.storage: r.generation for r in md.replicas}
    assert gens[md.primary] == md.generation == md0.generation + 1
    assert gens[secondary] < md.generation
    wait_for(lambda: replicas_in_sync(cluster, REL), what="repair of the diverged secondary")
    assert set(branch_everywhere(cluster, cluster.praefect.metadata(REL), "main").values()) == {oid}


def test_cherry_pick_and_revert_land_on_every_replica(setup):
    cluster, src, oids, md0 = setup
    repo = cluster.praefect.repo(REL, gl_repository="project-1")
    resp = stub(cluster).UserCherryPick(ops().UserCherryPickRequest(
        repository=repo, user=user(), commit=pb("shared").GitCommit(id=oids["feature"]), branch_name=b"main",
        message=b"pick", timestamp=ts(), start_repository=repo), timeout=30)   # the same project, not rewritten
    picked = resp.branch_update.commit_id
    md = in_sync(cluster)
    assert md.generation == md0.generation + 1
    assert set(branch_everywhere(cluster, md, "main").values()) == {picked}
    assert set(branch_everywhere(cluster, md, "main^").values()) == {oids["main"]}

    resp = stub(cluster).UserRevert(ops().UserRevertRequest(
        repository=repo, user=user(), commit=pb("shared").GitCommit(id=picked), branch_name=b"main",
        message=b"revert the pick", timestamp=ts()), timeout=30)
    reverted = resp.branch_update.commit_id
    md = in_sync(cluster)
    assert md.generation == md0.generation + 2
    assert set(branch_everywhere(cluster, md, "main").values()) == {reverted}
    assert set(branch_everywhere(cluster, md, "main^{tree}").values()) == {
        git("rev-parse", oids["main"] + "^{tree}", cwd=src).strip()}

    # a conflict and a dry run change nothing anywhere
    with pytest.raises(grpc.RpcError) as e:
        stub(cluster).UserCherryPick(ops().UserCherryPickRequest(
            repository=repo, user=user(), commit=pb("shared").GitCommit(id=oids["clash"]), branch_name=b"main",
            message=b"pick", timestamp=ts()), timeout=30)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    resp = stub(cluster).UserCherryPick(ops().UserCherryPickRequest(
        repository=repo, user=user(), commit=pb("shared").GitCommit(id=oids["feature"]), branch_name=b"main",
        message=b"pick", timestamp=ts(), dry_run=True), timeout=30)
    assert resp.branch_update.commit_id == reverted
    md = in_sync(cluster)
    assert set(branch_everywhere(cluster, md, "main").values()) == {reverted}
    assert no_replication(cluster)


def test_squash_is_written_on_every_replica(setup):
    cluster, src, oids, md0 = setup
    resp = stub(cluster).UserSquash(ops().UserSquashRequest(
        repository=cluster.praefect.repo(REL, gl_repository="project-1"), user=user(),
        author=pb("shared").User(name=b"Ann", email=b"ann@example.com"), start_sha=oids["base"],
        end_sha=oids["ahead"], commit_message=b"Squashed", timestamp=ts()), timeout=30)
    md = in_sync(cluster)
    for r in md.replicas:
        assert git("cat-file", "-t", resp.squash_sha, cwd=replica_path(cluster, md, r.storage)).strip() == "commit"
    assert no_replication(cluster)


def test_rebase_to_ref_lands_on_every_replica(setup):
    cluster, src, oids, md0 = setup
    resp = stub(cluster).UserRebaseToRef(ops().UserRebaseToRefRequest(
        repository=cluster.praefect.repo(REL, gl_repository="project-1"), user=user(),
        source_sha=oids["feature"], first_parent_ref=b"refs/heads/main", target_ref=b"refs/merge-requests/3/train",
        timestamp=ts()), timeout=30)
    md = in_sync(cluster)
    assert md.generation == md0.generation + 1
    assert set(branch_everywhere(cluster, md, "refs/merge-requests/3/train").values()) == {resp.commit_id}
    assert set(branch_everywhere(cluster, md, "refs/merge-requests/3/train^").values()) == {oids["main"]}
    assert no_replication(cluster)


def test_rebase_confirmable_lands_on_every_replica(setup):
    from test_operations_merge import RebaseBidi
    cluster, src, oids, md0 = setup
    repo = cluster.praefect.repo(REL, gl_repository="project-1")
    b = RebaseBidi(stub(cluster))
    b.send(ops().UserRebaseConfirmableRequest(header=ops().UserRebaseConfirmableRequest.Header(
        repository=repo, user=user(), branch=b"feature", branch_sha=oids["feature"], remote_repository=repo,
        remote_branch=b"main", timestamp=ts())))
    sha = b.recv().rebase_sha
    assert set(branch_everywhere(cluster, md0, "feature").values()) == {oids["feature"]}
    b.send(ops().UserRebaseConfirmableRequest(apply=True))
    assert b.recv().rebase_applied
    b.finish()
    md = in_sync(cluster)
    assert md.generation == md0.generation + 1
    assert set(branch_everywhere(cluster, md, "feature").values()) == {sha}
    assert set(branch_everywhere(cluster, md, "feature^").values()) == {oids["main"]}
    assert no_replication(cluster)
