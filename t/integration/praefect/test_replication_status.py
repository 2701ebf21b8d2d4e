"""`praefect replication-status` and the replication status series: a stopped node's backlog,
its outdated replicas and for how long, then the same back at zero once it has caught up."""
import json
import os
import re
import subprocess
import time

import pytest

from praefect_itest import Cluster, wait_for
from gitaly_itest import BUILD, git
from test_metrics import free_port, prepend, http_get
from test_praefect import create_repo, push, replicas_in_sync, gitaly_ssh_env, work_repo

REPOS = ["rs-a.git", "rs-b.git", "rs-c.git"]
LAGGING = "gitaly-3"


def status_cmd(cluster, *args):
    return subprocess.run([os.path.join(BUILD, "praefect", "praefect"), "-config", cluster.praefect.config_path,
                           "replication-status"] + list(args), capture_output=True, text=True, timeout=30)


def status_json(cluster):
    r = status_cmd(cluster, "-json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [v["virtual_storage"] for v in doc["virtual_storages"]] == ["default"]
    return doc["virtual_storages"][0]


def storage_of(vs, name):
    (s,) = [s for s in vs["storages"] if s["storage"] == name]
    return s


def scrape(url):
    """The replication status series of /metrics as {(family, storage): value}."""
    out = {}
    for line in http_get(url)[2].splitlines():
        m = re.match(r'(gitaly_praefect_(?:replication_backlog_\w+|replication_throughput_\w+|outdated_replica\w*))'
                     r'\{storage="([^"]+)",virtual_storage="default"\} (\S+)$', line)
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def page_row(page, storage):
    """(backlog jobs, outdated replicas, age of the oldest) in the status page's row of `storage`."""
    m = re.search(r'<tr class="node" data-storage="%s".*?<td class="backlog[^"]*" data-jobs="(\d+)">'
                  r'.*?<td class="outdated[^"]*" data-replicas="(\d+)" data-age="(\d+)">' % re.escape(storage), page)
    assert m, page
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def commit_and_push(cluster, src, relative_path, n):
    work = "%s.w%d" % (src, n)
    git("clone", "-q", src, work)
    with open(os.path.join(work, "f%d.txt" % n), "w") as f:
        f.write("%d\n" % n)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "change %d" % n, cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)

    def pushed():
        r = subprocess.run(["git", "push", "-q", "ssh://gitaly/repo.git", "main"], cwd=src, capture_output=True,
                           env=dict(os.environ, **gitaly_ssh_env(cluster.praefect, relative_path, "receive-pack")))
        return r.returncode == 0
    wait_for(pushed, what="a push with two of three nodes")


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path, start=False)
    port = free_port()
    prepend(c.praefect.config_path, 'prometheus_listen_addr = "127.0.0.1:%d"' % port)
    c.praefect.start()
    c.metrics_url = "http://127.0.0.1:%d/metrics" % port
    c.status_url = "http://127.0.0.1:%d/" % port
    yield c
    c.stop()


