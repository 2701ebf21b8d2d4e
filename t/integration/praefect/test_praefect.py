"""praefect in front of three real gitaly nodes: routing, replication, intercepted RPCs, bad input."""
import json
import os
import re
import shutil
import subprocess

import grpc
import pytest

from praefect_itest import PRAEFECT_TOKEN, wait_for
from gitaly_itest import BUILD, git, make_bare_repo, pb, pb_grpc


def gitaly_ssh_env(praefect, relative_path, verb):
    payload = {"repository": {"storageName": "default", "relativePath": relative_path}}
    if verb == "receive-pack":
        payload.update({"glId": "user-1", "glUsername": "test", "glRepository": "project-1"})
        payload["repository"]["glRepository"] = "project-1"
    return {
        "GIT_SSH_COMMAND": "%s %s" % (os.path.join(BUILD, "gitaly-ssh", "gitaly-ssh"), verb),
        "GIT_SSH_VARIANT": "simple",
        "GITALY_PAYLOAD": json.dumps(payload),
        "GITALY_ADDRESS": "unix:" + praefect.socket,
        "GITALY_TOKEN": PRAEFECT_TOKEN,
    }


def create_repo(cluster, relative_path):
    cluster.praefect.stub("RepositoryService").CreateRepository(
        pb("repository").CreateRepositoryRequest(repository=cluster.praefect.repo(relative_path)), timeout=10)


def push(cluster, src, relative_path, *refspecs):
    git("push", "ssh://gitaly/repo.git", *(refspecs or ("--all",)), cwd=src,
        env=gitaly_ssh_env(cluster.praefect, relative_path, "receive-pack"))


def refs(path):
    return git("for-each-ref", "--format=%(objectname) %(refname)", cwd=path)


def work_repo(tmp, name="src", branches=("main", "feature"), tags=("v1.0",)):
    bare = make_bare_repo(os.path.join(str(tmp), name + ".git"), branches=branches, tags=tags)
    return bare


def replicas_in_sync(cluster, relative_path):
    md = cluster.praefect.metadata(relative_path)
    sums = {r.storage: cluster.checksum(r.storage, md.replica_path) for r in md.replicas}
    gens = {r.storage: r.generation for r in md.replicas}
    ok = len(md.replicas) == 3 and len(set(sums.values())) == 1 and all(g == md.generation for g in gens.values())
    return (md, sums) if ok else None


@pytest.mark.both_stores
def test_create_push_clone_replicates_everywhere(cluster, tmp_path):
    create_repo(cluster, "group/project.git")
    src = work_repo(tmp_path)
    push(cluster, src, "group/project.git", "--all")
    push(cluster, src, "group/project.git", "--tags")

    clone = str(tmp_path / "clone")
    git("clone", "--bare", "ssh://gitaly/repo.git", clone,
        env=gitaly_ssh_env(cluster.praefect, "group/project.git", "upload-pack"))
    assert refs(clone) == refs(src)

    md, sums = wait_for(lambda: replicas_in_sync(cluster, "group/project.git"), what="replication")
    assert re.fullmatch(r"@cluster/repositories/[0-9a-f]{2}/[0-9a-f]{2}/\d+", md.replica_path)
    for name, node in cluster.nodes.items():
        assert os.path.isdir(os.path.join(node.storages[name], md.replica_path))
    assert md.generation >= 1
    assert all(r.generation == md.generation for r in md.replicas)
    # the client-visible path exists on no node: only the replica path does
    for name, node in cluster.nodes.items():
        assert not os.path.exists(os.path.join(node.storages[name], "group/project.git"))


def count_calls(node, method):
    return sum(1 for line in open(node.log_path) if '"grpc.method":"%s"' % method in line)


def test_reads_spread_over_up_to_date_replicas(cluster, tmp_path):
    create_repo(cluster, "spread.git")
    push(cluster, work_repo(tmp_path), "spread.git", "--all")
    wait_for(lambda: replicas_in_sync(cluster, "spread.git"), what="replication")
    before = {n: count_calls(node, "FindDefaultBranchName") for n, node in cluster.nodes.items()}
    stub = cluster.praefect.stub("RefService")
    for _ in range(60):
        r = stub.FindDefaultBranchName(pb("ref").FindDefaultBranchNameRequest(repository=cluster.praefect.repo("spread.git")))
        assert r.name == b"refs/heads/main"
    served = {n: count_calls(node, "FindDefaultBranchName") - before[n] for n, node in cluster.nodes.items()}
    assert sum(served.values()) == 60
    assert all(v > 0 for v in served.values()), served

    # primary-only policy pins reads to the primary
    md = cluster.praefect.metadata("spread.git")
    before = {n: count_calls(node, "FindDefaultBranchName") for n, node in cluster.nodes.items()}
    for _ in range(10):
        stub.FindDefaultBranchName(pb("ref").FindDefaultBranchNameRequest(repository=cluster.praefect.repo("spread.git")),
                                   metadata=[("gitaly-route-repository-accessor-policy", "primary-only")])
    served = {n: count_calls(node, "FindDefaultBranchName") - before[n] for n, node in cluster.nodes.items()}
    assert served[md.primary] == 10


