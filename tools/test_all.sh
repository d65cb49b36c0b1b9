#!/usr/bin/env bash
# The test suite, in two parts (`make test`, `make check-course`; CI runs both: .ci/run).
#   bash tools/test_all.sh test    the library and its lessons: export/clean in step, ruff,
#                                  module map, README, workflows, pytest, every notebook
#   bash tools/test_all.sh course  the course as readers get it: committed outputs, student
#                                  edition, book, browser, GPU rehearsal + fresh install
#   bash tools/test_all.sh quick   the part of `test` that depends on the machine (what is
#                                  found beside the checkout, who runs it): .ci/run runs it
#                                  in a fresh clone (dev/fresh_clone_check.sh)
# Each part starts with the resources from outside the repository (tools/resources.py):
# one line for each missing one, saying what is skipped and how to get it; a missing
# resource that $HINGEABL_REQUIRE names fails the run instead (CI sets it).
# Fails on the first broken step; each step prints its wall and CPU seconds (user+sys
# of the processes it waited for), and the run ends with a table of them.
set -euo pipefail
part="${1:-}"
case "$part" in test | course | quick) ;; *) echo "usage: tools/test_all.sh test|course|quick" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 MPLBACKEND=Agg
export TOKENIZERS_PARALLELISM=false PYTHONHASHSEED=0
t_all=$SECONDS cur="" t_step=$SECONDS cpu_step=0 summary="" CPU=0
times_file="$(mktemp)"
cpu_now() { # CPU = user+sys seconds of the children so far (`times`, no subshell)
  times >"$times_file"
  CPU="$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/)
    printf "%.0f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$times_file")"
}
step_end() {
  test -n "$cur" || return 0
  cpu_now
  local line
  line="$(printf '%5d s wall %6d s CPU  %s' "$((SECONDS - t_step))" \
    "$((CPU - cpu_step))" "${cur:0:64}")"
  printf '=== %s\n' "$line"
  summary+="$line"$'\n'
  cur=""
}
step() {
  step_end
  cpu_now
  cur="$*" t_step=$SECONDS cpu_step=$CPU
  printf '\n=== %s\n' "$*"
}
finish() {
  local rc=$?
  step_end
  cpu_now
  rm -f "$times_file"
  printf '\n=== time per step\n%s%5d s wall %6d s CPU  test_all.sh %s %s\n' "$summary" \
    "$((SECONDS - t_all))" "$CPU" "$part" "$([ "$rc" = 0 ] && echo passed || echo FAILED)"
  exit "$rc"
}
trap finish EXIT

step "resources from outside the repository (tools/resources.py; make data, make browser)"
python tools/resources.py --missing
echo "$(python tools/resources.py | grep -c '^found:') found, the rest skipped"

if [ "$part" = quick ]; then
  # what depends on the machine: every test that needs a resource (skipped here without
  # it), the download, locate and permission tests, the GPU carry; a notebook that reads
  # Re-DocRED when found (the packaged sample otherwise)
  step "pytest: the tests that need a resource, and those of data, permissions and the GPU carry"
  python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile -m needs tests
  python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile tests/test_data.py \
    tests/test_bad_input.py tests/test_gpu_session.py
  step "06_data's tests (the packaged sample when Re-DocRED is not found)"
  python dev/test_nbs.py --workers 1 --only 06_data
  step "the GPU session's carry from what the project makes itself when ../shared is missing"
  python tools/gpu_session.py carry --dest "$(mktemp -d)/carry"
  exit 0
fi

