"""Grading an instructor can trust, on the real course: a class of made-up students
built from the student edition, each trying to beat the grader in one way; every
honest verdict, every other student's verdicts unchanged, the run completes.

What each submission does is listed in `_tamper`. In folder mode (the weaker sandbox)
the writes outside the run's folder succeed and must be reported as `tampered` and
undone; in namespace mode (where Linux allows it) they fail inside the kernel and the
answer is judged as it is. The grading of the rest of the course (solutions pass, one
wrong answer each, blanks) is in tests/test_exercises.py.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from hingeabl_nb import student
from hingeabl_nb.grade import grade_class, grade_table, load_keys
from hingeabl_nb.sandbox import namespaces_work, tree_hashes

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
WRONG = "answer_1 = torch.zeros(101, dtype=torch.float64)"
IS_CHECK = lambda c: c.cell_type == "code" and "with exercise(" in c.source


def _no_heading(cells):
    for c in cells:
        if c.cell_type == "markdown":
            c.source = c.source.replace("## Exercises", "")
    return cells


def _tamper(tmp: Path, right: str) -> dict:
    "{student: (answer source, edit of the cells)} for 00_core; paths point into `tmp`."
    subs, out = tmp / "class", tmp / "grades"
    pkg = "import hingeabl_nb, pathlib\n"
    pkg += "p = pathlib.Path(hingeabl_nb.__file__).parent / 'exercises.py'"
    fake = (
        "import sys, types\n"
        "fake = types.ModuleType('hingeabl_nb.exercises')\n"
        "fake.record_answers = lambda *a: False\n"
        "sys.modules['hingeabl_nb.exercises'] = fake"
    )
    return {
        "honest": (right, None),
        "blank": (None, None),
        "wrong": (WRONG, None),
        "edits_check": (
            WRONG,
            lambda cs: [
                nbformat.v4.new_code_cell('with exercise(1, "answer_1"):\n    pass')
                if IS_CHECK(c)
                else c
                for c in cs
            ],
        ),
        "deletes_check": (right, lambda cs: [c for c in cs if not IS_CHECK(c)]),
        "deletes_heading": (right, _no_heading),
        "redefines_exercise": (
            WRONG + "\nimport contextlib\n"
            "exercise = lambda *a, **k: contextlib.nullcontext()",
            None,
        ),
        "replaces_module": (WRONG + "\n" + fake, None),
        "writes_package": (
            right + f"\n{pkg}\np.chmod(0o644)\np.write_text('raise SystemExit')",
            None,
        ),
        "deletes_sibling": (
            right + f"\nimport shutil\nshutil.rmtree({str(subs / 'honest')!r})",
            None,
        ),
        "writes_report": (
            right
            + f"\nopen({str(out / 'grades.csv')!r}, 'w').write('writes_report,100\\n')",
            None,
        ),
        "loops_forever": ("while True:\n    pass", None),
        "crashes": ("answer_1 = 1 / 0", None),
    }


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    "The student edition of the course and a class built from it (files only)."
    tmp = tmp_path_factory.mktemp("grading")
    ed = student.build(NBS, tmp / "student", url="")
    full = nbformat.read(NBS / "00_core.ipynb", as_version=4)
    right = student.solutions(full)[1]
    subs = tmp / "class"
    for who, (answer, edit) in _tamper(tmp, right).items():
        nb = nbformat.read(ed / "00_core.ipynb", as_version=4)
        if answer is not None:
            student.fill_answers(full, nb, {1: answer})
        nb.cells = edit(nb.cells) if edit else nb.cells
        (subs / who).mkdir(parents=True)
        nbformat.write(nb, subs / who / "00_core.ipynb")
    (subs / "deletes_notebook").mkdir()  # hands in another notebook only
    shutil.copy(ed / "01_atl.ipynb", subs / "deletes_notebook")
    (subs / "not_a_notebook").mkdir()
    (subs / "not_a_notebook" / "00_core.ipynb").write_text("my answers are in my head")
    (subs / "old_format").mkdir()
    v3 = nbformat.convert(
        nbformat.read(subs / "honest" / "00_core.ipynb", as_version=4), 3
    )
    (subs / "old_format" / "00_core.ipynb").write_text(nbformat.writes(v3, version=3))
    (tmp / "grades").mkdir()
    (tmp / "grades" / "grades.csv").write_text("an earlier report\n")
    return tmp


# status of 00_core's exercise 1 by student, in folder mode and in namespace mode
EXPECTED = {
    "honest": ("passed", "passed"),
    "blank": ("not answered", "not answered"),
    "wrong": ("wrong", "wrong"),
    "edits_check": ("wrong", "wrong"),
    "deletes_check": ("passed", "passed"),
    "deletes_heading": ("passed", "passed"),
    "deletes_notebook": ("missing notebook", "missing notebook"),
    "redefines_exercise": ("wrong", "wrong"),
    "replaces_module": ("wrong", "wrong"),
    "writes_package": (
        "tampered",
        "passed",
    ),  # in namespaces the write fails, the answer stands
    "deletes_sibling": ("tampered", "passed"),
    "writes_report": ("tampered", "passed"),
    "loops_forever": ("timeout", "timeout"),
    "crashes": ("error", "error"),
    "not_a_notebook": ("error", "error"),
    "old_format": ("passed", "passed"),
}
MODES = ["folder"] + (["namespaces"] if not namespaces_work() else [])


@pytest.mark.parametrize("mode", MODES)
def test_a_class_that_tries_to_beat_the_grader(course, mode):
    subs, out = course / "class", course / "grades"
    before = {
        "class": tree_hashes(subs),
        "report": tree_hashes(out),
        "nbs": tree_hashes(NBS),
    }
    t0 = time.time()
    result = grade_class(
        subs,
        NBS,
        only=["00_core"],
        jobs=2,
        timeout=10,
        mode=mode,
        protect=[out],
        progress=False,
    )
    print(
        grade_table(result["rows"], result["totals"]),
        f"\n{time.time() - t0:.0f} s, sandbox {result['sandbox']}",
    )
    assert result["sandbox"] == mode
    got = {r["student"]: r for r in result["rows"]}
    assert sorted(got) == sorted(
        EXPECTED
    )  # every student has a row, the one who handed nothing in too
    col = 0 if mode == "folder" else 1
    for who, want in EXPECTED.items():
        assert got[who]["status"] == want[col], (who, got[who])
    assert (
        got["edits_check"]["note"]
        == "check 1 was edited: the instructor's check was used"
    )
    assert (
        got["deletes_check"]["note"]
        == "check 1 was deleted: the instructor's check was used"
    )
    assert (
        got["crashes"]["message"]
        == "exercise 1: your answer cell raised ZeroDivisionError: division by zero"
    )
    assert (
        "not_a_notebook/00_core.ipynb: not a readable notebook"
        in got["not_a_notebook"]["message"]
    )
    assert (
        got["wrong"]["message"].startswith("exercise 1: not right yet")
        and "tensor(" not in got["wrong"]["message"]
    )
    if mode == "folder":
        assert (
            "the submissions: honest/00_core.ipynb" in got["deletes_sibling"]["message"]
        )
        assert "grades.csv" in got["writes_report"]["message"]
    # nothing a student did survives: the class, the report folder and the key
    assert tree_hashes(subs) == before["class"]
    assert tree_hashes(out) == before["report"]
    assert tree_hashes(NBS) == before["nbs"]
    totals = {t["student"]: t for t in result["totals"]}
    assert totals["honest"]["points"] == 1.0 and totals["blank"]["points"] == 0.0


def processes_naming(text: str) -> list:
    "Pids of the processes whose command line names `text` (Linux /proc)."
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and text in (d / "cmdline").read_text(errors="replace"):
                pids.append(int(d.name))
        except OSError:  # ended meanwhile
            pass
    return pids


def test_the_report_is_never_half_written(course, tmp_path):
    """Kill the grader while kernels run: the report folder holds the earlier report,
    and no kernel outlives the grader."""
    out, runs = tmp_path / "grades", tmp_path / "runs"
    runs.mkdir()
    out.mkdir()
    (out / "grades.csv").write_text("an earlier report\n")
    cmd = [
        sys.executable,
        "-c",
        "import sys; from hingeabl_nb.cli import grade_main; sys.exit(grade_main())",
        str(course / "class"),
        "--key",
        str(NBS),
        "--only",
        "00_core",
        "--out",
        str(out),
        "--no-progress",
        "--timeout",
        "60",
    ]
    p = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=dict(os.environ, TMPDIR=str(runs)),  # the runs' folders, named by kernels
    )
    t0 = time.time()
    while not processes_naming(str(runs)):  # a sandboxed kernel has started
        assert p.poll() is None and time.time() - t0 < 60, "no kernel started"
        time.sleep(0.2)
    time.sleep(1)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert sorted(x.name for x in out.iterdir()) == ["grades.csv"]
    assert (out / "grades.csv").read_text() == "an earlier report\n"
    t0 = time.time()
    while processes_naming(str(runs)) and time.time() - t0 < 10:
        time.sleep(0.2)
    assert processes_naming(str(runs)) == [], "kernels outlived the grader"


def test_the_command(course, tmp_path, capsys):
    "Exit statuses, the totals on the terminal, the five report files."
    from hingeabl_nb.cli import grade_main

    honest = course / "class" / "honest"
    args = [
        str(honest),
        "--key",
        str(NBS),
        "--only",
        "00_core",
        "--student",
        "ann",
        "--no-progress",
    ]
    assert grade_main(args + ["--out", str(tmp_path / "a"), "--strict"]) == 0
    out = capsys.readouterr().out
    assert "ann      1/1     1" in out
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "grades.csv",
        "grades.xml",
        "summary.html",
        "summary.md",
        "totals.csv",
    ]
    blank = course / "class" / "blank"
    args = [
        str(blank),
        "--key",
        str(NBS),
        "--only",
        "00_core",
        "--student",
        "ben",
        "--no-progress",
    ]
    assert (
        grade_main(args + ["--out", str(tmp_path / "b")]) == 0
    )  # graded: 0 whatever the grades
    assert grade_main(args + ["--out", str(tmp_path / "c"), "--strict"]) == 1
    assert grade_main(args + ["--timeout", "0.5"]) == 2
    assert grade_main([str(blank), "--key", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "hingeabl-grade: error: --timeout 0.5: must be at least 1" in err
    assert "Traceback" not in err


def test_the_classroom_workflow_passes_actionlint(course):
    wf = course / "student" / ".github" / "workflows" / "classroom.yml"
    text = wf.read_text()
    for stem in load_keys(NBS):
        assert f"--only {stem} --strict" in text
    p = subprocess.run(["actionlint", str(wf)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_the_edition_holds_no_solution(course):
    "No solution cell of nbs/ is a cell of the student edition."
    ed = course / "student"
    cells = {
        c.source.strip()
        for p in ed.glob("*.ipynb")
        for c in nbformat.read(p, as_version=4).cells
    }
    for p in sorted(NBS.glob("*.ipynb")):
        for c in nbformat.read(p, as_version=4).cells:
            if student.is_solution(c) and len(c.source.strip()) > 20:
                assert c.source.strip() not in cells, p.name


def test_a_kernel_that_never_started_is_started_once_more(monkeypatch):
    """A kernel that dies before any cell ran (a failed start: no student code ran) is
    started once more, alone; a second failure is reported, never a third start."""
    from types import SimpleNamespace

    from hingeabl_nb import grade as G

    calls = []
    fails = {"once": 1, "always": 5, "fine": 0}

    def fake(sub, key, box, **kw):
        calls.append(sub.student)
        bad = calls.count(sub.student) <= fails[sub.student]
        return {"stopped": "the kernel did not run: RuntimeError: died" if bad else ""}

    monkeypatch.setattr(G, "run_submission", fake)
    watch = SimpleNamespace(tampered={}, start=lambda s: None, look=lambda s: None)
    subs = [SimpleNamespace(student=w, name="00_core") for w in fails]
    bar = SimpleNamespace(update=lambda n: None)
    runs = G._run_all(subs, {"00_core": None}, None, watch, 2, bar)
    assert sorted(calls) == ["always", "always", "fine", "once", "once"]
    assert runs["once/00_core"]["stopped"] == ""  # a kernel that ran is never run twice
    assert runs["always/00_core"]["stopped"].startswith("the kernel did not run")
