"""A repository in several languages for CommitLanguages, and the answer linguist's rules give for it,
computed from the sizes of the files written (docs/technical/languages.md)."""
import os
import struct

from gitaly_itest import git

# path -> (content, language counted or None)
FILES = {
    "app.rb": (b"class App\n  def run\n    puts 'hi'\n  end\nend\n" * 7, "Ruby"),
    "lib/util.rb": (b"module Util; end\n" * 3, "Ruby"),
    "src/main.c": (b"int main(void) { return 0; }\n" * 11, "C"),
    "src/main.h": (b"int main(void);\n" * 2, "C"),
    "web/app.js": (b"console.log('x');\n" * 5, "JavaScript"),
    "web/style.css": (b"body { color: red; }\n" * 4, "CSS"),
    "web/index.html": (b"<html><body></body></html>\n" * 3, "HTML"),
    "Makefile": (b"all:\n\tcc -o main src/main.c\n", "Makefile"),
    # linguist-language: counted as Ruby whatever the extension says
    "templates/page.tpl": (b"<%= title %>\n" * 9, "Ruby"),
    # linguist-detectable makes a data language count
    "config.json": (b'{"a": 1}\n' * 6, "JSON"),
    # excluded: data/prose languages, vendored and documentation paths, generated, binary, unknown
    "other.json": (b'{"b": 2}\n' * 50, None),
    "notes.md": (b"# notes\n" * 40, None),
    "README": (b"read me\n" * 30, None),
    "vendor/jquery.js": (b"var jq = 1;\n" * 100, None),
    "node_modules/x/index.js": (b"module.exports = 1;\n" * 20, None),
    "docs/tool.py": (b"print('doc')\n" * 20, None),
    "web/app.min.js": (b"var a=1;" * 60, None),
    "package-lock.json": (b"{}\n" * 10, None),
    "gen/parser.c": (b"/* generated */\n" * 30, None),
    "logo.png": (bytes(range(256)) * 3, None),
    # vendored by path, but the attribute says otherwise
    "third_party/kept.py": (b"x = 1\n" * 8, "Python"),
}
GITATTRIBUTES = (b"*.tpl linguist-language=Ruby\n"
                 b"config.json linguist-detectable\n"
                 b"gen/** linguist-generated\n"
                 b"third_party/kept.py -linguist-vendored\n")
COLORS = {"Ruby": "#701516", "C": "#555555", "JavaScript": "#f1e05a", "CSS": "#663399", "HTML": "#e34c26",
          "Makefile": "#427819", "JSON": "#292929", "Python": "#3572A5"}


def f32(v):
    return struct.unpack("f", struct.pack("f", v))[0]


def expected(files=FILES):
    """(name, bytes, share, color) rows, sorted by share, as the RPC must answer."""
    by = {}
    for content, lang in files.values():
        if lang:
            by[lang] = by.get(lang, 0) + len(content)
    total = sum(by.values())
    rows = [(name, n, f32(f32(100 * n) / f32(total)), COLORS[name]) for name, n in by.items()]
    return sorted(rows, key=lambda r: (-r[1], r[0]))


def make_languages_repo(base):
    work, bare = os.path.join(base, "work"), os.path.join(base, "langs.git")
    git("init", "-q", "-b", "main", work)
    for path, (content, _) in FILES.items():
        os.makedirs(os.path.dirname(os.path.join(work, path)), exist_ok=True)
        with open(os.path.join(work, path), "wb") as f:
            f.write(content)
    with open(os.path.join(work, ".gitattributes"), "wb") as f:
        f.write(GITATTRIBUTES)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "languages", cwd=work)
    # a second commit on another branch: only C
    git("checkout", "-q", "--orphan", "only-c", cwd=work)
    git("rm", "-q", "-rf", ".", cwd=work)
    with open(os.path.join(work, "x.c"), "wb") as f:
        f.write(b"int x;\n" * 4)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "c", cwd=work)
    # a tag named like a branch, pointing elsewhere: the branch wins
    git("tag", "main", "only-c", cwd=work)
    git("checkout", "-q", "main", cwd=work)
    git("clone", "-q", "--bare", work, bare)
    git("fetch", "-q", work, "refs/tags/*:refs/tags/*", cwd=bare)
    return {"path": bare, "work": work}


def rows(resp):
    return [(l.name, l.bytes, l.share, l.color) for l in resp.languages]
