#!/usr/bin/env python3
"""Push latency: through praefect with three voting replicas vs straight to one gitaly.

Small pushes (one commit each, N of them) and one large push (random data),
both through gitaly-ssh. Prints median / p90 and the praefect/direct ratio.

usage: /usr/bin/python3 bench/push-latency.py [N] [LARGE_MB]   env: BUILD_DIR (default build)
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "t/integration/gitaly"))
sys.path.insert(0, os.path.join(ROOT, "t/integration/praefect"))

from gitaly_itest import BUILD, GitalyNode, git  # noqa: E402
from praefect_itest import Cluster  # noqa: E402
from test_praefect import create_repo  # noqa: E402


def ssh_env(address, token, storage, path):
    import json
    payload = {"repository": {"storageName": storage, "relativePath": path, "glRepository": "project-1"},
               "glId": "user-1", "glRepository": "project-1"}
    return dict(os.environ, GIT_SSH_COMMAND=os.path.join(BUILD, "gitaly-ssh", "gitaly-ssh") + " receive-pack",
                GIT_SSH_VARIANT="simple", GITALY_PAYLOAD=json.dumps(payload), GITALY_ADDRESS=address,
                GITALY_TOKEN=token)


def timed_push(work, env, ref="main"):
    t0 = time.time()
    subprocess.run(["git", "push", "-q", "ssh://gitaly/x.git", ref], cwd=work, env=env, check=True,
                   capture_output=True)
    return time.time() - t0


def small_pushes(work, env, n):
    times = []
    for i in range(n):
        with open(os.path.join(work, "f.txt"), "w") as f:
            f.write("%d\n" % i)
        git("commit", "-q", "-am", "change %d" % i, cwd=work)
        times.append(timed_push(work, env))
    return times


def setup_work(tmp, name, mb):
    work = os.path.join(tmp, name)
    git("init", "-q", "-b", "main", work)
    with open(os.path.join(work, "f.txt"), "w") as f:
        f.write("start\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "start", cwd=work)
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


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    mb = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    tmp = tempfile.mkdtemp(prefix="bench-push-")
    single = GitalyNode(os.path.join(tmp, "single"), storages=("solo",), token="node-secret").start()
    cluster = Cluster(os.path.join(tmp, "cluster"))
    try:
        git("init", "-q", "--bare", single.repo_path("x.git", "solo"))
        create_repo(cluster, "x.git")
        d_env = ssh_env("unix:" + single.socket, "node-secret", "solo", "x.git")
        p_env = ssh_env("unix:" + cluster.praefect.socket, "praefect-secret", "default", "x.git")
        d_work, d_big = setup_work(tmp, "d", mb)
        p_work, p_big = setup_work(tmp, "p", mb)
        timed_push(d_work, d_env)
        timed_push(p_work, p_env)
        d_small = small_pushes(d_work, d_env, n)
        p_small = small_pushes(p_work, p_env, n)
        d_large = timed_push(d_big, d_env, "big")
        p_large = timed_push(p_big, p_env, "big")
        md = cluster.praefect.metadata("x.git")
        assert all(r.generation == md.generation for r in md.replicas), "replicas not in sync after pushes"
    finally:
        cluster.stop()
        single.stop()
    dm, d90 = stats(d_small)
    pm, p90 = stats(p_small)
    print("small push (one commit), %d each:" % n)
    print("  direct to one gitaly:          median %6.1f ms  p90 %6.1f ms" % (dm * 1000, d90 * 1000))
    print("  praefect, 3 voting replicas:   median %6.1f ms  p90 %6.1f ms  -> %.2fx" % (pm * 1000, p90 * 1000, pm / dm))
    print("large push (%d MB of random data):" % mb)
    print("  direct to one gitaly:          %6.2f s" % d_large)
    print("  praefect, 3 voting replicas:   %6.2f s  -> %.2fx" % (p_large, p_large / d_large))


if __name__ == "__main__":
    main()
