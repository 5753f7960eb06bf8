# FedFleet: `make demo` sets up .venv and runs the quickstart; `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast bench lint clean

install: $(STAMP)

# torch first and exactly pinned: a plain `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/fedfleet run scenarios/quickstart.yaml --name quickstart --overwrite

test: install
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: install
	$(PY) -m pytest -q -m "not ray and not slow and not browser"

# Lint gate: ruff (rules in pyproject's [tool.ruff.lint]) and mypy ([tool.mypy]).
lint: install
	$(PY) -m ruff check simulator dashboards tests benchmarks
	$(PY) -m mypy simulator dashboards

bench: install
	$(PY) -m benchmarks.run_all

clean:
	rm -rf runs .pytest_cache build *.egg-info
