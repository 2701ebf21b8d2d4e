"""A shared repository with a real history, for CommitService and DiffService tests.

Build it once per test session with make_history_repo(base_dir) (the result is
cached; `base_dir` is only used the first time), then hard-link it into a
node's storage with install_history_repo(node, history) before calling RPCs.
Everything is made by running git, never by writing objects by hand.

The history of branch `main`, oldest first (each commit has its own author
and committer date, one hour apart from 1600000000 +0200):

    init       README.md, src/app.rb (20 lines), docs/guide.md, bin/logo.png
               (binary, with NUL bytes), -dash/file (a path that starts with a
               dash), :wq (a path that looks like pathspec magic)
    edit_app   src/app.rb: lines 3 and 15 changed, 2 lines added at the end
    rename     docs/guide.md renamed to docs/manual.md, content unchanged
    merge      merge (--no-ff) of branch `feature`, whose own commits are
               feature1 (adds feature.txt) and feature2 (edits feature.txt);
               feature1's parent is edit_app
    submodule  .gitmodules plus a gitlink sub/lib -> SUBMODULE_OID (a commit
               that is not in this repository)
    lfs        .gitattributes and assets/big.psd, a Git LFS pointer file
    ssh_signed README.md edited; signed with an SSH key (gpg.format=ssh) made
               with ssh-keygen in the session's temporary directory
    gpg_signed README.md edited again; GPG-signed when gpg can make a key
               (history["gpg"] is True then), else an unsigned commit

Other refs: branch `feature` (at feature2), branch `old` (at init), annotated
tag `v1.0` (edit_app), SSH-signed annotated tag `v2.0` (merge), lightweight
tag `light` (lfs).

make_history_repo() returns a dict: "path" (the bare repository), one entry
per commit name above holding its object id, "tags" (name -> tag object id or
commit id), "ssh_key" (private key path), "allowed_signers" (a file usable as
gpg.ssh.allowedSignersFile), "gpg" (bool) and "gnupghome" (or None).
history_git(history, *args) runs git against the bare repository.
"""
import os
import shutil
import subprocess

from gitaly_itest import git

SUBMODULE_OID = "5" * 40
LFS_POINTER = ("version https://git-lfs.github.com/spec/v1\n"
               "oid sha256:91eff75a492a3ed0dfcb544d7f31326bc4014c8551849c192fd1e48d4dd2c897\n"
               "size 1575078\n")
APP_LINES = ["line %d of app.rb\n" % i for i in range(1, 21)]
BINARY = bytes(range(256)) * 8

_cache = {}


def _write(work, name, data):
    full = os.path.join(work, name)
    os.makedirs(os.path.dirname(full) or work, exist_ok=True)
    with open(full, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def _date(n):
    return "%d +0200" % (1600000000 + 3600 * n)


def _commit(work, message, n, extra=(), env=None, add=True):
    e = {"GIT_AUTHOR_DATE": _date(n), "GIT_COMMITTER_DATE": _date(n),
         "GIT_AUTHOR_NAME": "Author %d" % n, "GIT_AUTHOR_EMAIL": "author%d@example.com" % n}
    e.update(env or {})
    if add:
        git("add", "-A", cwd=work)
    git(*extra, "commit", "-q", "-m", message, cwd=work, env=e)
    return git("rev-parse", "HEAD", cwd=work).strip()


def _ssh_key(base):
    key = os.path.join(base, "ssh_signing_key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test@example.com", "-f", key],
                   check=True, capture_output=True)
    signers = os.path.join(base, "allowed_signers")
    with open(key + ".pub") as f, open(signers, "w") as out:
        out.write("test@example.com " + f.read())
    return key, signers


