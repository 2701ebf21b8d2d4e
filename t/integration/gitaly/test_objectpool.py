"""ObjectPoolService against a real gitaly: a pool cloned from its origin, members linked to
it through objects/info/alternates, fetched into, disconnected and deleted, with real git."""
import os
import shutil

import grpc
import pytest

from gitaly_itest import git, make_bare_repo, pb

POOL = "@pools/6b/86/6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b.git"
ORIGIN = "@hashed/aa/bb/origin.git"


def op():
    return pb("objectpool")


def svc(node):
    return node.stub("ObjectPoolService")


def rpc_error(fn, *args, **kw):
    with pytest.raises(grpc.RpcError) as e:
        fn(*args, **kw)
    return e.value


def pool_msg(node, rel=POOL):
    return pb("shared").ObjectPool(repository=node.repo(rel))


def count_objects(path):
    """{"count": loose, "in-pack": packed, ...} of `git count-objects -v`."""
    out = git("count-objects", "-v", cwd=path)
    return {k: int(v) for k, v in (l.split(": ") for l in out.splitlines()) if v.strip().isdigit()}


def fsck_ok(path):
    git("fsck", "--connectivity-only", cwd=path)


def make_pool(node):
    origin = make_bare_repo(node.repo_path(ORIGIN), branches=("main", "feature"), tags=("v1",),
                            files={"big.txt": "x" * 20000 + "\n", "README.md": "hi\n"})
    git("repack", "-adq", cwd=origin)
    svc(node).CreateObjectPool(op().CreateObjectPoolRequest(object_pool=pool_msg(node),
                                                             origin=node.repo(ORIGIN)))
    return origin, node.repo_path(POOL)


def link(node, rel):
    svc(node).LinkRepositoryToObjectPool(op().LinkRepositoryToObjectPoolRequest(
        object_pool=pool_msg(node), repository=node.repo(rel)))


def test_create_object_pool_clones_the_origin_without_its_remote(gitaly_node):
    origin, pool = make_pool(gitaly_node)
    assert git("rev-parse", "--is-bare-repository", cwd=pool).strip() == "true"
    assert git("for-each-ref", "--format=%(refname)", cwd=pool).split() == \
        git("for-each-ref", "--format=%(refname)", cwd=origin).split()
    assert "remote.origin" not in git("config", "--list", cwd=pool)
    fsck_ok(pool)
    tmp = os.path.join(gitaly_node.storages["default"], "+gitaly", "tmp")
    assert os.listdir(tmp) == []
    # a second time: the pool exists already
    e = rpc_error(svc(gitaly_node).CreateObjectPool, op().CreateObjectPoolRequest(
        object_pool=pool_msg(gitaly_node), origin=gitaly_node.repo(ORIGIN)))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.details() == "creating object pool: repository exists already"


