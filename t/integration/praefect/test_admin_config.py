"""praefect's config as upstream reads it, its diagnostic subcommands, and the
relative-path rule it shares with the nodes."""
import json
import os
import re
import subprocess

import grpc
import pytest

from praefect_itest import NODE_TOKEN, PRAEFECT_TOKEN  # noqa: F401
from gitaly_itest import BUILD, pb
from ntp_fake import FakeNTP

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


# --- the config file as upstream reads it ---

def write_config(tmp_path, body, name="praefect.toml"):
    path = tmp_path / name
    path.write_text(body)
    return str(path)


BASE = '''socket_path = "{sock}"
[[virtual_storage]]
name = "default"
[[virtual_storage.node]]
storage = "gitaly-1"
address = "tcp://127.0.0.1:1"
'''


def base(tmp_path, extra=""):
    return BASE.format(sock=tmp_path / "p.sock") + extra


@pytest.mark.no_store("config loading and validation on a config of its own")
def test_a_bogus_election_strategy_is_refused(tmp_path):
    cfg = write_config(tmp_path, base(tmp_path, '[failover]\nelection_strategy = "bogus"\n'))
    r = run("-config", cfg, "list-storages")
    assert r.returncode == 1
    assert r.stderr.strip() == 'validating config: invalid election strategy: "bogus"'
    # a legacy strategy upstream knows is accepted, and per_repository is used
    cfg = write_config(tmp_path, base(tmp_path, '[failover]\nelection_strategy = "sql"\n'))
    assert run("-config", cfg, "list-storages").returncode == 0


def test_failover_disabled_is_accepted_and_warned_about(cluster):
    p = cluster.praefect
    p.stop()
    with open(p.config_path, "a") as f:
        f.write("\n[failover]\nenabled = false\n")
    p.start()
    log = p.log()
    assert "ignoring configured election strategy as failover is disabled" in log
    assert '"election_strategy":"per_repository"' in log.replace(" ", "")
    # still routes
    stub = p.stub("RepositoryService")
    stub.CreateRepository(pb("repository").CreateRepositoryRequest(repository=p.repo("f.git")))
    assert stub.RepositoryExists(pb("repository").RepositoryExistsRequest(repository=p.repo("f.git"))).exists


@pytest.mark.no_store("config loading and validation on a config of its own")
def test_config_command_output_is_merged_over_the_file(tmp_path):
    script = tmp_path / "gen.sh"
    script.write_text('#!/bin/sh\necho \'{"virtual_storage": [{"name": "from-command", "node": ['
                      '{"storage": "s1", "address": "tcp://10.0.0.1:8075"}, '
                      '{"storage": "s2", "address": "tcp://10.0.0.2:8075"}]}]}\'\n')
    script.chmod(0o755)
    cfg = write_config(tmp_path, base(tmp_path, "") .replace('socket_path', 'config_command = "%s"\nsocket_path' % script))
    r = run("-config", cfg, "list-storages")
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()[1:]]
    assert [(c[0].strip(), c[1].strip(), c[2].strip()) for c in rows] == [
        ("from-command", "s1", "tcp://10.0.0.1:8075"), ("from-command", "s2", "tcp://10.0.0.2:8075")]


@pytest.mark.no_store("config loading and validation on a config of its own")
def test_a_failing_config_command_stops_loading_with_its_stderr(tmp_path):
    script = tmp_path / "fail.sh"
    script.write_text('#!/bin/sh\necho "no vault" >&2\nexit 3\n')
    script.chmod(0o755)
    cfg = write_config(tmp_path, 'config_command = "%s"\n' % script + base(tmp_path))
    r = run("-config", cfg, "list-storages")
    assert r.returncode == 1
    assert r.stderr.strip() == ('error reading config file: running config command: exit status 3, '
                                'stderr: "no vault\\n"')
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/sh\necho 'not json'\n")
    bad.chmod(0o755)
    cfg = write_config(tmp_path, 'config_command = "%s"\n' % bad + base(tmp_path))
    r = run("-config", cfg, "list-storages")
    assert r.returncode == 1
    assert r.stderr.startswith("error reading config file: unmarshalling generated config: ")
    cfg = write_config(tmp_path, 'config_command = "%s"\n' % (tmp_path / "missing") + base(tmp_path))
    r = run("-config", cfg, "list-storages")
    assert r.stderr.strip() == ("error reading config file: running config command: fork/exec %s: "
                                "no such file or directory" % (tmp_path / "missing"))


