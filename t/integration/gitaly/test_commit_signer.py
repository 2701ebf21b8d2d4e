"""GetCommitSignatures' signer: SIGNER_SYSTEM for commits signed with gitaly's own [git] signing keys."""
import os
import subprocess

import grpc
import pytest

from gitaly_itest import GitalyNode, git, pb
from helpers_reads import rpc_error

C = lambda: pb("commit")  # noqa: E731
SYSTEM = 2
USER = 1


def _key(base, kind):
    path = os.path.join(base, "key_" + kind)
    args = {"ed25519": ["-t", "ed25519"], "rsa": ["-t", "rsa", "-b", "2048"], "ecdsa": ["-t", "ecdsa", "-b", "256"],
            "ecdsa384": ["-t", "ecdsa", "-b", "384"]}[kind]
    subprocess.run(["ssh-keygen", "-q", *args, "-N", "", "-C", kind, "-f", path], check=True, capture_output=True)
    return path


def _signed_commit(bare, parent, key, message, hashalg=None):
    """A commit object whose gpgsig header ssh-keygen made over the rest of it, as git does."""
    tree = git("--git-dir", bare, "rev-parse", parent + "^{tree}").strip()
    text = ("tree %s\nparent %s\nauthor A <a@example.com> 1600000000 +0000\n"
            "committer A <a@example.com> 1600000000 +0000\n\n%s\n" % (tree, parent, message)).encode()
    cmd = ["ssh-keygen", "-q", "-Y", "sign", "-n", "git", "-f", key]
    if hashalg:
        cmd += ["-O", "hashalg=" + hashalg]
    sig = subprocess.run(cmd, input=text, capture_output=True, check=True).stdout.decode().rstrip("\n")
    head, body = text.decode().split("\n\n", 1)
    raw = head + "\ngpgsig " + sig.replace("\n", "\n ") + "\n\n" + body
    return subprocess.run(["git", "--git-dir", bare, "hash-object", "-t", "commit", "-w", "--stdin"],
                          input=raw.encode(), capture_output=True, check=True).stdout.decode().strip()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("signer"))
    keys = {k: _key(base, k) for k in ("ed25519", "rsa", "ecdsa", "ecdsa384")}
    work, bare = os.path.join(base, "work"), os.path.join(base, "repo.git")
    git("init", "-q", "-b", "main", work)
    with open(os.path.join(work, "f"), "w") as f:
        f.write("x\n")
    git("add", "f", cwd=work)
    git("commit", "-q", "-m", "init", cwd=work)
    # one commit signed by git itself (gpg.format=ssh) with the ed25519 key
    git("-c", "gpg.format=ssh", "-c", "user.signingkey=" + keys["ed25519"], "commit", "-q", "-S",
        "--allow-empty", "-m", "signed by git", cwd=work)
    git("clone", "-q", "--bare", work, bare)
    init = git("--git-dir", bare, "rev-parse", "main~1").strip()
    ids = {"init": init, "git_ed25519": git("--git-dir", bare, "rev-parse", "main").strip()}
    for k in keys:
        ids[k] = _signed_commit(bare, init, keys[k], "signed with " + k)
    ids["ed25519_sha256"] = _signed_commit(bare, init, keys["ed25519"], "sha256 hash", hashalg="sha256")
    # a key gitaly cannot use: encrypted with a passphrase
    enc = os.path.join(base, "key_encrypted")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", enc], check=True, capture_output=True)
    gpg = _gpg_world(base, work, bare, ids)
    return {"base": base, "bare": bare, "keys": keys, "ids": ids, "encrypted": enc, "gpg": gpg["ed25519"],
            "gpgkeys": gpg}


