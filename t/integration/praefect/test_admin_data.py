"""praefect's data admin subcommands against a running three-node cluster: metadata,
set-replication-factor, verify and remove-repository, with upstream's output, errors and exit codes."""
import os
import re
import subprocess

import pytest

from praefect_itest import Cluster, wait_for
from gitaly_itest import BUILD, git, pb
from test_praefect import create_repo, gitaly_ssh_env, push, refs, replicas_in_sync, work_repo

# Go's log.Fatal prefix on errors a subcommand returns
STAMP = r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d "


def praefect_cmd(cluster, *args):
    return subprocess.run([os.path.join(BUILD, "praefect", "praefect"), "-config", cluster.praefect.config_path]
                          + list(args), capture_output=True, text=True, timeout=60)


def fails_with(res, message):
    """Exit 1 and `message` on stderr after Go's log timestamp."""
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert re.fullmatch(STAMP + re.escape(message) + "\n", res.stderr), res.stderr


def replica_dir(cluster, storage, replica_path):
    return os.path.join(cluster.nodes[storage].storages[storage], replica_path)


def synced_repo(cluster, tmp_path, relative_path):
    create_repo(cluster, relative_path)
    push(cluster, work_repo(tmp_path, name=relative_path.replace("/", "_")), relative_path, "--all")
    md, _ = wait_for(lambda: replicas_in_sync(cluster, relative_path), what="replication")
    return md


def expected_metadata(md, verified=None):
    verified = verified or {}
    lines = ["Repository ID: %d" % md.repository_id, 'Virtual Storage: "default"',
             'Relative Path: "%s"' % md.relative_path, 'Replica Path: "%s"' % md.replica_path,
             'Primary: "%s"' % md.primary, "Generation: %d" % md.generation, "Replicas:"]
    for r in md.replicas:
        lines += ['- Storage: "%s"' % r.storage, "  Assigned: true",
                  "  Generation: %d, fully up to date" % r.generation, "  Healthy: true",
                  "  Valid Primary: true", "  Verified At: %s" % verified.get(r.storage, "unverified")]
    return "\n".join(lines) + "\n"


@pytest.fixture
def fast_cluster(tmp_path):
    """The cluster with a reconciler that runs every second (upstream's default is 5 minutes)."""
    c = Cluster(tmp_path, extra='\n[reconciliation]\nscheduling_interval = "1s"\n')
    yield c
    c.stop()


@pytest.mark.both_stores
def test_metadata_prints_the_record_by_path_and_by_id(cluster, tmp_path):
    md = synced_repo(cluster, tmp_path, "meta/data.git")
    assert md.generation >= 0
    by_path = praefect_cmd(cluster, "metadata", "-virtual-storage", "default", "-relative-path", "meta/data.git")
    assert by_path.returncode == 0, by_path.stderr
    assert by_path.stdout == expected_metadata(md)
    by_id = praefect_cmd(cluster, "metadata", "--repository-id=%d" % md.repository_id)
    assert by_id.stdout == by_path.stdout


@pytest.mark.both_stores
def test_metadata_selector_errors_and_unknown_repository(cluster):
    fails_with(praefect_cmd(cluster, "metadata"), "repository ID or virtual storage and relative path required")
    fails_with(praefect_cmd(cluster, "metadata", "-repository-id", "1", "-virtual-storage", "default"),
               "virtual storage and relative path can't be provided with a repository ID")
    fails_with(praefect_cmd(cluster, "metadata", "-relative-path", "x.git"),
               "virtual storage is required with relative path")
    fails_with(praefect_cmd(cluster, "metadata", "-virtual-storage", "default"),
               "relative path is required with virtual storage")
    fails_with(praefect_cmd(cluster, "metadata", "-repository-id", "4242"),
               "get metadata: rpc error: code = NotFound desc = repository not found")
    res = praefect_cmd(cluster, "metadata", "-repository-id", "1", "extra")
    assert res.returncode == 1 and "metadata doesn't accept positional arguments" in res.stderr
    res = praefect_cmd(cluster, "metadata", "-repository-id", "one")
    assert res.returncode == 1 and 'invalid value "one" for flag -repository-id' in res.stderr


def set_verified_at(cluster, unix_ms, where):
    cluster.praefect.sql("UPDATE storage_repositories SET verified_at = %d WHERE %s" % (unix_ms, where),
                         postgres="UPDATE storage_repositories SET verified_at = to_timestamp(%d / 1000.0) WHERE %s"
                                  % (unix_ms, where))


