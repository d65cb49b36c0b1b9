"""How long grading a class takes, and where the time goes (CPU).

    python bench/bench_grade.py [--students 3] [--jobs 2] [--notebooks 01_atl ...]

Builds the student edition, hands in each notebook once per student answered with the
instructor's solutions, and grades the class with `hingeabl-grade`'s code (its sandbox,
its judge). Per notebook it prints the grader's own overhead beside the student's code:
kernel start, the instructor's lesson cells, the student's cells, the check stubs, the
judge (one run of the instructor's notebook, then the check blocks per student); then
the estimate for a class of `--class-size` students with `--jobs` kernels at a time.

Baseline, in the same process, for the same submissions: what a plain `nbclient` run
of each handed-in notebook costs (the whole notebook in one kernel, no sandbox, no
judge: how this project graded before). The ratio grader / baseline is printed per
notebook. Nothing here is asserted: these are measurements.
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from hingeabl_nb import student
from hingeabl_nb.grade import grade_class, load_keys

ROOT = Path(__file__).resolve().parents[1]
PART_ONE = [
    "01_atl",
    "02_sat",
    "03_hinge",
    "04_convexity",
    "05_losses",
    "05a_threshold",
    "05b_toy",
]


def baseline_seconds(path: Path, timeout: int = 600) -> float:
    "A plain nbclient run of the whole handed-in notebook, in its folder (the old way)."
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    t0 = time.monotonic()
    NotebookClient(
        nb,
        timeout=timeout,
        allow_errors=True,
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    return time.monotonic() - t0


def hand_in(tmp: Path, names: list, students: int) -> Path:
    "A class of `students`, each handing in every notebook answered with the solutions."
    ed = student.build(ROOT / "nbs", tmp / "edition", url="")
    for k in range(students):
        d = tmp / "class" / f"s{k + 1}"
        d.mkdir(parents=True)
        for name in names:
            full = nbformat.read(ROOT / "nbs" / f"{name}.ipynb", as_version=4)
            nb = student.fill_answers(
                full, nbformat.read(ed / f"{name}.ipynb", as_version=4)
            )
            nbformat.write(nb, d / f"{name}.ipynb")
        for p in ed.iterdir():  # what the lessons read beside the notebook (results/)
            if p.is_dir() and not p.name.startswith("."):
                shutil.copytree(p, d / p.name, dirs_exist_ok=True)
    return tmp / "class"


def table(result: dict, names: list, base: dict, class_size: int, jobs: int) -> list:
    "Per notebook: mean seconds per submission by part, the judge, the class estimate."
    rows = []
    for name in names:
        times = [t for sid, t in result["times"].items() if sid.endswith(f"/{name}")]
        mean = lambda k: sum(t[k] for t in times) / len(times)
        j = result["judge"].get(name, dict(total=0.0, checks=0.0, n=1))
        per_check = j["checks"] / max(j["n"], 1)
        judge_fixed = j["total"] - j["checks"]
        klass = class_size * mean("total") / jobs + judge_fixed + class_size * per_check
        overhead = mean("kernel") + mean("lesson")
        rows.append(
            dict(
                notebook=name,
                kernel=mean("kernel"),
                lesson=mean("lesson"),
                student=mean("student"),
                check=mean("check"),
                run=mean("total"),
                judge_once=judge_fixed,
                judge_each=per_check,
                overhead_share=overhead / mean("total"),
                baseline=base[name],
                ratio=mean("total") / base[name],
                klass=klass,
            )
        )
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notebooks", nargs="+", default=PART_ONE)
    ap.add_argument(
        "--students",
        type=int,
        default=3,
        help="students graded (each hands in every notebook)",
    )
    ap.add_argument(
        "--class-size", type=int, default=30, help="the class the estimate is for"
    )
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--sandbox", default="auto")
    a = ap.parse_args(argv)
    load_keys(ROOT / "nbs", a.notebooks)  # every name has exercises
    with tempfile.TemporaryDirectory() as t:
        folder = hand_in(Path(t), a.notebooks, a.students)
        base = {n: baseline_seconds(folder / "s1" / f"{n}.ipynb") for n in a.notebooks}
        t0 = time.monotonic()
        result = grade_class(
            folder,
            ROOT / "nbs",
            only=a.notebooks,
            jobs=a.jobs,
            timeout=600,
            mode=a.sandbox,
            progress=False,
        )
        wall = time.monotonic() - t0
    assert all(r["status"] == "passed" for r in result["rows"]), [
        r for r in result["rows"] if r["status"] != "passed"
    ]
    rows = table(result, a.notebooks, base, a.class_size, a.jobs)
    cols = [
        "notebook",
        "kernel",
        "lesson",
        "student",
        "check",
        "run",
        "judge_once",
        "judge_each",
        "overhead_share",
        "baseline",
        "ratio",
        "klass",
    ]
    print(
        f"sandbox {result['sandbox']}, {a.students} students x {len(a.notebooks)} "
        f"notebooks, {a.jobs} kernels at a time; seconds per submission unless said"
    )
    print(" | ".join(cols))
    for r in rows:
        print(
            " | ".join(
                r["notebook"] if c == "notebook" else f"{r[c]:.2f}" for c in cols
            )
        )
    total = sum(r["klass"] for r in rows)
    print(f"measured: {len(result['rows'])} exercises graded in {wall:.0f} s wall")
    runs = sum(r["run"] for r in rows)
    once, each = sum(r["judge_once"] for r in rows), sum(r["judge_each"] for r in rows)
    print(
        f"estimate for {a.class_size} students x {len(rows)} notebooks: "
        f"{total / 60:.1f} min ({a.jobs} kernels at a time; runs {runs:.1f} s per "
        f"student, judges {once:.0f} s once + {each:.2f} s per student)"
    )
    print("ratio: a graded run / a plain nbclient run of the whole notebook (baseline)")
    return dict(rows=rows, wall=wall, estimate_min=total / 60)


if __name__ == "__main__":
    json.dumps(main())
    sys.exit(0)
