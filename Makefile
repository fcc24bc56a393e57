# Every target creates .venv and installs the pinned dependencies first, so a fresh clone needs
# nothing but Python 3.11.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SAFAR_HOME ?= $(CURDIR)/data

.PHONY: setup demo test lint bench clean
LINT_HOME := $(CURDIR)/.venv/lint-home

$(STAMP): pyproject.toml requirements.lock tests/js/package-lock.json
	@command -v $(PY) >/dev/null || { echo "error: $(PY) not found; install Python 3.11" >&2; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	$(BIN)/safar extensions install
	cd tests/js && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/safar demo

test: lint
	$(BIN)/python -m pytest -q

# Python style, SQL style, and the dbt conventions (naming per layer, keys, descriptions), which
# dbt-bouncer checks on the manifest that `dbt parse` writes without touching a warehouse.
lint: $(STAMP)
	$(BIN)/ruff check safar dagster_project dashboards tests bench
	$(BIN)/ruff format --check safar dagster_project dashboards tests bench
	$(BIN)/sqlfluff lint dbt/models
	SAFAR_HOME=$(LINT_HOME) SAFAR_DUCKDB_EXTENSIONS=$(CURDIR)/$(VENV)/share/safar/duckdb_extensions \
	  $(BIN)/dbt parse --project-dir dbt --profiles-dir dbt --target-path target --quiet
	$(BIN)/dbt-bouncer run --config-file dbt-bouncer.yml

bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/gateway.py
	$(BIN)/python bench/analytics.py
	$(BIN)/python bench/segments.py
	$(BIN)/python bench/delivery.py

clean:
	rm -rf $(VENV) dbt/target dbt/logs
