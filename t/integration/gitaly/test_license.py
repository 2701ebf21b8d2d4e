"""RepositoryService/FindLicense against a node: upstream's choice of license files (by name, in the
root tree, a short file naming another), the common licenses by their text, "Other", and no license."""
import os

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
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY.
"""

BSD3 = """Copyright (c) 2020, Example
All rights reserved.

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice.
2. Redistributions in binary form must reproduce the above copyright notice.
3. Neither the name of the copyright holder nor the names of its
   contributors may be used to endorse or promote products derived from
   this software without specific prior written permission.
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
    assert find(n, "bsd.git", {"LICENSE.md": BSD3}).license_short_name == "bsd-3-clause"
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


ISC_GRANT = ("Permission to use, copy, modify, and/or distribute this software for any\n"
             "purpose with or without fee is hereby granted")
NOTICES = {
    "isc": ISC_GRANT + ", provided that the above\ncopyright notice and this permission notice appear in all copies.\n",
    "0bsd": ISC_GRANT + ".\n\nTHE SOFTWARE IS PROVIDED \"AS IS\".\n",
    "bsd-3-clause-clear": BSD3 + "\nNO EXPRESS OR IMPLIED LICENSES TO ANY PARTY'S PATENT RIGHTS ARE GRANTED BY\n"
                                 "THIS LICENSE.\n",
    "ncsa": "University of Illinois/NCSA Open Source License\n\n" + MIT.split("\n\n")[2] +
            "\n\n* Neither the names of Example, nor the names of its contributors may be used to\n"
            "  endorse or promote products derived from this Software.\n",
    "odbl-1.0": "## ODC Open Database License (ODbL)\n\nThis is the Open Data Commons Open Database License\n"
                "(ODbL), version 1.0.\n",
    "bsl-1.0": "Boost Software License - Version 1.0 - August 17th, 2003\n",
    "zlib": "3. Altered source versions must be plainly marked as such, and must not be\n"
            "   misrepresented as being the original software.\n"
            "4. This notice may not be removed or altered from any source distribution.\n",
    "epl-2.0": "Eclipse Public License - v 2.0\n",
    "cc-by-4.0": "Creative Commons Attribution 4.0 International Public License\n",
    "cc-by-sa-4.0": "Creative Commons Attribution-ShareAlike 4.0 International Public License\n",
}


def test_more_licenses_with_upstream_names_urls_and_nicknames(gitaly_node):
    n = gitaly_node
    got = {want: fields(find(n, want + ".git", {"LICENSE": text})) for want, text in NOTICES.items()}
    assert {k: v[0] for k, v in got.items()} == {k: k for k in NOTICES}
    assert got["bsd-3-clause-clear"][1:] == ("BSD 3-Clause Clear License",
                                             "http://labs.metacarta.com/license-explanation.html#license",
                                             "LICENSE", "Clear BSD")
    assert got["ncsa"][1] == "University of Illinois/NCSA Open Source License" and got["ncsa"][4] == "UIUC/NCSA"
    assert got["odbl-1.0"][4] == "ODbL"
    assert got["isc"][1:3] == ("ISC License", "https://www.isc.org/licenses/")
    assert got["0bsd"][1] == "BSD Zero Clause License" and got["0bsd"][4] == ""