if [ "$part" = test ]; then
  step "library in step with the notebooks (nbdev_export changes nothing)"
  nbdev_export
  git add -N hingeabl_nb >/dev/null 2>&1 || true
  git diff --exit-code --stat -- hingeabl_nb || { echo "nbdev_export changed hingeabl_nb/: run nbdev_export and commit"; exit 1; }
  untracked="$(git status --porcelain --untracked-files=all -- hingeabl_nb | grep '^??' | grep -v __pycache__ || true)"
  test -z "$untracked" || { echo "$untracked"; echo "nbdev_export wrote files git does not track in hingeabl_nb/: add and commit them"; exit 1; }

  step "notebooks clean (nbdev_clean changes nothing)"
  nbdev_clean
  git diff --exit-code --stat -- nbs || { echo "nbdev_clean changed nbs/: run nbdev_clean and commit"; exit 1; }

  step "ruff: code formatted and linted (notebooks, library, tests, tools, dev, book, bench)"
  ruff format --check .
  ruff check .

  step "ARCHITECTURE.md's module map matches the imports (python tools/module_map.py --write)"
  python tools/module_map.py --check

  step "README.md generated from nbs/index.ipynb"
  python tools/make_readme.py --check

  step "GitHub Actions workflows valid (actionlint)"
  actionlint .github/workflows/*.yml

  step "pytest (the installed library; two workers, each test file on one)"
  # --dist loadfile: a file's tests share one worker, so module fixtures (the two-process
  # launch of test_multiprocess.py, finished runs) run once and no two launches compete
  # for accelerate's port (xdist 3.8's loadgroup does not group under pytest 9).
  # HINGEABL_SITE_STEPS=1: the tiny-course site test is skipped, `make check-course`
  # builds and checks the real course with the same code.
  HINGEABL_SITE_STEPS=1 python -m pytest tests -q -p no:cacheprovider -n 2 --dist loadfile \
    --durations=15

  step "every notebook, CPU paths only (nbdev's test_nb; HINGEABL_PROBE=1: each passing exercise check is re-run against wrong answers)"
  HINGEABL_PROBE=1 python dev/test_nbs.py --workers 2
  exit 0
fi

# These two steps run side by side (a fresh venv's pip install is mostly one core and disk):
# the install's output is printed after the rehearsal's, and either failing fails CI.
step "GPU session rehearsed on the CPU (clean HEAD + carried folder, GPU-image packages only), alongside: pip install . into a fresh virtual environment, without nbdev or Jupyter"
install_log="$(mktemp)"
bash dev/check_install.sh >"$install_log" 2>&1 &
install_pid=$!
rehearse_rc=0
{ python tools/gpu_session.py carry && python tools/gpu_session.py rehearse; } || rehearse_rc=$?
install_rc=0
wait "$install_pid" || install_rc=$?
printf '\n--- pip install . into a fresh virtual environment (ran alongside)\n'
cat "$install_log"
rm -f "$install_log"
test "$rehearse_rc" = 0 || { echo "GPU session rehearsal failed (exit $rehearse_rc)"; exit 1; }
test "$install_rc" = 0 || { echo "fresh install check failed (exit $install_rc)"; exit 1; }

step "notebooks committed with their outputs (figures, printed checks, no errors, no widget state)"
python dev/check_outputs.py

step "student edition: solution cells removed, check cells kept"
hingeabl-student --src nbs --dest _student --check

step "grading end to end: the solutions of 00_core and 01_atl handed in by one student, hingeabl-grade --strict (_grades/grades.xml: CI's test report)"
rm -rf _grades _class && mkdir -p _class/solutions
python - <<'PY'
import nbformat
from hingeabl_nb.student import fill_answers
for name in ("00_core", "01_atl"):
    full = nbformat.read(f"nbs/{name}.ipynb", as_version=4)
    nb = fill_answers(full, nbformat.read(f"_student/{name}.ipynb", as_version=4))
    nbformat.write(nb, f"_class/solutions/{name}.ipynb")
PY
hingeabl-grade _class --key nbs --only 00_core 01_atl --strict --no-progress --out _grades

step "course site: Jupyter Book, offline MathJax, warnings are errors"
python book/build_book.py --src nbs --dest _site

step "course site in headless Chromium, every page: equations typeset, figures load, no traceback, no raw Markdown table, no code scrolling sideways, solutions folded"
if python tools/resources.py --have chromium >/dev/null; then
  python book/check_site.py --site _site --nbs nbs
else
  echo "not run: no Chromium (the resources step above says how to get one)"
fi
