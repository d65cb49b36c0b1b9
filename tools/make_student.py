"""Write the student edition: every notebook with its `solution` cells removed.

Usage: python tools/make_student.py [--src nbs] [--dest _student] [--check]

The `solution`-tagged cells are removed with their outputs. Uses nbconvert's
TagRemovePreprocessor; every other cell is kept as it is, outputs included, so the check
cell under each exercise still tells a student whether their own answer is right. The
folder is copied whole (nbs/results/ and any data the notebooks read), less checkpoints,
caches and runs. `--check` then verifies the edition: no solution cell is left, every
other cell is kept in order, and each exercise's check cell (the code cell after its
solution cells) is still there.
"""

import argparse
import shutil
import sys
from pathlib import Path

import nbformat
from nbconvert.preprocessors import TagRemovePreprocessor

TAG = "solution"
SKIP = shutil.ignore_patterns(
    ".ipynb_checkpoints", "__pycache__", "runs", "cache", "_proc", "*.pt"
)


def is_solution(cell):
    return TAG in cell.get("metadata", {}).get("tags", [])


def strip_solutions(nb):
    "Return `nb` without cells tagged `solution`."
    pp = TagRemovePreprocessor(remove_cell_tags={TAG}, enabled=True)
    nb, _ = pp.preprocess(nb, {})
    return nb


def check_cells(nb):
    "Sources of the exercises' check cells: the code cell after each run of solutions."
    out, after_solution = [], False
    for c in nb.cells:
        if is_solution(c):
            after_solution = True
        elif after_solution and c.cell_type == "code":
            out.append(c.source)
            after_solution = False
    return out


def verify(full, student, name="notebook"):
    "Problems with a student notebook made from `full` (empty list: it is right)."
    errs = []
    if any(is_solution(c) for c in student.cells):
        errs.append(f"{name}: a solution cell is still there")
    kept = [(c.cell_type, c.source) for c in full.cells if not is_solution(c)]
    if [(c.cell_type, c.source) for c in student.cells] != kept:
        errs.append(
            f"{name}: the cells other than solutions are not all kept, in order"
        )
    have = {c.source for c in student.cells}
    errs += [
        f"{name}: check cell {s.splitlines()[0][:50]!r} is missing"
        for s in check_cells(full)
        if s not in have
    ]
    return errs


def build(src="nbs", dest="_student", check=False):
    """Write the student edition of `src` into `dest`; return `dest`.

    Prints the solutions removed per notebook."""
    src, dest = Path(src), Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=SKIP)
    counts, errs = {}, []
    for p in sorted(dest.rglob("*.ipynb")):
        full = nbformat.read(p, as_version=4)
        nb = strip_solutions(nbformat.from_dict(full))
        counts[p.relative_to(dest).as_posix()] = (
            len(full.cells) - len(nb.cells),
            len(check_cells(full)),
        )
        nbformat.write(nb, p)
        if check:
            errs += verify(full, nbformat.read(p, as_version=4), p.name)
    for name, (n, k) in counts.items():
        if n:
            print(f"  {name}: removed {n} solution cells, kept {k} check cells")
    n_removed = sum(n for n, _ in counts.values())
    print(
        f"student edition in {dest}/: {len(counts)} notebooks, "
        f"removed {n_removed} solution cells"
        + (f", checked: {len(errs)} problems" if check else "")
    )
    for e in errs:
        print(f"  ERROR {e}", file=sys.stderr)
    if errs:
        raise SystemExit(1)
    return dest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default="nbs")
    ap.add_argument("--dest", default="_student")
    ap.add_argument(
        "--check",
        action="store_true",
        help="verify the edition (no solution left, checks kept)",
    )
    a = ap.parse_args(argv)
    build(a.src, a.dest, a.check)
    return 0


if __name__ == "__main__":
    sys.exit(main())
