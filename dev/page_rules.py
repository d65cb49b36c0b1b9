"""Two rules of the course's pages that a formatter or a hurried edit breaks.

    python dev/page_rules.py   # every breach in nbs/, one line each; exit 1 if any

* A comment stays beside the code it explains: never after a lone closing bracket
  (`)  # pair 2: TH = 1.0`, `) as e:  # ...`), where `ruff format` leaves the comment
  of a line it splits. Put it on the line it explains, or above the statement. A
  docments comment after a signature's `):` or `]:` is nbdev's and stays.
* A lesson named in a markdown cell is a link to it (`[`03_hinge`](03_hinge.ipynb)`),
  which JupyterLab opens and the course site turns into a link to its page.

The first rule covers the lessons and the landing page; 10_lab is left out for now
(`EXEMPT`); the second covers every notebook.
"""

from __future__ import annotations

import io
import re
import sys
import tokenize
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
LONE = re.compile(r"^\s*[)\]}]+,?\s*(as \w+:)?\s*$")
MENTION = re.compile(r"(?<!\[)`(\d\d[a-z]?_\w+)(?:\.ipynb)?`(?!\]\()")
EXEMPT = {"10_lab"}  # comments after a lone `)`: its code is being reworked elsewhere


def stranded_comments(src: str) -> list[str]:
    "Lines of `src` whose comment follows a lone closing bracket."
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(src).readline))
    except (tokenize.TokenError, SyntaxError):
        return []
    lines = src.splitlines()
    out = []
    for t in toks:
        if t.type == tokenize.COMMENT and LONE.match(
            lines[t.start[0] - 1][: t.start[1]]
        ):
            out.append(lines[t.start[0] - 1].strip())
    return out


def unlinked_mentions(md: str, stems: set[str], me: str = "") -> list[str]:
    "Notebooks of `stems` (not `me`) named in code font outside a link and a fence."
    out, fence = [], False
    for line in md.splitlines():
        fence ^= line.lstrip().startswith("```")
        if not fence:
            out += [m for m in MENTION.findall(line) if m in stems and m != me]
    return out


def is_lesson(stem: str) -> bool:
    "A lesson of Part I or II, or the landing page (not the internals appendix)."
    return (
        stem == "index"
        or bool(re.match(r"^\d\d(_|[a-z]_)", stem))
        and (int(stem[:2]) <= 5 or stem[2] == "_")
    )


def breaches(nbs: Path = ROOT / "nbs") -> list[str]:
    "Every breach of the two rules in the notebooks of `nbs`, one line each."
    paths = sorted(nbs.glob("*.ipynb"))
    stems, out = {p.stem for p in paths}, []
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        for i, c in enumerate(nb.cells):
            where = f"{p.name} cell {i}"
            if c.cell_type == "code" and is_lesson(p.stem) and p.stem not in EXEMPT:
                out += [
                    f"{where}: comment after a lone bracket: {x}"
                    for x in stranded_comments(c.source)
                ]
            if c.cell_type == "markdown":
                out += [
                    f"{where}: `{m}` is not a link"
                    for m in unlinked_mentions(c.source, stems, p.stem)
                ]
    return out


if __name__ == "__main__":
    found = breaches()
    print(
        "\n".join(found)
        or "page_rules: no comment after a lone bracket, every "
        "mention of a notebook a link"
    )
    sys.exit(1 if found else 0)