@pytest.mark.both_stores
def test_stopped_secondary_is_repaired(cluster, tmp_path):
    create_repo(cluster, "repair.git")
    src = work_repo(tmp_path)
    push(cluster, src, "repair.git", "main")
    wait_for(lambda: replicas_in_sync(cluster, "repair.git"), what="replication")
    md = cluster.praefect.metadata("repair.git")
    secondary = next(r.storage for r in md.replicas if r.storage != md.primary)
    cluster.nodes[secondary].stop()
    wait_for(lambda: not {r.storage: r.healthy for r in cluster.praefect.metadata("repair.git").replicas}[secondary],
             what="secondary marked unhealthy")
    push(cluster, src, "repair.git", "feature")
    md2 = cluster.praefect.metadata("repair.git")
    assert md2.generation > md.generation
    behind = {r.storage: r.generation for r in md2.replicas}
    assert behind[secondary] < md2.generation
    cluster.nodes[secondary].start()
    wait_for(lambda: replicas_in_sync(cluster, "repair.git"), what="repair of the stopped secondary")


@pytest.mark.both_stores
def test_queued_jobs_survive_a_praefect_crash(cluster, tmp_path):
    create_repo(cluster, "crash.git")
    src = work_repo(tmp_path)
    push(cluster, src, "crash.git", "main")
    wait_for(lambda: replicas_in_sync(cluster, "crash.git"), what="replication")
    md = cluster.praefect.metadata("crash.git")
    secondary = next(r.storage for r in md.replicas if r.storage != md.primary)
    cluster.nodes[secondary].stop()
    wait_for(lambda: not {r.storage: r.healthy for r in cluster.praefect.metadata("crash.git").replicas}[secondary],
             what="secondary marked unhealthy")
    push(cluster, src, "crash.git", "feature")
    cluster.praefect.kill()            # jobs for the stopped secondary are still queued
    cluster.nodes[secondary].start()
    cluster.praefect.start()
    wait_for(lambda: replicas_in_sync(cluster, "crash.git"), what="jobs run after restart")


@pytest.mark.both_stores
def test_repository_exists_and_remove(cluster, tmp_path):
    stub = cluster.praefect.stub("RepositoryService")
    create_repo(cluster, "gone.git")
    push(cluster, work_repo(tmp_path), "gone.git", "main")
    md, _ = wait_for(lambda: replicas_in_sync(cluster, "gone.git"), what="replication")
    exists = lambda: stub.RepositoryExists(pb("repository").RepositoryExistsRequest(repository=cluster.praefect.repo("gone.git"))).exists  # noqa: E731
    assert exists()
    stub.RemoveRepository(pb("repository").RemoveRepositoryRequest(repository=cluster.praefect.repo("gone.git")))
    assert not exists()
    for name, node in cluster.nodes.items():
        assert not os.path.exists(os.path.join(node.storages[name], md.replica_path))
    with pytest.raises(grpc.RpcError) as e:
        cluster.praefect.metadata("gone.git")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        stub.RemoveRepository(pb("repository").RemoveRepositoryRequest(repository=cluster.praefect.repo("gone.git")))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    # no rows left in the store either
    assert cluster.praefect.sql("SELECT (SELECT count(*) FROM repositories), "
                                "(SELECT count(*) FROM storage_repositories)") == [("0", "0")]


