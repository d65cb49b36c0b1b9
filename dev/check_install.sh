#!/usr/bin/env bash
# Installs the package (not editable) into a throw-away venv and uses it without nbdev/Jupyter;
# then adds the `student` extra and follows a student's path through the student edition.
# PyTorch (and what it requires) is the one of the environment running this check, copied
# into the new venv's site-packages (hard links where the disk allows; which files:
# tools/gpu_session.py's image_view): every other dependency installs fresh, PyTorch is
# not installed a second time in a CI job. A copy, not a .pth: grading kernels see only
# site-packages.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --no-compile --upgrade pip
site="$("$tmp/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
python - "$root/tools" "$tmp/torch-site" "$site" <<'PY'
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, sys.argv[1])
import gpu_session

names, added = gpu_session.image_view(Path(sys.argv[2]), {"torch"})
site = Path(sys.argv[3])


def link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:  # another disk
        shutil.copy2(src, dst)


for p in sorted(Path(sys.argv[2]).iterdir()):
    if not (site / p.name).exists():  # the venv's own pip and setuptools stay
        if p.resolve().is_dir():
            shutil.copytree(p.resolve(), site / p.name, copy_function=link_or_copy)
        else:
            link_or_copy(p.resolve(), site / p.name)
print(f"PyTorch from {sys.prefix}, copied: {', '.join(names + added)}")
PY
"$tmp/venv/bin/python" -m pip install -q --no-compile "$root"
cd "$tmp"
export PATH="$tmp/venv/bin:$PATH" # the console scripts run are this venv's
"$tmp/venv/bin/python" "$root/dev/smoke_installed.py"
echo "--- a student's path: the student extra, the edition, a blank and an answered notebook"
"$tmp/venv/bin/python" -m pip install -q --no-compile "$root[student]"
hingeabl-student --src "$root/nbs" --dest "$tmp/course" --url "" >/dev/null
"$tmp/venv/bin/python" "$root/dev/student_path.py" "$root" "$tmp/course"