@pytest.mark.no_store("config loading and validation on a config of its own")
def test_logging_dir_is_accepted_but_must_be_a_string(tmp_path):
    cfg = write_config(tmp_path, base(tmp_path, '[logging]\ndir = "/var/log/praefect"\n'))
    assert run("-config", cfg, "list-storages").returncode == 0
    cfg = write_config(tmp_path, base(tmp_path, '[logging]\ndir = 5\n'))
    r = run("-config", cfg, "list-storages")
    assert r.returncode == 1 and '"dir"' in r.stderr


@pytest.mark.no_store("config loading and validation on a config of its own")
def test_dash_h_on_a_subcommand_prints_its_usage(tmp_path):
    cfg = write_config(tmp_path, base(tmp_path))
    for flag in ("-h", "--help", "-help"):
        r = run("-config", cfg, "list-storages", flag)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("NAME:\n   praefect list-storages - list physical storages for virtual storages\n")
        assert "OPTIONS:\n   --virtual-storage value  " in r.stdout
        assert r.stdout.endswith("   --help, -h               show help\n")
        assert "flag provided but not defined" not in r.stderr
    r = run("-config", cfg, "dataloss", "-h")
    assert r.returncode == 0 and "--partially-unavailable" in r.stdout


@pytest.mark.no_store("its own config names a database that the subcommands never dial")
def test_a_postgres_database_loads_for_subcommands_without_the_store(tmp_path):
    # every upstream [database] key, and [database.session_pooled] with the same ones
    keys = ('host = "/nonexistent-pg-dir"\nport = 5432\ndbname = "praefect_production"\nuser = "praefect"\n'
            'password = "secret"\nsslmode = "disable"\nsslcert = "/c.pem"\nsslkey = "/k.pem"\n'
            'sslrootcert = "/ca.pem"\n')
    cfg = write_config(tmp_path, base(tmp_path, "[database]\n" + keys + "[database.session_pooled]\n" + keys))
    r = run("-config", cfg, "list-storages")
    assert r.returncode == 0, r.stderr
    assert "gitaly-1" in r.stdout
    r = run("configuration", "validate", input=open(cfg).read())
    assert r.returncode == 0, r.stderr
    # serve uses the PostgreSQL store, and says why it cannot
    r = run("-config", cfg, "serve", timeout=20)
    assert r.returncode == 1
    assert "opening the tracking store: cannot connect to database: " in r.stderr, r.stderr
    assert "/nonexistent-pg-dir/.s.PGSQL.5432" in r.stderr, r.stderr
    bad = write_config(tmp_path, base(tmp_path, '[database]\nhost = "h"\nport = "5432"\n'), name="bad.toml")
    r = run("-config", bad, "list-storages")
    assert r.returncode == 1 and "port" in r.stderr, r.stderr


@pytest.mark.no_store("config loading and validation on a config of its own")
def test_repositories_cleanup_is_validated_as_upstream(tmp_path):
    cfg = write_config(tmp_path, base(tmp_path, '[repositories_cleanup]\ncheck_interval = "30s"\n'))
    r = run("-config", cfg, "list-storages")
    assert r.returncode == 1
    assert r.stderr.strip() == ("validating config: repositories_cleanup.check_interval is less then 1m0s, "
                                "which could lead to a database performance problem")
    cfg = write_config(tmp_path, base(tmp_path, '[repositories_cleanup]\nrun_interval = "10s"\n'))
    assert "repositories_cleanup.run_interval is less then 1m0s" in run("-config", cfg, "list-storages").stderr
    # run_interval = 0 turns the cleaner off, and with it the checks
    cfg = write_config(tmp_path, base(tmp_path, '[repositories_cleanup]\nrun_interval = 0\ncheck_interval = "1s"\n'
                                                'repositories_in_batch = 4\n'))
    assert run("-config", cfg, "list-storages").returncode == 0


# --- diagnostic subcommands ---

def test_dial_nodes_checks_every_node_and_names_the_failing_ones(cluster):
    cfg = cluster.praefect.config_path
    r = run("-config", cfg, "dial-nodes")
    assert r.returncode == 0, r.stdout + r.stderr
    for name, node in cluster.nodes.items():
        addr = "unix:" + node.socket
        for line in ("dialing...", "dialed successfully!", "checking health...", "SUCCESS: node is healthy!",
                     "checking consistency...",
                     'SUCCESS: confirmed Gitaly storage "%s" in virtual storages [default] is served' % name,
                     "SUCCESS: node configuration is consistent!"):
            assert "[%s]: %s\n" % (addr, line) in r.stdout
    cluster.nodes["gitaly-2"].stop()
    r = run("-config", cfg, "dial-nodes", "-timeout", "2s")
    assert r.returncode == 1
    down = "unix:" + cluster.nodes["gitaly-2"].socket
    assert "[%s]: ERROR: dialing failed: context deadline exceeded\n" % down in r.stdout
    assert r.stderr.rstrip().endswith("the following nodes are not healthy: %s" % down)