def _gpg_home(base):
    """A GNUPGHOME with an unprotected signing key, or None when gpg cannot make one."""
    home = os.path.join(base, "gnupg")
    os.makedirs(home, mode=0o700)
    try:
        r = subprocess.run(["gpg", "--homedir", home, "--batch", "--passphrase", "", "--quick-gen-key",
                            "Test <test@example.com>", "ed25519", "sign", "never"],
                           capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return home if r.returncode == 0 else None


def make_history_repo(base):
    """Build the history repository under `base` once per session; return its facts."""
    if "h" in _cache:
        return _cache["h"]
    os.makedirs(base, exist_ok=True)
    work = os.path.join(base, "history-work")
    bare = os.path.join(base, "history.git")
    key, signers = _ssh_key(base)
    ssh = ("-c", "gpg.format=ssh", "-c", "user.signingkey=" + key)
    h = {"path": bare, "ssh_key": key, "allowed_signers": signers, "tags": {}}

    git("init", "-q", "-b", "main", work)
    _write(work, "README.md", "# history\n")
    _write(work, "src/app.rb", "".join(APP_LINES))
    _write(work, "docs/guide.md", "a guide\nwith two lines\n")
    _write(work, "bin/logo.png", BINARY)
    _write(work, "-dash/file", "dash\n")
    _write(work, ":wq", "glob\n")
    h["init"] = _commit(work, "init", 0)
    git("branch", "old", cwd=work)

    lines = list(APP_LINES)
    lines[2] = "line three, changed\n"
    lines[14] = "line fifteen, changed\n"
    lines += ["added line 21\n", "added line 22\n"]
    _write(work, "src/app.rb", "".join(lines))
    h["edit_app"] = _commit(work, "edit app\n\nChange two lines and add two.", 1)

    git("checkout", "-q", "-b", "feature", cwd=work)
    _write(work, "feature.txt", "feature one\n")
    h["feature1"] = _commit(work, "feature1", 2)
    _write(work, "feature.txt", "feature one\nfeature two\n")
    h["feature2"] = _commit(work, "feature2", 3)
    git("checkout", "-q", "main", cwd=work)

    git("mv", "docs/guide.md", "docs/manual.md", cwd=work)
    h["rename"] = _commit(work, "rename guide to manual", 4)

    env = {"GIT_AUTHOR_DATE": _date(5), "GIT_COMMITTER_DATE": _date(5)}
    git("merge", "-q", "--no-ff", "-m", "Merge branch 'feature'", "feature", cwd=work, env=env)
    h["merge"] = git("rev-parse", "HEAD", cwd=work).strip()

    _write(work, ".gitmodules", '[submodule "lib"]\n\tpath = sub/lib\n\turl = https://example.com/lib.git\n')
    git("add", ".gitmodules", cwd=work)
    git("update-index", "--add", "--cacheinfo", "160000,%s,sub/lib" % SUBMODULE_OID, cwd=work)
    h["submodule"] = _commit(work, "add submodule", 6, add=False)
    os.makedirs(os.path.join(work, "sub", "lib"), exist_ok=True)

    _write(work, ".gitattributes", "*.psd filter=lfs diff=lfs merge=lfs -text\n")
    _write(work, "assets/big.psd", LFS_POINTER)
    h["lfs"] = _commit(work, "add lfs pointer", 7)

    _write(work, "README.md", "# history\n\nsigned with ssh\n")
    h["ssh_signed"] = _commit(work, "ssh signed commit", 8, extra=ssh + ("-c", "commit.gpgsign=true"))

    home = _gpg_home(base)
    h["gpg"] = home is not None
    h["gnupghome"] = home
    _write(work, "README.md", "# history\n\nsigned with ssh\nand with gpg\n")
    if home:
        h["gpg_signed"] = _commit(work, "gpg signed commit", 9, extra=("-c", "commit.gpgsign=true"),
                                  env={"GNUPGHOME": home})
    else:
        h["gpg_signed"] = _commit(work, "gpg signed commit", 9)

    tag_env = {"GIT_COMMITTER_DATE": _date(10)}
    git("tag", "-a", "-m", "version 1.0", "v1.0", h["edit_app"], cwd=work, env=tag_env)
    git(*ssh, "tag", "-s", "-m", "version 2.0, signed", "v2.0", h["merge"], cwd=work, env=tag_env)
    git("tag", "light", h["lfs"], cwd=work)
    git("clone", "-q", "--bare", work, bare)
    shutil.rmtree(work)
    for t in ("v1.0", "v2.0", "light"):
        h["tags"][t] = history_git(h, "rev-parse", "refs/tags/" + t).strip()
    _cache["h"] = h
    return h


def history_git(h, *args, **kw):
    """git against the history repository; returns stdout as str."""
    return git("--git-dir", h["path"], *args, **kw)


def install_history_repo(node, h, rel="history.git"):
    """Hard-link the history repository into the node's default storage; returns the Repository message."""
    dst = node.repo_path(rel)
    shutil.copytree(h["path"], dst, copy_function=os.link)
    return node.repo(rel)
