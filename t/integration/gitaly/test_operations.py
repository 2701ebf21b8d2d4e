"""OperationService write RPCs (UserCreateBranch, UserDeleteBranch,
UserCreateTag, UserDeleteTag, UserCommitFiles) against a real gitaly: the
reference updates, the in-process hooks around them (custom hooks and a fake
GitLab internal API) and the errors with their rich details."""
import json
import os
import threading
import time

import grpc
import pytest

from gitaly_itest import GitalyNode, git, make_bare_repo, pb
from helpers_hooks import (ZERO, FakeGitLab, check_jwt, detail, hook_processes, status_details,
                           write_custom_hook)


def ops():
    return pb("operations")


def errors():
    return pb("errors")


USER_KW = dict(gl_id="user-123", name=b"Jane Doe", email=b"jane@example.com", gl_username="jane")


def user(**kw):
    d = dict(USER_KW)
    d.update(kw)
    return pb("shared").User(**d)


@pytest.fixture
def repo(gitaly_node):
    make_bare_repo(gitaly_node.repo_path("r.git"), branches=("main", "other"),
                   files={"README.md": "hello\n", "dir/a.txt": "a\n"})
    return gitaly_node.repo("r.git", gl_repository="project-1")


def rev(node, name, rel="r.git"):
    r = git("--git-dir", node.repo_path(rel), "rev-parse", "--verify", "-q", name, check=False)
    return r.strip() or None


def fsck(node, rel="r.git"):
    git("--git-dir", node.repo_path(rel), "fsck", "--strict", "--no-dangling")


def quarantines(node):
    tmp = os.path.join(node.storages["default"], "+gitaly", "tmp")
    return [d for d in os.listdir(tmp) if d.startswith("quarantine-")] if os.path.isdir(tmp) else []


def rpc_error(fn, *a, **kw):
    with pytest.raises(grpc.RpcError) as e:
        fn(*a, timeout=30, **kw)
    return e.value


# --- UserCreateBranch ---

def test_create_branch(gitaly_node, repo):
    main = rev(gitaly_node, "main")
    resp = gitaly_node.stub("OperationService").UserCreateBranch(ops().UserCreateBranchRequest(
        repository=repo, branch_name=b"feature", start_point=b"main", user=user()), timeout=30)
    assert resp.branch.name == b"feature"
    assert resp.branch.target_commit.id == main
    assert resp.branch.target_commit.subject == b"initial commit"
    assert resp.branch.target_commit.author.email == b"test@example.com"
    assert resp.branch.target_commit.author.timezone == b"+0100"
    assert resp.branch.target_commit.author.date.seconds == 1700000000
    assert rev(gitaly_node, "refs/heads/feature") == main
    assert quarantines(gitaly_node) == []


