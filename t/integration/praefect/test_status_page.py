"""praefect's status page at "/" on prometheus_listen_addr, loaded in headless Chromium.

The cluster is driven into the states the page must show (a stopped node, an
outdated replica behind it), then Debian's chromium renders the page and the
test reads the DOM it dumps. chromium_screenshot() leaves a PNG in the test's
tmp dir so a person can look at the page.
"""
import os
import re
import shutil
import subprocess
import time

import pytest

from praefect_itest import NODE_TOKEN, Praefect
from gitaly_itest import GitalyNode, make_bare_repo

from test_praefect import create_repo
from test_metrics import free_port, prepend, http_get, push

CHROMIUM = shutil.which("chromium")


def chromium(*args):
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           *args], capture_output=True, text=True, timeout=120)


def chromium_dump_dom(url):
    r = chromium("--dump-dom", url)
    assert r.returncode == 0, r.stderr
    return r.stdout


def chromium_screenshot(url, path):
    r = chromium("--screenshot=%s" % path, "--window-size=1280,800", url)
    assert r.returncode == 0 and os.path.exists(path), r.stderr
    return path


@pytest.fixture
def cluster(tmp_path):
    tmp = str(tmp_path)
    nodes = {}
    for i in range(1, 4):
        name = "gitaly-%d" % i
        nodes[name] = GitalyNode(os.path.join(tmp, name), storages=(name,), token=NODE_TOKEN).start()
    praefect = Praefect(os.path.join(tmp, "praefect"), nodes)
    port = free_port()
    prepend(praefect.config_path, 'prometheus_listen_addr = "127.0.0.1:%d"' % port)
    praefect.start()
    yield praefect, nodes, "http://127.0.0.1:%d/" % port
    praefect.stop()
    for n in nodes.values():
        n.stop()


def node_health(dom, storage):
    m = re.search(r'<tr class="node" data-storage="%s" data-health="(\w+)"' % re.escape(storage), dom)
    assert m, dom
    return m.group(1)


def repo_count(dom, state):
    m = re.search(r'data-state="%s"><b class="count">(\d+)</b>' % re.escape(state), dom)
    assert m, dom
    return int(m.group(1))


def backlog_now(dom):
    m = re.search(r'<b id="backlog-now">(\d+)</b>', dom)
    assert m, dom
    return int(m.group(1))


def wait_page(fetch, pred, what, timeout=30):
    deadline = time.time() + timeout
    while True:
        page = fetch()
        if pred(page):
            return page
        if time.time() > deadline:
            raise AssertionError("%s; page:\n%s" % (what, page))
        time.sleep(0.5)


def test_page_is_html_and_lists_every_node(cluster):
    praefect, nodes, url = cluster
    create_repo(type("C", (), {"praefect": praefect})(), "a.git")
    page = wait_page(lambda: http_get(url)[2], lambda p: repo_count(p, "in sync") == 1, "the repository in sync")
    status, ctype, _ = http_get(url)
    assert status == 200 and ctype.startswith("text/html")
    for name in nodes:
        assert node_health(page, name) == "healthy"
    assert '<svg id="backlog"' in page
    assert repo_count(page, "outdated") == 0 and repo_count(page, "unavailable") == 0
    # /metrics is still served beside it
    assert "gitaly_praefect_node_latency" in http_get(url + "metrics")[2]


@pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed (tools/deps.sh)")
def test_chromium_shows_a_stopped_node_and_the_replica_behind_it(cluster, tmp_path):
    praefect, nodes, url = cluster
    create_repo(type("C", (), {"praefect": praefect})(), "late.git")
    src = make_bare_repo(os.path.join(str(tmp_path), "src.git"), branches=("main", "feature"))
    push(praefect, src, "late.git", "main")
    md = praefect.metadata("late.git")
    secondary = next(r.storage for r in md.replicas if r.storage != md.primary)
    nodes[secondary].stop()
    wait_page(lambda: http_get(url)[2], lambda p: node_health(p, secondary) == "unhealthy",
              "the stopped node seen unhealthy")
    push(praefect, src, "late.git", "feature")
    dom = wait_page(lambda: chromium_dump_dom(url), lambda d: repo_count(d, "outdated") == 1 and backlog_now(d) >= 1,
                    "the repository outdated and its job in the backlog, in the browser's DOM", timeout=60)
    assert node_health(dom, secondary) == "unhealthy"
    assert node_health(dom, md.primary) == "healthy"
    assert repo_count(dom, "in sync") == 0 and repo_count(dom, "unavailable") == 0
    primaries = re.search(r'data-storage="%s".*?<td class="primaries">(\d+)</td>' % re.escape(md.primary), dom)
    assert primaries and int(primaries.group(1)) == 1
    chromium_screenshot(url, os.path.join(str(tmp_path), "status.png"))


def test_a_failover_is_listed_with_both_primaries(cluster, tmp_path):
    praefect, nodes, url = cluster
    create_repo(type("C", (), {"praefect": praefect})(), "fo.git")
    page = http_get(url)[2]
    assert 'id="no-failovers"' in page
    old = praefect.metadata("fo.git").primary
    nodes[old].stop()
    wait_page(lambda: http_get(url)[2], lambda p: node_health(p, old) == "unhealthy", "the primary seen unhealthy")
    # election is lazy: a write routed to the repository elects a new primary
    push(praefect, make_bare_repo(os.path.join(str(tmp_path), "src.git")), "fo.git", "main")
    new = praefect.metadata("fo.git").primary
    assert new != old
    page = wait_page(lambda: http_get(url)[2], lambda p: 'class="failover"' in p, "the failover listed")
    row = re.search(r'<tr class="failover"><td>[^<]*</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>', page)
    assert row and row.groups() == ("default/fo.git", old, new), page


def test_the_verifiers_upstream_series_count_dequeued_and_completed_jobs(tmp_path):
    tmp = str(tmp_path)
    nodes = {}
    for i in range(1, 4):
        name = "gitaly-%d" % i
        nodes[name] = GitalyNode(os.path.join(tmp, name), storages=(name,), token=NODE_TOKEN).start()
    praefect = Praefect(os.path.join(tmp, "praefect"), nodes,
                        extra='\n[background_verification]\nverification_interval = "1h"\n')
    port = free_port()
    prepend(praefect.config_path, 'prometheus_listen_addr = "127.0.0.1:%d"' % port)
    praefect.start()
    try:
        url = "http://127.0.0.1:%d/metrics" % port
        text = http_get(url)[2]
        # pre-registered at zero, as upstream
        assert ('gitaly_praefect_verification_jobs_completed_total{result="invalid",storage="gitaly-1",'
                'virtual_storage="default"} 0') in text, text
        assert "gitaly_praefect_stale_verification_leases_released_total 0" in text
        create_repo(type("C", (), {"praefect": praefect})(), "v.git")

        def counted(p):
            return all(('gitaly_praefect_verification_jobs_completed_total{result="valid",storage="%s",'
                        'virtual_storage="default"} 1' % n) in p and
                       ('gitaly_praefect_verification_jobs_dequeued_total{storage="%s",'
                        'virtual_storage="default"} 1' % n) in p for n in nodes)
        wait_page(lambda: http_get(url)[2], counted, "each replica dequeued and verified valid once", timeout=60)
    finally:
        praefect.stop()
        for n in nodes.values():
            n.stop()
