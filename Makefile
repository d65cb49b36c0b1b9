# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Both create .venv, install the package with its dependencies, then run.
VENV  ?= .venv
PY    := $(VENV)/bin/python
# CPU build of PyTorch; override on a GPU machine, e.g. `make test TORCH=torch`.
TORCH ?= torch==2.13.0

.PHONY: install demo test clean execute student check-outputs

$(VENV)/.installed: setup.py settings.ini
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	PATH="$(abspath $(VENV))/bin:$$PATH" bash tools/demo.sh

test: install
	PATH="$(abspath $(VENV))/bin:$$PATH" bash tools/test_all.sh

# Contributors: execute every notebook in place (CPU; #| slow/gpu cells skipped), then nbdev_clean.
execute: install
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) tools/execute_nbs.py $(if $(NB),--only $(NB))

check-outputs: install
	$(PY) tools/check_outputs.py

# Student edition: the notebooks without their solution cells, in _student/.
student: install
	$(PY) tools/make_student.py --src nbs --dest _student

clean:
	rm -rf $(VENV) build dist *.egg-info _student _site