def code_of(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code(), e.value.details()


@pytest.mark.both_stores
def test_bad_input_gets_the_right_codes(cluster, tmp_path):
    ref = cluster.praefect.stub("RefService")
    R = pb("ref").FindDefaultBranchNameRequest
    Repo = pb("shared").Repository

    code, msg = code_of(lambda: ref.FindDefaultBranchName(R(repository=Repo(storage_name="nope", relative_path="a.git"))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "storage name not found" in msg
    code, msg = code_of(lambda: ref.FindDefaultBranchName(R()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and msg == "repository not set"
    code, msg = code_of(lambda: ref.FindDefaultBranchName(R(repository=Repo(storage_name="default"))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and msg == "repository path not set"
    code, msg = code_of(lambda: ref.FindDefaultBranchName(R(repository=Repo(storage_name="default", relative_path="../../etc"))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and msg == "relative path escapes root directory"

    # a traversal in a creation is refused as the node refuses it (test_admin_config.py has more)
    code, msg = code_of(lambda: create_repo(cluster, "../../escape.git"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and msg == "relative path escapes root directory"
    assert not os.path.exists(os.path.join(cluster.tmp, "escape.git"))

    bad = cluster.praefect.stub("RefService", secret="wrong")
    code, _ = code_of(lambda: bad.FindDefaultBranchName(R(repository=cluster.praefect.repo("x.git"))))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    none = cluster.praefect.stub("RefService", secret=None)
    code, _ = code_of(lambda: none.FindDefaultBranchName(R(repository=cluster.praefect.repo("x.git"))))
    assert code == grpc.StatusCode.UNAUTHENTICATED

    ch = cluster.praefect.channel()
    unknown = ch.unary_unary("/gitaly.NoSuchService/Nope", request_serializer=lambda x: x, response_deserializer=lambda x: x)
    code, _ = code_of(lambda: unknown(b""))
    assert code == grpc.StatusCode.UNIMPLEMENTED

    # still serving
    import health_pb2_grpc
    health = pb("health")
    assert health_pb2_grpc.HealthStub(ch).Check(health.HealthCheckRequest()).status == health.HealthCheckResponse.SERVING


def test_list_storages(cluster):
    out = subprocess.run([os.path.join(BUILD, "praefect", "praefect"), "-config", cluster.praefect.config_path,
                          "list-storages"], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["VIRTUAL_STORAGE", "NODE", "ADDRESS"]
    assert len(lines) == 4 and all(l.startswith("default") for l in lines[1:])
    out = subprocess.run([os.path.join(BUILD, "praefect", "praefect"), "-config", cluster.praefect.config_path,
                          "list-storages", "-virtual-storage", "other"], capture_output=True, text=True).stdout
    assert out == "No virtual storages named other.\n"


def test_replicate_repository_through_praefect_creates_it_everywhere(cluster, tmp_path, make_gitaly):
    import base64
    import json
    outside = make_gitaly("outside", storages=("old",), token="outside-secret")
    make_bare_repo(outside.repo_path("imported.git", "old"), branches=("main", "dev"), tags=("v1",))
    servers = base64.b64encode(json.dumps(
        {"old": {"address": "unix:" + outside.socket, "token": "outside-secret"}}).encode()).decode()
    req = pb("repository").ReplicateRepositoryRequest(
        repository=cluster.praefect.repo("imported.git"),
        source=pb("shared").Repository(storage_name="old", relative_path="imported.git"),
        replicate_object_deduplication_network_membership=True)
    cluster.praefect.stub("RepositoryService").ReplicateRepository(req, metadata=[("gitaly-servers", servers)],
                                                                   timeout=60)
    md, sums = wait_for(lambda: replicas_in_sync(cluster, "imported.git"), what="imported everywhere")
    want = refs(outside.repo_path("imported.git", "old"))
    for name, node in cluster.nodes.items():
        assert refs(os.path.join(node.storages[name], md.replica_path)) == want


@pytest.mark.no_store("loads docs/config.praefect.toml; list-storages opens no store")
def test_documented_example_config_loads():
    example = os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs", "config.praefect.toml")
    out = subprocess.run([os.path.join(BUILD, "praefect", "praefect"), "-config", example, "list-storages"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert [l.split()[1] for l in out.stdout.splitlines()[1:]] == ["gitaly-1", "gitaly-2", "gitaly-3"]


def test_replicate_repository_through_praefect_moves_a_repository_in(cluster, tmp_path):
    """A storage move as GitLab does it: ReplicateRepository through praefect from a gitaly outside
    the cluster, named in the client's gitaly-servers metadata. The repository is created on every
    assigned node at once (an upsert, as upstream), tracked, and equal everywhere."""
    import base64
    import json
    import grpc
    from gitaly_itest import GitalyNode
    src = GitalyNode(str(tmp_path / "src"), storages=("other",)).start()
    try:
        path = os.path.join(src.storages["other"], "moved.git")
        make_bare_repo(path, branches=("main", "topic"))
        servers = {"other": {"address": "unix:" + src.socket, "token": src.token}}
        md = [("gitaly-servers", base64.b64encode(json.dumps(servers).encode()).decode())]
        req = pb("repository").ReplicateRepositoryRequest(
            repository=cluster.praefect.repo("moved.git"),
            source=pb("shared").Repository(storage_name="other", relative_path="moved.git"))
        cluster.praefect.stub("RepositoryService").ReplicateRepository(req, metadata=md, timeout=60)
        meta = cluster.praefect.metadata("moved.git")
        assert sorted(r.storage for r in meta.replicas) == sorted(cluster.nodes)
        want = git("for-each-ref", "--format=%(objectname) %(refname)", cwd=path)
        for r in meta.replicas:
            assert r.generation == meta.generation
            replica = os.path.join(cluster.nodes[r.storage].storages[r.storage], meta.replica_path)
            assert git("for-each-ref", "--format=%(objectname) %(refname)", cwd=replica) == want
        # again: an update of the tracked repository, not an "already exists"
        cluster.praefect.stub("RepositoryService").ReplicateRepository(req, metadata=md, timeout=60)
        # without gitaly-servers the node cannot find the source: upstream's error, nothing tracked
        req2 = pb("repository").ReplicateRepositoryRequest(
            repository=cluster.praefect.repo("nosource.git"),
            source=pb("shared").Repository(storage_name="other", relative_path="moved.git"))
        with pytest.raises(grpc.RpcError) as e:
            cluster.praefect.stub("RepositoryService").ReplicateRepository(req2, timeout=60)
        assert "gitaly-servers" in e.value.details()
    finally:
        src.stop()