def _gpg_world(base, work, bare, ids):
    """GPG keys made by gpg in a throw-away GNUPGHOME, exported as binary key files, and commits git signed with them."""
    home = os.path.join(base, "gnupg")
    os.mkdir(home, 0o700)
    env = dict(os.environ, GNUPGHOME=home)
    # the expired key is made and used in 2020 (gpg's faked clock), valid for a day
    wrap = os.path.join(base, "gpg-2020")
    with open(wrap, "w") as f:
        f.write('#!/bin/sh\nexec gpg --faked-system-time 20200101T000000 "$@"\n')
    os.chmod(wrap, 0o755)

    def gpg(*args, prog="gpg"):
        return subprocess.run([prog, "--batch", "--pinentry-mode", "loopback", "--passphrase", "", *args],
                              env=env, check=True, capture_output=True).stdout

    def fpr(uid):
        for line in gpg("--with-colons", "--list-keys", uid).decode().splitlines():
            if line.startswith("fpr:"):
                return line.split(":")[9]

    made = {"ed25519": ("ed25519", "sign"), "rsa": ("rsa2048", "sign"), "other": ("ed25519", "sign"),
            "sub": ("ed25519", "cert"), "expired": ("ed25519", "sign")}
    files, fprs = {}, {}
    for name, (algo, usage) in made.items():
        uid = "%s <%s@example.com>" % (name, name)
        gpg("--quick-gen-key", uid, algo, usage, "1d" if name == "expired" else "never",
            prog=wrap if name == "expired" else "gpg")
        fprs[name] = fpr(uid)
    # "sub": a certify-only primary key with an ECDSA signing subkey, which gpg signs with
    gpg("--quick-add-key", fprs["sub"], "nistp256/ecdsa", "sign", "never")
    for name in made:
        files[name] = os.path.join(base, "gpg_" + name)
        with open(files[name], "wb") as f:
            f.write(gpg("--export-secret-keys", fprs[name]))
    files["ed25519_public"] = os.path.join(base, "gpg_ed25519_public")
    with open(files["ed25519_public"], "wb") as f:
        f.write(gpg("--export", fprs["ed25519"]))
    files["armored"] = os.path.join(base, "gpg_armored")
    with open(files["armored"], "wb") as f:
        f.write(gpg("--armor", "--export-secret-keys", fprs["ed25519"]))
    for name in made:
        prog = wrap if name == "expired" else "gpg"
        subprocess.run(["git", "-c", "gpg.program=" + prog, "-c", "user.signingkey=" + fprs[name], "commit", "-q",
                        "-S", "--allow-empty", "-m", "gpg " + name], cwd=work, env=env, check=True)
        ids["gpg_" + name] = git("rev-parse", "HEAD", cwd=work).strip()
    git("--git-dir", bare, "fetch", "-q", work, "+main:refs/heads/main")
    return files


def _node(tmp_path, world, name, primary, rotated=()):
    cfg = '\n[git]\nsigning_key = "%s"\n' % primary
    if rotated:
        cfg += "rotated_signing_keys = [%s]\n" % ", ".join('"%s"' % r for r in rotated)
    node = GitalyNode(str(tmp_path / name), extra_config=cfg).start()
    subprocess.run(["git", "clone", "-q", "--bare", world["bare"], node.repo_path("r.git")], check=True)
    return node


def _signers(node, ids):
    out = {}
    for r in node.stub("CommitService").GetCommitSignatures(C().GetCommitSignaturesRequest(
            repository=node.repo("r.git"), commit_ids=ids)):
        if r.commit_id:
            out[r.commit_id] = r.signer
    return out


def test_commits_signed_with_the_signing_key_or_a_rotated_key_are_system_signed(tmp_path, world):
    k, ids = world["keys"], world["ids"]
    node = _node(tmp_path, world, "a", k["ed25519"], rotated=[world["gpg"], k["rsa"]])
    try:
        got = _signers(node, [ids[n] for n in ("init", "git_ed25519", "ed25519", "rsa", "ecdsa", "ecdsa384")])
        assert got == {ids["git_ed25519"]: SYSTEM, ids["ed25519"]: SYSTEM, ids["rsa"]: SYSTEM,
                       ids["ecdsa"]: USER, ids["ecdsa384"]: USER}
        # upstream hashes the signed text with SHA-512 whatever the signature says: sha256 ones never match
        assert _signers(node, [ids["ed25519_sha256"]]) == {ids["ed25519_sha256"]: USER}
    finally:
        node.stop()