def test_verify_marks_verified_replicas_unverified(cluster, tmp_path):
    md = synced_repo(cluster, tmp_path, "verify.git")
    other = synced_repo(cluster, tmp_path, "other.git")
    # verification times as a verifier records them (Unix ms): 2021-04-01 10:04:20 UTC, one with a fraction
    set_verified_at(cluster, 1617271460000, "storage = 'gitaly-1'")
    set_verified_at(cluster, 1617271460250, "storage = 'gitaly-2' AND repository_id = %d" % md.repository_id)
    out = praefect_cmd(cluster, "metadata", "-repository-id", str(md.repository_id)).stdout
    assert out == expected_metadata(md, {"gitaly-1": "2021-04-01 10:04:20 +0000 UTC",
                                         "gitaly-2": "2021-04-01 10:04:20.25 +0000 UTC"})

    res = praefect_cmd(cluster, "verify", "-repository-id", str(md.repository_id))
    assert (res.returncode, res.stdout) == (0, "2 replicas marked unverified\n"), res.stderr
    assert praefect_cmd(cluster, "metadata", "-repository-id", str(md.repository_id)).stdout == expected_metadata(md)
    res = praefect_cmd(cluster, "verify", "-repository-id", str(md.repository_id))
    assert res.stdout == "0 replicas marked unverified\n"
    # the other repository's gitaly-1 replica is still verified: by storage, then by virtual storage
    res = praefect_cmd(cluster, "verify", "-virtual-storage", "default", "-storage", "gitaly-2")
    assert res.stdout == "0 replicas marked unverified\n"
    res = praefect_cmd(cluster, "verify", "-virtual-storage", "default", "-storage", "gitaly-1")
    assert res.stdout == "1 replicas marked unverified\n"
    set_verified_at(cluster, 1617271460000, "repository_id = %d" % other.repository_id)
    assert praefect_cmd(cluster, "verify", "-virtual-storage", "default").stdout == "3 replicas marked unverified\n"

    fails_with(praefect_cmd(cluster, "verify"), "(repository id), (virtual storage) or (virtual storage, storage) required")
    fails_with(praefect_cmd(cluster, "verify", "-storage", "gitaly-1"), "virtual storage must be passed with storage")
    fails_with(praefect_cmd(cluster, "verify", "-repository-id", "1", "-storage", "gitaly-1"),
               "virtual storage and storage can't be provided with a repository ID")


def on_disk(cluster, replica_path):
    return sorted(s for s in cluster.nodes if os.path.isdir(replica_dir(cluster, s, replica_path)))


def test_set_replication_factor_one_then_three_moves_replicas_on_disk(fast_cluster, tmp_path):
    cluster = fast_cluster
    md = synced_repo(cluster, tmp_path, "rf.git")
    assert on_disk(cluster, md.replica_path) == ["gitaly-1", "gitaly-2", "gitaly-3"]

    res = praefect_cmd(cluster, "set-replication-factor", "-virtual-storage", "default", "-relative-path", "rf.git",
                       "-replication-factor", "1")
    # the primary is never unassigned
    assert (res.returncode, res.stdout) == (0, "current assignments: %s\n" % md.primary), res.stderr
    wait_for(lambda: on_disk(cluster, md.replica_path) == [md.primary], timeout=60, what="replicas deleted")
    wait_for(lambda: [r.storage for r in cluster.praefect.metadata("rf.git").replicas] == [md.primary],
             what="replica records deleted")
    out = praefect_cmd(cluster, "metadata", "-virtual-storage", "default", "-relative-path", "rf.git").stdout
    assert out.count("- Storage:") == 1 and "  Assigned: true\n" in out

    # the recovery document's spelling, -repository, works too
    res = praefect_cmd(cluster, "set-replication-factor", "-virtual-storage", "default", "-repository", "rf.git",
                       "-replication-factor", "3")
    assert (res.returncode, res.stdout) == (0, "current assignments: gitaly-1, gitaly-2, gitaly-3\n"), res.stderr
    wait_for(lambda: replicas_in_sync(cluster, "rf.git"), timeout=60, what="replicas created again")
    assert on_disk(cluster, md.replica_path) == ["gitaly-1", "gitaly-2", "gitaly-3"]

    res = praefect_cmd(cluster, "set-replication-factor", "-virtual-storage", "default", "-relative-path", "rf.git",
                       "-replication-factor", "2")
    kept = res.stdout[len("current assignments: "):].strip().split(", ")
    assert res.returncode == 0 and len(kept) == 2 and md.primary in kept, res.stdout
    wait_for(lambda: on_disk(cluster, md.replica_path) == sorted(kept), timeout=60, what="one replica deleted")


