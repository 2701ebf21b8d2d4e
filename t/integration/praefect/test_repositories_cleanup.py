"""The repositories cleaner ([repositories_cleanup], docs/technical/praefect-health.md): at start and
then every check_interval it walks the next storage and logs, with upstream's message and fields,
the repositories on it that nothing tracks, leaving out those modified in the last 24 hours."""
import json
import os
import time

from praefect_itest import Cluster, wait_for
from gitaly_itest import make_bare_repo
from test_praefect import create_repo


def untracked_log(cluster, since):
    with open(cluster.praefect.log_path, "rb") as f:
        f.seek(since)
        return f.read().decode(errors="replace")


def untracked_lines(cluster, since=0):
    """The cleaner's warnings, in the log from byte `since` on."""
    out = []
    text = untracked_log(cluster, since)
    for line in text.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("msg") == "repository is not managed by praefect":
            out.append(e)
    return out


def age(path, days):
    t = time.time() - days * 86400
    os.utime(path, (t, t))


def test_untracked_repositories_on_disk_are_logged(tmp_path):
    c = Cluster(tmp_path / "c")
    try:
        create_repo(c, "tracked.git")
        first = next(iter(c.nodes))          # the storage walked first, in configuration order
        storage = c.nodes[first].storages[first]
        old = os.path.join(storage, "@hashed", "aa", "bb", "old.git")
        fresh = os.path.join(storage, "@hashed", "cc", "dd", "fresh.git")
        make_bare_repo(old, branches=("main",))
        make_bare_repo(fresh, branches=("main",))
        age(old, 3)
        tracked = os.path.join(storage, c.praefect.metadata("tracked.git").replica_path)
        age(tracked, 3)
        # a praefect started now walks `first` at once; the log goes on from the first praefect's,
        # whose own walk may have come before the repositories above existed
        c.praefect.stop()
        since = os.path.getsize(c.praefect.log_path)
        c.praefect.start()
        wait_for(lambda: "repositories cleanup of default/%s" % first in untracked_log(c, since), timeout=30,
                 what="the first storage walked")
        lines = untracked_lines(c, since)
        assert [(e["virtual_storage"], e["storage"], e["relative_replica_path"]) for e in lines] == \
            [("default", first, "@hashed/aa/bb/old.git")]
        assert lines[0]["level"] in ("warning", "warn")
    finally:
        c.stop()


def test_run_interval_zero_turns_it_off(tmp_path):
    c = Cluster(tmp_path / "c", extra='\n[repositories_cleanup]\nrun_interval = "0"\n')
    try:
        msg = 'Repository cleanup background task disabled as "repositories_cleanup.run_interval" is not set or 0.'

        def said():
            return any(json.loads(line).get("msg") == msg for line in open(c.praefect.log_path) if line.startswith("{"))
        wait_for(said, timeout=10, what="the cleaner's warning")
        assert "repositories cleanup of" not in c.praefect.log()
    finally:
        c.stop()
