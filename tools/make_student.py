"""Write the student edition: every notebook with its `solution` cells removed.

Usage: python tools/make_student.py [--src nbs] [--dest _student] [--check]

The `solution`-tagged cells are removed with their outputs, and each run of them is
replaced by one empty answer cell (tagged `answer`) that names what to write, e.g.
`# exercise 2: write answer_2 here`. Every other cell is kept as it is, outputs
included, except the check cells' outputs (they would show the instructor's passing
check). Run before answering, a check cell says what to write
(`hingeabl_nb.exercises.exercise`). The folder is copied whole (nbs/results/ and any
data the notebooks read), less checkpoints, caches and runs. `--check` then verifies
the edition: no solution cell is left, every other cell is kept in order, and each
exercise's check cell (the code cell after its solution cells) is still there.
"""

import argparse
import re
import shutil
import sys
from pathlib import Path

import nbformat

TAG = "solution"
ANSWER = "answer"
CHECK_RE = re.compile(r"^with exercise\(\s*(\d+)((?:\s*,\s*['\"]\w+['\"])*)", re.M)
SKIP = shutil.ignore_patterns(
    ".ipynb_checkpoints", "__pycache__", "runs", "cache", "_proc", "*.pt"
)


def is_solution(cell):
    return TAG in cell.get("metadata", {}).get("tags", [])


def is_answer(cell):
    return ANSWER in cell.get("metadata", {}).get("tags", [])


def answer_cell(check_source):
    "An empty code cell, tagged `answer`, naming what the check below it reads."
    m = CHECK_RE.search(check_source or "")
    names = ", ".join(re.findall(r"\w+", m[2])) if m else ""
    what = f"# exercise {m[1]}: write {names} here" if m else "# your answer here"
    cell = nbformat.v4.new_code_cell(what)
    cell.metadata["tags"] = [ANSWER]
    return cell


def strip_solutions(nb):
    """Return `nb` without cells tagged `solution`: one answer cell per run of them,
    check cells without outputs."""
    checks = set(check_cells(nb))
    cells, run = [], False
    for i, c in enumerate(nb.cells):
        if is_solution(c):
            if not run:
                after = next((d for d in nb.cells[i:] if not is_solution(d)), None)
                cells.append(answer_cell(after.source if after else ""))
            run = True
            continue
        run = False
        if c.cell_type == "code" and c.source in checks:
            c.outputs, c.execution_count = [], None
        cells.append(c)
    nb.cells = cells
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
    got = [(c.cell_type, c.source) for c in student.cells if not is_answer(c)]
    if got != kept:
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
            sum(map(is_solution, full.cells)),
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