def test_set_replication_factor_errors(cluster, tmp_path):
    create_repo(cluster, "rf-errors.git")
    args = ["set-replication-factor", "-virtual-storage", "default", "-relative-path", "rf-errors.git"]
    code = "rpc error: code = InvalidArgument desc = set replication factor: "
    fails_with(praefect_cmd(cluster, *args, "-replication-factor", "0"),
               code + "attempted to set replication factor 0 but minimum is 1")
    fails_with(praefect_cmd(cluster, *args, "-replication-factor", "4"),
               code + "attempted to set replication factor 4 but virtual storage only contains 3 storages")
    fails_with(praefect_cmd(cluster, "set-replication-factor", "-virtual-storage", "nope", "-relative-path", "x.git",
                            "-replication-factor", "2"), code + 'virtual storage "nope" not found')
    fails_with(praefect_cmd(cluster, "set-replication-factor", "-virtual-storage", "default", "-relative-path",
                            "missing.git", "-replication-factor", "2"),
               code + 'repository "default"/"missing.git" not found')
    res = praefect_cmd(cluster, *args)
    assert res.returncode == 1 and 'Required flag "replication-factor" not set' in res.stderr
    res = praefect_cmd(cluster, "set-replication-factor", "-relative-path", "x.git", "-replication-factor", "1")
    assert res.returncode == 1 and 'Required flag "virtual-storage" not set' in res.stderr


def count(cluster, table, where, postgres_where=None):
    """Rows of `table` matching `where` (`postgres_where` on PostgreSQL, whose queue keeps a job as JSON)."""
    q = "SELECT COUNT(*) FROM %s WHERE " % table
    return int(cluster.praefect.sql(q + where, postgres=q + (postgres_where or where))[0][0])


def rows(cluster, relative_path):
    counts = {table: count(cluster, table, "relative_path = '%s'" % relative_path)
              for table in ("repositories", "storage_repositories", "repository_assignments")}
    counts["replication_queue"] = count(cluster, "replication_queue", "relative_path = '%s'" % relative_path,
                                        "job->>'relative_path' = '%s'" % relative_path)
    return counts


def jobs(cluster, relative_path, change):
    return count(cluster, "replication_queue", "relative_path = '%s' AND change = '%s'" % (relative_path, change),
                 "job->>'relative_path' = '%s' AND job->>'change' = '%s'" % (relative_path, change))


def test_remove_repository_dry_run_then_apply_leaves_nothing(cluster, tmp_path):
    md = synced_repo(cluster, tmp_path, "rm/me.git")
    args = ["remove-repository", "-virtual-storage", "default", "-relative-path", "rm/me.git"]
    res = praefect_cmd(cluster, *args)
    assert (res.returncode, res.stdout) == (0, "Repository found in the database.\n"
                                               "Re-run the command with -apply to remove repositories from the "
                                               "database and disk or -apply and -db-only to remove from database "
                                               "only.\n"), res.stderr
    assert on_disk(cluster, md.replica_path) == ["gitaly-1", "gitaly-2", "gitaly-3"]
    assert rows(cluster, "rm/me.git")["repositories"] == 1

    # a queued job for the repository: one node is down during a write
    down = next(s for s in cluster.nodes if s != md.primary)
    cluster.nodes[down].stop()
    wait_for(lambda: "%s is unhealthy" % down in cluster.praefect.log(), what="node marked unhealthy")
    push(cluster, work_repo(tmp_path, name="more", branches=("other",), tags=()), "rm/me.git", "other")
    wait_for(lambda: rows(cluster, "rm/me.git")["replication_queue"] > 0, what="a queued job")
    cluster.nodes[down].start()

    res = praefect_cmd(cluster, "remove-repository", "-virtual-storage", "default", "-repository", "rm/me.git",
                       "-apply")
    assert res.returncode == 0, res.stderr
    assert res.stdout == ("Repository found in the database.\n"
                          "Attempting to remove rm/me.git from the database, and delete it from all gitaly nodes...\n"
                          "Repository removal completed.\n"
                          "Removing replication events...\n"
                          "Replication event removal completed.\n")
    assert rows(cluster, "rm/me.git") == {"repositories": 0, "storage_repositories": 0,
                                          "repository_assignments": 0,
                                          "replication_queue": jobs(cluster, "rm/me.git", "delete")}
    # the queued update is gone; only a retried removal (the node had just come back) may remain
    assert jobs(cluster, "rm/me.git", "update") == 0
    wait_for(lambda: on_disk(cluster, md.replica_path) == [], timeout=60, what="replicas deleted")
    exists = cluster.praefect.stub("RepositoryService").RepositoryExists(
        pb("repository").RepositoryExistsRequest(repository=cluster.praefect.repo("rm/me.git")))
    assert not exists.exists

    fails_with(praefect_cmd(cluster, *args, "-apply"), "repository is not being tracked in Praefect")


