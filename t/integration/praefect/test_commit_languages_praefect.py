"""CommitService/CommitLanguages through praefect: routed to a replica, answered like a node."""
import grpc
import pytest

from praefect_itest import wait_for
from gitaly_itest import pb
from helpers_languages import expected, make_languages_repo, rows
from helpers_reads import rpc_error
from test_praefect import create_repo, push, replicas_in_sync

C = lambda: pb("commit")  # noqa: E731


@pytest.fixture(scope="module")
def langs(tmp_path_factory):
    return make_languages_repo(str(tmp_path_factory.mktemp("langs")))


def test_languages_through_praefect(cluster, langs):
    create_repo(cluster, "group/langs.git")
    push(cluster, langs["path"], "group/langs.git", "refs/heads/*:refs/heads/*")
    wait_for(lambda: replicas_in_sync(cluster, "group/langs.git"), what="replication")
    s = cluster.praefect.stub("CommitService")
    r = cluster.praefect.repo("group/langs.git")
    assert rows(s.CommitLanguages(C().CommitLanguagesRequest(repository=r))) == expected()
    assert rows(s.CommitLanguages(C().CommitLanguagesRequest(repository=r, revision=b"only-c"))) == [
        ("C", 28, 100.0, "#555555")]
    e = rpc_error(lambda: s.CommitLanguages(C().CommitLanguagesRequest(repository=r, revision=b"nope")))
    assert e.code() == grpc.StatusCode.INTERNAL and "looking up revision" in e.details()
    e = rpc_error(lambda: s.CommitLanguages(C().CommitLanguagesRequest(
        repository=cluster.praefect.repo("group/missing.git"))))
    assert e.code() == grpc.StatusCode.NOT_FOUND
