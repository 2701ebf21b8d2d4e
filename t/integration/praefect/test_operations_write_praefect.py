"""UserUpdateSubmodule, UserApplyPatch, ResolveConflicts and ApplyBfgObjectMapStream
through praefect with three real nodes: every replica computes the same commits (the
ones git itself writes), votes equal, and ends at equal checksums and generations
with no replication job needed."""
import hashlib
import json
import os

import pytest

from gitaly_itest import git, pb
from test_praefect import create_repo, push, replicas_in_sync, work_repo
from test_operations_merge import TS, commit_files, ts, user
from test_operations_merge_praefect import no_replication, branch_everywhere
from test_operations_apply_patch import apply as apply_patch
from test_conflicts import resolve, section_id
from test_cleanup_bfg import apply as apply_bfg

REL = "write.git"
SUB1, SUB2 = "1" * 40, "2" * 40
DATE = "%d +0000" % TS
JANE = {"GIT_AUTHOR_NAME": "Jane Doe", "GIT_AUTHOR_EMAIL": "jane@example.com", "GIT_AUTHOR_DATE": DATE,
        "GIT_COMMITTER_NAME": "Jane Doe", "GIT_COMMITTER_EMAIL": "jane@example.com", "GIT_COMMITTER_DATE": DATE}


def with_index(src, base, entries):
    index = src + ".ix"
    env = {"GIT_INDEX_FILE": index}
    git("read-tree", base, cwd=src, env=env)
    for mode, oid, path in entries:
        git("update-index", "--add", "--cacheinfo", "%s,%s,%s" % (mode, oid, path), cwd=src, env=env)
    tree = git("write-tree", cwd=src, env=env).strip()
    os.unlink(index)
    return tree


@pytest.fixture
def setup(cluster, tmp_path):
    create_repo(cluster, REL)
    src = work_repo(tmp_path, branches=("main",), tags=())
    base = git("rev-parse", "main", cwd=src).strip()
    o = {"base": base}
    o["conflict_base"] = commit_files(src, base, {"a": "one\ntwo\nthree\n"}, "base")
    o["ours"] = commit_files(src, o["conflict_base"], {"a": "one\nTWO ours\nthree\n"}, "ours")
    o["theirs"] = commit_files(src, o["conflict_base"], {"a": "one\nTWO theirs\nthree\n"}, "theirs")
    o["sub"] = git("commit-tree", with_index(src, base, [("160000", SUB1, "deps/lib")]), "-p", base,
                   "-m", "submodule", cwd=src).strip()
    for name in ("ours", "theirs", "sub"):
        git("update-ref", "refs/heads/" + name, o[name], cwd=src)
    push(cluster, src, REL, "--all")
    # internal references are hidden from pushes: GitLab writes them with WriteRef
    ka = ("refs/keep-around/" + o["ours"]).encode()
    cluster.praefect.stub("RepositoryService").WriteRef(
        pb("repository").WriteRefRequest(repository=praefect_repo(cluster), ref=ka, revision=o["ours"].encode()),
        timeout=30)
    from praefect_itest import wait_for
    wait_for(lambda: replicas_in_sync(cluster, REL), what="replicas in sync")
    return cluster, src, o, in_sync(cluster)


def in_sync(cluster):
    r = replicas_in_sync(cluster, REL)
    assert r, "replicas differ"
    return r[0]


def praefect_repo(cluster):
    return cluster.praefect.repo(REL, gl_repository="project-1")


def landed(cluster, md0):
    md = in_sync(cluster)
    assert md.generation == md0.generation + 1
    assert no_replication(cluster)
    return md


def test_update_submodule_lands_on_every_replica(setup):
    cluster, src, o, md0 = setup
    req = pb("operations").UserUpdateSubmoduleRequest(
        repository=praefect_repo(cluster), user=user(), commit_sha=SUB2, branch=b"sub", submodule=b"deps/lib",
        commit_message=b"bump\n", timestamp=ts())
    new = cluster.praefect.stub("OperationService").UserUpdateSubmodule(req, timeout=30).branch_update.commit_id
    want = git("commit-tree", with_index(src, o["sub"], [("160000", SUB2, "deps/lib")]), "-p", o["sub"], "-F", "-",
               cwd=src, env=JANE, input=b"bump\n").strip()
    assert new == want
    md = landed(cluster, md0)
    assert set(branch_everywhere(cluster, md, "refs/heads/sub").values()) == {want}


def test_apply_patch_lands_on_every_replica(setup, tmp_path):
    cluster, src, o, md0 = setup
    w = str(tmp_path / "patchwork")
    git("clone", "-q", src, w)
    git("checkout", "-q", "-b", "topic", o["ours"], cwd=w)
    with open(os.path.join(w, "new.txt"), "w") as f:
        f.write("new\n")
    git("add", "new.txt", cwd=w)
    git("commit", "-q", "-m", "Add new.txt", cwd=w)
    mails = git("format-patch", "--stdout", "-1", cwd=w).encode()
    h = pb("operations").UserApplyPatchRequest.Header(repository=praefect_repo(cluster), user=user(),
                                                      target_branch=b"ours", timestamp=ts())
    new = apply_patch(cluster.praefect.stub("OperationService"), h, mails).branch_update.commit_id
    git("checkout", "-q", "--detach", o["ours"], cwd=w)
    git("am", "-q", "--3way", cwd=w, input=mails, env={k: v for k, v in JANE.items() if "COMMITTER" in k})
    assert new == git("rev-parse", "HEAD", cwd=w).strip()
    md = landed(cluster, md0)
    assert set(branch_everywhere(cluster, md, "refs/heads/ours").values()) == {new}


def test_resolve_conflicts_lands_on_every_replica(setup):
    cluster, src, o, md0 = setup
    cf = pb("conflicts")
    repo = praefect_repo(cluster)
    h = cf.ResolveConflictsRequestHeader(repository=repo, target_repository=repo, our_commit_oid=o["ours"],
                                         their_commit_oid=o["theirs"], source_branch=b"ours",
                                         target_branch=b"theirs", commit_message=b"Resolve\n", user=user(),
                                         timestamp=ts())
    r = resolve(cluster.praefect.stub("ConflictsService"), h,
                [{"old_path": "a", "new_path": "a", "sections": {section_id("a", 2, 2): "origin"}}])
    assert r.resolution_error == ""
    merged = git("merge-tree", "--write-tree", o["ours"], o["theirs"], cwd=src, check=False).split("\n")[0]
    blob = git("hash-object", "-w", "--stdin", cwd=src, input=b"one\nTWO theirs\nthree\n").strip()
    want = git("commit-tree", with_index(src, merged, [("100644", blob, "a")]), "-p", o["ours"], "-p", o["theirs"],
               "-F", "-", cwd=src, env=JANE, input=b"Resolve\n").strip()
    md = landed(cluster, md0)
    assert set(branch_everywhere(cluster, md, "refs/heads/ours").values()) == {want}


def test_apply_bfg_object_map_lands_on_every_replica(setup):
    cluster, src, o, md0 = setup
    T = pb("shared").ObjectType
    body = ("%s %s\n" % (o["ours"], o["theirs"])).encode()
    entries = apply_bfg(cluster.praefect.stub("CleanupService"), praefect_repo(cluster), body)
    assert entries == [(T.COMMIT, o["ours"], o["theirs"])]
    md = landed(cluster, md0)
    assert set(branch_everywhere(cluster, md, "refs/keep-around/" + o["ours"]).values()) == {""}