def test_remove_repository_with_a_node_down_removes_its_replica_when_it_returns(cluster, tmp_path):
    md = synced_repo(cluster, tmp_path, "rm/later.git")
    down = next(s for s in cluster.nodes if s != md.primary)
    cluster.nodes[down].stop()
    res = praefect_cmd(cluster, "remove-repository", "-virtual-storage", "default", "-relative-path", "rm/later.git",
                       "-apply")
    assert res.returncode == 0, res.stderr
    assert rows(cluster, "rm/later.git")["repositories"] == 0
    assert on_disk(cluster, md.replica_path) == [down]
    # the failed removal was kept as a job, not forgotten: it runs once the node is back
    cluster.nodes[down].start()
    wait_for(lambda: on_disk(cluster, md.replica_path) == [], timeout=60, what="the late replica removed")
    wait_for(lambda: rows(cluster, "rm/later.git")["replication_queue"] ==
             count(cluster, "replication_queue", "relative_path = 'rm/later.git' AND state = 'completed'",
                   "job->>'relative_path' = 'rm/later.git' AND state = 'completed'"),
             what="the retry job completed")


def test_remove_repository_db_only_keeps_the_replicas(cluster, tmp_path):
    md = synced_repo(cluster, tmp_path, "db-only.git")
    res = praefect_cmd(cluster, "remove-repository", "-virtual-storage", "default", "-relative-path", "db-only.git",
                       "-apply", "-db-only")
    assert res.returncode == 0, res.stderr
    assert res.stdout == ("Repository found in the database.\n"
                          "Attempting to remove db-only.git from the database...\n"
                          "Repository removal from database completed.\n")
    assert rows(cluster, "db-only.git") == {"repositories": 0, "storage_repositories": 0,
                                            "repository_assignments": 0, "replication_queue": 0}
    assert on_disk(cluster, md.replica_path) == ["gitaly-1", "gitaly-2", "gitaly-3"]
    fails_with(praefect_cmd(cluster, "metadata", "-virtual-storage", "default", "-relative-path", "db-only.git"),
               "get metadata: rpc error: code = NotFound desc = repository not found")
    # the path is free again: a new repository gets a new id and replica path
    create_repo(cluster, "db-only.git")
    assert cluster.praefect.metadata("db-only.git").repository_id != md.repository_id


def test_remove_repository_errors(cluster):
    fails_with(praefect_cmd(cluster, "remove-repository", "-virtual-storage", "default", "-relative-path", "no.git"),
               "repository is not being tracked in Praefect")
    res = praefect_cmd(cluster, "remove-repository", "-virtual-storage", "default")
    assert res.returncode == 1 and 'Required flag "relative-path" not set' in res.stderr


UNTRACKED_HEADER = "The following repositories were found on disk, but missing from the tracking database:\n"


def create_on_node(cluster, storage, relative_path):
    """A repository made straight on one node, behind praefect's back."""
    cluster.node_stub(storage, "RepositoryService").CreateRepository(
        pb("repository").CreateRepositoryRequest(
            repository=pb("shared").Repository(storage_name=storage, relative_path=relative_path)), timeout=10)
    return replica_dir(cluster, storage, relative_path)


def untracked_line(relative_path, storage):
    return '{"relative_path":"%s","storage":"%s","virtual_storage":"default"}\n' % (relative_path, storage)


