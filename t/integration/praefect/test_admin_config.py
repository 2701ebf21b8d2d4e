"""praefect's config as upstream reads it, its diagnostic subcommands, and the
relative-path rule it shares with the nodes."""
import json
import os
import subprocess

import grpc
import pytest

from praefect_itest import NODE_TOKEN, PRAEFECT_TOKEN  # noqa: F401
from gitaly_itest import BUILD, pb

PRAEFECT = os.path.join(BUILD, "praefect", "praefect")


def run(*args, input=None, env=None, timeout=60):
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run([PRAEFECT] + list(args), input=input, capture_output=True, text=True,
                          env=e, timeout=timeout)


# --- relative paths: praefect answers what the node answers, before routing ---

@pytest.mark.parametrize("path", ["../../etc", "a/../../x", ".."])
def test_repository_exists_refuses_a_path_escaping_the_storage_as_the_node_does(cluster, path):
    req = lambda storage: pb("repository").RepositoryExistsRequest(  # noqa: E731
        repository=pb("shared").Repository(storage_name=storage, relative_path=path))
    with pytest.raises(grpc.RpcError) as node_err:
        cluster.node_stub("gitaly-1", "RepositoryService").RepositoryExists(req("gitaly-1"))
    with pytest.raises(grpc.RpcError) as px_err:
        cluster.praefect.stub("RepositoryService").RepositoryExists(req("default"))
    assert node_err.value.code() == px_err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert node_err.value.details() == px_err.value.details() == "relative path escapes root directory"


def test_create_repository_with_an_escaping_path_creates_nothing(cluster):
    stub = cluster.praefect.stub("RepositoryService")
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateRepository(pb("repository").CreateRepositoryRequest(repository=cluster.praefect.repo("a/../../x")))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "relative path escapes root directory"
    for node in cluster.nodes.values():
        assert not os.path.exists(os.path.join(node.dir, "x"))
    # a path that only looks odd but stays inside is still routed and created
    stub.CreateRepository(pb("repository").CreateRepositoryRequest(repository=cluster.praefect.repo("a/../ok.git")))
    assert stub.RepositoryExists(pb("repository").RepositoryExistsRequest(
        repository=cluster.praefect.repo("a/../ok.git"))).exists


def test_a_routed_accessor_refuses_an_escaping_path(cluster):
    with pytest.raises(grpc.RpcError) as err:
        cluster.praefect.stub("RefService").FindDefaultBranchName(
            pb("ref").FindDefaultBranchNameRequest(repository=cluster.praefect.repo("../gitaly-1")))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "relative path escapes root directory"


def test_unknown_storage_is_reported_before_the_path(cluster):
    with pytest.raises(grpc.RpcError) as err:
        cluster.praefect.stub("RepositoryService").RepositoryExists(pb("repository").RepositoryExistsRequest(
            repository=pb("shared").Repository(storage_name="nope", relative_path="../x")))
    assert err.value.details() == 'storage name not found: "nope"'
