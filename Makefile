# One task runner. `make demo` and `make test` set everything up themselves on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv demo test test-all test-faults ui bench lint format clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## Create .venv and install the hub with pinned dependencies

demo: $(STAMP) ## Set up, then run one night of the main job on SQLite against the local KIS sandbox
	$(BIN)/hub demo

test: $(STAMP) ## Set up, then run the test suite (PostgreSQL tests run when HUB_TEST_PG_URL is reachable)
	$(BIN)/pytest -m "not slow"

test-all: $(STAMP) ## Every test, the slow ones included
	$(BIN)/pytest

test-faults: $(STAMP) ## The long fault matrix (kill seeds, backlog)
	$(BIN)/pytest -m slow tests/faults

ui: $(STAMP) ## Dagster webserver + daemon on the project definitions
	$(BIN)/hub ui

bench: $(STAMP) ## Performance goals (each script prints its figure and goal last, exits non-zero on a miss)
	@set -e; for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script; done

lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy crm_core hub connectors mappings

format: $(STAMP) ## Format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## Remove the virtualenv and local state
	rm -rf $(VENV) .hub .dagster_home .pytest_cache .mypy_cache .ruff_cache