def test_list_untracked_repositories_reports_what_no_record_tracks(cluster, tmp_path):
    md = synced_repo(cluster, tmp_path, "tracked.git")
    path = create_on_node(cluster, "gitaly-2", "@hashed/ab/cd/untracked.git")
    # fresh: skipped by the default -older-than 6h; tracked replicas never show
    res = praefect_cmd(cluster, "list-untracked-repositories")
    assert (res.returncode, res.stdout) == (0, ""), res.stderr
    res = praefect_cmd(cluster, "list-untracked-repositories", "-older-than", "0s")
    assert (res.returncode, res.stdout) == (0, UNTRACKED_HEADER + untracked_line("@hashed/ab/cd/untracked.git",
                                                                                 "gitaly-2")), res.stderr
    # seven hours old: the default finds it too; a replica left behind by -db-only shows on every node
    old = os.stat(path).st_mtime - 7 * 3600
    os.utime(path, (old, old))
    assert praefect_cmd(cluster, "remove-repository", "-virtual-storage", "default", "-relative-path",
                        "tracked.git", "-apply", "-db-only").returncode == 0
    for s in cluster.nodes:
        os.utime(replica_dir(cluster, s, md.replica_path), (old, old))
    res = praefect_cmd(cluster, "list-untracked-repositories", "-delimiter", ";")
    assert res.returncode == 0, res.stderr
    expected = [untracked_line(md.replica_path, s).strip() + ";" for s in ("gitaly-1", "gitaly-2", "gitaly-3")]
    expected.insert(1 + 1, untracked_line("@hashed/ab/cd/untracked.git", "gitaly-2").strip() + ";")
    # walk order: per node, paths in byte order ("@cluster" < "@hashed")
    assert res.stdout == UNTRACKED_HEADER + "".join(expected)


def test_list_untracked_repositories_errors(cluster):
    res = praefect_cmd(cluster, "list-untracked-repositories", "-older-than", "soon")
    assert res.returncode == 1 and 'invalid value "soon" for flag -older-than' in res.stderr
    cluster.nodes["gitaly-3"].stop()
    res = praefect_cmd(cluster, "list-untracked-repositories")
    assert res.returncode == 1
    assert re.match(STAMP + re.escape('exec on "default"/"gitaly-3": rpc error: code = Unavailable'), res.stderr), \
        res.stderr
    cluster.nodes["gitaly-3"].start()


TRACK_ERR = "attempting to track repository in praefect database: "


def repo_on_disk(cluster, tmp_path, storage, relative_path):
    """A repository with a commit, made on one node's disk with git alone (as a restored backup would be)."""
    path = create_on_node(cluster, storage, relative_path)
    src = work_repo(tmp_path, name=relative_path.replace("/", "_"), branches=("main",), tags=())
    git("push", "-q", path, "main", cwd=src)
    return src


def test_track_repository_makes_an_untracked_repository_served_through_praefect(cluster, tmp_path):
    rel = "@hashed/11/22/restored.git"
    src = repo_on_disk(cluster, tmp_path, "gitaly-1", rel)
    res = praefect_cmd(cluster, "list-untracked-repositories", "-older-than", "0s")
    assert res.stdout == UNTRACKED_HEADER + untracked_line(rel, "gitaly-1"), res.stderr

    res = praefect_cmd(cluster, "track-repository", "-virtual-storage", "default", "-repository", rel,
                       "-authoritative-storage", "gitaly-1")
    assert res.returncode == 0, res.stderr
    assert res.stdout == ("Finished adding new repository to be tracked in praefect database.\n"
                          'Added replication job to replicate repository to "gitaly-2".\n'
                          'Added replication job to replicate repository to "gitaly-3".\n')
    md, _ = wait_for(lambda: replicas_in_sync(cluster, rel), timeout=30, what="replication of the tracked repository")
    assert (md.replica_path, md.primary) == (rel, "gitaly-1")
    assert praefect_cmd(cluster, "list-untracked-repositories", "-older-than", "0s").stdout == ""

    clone = str(tmp_path / "clone")
    git("clone", "-q", "--bare", "ssh://gitaly/repo.git", clone, env=gitaly_ssh_env(cluster.praefect, rel, "upload-pack"))
    assert refs(clone) == refs(src)

    # tracked already: upstream says so (without a newline) and queues the jobs again
    res = praefect_cmd(cluster, "track-repository", "-virtual-storage", "default", "-relative-path", rel,
                       "-replica-path", rel, "-authoritative-storage", "gitaly-1")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("repository is already tracked in praefect database"
                                 "Finished adding new repository to be tracked in praefect database.\n")


