"""Shared pieces of the read-RPC tests (RefService, CommitService, BlobService).

make_read_repo() builds, once per test session, a bare repository with
branches, annotated and lightweight tags, nested trees, a submodule entry,
trailers and a 20 MB blob; install_read_repo() hard-links it into a node's
storage. catfile_pids() lists the git cat-file processes a node runs for a
repository, read from /proc.
"""
import os
import random
import shutil
import subprocess

from gitaly_itest import git

BIG_SIZE = 20 * 1024 * 1024
_built = {}


def big_blob_bytes():
    return random.Random(1234).randbytes(BIG_SIZE)


def _commit(work, message, date, add=True):
    env = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    if add:
        git("add", "-A", cwd=work)
    git("commit", "-q", "--allow-empty", "-m", message, cwd=work, env=env)
    return git("rev-parse", "HEAD", cwd=work).strip()


def _write(work, name, data):
    full = os.path.join(work, name)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def make_read_repo(base):
    """Build the shared repository under `base` (once) and return facts about it."""
    if "facts" in _built:
        return _built["facts"]
    work = os.path.join(base, "work")
    bare = os.path.join(base, "read.git")
    git("init", "-q", "-b", "main", work)
    _write(work, "README.md", "hello\n")
    _write(work, "dir/a.txt", "a\n")
    _write(work, "dir/sub/deep/b.txt", "b\n")
    _write(work, "only/one/level/c.txt", "c\n")
    _write(work, "big.bin", big_blob_bytes())
    c1 = _commit(work, "initial commit", "1600000000 +0100")
    _write(work, "README.md", "hello again\n")
    c2 = _commit(work, "second commit\n\nA body line.\n\nSigned-off-by: Alice <alice@example.com>\n"
                 "Reviewed-by: Bob <bob@example.com>", "1600001000 +0100")
    # a submodule entry: a gitlink to a commit that is not in this repository
    git("update-index", "--add", "--cacheinfo", "160000,%s,sub/module" % ("1" * 40), cwd=work)
    c3 = _commit(work, "add submodule", "1600002000 +0100", add=False)
    os.makedirs(os.path.join(work, "sub", "module"))
    git("checkout", "-q", "-b", "feature", c1, cwd=work)
    _write(work, "feature.txt", "feature\n")
    f1 = _commit(work, "feature work", "1600003000 +0100")
    git("checkout", "-q", "-b", "nested/topic", c1, cwd=work)
    git("checkout", "-q", "main", cwd=work)
    tag_env = {"GIT_COMMITTER_DATE": "1600004000 +0100"}
    git("tag", "-a", "-m", "release 1.0\n\nnotes", "v1.0", c2, cwd=work, env=tag_env)
    git("tag", "light", f1, cwd=work)
    git("tag", "-a", "-m", "tag of a tag", "v1.0-again", "v1.0", cwd=work, env=tag_env)
    git("tag", "treetag", c1 + "^{tree}", cwd=work)
    git("clone", "-q", "--bare", work, bare)
    shutil.rmtree(work)

    def rev(r):
        return git("--git-dir", bare, "rev-parse", r).strip()

    facts = {
        "path": bare, "c1": c1, "c2": c2, "c3": c3, "f1": f1,
        "big_oid": rev("main:big.bin"), "readme_oid": rev("main:README.md"),
        "v1_oid": rev("v1.0"), "v1_again_oid": rev("v1.0-again"),
        "tree_c1": rev(c1 + "^{tree}"), "dir_oid": rev("main:dir"),
    }
    _built["facts"] = facts
    return facts


def install_read_repo(node, facts, rel="read.git"):
    """Hard-link the shared repository into the node's default storage."""
    dst = node.repo_path(rel)
    shutil.copytree(facts["path"], dst, copy_function=os.link)
    return node.repo(rel)


def catfile_pids(repo_path):
    """Pids of running `git ... cat-file` processes whose --git-dir is repo_path."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"cat-file" in argv and repo_path.encode() in argv:
            pids.append(int(d))
    return pids


def rpc_error(call):
    """Run a call expected to fail; return the grpc.RpcError."""
    import grpc
    try:
        res = call()
        if hasattr(res, "__iter__") and not hasattr(res, "SerializeToString"):
            list(res)
    except grpc.RpcError as e:
        return e
    raise AssertionError("call succeeded")


def status_detail(err, msg_class):
    """Decode the first detail of a rich error as `msg_class`."""
    md = dict(err.trailing_metadata() or ())
    raw = md.get("grpc-status-details-bin")
    assert raw, "no status details"
    status = _rpc_status_class()()
    status.ParseFromString(raw)
    det = msg_class()
    assert status.details[0].type_url == "type.googleapis.com/gitaly." + msg_class.DESCRIPTOR.name, \
        status.details[0].type_url
    det.ParseFromString(status.details[0].value)
    return det


def _rpc_status_class():
    # google.rpc.Status: 1 code, 2 message, 3 details (Any); built from a descriptor
    # so the tests do not need googleapis protos installed.
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from google.protobuf import any_pb2  # noqa: F401  (registers google/protobuf/any.proto)
    pool = descriptor_pool.Default()
    try:
        desc = pool.FindMessageTypeByName("testrpc.Status")
    except KeyError:
        fdp = descriptor_pb2.FileDescriptorProto(name="testrpc_status.proto", package="testrpc",
                                                 dependency=["google/protobuf/any.proto"])
        m = fdp.message_type.add(name="Status")
        m.field.add(name="code", number=1, type=5, label=1)
        m.field.add(name="message", number=2, type=9, label=1)
        m.field.add(name="details", number=3, type=11, label=3, type_name=".google.protobuf.Any")
        pool.Add(fdp)
        desc = pool.FindMessageTypeByName("testrpc.Status")
    try:
        return message_factory.GetMessageClass(desc)
    except AttributeError:
        return message_factory.MessageFactory(pool).GetPrototype(desc)


def git_out(*args):
    return subprocess.run(["git"] + list(args), capture_output=True, check=True).stdout
