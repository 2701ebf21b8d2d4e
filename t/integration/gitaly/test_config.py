"""gitaly's config.toml as upstream reads it, and its diagnostic subcommands."""
import json
import os
import subprocess

import grpc
import pytest

from gitaly_itest import BUILD, GitalyNode, pb, TOKEN

GITALY = os.path.join(BUILD, "gitaly", "gitaly")


def rpc_server_info(node, secret=TOKEN):
    return node.stub("ServerService", secret=secret).ServerInfo(pb("server").ServerInfoRequest())


def test_gitlab_read_timeout_is_a_number_of_seconds(tmp_path):
    node = GitalyNode(str(tmp_path / "g"), extra_config='\n[gitlab]\nurl = "http://127.0.0.1:1"\n'
                      'secret = "s"\n[gitlab.http-settings]\nread_timeout = 300\n')
    node.start()
    try:
        assert rpc_server_info(node).storage_statuses
    finally:
        node.stop()
    # a duration string is not what upstream's integer field takes
    node = GitalyNode(str(tmp_path / "h"), extra_config='\n[gitlab.http-settings]\nread_timeout = "300s"\n')
    with pytest.raises(RuntimeError) as e:
        node.start()
    assert '"read_timeout"' in str(e.value)


def test_unknown_keys_are_logged_once_logging_is_set_up(tmp_path):
    # extra_config lands after the [logging] table, so the first key is logging.no_such_key
    node = GitalyNode(str(tmp_path / "g"), extra_config='no_such_key = 1\n[no_such_table]\nstart_hour = 3\n')
    with open(node.config_path) as f:
        text = f.read().replace('level = "info"', 'level = "debug"')
    with open(node.config_path, "w") as f:
        f.write(text)
    node.start()
    try:
        log = node.log()
        lines = [json.loads(line) for line in log.splitlines() if "ignoring unknown config key" in line]
        msgs = [line["msg"] for line in lines]
        assert any(m.endswith('ignoring unknown config key "logging.no_such_key"') for m in msgs), log
        assert any('"no_such_table"' in m for m in msgs), log
        assert all(line["level"] == "debug" for line in lines)
    finally:
        node.stop()


def test_config_command_supplies_the_auth_token(tmp_path):
    script = tmp_path / "secret.sh"
    script.write_text('#!/bin/sh\necho \'{"auth": {"token": "from-command"}}\'\n')
    script.chmod(0o755)
    node = GitalyNode(str(tmp_path / "g"), token=None)
    with open(node.config_path) as f:
        text = f.read()
    with open(node.config_path, "w") as f:
        f.write('config_command = "%s"\n' % script + text)
    node.start()
    try:
        assert rpc_server_info(node, secret="from-command").storage_statuses
        with pytest.raises(grpc.RpcError) as e:
            rpc_server_info(node, secret=None)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        node.stop()