@pytest.fixture
def ntp():
    servers = []

    def make(offset=0.0):
        s = FakeNTP(offset=offset)
        s.host = s.address
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.close()


def test_check_passes_on_a_healthy_cluster_and_fails_without_a_node(cluster, ntp):
    p = cluster.praefect
    clock = {"NTP_HOST": ntp().host}
    p.stub("RepositoryService").CreateRepository(pb("repository").CreateRepositoryRequest(repository=p.repo("c.git")))
    r = run("-config", p.config_path, "check", env=clock)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert out.startswith("Checking praefect migrations - confirms whether or not all praefect migrations "
                          "have run [fatal]\nPassed\n")
    assert "Checking gitaly node connectivity & disk access - " in out
    assert "Checking database read/write - checks if praefect can write/read to and from the database [fatal]\n" \
           "successfully read from database\nsuccessfully wrote to database\nPassed\n" in out
    assert "All repositories are available.\nPassed\n" in out
    assert out.endswith("\nAll checks passed.\n")
    # quiet: one line per check
    r = run("-config", p.config_path, "check", "-q", env=clock)
    assert r.stdout.splitlines()[:5] == [
        "Checking praefect migrations...Passed",
        "Checking gitaly node connectivity & disk access...Passed",
        "Checking database read/write...Passed",
        "Checking unavailable repositories...Passed",
        "Checking clock synchronization...Passed"]
    cluster.nodes["gitaly-1"].stop()
    r = run("-config", p.config_path, "check", "-q", env=clock)
    assert r.returncode == 1
    assert "Checking gitaly node connectivity & disk access...Failed (fatal) error: the following nodes are " \
           "not healthy: unix:" + cluster.nodes["gitaly-1"].socket in r.stdout
    # the stopped node also fails the clock check (it cannot be asked)
    assert "Checking clock synchronization...Failed (fatal) error: gitaly node at unix:" in r.stdout
    assert r.stdout.endswith("\n2 check(s) failed, at least one was fatal.\n")
    assert r.stderr.rstrip().endswith("checks failed")


def test_clock_check_asks_the_ntp_server_and_every_node(cluster, ntp):
    p = cluster.praefect
    good = ntp()
    r = run("-config", p.config_path, "check", env={"NTP_HOST": good.host, "DRIFT_THRESHOLD": "30s"})
    assert r.returncode == 0, r.stdout
    assert re.search(r"checking with NTP service at %s and allowed clock drift 30000 ms "
                     r"\[correlation_id: \w+\]\nPassed\n" % re.escape(good.host), r.stdout)
    assert good.requests == 1 + len(cluster.nodes)     # praefect, then each node
    far = ntp(offset=120)
    r = run("-config", p.config_path, "check", "-q", env={"NTP_HOST": far.host})
    assert "Checking clock synchronization...Failed (fatal) error: praefect: clock is not synced\n" in r.stdout
    assert r.returncode == 1
    r = run("-config", p.config_path, "check", "-q", env={"NTP_HOST": far.host, "DRIFT_THRESHOLD": "5m"})
    assert r.returncode == 0, r.stdout
    r = run("-config", p.config_path, "check", "-q", env={"NTP_HOST": good.host, "DRIFT_THRESHOLD": "1us"})
    assert "error: env var DRIFT_THRESHOLD expected to be 0 or at least 1ms" in r.stdout


def test_node_clock_synced_answers_from_the_ntp_server(cluster, ntp):
    stub = cluster.node_stub("gitaly-1", "ServerService")
    Req = pb("server").ClockSyncedRequest
    from google.protobuf import duration_pb2
    far = ntp(offset=120)
    assert not stub.ClockSynced(Req(ntp_host=far.host, drift_threshold=duration_pb2.Duration(seconds=1))).synced
    assert stub.ClockSynced(Req(ntp_host=far.host, drift_threshold=duration_pb2.Duration(seconds=600))).synced
    with pytest.raises(grpc.RpcError) as e:
        stub.ClockSynced(Req(ntp_host=far.host))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and e.value.details() == "invalid nil Duration"
    far.close()
    with pytest.raises(grpc.RpcError) as e:
        stub.ClockSynced(Req(ntp_host=far.host, drift_threshold=duration_pb2.Duration(seconds=1)), timeout=30)
    assert e.value.details().startswith("query ntp host %s: " % far.host)


