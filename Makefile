# Everything runs from a local virtual environment that `make` creates on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test test-fast lint demo bench bench-quick check clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project with its dev tools

run: $(STAMP)  ## run the bot, the HTTP API and the scheduler (needs BOT_TOKEN in .env)
	$(PY) -m bot

test: $(STAMP)  ## the whole test suite (PostgreSQL tests skip if no server; required under CI=true)
	$(VENV)/bin/pytest

test-fast: $(STAMP)  ## everything but the tests marked slow: feedback in under a minute
	$(VENV)/bin/pytest -m "not slow"

lint: $(STAMP)  ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

demo: $(STAMP)  ## the whole story offline: emulator, bot, HTTP API, a scripted customer
	$(PY) -m bot demo

bench: $(STAMP)  ## every benchmark under bench/ on 200,000 generated members, then one table (see docs/BENCHMARKS.md)
	$(PY) -m bench.all

bench-quick: $(STAMP)  ## the same on 20,000 generated members, in about 6 minutes
	$(PY) -m bench.all --quick

check: $(STAMP)  ## verify the ledger in DATABASE_URL adds up
	$(PY) -m bot ledger check

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