def test_a_failing_config_command_stops_gitaly_with_its_stderr(tmp_path):
    script = tmp_path / "fail.sh"
    script.write_text('#!/bin/sh\necho "vault sealed" >&2\nexit 2\n')
    script.chmod(0o755)
    node = GitalyNode(str(tmp_path / "g"))
    with open(node.config_path) as f:
        text = f.read()
    with open(node.config_path, "w") as f:
        f.write('config_command = "%s"\n' % script + text)
    r = subprocess.run([GITALY, node.config_path], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert 'running config command: exit status 2, stderr: "vault sealed\\n"' in r.stderr + r.stdout


# --- subcommands ---

class FakeGitLab:
    """A GitLab internal API answering /api/v4/internal/check."""

    def __init__(self, status=200, body=None):
        import http.server
        import threading
        outer = self
        self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.command, self.path, dict(self.headers)))
                data = json.dumps(body if body is not None else {
                    "api_version": "v4", "gitlab_version": "16.8.1-ee", "gitlab_revision": "abc123",
                    "redis": True}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def node_with_gitlab(tmp_path, url):
    return GitalyNode(str(tmp_path / "g"), extra_config='\n[gitlab]\nurl = "%s"\nsecret = "shh"\n' % url)


def test_check_reports_what_gitlab_answers(tmp_path):
    gl = FakeGitLab()
    try:
        node = node_with_gitlab(tmp_path, gl.url)
        r = subprocess.run([GITALY, "check", node.config_path], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout == ("Checking GitLab API access: OK\nGitLab version: 16.8.1-ee\nGitLab revision: abc123\n"
                            "GitLab Api version: v4\nRedis reachable for GitLab: true\nOK\n")
        method, path, headers = gl.requests[0]
        assert (method, path) == ("GET", "/api/v4/internal/check")
        assert headers.get("Gitlab-Shell-Api-Request", "").count(".") == 2   # a JWT
    finally:
        gl.close()


def test_check_fails_when_gitlab_does(tmp_path):
    gl = FakeGitLab(status=500, body={})
    try:
        node = node_with_gitlab(tmp_path, gl.url)
        r = subprocess.run([GITALY, "check", node.config_path], capture_output=True, text=True, timeout=30)
        assert r.returncode == 1
        assert r.stdout == "Checking GitLab API access: FAILED\n"
        assert r.stderr.rstrip().endswith("Check HTTP request failed with status: 500")
    finally:
        gl.close()
    r = subprocess.run([GITALY, "check"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and r.stderr == "error: invalid argument(s)\n"
    assert r.stdout.startswith("NAME:\n   gitaly check - verify internal API is accessible\n")


def test_configuration_validate_reports_problems_as_json(tmp_path):
    def validate(text, *args):
        return subprocess.run([GITALY, "configuration", "validate"] + list(args), input=text, capture_output=True,
                              text=True, timeout=30)
    shell = tmp_path / "gitlab-shell"
    shell.mkdir()
    node = GitalyNode(str(tmp_path / "g"), extra_config='\n[gitlab]\nurl = "http://127.0.0.1:1"\nsecret = "s"\n'
                      '[gitlab-shell]\ndir = "%s"\n' % shell)
    with open(node.config_path) as f:
        good = f.read()
    r = validate(good)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = validate('socket_path = "/s"\nbin_dir = "%s"\n[[storage]]\nname = ""\npath = "%s"\n'
                 '[[git.config]]\nkey = "nosection"\n[[concurrency]]\nrpc = "/x"\nmax_per_repo = -1\n'
                 % (node.bin_dir, tmp_path / "missing"))
    assert r.returncode == 2
    assert json.loads(r.stdout) == {"errors": [
        {"key": ["git", "config", "key"], "message": 'key "nosection" must contain at least one section'},
        {"key": ["storage", "[0]", "name"], "message": "not set"},
        {"key": ["storage", "[0]", "path"], "message": 'doesn\'t exist: "%s"' % (tmp_path / "missing")},
        {"key": ["gitlab", "url"], "message": "blank or empty"},
        {"key": ["gitlab", "secret_file"], "message": 'doesn\'t exist: ".gitlab_shell_secret"'},
        {"key": ["gitlab-shell", "dir"], "message": 'doesn\'t exist: ""'},
        {"key": ["concurrency", "[0]", "max_per_repo"],
         "message": "not in range: -1 is not greater than or equal to 0"}]}
    r = validate("")
    assert r.returncode == 2
    assert json.loads(r.stdout)["errors"][0] == {
        "message": 'none of "socket_path", "listen_addr" or "tls_listen_addr" is set'}
    r = validate("[[storage]\n")
    assert r.returncode == 2 and json.loads(r.stdout)["errors"][0]["message"].startswith("line 1 column ")
    r = validate("", "extra")
    assert r.returncode == 1 and r.stderr == "invalid argument(s)\n"


def test_subcommand_help_exits_zero():
    for args in (["check", "-h"], ["configuration", "validate", "--help"]):
        r = subprocess.run([GITALY] + args, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and r.stderr == "", args
        assert r.stdout.startswith("NAME:\n   gitaly "), args