def test_create_object_pool_bad_input(gitaly_node):
    s = svc(gitaly_node)
    make_bare_repo(gitaly_node.repo_path(ORIGIN))
    e = rpc_error(s.CreateObjectPool, op().CreateObjectPoolRequest(object_pool=pool_msg(gitaly_node)))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "no origin repository")
    e = rpc_error(s.CreateObjectPool, op().CreateObjectPoolRequest(origin=gitaly_node.repo(ORIGIN)))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "no object pool repository")
    e = rpc_error(s.CreateObjectPool, op().CreateObjectPoolRequest(
        object_pool=pool_msg(gitaly_node, "@hashed/no/pool.git"), origin=gitaly_node.repo(ORIGIN)))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid object pool directory")
    e = rpc_error(s.CreateObjectPool, op().CreateObjectPoolRequest(
        object_pool=pool_msg(gitaly_node), origin=gitaly_node.repo("missing.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert e.details().startswith("creating object pool: getting source repository path:")
    assert not os.path.exists(gitaly_node.repo_path(POOL))


def test_a_linked_member_borrows_the_pool_objects(gitaly_node):
    origin, pool = make_pool(gitaly_node)
    member = gitaly_node.repo_path("@hashed/cc/dd/member.git")
    git("init", "-q", "--bare", member)
    git("fetch", "-q", origin, "+refs/heads/*:refs/heads/*", cwd=member)
    assert count_objects(member)["count"] + count_objects(member)["in-pack"] > 0
    link(gitaly_node, "@hashed/cc/dd/member.git")
    alt = open(os.path.join(member, "objects/info/alternates")).read()
    assert alt == "../../../../../" + POOL + "/objects"
    git("repack", "-adlq", cwd=member)   # drop what the pool has
    git("prune-packed", cwd=member)
    c = count_objects(member)
    assert c["count"] == 0 and c["in-pack"] == 0
    fsck_ok(member)
    # linking again is fine; GetObjectPool names the pool
    link(gitaly_node, "@hashed/cc/dd/member.git")
    got = svc(gitaly_node).GetObjectPool(op().GetObjectPoolRequest(repository=gitaly_node.repo(
        "@hashed/cc/dd/member.git")))
    assert got.object_pool.repository.relative_path == POOL


def test_link_refuses_a_member_of_another_pool_and_bad_input(gitaly_node):
    make_pool(gitaly_node)
    member = make_bare_repo(gitaly_node.repo_path("m.git"))
    with open(os.path.join(member, "objects/info/alternates"), "w") as f:
        f.write("/somewhere/else/objects\n")
    s = svc(gitaly_node)
    e = rpc_error(link, gitaly_node, "m.git")
    assert (e.code(), e.details()) == (grpc.StatusCode.INTERNAL,
                                       'unexpected alternates content: "/somewhere/else/objects"')
    e = rpc_error(link, gitaly_node, "missing.git")
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(s.LinkRepositoryToObjectPool, op().LinkRepositoryToObjectPoolRequest(
        repository=gitaly_node.repo("m.git")))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "no object pool repository")
    missing = "@pools/d4/73/d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35.git"
    e = rpc_error(s.LinkRepositoryToObjectPool, op().LinkRepositoryToObjectPoolRequest(
        object_pool=pool_msg(gitaly_node, missing), repository=gitaly_node.repo("m.git")))
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                       "object pool is not a valid git repository")


def test_fetch_into_object_pool_brings_new_refs_and_keeps_dangling_objects(gitaly_node):
    origin, pool = make_pool(gitaly_node)
    work = str(gitaly_node.repo_path("work"))
    git("clone", "-q", origin, work)
    git("checkout", "-q", "-b", "topic", cwd=work)
    git("commit", "-q", "--allow-empty", "-m", "on topic", cwd=work)
    git("push", "-q", origin, "topic", cwd=work)
    topic = git("rev-parse", "HEAD", cwd=work).strip()
    s = svc(gitaly_node)
    req = op().FetchIntoObjectPoolRequest(object_pool=pool_msg(gitaly_node), origin=gitaly_node.repo(ORIGIN))
    s.FetchIntoObjectPool(req)

    def refs():
        return dict(reversed(l.split()) for l in git("for-each-ref", "--format=%(objectname) %(refname)",
                                                       cwd=pool).splitlines())
    assert refs()["refs/remotes/origin/heads/topic"] == topic
    assert refs()["refs/remotes/origin/tags/v1"] == git("rev-parse", "v1", cwd=origin).strip()
    # topic goes away upstream: its reference is pruned, its commit kept alive for members
    git("update-ref", "-d", "refs/heads/topic", cwd=origin)
    s.FetchIntoObjectPool(req)
    assert "refs/remotes/origin/heads/topic" not in refs()
    assert refs().get("refs/dangling/" + topic) == topic
    fsck_ok(pool)
    # bad input
    e = rpc_error(s.FetchIntoObjectPool, op().FetchIntoObjectPoolRequest(object_pool=pool_msg(gitaly_node)))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "origin is empty")
    e = rpc_error(s.FetchIntoObjectPool, op().FetchIntoObjectPoolRequest(origin=gitaly_node.repo(ORIGIN)))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "object pool is empty")
    e = rpc_error(s.FetchIntoObjectPool, op().FetchIntoObjectPoolRequest(
        object_pool=pool_msg(gitaly_node), origin=gitaly_node.repo(ORIGIN, storage="other")))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                       "origin has different storage than object pool")
    e = rpc_error(s.FetchIntoObjectPool, op().FetchIntoObjectPoolRequest(
        object_pool=pool_msg(gitaly_node, "plain.git"), origin=gitaly_node.repo(ORIGIN)))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                       "object pool invalid: invalid object pool directory")


