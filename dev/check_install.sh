#!/usr/bin/env bash
# Installs the package (not editable) into a throw-away venv and uses it without nbdev/Jupyter;
# then adds the `student` extra and follows a student's path through the student edition.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --no-compile --upgrade pip
"$tmp/venv/bin/python" -m pip install -q --no-compile "${TORCH:-torch==2.13.0}"
"$tmp/venv/bin/python" -m pip install -q --no-compile "$root"
cd "$tmp"
export PATH="$tmp/venv/bin:$PATH" # the console scripts run are this venv's
"$tmp/venv/bin/python" "$root/dev/smoke_installed.py"
echo "--- a student's path: the student extra, the edition, a blank and an answered notebook"
"$tmp/venv/bin/python" -m pip install -q --no-compile "$root[student]"
hingeabl-student --src "$root/nbs" --dest "$tmp/course" --url "" >/dev/null
"$tmp/venv/bin/python" "$root/dev/student_path.py" "$root" "$tmp/course"
