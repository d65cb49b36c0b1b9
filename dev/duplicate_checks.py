"""Find checks made both in a notebook and in tests/ (candidates to keep in one place).

Usage: python dev/duplicate_checks.py [--min 0.85] [NB ...]   (default: all of nbs/)

Collects every check statement (`assert`, and calls of `test_*`, `compare`,
`assert_close`) from the notebooks' code cells and from the test functions in
tests/*.py, normalises each with `ast.unparse`, and prints the notebook checks whose
closest test check is at least `--min` similar (difflib ratio). A hint, not a verdict:
two checks with the same text on different inputs can check different facts.
"""

import argparse
import ast
import difflib
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CALLS = {"test_eq", "test_close", "test_fail", "test_ne", "compare", "assert_close"}


def checks(code):
    "The check statements in `code`, each as normalised source."
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    out = []
    for n in ast.walk(tree):
        f = getattr(n, "func", None)
        name = getattr(f, "id", None) or getattr(f, "attr", "")
        if isinstance(n, ast.Assert) or (isinstance(n, ast.Call) and name in CALLS):
            out.append(ast.unparse(n))
    return out


def notebook_checks(path):
    "[(cell index, check)] of one notebook."
    cells = json.loads(Path(path).read_text())["cells"]
    out = []
    for i, c in enumerate(cells):
        if c["cell_type"] == "code":
            lines = "".join(c["source"]).splitlines()
            skip = ("#|", "%", "!")
            code = "\n".join(s for s in lines if not s.lstrip().startswith(skip))
            out += [(i, ch) for ch in checks(code)]
    return out


def test_checks(tests_dir):
    "[(file::test, check)] of the test functions in `tests_dir`."
    out = []
    for p in sorted(Path(tests_dir).glob("test_*.py")):
        for fn in ast.parse(p.read_text()).body:
            if isinstance(fn, ast.FunctionDef) and fn.name.startswith("test"):
                out += [(f"{p.name}::{fn.name}", ch) for ch in checks(ast.unparse(fn))]
    return out


def similarity(a, b, at_least):
    "difflib's ratio of two strings; 0 when the quick upper bounds rule it out."
    m = difflib.SequenceMatcher(None, a, b)
    if m.real_quick_ratio() < at_least or m.quick_ratio() < at_least:
        return 0.0
    return m.ratio()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("nbs", nargs="*")
    ap.add_argument("--min", type=float, default=0.85, help="similarity, 0-1")
    a = ap.parse_args(argv)
    nbs = [Path(p) for p in a.nbs] or sorted((ROOT / "nbs").glob("*.ipynb"))
    tests = test_checks(ROOT / "tests")
    found = 0
    for nb in nbs:
        for i, ch in notebook_checks(nb):
            best = max(((similarity(ch, t, a.min), where, t) for where, t in tests))
            if best[0] >= a.min:
                found += 1
                print(f"{nb.stem} cell {i}: {ch[:90]}")
                print(f"    {best[0]:.2f} {best[1]}: {best[2][:90]}")
    print(f"duplicate_checks: {found} notebook checks with a similar check in tests/")


if __name__ == "__main__":
    main()
