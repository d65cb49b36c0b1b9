#!/usr/bin/env python
"""Generate README.md from nbs/index.ipynb (stands in for `nbdev_readme`).

`nbdev_readme` needs Quarto. Uses nbconvert's Markdown exporter. Cells marked `#| hide`
are dropped and `#|` directive lines are stripped, as nbdev does. `--check` exits 1 when
README.md is out of step with the notebook.
"""

import argparse
import re
import sys
from pathlib import Path

import nbformat
from nbconvert import MarkdownExporter
from nbconvert.preprocessors import Preprocessor

ROOT = Path(__file__).resolve().parents[1]
NB, README = ROOT / "nbs" / "index.ipynb", ROOT / "README.md"
HEADER = (
    "<!-- Generated from nbs/index.ipynb by tools/make_readme.py: "
    "edit the notebook, not this file. -->\n\n"
)
# README only (the offline course site loads nothing remote): the test badge.
BADGE_REPO = "hingeabl-nb/hingeabl-nb"
BADGE = (
    f"[![test](https://github.com/{BADGE_REPO}/actions/workflows/test.yml/badge.svg)]"
    f"(https://github.com/{BADGE_REPO}/actions/workflows/test.yml)"
)
_directive = re.compile(r"^\s*#\|\s*(.*)$")
NB_LINK = re.compile(r"\]\((\w+\.ipynb)\)")


class NbdevDirectives(Preprocessor):
    """Drop `#| hide` cells and strip `#|` directive lines from the rest."""

    def preprocess(self, nb, resources):
        keep = []
        for cell in nb.cells:
            lines = cell.source.splitlines()
            flags = [m.group(1).strip() for m in map(_directive.match, lines) if m]
            if cell.cell_type == "code" and any(
                f.startswith(("hide", "default_exp", "export")) for f in flags
            ):
                continue
            cell.source = "\n".join(l for l in lines if not _directive.match(l)).strip()
            if cell.source or cell.get("outputs"):
                keep.append(cell)
        nb.cells = keep
        return nb, resources


def render() -> str:
    nb = nbformat.read(NB, as_version=4)
    exporter = MarkdownExporter(exclude_output=True)
    exporter.register_preprocessor(NbdevDirectives, enabled=True)
    body, _ = exporter.from_notebook_node(nb)
    body = NB_LINK.sub(
        r"](nbs/\1)", body
    )  # links between notebooks, seen from the repository root
    body = re.sub(r"\n{3,}", "\n\n", body).strip()
    title, rest = body.split("\n", 1)  # the badge goes under the title
    return HEADER + title + "\n\n" + BADGE + "\n" + rest + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--check",
        action="store_true",
        help="fail if README.md differs from what the notebook gives",
    )
    args = ap.parse_args()
    text = render()
    if args.check:
        if not README.exists() or README.read_text(encoding="utf-8") != text:
            sys.exit(
                "README.md is out of step with nbs/index.ipynb: "
                "run `python tools/make_readme.py`"
            )
        print("README.md is in step with nbs/index.ipynb")
    else:
        README.write_text(text, encoding="utf-8")
        print(f"wrote {README.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
