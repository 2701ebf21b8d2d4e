"""A repository for the blob listing and LFS pointer tests: many small files, a blob larger than one
message piece, valid LFS pointers, near misses that upstream's detection refuses, and an unreachable
pointer that only --batch-all-objects finds."""
import os
import shutil
import subprocess

from gitaly_itest import git

_built = {}
LFS_OID = "oid sha256:%s\n"


def pointer(n, extra=""):
    return ("version https://git-lfs.github.com/spec/v1\n" + LFS_OID % ("%064x" % n) +
            "size %d\n" % (1000 + n) + extra)


def _write(work, name, data):
    full = os.path.join(work, name)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def env():
    e = dict(os.environ)
    e.update({"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_SYSTEM": "/dev/null"})
    return e


def gitb(facts, *args, input=None):
    return subprocess.run(["git", "--git-dir", facts["path"]] + list(args), env=env(), input=input,
                          capture_output=True, check=True).stdout


def make_blob_repo(base):
    if "facts" in _built:
        return _built["facts"]
    work = os.path.join(base, "work")
    bare = os.path.join(base, "blobs.git")
    git("init", "-q", "-b", "main", work)
    for i in range(150):
        _write(work, "many/f%03d.txt" % i, "file %d\n" % i)
    _write(work, "big.bin", bytes(range(256)) * 1200)           # 300 KiB: three pieces
    _write(work, "lfs/one.bin", pointer(1))
    _write(work, "lfs/two.bin", pointer(2, "x-extra yes\n"))   # extra lines are allowed
    # near misses: upper-case hex, CRLF line ends, and a valid pointer padded past 200 bytes
    _write(work, "not/upper.bin", pointer(3).replace("%064x" % 3, ("%064x" % 3).upper()[:-1] + "A"))
    _write(work, "not/crlf.bin", pointer(4).replace("\n", "\r\n"))
    _write(work, "not/padded.bin", pointer(5, "x" * 200 + "\n"))
    _write(work, "not/version.bin", pointer(6).replace("version", "Version"))
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "first", cwd=work)
    c1 = git("rev-parse", "HEAD", cwd=work).strip()
    git("checkout", "-q", "-b", "side", cwd=work)
    _write(work, "lfs/three.bin", pointer(7))
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "side", cwd=work)
    side = git("rev-parse", "HEAD", cwd=work).strip()
    git("checkout", "-q", "main", cwd=work)
    git("clone", "-q", "--bare", work, bare)
    shutil.rmtree(work)
    dangling = subprocess.run(["git", "--git-dir", bare, "hash-object", "-w", "--stdin"], input=pointer(8).encode(),
                              capture_output=True, check=True, env=env()).stdout.decode().strip()
    facts = {"path": bare, "c1": c1, "side": side, "dangling": dangling}

    def rev(r):
        return gitb(facts, "rev-parse", r).decode().strip()
    facts.update({
        "big": rev("main:big.bin"), "one": rev("main:lfs/one.bin"), "two": rev("main:lfs/two.bin"),
        "three": rev("side:lfs/three.bin"), "tree": rev("main^{tree}"),
    })
    _built["facts"] = facts
    return facts


def install_blob_repo(node, facts, rel="blobs.git"):
    dst = node.repo_path(rel)
    shutil.copytree(facts["path"], dst, copy_function=os.link)
    return node.repo(rel)


def git_blobs(facts, *revs):
    """(oid, path) of rev-list's blobs, in rev-list's order, as ListBlobs reports them."""
    out = gitb(facts, "rev-list", "--in-commit-order", "--objects", "--object-names",
               "--filter=object:type=blob", "--filter-provided-objects", *revs)
    res = []
    for line in out.splitlines():
        oid, _, path = line.partition(b" ")
        res.append((oid.decode(), path))
    return res


def git_all_blobs(facts):
    out = gitb(facts, "cat-file", "--batch-all-objects", "--batch-check")
    res = {}
    for line in out.decode().splitlines():
        oid, typ, size = line.split()
        if typ == "blob":
            res[oid] = int(size)
    return res


def blob_content(facts, oid):
    return gitb(facts, "cat-file", "blob", oid)
