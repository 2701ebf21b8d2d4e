"""RepositoryService/FindLicense against a node: upstream's choice of license files (by name, in the
root tree, a short file naming another), upstream's own cases, every carried license text named as
itself, lightly edited texts still named, texts past the similarity threshold "Other", and no license."""
import os
import random
import re

import grpc

from gitaly_itest import git, make_bare_repo, pb
from helpers_reads import rpc_error

R = lambda: pb("repository")  # noqa: E731

MIT = """MIT License

Copyright (c) 2017 Example

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""



def common(name):
    with open(os.path.join("/usr/share/common-licenses", name)) as f:
        return f.read()


def find(node, name, files):
    make_bare_repo(node.repo_path(name), files=files)
    return node.stub("RepositoryService").FindLicense(R().FindLicenseRequest(repository=node.repo(name)))


def fields(resp):
    return (resp.license_short_name, resp.license_name, resp.license_url, resp.license_path, resp.license_nickname)


def test_common_licenses(gitaly_node):
    n = gitaly_node
    assert fields(find(n, "mit.git", {"LICENSE": MIT, "README.md": "readme"})) == (
        "mit", "MIT License", "https://opensource.org/licenses/MIT", "LICENSE", "")
    assert fields(find(n, "gpl3.git", {"COPYING": common("GPL-3")})) == (
        "gpl-3.0+", "GNU General Public License v3.0 or later",
        "https://www.gnu.org/licenses/gpl-3.0-standalone.html", "COPYING", "")
    assert find(n, "gpl2.git", {"LICENSE.txt": common("GPL-2")}).license_short_name == "gpl-2.0+"
    assert find(n, "apache.git", {"LICENSE": common("Apache-2.0")}).license_short_name == "apache-2.0"
    assert find(n, "mpl.git", {"LICENSE": common("MPL-2.0")}).license_short_name == "mpl-2.0"
    lgpl = find(n, "lgpl.git", {"COPYING.LESSER": common("LGPL-2.1")})
    assert (lgpl.license_short_name, lgpl.license_nickname) == ("lgpl-2.1", "GNU LGPLv2.1")
    assert find(n, "bsd.git", {"LICENSE.md": common("BSD")}).license_short_name == "bsd-3-clause"
    assert find(n, "cc0.git", {"LICENSE": common("CC0-1.0")}).license_short_name == "cc0-1.0"


def test_which_files_count(gitaly_node):
    n = gitaly_node
    # no license file, a license only in a subdirectory, a README that mentions one: nothing
    for name, files in (("none.git", {"README.md": "readme content"}),
                        ("sub.git", {"legal/LICENSE": MIT}),
                        ("readme.git", {"README": "This project is released under MIT license"})):
        assert fields(find(n, name, files)) == ("", "", "", "", "")
    # a license file nobody knows
    assert fields(find(n, "other.git", {"LICENSE.md": "this doesn't match any known license"})) == (
        "other", "Other", "", "LICENSE.md", "LICENSE")
    # a short LICENSE naming the real file
    resp = find(n, "pointer.git", {"mit.txt": MIT, "LICENSE": "mit.txt"})
    assert (resp.license_short_name, resp.license_path) == ("mit", "mit.txt")


def test_empty_and_missing_repositories(gitaly_node):
    n = gitaly_node
    git("init", "-q", "--bare", n.repo_path("empty.git"))
    resp = n.stub("RepositoryService").FindLicense(R().FindLicenseRequest(repository=n.repo("empty.git")))
    assert fields(resp) == ("", "", "", "", "")
    e = rpc_error(lambda: n.stub("RepositoryService").FindLicense(R().FindLicenseRequest(
        repository=n.repo("missing.git"))))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    # upstream's validation case: no repository at all
    e = rpc_error(lambda: n.stub("RepositoryService").FindLicense(R().FindLicenseRequest()))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


def carried_texts():
    """(choosealicense key, answer id, text) of every text licenses.def carries, its words re-joined."""
    src = os.path.join(os.path.dirname(__file__), "..", "..", "..", "gitaly", "repository", "licenses.def")
    with open(src) as f:
        body = f.read()
    rows = re.findall(r'^LICENSE_TEXT\("([^"]*)", "([^"]*)", .*?, \d+,\n((?:\t".*"[,)]?\n)+)', body, re.M)
    return [(k, i, "".join(re.findall(r'\t"(.*)"', w))) for k, i, w in rows]


def test_every_carried_text_is_itself(gitaly_node):
    n = gitaly_node
    rows = carried_texts()
    assert len(rows) == 47
    files = {"%s.txt" % k: w for k, _, w in rows}
    got = {}
    for k, want, words in rows:
        resp = find(n, "carried-%s.git" % k.lower(), {"LICENSE": words})
        got[k] = resp.license_short_name
    assert got == {k: (i or "other") for k, i, _ in rows}
    assert len(files) == 47


def test_upstream_cases(gitaly_node):
    n = gitaly_node
    gpl2 = common("GPL-2")
    # SPDX's GPL-2.0 rendering repeats the verbatim-copies sentence after the copyright block: "only"
    sentence = ("Everyone is permitted to copy and distribute verbatim copies\n"
                " of this license document, but changing it is not allowed.\n")
    head, tail = gpl2.split(sentence, 1)
    only = head + sentence + "\n" + sentence.replace("\n ", " ") + tail
    assert fields(find(n, "only.git", {"LICENSE": only})) == (
        "gpl-2.0", "GNU General Public License v2.0 only",
        "https://www.gnu.org/licenses/old-licenses/gpl-2.0-standalone.html", "LICENSE", "GNU GPLv2")
    # a kernel-style COPYING: a note of our own above the 1991 text (Library GPL, Franklin St)
    kernel = ("   NOTE: this copyright covers the kernel only, not the programs that\n"
              " merely use its services through system calls.\n\n"
              + gpl2.replace("Lesser General", "Library General").replace("Franklin Street", "Franklin St"))
    assert fields(find(n, "kernel.git", {"COPYING": kernel})) == (
        "gpl-2.0+", "GNU General Public License v2.0 or later",
        "https://www.gnu.org/licenses/old-licenses/gpl-2.0-standalone.html", "COPYING", "")
    assert fields(find(n, "fsf3.git", {"LICENSE": common("GPL-3")})) == (
        "gpl-3.0+", "GNU General Public License v3.0 or later",
        "https://www.gnu.org/licenses/gpl-3.0-standalone.html", "LICENSE", "")
    upstream_mit = MIT.replace("2017 Example", "[year] [fullname]")
    assert fields(find(n, "umit.git", {"LICENSE": upstream_mit})) == (
        "mit", "MIT License", "https://opensource.org/licenses/MIT", "LICENSE", "")


def test_lightly_edited_licenses_are_named(gitaly_node):
    n = gitaly_node
    edited = (MIT.replace("2017 Example", "1999-2024 Somebody Else <a@b.c>")
              .replace("free of charge", "without charge").replace("the following conditions", "these conditions"))
    rewrapped = edited.replace("\n", " ").replace(". ", ".\n\n", 3)
    assert find(n, "mit-edited.git", {"LICENSE": edited}).license_short_name == "mit"
    assert find(n, "mit-wrapped.git", {"LICENSE.txt": rewrapped}).license_short_name == "mit"
    apache = common("Apache-2.0").replace("Licensor", "Licenser", 3).replace("\n", " ", 40)
    assert find(n, "apache-edited.git", {"LICENSE": apache}).license_short_name == "apache-2.0"
    # a long preface made of license words: only the part from MIT's first line on is like a license
    rnd = random.Random(3)
    gpl_words = common("GPL-3").split()
    preface = "\n".join(" ".join(rnd.sample(gpl_words, 12)) for _ in range(200))
    titled = "MIT License\nCopyright (c) 2020 Somebody\n\n" + MIT.split("\n\n", 2)[2]
    assert find(n, "mit-preface.git", {"LICENSE": preface + "\n" + titled}).license_short_name == "mit"
    # a project's own header above the MIT text
    assert find(n, "mit-header.git", {"COPYING": "The foo project\n\n" + MIT}).license_short_name == "mit"


def test_most_confident_file_wins(gitaly_node):
    n = gitaly_node
    # both exact: the smaller id, as upstream sorts its ties
    resp = find(n, "two.git", {"LICENSE": MIT, "COPYING": common("GPL-3")})
    assert (resp.license_short_name, resp.license_path) == ("gpl-3.0+", "COPYING")
    # an edited MIT against an exact Apache: Apache
    edited = MIT.replace("free of charge", "without any charge at all")
    resp = find(n, "two-edited.git", {"LICENSE": edited, "LICENSE-APACHE": common("Apache-2.0")})
    assert (resp.license_short_name, resp.license_path) == ("apache-2.0", "LICENSE-APACHE")


def test_url_names_a_license(gitaly_node):
    n = gitaly_node
    # no text to score, but the license's own URL: upstream counts that as certain
    resp = find(n, "url.git", {"LICENSE": "This project is licensed under https://opensource.org/licenses/MIT\n"})
    assert fields(resp) == ("mit", "MIT License", "https://opensource.org/licenses/MIT", "LICENSE", "")
    resp = find(n, "url-apache.git", {"COPYING": "See <http://www.apache.org/licenses/LICENSE-2.0>.\n"})
    assert resp.license_short_name == "apache-2.0"


def test_threshold(gitaly_node):
    n = gitaly_node
    words = MIT.split()
    # a third of the MIT text's words replaced: under the threshold, "other"
    far = " ".join(w if i % 3 else "zzz%d" % i for i, w in enumerate(words))
    assert fields(find(n, "far.git", {"LICENSE": far})) == ("other", "Other", "", "LICENSE", "LICENSE")
    near = " ".join(w if i % 12 else "zzz%d" % i for i, w in enumerate(words))
    assert find(n, "near.git", {"LICENSE": near}).license_short_name == "mit"


def test_large_non_license_named_license(gitaly_node):
    n = gitaly_node
    rnd = random.Random(7)
    junk = "\n".join(" ".join("w%d" % rnd.randrange(100000) for _ in range(12)) for _ in range(60000))
    assert fields(find(n, "junk.git", {"LICENSE": junk[:1000000]})) == ("other", "Other", "", "LICENSE", "LICENSE")
    # larger than the 1 MiB we read: a license file all the same, like none
    assert fields(find(n, "huge.git", {"LICENSE": junk + "\n" + junk + "\n" + MIT})) == (
        "other", "Other", "", "LICENSE", "LICENSE")
    # the same license a thousand times over, each copy under its title
    many = ("MIT License\n\n" + MIT.split("\n", 2)[2]) * 900
    assert find(n, "many.git", {"LICENSE": many[:1000000]}).license_short_name == "mit"
    # prose made of license words, none of them in order
    words = sorted(set(common("GPL-3").split()))
    prose = "\n".join(" ".join(rnd.sample(words, 10)) for _ in range(5000))
    assert find(n, "prose.git", {"LICENSE": prose}).license_short_name == "other"
