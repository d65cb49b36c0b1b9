"""The course's exercises: every one has a tagged solution and a check that speaks to
students, and grading the real notebooks gives the verdicts it should.

Static tests read every notebook as the grader's key (`grade.load_key`): a tagged
solution then a check per exercise, numbered 1..n; in the student edition every check,
run before answering, says "not answered yet". The grading test grades, with
`hingeabl-grade`'s code, three students on Part I: one with the instructor's solutions,
one with them but one deliberately wrong answer per notebook, one who handed the
edition in blank. By default a representative subset (GRADE: answers that are floats,
tensors, a tuple, a dict and functions; notebooks with 1 to 3 exercises);
HINGEABL_FULL_GRADE=1 grades all of Part I. The cells tagged `skip-when-grading` are
shown not to matter: the solutions get the same verdicts with and without them.
"""

import os
import re
import time
from pathlib import Path

import nbformat
import pytest

from hingeabl_nb import student
from hingeabl_nb.exercises import NotAnswered, exercise
from hingeabl_nb.grade import (
    SKIP_TAG,
    grade_class,
    grade_table,
    load_key,
    load_keys,
    split_check,
)

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
KEYS = load_keys(NBS)
PART_ONE = [k for k in KEYS if int(k[:2]) <= 5]
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
FULL_GRADE = os.environ.get("HINGEABL_FULL_GRADE") == "1"
GRADE = PART_ONE if FULL_GRADE else ["00_core", "01_atl", "04_convexity", "05_losses"]


def _is_solution(c):
    return "solution" in c.metadata.get("tags", [])


@pytest.mark.parametrize("name", sorted(KEYS))
def test_every_exercise_has_a_tagged_solution_then_a_check(name):
    key = KEYS[name]
    assert [e.n for e in key.exercises] == list(range(1, len(key.exercises) + 1))
    for e in key.exercises:
        assert e.names, f"{name}: exercise {e.n}'s check names no answer"
        assert _is_solution(key.nb.cells[e.slot]), (
            f"{name}: exercise {e.n}: no solution"
        )
        assert all(_is_solution(c) for c in key.nb.cells[e.slot : e.check])


def test_unanswered_checks_say_what_to_write(tmp_path):
    "In the student edition each check, run before answering, says 'not answered yet'."
    dest = student.build(NBS, tmp_path / "st", url="")
    for name in KEYS:
        key = load_key(dest / f"{name}.ipynb")
        assert not any(map(_is_solution, key.nb.cells))
        for e in key.exercises:
            block = split_check(key.nb.cells[e.check].source, e.n)[1]
            with pytest.raises(NotAnswered) as err:
                exec(block, {"exercise": exercise})
            assert f"exercise {e.n}: not answered yet: write `{e.names[0]}`" in str(
                err.value
            )
            assert (
                key.nb.cells[e.check].outputs == []
            )  # the instructor's "passed" is gone
            above = key.nb.cells[e.slot]
            assert "answer" in above.metadata.get("tags", []), (name, e.n)
            assert re.search(rf"exercise {e.n}: write .*{e.names[0]}", above.source)


def _class(tmp: Path, names: list, blank: bool = True) -> Path:
    "Students on `names`: the solutions, one wrong answer each, a blank edition."
    ed = student.build(NBS, tmp / "st", url="")
    for name in names:
        full = nbformat.read(NBS / f"{name}.ipynb", as_version=4)
        n, src = WRONG[name]
        for who, answers in (("solutions", {}), ("one_wrong", {n: src})):
            nb = nbformat.read(ed / f"{name}.ipynb", as_version=4)
            (tmp / "class" / who).mkdir(parents=True, exist_ok=True)
            nbformat.write(
                student.fill_answers(full, nb, answers),
                tmp / "class" / who / f"{name}.ipynb",
            )
        if blank:
            (tmp / "class" / "blank").mkdir(parents=True, exist_ok=True)
            nbformat.write(
                nbformat.read(ed / f"{name}.ipynb", as_version=4),
                tmp / "class" / "blank" / f"{name}.ipynb",
            )
    return tmp / "class"


def test_grading_part_one(tmp_path):
    folder = _class(tmp_path, GRADE)
    t0 = time.time()
    result = grade_class(folder, NBS, only=GRADE, jobs=2, timeout=300, progress=False)
    print(
        grade_table(result["rows"], result["totals"]),
        f"\ngraded in {time.time() - t0:.0f} s",
    )
    assert result["notes"] == []  # no check broken, none that cannot run twice
    for r in result["rows"]:
        if r["student"] == "blank":
            assert r["status"] == "not answered", r
            assert (
                "not answered yet" in r["message"] and "Traceback" not in r["message"]
            )
        else:
            wrong = (
                r["student"] == "one_wrong" and r["exercise"] == WRONG[r["notebook"]][0]
            )
            assert r["status"] == ("wrong" if wrong else "passed"), r
            assert not wrong or r["message"].startswith(
                f"exercise {r['exercise']}: not right yet"
            )
    assert len(result["rows"]) == 3 * sum(len(KEYS[n].exercises) for n in GRADE)


# notebooks with cells tagged skip-when-grading (all of them checked with FULL_GRADE)
SKIPPING = [
    n
    for n in PART_ONE
    if any(SKIP_TAG in c.metadata.get("tags", []) for c in KEYS[n].nb.cells)
]


@pytest.mark.skipif(
    not SKIPPING, reason="no notebook has cells tagged skip-when-grading"
)
def test_skipped_cells_change_no_verdict(tmp_path):
    "Solutions and a wrong answer get the same verdicts with and without tagged cells."
    names = (
        SKIPPING
        if FULL_GRADE
        else [n for n in SKIPPING if n == "03_hinge"] or SKIPPING[:1]
    )
    folder = _class(tmp_path, names, blank=False)
    verdicts = {}
    for skip in (True, False):
        t0 = time.time()
        result = grade_class(
            folder, NBS, only=names, jobs=2, timeout=600, skip=skip, progress=False
        )
        verdicts[skip] = [
            (r["student"], r["notebook"], r["exercise"], r["status"])
            for r in result["rows"]
        ]
        print(f"skip={skip}: {time.time() - t0:.0f} s")
    assert verdicts[True] == verdicts[False]
    assert {s for _, _, _, s in verdicts[True]} == {"passed", "wrong"}
