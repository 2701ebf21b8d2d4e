#!/usr/bin/env python3
"""Regenerate gitaly/repository/licenses.def from choosealicense.com's license texts.

usage: tools/gen_licenses.py <choosealicense.com git dir or checkout> > gitaly/repository/licenses.def

Reads every _licenses/*.txt at HEAD (YAML front matter: spdx-id, title,
nickname; then the text with [year]/[fullname] placeholders), normalises each
text to lines of words the way gitaly/repository/license_match.c does (the C
code normalises the table again at start-up, so its rules are the ones that
count; this pass only keeps the file small), and writes one row per text.
The answer for a text (id, name, URL, nickname) is what upstream Gitaly's
detector reports for it: FACTS below, taken from the table license.c held
before this generator existed, and for 17 more texts from an SPDX license
list of 2020. A text without an entry there (CERN-OHL-P/S/W-2.0,
MulanPSL-2.0: newer than that list; GFDL-1.3, whose SPDX id is deprecated in
favour of -only/-or-later, so which one upstream answers is not known) is
carried so that it can win against its neighbours, but is answered "other". docs/technical/gitaly-repository.md,
"Licenses".
"""
import re
import subprocess
import sys

# choosealicense spdx-id -> (answer id, SPDX name, SPDX's first reference URL) as upstream answers
FACTS = {
    "AGPL-3.0": ("agpl-3.0", "GNU Affero General Public License v3.0", "https://www.gnu.org/licenses/agpl.txt"),
    "LGPL-3.0": ("lgpl-3.0", "GNU Lesser General Public License v3.0 only",
                 "https://www.gnu.org/licenses/lgpl-3.0-standalone.html"),
    "LGPL-2.1": ("lgpl-2.1", "GNU Lesser General Public License v2.1 only",
                 "https://www.gnu.org/licenses/old-licenses/lgpl-2.1-standalone.html"),
    # the FSF's texts carry the "any later version" appendix: upstream names them "or later"
    "GPL-3.0": ("gpl-3.0+", "GNU General Public License v3.0 or later",
                "https://www.gnu.org/licenses/gpl-3.0-standalone.html"),
    "GPL-2.0": ("gpl-2.0+", "GNU General Public License v2.0 or later",
                "https://www.gnu.org/licenses/old-licenses/gpl-2.0-standalone.html"),
    "Apache-2.0": ("apache-2.0", "Apache License 2.0", "https://www.apache.org/licenses/LICENSE-2.0"),
    "MPL-2.0": ("mpl-2.0", "Mozilla Public License 2.0", "https://www.mozilla.org/MPL/2.0/"),
    "EPL-2.0": ("epl-2.0", "Eclipse Public License 2.0", "https://www.eclipse.org/legal/epl-2.0"),
    "EPL-1.0": ("epl-1.0", "Eclipse Public License 1.0", "http://www.eclipse.org/legal/epl-v10.html"),
    "ODbL-1.0": ("odbl-1.0", "Open Data Commons Open Database License v1.0",
                 "http://www.opendatacommons.org/licenses/odbl/1.0/"),
    "CC-BY-SA-4.0": ("cc-by-sa-4.0", "Creative Commons Attribution Share Alike 4.0 International",
                     "https://creativecommons.org/licenses/by-sa/4.0/legalcode"),
    "CC-BY-4.0": ("cc-by-4.0", "Creative Commons Attribution 4.0 International",
                  "https://creativecommons.org/licenses/by/4.0/legalcode"),
    "BSL-1.0": ("bsl-1.0", "Boost Software License 1.0", "http://www.boost.org/LICENSE_1_0.txt"),
    "WTFPL": ("wtfpl", "Do What The F*ck You Want To Public License", "http://www.wtfpl.net/about/"),
    "Zlib": ("zlib", "zlib License", "http://www.zlib.net/zlib_license.html"),
    "NCSA": ("ncsa", "University of Illinois/NCSA Open Source License", "http://otm.illinois.edu/uiuc_openSource"),
    "MIT": ("mit", "MIT License", "https://opensource.org/licenses/MIT"),
    "MIT-0": ("mit-0", "MIT No Attribution", "https://github.com/aws/mit-0"),
    "BSD-3-Clause-Clear": ("bsd-3-clause-clear", "BSD 3-Clause Clear License",
                           "http://labs.metacarta.com/license-explanation.html#license"),
    "BSD-3-Clause": ("bsd-3-clause", "BSD 3-Clause \"New\" or \"Revised\" License",
                     "https://opensource.org/licenses/BSD-3-Clause"),
    "BSD-2-Clause": ("bsd-2-clause", "BSD 2-Clause \"Simplified\" License", "https://opensource.org/licenses/BSD-2-Clause"),
    "ISC": ("isc", "ISC License", "https://www.isc.org/licenses/"),
    "0BSD": ("0bsd", "BSD Zero Clause License", "http://landley.net/toybox/license.html"),
    "Unlicense": ("unlicense", "The Unlicense", "https://unlicense.org/"),
    "CC0-1.0": ("cc0-1.0", "Creative Commons Zero v1.0 Universal",
                "https://creativecommons.org/publicdomain/zero/1.0/legalcode"),
    # The rest of the carried texts, with the SPDX name and first reference URL of an SPDX license
    # list from 2020 (the rows above are upstream's own answers): the ids and names are stable
    # across SPDX releases, a URL may have been updated since in the list upstream bundles.
    "AFL-3.0": ("afl-3.0", "Academic Free License v3.0", "http://www.rosenlaw.com/AFL3.0.htm"),
    "Artistic-2.0": ("artistic-2.0", "Artistic License 2.0", "http://www.perlfoundation.org/artistic_license_2_0"),
    "BlueOak-1.0.0": ("blueoak-1.0.0", "Blue Oak Model License 1.0.0", "https://blueoakcouncil.org/license/1.0.0"),
    "BSD-2-Clause-Patent": ("bsd-2-clause-patent", "BSD-2-Clause Plus Patent License",
                            "https://opensource.org/licenses/BSDplusPatent"),
    "BSD-4-Clause": ("bsd-4-clause", "BSD 4-Clause \"Original\" or \"Old\" License",
                     "http://directory.fsf.org/wiki/License:BSD_4Clause"),
    "CECILL-2.1": ("cecill-2.1", "CeCILL Free Software License Agreement v2.1",
                   "http://www.cecill.info/licences/Licence_CeCILL_V2.1-en.html"),
    "ECL-2.0": ("ecl-2.0", "Educational Community License v2.0", "https://opensource.org/licenses/ECL-2.0"),
    "EUPL-1.1": ("eupl-1.1", "European Union Public License 1.1",
                 "https://joinup.ec.europa.eu/software/page/eupl/licence-eupl"),
    "EUPL-1.2": ("eupl-1.2", "European Union Public License 1.2", "https://joinup.ec.europa.eu/page/eupl-text-11-12"),
    "LPPL-1.3c": ("lppl-1.3c", "LaTeX Project Public License v1.3c", "http://www.latex-project.org/lppl/lppl-1-3c.txt"),
    "MS-PL": ("ms-pl", "Microsoft Public License", "http://www.microsoft.com/opensource/licenses.mspx"),
    "MS-RL": ("ms-rl", "Microsoft Reciprocal License", "http://www.microsoft.com/opensource/licenses.mspx"),
    "OFL-1.1": ("ofl-1.1", "SIL Open Font License 1.1", "http://scripts.sil.org/cms/scripts/page.php?item_id=OFL_web"),
    "OSL-3.0": ("osl-3.0", "Open Software License 3.0",
                "https://web.archive.org/web/20120101081418/http://rosenlaw.com:80/OSL3.0.htm"),
    "PostgreSQL": ("postgresql", "PostgreSQL License", "http://www.postgresql.org/about/licence"),
    "UPL-1.0": ("upl-1.0", "Universal Permissive License v1.0", "https://opensource.org/licenses/UPL"),
    "Vim": ("vim", "Vim License", "http://vimdoc.sourceforge.net/htmldoc/uganda.html"),
}

