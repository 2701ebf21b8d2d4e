"""FindLicense through praefect: upstream's cases answered as a node answers them (an accessor routed to
any up-to-date replica), with t/integration/gitaly/test_license.py's texts."""
import os

from praefect_itest import wait_for
from gitaly_itest import make_bare_repo, pb
from test_license import MIT, common, fields
from test_praefect import create_repo, push, replicas_in_sync

R = lambda: pb("repository")  # noqa: E731


def through_praefect(cluster, tmp_path, name, files):
    src = make_bare_repo(os.path.join(str(tmp_path), name), files=files)
    create_repo(cluster, name)
    push(cluster, src, name, "--all")
    wait_for(lambda: replicas_in_sync(cluster, name), what="replication")
    return cluster.praefect.stub("RepositoryService").FindLicense(
        R().FindLicenseRequest(repository=cluster.praefect.repo(name)))


def test_find_license_through_praefect(cluster, tmp_path):
    assert fields(through_praefect(cluster, tmp_path, "gpl3.git", {"LICENSE": common("GPL-3")})) == (
        "gpl-3.0+", "GNU General Public License v3.0 or later",
        "https://www.gnu.org/licenses/gpl-3.0-standalone.html", "LICENSE", "")
    resp = through_praefect(cluster, tmp_path, "pointer.git", {"mit.txt": MIT, "LICENSE": "mit.txt"})
    assert (resp.license_short_name, resp.license_path) == ("mit", "mit.txt")
    edited = MIT.replace("free of charge", "without charge").replace("2017 Example", "2024 Other People")
    assert through_praefect(cluster, tmp_path, "edited.git", {"LICENSE.md": edited}).license_short_name == "mit"
    assert fields(through_praefect(cluster, tmp_path, "other.git", {"LICENSE": "no license anybody knows"})) == (
        "other", "Other", "", "LICENSE", "LICENSE")
    assert fields(through_praefect(cluster, tmp_path, "readme.git", {"README": "released under MIT"})) == (
        "", "", "", "", "")