def test_ecdsa_signing_keys_and_nodes_without_keys(tmp_path, world):
    k, ids = world["keys"], world["ids"]
    node = _node(tmp_path, world, "b", k["ecdsa"], rotated=[k["ecdsa384"]])
    try:
        assert _signers(node, [ids["ecdsa"], ids["ecdsa384"], ids["ed25519"]]) == \
            {ids["ecdsa"]: SYSTEM, ids["ecdsa384"]: SYSTEM, ids["ed25519"]: USER}
    finally:
        node.stop()
    # a GPG signing key never matches an SSH signature
    node = _node(tmp_path, world, "c", world["gpg"])
    try:
        assert _signers(node, [ids["ed25519"]]) == {ids["ed25519"]: USER}
    finally:
        node.stop()


def test_commits_git_signed_with_a_gpg_signing_key_or_a_rotated_one_are_system_signed(tmp_path, world):
    g, ids = world["gpgkeys"], world["ids"]
    names = ["gpg_ed25519", "gpg_rsa", "gpg_other", "gpg_sub", "gpg_expired", "ed25519"]
    node = _node(tmp_path, world, "g1", g["ed25519"], rotated=[world["keys"]["ed25519"], g["rsa"], g["sub"],
                                                                g["expired"]])
    try:
        got = _signers(node, [ids[n] for n in names])
        # another GPG key's signature is the user's; so is one by a key that has expired since
        assert got == {ids["gpg_ed25519"]: SYSTEM, ids["gpg_rsa"]: SYSTEM, ids["gpg_other"]: USER,
                       ids["gpg_sub"]: SYSTEM, ids["gpg_expired"]: USER, ids["ed25519"]: SYSTEM}
    finally:
        node.stop()
    # the public half alone is a key too; a commit whose signed text was changed is the user's
    node = _node(tmp_path, world, "g2", g["ed25519_public"])
    try:
        signed = ids["gpg_ed25519"]
        raw = git("--git-dir", world["bare"], "cat-file", "commit", signed)
        forged = subprocess.run(["git", "--git-dir", node.repo_path("r.git"), "hash-object", "-t", "commit", "-w",
                                 "--stdin"], input=raw.replace("gpg ed25519", "gpg ed25518").encode(),
                                capture_output=True, check=True).stdout.decode().strip()
        assert _signers(node, [signed, forged, ids["gpg_rsa"]]) == {signed: SYSTEM, forged: USER,
                                                                   ids["gpg_rsa"]: USER}
    finally:
        node.stop()


def test_an_armored_gpg_key_fails_the_call_as_upstreams_binary_key_reader_does(tmp_path, world):
    node = _node(tmp_path, world, "g3", world["gpgkeys"]["armored"])
    try:
        e = rpc_error(lambda: _signers(node, [world["ids"]["gpg_ed25519"]]))
        assert e.code() == grpc.StatusCode.UNKNOWN
        assert e.details() == "failed to parse signing key: read entity: openpgp: invalid data: " \
            "tag byte does not have MSB set"
    finally:
        node.stop()


def test_an_unusable_signing_key_fails_the_call_and_a_missing_one_the_start(tmp_path, world):
    node = _node(tmp_path, world, "d", world["encrypted"])
    try:
        e = rpc_error(lambda: _signers(node, [world["ids"]["ed25519"]]))
        assert e.code() == grpc.StatusCode.UNKNOWN and e.details().startswith("failed to parse signing key: ")
    finally:
        node.stop()
    # readable at start-up, gone by the time of the call: the call fails, as upstream's does
    gone = os.path.join(world["base"], "key_gone")
    with open(world["keys"]["ed25519"]) as src, open(gone, "w") as dst:
        dst.write(src.read())
    node = _node(tmp_path, world, "f", gone)
    try:
        os.unlink(gone)
        e = rpc_error(lambda: _signers(node, [world["ids"]["ed25519"]]))
        assert e.code() == grpc.StatusCode.UNKNOWN and e.details() == \
            "failed to parse signing key: open file: open %s: no such file or directory" % gone
    finally:
        node.stop()
    missing = os.path.join(world["base"], "no_such_key")
    for extra in ('\n[git]\nsigning_key = "%s"\n' % missing,
                  '\n[git]\nsigning_key = "%s"\nrotated_signing_keys = ["%s"]\n' % (world["keys"]["rsa"], missing),
                  '\n[git]\nrotated_signing_keys = "%s"\n' % missing):
        node = GitalyNode(str(tmp_path / ("e%d" % len(extra))), extra_config=extra)
        with pytest.raises(RuntimeError) as e:
            node.start()
        assert "signing" in str(e.value)
