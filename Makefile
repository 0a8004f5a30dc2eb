# Every target bootstraps its own virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint typecheck check proto docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## run the one-command demo (embedded broker, SQLite, simulated plant, web UI)
	$(BIN)/andon demo

test: $(STAMP)  ## the whole test suite, lint and type checks included
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: $(STAMP)  ## everything but the slow chaos and soak tests
	$(BIN)/pytest -m 'not slow' $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

proto: $(STAMP)  ## regenerate the Sparkplug B protobuf module
	cd src/andon/sparkplug && PATH=../../../$(BIN):$$PATH ../../../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --mypy_out=. sparkplug_b.proto

docs: $(STAMP)  ## regenerate docs/configuration.md from the declared settings
	$(BIN)/andon settings-doc --readme README.md > docs/configuration.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
