# amp_sync: `make run` starts the app on the demo warehouse and the sandbox; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SANDBOX_PORT ?= 8766
APP_PORT ?= 8501
STAMP := $(VENV)/.installed

.PHONY: run test screenshots sandbox demo clean bench

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo/warehouse.duckdb: | $(STAMP)
	$(PY) -m amp_sync demo

demo: demo/warehouse.duckdb

# The sandbox runs beside the app and stops with it (Ctrl+C).
run: $(STAMP) demo/warehouse.duckdb
	@$(PY) -m amp_sync sandbox --port $(SANDBOX_PORT) & sandbox=$$!; \
	trap 'kill $$sandbox 2>/dev/null' EXIT INT TERM; \
	$(PY) -m streamlit run app.py --server.port $(APP_PORT)

sandbox: $(STAMP)
	$(PY) -m amp_sync sandbox --port $(SANDBOX_PORT)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest

# Figures, not pass/fail: see bench/README.md. Options: make bench BENCH_ARGS="--quick --reps 1".
bench: $(STAMP)
	$(PY) -m pip install --quiet -r requirements-bench.txt
	$(PY) -m bench.run $(BENCH_ARGS)

# The browser journeys save screenshots under tests/artifacts; the README shows these copies.
screenshots: $(STAMP)
	$(PY) -m pytest tests/e2e -q
	cp tests/artifacts/home.png tests/artifacts/destinations.png tests/artifacts/models.png \
	   tests/artifacts/syncs.png tests/artifacts/preview.png tests/artifacts/history.png \
	   tests/artifacts/syncs-events.png tests/artifacts/preview-events.png tests/artifacts/revert.png \
	   docs/screenshots/

clean:
	rm -rf $(VENV) .amp_sync demo/warehouse.duckdb .pytest_cache .ruff_cache .mypy_cache
