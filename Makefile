# The two commands a new user needs: `make run` (the hub on its embedded default) and `make test`.
PYTHON ?= python3
# `make run PORT=8001` (or HASHFED_PORT=8001) serves on another port; the first `make run` fixes the hub's name.
PORT ?= $(or $(HASHFED_PORT),8000)
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="--clock=2031-01-01"`.
PYTEST_ARGS ?=
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "hashfed needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.hub-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[hub,partner,match]'
	@touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.hub-installed

run: $(VENV)/.hub-installed
	$(BIN)/hashfed init --base-url $(or $(HASHFED_BASE_URL),http://127.0.0.1:$(PORT))
	$(BIN)/hashfed serve --port $(PORT)

test: $(VENV)/.test-installed
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check hub partners audit migrations tests benchmarks
	$(BIN)/mypy hub partners audit
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
