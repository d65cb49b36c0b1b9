"""Build the course site (Jupyter Book 1) from nbs/ into _site/, offline, no execution.

Usage: python book/build_book.py [--src nbs] [--dest _site] [--print-toc]

The notebooks are shown with the outputs they were committed with. The build works on
a temporary copy of nbs/, where it only adds presentation tags (the committed notebooks
are never touched):
  * cells tagged `solution` are folded: code cells get MyST-NB's `hide-cell` tag
    (collapsed until "Show solution" is clicked), markdown cells are wrapped in a
    collapsed `dropdown` admonition;
  * nbdev `#| hide` and `#| default_exp` cells are removed and `#|` directive lines are
    stripped.
The table of contents is generated from the file names (see `part_of`), so a new
notebook appears in the right part without editing anything. MathJax 3 is served from a
local copy (the files of the PyPI package sphinx-mathjax-offline), never from a CDN; the
build fails if any page still loads a script or stylesheet from http(s). Warnings
(broken cross-references included: nitpicky) are errors.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NB_NAME = re.compile(r"^(\d\d)([a-z]?)_[A-Za-z0-9_]+\.ipynb$")
PARTS = {
    "I": "Part I: The loss",
    "II": "Part II: The experiment",
    "internals": "Internals (appendix)",
}
# notebooks 00-05, with or without a letter (05a_threshold, 05b_toy), are Part I lessons
LAST_PART_I = 5


def part_of(name):
    """Which part a notebook file name belongs to: 'I', 'II' or 'internals'.

    None: not a course page. The rule: `NN[x]_*.ipynb` with NN <= 05 is a Part I lesson
    (the letter-suffixed 05a_threshold and 05b_toy included); NN >= 06 without a letter
    is a Part II lesson; NN >= 06 with a letter (08a_encoders, 09a_train_internals, ...)
    is plumbing, listed in the Internals appendix."""
    m = NB_NAME.match(name)
    if not m:
        return None
    if int(m.group(1)) <= LAST_PART_I:
        return "I"
    return "internals" if m.group(2) else "II"


def toc_parts(names):
    "Group notebook file names into {part: [stem, ...]} in reading order (by name)."
    parts = {k: [] for k in PARTS}
    for n in sorted(names):
        p = part_of(n)
        if p:
            parts[p].append(Path(n).stem)
    return parts


def toc_yaml(names, titles=None):
    """The `_toc.yml` of the book: index first, then the parts, captions and chapters.

    `titles` ({stem: the notebook's title}) names each page in the sidebar as
    `03_hinge · Adaptive Hinge Balance Loss`: the file name the prose uses, then the
    title."""
    parts = toc_parts(names)
    missing = [PARTS[k] for k in ("I", "II") if not parts[k]]
    if missing:
        raise SystemExit(f"build_book: no notebook found for {', '.join(missing)}")
    titles = titles or {}
    lines = ["format: jb-book", "root: index", "parts:"]
    for k, stems in parts.items():
        if not stems:
            continue
        lines += [f'  - caption: "{PARTS[k]}"', "    chapters:"]
        for s in stems:
            lines.append(f"      - file: {s}")
            if titles.get(s):
                title = json.dumps(f"{s} · {titles[s]}", ensure_ascii=False)
                lines.append(f"        title: {title}")
    return "\n".join(lines) + "\n"


def nb_title(nb):
    "The notebook's `# Title` (its first markdown heading), or None."
    for c in nb.cells:
        if c.cell_type == "markdown":
            m = re.match(r"#\s+(.+)", c.source.strip())
            return m.group(1).strip() if m else None
    return None


_directive = re.compile(r"^\s*#\|\s*(.*)$")


def _fence(src):
    "A backtick fence longer than any backtick run in `src`."
    return "`" * max(3, max((len(r) for r in re.findall(r"`+", src)), default=0) + 1)


def present(nb):
    "Add the book's presentation tags to a notebook in place; return solutions folded."
    keep, folded = [], 0
    # Pages are highlighted as Python; a notebook saved without kernelspec would warn
    # (no lexer).
    nb.metadata.setdefault(
        "kernelspec",
        {"display_name": "python3", "language": "python", "name": "python3"},
    )
    for c in nb.cells:
        tags = list(c.metadata.get("tags", []))
        if c.cell_type == "code":
            flags = [
                m.group(1).strip()
                for m in map(_directive.match, c.source.splitlines())
                if m
            ]
            if any(f.split()[0] in ("hide", "default_exp") for f in flags if f):
                continue
            c.source = "\n".join(
                l for l in c.source.splitlines() if not _directive.match(l)
            ).strip("\n")
            if not c.source.strip() and not c.get("outputs"):
                continue
            if "solution" in tags:
                tags.append("hide-cell")
                folded += 1
        elif "solution" in tags and c.cell_type == "markdown":
            f = _fence(c.source)
            c.source = (
                f"{f}{{admonition}} Solution\n:class: dropdown\n\n{c.source}\n{f}"
            )
            folded += 1
        if tags:
            c.metadata["tags"] = tags
        keep.append(c)
    nb.cells = keep
    return folded


def mathjax_dir():
    """The MathJax 3 files shipped by the PyPI package sphinx-mathjax-offline.

    They are installed with the `book` extra."""
    import importlib.util

    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "build_book: MathJax not found; install the book extra: "
            'pip install -e ".[book]"'
        )
    d = Path(list(spec.submodule_search_locations)[0]) / "static" / "mathjax"
    if not (d / "tex-chtml.js").is_file():
        raise SystemExit(f"build_book: {d}/tex-chtml.js is missing")
    return d


def copy_mathjax(dest):
    "Copy the MathJax parts pages use (TeX input, CHTML output+fonts, menu) to `dest`."
    src = mathjax_dir()
    dest.mkdir(parents=True)
    shutil.copy2(src / "tex-chtml.js", dest)
    for sub in ("input/tex", "output/chtml", "ui", "a11y", "adaptors"):
        if (src / sub).exists():
            shutil.copytree(src / sub, dest / sub)


REMOTE = re.compile(
    r'<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*["\'](?:https?:)?//[^"\']*["\']',
    re.I,
)


def remote_assets(site):
    "Built HTML tags loading a script, stylesheet, image or frame from another host."
    return [
        f"{p.relative_to(site)}: {m.group(0)[:120]}"
        for p in sorted(site.rglob("*.html"))
        for m in REMOTE.finditer(p.read_text(encoding="utf-8", errors="replace"))
    ]


def stage(src, work):
    """Copy the course into `work` with presentation tags, config and toc.

    Return {notebook: solutions folded}."""
    shutil.copytree(
        src,
        work,
        ignore=shutil.ignore_patterns(
            ".ipynb_checkpoints", "__pycache__", "runs", "cache", "_*"
        ),
    )
    folded, titles = {}, {}
    for p in sorted(work.glob("*.ipynb")):
        nb = nbformat.read(p, as_version=4)
        folded[p.stem], titles[p.stem] = present(nb), nb_title(nb)
        nbformat.write(nb, p)
    shutil.copy2(ROOT / "book" / "_config.yml", work / "_config.yml")
    shutil.copytree(ROOT / "book" / "_static", work / "_static")  # the course's CSS
    names = [p.name for p in work.glob("*.ipynb")]
    (work / "_toc.yml").write_text(toc_yaml(names, titles), encoding="utf-8")
    copy_mathjax(work / "_mathjax" / "mathjax")
    return folded


def dir_size(d):
    return sum(p.stat().st_size for p in Path(d).rglob("*") if p.is_file())


def build(src="nbs", dest="_site"):
    src, dest = Path(src).resolve(), Path(dest).resolve()
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="hingeabl-book-") as tmp:
        work, out = Path(tmp) / "book", Path(tmp) / "out"
        folded = stage(src, work)
        jb = Path(sys.executable).with_name("jupyter-book")
        jb = str(jb) if jb.exists() else shutil.which("jupyter-book")
        if not jb:
            sys.exit(
                "build_book: jupyter-book not found; install the book extra: "
                'pip install -e ".[book]"'
            )
        cmd = [
            jb,
            "build",
            str(work),
            "--path-output",
            str(out),
            "--builder",
            "html",
            "--warningiserror",
            "--nitpick",
            "--keep-going",
            "--all",
        ]
        # jupyter-book ends by pointing at the temporary build folder, deleted below:
        # its output is shown without that note; the real place is printed at the end
        r = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        print(r.stdout.split("Your book's HTML pages are here")[0].rstrip())
        if r.returncode:
            sys.exit(
                f"build_book: jupyter-book failed (exit {r.returncode}); "
                "warnings are errors, see above"
            )
        html = out / "_build" / "html"
        bad = remote_assets(html)
        if bad:
            sys.exit(
                "build_book: pages load assets from the internet:\n  "
                + "\n  ".join(bad[:20])
            )
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(html, dest)
    pages = sorted(
        p.stem for p in dest.glob("*.html") if p.stem not in ("genindex", "search")
    )
    shown = dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest
    mathjax_mib = dir_size(dest / "_static" / "mathjax") / 2**20
    print(
        f"book: {len(pages)} pages in {shown}/ "
        f"({dir_size(dest) / 2**20:.1f} MiB, MathJax {mathjax_mib:.1f} MiB), "
        f"{sum(folded.values())} solutions folded, built in {time.time() - t0:.0f} s; "
        f"open {(dest / 'index.html').resolve().as_uri()}"
    )
    return dest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(ROOT / "nbs"))
    ap.add_argument("--dest", default=str(ROOT / "_site"))
    ap.add_argument(
        "--print-toc", action="store_true", help="print the generated _toc.yml and stop"
    )
    a = ap.parse_args(argv)
    if a.print_toc:
        print(toc_yaml(p.name for p in Path(a.src).glob("*.ipynb")), end="")
        return 0
    build(a.src, a.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
