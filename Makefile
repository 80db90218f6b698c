# returnbridge — the two commands a fresh clone needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP_RUN  := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

export PREFECT_HOME := $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: install demo serve test lint typecheck pytest postgres chromium bench clean

# Installing says one line; pip says only its errors (-qq: no progress, notices or warnings).
PIP_INSTALL = $(BIN)/python -m pip install --quiet --quiet

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV)
	@$(PIP_INSTALL) --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	@echo "installing returnbridge into $(VENV) …"
	@$(PIP_INSTALL) -e .
	@touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	@echo "installing returnbridge and its test tools into $(VENV) …"
	@$(PIP_INSTALL) -e '.[test]'
	@touch $@ $(STAMP_RUN)

install: $(STAMP_RUN)

demo: $(STAMP_RUN)
	$(BIN)/returnbridge demo

# returnbridge for real on this machine: a Prefect server, every deployment, the receiver.
serve: $(STAMP_RUN)
	$(BIN)/returnbridge serve

test: $(STAMP_TEST) lint typecheck pytest

lint: $(STAMP_TEST)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP_TEST)
	$(BIN)/mypy

pytest: $(STAMP_TEST) postgres chromium
	$(BIN)/pytest -q

# The ledger tests start their own PostgreSQL server: its binaries must be installed.
postgres:
	scripts/ensure-postgres

# The month-end report's browser test renders the HTML in headless Chromium (Debian's package,
# driven by Playwright); without one it skips and says why.
chromium:
	scripts/ensure-chromium

bench: $(STAMP_TEST)
	$(BIN)/python -m bench.centra_reads
	$(BIN)/python -m bench.reveni_listing
	$(BIN)/python -m bench.sync_budget
	$(BIN)/python -m bench.sync_economy
	$(BIN)/python -m bench.sync_latency
	$(BIN)/python -m bench.serve_latency
	$(BIN)/python -m bench.reconcile_scale
	$(BIN)/python -m bench.month_end --month 2026-07 --month 2026-10

clean:
	rm -rf $(VENV) .prefect .pytest_cache .mypy_cache .ruff_cache