def test_create_branch_errors(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    R = ops().UserCreateBranchRequest
    cases = [
        (R(repository=None, branch_name=b"b", start_point=b"main", user=user()),
         grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
        (R(repository=gitaly_node.repo("missing.git"), branch_name=b"b", start_point=b"main", user=user()),
         grpc.StatusCode.NOT_FOUND, None),
        (R(repository=gitaly_node.repo("../escape"), branch_name=b"b", start_point=b"main", user=user()),
         grpc.StatusCode.INVALID_ARGUMENT, "relative path escapes root directory"),
        (R(repository=repo, branch_name=b"", start_point=b"main", user=user()),
         grpc.StatusCode.INVALID_ARGUMENT, "empty branch name"),
        (R(repository=repo, branch_name=b"b", start_point=b"main"),
         grpc.StatusCode.INVALID_ARGUMENT, "empty user"),
        (R(repository=repo, branch_name=b"b", start_point=b"", user=user()),
         grpc.StatusCode.INVALID_ARGUMENT, "empty start point"),
        (R(repository=repo, branch_name=b"b", start_point=b"i-dont-exist", user=user()),
         grpc.StatusCode.FAILED_PRECONDITION, "revspec 'i-dont-exist' not found"),
        (R(repository=repo, branch_name=b"main", start_point=b"main", user=user()),
         grpc.StatusCode.FAILED_PRECONDITION, "reference update: reference already exists"),
    ]
    for req, code, msg in cases:
        e = rpc_error(stub.UserCreateBranch, req)
        assert e.code() == code, (req, e.details())
        if msg:
            assert e.details() == msg
    git("--git-dir", gitaly_node.repo_path("r.git"), "update-ref", "refs/heads/improve/awesome", "main")
    e = rpc_error(stub.UserCreateBranch, R(repository=repo, branch_name=b"improve", start_point=b"main",
                                           user=user()))
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                       "reference update: file directory conflict")
    assert quarantines(gitaly_node) == []


def test_create_branch_wrong_token(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService", secret="wrong")
    e = rpc_error(stub.UserCreateBranch, ops().UserCreateBranchRequest(
        repository=repo, branch_name=b"x", start_point=b"main", user=user()))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert rev(gitaly_node, "refs/heads/x") is None


def test_create_branch_refused_by_custom_hook(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    for hook in ("pre-receive", "update"):
        path = write_custom_hook(gitaly_node.repo_path("r.git"), hook, "#!/bin/sh\necho GL_ID=$GL_ID\nexit 1\n")
        e = rpc_error(stub.UserCreateBranch, ops().UserCreateBranchRequest(
            repository=repo, branch_name=b"new-branch", start_point=b"main", user=user()))
        assert (e.code(), e.details()) == (grpc.StatusCode.PERMISSION_DENIED, "creation denied by custom hooks")
        d = detail(e, ops().UserCreateBranchError)
        assert d.WhichOneof("error") == "custom_hook"
        assert d.custom_hook.stdout == b"GL_ID=user-123\n"
        assert d.custom_hook.stderr == b""
        assert d.custom_hook.hook_type == (errors().CustomHookError.HOOK_TYPE_PRERECEIVE if hook == "pre-receive"
                                           else errors().CustomHookError.HOOK_TYPE_UPDATE)
        assert rev(gitaly_node, "refs/heads/new-branch") is None
        os.unlink(path)
    assert quarantines(gitaly_node) == []


def test_post_receive_hook_failure_does_not_undo_the_update(gitaly_node, repo):
    write_custom_hook(gitaly_node.repo_path("r.git"), "post-receive", "#!/bin/sh\ncat > post.txt\nexit 1\n")
    gitaly_node.stub("OperationService").UserCreateBranch(ops().UserCreateBranchRequest(
        repository=repo, branch_name=b"b2", start_point=b"main", user=user()), timeout=30)
    main = rev(gitaly_node, "main")
    assert rev(gitaly_node, "refs/heads/b2") == main
    # custom hooks run in the repository with the update on stdin
    with open(os.path.join(gitaly_node.repo_path("r.git"), "post.txt")) as f:
        assert f.read() == "%s %s refs/heads/b2\n" % (ZERO, main)


def test_hooks_see_quarantined_objects(gitaly_node, repo):
    """pre-receive runs before the new tag object joins the repository."""
    path = gitaly_node.repo_path("r.git")
    write_custom_hook(path, "pre-receive",
                      "#!/bin/sh\nread old new ref\n"
                      "git cat-file -t $new > pre.txt\n"
                      "echo \"$GIT_OBJECT_DIRECTORY\" >> pre.txt\n"
                      "GIT_OBJECT_DIRECTORY= GIT_ALTERNATE_OBJECT_DIRECTORIES= git cat-file -e $new "
                      "&& echo visible >> pre.txt || echo hidden >> pre.txt\n")
    resp = gitaly_node.stub("OperationService").UserCreateTag(ops().UserCreateTagRequest(
        repository=repo, tag_name=b"v9", target_revision=b"main", user=user(), message=b"annotated\n"),
        timeout=30)
    lines = open(os.path.join(path, "pre.txt")).read().splitlines()
    assert lines[0] == "tag"
    assert "/+gitaly/tmp/quarantine-" in lines[1]
    assert lines[2] == "hidden"
    assert rev(gitaly_node, "refs/tags/v9") == resp.tag.id
    fsck(gitaly_node)
    assert quarantines(gitaly_node) == []


# --- GitLab access checks ---

@pytest.fixture
def gitlab_node(tmp_path):
    nodes = []

    def make(**kw):
        gl = FakeGitLab(**kw)
        node = GitalyNode(str(tmp_path / ("n%d" % len(nodes))), extra_config=gl.config()).start()
        nodes.append((node, gl))
        make_bare_repo(node.repo_path("r.git"), branches=("main", "other"))
        return node, gl, node.repo("r.git", gl_repository="project-1")
    yield make
    for node, gl in nodes:
        node.stop()
        gl.stop()


def test_create_branch_allowed_by_gitlab(gitlab_node):
    node, gl, repo = gitlab_node()
    main = rev(node, "main")
    node.stub("OperationService").UserCreateBranch(ops().UserCreateBranchRequest(
        repository=repo, branch_name=b"feature", start_point=b"main", user=user()), timeout=30)
    assert rev(node, "refs/heads/feature") == main
    assert gl.paths() == ["/api/v4/internal/allowed", "/api/v4/internal/pre_receive",
                          "/api/v4/internal/post_receive"]
    path, headers, body = gl.requests[0]
    assert check_jwt(headers["Gitlab-Shell-Api-Request"])["iss"] == "gitlab-shell"
    changes = "%s %s refs/heads/feature\n" % (ZERO, main)
    env = json.loads(body.pop("env"))
    assert body == {"action": "git-receive-pack", "gl_repository": "project-1",
                    "project": node.repo_path("r.git"), "changes": changes, "protocol": "web",
                    "relative_path": "r.git", "user_id": "123"}
    # the new objects are quarantined; Rails is told where, relative to the repository
    assert env["GIT_OBJECT_DIRECTORY_RELATIVE"].startswith("../+gitaly/tmp/quarantine-")
    assert env["GIT_ALTERNATE_OBJECT_DIRECTORIES_RELATIVE"] == ["objects"]
    assert gl.requests[1][2] == {"gl_repository": "project-1"}
    assert gl.requests[2][2] == {"gl_repository": "project-1", "identifier": "user-123",
                                 "changes": changes, "push_options": None}


def test_create_branch_refused_by_gitlab(gitlab_node):
    node, gl, repo = gitlab_node(allowed=(403, {"status": False, "message": "You are not allowed to push"}))
    e = rpc_error(node.stub("OperationService").UserCreateBranch, ops().UserCreateBranchRequest(
        repository=repo, branch_name=b"feature", start_point=b"main", user=user()))
    # upstream returns this one without a code of its own
    assert e.code() == grpc.StatusCode.INTERNAL
    assert e.details() == "running pre-receive hooks: GitLab: You are not allowed to push"
    assert rev(node, "refs/heads/feature") is None
    assert gl.paths() == ["/api/v4/internal/allowed"]
    assert quarantines(node) == []


def test_delete_branch_refused_by_gitlab_has_access_check_detail(gitlab_node):
    node, gl, repo = gitlab_node(allowed=(200, {"status": False, "message": "something something"}))
    other = rev(node, "other")
    e = rpc_error(node.stub("OperationService").UserDeleteBranch, ops().UserDeleteBranchRequest(
        repository=repo, branch_name=b"other", user=user()))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert e.details() == "deletion denied by access checks: running pre-receive hooks: GitLab: something something"
    d = detail(e, ops().UserDeleteBranchError)
    assert d.WhichOneof("error") == "access_check"
    assert d.access_check.error_message == "something something"
    assert d.access_check.user_id == "user-123"
    assert d.access_check.protocol == "web"
    assert d.access_check.changes == ("%s %s refs/heads/other\n" % (other, ZERO)).encode()
    assert rev(node, "refs/heads/other") == other


def test_create_tag_refused_by_gitlab_has_access_check_detail(gitlab_node):
    node, gl, repo = gitlab_node(allowed=(401, {"message": "nope"}))
    e = rpc_error(node.stub("OperationService").UserCreateTag, ops().UserCreateTagRequest(
        repository=repo, tag_name=b"v1", target_revision=b"main", user=user()))
    assert (e.code(), e.details()) == (grpc.StatusCode.PERMISSION_DENIED,
                                       "reference update denied by access checks: running pre-receive hooks: GitLab: nope")
    assert detail(e, ops().UserCreateTagError).access_check.error_message == "nope"
    assert rev(node, "refs/tags/v1") is None


def test_invalid_gl_id_is_refused(gitlab_node):
    node, gl, repo = gitlab_node()
    e = rpc_error(node.stub("OperationService").UserDeleteBranch, ops().UserDeleteBranchRequest(
        repository=repo, branch_name=b"other", user=user(gl_id="bogus")))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert e.details().endswith('GitLab: setting gl_id: gl_id="bogus" is invalid')
    assert gl.requests == []


# --- UserDeleteBranch ---

def test_delete_branch(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    stub.UserDeleteBranch(ops().UserDeleteBranchRequest(repository=repo, branch_name=b"other", user=user()),
                          timeout=30)
    assert rev(gitaly_node, "refs/heads/other") is None
    main = rev(gitaly_node, "main")
    stub.UserDeleteBranch(ops().UserDeleteBranchRequest(repository=repo, branch_name=b"main", user=user(),
                                                        expected_old_oid=main), timeout=30)
    assert rev(gitaly_node, "refs/heads/main") is None


def test_delete_branch_errors(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    R = ops().UserDeleteBranchRequest
    other = rev(gitaly_node, "other")
    main = rev(gitaly_node, "main")
    cases = [
        (R(repository=repo, branch_name=b"other"), grpc.StatusCode.INVALID_ARGUMENT, "bad request: empty user"),
        (R(repository=repo, user=user()), grpc.StatusCode.INVALID_ARGUMENT, "bad request: empty branch name"),
        (R(repository=repo, branch_name=b"i-do-not-exist", user=user()),
         grpc.StatusCode.FAILED_PRECONDITION, 'branch not found: "i-do-not-exist"'),
        (R(repository=repo, branch_name=b"other", user=user(), expected_old_oid="foobar"),
         grpc.StatusCode.INVALID_ARGUMENT,
         'invalid expected old object ID: invalid object ID: "foobar", expected length 40, got 6'),
        (R(repository=repo, branch_name=b"other", user=user(), expected_old_oid="1" * 40),
         grpc.StatusCode.INVALID_ARGUMENT, "cannot resolve expected old object ID: reference not found"),
        (R(repository=gitaly_node.repo("missing.git"), branch_name=b"other", user=user()),
         grpc.StatusCode.NOT_FOUND, None),
    ]
    for req, code, msg in cases:
        e = rpc_error(stub.UserDeleteBranch, req)
        assert e.code() == code, e.details()
        if msg:
            assert e.details() == msg
    e = rpc_error(stub.UserDeleteBranch, R(repository=repo, branch_name=b"other", user=user(),
                                           expected_old_oid=main))
    assert (e.code(), e.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "reference update failed: reference update: reference does not point to expected object")
    d = detail(e, ops().UserDeleteBranchError)
    assert (d.reference_update.reference_name, d.reference_update.old_oid, d.reference_update.new_oid) == (
        b"refs/heads/other", main, ZERO)
    assert rev(gitaly_node, "refs/heads/other") == other


def test_delete_branch_refused_by_custom_hook(gitaly_node, repo):
    write_custom_hook(gitaly_node.repo_path("r.git"), "update", "#!/bin/sh\necho GL_ID=$GL_ID\nexit 1\n")
    e = rpc_error(gitaly_node.stub("OperationService").UserDeleteBranch, ops().UserDeleteBranchRequest(
        repository=repo, branch_name=b"other", user=user()))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert e.details() == "deletion denied by custom hooks: running update hooks: GL_ID=user-123\n"
    d = detail(e, ops().UserDeleteBranchError)
    assert d.custom_hook.hook_type == errors().CustomHookError.HOOK_TYPE_UPDATE
    assert d.custom_hook.stdout == b"GL_ID=user-123\n"
    assert rev(gitaly_node, "refs/heads/other")


def test_locked_reference(gitaly_node, repo):
    lock = os.path.join(gitaly_node.repo_path("r.git"), "refs", "heads", "other.lock")
    open(lock, "w").close()
    e = rpc_error(gitaly_node.stub("OperationService").UserDeleteBranch, ops().UserDeleteBranchRequest(
        repository=repo, branch_name=b"other", user=user()))
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                       "reference update failed: reference update: reference is already locked")


# --- UserCreateTag / UserDeleteTag ---

def test_create_lightweight_and_annotated_tags(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    main = rev(gitaly_node, "main")
    resp = stub.UserCreateTag(ops().UserCreateTagRequest(repository=repo, tag_name=b"light",
                                                          target_revision=b"main", user=user()), timeout=30)
    assert (resp.tag.name, resp.tag.id, resp.tag.target_commit.id) == (b"light", main, main)
    assert rev(gitaly_node, "refs/tags/light") == main

    resp = stub.UserCreateTag(ops().UserCreateTagRequest(
        repository=repo, tag_name=b"v1.0", target_revision=b"main", message=b"release\n",
        user=user(timezone="Europe/Berlin")), timeout=30)
    tag_id = rev(gitaly_node, "refs/tags/v1.0")
    assert resp.tag.id == tag_id and tag_id != main
    assert resp.tag.message == b"release\n" and resp.tag.message_size == 8
    assert resp.tag.target_commit.id == main
    raw = git("--git-dir", gitaly_node.repo_path("r.git"), "cat-file", "tag", tag_id)
    assert raw.startswith("object %s\ntype commit\ntag v1.0\ntagger Jane Doe <jane@example.com> " % main)
    assert raw.split("\n")[3].endswith(("+0100", "+0200"))
    fsck(gitaly_node)


def test_create_tag_errors(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    R = ops().UserCreateTagRequest
    for req, code, msg in [
        (R(repository=repo, target_revision=b"main", user=user()), grpc.StatusCode.INVALID_ARGUMENT, "empty tag name"),
        (R(repository=repo, tag_name=b"-x", target_revision=b"main", user=user()),
         grpc.StatusCode.INVALID_ARGUMENT, "invalid tag name: revision can't start with '-'"),
        (R(repository=repo, tag_name=b"t", target_revision=b"main"), grpc.StatusCode.INVALID_ARGUMENT, "empty user"),
        (R(repository=repo, tag_name=b"t", user=user()), grpc.StatusCode.INVALID_ARGUMENT, "empty target revision"),
        (R(repository=repo, tag_name=b"t", target_revision=b"main", user=user(), message=b"a\0b"),
         grpc.StatusCode.INVALID_ARGUMENT, "tag message contains NUL byte"),
        (R(repository=repo, tag_name=b"t", target_revision=b"nope", user=user()),
         grpc.StatusCode.FAILED_PRECONDITION, "revspec 'nope' not found"),
        (R(repository=repo, tag_name=b"t", target_revision=b"main", user=user(timezone="Mars/Olympus")),
         grpc.StatusCode.INVALID_ARGUMENT, "unknown time zone Mars/Olympus"),
        (R(repository=gitaly_node.repo("../x"), tag_name=b"t", target_revision=b"main", user=user()),
         grpc.StatusCode.INVALID_ARGUMENT, "relative path escapes root directory"),
    ]:
        e = rpc_error(stub.UserCreateTag, req)
        assert (e.code(), e.details()) == (code, msg)
    stub.UserCreateTag(R(repository=repo, tag_name=b"t", target_revision=b"main", user=user()), timeout=30)
    e = rpc_error(stub.UserCreateTag, R(repository=repo, tag_name=b"t", target_revision=b"other", user=user()))
    assert (e.code(), e.details()) == (grpc.StatusCode.ALREADY_EXISTS, "tag reference exists already")
    d = detail(e, ops().UserCreateTagError)
    assert (d.reference_exists.reference_name, d.reference_exists.oid) == (b"refs/tags/t", rev(gitaly_node, "main"))
    assert quarantines(gitaly_node) == []


def test_create_tag_refused_by_custom_hook(gitaly_node, repo):
    write_custom_hook(gitaly_node.repo_path("r.git"), "pre-receive", "#!/bin/sh\necho denied >&2\nexit 1\n")
    e = rpc_error(gitaly_node.stub("OperationService").UserCreateTag, ops().UserCreateTagRequest(
        repository=repo, tag_name=b"v2", target_revision=b"main", user=user(), message=b"m"))
    assert (e.code(), e.details()) == (grpc.StatusCode.PERMISSION_DENIED, "reference update denied by custom hooks")
    d = detail(e, ops().UserCreateTagError)
    assert (d.custom_hook.stderr, d.custom_hook.hook_type) == (b"denied\n",
                                                                errors().CustomHookError.HOOK_TYPE_PRERECEIVE)
    assert rev(gitaly_node, "refs/tags/v2") is None
    assert quarantines(gitaly_node) == []


def test_delete_tag(gitaly_node, repo):
    stub = gitaly_node.stub("OperationService")
    stub.UserCreateTag(ops().UserCreateTagRequest(repository=repo, tag_name=b"t1", target_revision=b"main",
                                                  user=user(), message=b"x"), timeout=30)
    stub.UserDeleteTag(ops().UserDeleteTagRequest(repository=repo, tag_name=b"t1", user=user()), timeout=30)
    assert rev(gitaly_node, "refs/tags/t1") is None
    e = rpc_error(stub.UserDeleteTag, ops().UserDeleteTagRequest(repository=repo, tag_name=b"t1", user=user()))
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "tag not found: t1")
    e = rpc_error(stub.UserDeleteTag, ops().UserDeleteTagRequest(repository=repo, tag_name=b"t1"))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "empty user")
    # a custom hook's refusal comes back in the response
    stub.UserCreateTag(ops().UserCreateTagRequest(repository=repo, tag_name=b"t2", target_revision=b"main",
                                                  user=user()), timeout=30)
    write_custom_hook(gitaly_node.repo_path("r.git"), "pre-receive", "#!/bin/sh\necho 'GitLab: keep it'\nexit 1\n")
    resp = stub.UserDeleteTag(ops().UserDeleteTagRequest(repository=repo, tag_name=b"t2", user=user()), timeout=30)
    assert resp.pre_receive_error == "GitLab: keep it\n"
    assert rev(gitaly_node, "refs/tags/t2")


# --- UserCommitFiles ---

def header(repo, branch=b"main", **kw):
    kw.setdefault("user", user())
    kw.setdefault("commit_message", b"a message\n")
    return ops().UserCommitFilesRequest(header=ops().UserCommitFilesRequestHeader(
        repository=repo, branch_name=branch, **kw))


def action(kind, path, content=None, **kw):
    A = ops().UserCommitFilesActionHeader
    reqs = [ops().UserCommitFilesRequest(action=ops().UserCommitFilesAction(
        header=A(action=getattr(A, kind), file_path=path, **kw)))]
    if content is not None:
        reqs.append(ops().UserCommitFilesRequest(action=ops().UserCommitFilesAction(content=content)))
    return reqs


def commit_files(node, reqs):
    return node.stub("OperationService").UserCommitFiles(iter(reqs), timeout=30)


def commit_files_error(node, reqs):
    with pytest.raises(grpc.RpcError) as e:
        commit_files(node, reqs)
    return e.value


def tree(node, rev_, rel="r.git"):
    out = git("--git-dir", node.repo_path(rel), "ls-tree", "-r", rev_)
    return {line.split("\t")[1]: line.split()[0] for line in out.splitlines()}


def show(node, spec, rel="r.git"):
    return git("--git-dir", node.repo_path(rel), "show", spec)


def test_commit_files_all_actions(gitaly_node, repo):
    parent = rev(gitaly_node, "main")
    reqs = [header(repo, commit_author_name=b" Author ", commit_author_email=b"author@example.com")]
    reqs += action("CREATE", b"new/file.txt", b"line1\r\nline2\n")
    reqs += action("UPDATE", b"README.md", b"dXBkYXRlZAo=", base64_content=True)
    reqs += action("DELETE", b"dir/a.txt")
    reqs += action("CREATE_DIR", b"empty")
    reqs += action("CHMOD", b"new/file.txt", execute_filemode=True)
    reqs += action("CREATE", b"./x/../moved-src", b"moving\n")
    reqs += action("MOVE", b"moved", previous_path=b"moved-src", infer_content=True)
    resp = commit_files(gitaly_node, reqs)
    head = rev(gitaly_node, "main")
    assert resp.branch_update.commit_id == head
    assert not resp.branch_update.repo_created and not resp.branch_update.branch_created
    assert tree(gitaly_node, "main") == {"README.md": "100644", "empty/.gitkeep": "100644",
                                         "new/file.txt": "100755", "moved": "100644"}
    # CRLF is normalised on the way in (core.autocrlf=input), as upstream does
    assert show(gitaly_node, "main:new/file.txt") == "line1\nline2\n"
    assert show(gitaly_node, "main:README.md") == "updated\n"
    assert show(gitaly_node, "main:moved") == "moving\n"
    log = git("--git-dir", gitaly_node.repo_path("r.git"), "log", "-1", "--format=%P|%an|%ae|%cn|%ce|%B", "main")
    assert log == "%s|Author|author@example.com|Jane Doe|jane@example.com|a message\n\n" % parent
    fsck(gitaly_node)
    # the tree is byte-identical to what git itself builds from the same files
    assert git("--git-dir", gitaly_node.repo_path("r.git"), "rev-parse", "main^{tree}").strip() == \
        git_tree_of(gitaly_node, "main")
    assert quarantines(gitaly_node) == []


def git_tree_of(node, rev_):
    """Rebuild the tree of `rev_` with git's own index machinery."""
    env = {"GIT_INDEX_FILE": os.path.join(node.dir, "tmp-index")}
    path = node.repo_path("r.git")
    git("--git-dir", path, "read-tree", "--empty", env=env)
    for line in git("--git-dir", path, "ls-tree", "-r", rev_).splitlines():
        meta, name = line.split("\t")
        mode, _, oid = meta.split()
        git("--git-dir", path, "update-index", "--add", "--cacheinfo", "%s,%s,%s" % (mode, oid, name), env=env)
    return git("--git-dir", path, "write-tree", env=env).strip()


def test_commit_files_new_branch_and_empty_repository(gitaly_node, repo):
    resp = commit_files(gitaly_node, [header(repo, branch=b"topic", start_branch_name=b"other")] +
                        action("CREATE", b"t.txt", b"t\n"))
    assert resp.branch_update.branch_created and not resp.branch_update.repo_created
    assert git("--git-dir", gitaly_node.repo_path("r.git"), "rev-parse", "topic^").strip() == rev(gitaly_node, "other")

    git("init", "-q", "--bare", gitaly_node.repo_path("empty.git"))
    erepo = gitaly_node.repo("empty.git")
    resp = commit_files(gitaly_node, [header(erepo, branch=b"master")] + action("CREATE", b"f", b"x"))
    assert resp.branch_update.repo_created and resp.branch_update.branch_created
    assert tree(gitaly_node, "master", rel="empty.git") == {"f": "100644"}
    assert git("--git-dir", gitaly_node.repo_path("empty.git"), "log", "--format=%P", "master").strip() == ""

    # start_sha: a commit on another branch as parent of the target branch
    other = rev(gitaly_node, "other")
    resp = commit_files(gitaly_node, [header(repo, branch=b"from-sha", start_sha=other)] +
                        action("CREATE", b"s", b"s"))
    assert git("--git-dir", gitaly_node.repo_path("r.git"), "rev-parse", "from-sha^").strip() == other


def test_commit_files_start_repository_on_same_node(gitaly_node, repo):
    make_bare_repo(gitaly_node.repo_path("fork.git"), files={"fork.txt": "fork\n"})
    fork_main = rev(gitaly_node, "main", rel="fork.git")
    resp = commit_files(gitaly_node, [header(repo, branch=b"from-fork", start_branch_name=b"main",
                                             start_repository=gitaly_node.repo("fork.git"))] +
                        action("CREATE", b"n", b"n"))
    assert git("--git-dir", gitaly_node.repo_path("r.git"), "rev-parse", "from-fork^").strip() == fork_main
    assert resp.branch_update.branch_created
    fsck(gitaly_node)


def test_commit_files_expected_old_oid_and_force(gitaly_node, repo):
    main = rev(gitaly_node, "main")
    other = rev(gitaly_node, "other")
    e = commit_files_error(gitaly_node, [header(repo, expected_old_oid=other)] + action("CREATE", b"z", b"z"))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.details() == "reference update: reference does not point to expected object"
    e = commit_files_error(gitaly_node, [header(repo, expected_old_oid="foobar")] + action("CREATE", b"z", b"z"))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                       'invalid expected old object ID: invalid object ID: "foobar", expected length 40, got 6')
    resp = commit_files(gitaly_node, [header(repo, expected_old_oid=main)] + action("CREATE", b"z", b"z"))
    assert rev(gitaly_node, "main") == resp.branch_update.commit_id
    # force: the branch moves even though its parent is another commit
    resp = commit_files(gitaly_node, [header(repo, start_sha=other, force=True)] + action("CREATE", b"y", b"y"))
    assert git("--git-dir", gitaly_node.repo_path("r.git"), "rev-parse", "main^").strip() == other


@pytest.mark.parametrize("reqs,code,msg,index", [
    (lambda: action("CREATE", b"../file-1", b"c"), grpc.StatusCode.INVALID_ARGUMENT,
     "Path cannot include directory traversal", ("../file-1", 4)),
    (lambda: action("CREATE", b"invalid://file/name/here", b"c"), grpc.StatusCode.INVALID_ARGUMENT,
     'invalid path: "invalid://file/name/here"', ("invalid://file/name/here", 2)),
    (lambda: action("CREATE", b"README.md", b"c"), grpc.StatusCode.ALREADY_EXISTS,
     "A file with this name already exists", ("README.md", 5)),
    (lambda: action("CREATE_DIR", b"dir"), grpc.StatusCode.ALREADY_EXISTS,
     "A directory with this name already exists", ("dir", 3)),
    (lambda: action("CREATE_DIR", b"README.md"), grpc.StatusCode.ALREADY_EXISTS,
     "A file with this name already exists", ("README.md", 5)),
    (lambda: action("UPDATE", b"non-existing", b"c"), grpc.StatusCode.NOT_FOUND,
     "A file with this name doesn't exist", ("non-existing", 6)),
    (lambda: action("DELETE", b"non-existing"), grpc.StatusCode.NOT_FOUND,
     "A file with this name doesn't exist", ("non-existing", 6)),
    (lambda: action("MOVE", b"moved", previous_path=b"dir", infer_content=True), grpc.StatusCode.NOT_FOUND,
     "A file with this name doesn't exist", ("dir", 6)),
    (lambda: action("CHMOD", b"", execute_filemode=True), grpc.StatusCode.INVALID_ARGUMENT,
     "You must provide a file path", ("", 1)),
    (lambda: action("CREATE", b".git/hooks/pre-commit", b"c"), grpc.StatusCode.INTERNAL,
     "invalid path: '.git/hooks/pre-commit'", None),
    (lambda: action("CREATE", b"f", b"!!!", base64_content=True), grpc.StatusCode.INTERNAL,
     "write created blob: illegal base64 data at input byte 0", None),
])
def test_commit_files_index_errors(gitaly_node, repo, reqs, code, msg, index):
    main = rev(gitaly_node, "main")
    e = commit_files_error(gitaly_node, [header(repo)] + reqs())
    assert (e.code(), e.details()) == (code, msg)
    if index:
        d = detail(e, ops().UserCommitFilesError)
        assert (d.index_update.path.decode(), d.index_update.error_type) == index
    else:
        assert status_details(e) is None
    assert rev(gitaly_node, "main") == main
    assert quarantines(gitaly_node) == []


def test_commit_files_request_errors(gitaly_node, repo):
    for reqs, code, msg in [
        (action("CREATE", b"f", b"x"), grpc.StatusCode.INVALID_ARGUMENT, "empty UserCommitFilesRequestHeader"),
        ([header(repo, user=None)], grpc.StatusCode.INVALID_ARGUMENT, "empty User"),
        ([header(repo, commit_message=b"")], grpc.StatusCode.INVALID_ARGUMENT, "empty CommitMessage"),
        ([header(repo, branch=b"")], grpc.StatusCode.INVALID_ARGUMENT, "empty BranchName"),
        ([header(repo, start_sha="xyz")], grpc.StatusCode.INVALID_ARGUMENT,
         'invalid object ID: "xyz", expected length 40, got 3'),
        ([header(gitaly_node.repo("missing.git"))], grpc.StatusCode.NOT_FOUND, None),
        ([header(gitaly_node.repo("../x"))], grpc.StatusCode.INVALID_ARGUMENT, "relative path escapes root directory"),
        ([header(repo)] + [ops().UserCommitFilesRequest(action=ops().UserCommitFilesAction(content=b"x"))],
         grpc.StatusCode.INTERNAL, "content sent before action"),
        ([header(repo)] + action("CREATE", b"f", b"x") + [ops().UserCommitFilesRequest(
            action=ops().UserCommitFilesAction(header=ops().UserCommitFilesActionHeader(action=-1, file_path=b"f")))],
         grpc.StatusCode.INVALID_ARGUMENT, "NoMethodError: undefined method `downcase' for -1:Integer"),
        ([header(repo, branch=b"nope", start_branch_name=b"missing")], grpc.StatusCode.INTERNAL,
         'resolve parent commit: resolving refish "refs/heads/missing^{commit}" in *localrepo.Repo: reference not found'),
    ]:
        e = commit_files_error(gitaly_node, reqs)
        assert e.code() == code, e.details()
        if msg:
            assert e.details() == msg


def test_commit_files_refused_by_custom_hook(gitaly_node, repo):
    write_custom_hook(gitaly_node.repo_path("r.git"), "pre-receive", "#!/bin/sh\necho 'GL-HOOK-ERR: no' >&2\nexit 1\n")
    e = commit_files_error(gitaly_node, [header(repo)] + action("CREATE", b"f", b"x"))
    assert (e.code(), e.details()) == (grpc.StatusCode.PERMISSION_DENIED, "denied by custom hooks")
    d = detail(e, ops().UserCommitFilesError)
    assert d.custom_hook.stderr == b"GL-HOOK-ERR: no\n"
    assert quarantines(gitaly_node) == []


def test_commit_files_cancelled_mid_stream(gitaly_node, repo):
    """A client that goes away after the header leaves nothing behind."""
    ev = threading.Event()

    def gen():
        yield header(repo)
        yield from action("CREATE", b"f", b"x")
        ev.wait(5)

    fut = gitaly_node.stub("OperationService").UserCommitFiles.future(gen(), timeout=30)
    time.sleep(0.3)
    fut.cancel()
    ev.set()
    time.sleep(0.3)
    assert rev(gitaly_node, "main")
    assert gitaly_node.proc.poll() is None
    assert quarantines(gitaly_node) == []


def test_deadline_while_custom_hook_runs(gitaly_node, repo):
    write_custom_hook(gitaly_node.repo_path("r.git"), "pre-receive", "#!/bin/sh\nexec sleep 27.1828\n")
    with pytest.raises(grpc.RpcError) as e:
        gitaly_node.stub("OperationService").UserCreateBranch(ops().UserCreateBranchRequest(
            repository=repo, branch_name=b"slow", start_point=b"main", user=user()), timeout=1)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.time() + 10
    while (hook_processes("27.1828") or quarantines(gitaly_node)) and time.time() < deadline:
        time.sleep(0.05)
    assert hook_processes("27.1828") == []
    assert quarantines(gitaly_node) == []
    assert rev(gitaly_node, "refs/heads/slow") is None
    assert gitaly_node.proc.poll() is None


def test_timestamps_and_time_zones_are_honoured(gitaly_node, repo):
    from google.protobuf import timestamp_pb2
    ts = timestamp_pb2.Timestamp(seconds=1600000000)   # 2020-09-13, CEST
    stub = gitaly_node.stub("OperationService")
    resp = stub.UserCreateTag(ops().UserCreateTagRequest(
        repository=repo, tag_name=b"dated", target_revision=b"main", message=b"m\n", timestamp=ts,
        user=user(timezone="Europe/Berlin")), timeout=30)
    raw = git("--git-dir", gitaly_node.repo_path("r.git"), "cat-file", "tag", resp.tag.id)
    assert "tagger Jane Doe <jane@example.com> 1600000000 +0200\n" in raw
    resp = commit_files(gitaly_node, [header(repo, timestamp=ts, user=user(timezone="America/New_York"))] +
                        action("CREATE", b"dated.txt", b"d"))
    raw = git("--git-dir", gitaly_node.repo_path("r.git"), "cat-file", "commit", resp.branch_update.commit_id)
    assert "author Jane Doe <jane@example.com> 1600000000 -0400\n" in raw
    assert "committer Jane Doe <jane@example.com> 1600000000 -0400\n" in raw
    # the same request on the same parent gives the same commit: what makes votes agree
    git("--git-dir", gitaly_node.repo_path("r.git"), "update-ref", "refs/heads/main", "main^")
    again = commit_files(gitaly_node, [header(repo, timestamp=ts, user=user(timezone="America/New_York"))] +
                         action("CREATE", b"dated.txt", b"d"))
    assert again.branch_update.commit_id == resp.branch_update.commit_id
