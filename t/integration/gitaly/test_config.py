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
    node = GitalyNode(str(tmp_path / "g"), extra_config='no_such_key = 1\n[daily_maintenance]\nstart_hour = 3\n')
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
        assert any('"daily_maintenance"' in m for m in msgs), log
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
