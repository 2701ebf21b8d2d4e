"""CommitService/CommitLanguages against a node: bytes per language of a revision's tree, compared with
what linguist's rules give for the files the fixture wrote."""
import os
import shutil

import grpc
import pytest

from gitaly_itest import pb
from helpers_languages import expected, make_languages_repo, rows
from helpers_reads import rpc_error

C = lambda: pb("commit")  # noqa: E731


@pytest.fixture(scope="module")
def langs(tmp_path_factory):
    return make_languages_repo(str(tmp_path_factory.mktemp("langs")))


@pytest.fixture
def node(gitaly_node, langs):
    shutil.copytree(langs["path"], gitaly_node.repo_path("langs.git"), copy_function=os.link)
    return gitaly_node


def languages(node, revision=b"", **kw):
    return node.stub("CommitService").CommitLanguages(C().CommitLanguagesRequest(
        repository=kw.pop("repository", node.repo("langs.git")), revision=revision, **kw))


def test_languages_of_the_default_branch(node):
    want = expected()
    assert [r[0] for r in want][:2] == ["Ruby", "C"] and len(want) == 8
    assert rows(languages(node)) == want
    assert abs(sum(r[2] for r in want) - 100) < 0.01


def test_named_revision_and_ambiguous_name_takes_the_branch(node):
    assert rows(languages(node, b"only-c")) == [("C", 28, 100.0, "#555555")]
    # "main" is a branch and a tag: the branch is counted
    assert rows(languages(node, b"main")) == expected()
    assert rows(languages(node, b"refs/tags/main")) == [("C", 28, 100.0, "#555555")]


def test_bad_revisions_and_repositories(node):
    e = rpc_error(lambda: languages(node, b"--output=/meow"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "revision can't start with '-'" in e.details()
    e = rpc_error(lambda: languages(node, b"nope"))
    assert e.code() == grpc.StatusCode.INTERNAL and e.details().startswith("looking up revision: ")
    e = rpc_error(lambda: languages(node, b"main", repository=node.repo("missing.git")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = rpc_error(lambda: node.stub("CommitService").CommitLanguages(C().CommitLanguagesRequest()))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    # the node still answers
    assert rows(languages(node, b"only-c"))[0][0] == "C"