# Upstream's nicknames exist only for these answers (its nicknameByLicenseIdentifier);
# the nickname itself is choosealicense's.
NICKNAMED = {"agpl-3.0", "lgpl-3.0", "bsd-3-clause-clear", "odbl-1.0", "ncsa", "lgpl-2.1", "gpl-3.0", "gpl-2.0"}

# SPDX carries GPL-2.0 twice; its "only" rendering repeats the verbatim-copies sentence
# after the copyright block, and upstream names a text with that repetition gpl-2.0
# (its testdata/gpl-2.0_license.txt). (text key, answer id, name, url, marker, times)
VARIANTS = [
    ("GPL-2.0", "gpl-2.0", "GNU General Public License v2.0 only",
     "https://www.gnu.org/licenses/old-licenses/gpl-2.0-standalone.html",
     "everyone is permitted to copy and distribute verbatim copies of this license document but changing it is not allowed", 2),
]

SPELLING = {
    b"acknowledgment": b"acknowledgement", b"analogue": b"analog", b"analyse": b"analyze",
    b"artefact": b"artifact", b"authorisation": b"authorization", b"authorised": b"authorized",
    b"calibre": b"caliber", b"cancelled": b"canceled", b"capitalisations": b"capitalizations",
    b"catalogue": b"catalog", b"categorise": b"categorize", b"centre": b"center",
    b"emphasised": b"emphasized", b"favour": b"favor", b"favourite": b"favorite", b"fulfil": b"fulfill",
    b"fulfilment": b"fulfillment", b"initialise": b"initialize", b"judgment": b"judgement",
    b"labelling": b"labeling", b"labour": b"labor", b"licence": b"license", b"licences": b"licenses",
    b"licenced": b"licensed", b"maximise": b"maximize", b"modelled": b"modeled", b"modelling": b"modeling",
    b"offence": b"offense", b"optimise": b"optimize", b"organisation": b"organization",
    b"organise": b"organize", b"practise": b"practice", b"programme": b"program", b"realise": b"realize",
    b"recognise": b"recognize", b"signalling": b"signaling", b"utilisation": b"utilization",
    b"whilst": b"while", b"wilful": b"wilfull",
}

