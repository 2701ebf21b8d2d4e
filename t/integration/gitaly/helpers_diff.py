"""A diff-focused repository for the DiffService tests, built once per session with real git.

History (main):
  base  -- text files, a binary, a script, a file that becomes a symlink, a
           submodule entry, files to rename and copy, a file with spaces
  change -- modifies, adds, deletes, renames (with an edit), copies, changes a
           mode, edits the binary, changes the submodule's commit, turns a
           file into a symlink, changes only whitespace
  many  -- 40 new files of 30 lines each plus one file of 3000 lines, to hit
           every limit
  merge -- a merge of a side branch (FindChangedPaths' merge modes)
install_diff_repo() hard-links it into a node's storage (or copies it into a
directory given by path). git_lines() runs git against it for the expected answers.
"""
import os
import random
import shutil

from gitaly_itest import git

_built = {}
LONG = "".join("line %d of a text long enough for rename detection\n" % i for i in range(40))


def _write(work, name, data):
    full = os.path.join(work, name)
    os.makedirs(os.path.dirname(full) or work, exist_ok=True)
    if os.path.islink(full):
        os.unlink(full)
    with open(full, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def _commit(work, message, date):
    env = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    git("add", "-A", cwd=work)
    git("commit", "-q", "--allow-empty", "-m", message, cwd=work, env=env)
    return git("rev-parse", "HEAD", cwd=work).strip()


def make_diff_repo(base):
    if "facts" in _built:
        return _built["facts"]
    work = os.path.join(base, "dwork")
    bare = os.path.join(base, "diff.git")
    git("init", "-q", "-b", "main", work)
    rnd = random.Random(7)
    _write(work, "mod.txt", "one\ntwo\nthree\n")
    _write(work, "del.txt", "to be deleted\n")
    _write(work, "ren_src.txt", LONG)
    _write(work, "copy_src.txt", LONG.replace("line", "row"))
    _write(work, "script.sh", "#!/bin/sh\necho hi\n")
    _write(work, "bin.dat", bytes(rnd.randrange(256) for _ in range(2000)) + b"\0")
    _write(work, "type.txt", "a file that becomes a symlink\n")
    _write(work, "ws.txt", "a b c\n")
    _write(work, "dir with space/f\u00e9.txt", "unicode\n")
    git("add", "-A", cwd=work)
    git("update-index", "--add", "--cacheinfo", "160000,%s,sub" % ("1" * 40), cwd=work)
    # an empty directory keeps `git add -A` from dropping the gitlink
    os.makedirs(os.path.join(work, "sub"))
    env = {"GIT_AUTHOR_DATE": "1600000000 +0000", "GIT_COMMITTER_DATE": "1600000000 +0000"}
    git("commit", "-q", "-m", "base", cwd=work, env=env)
    c_base = git("rev-parse", "HEAD", cwd=work).strip()

    _write(work, "mod.txt", "one\n2\nthree\nfour\n")
    os.unlink(os.path.join(work, "del.txt"))
    _write(work, "added.txt", "new file\n")
    os.rename(os.path.join(work, "ren_src.txt"), os.path.join(work, "ren_dst.txt"))
    _write(work, "ren_dst.txt", LONG + "one more line\n")
    _write(work, "copy_dst.txt", LONG.replace("line", "row"))
    os.chmod(os.path.join(work, "script.sh"), 0o755)
    _write(work, "bin.dat", bytes(rnd.randrange(256) for _ in range(2000)) + b"\0")
    os.unlink(os.path.join(work, "type.txt"))
    os.symlink("mod.txt", os.path.join(work, "type.txt"))
    _write(work, "ws.txt", "a  b   c\n")
    _write(work, "dir with space/f\u00e9.txt", "unicode changed\n")
    git("add", "-A", cwd=work)
    git("update-index", "--add", "--cacheinfo", "160000,%s,sub" % ("2" * 40), cwd=work)
    env = {"GIT_AUTHOR_DATE": "1600001000 +0000", "GIT_COMMITTER_DATE": "1600001000 +0000"}
    git("commit", "-q", "-m", "change everything", cwd=work, env=env)
    c_change = git("rev-parse", "HEAD", cwd=work).strip()

    for i in range(40):
        _write(work, "many/f%02d.txt" % i, "".join("file %d line %d\n" % (i, j) for j in range(30)))
    _write(work, "many/huge.txt", "".join("huge line %d with some padding text\n" % j for j in range(3000)))
    c_many = _commit(work, "many files", "1600002000 +0000")

    git("checkout", "-q", "-b", "side", c_many, cwd=work)
    _write(work, "side.txt", "side\n")
    _write(work, "mod.txt", "one\n2\nthree\nfour\nside\n")
    c_side = _commit(work, "side work", "1600003000 +0000")
    git("checkout", "-q", "main", cwd=work)
    _write(work, "main.txt", "main\n")
    c_main2 = _commit(work, "main work", "1600003500 +0000")
    env = {"GIT_AUTHOR_DATE": "1600004000 +0000", "GIT_COMMITTER_DATE": "1600004000 +0000"}
    # the merge resolves mod.txt to content neither parent has: a combined diff shows it
    git("merge", "-q", "--no-ff", "--no-commit", "side", cwd=work, env=env)
    _write(work, "mod.txt", "one\n2\nthree\nfour\nmerged\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "merge side", cwd=work, env=env)
    c_merge = git("rev-parse", "HEAD", cwd=work).strip()
    git("clone", "-q", "--bare", work, bare)
    shutil.rmtree(work)
    facts = {"path": bare, "base": c_base, "change": c_change, "many": c_many, "side": c_side,
             "main2": c_main2, "merge": c_merge}
    _built["facts"] = facts
    return facts


def install_diff_repo(node, facts, rel="diff.git"):
    dst = node.repo_path(rel)
    shutil.copytree(facts["path"], dst, copy_function=os.link)
    return node.repo(rel)


def git_bytes(facts, *args):
    """git's own answer, as bytes, run against the fixture."""
    import subprocess
    e = dict(os.environ)
    e.update({"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_SYSTEM": "/dev/null"})
    return subprocess.run(["git", "--git-dir", facts["path"]] + list(args), env=e, capture_output=True,
                          check=True).stdout