def test_sql_ping_and_migrate_status_read_the_embedded_store(cluster, tmp_path):
    p = cluster.praefect
    r = run("-config", p.config_path, "sql-ping")
    assert (r.returncode, r.stdout) == (0, "praefect sql-ping: OK\n")
    r = run("-config", p.config_path, "sql-migrate-status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == lines[2] == lines[-1] and lines[0].startswith("+-") and lines[0].endswith("-+")
    assert lines[1].split("|")[1].strip() == "MIGRATION" and lines[1].split("|")[2].strip() == "APPLIED"
    import re
    rows = [[c.strip() for c in line.split("|")[1:3]] for line in lines[3:-1]]
    assert rows and [r_[0] for r_ in rows] == sorted(r_[0] for r_ in rows)
    for _, applied in rows:
        assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? [+-]\d{4} \S+$", applied), applied
    # a store file praefect never opened: nothing applied, and nothing created
    cfg = write_config(tmp_path, base(tmp_path, '[database]\nsqlite_path = "%s"\n' % (tmp_path / "new.db")))
    r = run("-config", cfg, "sql-migrate-status")
    assert r.returncode == 0
    assert all(line.split("|")[2].strip() == "no" for line in r.stdout.splitlines()[3:-1])
    assert not os.path.exists(tmp_path / "new.db")
    r = run("-config", cfg, "sql-ping")
    assert r.returncode == 1 and "praefect sql-ping: fail: " in r.stderr


@pytest.mark.no_store("config loading and validation on a config of its own")
def test_configuration_validate_reports_problems_as_json(tmp_path):
    r = run("configuration", "validate", input="")
    assert r.returncode == 2
    assert json.loads(r.stdout) == {"errors": [
        {"message": 'none of "socket_path", "listen_addr" or "tls_listen_addr" is set'},
        {"key": ["virtual_storage"], "message": "not set"}]}
    assert r.stdout.startswith('{\n  "errors": [\n    {\n      "message": ')
    r = run("configuration", "validate", input=base(tmp_path))
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = run("configuration", "validate", input=base(tmp_path, '[replication]\nbatch_size = 0\n'
                                                       '[failover]\nelection_strategy = "bogus"\n'))
    assert r.returncode == 2
    assert json.loads(r.stdout)["errors"] == [
        {"key": ["replication", "batch_size"], "message": "not in range: 0 is not greater than or equal to 1"},
        {"key": ["failover", "election_strategy"], "message": 'not supported: "bogus"'}]
    r = run("configuration", "validate", input="a = = 1\n")
    assert r.returncode == 2
    assert json.loads(r.stdout)["errors"][0]["message"].startswith("line 1 column 5: ")
    r = run("configuration", "validate", "extra", input="")
    assert r.returncode == 1 and r.stderr == "invalid argument(s)\n"
    assert r.stdout.startswith("NAME:\n   praefect configuration validate - validates configuration\n")



@pytest.mark.no_store("config loading and validation on a config of its own")
def test_stale_job_timeout_is_checked(tmp_path):
    # ours: [replication] stale_job_timeout (docs/technical/config.md), at least 1s
    r = run("configuration", "validate", input=base(tmp_path, '[replication]\nstale_job_timeout = "500ms"\n'))
    assert r.returncode == 2
    assert json.loads(r.stdout)["errors"] == [
        {"key": ["replication", "stale_job_timeout"],
         "message": "not in range: 500ms is not greater than or equal to 1s"}]
    r = run("configuration", "validate", input=base(tmp_path, '[replication]\nstale_job_timeout = "2s"\n'))
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")

@pytest.mark.no_store("config loading and validation on a config of its own")
def test_help_of_commands_that_read_no_config(tmp_path):
    r = run("configuration", "validate", "-h", input="")
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("NAME:\n   praefect configuration validate - validates configuration\n")
    # a broken config does not hide a command's help
    cfg = write_config(tmp_path, "listen_addr = [\n")
    r = run("-config", cfg, "dial-nodes", "--help")
    assert r.returncode == 0 and "--timeout value" in r.stdout
    r = run("-config", cfg, "dial-nodes")
    assert r.returncode == 1 and r.stderr.startswith("error reading config file: ")
