"""The course's exercises: every one has a tagged solution and a check that speaks to
students, and grading catches what it should.

Static tests read every notebook: a tagged solution then a check per exercise, and in
the student edition every check, run before answering, raises `NotAnswered` (the check's
`with` block is run without the answer). The grading test builds the student edition
(tools/make_student.py) and grades with `hingeabl-grade`'s code, two kernels at a time:
- Part I notebooks answered with the instructor's solutions except one deliberately
  wrong answer: "failed" for exactly that exercise, "passed" for all the others;
- notebooks of the edition as handed out: every exercise "not answered", no traceback.
By default it grades a representative subset (GRADE_WRONG, GRADE_BLANK: 11 of Part I's
30 graded exercises, answers that are floats, tensors, a tuple, a dict and functions,
notebooks with 1 to 3 exercises); HINGEABL_FULL_GRADE=1 grades all of Part I (14
notebooks, minutes). What the subset leaves out is still run: `nbdev_test` in CI runs
every notebook with HINGEABL_PROBE=1, so every passing check is re-run against a wrong
value in each place of its answer (`hingeabl_nb.exercises.probe_check`) and must reject
each one.
"""

import os
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest

from hingeabl_nb.exercises import NotAnswered, exercise
from hingeabl_nb.grade import CHECK_RE, check_cells, grade_folder, grade_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import make_student

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(
    p
    for p in (ROOT / "nbs").glob("*.ipynb")
    if any(
        c.cell_type == "markdown" and "## Exercises" in c.source
        for c in nbformat.read(p, as_version=4).cells
    )
)
PART_ONE = ["00_core", "01_atl", "02_sat", "03_hinge", "04_convexity", "05_losses"]
PART_ONE += ["05a_threshold", "05b_toy"]
# one deliberately wrong answer per Part I notebook: (exercise, source of the answer)
WRONG = {
    "00_core": (1, "answer_1 = torch.zeros(101, dtype=torch.float64)"),
    "01_atl": (2, "answer_2 = 1.0"),
    "02_sat": (2, "answer_2 = (-1.0, 0.0)"),
    "03_hinge": (2, "answer_2 = (1.0, 1.0)"),
    "04_convexity": (1, "answer_1 = 0.0"),
    "05_losses": (2, 'answer_2 = {"BalancedSoftmax": 1.0, "ATL": 0.0}'),
    "05a_threshold": (1, "answer_1 = -0.4"),
    "05b_toy": (2, "answer_2 = [0.1, 0.2, 0.3]"),
}


def _read(p):
    return nbformat.read(p, as_version=4)


def _is_solution(c):
    return "solution" in c.metadata.get("tags", [])


@pytest.mark.parametrize("path", NBS, ids=lambda p: p.stem)
def test_every_exercise_has_a_tagged_solution_then_a_check(path):
    nb = _read(path)
    checks = check_cells(nb)
    assert checks, f"{path.name}: no check cell (`with exercise(n, ...)`)"
    assert [n for _, n, _ in checks] == list(range(1, len(checks) + 1)), path.name
    for i, n, names in checks:
        before = [c for c in nb.cells[:i] if c.cell_type == "code"]
        assert before and _is_solution(before[-1]), (
            f"{path.name}: exercise {n}'s check does not follow a solution cell"
        )
        assert names, f"{path.name}: exercise {n}'s check names no answer"
    sol = [i for i, c in enumerate(nb.cells) if _is_solution(c)]
    first = checks[0][0]
    assert all(i < checks[-1][0] for i in sol) and sol and sol[0] < first


@pytest.mark.parametrize("path", NBS, ids=lambda p: p.stem)
def test_unanswered_checks_say_what_to_write(path, tmp_path):
    "In the student edition each check, run before answering, says 'not answered yet'."
    dest = make_student.build(path.parent, tmp_path / "st")
    nb = _read(dest / path.name)
    assert not any(_is_solution(c) for c in nb.cells)
    for i, n, names in check_cells(nb):
        src = nb.cells[i].source
        block = src[CHECK_RE.search(src).start() :]  # from `with exercise(` on
        with pytest.raises(NotAnswered) as e:
            exec(block, {"exercise": exercise})
        assert f"exercise {n}: not answered yet: write `{names[0]}`" in str(e.value)
        assert nb.cells[i].outputs == []  # the instructor's passing output is gone
        above = nb.cells[i - 1]
        assert "answer" in above.metadata.get("tags", []), (path.name, n)
        assert re.search(rf"exercise {n}: write .*{names[0]}", above.source)


def _answered(student, full, wrong):
    "The student edition with the solutions written in, one exercise answered wrong."
    n_wrong, src = wrong
    sols = iter(
        [c for c in full.cells if _is_solution(c) and c.cell_type == "code"]
    )  # one code solution per exercise, in order
    cells = []
    for c in student.cells:
        if "answer" in c.metadata.get("tags", []):
            n = int(re.search(r"exercise (\d+)", c.source)[1])
            right = next(sols).source
            c = nbformat.v4.new_code_cell(src if n == n_wrong else right)
        cells.append(c)
    student.cells = cells
    return student


FULL_GRADE = os.environ.get("HINGEABL_FULL_GRADE") == "1"
# one wrong answer each: functions, floats, a tensor, a dict; 2-3 exercises each
GRADE_WRONG = PART_ONE if FULL_GRADE else ["01_atl", "04_convexity", "05_losses"]
# as handed out: a tensor answer, a function and a tuple
GRADE_BLANK = PART_ONE[:6] if FULL_GRADE else ["00_core", "02_sat"]


def test_grading_part_one(tmp_path):
    dest = make_student.build(ROOT / "nbs", tmp_path / "st")
    wrong_dir, blank_dir = tmp_path / "grade" / "wrong", tmp_path / "grade" / "blank"
    for d in (wrong_dir, blank_dir):
        d.mkdir(parents=True)
    n_checks = {}
    for name in sorted(set(GRADE_WRONG + GRADE_BLANK)):
        student = _read(dest / f"{name}.ipynb")
        n_checks[name] = len(check_cells(student))
        if name in GRADE_BLANK:
            nbformat.write(student, blank_dir / f"{name}.ipynb")
        if name in GRADE_WRONG:
            full = _read(ROOT / "nbs" / f"{name}.ipynb")
            answered = _answered(student, full, WRONG[name])
            nbformat.write(answered, wrong_dir / f"{name}.ipynb")
    t0 = time.time()
    rows = grade_folder(tmp_path / "grade", jobs=2, timeout=300, only=PART_ONE)
    print(grade_table(rows))
    n_nbs = len(GRADE_WRONG) + len(GRADE_BLANK)
    print(f"graded {n_nbs} notebooks in {time.time() - t0:.0f} s")
    by_dir = {"wrong": [], "blank": []}
    for r in rows:
        by_dir[r["notebook"].split("/")[0]].append(r)
    for r in by_dir["blank"]:
        assert r["status"] == "not answered", r
        assert "Traceback" not in r["message"] and "not answered yet" in r["message"]
    for r in by_dir["wrong"]:
        n_wrong = WRONG[Path(r["notebook"]).stem][0]
        want = "failed" if r["exercise"] == n_wrong else "passed"
        assert r["status"] == want, r
        if want == "failed":
            assert "not right yet" in r["message"], r
    # every exercise of every graded notebook has its row
    assert len(by_dir["wrong"]) == sum(n_checks[n] for n in GRADE_WRONG)
    assert len(by_dir["blank"]) == sum(n_checks[n] for n in GRADE_BLANK)
    assert len(rows) >= (30 if FULL_GRADE else 11)
