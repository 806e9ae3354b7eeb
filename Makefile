# Stageflow — `make run` serves on 127.0.0.1:8080, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint format bench bench-peers clean install

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/stageflow serve

test: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist loadfile --cov=stageflow --cov-report=term:skip-covered -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check service tests bench migrations
	$(BIN)/ruff format --check service tests bench migrations
	$(BIN)/lint-imports
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format service tests bench migrations
	$(BIN)/ruff check --fix service tests bench migrations

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-peers: $(STAMP)
	$(BIN)/python -m bench --peers $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache .coverage