@pytest.mark.both_stores
def test_a_stopped_node_shows_its_backlog_and_outdated_replicas_until_it_catches_up(cluster, tmp_path):
    srcs = {}
    for i, path in enumerate(REPOS):
        create_repo(cluster, path)
        srcs[path] = work_repo(tmp_path, name="src%d" % i, branches=("main",), tags=())
        push(cluster, srcs[path], path, "main")
    for path in REPOS:
        wait_for(lambda: replicas_in_sync(cluster, path), what="replication of " + path)
    wait_for(lambda: storage_of(status_json(cluster), LAGGING)["backlog"] == 0, what="an empty queue")
    vs = status_json(cluster)
    assert vs["outdated_repositories"] == []
    assert all(s["outdated_replicas"] == 0 and s["time_to_in_sync_seconds"] == 0 for s in vs["storages"])
    text = status_cmd(cluster)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("Virtual storage: default\n  Storages:\n")
    assert text.stdout.endswith("  All repositories are in sync on all storages!\n")

    cluster.nodes[LAGGING].stop()
    wait_for(lambda: not {r.storage: r.healthy for r in cluster.praefect.metadata(REPOS[0]).replicas}[LAGGING],
             what="the stopped node seen unhealthy")
    for n, path in enumerate(REPOS, 1):
        commit_and_push(cluster, srcs[path], path, n)

    def lagging_view():
        s = storage_of(status_json(cluster), LAGGING)
        return s if s["outdated_replicas"] == len(REPOS) and s["backlog"] >= len(REPOS) else None
    s = wait_for(lagging_view, what="the lagging storage's backlog and outdated replicas")
    assert s["healthy"] is False
    assert s["oldest_outdated_relative_path"] in REPOS
    vs = status_json(cluster)
    assert [r["relative_path"] for r in vs["outdated_repositories"]] == sorted(REPOS)
    assert vs["outdated_repositories_omitted"] == 0
    for r in vs["outdated_repositories"]:
        assert [(o["storage"], o["behind_by"]) for o in r["outdated_storages"]] == [(LAGGING, 1)]
    for other in ("gitaly-1", "gitaly-2"):
        assert storage_of(vs, other)["outdated_replicas"] == 0
    first = storage_of(vs, LAGGING)["oldest_outdated_seconds"]
    since = time.time() - first           # when it fell behind, within a second
    # the age grows while the node stays away
    later = wait_for(lambda: (lambda v: v if v > first else None)(
        storage_of(status_json(cluster), LAGGING)["oldest_outdated_seconds"]), what="an older outdated age")
    assert later > first

    # the store keeps when each replica fell behind: a restarted praefect does not start the count again
    time.sleep(2)
    cluster.praefect.stop()
    cluster.praefect.start()
    s = wait_for(lagging_view, what="the lagging storage after a restart")
    assert time.time() - s["oldest_outdated_seconds"] <= since + 1.5, "the age restarted from zero"

    text = status_cmd(cluster).stdout
    assert "    %s (unhealthy):\n" % LAGGING in text
    assert re.search(r"      Outdated replicas: 3, the oldest rs-[abc]\.git outdated for \d+s\n", text), text
    for path in REPOS:
        assert re.search(r"    %s:\n      Primary: gitaly-[12]\n      Outdated Storages:\n"
                         r"        %s is behind by 1 change or less, outdated for \d+s, assigned host\n"
                         % (re.escape(path), LAGGING), text), text
    assert "Outdated repositories:" in text

    def scraped_lagging():
        m = scrape(cluster.metrics_url)
        ok = (m.get(("gitaly_praefect_outdated_replicas", LAGGING)) == len(REPOS)
              and m.get(("gitaly_praefect_replication_backlog_jobs", LAGGING), 0) >= len(REPOS)
              and m.get(("gitaly_praefect_outdated_replica_age_seconds", LAGGING), 0) > 0
              and m.get(("gitaly_praefect_replication_backlog_oldest_seconds", LAGGING), 0) > 0)
        return m if ok else None
    m = wait_for(scraped_lagging, what="the series of the lagging storage")
    assert m[("gitaly_praefect_outdated_replicas", "gitaly-1")] == 0
    # the status page's node row shows the same
    page = wait_for(lambda: (lambda p: p if page_row(p, LAGGING)[1] == len(REPOS) else None)(
        http_get(cluster.status_url)[2]), what="the status page's outdated count")
    jobs, replicas, age = page_row(page, LAGGING)
    assert jobs >= len(REPOS) and age >= 0
    assert page_row(page, "gitaly-1")[:2] == (0, 0)

    cluster.nodes[LAGGING].start()
    for path in REPOS:
        wait_for(lambda: replicas_in_sync(cluster, path), timeout=60, what="the lagging node caught up on " + path)

    def synced():
        v = status_json(cluster)
        s = storage_of(v, LAGGING)
        return v if not v["outdated_repositories"] and s["backlog"] == 0 and s["outdated_replicas"] == 0 else None
    vs = wait_for(synced, what="no backlog and no outdated replica")
    s = storage_of(vs, LAGGING)
    assert s["time_to_in_sync_seconds"] == 0 and s["oldest_outdated_seconds"] == 0
    assert s["throughput_jobs_per_second"] > 0       # it just completed jobs
    text = status_cmd(cluster).stdout
    assert text.endswith("  All repositories are in sync on all storages!\n"), text
    assert "Time to in sync: in sync" in text

    def scraped_synced():
        m = scrape(cluster.metrics_url)
        return m if (m.get(("gitaly_praefect_outdated_replicas", LAGGING)) == 0
                     and m.get(("gitaly_praefect_replication_backlog_jobs", LAGGING)) == 0
                     and m.get(("gitaly_praefect_outdated_replica_age_seconds", LAGGING)) == 0) else None
    m = wait_for(scraped_synced, what="the series back at zero")
    assert page_row(http_get(cluster.status_url)[2], LAGGING) == (0, 0, 0)
    assert m[("gitaly_praefect_replication_throughput_jobs_per_second", LAGGING)] > 0


def test_bad_flags_and_an_unknown_virtual_storage_are_refused(cluster):
    r = status_cmd(cluster, "-bogus")
    assert r.returncode == 1
    assert "flag provided but not defined: -bogus" in r.stderr
    r = status_cmd(cluster, "extra")
    assert r.returncode == 1
    assert "replication-status doesn't accept positional arguments" in r.stderr
    r = status_cmd(cluster, "-virtual-storage", "nope")
    assert r.returncode == 1
    assert 'unknown virtual storage: \\"nope\\"' in r.stderr or 'unknown virtual storage: "nope"' in r.stderr
    r = status_cmd(cluster, "-h")
    assert r.returncode == 0 and "--json" in r.stdout and "--virtual-storage value" in r.stdout
    r = status_cmd(cluster, "-virtual-storage", "default")
    assert r.returncode == 0 and r.stdout.startswith("Virtual storage: default\n"), r.stderr
