# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Both create .venv, install the package with its dependencies, then run.
VENV  ?= .venv
PY    := $(VENV)/bin/python
RUN   := PATH="$(abspath $(VENV))/bin:$$PATH"
# CPU build of PyTorch; override on a GPU machine, e.g. `make test TORCH=torch`.
# TORCH_INDEX: an extra index for it, PyTorch's CPU one: its `2.13.0+cpu` wins over PyPI's
# `2.13.0`, which on Linux is the CUDA build with several GB of nvidia wheels. Empty: only the
# indexes pip is configured with. By default the CPU index is used when its host resolves (a
# machine with only a package mirror skips it rather than retry it for every dependency).
TORCH ?= torch==2.13.0
CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_INDEX ?= $(shell python3 -c "import socket; socket.getaddrinfo('download.pytorch.org', 443)" >/dev/null 2>&1 && echo $(CPU_INDEX))
# pip shows what it collects and downloads; setuptools' editable-install banner is not shown.
PIP   := PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install
# Where `make data` puts Re-DocRED and MiniLM: beside the checkout, where the library looks.
SHARED ?= ../shared

.PHONY: install install-book install-jupyter demo test check-course execute student check-outputs book check-site browser data jupyter gpu-carry gpu-rehearsal grade clean

# The venv with PyTorch: its own stamp, so every install below starts from it.
$(VENV)/.torch:
	@echo "== install 1/2: $(VENV) with $(TORCH) (the CPU build: ~200 MB to download)"
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PIP) "$(TORCH)" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	touch $@

$(VENV)/.installed: $(VENV)/.torch setup.py settings.ini
	@echo "== install 2/2: the package (editable) with its dev tools"
	$(PIP) -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The course site and its browser check (jupyter-book, MathJax, playwright), and JupyterLab.
# Each installs the dev extras too, in the same pip run (one resolution, not two).
$(VENV)/.installed-book: $(VENV)/.torch setup.py settings.ini
	@echo "== install 2/2: the package (editable) with its dev tools and the book extra"
	$(PIP) -e ".[dev,book]"
	touch $(VENV)/.installed $@

$(VENV)/.installed-jupyter: $(VENV)/.torch setup.py settings.ini
	@echo "== install 2/2: the package (editable) with its dev tools and JupyterLab"
	$(PIP) -e ".[dev,jupyter]"
	touch $(VENV)/.installed $@

install-book: $(VENV)/.installed-book
install-jupyter: $(VENV)/.installed-jupyter

# What `make book` needs and no more: the book extra's tools (Jupyter Book, offline MathJax,
# Playwright, nbformat) and the package without its dependencies (the student edition needs
# only nbformat). No PyTorch: the site shows the notebooks' committed outputs (the Pages job).
BOOK_REQS = import configparser; c = configparser.ConfigParser(); c.read("settings.ini"); print(*c["DEFAULT"]["book_requirements"].split(), sep="\n")
$(VENV)/.installed-site: setup.py settings.ini
	@echo "== install: the course site's tools and the package alone (no PyTorch)"
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c '$(BOOK_REQS)' > $(VENV)/book-requirements.txt
	$(PIP) -r $(VENV)/book-requirements.txt
	$(PIP) --no-deps -e .
	touch $@

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
STUDENT_EDITION = import sys; from hingeabl_nb.student import student_main; sys.exit(student_main(sys.argv[1:]))
book: $(VENV)/.installed-site
	$(if $(filter student,$(EDITION)),$(PY) -c '$(STUDENT_EDITION)' --src nbs --dest _student --check $(STUDENT_FLAGS))
	$(PY) book/build_book.py --src $(COURSE) --dest _site

# Open _site/ in headless Chromium (the one tools/resources.py finds) and check what a reader sees.
check-site: install-book
	$(PY) book/check_site.py --site _site --nbs nbs

# Install a Chromium for the browser checks: as root on Debian, Debian's package (apt-get);
# otherwise Playwright's own, in ~/.cache/ms-playwright. Nothing else installs a browser.
browser: install-book
	PYTHON=$(PY) bash book/install_browser.sh

# Re-DocRED dev/test and the MiniLM encoder into $(SHARED) (../shared: where the library,
# the tests and the GPU session look), each file checked against its recorded SHA-256;
# needs internet (GitHub and PyPI's file host). CI's test workflow runs it.
data: install
	$(VENV)/bin/hingeabl-download $(SHARED)/data/redocred --splits dev test
	$(VENV)/bin/hingeabl-download $(SHARED)/models/minilm-l6-h384-uncased --minilm

# JupyterLab with the widget front-end, opened on the course (as root, e.g. in a container:
# --allow-root); EDITION=student opens the student edition instead of nbs/ (the solutions).
JUPYTER_FLAGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)
jupyter: install-jupyter $(if $(filter student,$(EDITION)),student)
	$(VENV)/bin/jupyter lab $(JUPYTER_FLAGS) $(COURSE)/

# The GPU session (tools/gpu_session.py): the folder carried to the GPU machine (data,
# encoder, any wheels in .whl/; refused over 60 MiB), and the session rehearsed on the CPU.
# Without ../shared the carry holds the packaged sample and the tiny encoder (rehearsal only).
gpu-carry: install
	$(PY) tools/gpu_session.py carry

gpu-rehearsal: install gpu-carry
	$(PY) tools/gpu_session.py rehearse

clean:
	rm -rf $(VENV) build dist *.egg-info _student _site