def test_track_repository_replicate_immediately_returns_with_every_replica(cluster, tmp_path):
    rel = "@hashed/33/44/now.git"
    repo_on_disk(cluster, tmp_path, "gitaly-2", rel)
    res = praefect_cmd(cluster, "track-repository", "-virtual-storage", "default", "-relative-path", rel,
                       "-authoritative-storage", "gitaly-2", "-replicate-immediately")
    assert res.returncode == 0, res.stderr
    assert res.stdout == ("Finished adding new repository to be tracked in praefect database.\n"
                          'Finished replicating repository to "gitaly-1".\n'
                          'Finished replicating repository to "gitaly-3".\n')
    sums = {s: cluster.checksum(s, rel) for s in cluster.nodes}
    assert len(set(sums.values())) == 1 and sums["gitaly-1"] != "0" * 40, sums


def test_track_repository_errors(cluster, tmp_path):
    fails_with(praefect_cmd(cluster, "track-repository", "-virtual-storage", "default", "-relative-path", "no.git",
                            "-authoritative-storage", "gitaly-1"),
               TRACK_ERR + "authoritative repository does not exist")
    fails_with(praefect_cmd(cluster, "track-repository", "-virtual-storage", "default", "-relative-path", "no.git",
                            "-authoritative-storage", "gitaly-9"), TRACK_ERR + 'node "gitaly-9" not found')
    fails_with(praefect_cmd(cluster, "track-repository", "-virtual-storage", "nope", "-relative-path", "no.git",
                            "-authoritative-storage", "gitaly-1"), TRACK_ERR + 'virtual storage "nope" not found')
    res = praefect_cmd(cluster, "track-repository", "-virtual-storage", "default", "-relative-path", "no.git")
    assert res.returncode == 1 and 'Required flag "authoritative-storage" not set' in res.stderr


def write_lines(path, entries):
    import json
    with open(path, "w") as f:
        for e in entries:
            f.write((e if isinstance(e, str) else json.dumps(e)) + "\n")
    return str(path)


def entry(rel, storage="gitaly-1", **kw):
    e = {"relative_path": rel, "replica_path": rel, "virtual_storage": "default", "authoritative_storage": storage}
    e.update(kw)
    return e


def test_track_repositories_validates_every_line_before_tracking_any(cluster, tmp_path):
    repo_on_disk(cluster, tmp_path, "gitaly-1", "@hashed/aa/01/one.git")
    repo_on_disk(cluster, tmp_path, "gitaly-3", "@hashed/aa/02/two.git")
    create_repo(cluster, "already.git")
    bad = write_lines(tmp_path / "bad.json", [
        entry("@hashed/aa/01/one.git"),
        entry("@hashed/aa/02/two.git", replica_path=""),
        entry("@hashed/aa/01/one.git"),
        entry("already.git"),
        entry("@hashed/aa/03/missing.git"),
    ])
    res = praefect_cmd(cluster, "track-repositories", "-input-path", bad)
    fails_with(res, "invalid entries found, aborting")
    assert res.stdout == ('Validating repository information in "%s"\n' % bad +
                          'Found 4 invalid request(s) in "%s":\n' % bad +
                          '  line 2, relative_path: "@hashed/aa/02/two.git", replica_path: ""\n'
                          '    "replica-path" is a required parameter\n'
                          '  line 3, relative_path: "@hashed/aa/01/one.git", replica_path: "@hashed/aa/01/one.git"\n'
                          '    duplicate entries for relative_path, line [1 3]\n'
                          '  line 4, relative_path: "already.git", replica_path: "already.git"\n'
                          '    repository is already tracked by Praefect\n'
                          '  line 5, relative_path: "@hashed/aa/03/missing.git", replica_path: '
                          '"@hashed/aa/03/missing.git"\n'
                          '    not a valid git repository\n')
    # nothing was tracked, not even the valid first line
    fails_with(praefect_cmd(cluster, "metadata", "-virtual-storage", "default", "-relative-path",
                            "@hashed/aa/01/one.git"),
               "get metadata: rpc error: code = NotFound desc = repository not found")

    good = write_lines(tmp_path / "good.json", [entry("@hashed/aa/01/one.git"),
                                                 entry("@hashed/aa/02/two.git", "gitaly-3")])
    res = praefect_cmd(cluster, "track-repositories", "-input-path", good)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ('Validating repository information in "%s"\n' % good +
                          "All repository details are correctly formatted\n"
                          "Tracking 2 repositories in Praefect DB...\n"
                          "Finished adding new repository to be tracked in praefect database.\n"
                          'Added replication job to replicate repository to "gitaly-2".\n'
                          'Added replication job to replicate repository to "gitaly-3".\n'
                          "Finished adding new repository to be tracked in praefect database.\n"
                          'Added replication job to replicate repository to "gitaly-1".\n'
                          'Added replication job to replicate repository to "gitaly-2".\n')
    for rel in ("@hashed/aa/01/one.git", "@hashed/aa/02/two.git"):
        wait_for(lambda: replicas_in_sync(cluster, rel), timeout=30, what="replication of " + rel)

    empty = write_lines(tmp_path / "empty.json", [])
    fails_with(praefect_cmd(cluster, "track-repositories", "-input-path", empty),
               'no repository information found in "%s"' % empty)


