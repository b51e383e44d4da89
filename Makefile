# Everything sets itself up from nothing: a fresh machine needs only Python 3.11 and the package index.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME := $(CURDIR)
export HALO_SYNC_STORAGE_DIR := $(CURDIR)/.dagster_home
SANDBOX_DIR := $(CURDIR)/.sandbox

# Each target installs the package with the extras it needs (pyproject.toml), every version pinned by
# requirements.lock, which covers all extras. A production image installs the core only (README).
DEMO_EXTRAS := sandbox
DEV_EXTRAS := sandbox,ui
TEST_EXTRAS := sandbox,ui,dev

.PHONY: check demo test test-fast dev venv bench screenshot lock clean

# One stamp per set of extras: `make demo` on a fresh clone does not pull the webserver or pytest.
$(VENV)/.installed-%: requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e '.[$*]'
	touch $@

venv: $(VENV)/.installed-$(TEST_EXTRAS)

## make demo: sandbox with the example estate, a live halo_sync_apply against it, a summary.
demo: $(VENV)/.installed-$(DEMO_EXTRAS)
	mkdir -p $(HALO_SYNC_STORAGE_DIR)
	$(PY) -m halo_sync_pipeline.devenv.demo --state-dir $(SANDBOX_DIR)/demo

## make test: the whole suite (unit, sandbox over HTTPS, Dagster, webserver end to end, PostgreSQL).
test: $(VENV)/.installed-$(TEST_EXTRAS) check
	$(PY) -m pytest -q

## make check: the quality gates (ruff lint, ruff format check, mypy on halo_sync_pipeline/); part of make test.
check: $(VENV)/.installed-$(TEST_EXTRAS)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## make test-fast: the unit tests only (no sandbox servers, Dagster runs, webserver or PostgreSQL).
test-fast: $(VENV)/.installed-$(TEST_EXTRAS)
	$(PY) -m pytest -q -m "not slow"

## make dev: the sandbox plus the Dagster UI on workspace.yaml, pointed at the sandbox.
dev: $(VENV)/.installed-$(DEV_EXTRAS)
	mkdir -p $(HALO_SYNC_STORAGE_DIR)
	$(PY) -m halo_sync_pipeline.devenv.dev --state-dir $(SANDBOX_DIR)/dev

## make screenshot: retake docs/lineage.png and docs/tenant_review.png from a running UI (installs Debian's chromium if missing).
# Needs the UI, the sandbox, tests/e2e/helpers.py's GraphQL client and websockets (the dev extra).
screenshot: $(VENV)/.installed-$(TEST_EXTRAS)
	$(PY) scripts/screenshot_lineage.py

bench: $(VENV)/.installed-$(DEMO_EXTRAS)
	$(PY) benchmarks/bench_rules.py

lock:
	$(VENV)/bin/pip install --quiet uv && $(VENV)/bin/uv pip compile pyproject.toml --all-extras -p 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .dagster_home .sandbox .pytest_cache
