"""RepositoryService/SearchFilesByName and SearchFilesByContent against a node, compared with what
`git ls-tree` and `git grep` say; filters, offsets, limits, chunking of big matches, bad requests."""
import os
import shutil
import subprocess

import grpc
import pytest

from gitaly_itest import git, pb
from helpers_reads import rpc_error

R = lambda: pb("repository")  # noqa: E731

LINES = "".join("%s-%d\n" % ("x", i) for i in range(1, 11))


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("search"))
    work, bare = os.path.join(base, "work"), os.path.join(base, "search.git")
    git("init", "-q", "-b", "main", work)
    files = {
        "a": LINES.replace("x", "a"),
        "b": LINES.replace("x", "b"),
        "dir/c": LINES.replace("x", "c"),
        "dir/c.svg": "<svg/>\n",
        "dir/d.txt": "d\n",
        "\"file with quote.txt": "quoted\n",
        ".vimrc": "set nu\n",
        "编码 'foo'.md": "什么东西\n",
        "-dashed": "-dashed\n",
        # one long run of matching lines: a single match group bigger than a message chunk
        "big.txt": "".join("abcdefg line %06d\n" % i for i in range(30000)),
    }
    for name, content in files.items():
        full = os.path.join(work, name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(content)
    with open(os.path.join(work, "binary.bin"), "wb") as f:
        f.write(b"abcdefg\0binary\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "files", cwd=work)
    git("clone", "-q", "--bare", work, bare)
    return {"path": bare}


@pytest.fixture
def node(gitaly_node, facts):
    shutil.copytree(facts["path"], gitaly_node.repo_path("search.git"), copy_function=os.link)
    gitaly_node.search_repo = gitaly_node.repo("search.git")
    return gitaly_node


def by_name(node, **kw):
    kw.setdefault("repository", node.search_repo)
    kw.setdefault("ref", b"main")
    return [f for m in node.stub("RepositoryService").SearchFilesByName(R().SearchFilesByNameRequest(**kw))
            for f in m.files]


def by_content(node, **kw):
    kw.setdefault("repository", node.search_repo)
    kw.setdefault("ref", b"main")
    msgs = list(node.stub("RepositoryService").SearchFilesByContent(R().SearchFilesByContentRequest(**kw)))
    matches, cur = [], b""
    for m in msgs:
        assert not (m.match_data and m.end_of_match)
        assert len(m.match_data) <= 128 * 1024
        cur += m.match_data
        if m.end_of_match:
            matches.append(cur)
            cur = b""
    assert cur == b""
    return matches, msgs


def ls_tree(facts, *pathspec):
    out = subprocess.run(["git", "--git-dir", facts["path"], "ls-tree", "--full-tree", "--name-only", "-r", "-z",
                          "main", "--"] + list(pathspec), capture_output=True, check=True).stdout
    return [p for p in out.split(b"\0") if p]


def test_search_by_name_is_ls_tree(node, facts):
    assert by_name(node, query=".") == ls_tree(facts, ".")
    assert by_name(node, query="dir") == [b"dir/c", b"dir/c.svg", b"dir/d.txt"]
    assert by_name(node, query="dir", filter=r"\.svg$") == [b"dir/c.svg"]
    for name in ("\"file with quote.txt", ".vimrc", "编码 'foo'.md", "-dashed"):
        assert by_name(node, query=name) == [name.encode()]
    assert by_name(node, query="*.txt") == ls_tree(facts, "*.txt")
    # offset counts the filtered files, limit caps what is returned
    everything = ls_tree(facts, ".")
    assert by_name(node, query=".", offset=2, limit=3) == everything[2:5]
    assert by_name(node, query=".", limit=1) == everything[:1]
    assert by_name(node, query=".", offset=len(everything)) == []
    assert by_name(node, query=".", filter="^dir/", offset=1) == [b"dir/c.svg", b"dir/d.txt"]
    # an unknown ref lists nothing, as upstream's
    assert by_name(node, query=".", ref=b"non_existent_ref") == []


def test_search_by_name_bad_requests(node):
    S = lambda **kw: rpc_error(lambda: by_name(node, **kw))  # noqa: E731
    cases = [
        (dict(query=""), "no query given"),
        (dict(query="foo", ref=b""), "no ref given"),
        (dict(query=".", ref=b"--output=/tmp/x"), "invalid ref argument"),
        (dict(query="foo", filter="." * 1001), "filter exceeds maximum length"),
    ]
    for kw, msg in cases:
        e = S(**kw)
        assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, msg)
    e = S(query="foo", filter="+*.")
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details().startswith("filter did not compile: ")
    assert S(query="foo", repository=node.repo("missing.git")).code() == grpc.StatusCode.NOT_FOUND


def git_grep(facts, query):
    r = subprocess.run(["git", "--git-dir", facts["path"], "grep", "--ignore-case", "-I", "--line-number", "--null",
                        "--before-context=2", "--after-context=2", "--perl-regexp", "-e", query, "main"],
                       capture_output=True)
    assert r.returncode in (0, 1)
    groups = r.stdout.split(b"\n--\n")
    out = [g if g.endswith(b"\n") else g + b"\n" for g in groups if g]
    return out


def test_search_by_content_is_git_grep(node, facts):
    matches, _ = by_content(node, query="A-6")
    assert matches == git_grep(facts, "A-6")
    assert matches == [b"".join(b"main:a\x00%d\x00a-%d\n" % (i, i) for i in range(4, 9))]
    matches, _ = by_content(node, query="-6$")
    assert [m.split(b"\0")[0] for m in matches] == [b"main:a", b"main:b", b"main:dir/c"]
    assert matches == git_grep(facts, "-6$")
    matches, _ = by_content(node, query="[ac]-[16]")
    assert matches == git_grep(facts, "[ac]-[16]")
    # a pattern only PCRE understands, a leading dash, unicode
    assert by_content(node, query="(*LIMIT_MATCH=1)a-1$")[0] == git_grep(facts, "(*LIMIT_MATCH=1)a-1$")
    assert by_content(node, query="-dashed")[0] == git_grep(facts, "-dashed")
    assert by_content(node, query="什么东西")[0] == [b"main:\xe7\xbc\x96\xe7\xa0\x81 'foo'.md\x001\x00" +
                                                 "什么东西".encode() + b"\n"]
    # nothing: no message at all; binary files are skipped
    assert by_content(node, query="这个应该没有结果") == ([], [])
    assert by_content(node, query="^abcdefg$")[0] == []
    assert by_content(node, query="x", ref=b"non_existent_ref") == ([], [])


def test_a_big_match_group_comes_in_chunks(node, facts):
    matches, msgs = by_content(node, query="abcdefg line")
    assert matches == git_grep(facts, "abcdefg line")
    assert len(matches) == 1 and len(matches[0]) > 3 * 128 * 1024
    assert len(msgs) > 4 and all(len(m.match_data) == 128 * 1024 for m in msgs[:3])


def test_search_by_content_bad_requests(node):
    S = lambda **kw: rpc_error(lambda: by_content(node, **kw))  # noqa: E731
    for kw, msg in ((dict(query=""), "no query given"), (dict(query="foo", ref=b""), "no ref given"),
                    (dict(query=".", ref=b"--no-index"), "invalid ref argument")):
        e = S(**kw)
        assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, msg)
    assert S(query="foo", repository=node.repo("missing.git")).code() == grpc.StatusCode.NOT_FOUND
