# evpark — the two commands:  `make up`  (whole system, embedded defaults)  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# make test runs test files side by side (pytest-xdist; every test uses its own database, vhost,
# topic root and ports): one worker per core, at most 4, a file's tests on one worker and every end-to-end
# test on the same one (tests/conftest.py). PYTEST_WORKERS=0 runs them one by one.
PYTEST_WORKERS ?= auto

.PHONY: up demo test lint typecheck unit services install bench soak clean

up: $(STAMP)            ## run broker, edge, services and gateway on this machine
	$(BIN)/evpark up $(ARGS)

demo: $(STAMP)          ## the same, plus 3 simulated chargers that keep charging
	$(BIN)/evpark up --demo 3 $(ARGS)

test: $(STAMP) services lint typecheck   ## the full suite: lint, types, unit, integration, end-to-end
	$(BIN)/pytest -n $(PYTEST_WORKERS) --maxprocesses 4 $(PYTEST_ARGS)

lint: $(STAMP)          ## ruff, and the import rules of ARCHITECTURE.md (import-linter, pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)          ## only the fast tests that need no service
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

services:               ## make sure PostgreSQL, Redis, RabbitMQ and Mosquitto run (installs them if missing)
	@scripts/services.sh

install: $(STAMP)

$(STAMP): pyproject.toml
	@scripts/ensure-python.sh $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

bench: $(STAMP) services ## benchmarks under bench/, printing their figures
	@for b in bench/bench_*.py; do [ -e "$$b" ] || continue; echo "== $$b"; $(BIN)/python $$b || exit 1; done

soak: $(STAMP) services  ## long fault and soak runs (minutes)
	$(BIN)/pytest -m soak -o addopts="" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .evpark .pytest_cache .mypy_cache .ruff_cache