BULLET = re.compile(rb"^[ \t]*([-*+\xe2\x80\xa2]|[(\[{]?([0-9]+|[a-z]|i+)[.)\]}])([ \t]|$)")
COPYRIGHT = re.compile(rb"^[ \t]*(copyright|\(c\)|\xc2\xa9|all rights reserved)")


def normalise(text):
    """Lines of words, as license_match.c's lic_words() makes them."""
    out = []
    for line in text.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        line = line.lower()
        if COPYRIGHT.match(line) or re.fullmatch(rb"[^a-z0-9]*licen[cs]e[^a-z0-9]*", line):
            continue
        line = BULLET.sub(b"", line, count=1)
        words = [SPELLING.get(w, w) for w in re.findall(rb"[a-z0-9]+", line)]
        if words:
            out.append(b" ".join(words).decode())
    return out


def git(repo, *args):
    return subprocess.run(["git", "-C", repo] + list(args), check=True, capture_output=True).stdout


def cstr(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main():
    repo = sys.argv[1]
    names = [n for n in git(repo, "ls-tree", "--name-only", "HEAD", "_licenses/").decode().split("\n")
             if n.endswith(".txt")]
    rows = []
    for path in sorted(names):
        raw = git(repo, "show", "HEAD:" + path)
        parts = raw.split(b"---\n", 2)
        front, body = parts[1].decode(), parts[2]
        meta = dict(re.findall(r"^([a-z-]+):[ \t]*(.*)$", front, re.M))
        spdx = meta["spdx-id"].strip()
        lines = normalise(body)
        aid, name, url = FACTS.get(spdx, ("", "", ""))
        nick = meta.get("nickname", "").strip() if aid in NICKNAMED else ""
        rows.append((spdx, aid, name, url, nick, len(lines[0].split()), " ".join(lines)))
    w = sys.stdout.write
    w("/* Generated by tools/gen_licenses.py from choosealicense.com's _licenses/ (%s): do not edit.\n"
      " * Regenerate: tools/gen_licenses.py <choosealicense.com repo> > gitaly/repository/licenses.def\n"
      " * LICENSE_TEXT(key, answer id or \"\" for other, SPDX name, URL, nickname, words in the first line, words)\n"
      " * LICENSE_VARIANT(text key, answer id, SPDX name, URL, nickname, marker phrase, times it must occur) */\n"
      % git(repo, "rev-parse", "HEAD").decode().strip())
    for spdx, aid, name, url, nick, first, words in rows:
        w("LICENSE_TEXT(%s, %s, %s, %s, %s, %d,\n" % (cstr(spdx), cstr(aid), cstr(name), cstr(url), cstr(nick), first))
        chunk = []
        for word in words.split(" "):
            chunk.append(word)
            if sum(len(c) + 1 for c in chunk) > 100:
                w("\t%s\n" % cstr(" ".join(chunk) + " "))
                chunk = []
        w("\t%s)\n" % cstr(" ".join(chunk)))
    for key, aid, name, url, marker, times in VARIANTS:
        nick = "GNU GPLv2" if aid in NICKNAMED else ""
        w("LICENSE_VARIANT(%s, %s, %s, %s, %s, %s, %d)\n" % (cstr(key), cstr(aid), cstr(name), cstr(url), cstr(nick),
                                                              cstr(marker), times))


if __name__ == "__main__":
    main()
