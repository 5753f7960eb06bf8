# FedFleet: `make demo` sets up .venv and runs the quickstart; `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LOG    := $(VENV)/install.log
# Quiet pip: no version check, no root warning; its full output goes to $(LOG), shown on failure.
PIP    := $(PY) -m pip --disable-pip-version-check --no-input -q
export PIP_ROOT_USER_ACTION := ignore
QUIET   = >>$(LOG) 2>&1 || { cat $(LOG); echo "install failed; full log: $(LOG)"; exit 1; }

.PHONY: install demo test test-fast bench lint clean

install: $(STAMP)

# torch first and exactly pinned: a plain `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	@echo "installing FedFleet into $(VENV) (first time: a few minutes; log: $(LOG))"
	@$(PYTHON) -m venv $(VENV) && : > $(LOG)
	@$(PIP) install --upgrade pip $(QUIET)
	@$(PIP) install torch==2.13.0 $(QUIET)
	@$(PIP) install -c constraints.txt -e ".[test,export,data]" $(QUIET)
	@touch $(STAMP)

demo: install
	@$(VENV)/bin/fedfleet run scenarios/quickstart.yaml --name quickstart --overwrite

test: install
	$(PY) -m pytest -q -p no:cacheprovider --durations=10

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
