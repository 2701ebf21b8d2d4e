"""RepositoryService/GetRawChanges against a node, compared with `git diff --raw` and `git cat-file`:
every operation, submodules, the null id on either side, batches, bad revisions."""
import os
import shutil
import subprocess

import grpc
import pytest

from gitaly_itest import git, pb
from helpers_reads import rpc_error

R = lambda: pb("repository")  # noqa: E731
OP = lambda: R().GetRawChangesResponse.RawChange  # noqa: E731
ZERO = "0" * 40
MANY = 8000


def _write(work, name, data):
    full = os.path.join(work, name)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as f:
        f.write(data)


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("rawchanges"))
    work, bare = os.path.join(base, "work"), os.path.join(base, "raw.git")
    git("init", "-q", "-b", "main", work)
    # 8000 new files: a commit would start git's auto gc in the background, which repacks the loose
    # objects while the clone below copies them ("failed to copy file")
    git("config", "gc.auto", "0", cwd=work)
    _write(work, "mod.txt", "one\n")
    _write(work, "del.txt", "gone soon\n")
    _write(work, "ren_src.txt", "".join("line %d\n" % i for i in range(50)))
    _write(work, "type.txt", "a file\n")
    _write(work, "exec.sh", "#!/bin/sh\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "base", cwd=work)
    base_c = git("rev-parse", "HEAD", cwd=work).strip()
    _write(work, "mod.txt", "two\n")
    os.unlink(os.path.join(work, "del.txt"))
    os.rename(os.path.join(work, "ren_src.txt"), os.path.join(work, "ren_dst.txt"))
    os.unlink(os.path.join(work, "type.txt"))
    os.symlink("mod.txt", os.path.join(work, "type.txt"))
    os.chmod(os.path.join(work, "exec.sh"), 0o755)
    _write(work, "dir/new file ü.txt", "new\n")
    git("add", "-A", cwd=work)
    git("update-index", "--add", "--cacheinfo", "160000,%s,sub" % ("1" * 40), cwd=work)
    git("commit", "-q", "-m", "change", cwd=work)
    change = git("rev-parse", "HEAD", cwd=work).strip()
    for i in range(MANY):
        _write(work, "many/" + "long-name-" * 12 + "f%05d" % i, "%d\n" % i)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "many", cwd=work)
    many = git("rev-parse", "HEAD", cwd=work).strip()
    git("clone", "-q", "--bare", work, bare)
    return {"path": bare, "base": base_c, "change": change, "many": many}


@pytest.fixture
def node(gitaly_node, facts):
    shutil.copytree(facts["path"], gitaly_node.repo_path("raw.git"), copy_function=os.link)
    gitaly_node.raw_repo = gitaly_node.repo("raw.git")
    return gitaly_node


def raw_changes(node, frm, to, repo=None):
    msgs = list(node.stub("RepositoryService").GetRawChanges(R().GetRawChangesRequest(
        repository=repo or node.raw_repo, from_revision=frm, to_revision=to)))
    return [c for m in msgs for c in m.raw_changes], msgs


OPS = {"A": "ADDED", "C": "COPIED", "D": "DELETED", "M": "MODIFIED", "R": "RENAMED", "T": "TYPE_CHANGED"}


def expected(facts, frm, to):
    """What git says: diff --raw, then cat-file for each blob's id and size."""
    out = subprocess.run(["git", "--git-dir", facts["path"], "diff", "--raw", "-z", "--no-abbrev", frm, to],
                         capture_output=True, check=True).stdout.split(b"\0")
    want, i = [], 0
    while i < len(out) - 1:
        src_mode, dst_mode, src, dst, status = out[i][1:].decode().split(" ")
        paths = [out[i + 1]] + ([out[i + 2]] if status[0] in "RC" else [])
        i += 1 + len(paths)
        oid, mode = (src, src_mode) if set(dst) == {"0"} else (dst, dst_mode)
        size = 0
        if mode != "160000":
            size = int(subprocess.run(["git", "--git-dir", facts["path"], "cat-file", "-s", oid],
                                      capture_output=True, check=True).stdout)
        else:
            oid = ""
        new = paths[-1] if status[0] in "RC" else (b"" if status[0] == "D" else paths[0])
        old = b"" if status[0] == "A" else paths[0]
        want.append((oid, size, OPS[status[0]], int(src_mode, 8), int(dst_mode, 8), new, old))
    return want


def as_tuples(changes):
    return [(c.blob_id, c.size, OP().Operation.Name(c.operation), c.old_mode, c.new_mode, c.new_path_bytes,
             c.old_path_bytes) for c in changes]


def test_raw_changes_are_what_git_says(node, facts):
    changes, msgs = raw_changes(node, facts["base"], facts["change"])
    assert len(msgs) == 1
    got = as_tuples(changes)
    assert got == expected(facts, facts["base"], facts["change"])
    ops = {t[5] or t[6]: t[2] for t in got}
    assert ops[b"mod.txt"] == "MODIFIED" and ops[b"del.txt"] == "DELETED" and ops[b"ren_dst.txt"] == "RENAMED"
    assert ops[b"type.txt"] == "TYPE_CHANGED" and ops["dir/new file ü.txt".encode()] == "ADDED"
    assert ops[b"exec.sh"] == "MODIFIED" and ops[b"sub"] == "ADDED"
    sub = [t for t in got if t[5] == b"sub"][0]
    assert sub[0] == "" and sub[1] == 0 and sub[4] == 0o160000
    deleted = [t for t in got if t[6] == b"del.txt"][0]
    assert deleted[1] == len("gone soon\n") and deleted[5] == b""


def test_null_ids(node, facts):
    # from the null id: everything the commit has, added
    changes, _ = raw_changes(node, ZERO, facts["change"])
    assert as_tuples(changes) == expected(facts, "4b825dc642cb6eb9a060e54bf8d69288fbee4904", facts["change"])
    assert all(OP().Operation.Name(c.operation) == "ADDED" for c in changes)
    # to the null id: nothing at all
    assert raw_changes(node, facts["base"], ZERO) == ([], [])


def test_many_changes_come_in_batches(node, facts):
    changes, msgs = raw_changes(node, facts["change"], facts["many"])
    # `git add -A` of a work tree without the submodule's directory drops the gitlink too
    assert len(changes) == MANY + 1 and len(msgs) > 1
    assert as_tuples(changes[:5]) == expected(facts, facts["change"], facts["many"])[:5]
    assert [c.new_path_bytes for c in changes[:MANY]] == [b"many/" + b"long-name-" * 12 + b"f%05d" % i
                                                          for i in range(MANY)]
    assert all(sum(c.ByteSize() for c in m.raw_changes) < 1024 * 1024 for m in msgs)
    assert (changes[-1].old_path_bytes, OP().Operation.Name(changes[-1].operation)) == (b"sub", "DELETED")


def test_bad_revisions(node, facts):
    for frm, to, msg in (("nope", facts["change"], "invalid 'from' revision: \"nope\""),
                         (facts["base"], "1" * 40, "invalid 'to' revision: \"%s\"" % ("1" * 40)),
                         (facts["base"], "", "invalid 'to' revision: \"\""),
                         ("--output=/tmp/x", facts["change"], "invalid 'from' revision: \"--output=/tmp/x\"")):
        e = rpc_error(lambda: raw_changes(node, frm, to))
        assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, msg)
    e = rpc_error(lambda: raw_changes(node, facts["base"], facts["change"], repo=node.repo("missing.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
