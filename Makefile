# genrecall: two commands to start (README): `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 3000
PREFECT_PORT ?= 4200

# Telemetry of every tool off; tool state inside the workspace (see src/genrecall/env.py).
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export BENTOML_DO_NOT_TRACK := True
export DVC_NO_ANALYTICS := 1
export FEAST_USAGE := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PREFECT_HOME := $(CURDIR)/.state/prefect
export BENTOML_HOME := $(CURDIR)/.state/bentoml
export DVC_SITE_CACHE_DIR := $(CURDIR)/.state/dvc-site
# dvc.yaml's stages call `genrecall`: the venv's bin comes first on PATH, activated or not.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help venv run pipeline report lint format test test-fast serve bento schedule backfill constraints clean

help:
	@echo "make run    - create .venv, install, run the pipeline (dvc repro), print results, serve on 127.0.0.1:$(PORT)"
	@echo "make serve  - serve the production bundle (PORT=3000); the search page is http://127.0.0.1:$(PORT)/"
	@echo "make bento  - build a deployable Bento (service + genrecall wheel + production bundle); BUNDLE=tag|dir to pick one"
	@echo "make report - write reports/report.html (one self-contained file) and print its path"
	@echo "make test   - create .venv if missing, run make lint, then the test suite"
	@echo "make lint   - ruff check, ruff format --check and mypy (what CI runs first); make format fixes the first two"
	@echo "make schedule - Prefect server on 127.0.0.1:$(PREFECT_PORT) + the daily rebuild on its 03:00 cron (Ctrl-C stops both)"
	@echo "make constraints - re-freeze constraints.txt from the current venv"

# The venv is rebuilt when the dependency list or the constraints change.
$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

pipeline: venv
	$(BIN)/dvc repro
	$(BIN)/dvc push --quiet || echo "dvc push failed: outputs stay in the local cache only"

# The whole pipeline, the results table, the HTML report's path, then serve the promoted bundle and
# its search page (Ctrl-C stops it).
run: pipeline
	@$(BIN)/genrecall summary
	@$(BIN)/genrecall report
	$(BIN)/genrecall serve --port $(PORT)

# reports/report.html from what the pipeline (and the daily rebuild) wrote; prints its path.
report: venv
	$(BIN)/genrecall report

# Serve the current production bundle without rebuilding anything.
serve: venv
	$(BIN)/genrecall serve --port $(PORT)

# A deployable Bento in the BentoML store (.state/bentoml): the service, the genrecall wheel built from this
# checkout, and the production bundle (BUNDLE=<tag or dir> for another) as a BentoML model. Then
# `bentoml serve <tag>` runs it anywhere the Bento's requirements are installed, and
# `bentoml containerize <tag>` makes an OCI image of it (docs/SERVING.md).
BUNDLE ?=
bento: venv
	$(BIN)/genrecall bento $(if $(BUNDLE),--bundle $(BUNDLE))

# The daily rebuild as a Prefect deployment on a daily cron (03:00 UTC). Starts a Prefect server on
# 127.0.0.1:$(PREFECT_PORT) (database in .state/prefect; UI at that address) unless PREFECT_API_URL
# names one, and runs the scheduled flow runs. Ctrl-C stops the runner, then the server.
schedule: venv
	$(BIN)/python -m flows.serve_schedule --workspace . --cron "0 3 * * *" --port $(PREFECT_PORT)

# Run the daily rebuild for the next DAYS simulated days (after `make run`'s pipeline).
DAYS ?= 1
backfill: venv
	$(BIN)/genrecall backfill --days $(DAYS)

# The house checks (rules and settings in pyproject.toml): CI fails on a lint, format or type error.
LINT_PATHS := src tests flows bento benchmarks feature_repo
lint: venv
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

# Apply the fixes ruff can make safely, then format.
format: venv
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)

test: venv lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: venv
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

constraints: venv
	{ head -n 2 constraints.txt; $(BIN)/pip freeze | grep -v -e '^-e' -e '^genrecall' | sed 's/+cpu$$//'; } > constraints.tmp && mv constraints.tmp constraints.txt

clean:
	rm -rf data models reports plots .state
