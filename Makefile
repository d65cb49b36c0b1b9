# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Both create .venv, install the package with its dependencies, then run.
VENV  ?= .venv
PY    := $(VENV)/bin/python
RUN   := PATH="$(abspath $(VENV))/bin:$$PATH"
# CPU build of PyTorch; override on a GPU machine, e.g. `make test TORCH=torch`.
TORCH ?= torch==2.13.0

.PHONY: install install-book install-jupyter demo test check-course execute student check-outputs book check-site jupyter gpu-carry gpu-rehearsal grade clean

# The venv with PyTorch: its own stamp, so every install below starts from it.
$(VENV)/.torch:
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	touch $@

$(VENV)/.installed: $(VENV)/.torch setup.py settings.ini
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The course site and its browser check (jupyter-book, MathJax, playwright), and JupyterLab.
# Each installs the dev extras too, in the same pip run (one resolution, not two).
$(VENV)/.installed-book: $(VENV)/.torch setup.py settings.ini
	$(PY) -m pip install -q -e ".[dev,book]"
	touch $(VENV)/.installed $@

$(VENV)/.installed-jupyter: $(VENV)/.torch setup.py settings.ini
	$(PY) -m pip install -q -e ".[dev,jupyter]"
	touch $(VENV)/.installed $@

install-book: $(VENV)/.installed-book
install-jupyter: $(VENV)/.installed-jupyter

demo: install
	$(RUN) $(PY) tools/demo.py

# The library and its lessons: export/clean in step, ruff, pytest, nbdev_test (what a change must pass).
test: install
	$(RUN) bash tools/test_all.sh test

# The course as readers get it: committed outputs, student edition, book, browser, fresh install, GPU rehearsal.
check-course: install-book
	$(RUN) bash tools/test_all.sh course

# Contributors: execute every notebook in place (CPU; #| slow/gpu cells skipped), then nbdev_clean.
execute: install
	$(RUN) $(PY) dev/execute_nbs.py $(if $(NB),--only $(NB))

check-outputs: install
	$(PY) dev/check_outputs.py

# Student edition: the notebooks without their solutions, an answer cell per exercise, a README
# and a GitHub Classroom workflow, in _student/ (verified).
student: install
	$(VENV)/bin/hingeabl-student --src nbs --dest _student --check $(STUDENT_FLAGS)

# Grade a class: STUDENTS holds one folder of notebooks per student; the checks come from nbs/.
# Prints every exercise and each student's total; writes grades/ beside STUDENTS
# (GRADE_FLAGS="--strict" exits 1 unless every exercise passed; --only 01_atl 02_sat ...).
grade:
	@test -n "$(STUDENTS)" || { echo "usage: make grade STUDENTS=folder-with-a-folder-per-student [GRADE_FLAGS=...]"; exit 2; }
	@$(MAKE) --no-print-directory install
	$(VENV)/bin/hingeabl-grade "$(STUDENTS)" --key nbs $(GRADE_FLAGS)

# The course as an HTML site in _site/ (Jupyter Book, committed outputs, nothing executed; offline MathJax).
# EDITION=student builds it from the student edition: no solution anywhere on the site.
EDITION ?= full
COURSE = $(if $(filter student,$(EDITION)),_student,nbs)
book: install-book $(if $(filter student,$(EDITION)),student)
	$(PY) book/build_book.py --src $(COURSE) --dest _site

# Open _site/ in headless Chromium (Debian's, installed with apt when missing) and check what a reader sees.
check-site: install-book
	bash book/ensure_chromium.sh
	$(PY) book/check_site.py --site _site --nbs nbs

# JupyterLab with the widget front-end, opened on the course (as root, e.g. in a container:
# --allow-root); EDITION=student opens the student edition instead of nbs/ (the solutions).
JUPYTER_FLAGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)
jupyter: install-jupyter $(if $(filter student,$(EDITION)),student)
	$(VENV)/bin/jupyter lab $(JUPYTER_FLAGS) $(COURSE)/

# The GPU session (tools/gpu_session.py): the folder carried to the GPU machine (data,
# encoder, any wheels in .whl/; refused over 60 MiB), and the session rehearsed on the CPU.
gpu-carry:
	python3 tools/gpu_session.py carry

gpu-rehearsal: install gpu-carry
	$(PY) tools/gpu_session.py rehearse

clean:
	rm -rf $(VENV) build dist *.egg-info _student _site
