# reelrank: `make demo` runs the whole loop, `make test` runs the test suite.
# Both create or refresh .venv from the project's own files first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast lint format lock clean up down

install: $(STAMP)

# Re-installs when the requirements or the package metadata change. torch is installed first,
# pinned, so that nothing can pull a different (CUDA) build.
$(STAMP): requirements.in requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.in -c requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/reelrank demo

# Airflow, the MLflow UI and the BentoML champion on 127.0.0.1 (after `make demo`).
up: $(STAMP)
	$(BIN)/reelrank up

down: $(STAMP)
	$(BIN)/reelrank down

# duckdb's bindings print a list of "leaked" objects when the interpreter exits (a known
# nanobind shutdown-order report, not a leak of ours); it is filtered so the test summary
# stays the last thing printed. pipefail keeps pytest's exit status.
NOISE := '^ - (leaked |\.\.\. skipped remainder)|^nanobind: |nanobind\.readthedocs\.io'

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	set -o pipefail; $(BIN)/python -m pytest 2>&1 | { grep -v -E $(NOISE) || true; }

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not integration and not serving and not dags"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Re-resolve the pins from requirements.in in the current venv and write the lock file.
lock: $(STAMP)
	( echo "# Tested pins for 'pip install -r requirements.in -c requirements.lock' (Python 3.11)."; \
	  echo "# Regenerate after changing requirements.in: make lock"; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v -i '^reelrank' \
	    | sed 's/^torch==\([0-9.]*\)+cpu/torch==\1/' ) > requirements.lock

clean:
	rm -rf var