def test_repository_replicas_reports_every_replica_checksum(cluster, tmp_path):
    md = synced_repo(cluster, tmp_path, "sums.git")
    r = cluster.praefect.info().RepositoryReplicas(
        pb("praefect").RepositoryReplicasRequest(repository=cluster.praefect.repo("sums.git")), timeout=30)
    assert (r.primary.repository.storage_name, r.primary.repository.relative_path) == (md.primary, "sums.git")
    want = {s: cluster.checksum(s, md.replica_path) for s in cluster.nodes}
    got = {d.repository.storage_name: d.checksum for d in [r.primary] + list(r.replicas)}
    assert got == want and len(set(want.values())) == 1
    # a replica that differs shows it: a ref written on one node only
    other = next(s for s in cluster.nodes if s != md.primary)
    git("update-ref", "refs/heads/only-here", "HEAD", cwd=replica_dir(cluster, other, md.replica_path))
    r = cluster.praefect.info().RepositoryReplicas(
        pb("praefect").RepositoryReplicasRequest(repository=cluster.praefect.repo("sums.git")), timeout=30)
    got = {d.repository.storage_name: d.checksum for d in [r.primary] + list(r.replicas)}
    assert got[other] != got[md.primary] and got[other] == cluster.checksum(other, md.replica_path)

    import grpc
    with pytest.raises(grpc.RpcError) as e:
        cluster.praefect.info().RepositoryReplicas(
            pb("praefect").RepositoryReplicasRequest(repository=cluster.praefect.repo("none.git")), timeout=30)
    assert e.value.details() == 'get repository id: repository "default"/"none.git" not found'


def test_default_replication_factor_decides_assignments_of_new_and_tracked_repositories(tmp_path):
    cluster = Cluster(tmp_path, replication_factor=2)
    try:
        create_repo(cluster, "two.git")
        md = cluster.praefect.metadata("two.git")
        assigned = sorted(r.storage for r in md.replicas if r.assigned)
        assert len(assigned) == 2 and md.primary in assigned
        wait_for(lambda: on_disk(cluster, md.replica_path) == assigned, what="two replicas")
        out = praefect_cmd(cluster, "metadata", "-repository-id", str(md.repository_id)).stdout
        assert out.count("  Assigned: true\n") == 2

        rel = "@hashed/55/66/tracked-two.git"
        repo_on_disk(cluster, tmp_path, "gitaly-3", rel)
        res = praefect_cmd(cluster, "track-repository", "-virtual-storage", "default", "-relative-path", rel,
                           "-authoritative-storage", "gitaly-3")
        assert res.returncode == 0, res.stderr
        assert res.stdout.count("Added replication job to replicate repository to") == 1
        tracked = cluster.praefect.metadata(rel)
        assert len([r for r in tracked.replicas if r.assigned]) == 2
        wait_for(lambda: len(on_disk(cluster, rel)) == 2, what="the tracked repository on two storages")

        res = praefect_cmd(cluster, "set-replication-factor", "-virtual-storage", "default", "-relative-path",
                           "two.git", "-replication-factor", "3")
        assert res.stdout == "current assignments: gitaly-1, gitaly-2, gitaly-3\n", res.stderr
        wait_for(lambda: on_disk(cluster, md.replica_path) == ["gitaly-1", "gitaly-2", "gitaly-3"],
                 what="the third replica")
    finally:
        cluster.stop()
