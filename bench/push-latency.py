#!/usr/bin/env python3
"""Push latency: local git, straight to one gitaly, through praefect with three voting replicas.

Small pushes (one commit each, N of them) and one large push (random data),
through gitaly-ssh (local: plain `git push` to a bare repository on disk).
Prints median / p90 and the ratios direct/local and praefect/direct.

Then a second, traced pass (GIT_TRACE2_EVENT in the nodes' environment, so
every git the nodes run writes its trace2 events) splits each small push into
phases, medians over the N pushes, per path (see bench/README.md):

  spawn   client start -> the primary's receive-pack starts (gitaly-ssh,
          praefect routing and its write intent, the node spawning git)
  recv    receive-pack start -> first hook (advertisement, pack, unpack)
  pre upd prep comm post
          the hooks on the primary, each from git's child_start to child_exit:
          pre-receive, update, reference-transaction prepared / committed,
          post-receive (a hook git never ran shows 0)
  rest    the rest of receive-pack (quarantine migration, ref locking, report)
  lag     primary's receive-pack exit -> the last replica's exit
  tail    last receive-pack exit -> the client's push returns (gitaly's
          final vote, praefect's finalizer and generation bump, answers)
  hooks   processes git ran as hooks per push per node
  start   one gitaly-hooks process start-up (exec to exit, no RPC), median

usage: /usr/bin/python3 bench/push-latency.py [N] [LARGE_MB]
env: BUILD_DIR (default build); COMPARE_BUILD=<other build dir> measures that
build too, pass by pass in turn with BUILD_DIR's, and prints both (before/after).
"""
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "t/integration/gitaly"))
sys.path.insert(0, os.path.join(ROOT, "t/integration/praefect"))

import gitaly_itest  # noqa: E402
import praefect_itest  # noqa: E402
from gitaly_itest import BUILD, GitalyNode, git  # noqa: E402
from praefect_itest import Cluster  # noqa: E402
from test_praefect import create_repo  # noqa: E402

CUR = {"build": BUILD}


def use_build(path):
    """Point the fixtures (and us) at the binaries of `path`."""
    path = os.path.abspath(path)
    CUR["build"] = gitaly_itest.BUILD = praefect_itest.BUILD = path

PHASES = ("spawn", "recv", "pre", "upd", "prep", "comm", "post", "rest", "lag", "tail")
HOOK_COL = {"pre-receive": "pre", "update": "upd", "post-receive": "post"}


def client_env():
    env = dict(os.environ)
    env.pop("GIT_TRACE2_EVENT", None)
    return env


def ssh_env(address, token, storage, path):
    payload = {"repository": {"storageName": storage, "relativePath": path, "glRepository": "project-1"},
               "glId": "user-1", "glRepository": "project-1"}
    return dict(client_env(), GIT_SSH_COMMAND=os.path.join(CUR["build"], "gitaly-ssh", "gitaly-ssh") + " receive-pack",
                GIT_SSH_VARIANT="simple", GITALY_PAYLOAD=json.dumps(payload), GITALY_ADDRESS=address,
                GITALY_TOKEN=token)


def timed_push(work, env, url, ref="main"):
    t0 = time.time()
    subprocess.run(["git", "push", "-q", url, ref], cwd=work, env=env, check=True, capture_output=True)
    return t0, time.time()


def small_pushes(work, env, url, n):
    spans = []
    for i in range(n):
        with open(os.path.join(work, "f.txt"), "w") as f:
            f.write("%d\n" % i)
        git("commit", "-q", "-am", "change %d" % i, cwd=work)
        spans.append(timed_push(work, env, url))
    return spans


