"""A student's path, in a fresh virtual environment (dev/check_install.sh runs it).

Usage: python tools/student_path.py REPO EDITION

EDITION is a student edition written by this environment's `hingeabl-student`. The
script reads the install commands of the edition's README and checks that this
environment already did what they say (the `student` extra is installed: JupyterLab,
the widgets, nbclient), then, as a student would:
1. runs a blank notebook of the edition: it stops at its first check, "not answered";
2. writes the instructor's solution into the answer cell and runs it: "passed";
3. grades it with `hingeabl-grade --key EDITION --strict`: exit status 0;
and checks that no solution of REPO/nbs is anywhere in this environment's files.
"""

import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from hingeabl_nb import student

# The kernel's own log: errors only (ipykernel warns of its loopback TCP link at start).
QUIET_KERNEL = ["--IPKernelApp.log_level=ERROR"]


def run(nb, folder: Path):
    "Execute `nb` in `folder` (errors kept as outputs); return it."
    NotebookClient(
        nb,
        timeout=300,
        allow_errors=True,
        resources={"metadata": {"path": str(folder)}},
        extra_arguments=QUIET_KERNEL,
    ).execute()
    return nb


def outputs(cell) -> str:
    return "".join(
        o.get("text", "") + o.get("ename", "") + o.get("evalue", "")
        for o in cell.get("outputs", [])
    )


def main(repo: Path, edition: Path) -> None:
    readme = (edition / "README.md").read_text()
    lines = [
        l.strip()
        for l in re.findall(r"```bash\n(.*?)```", readme, re.S)[0].splitlines()
    ]
    assert any(l.startswith('pip install "hingeabl-nb[student]') for l in lines), lines
    for dist in (
        "jupyterlab",
        "ipywidgets",
        "nbclient",
        "fastcore",
    ):  # what the extra brings
        subprocess.run([sys.executable, "-m", "pip", "show", "-q", dist], check=True)
    subprocess.run(["jupyter", "lab", "--version"], check=True, capture_output=True)
    name = "00_core"
    blank = run(nbformat.read(edition / f"{name}.ipynb", as_version=4), edition)
    errors = [
        c
        for c in blank.cells
        if any(o.get("output_type") == "error" for o in c.get("outputs", []))
    ]
    assert (
        errors
        and "NotAnswered" in outputs(errors[0])
        and "not answered yet" in outputs(errors[0])
    ), [outputs(c)[:200] for c in errors[:2]]
    print(f"blank {name}: its first error is the check's 'not answered yet'")
    full = nbformat.read(repo / "nbs" / f"{name}.ipynb", as_version=4)
    answered = student.fill_answers(
        full, nbformat.read(edition / f"{name}.ipynb", as_version=4)
    )
    done = run(answered, edition)
    assert not any(
        o.get("output_type") == "error"
        for c in done.cells
        for o in c.get("outputs", [])
    )
    assert "exercise 1: passed" in "".join(outputs(c) for c in done.cells)
    print(f"answered {name}: 'exercise 1: passed'")
    (edition.parent / "me").mkdir(exist_ok=True)
    nbformat.write(answered, edition.parent / "me" / f"{name}.ipynb")
    p = subprocess.run(
        [
            "hingeabl-grade",
            str(edition.parent / "me"),
            "--key",
            str(edition),
            "--student",
            "me",
            "--only",
            name,
            "--strict",
            "--no-progress",
            "--out",
            str(edition.parent / "grades"),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    print(
        f"hingeabl-grade --strict on it: exit 0 ({p.stdout.splitlines()[1].split()[3]})"
    )
    site = Path(sysconfig.get_paths()["purelib"])
    files = [
        f
        for f in site.rglob("*")
        if f.is_file() and f.suffix in (".py", ".ipynb", ".md", ".json", ".txt")
    ]
    text = "\n".join(
        f.read_text(errors="ignore") for f in files if f.stat().st_size < 5_000_000
    )
    found = []
    for p in sorted((repo / "nbs").glob("*.ipynb")):
        for c in nbformat.read(p, as_version=4).cells:
            if (
                student.is_solution(c)
                and len(c.source.strip()) > 40
                and c.source.strip() in text
            ):
                found.append(p.name)
    assert not found, f"solutions of {found} are in the environment"
    assert not list(site.rglob("nbs")), "a nbs/ folder was installed"
    print(f"no solution of nbs/ in {len(files)} files of the environment")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
