"""How dense the code on the page is: characters per line, long lines, `;` joins.

Usage: python dev/code_density.py [--rev REV] [NB ...]   (default: every notebook)

For each notebook, over the non-blank lines of its code cells (`#|` directives,
magics left out): the mean characters per line, the share of lines over 88 and over
100 characters, and the statements joined with `;`. Then the same over the library
(hingeabl_nb/*.py as nbdev_export writes it). `--rev` reads the files at a git
revision instead of the working tree (e.g. to compare with before a change).
"""

import argparse
import io
import json
import subprocess
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def read(path, rev=None):
    "A file's text in the working tree, or at git revision `rev`."
    if rev is None:
        return (ROOT / path).read_text()
    cmd = ["git", "-C", str(ROOT), "show", f"{rev}:{path}"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def semicolons(code):
    "How many `;` separate statements in `code` (strings and comments ignored)."
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):
        return sum(line.rstrip().endswith(";") for line in code.splitlines())
    return sum(t.type == tokenize.OP and t.string == ";" for t in toks)


def code_cells(nb_text):
    "The sources of a notebook's code cells, without directives and magics."
    out = []
    for c in json.loads(nb_text)["cells"]:
        if c["cell_type"] == "code":
            lines = "".join(c["source"]).splitlines()
            skip = ("#|", "%", "!")
            out.append("\n".join(s for s in lines if not s.lstrip().startswith(skip)))
    return out


def density(sources):
    "dict(lines, chars_per_line, over_88, over_100, semicolons) over code sources."
    lines = [s for src in sources for s in src.splitlines() if s.strip()]
    n = max(len(lines), 1)
    return {
        "lines": len(lines),
        "chars_per_line": sum(len(s) for s in lines) / n,
        "over_88": sum(len(s) > 88 for s in lines) / n,
        "over_100": sum(len(s) > 100 for s in lines) / n,
        "semicolons": sum(semicolons(src) for src in sources),
    }


def row(name, d):
    return (
        f"{name:<24}{d['lines']:>7}{d['chars_per_line']:>12.1f}"
        f"{d['over_88']:>8.1%}{d['over_100']:>8.1%}{d['semicolons']:>5}"
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("nbs", nargs="*", help="notebooks, e.g. nbs/03_hinge.ipynb")
    ap.add_argument("--rev", help="git revision to read instead of the working tree")
    a = ap.parse_args(argv)
    names = [str(Path(p).resolve().relative_to(ROOT)) for p in a.nbs] or sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "nbs").glob("*.ipynb")
    )
    print(f"{'':<24}{'lines':>7}{'chars/line':>12}{'>88':>8}{'>100':>8}{'`;`':>5}")
    for name in names:
        print(row(Path(name).stem, density(code_cells(read(name, a.rev)))))
    lib = sorted(p.name for p in (ROOT / "hingeabl_nb").glob("*.py"))
    lib = [p for p in lib if p != "_modidx.py"]
    srcs = []
    for p in lib:
        try:
            srcs.append(read(f"hingeabl_nb/{p}", a.rev))
        except subprocess.CalledProcessError:
            pass  # a module that did not exist at `rev`
    print(row("library hingeabl_nb/", density(srcs)))


if __name__ == "__main__":
    main()