def setup_work(tmp, name, mb):
    work = os.path.join(tmp, name)
    git("init", "-q", "-b", "main", work)
    with open(os.path.join(work, "f.txt"), "w") as f:
        f.write("start\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "start", cwd=work)
    big = None
    if mb:
        big = os.path.join(tmp, "big-%s" % name)
        git("init", "-q", "-b", "big", big)
        with open(os.path.join(big, "data.bin"), "wb") as f:
            f.write(os.urandom(mb * 1024 * 1024))
        git("add", "-A", cwd=big)
        git("-c", "core.compression=0", "commit", "-q", "-m", "big", cwd=big)
    return work, big


def stats(times):
    s = sorted(times)
    return statistics.median(s), s[int(len(s) * 0.9) - 1] if len(s) >= 10 else s[-1]


# --- trace2 ---

def ts(s):
    return datetime.strptime(s.replace("Z", ""), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()


def receive_packs(trace_dir):
    """Every traced `git receive-pack`: {path, start, exit, hooks: [(name, arg, start, end)]}."""
    out = []
    for fn in glob.glob(os.path.join(trace_dir, "*")):
        rp, kids = None, {}
        with open(fn, errors="replace") as f:
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                ev = e.get("event")
                if ev == "start":
                    argv = e.get("argv", [])
                    if "receive-pack" not in argv:
                        break
                    rp = {"path": argv[-1], "start": ts(e["time"]), "exit": None, "hooks": []}
                elif rp is None:
                    continue
                elif ev == "child_start" and e.get("child_class") == "hook":
                    argv = e.get("argv", [])
                    kids[e["child_id"]] = [e.get("hook_name", ""), argv[1] if len(argv) > 1 else "",
                                           ts(e["time"]), None]
                elif ev == "child_exit" and e.get("child_id") in kids:
                    kids[e["child_id"]][3] = ts(e["time"])
                elif ev in ("exit", "atexit") and rp["exit"] is None:
                    rp["exit"] = ts(e["time"])
        if rp and rp["exit"]:
            rp["hooks"] = sorted((tuple(k) for k in kids.values() if k[3]), key=lambda k: k[2])
            out.append(rp)
    return out


def breakdown(spans, rps, primary_path):
    """Per push, the phases (ms) of PHASES; medians over the pushes."""
    cols = {p: [] for p in PHASES}
    nhooks = []
    for t0, t1 in spans:
        mine = [r for r in rps if t0 <= r["start"] <= t1 and r["exit"] <= t1 + 0.01]
        prim = [r for r in mine if r["path"].startswith(primary_path + "/")]
        if not prim:
            continue
        p = prim[0]
        ph = dict.fromkeys(PHASES, 0.0)
        ph["spawn"] = p["start"] - t0
        first = p["hooks"][0][2] if p["hooks"] else p["exit"]
        ph["recv"] = first - p["start"]
        inhooks = 0.0
        for name, arg, hs, he in p["hooks"]:
            col = HOOK_COL.get(name) or {"prepared": "prep", "committed": "comm"}.get(arg)
            if col:
                ph[col] += he - hs
            inhooks += he - hs
        ph["rest"] = (p["exit"] - p["start"]) - ph["recv"] - inhooks
        last = max(r["exit"] for r in mine)
        ph["lag"] = last - p["exit"]
        ph["tail"] = t1 - last
        for k in PHASES:
            cols[k].append(ph[k] * 1000)
        nhooks.append(len(p["hooks"]))
    return {k: statistics.median(v) if v else float("nan") for k, v in cols.items()}, \
        (statistics.median(nhooks) if nhooks else 0)


def hook_startup(tmp, n=20):
    """gitaly-hooks exec to exit without an RPC: a name it does not know fails before any work."""
    link = os.path.join(tmp, "no-such-hook")
    os.symlink(os.path.join(CUR["build"], "gitaly-hooks", "gitaly-hooks"), link)
    times = []
    for _ in range(n):
        t0 = time.time()
        subprocess.run([link], capture_output=True, env=client_env())
        times.append((time.time() - t0) * 1000)
    return statistics.median(times)


# --- one pass ---

def run_pass(n, mb, trace_dir=None):
    tmp = tempfile.mkdtemp(prefix="bench-push-")
    saved = os.environ.get("GIT_TRACE2_EVENT")
    if trace_dir:
        os.environ["GIT_TRACE2_EVENT"] = trace_dir
    try:
        single = GitalyNode(os.path.join(tmp, "single"), storages=("solo",), token="node-secret").start()
        cluster = Cluster(os.path.join(tmp, "cluster"))
    finally:
        if saved is None:
            os.environ.pop("GIT_TRACE2_EVENT", None)
        else:
            os.environ["GIT_TRACE2_EVENT"] = saved
    res = {}
    try:
        local = os.path.join(tmp, "local.git")
        git("init", "-q", "--bare", local)
        git("init", "-q", "--bare", single.repo_path("x.git", "solo"))
        create_repo(cluster, "x.git")
        d_env = ssh_env("unix:" + single.socket, "node-secret", "solo", "x.git")
        p_env = ssh_env("unix:" + cluster.praefect.socket, "praefect-secret", "default", "x.git")
        paths = {"local": (local, client_env()), "direct": ("ssh://gitaly/x.git", d_env),
                 "praefect": ("ssh://gitaly/x.git", p_env)}
        works = {k: setup_work(tmp, k, mb) for k in paths}
        for k, (url, env) in paths.items():
            timed_push(works[k][0], env, url)
        for k, (url, env) in paths.items():
            res[k] = {"small": small_pushes(works[k][0], env, url, n)}
        if mb:
            for k, (url, env) in paths.items():
                t0, t1 = timed_push(works[k][1], env, url, "big")
                res[k]["large"] = t1 - t0
        md = cluster.praefect.metadata("x.git")
        assert all(r.generation == md.generation for r in md.replicas), "replicas not in sync after pushes"
        res["direct"]["primary"] = single.dir
        res["praefect"]["primary"] = cluster.nodes[md.primary].dir
    finally:
        cluster.stop()
        single.stop()
    if not trace_dir:
        shutil.rmtree(tmp, ignore_errors=True)
    return res, tmp


def report(label, n, mb, res, tres, rps, startup):
    med = {k: stats([t1 - t0 for t0, t1 in res[k]["small"]]) for k in ("local", "direct", "praefect")}
    (lm, l90), (dm, d90), (pm, p90) = med["local"], med["direct"], med["praefect"]
    print("== %s" % label)
    print("small push (one commit), %d each:" % n)
    print("  local git push to a bare repo: median %6.1f ms  p90 %6.1f ms" % (lm * 1000, l90 * 1000))
    print("  direct to one gitaly:          median %6.1f ms  p90 %6.1f ms  -> %.2fx local" %
          (dm * 1000, d90 * 1000, dm / lm))
    print("  praefect, 3 voting replicas:   median %6.1f ms  p90 %6.1f ms  -> %.2fx direct" %
          (pm * 1000, p90 * 1000, pm / dm))
    if mb:
        print("large push (%d MB of random data):" % mb)
        print("  local:                         %6.2f s" % res["local"]["large"])
        print("  direct to one gitaly:          %6.2f s  -> %.2fx local" %
              (res["direct"]["large"], res["direct"]["large"] / res["local"]["large"]))
        print("  praefect, 3 voting replicas:   %6.2f s  -> %.2fx direct" %
              (res["praefect"]["large"], res["praefect"]["large"] / res["direct"]["large"]))
    print("traced pass (GIT_TRACE2_EVENT on the nodes), medians in ms over %d small pushes:" % n)
    print("  %-9s %6s " % ("path", "total") + " ".join("%5s" % p for p in PHASES) + " hooks start")
    for k in ("direct", "praefect"):
        spans = tres[k]["small"]
        total = statistics.median([(t1 - t0) * 1000 for t0, t1 in spans])
        cols, nh = breakdown(spans, rps, tres[k]["primary"])
        print("  %-9s %6.1f " % (k, total) + " ".join("%5.1f" % cols[p] for p in PHASES) +
              " %5d %5.1f" % (nh, startup))


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    mb = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    builds = [("build %s" % BUILD, BUILD)]
    if os.environ.get("COMPARE_BUILD"):
        builds.insert(0, ("before: build %s" % os.environ["COMPARE_BUILD"], os.environ["COMPARE_BUILD"]))
        builds[1] = ("after: build %s" % BUILD, BUILD)
    out = {}
    for label, b in builds:
        use_build(b)
        out[label] = {"res": run_pass(n, mb)[0]}
    for label, b in builds:
        use_build(b)
        trace = tempfile.mkdtemp(prefix="bench-trace2-")
        tres, ttmp = run_pass(n, 0, trace)
        out[label].update(tres=tres, rps=receive_packs(trace), startup=hook_startup(ttmp))
        shutil.rmtree(trace, ignore_errors=True)
        shutil.rmtree(ttmp, ignore_errors=True)
    for label, _ in builds:
        o = out[label]
        report(label, n, mb, o["res"], o["tres"], o["rps"], o["startup"])


if __name__ == "__main__":
    main()
