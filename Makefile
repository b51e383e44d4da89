# Everything sets itself up from nothing: a fresh machine needs only Python 3.11 and the package index.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)
export HALO_SYNC_STORAGE_DIR := $(CURDIR)/.dagster_home
SANDBOX_DIR := $(CURDIR)/.sandbox

.PHONY: demo test dev venv bench screenshot lock clean

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

## make demo: sandbox with the example estate, a live halo_sync_apply against it, a summary.
demo: $(STAMP)
	mkdir -p $(HALO_SYNC_STORAGE_DIR)
	$(PY) -m halo_sync_pipeline.demo --state-dir $(SANDBOX_DIR)/demo

## make test: the whole suite (unit, sandbox over HTTPS, Dagster, webserver end to end, PostgreSQL).
test: $(STAMP)
	$(PY) -m pytest -q

## make dev: the sandbox plus the Dagster UI on workspace.yaml, pointed at the sandbox.
dev: $(STAMP)
	mkdir -p $(HALO_SYNC_STORAGE_DIR)
	$(PY) -m halo_sync_pipeline.dev --state-dir $(SANDBOX_DIR)/dev

## make screenshot: retake docs/lineage.png and docs/tenant_review.png from a running UI (installs Debian's chromium if missing).
screenshot: $(STAMP)
	$(PY) scripts/screenshot_lineage.py

bench: $(STAMP)
	$(PY) benchmarks/bench_rules.py

lock:
	$(VENV)/bin/pip install --quiet uv && $(VENV)/bin/uv pip compile pyproject.toml --extra dev -p 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .dagster_home .sandbox .pytest_cache