def test_disconnect_makes_the_member_self_contained(gitaly_node):
    origin, pool = make_pool(gitaly_node)
    rel = "@hashed/cc/dd/member.git"
    member = gitaly_node.repo_path(rel)
    git("clone", "-q", "--bare", "--shared", origin, member)
    os.remove(os.path.join(member, "objects/info/alternates"))
    link(gitaly_node, rel)
    s = svc(gitaly_node)
    s.DisconnectGitAlternates(op().DisconnectGitAlternatesRequest(repository=gitaly_node.repo(rel)))
    assert not os.path.exists(os.path.join(member, "objects/info/alternates"))
    backups = [n for n in os.listdir(os.path.join(member, "objects/info")) if n.startswith("alternates.")]
    assert len(backups) == 1
    # the pool can go: the member has every object itself
    s.DeleteObjectPool(op().DeleteObjectPoolRequest(object_pool=pool_msg(gitaly_node)))
    assert not os.path.exists(pool)
    fsck_ok(member)
    assert git("rev-parse", "main", cwd=member).strip() == git("rev-parse", "main", cwd=origin).strip()
    # nothing to disconnect: fine
    s.DisconnectGitAlternates(op().DisconnectGitAlternatesRequest(repository=gitaly_node.repo(rel)))
    e = rpc_error(s.DisconnectGitAlternates, op().DisconnectGitAlternatesRequest(
        repository=gitaly_node.repo("missing.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND


def test_disconnect_keeps_the_alternates_when_objects_would_be_missing(gitaly_node):
    origin, pool = make_pool(gitaly_node)
    member = gitaly_node.repo_path("m.git")
    git("init", "-q", "--bare", member)
    # an alternate that is no pool, whose objects the member needs; a second one
    other = make_bare_repo(gitaly_node.repo_path("other.git"))
    with open(os.path.join(member, "objects/info/alternates"), "w") as f:
        f.write(os.path.join(other, "objects") + "\n" + os.path.join(pool, "objects") + "\n")
    git("fetch", "-q", other, "+refs/heads/*:refs/heads/*", cwd=member)
    e = rpc_error(svc(gitaly_node).DisconnectGitAlternates, op().DisconnectGitAlternatesRequest(
        repository=gitaly_node.repo("m.git")))
    assert (e.code(), e.details()) == (grpc.StatusCode.INTERNAL, "multiple alternate object directories")
    assert os.path.exists(os.path.join(member, "objects/info/alternates"))


def test_delete_object_pool(gitaly_node):
    origin, pool = make_pool(gitaly_node)
    s = svc(gitaly_node)
    s.DeleteObjectPool(op().DeleteObjectPoolRequest(object_pool=pool_msg(gitaly_node)))
    assert not os.path.exists(pool)
    # gone already: still fine
    s.DeleteObjectPool(op().DeleteObjectPoolRequest(object_pool=pool_msg(gitaly_node)))
    e = rpc_error(s.DeleteObjectPool, op().DeleteObjectPoolRequest(object_pool=pool_msg(gitaly_node, ORIGIN)))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid object pool directory")
    assert os.path.isdir(origin)
    e = rpc_error(s.DeleteObjectPool, op().DeleteObjectPoolRequest())
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "no object pool repository")
    tmp = os.path.join(gitaly_node.storages["default"], "+gitaly", "tmp")
    assert os.listdir(tmp) == []


# --- ReplicateRepository carries pool membership ---------------------------------------------------

CPOOL = "@cluster/pools/d4/73/2"
MEMBER = "@cluster/repositories/6b/86/1"


def replicate_member(a, b, md_node, dedup=True):
    import base64
    import json
    info = {"gitaly-1": {"address": "unix:" + md_node.socket, "token": md_node.token}}
    md = [("gitaly-servers", base64.b64encode(json.dumps(info).encode()).decode())]
    b.stub("RepositoryService").ReplicateRepository(pb("repository").ReplicateRepositoryRequest(
        repository=b.repo(MEMBER, storage="gitaly-2"), source=a.repo(MEMBER, storage="gitaly-1"),
        replicate_object_deduplication_network_membership=dedup), metadata=md, timeout=60)


def pooled_source(a):
    """On node a: a pool at praefect's pool path and a member linked to it with one commit of its own."""
    origin = make_bare_repo(a.repo_path("@cluster/repositories/d4/73/9", "gitaly-1"),
                            files={"big.txt": "y" * 50000 + "\n"})
    git("repack", "-adq", cwd=origin)
    s = svc(a)
    s.CreateObjectPool(op().CreateObjectPoolRequest(
        object_pool=pb("shared").ObjectPool(repository=a.repo(CPOOL, storage="gitaly-1")),
        origin=a.repo("@cluster/repositories/d4/73/9", storage="gitaly-1")))
    member = a.repo_path(MEMBER, "gitaly-1")
    git("init", "-q", "--bare", member)
    s.LinkRepositoryToObjectPool(op().LinkRepositoryToObjectPoolRequest(
        object_pool=pb("shared").ObjectPool(repository=a.repo(CPOOL, storage="gitaly-1")),
        repository=a.repo(MEMBER, storage="gitaly-1")))
    work = member + ".work"
    git("clone", "-q", origin, work)
    git("commit", "-q", "--allow-empty", "-m", "member only", cwd=work)
    git("push", "-q", member, "HEAD:refs/heads/main", cwd=work)
    return member


def test_replicating_a_pooled_repository_links_the_target_to_its_own_pool(make_gitaly):
    a = make_gitaly("a", storages=("gitaly-1",))
    b = make_gitaly("b", storages=("gitaly-2",))
    member = pooled_source(a)
    replicate_member(a, b, a)
    target = b.repo_path(MEMBER, "gitaly-2")
    pool_b = b.repo_path(CPOOL, "gitaly-2")
    # the pool came along, and the target borrows from it
    assert os.path.isdir(pool_b)
    assert open(os.path.join(target, "objects/info/alternates")).read() == "../../../../../pools/d4/73/2/objects"
    fsck_ok(target)
    c = count_objects(target)
    assert c["count"] + c["in-pack"] <= 3   # its own commit, not the pool's blob
    assert refs_of(target) == refs_of(member)
    got = svc(b).GetObjectPool(op().GetObjectPoolRequest(repository=b.repo(MEMBER, storage="gitaly-2")))
    assert got.object_pool.repository.relative_path == CPOOL
    # again, with the pool and the link in place: nothing changes
    replicate_member(a, b, a)
    fsck_ok(target)
    # the source leaves the pool: so does the target
    svc(a).DisconnectGitAlternates(op().DisconnectGitAlternatesRequest(repository=a.repo(MEMBER, storage="gitaly-1")))
    replicate_member(a, b, a)
    assert not os.path.exists(os.path.join(target, "objects/info/alternates"))
    fsck_ok(target)


def test_replication_refuses_a_target_in_another_pool(make_gitaly):
    a = make_gitaly("a", storages=("gitaly-1",))
    b = make_gitaly("b", storages=("gitaly-2",))
    pooled_source(a)
    replicate_member(a, b, a)
    # the target now points at a different (valid) pool
    other = "@cluster/pools/4e/07/3"
    git("clone", "-q", "--bare", b.repo_path(CPOOL, "gitaly-2"), b.repo_path(other, "gitaly-2"))
    target = b.repo_path(MEMBER, "gitaly-2")
    with open(os.path.join(target, "objects/info/alternates"), "w") as f:
        f.write("../../../../../../" + other + "/objects")
    e = rpc_error(replicate_member, a, b, a)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "target repository links to different object pool" in e.details()


def refs_of(path):
    return git("for-each-ref", "--format=%(objectname) %(refname)", cwd=path)


def test_fetch_into_object_pool_optimizes_the_pool_afterwards(gitaly_node):
    """As upstream, the fetch ends with the pool's housekeeping: a pool without a commit-graph
    has one (a split chain with bloom filters) once FetchIntoObjectPool answered."""
    origin, pool = make_pool(gitaly_node)
    graphs = os.path.join(pool, "objects", "info", "commit-graphs")
    shutil.rmtree(graphs, ignore_errors=True)
    single = os.path.join(pool, "objects", "info", "commit-graph")
    if os.path.exists(single):
        os.unlink(single)
    work = str(gitaly_node.repo_path("work-opt"))
    git("clone", "-q", origin, work)
    git("commit", "-q", "--allow-empty", "-m", "more", cwd=work)
    git("push", "-q", origin, "HEAD:refs/heads/more", cwd=work)
    svc(gitaly_node).FetchIntoObjectPool(op().FetchIntoObjectPoolRequest(
        object_pool=pool_msg(gitaly_node), origin=gitaly_node.repo(ORIGIN)))
    chain = os.path.join(graphs, "commit-graph-chain")
    assert os.path.exists(chain)
    git("commit-graph", "verify", cwd=pool)
    fsck_ok(pool)
