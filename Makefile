# The two commands: `make run` starts the whole stack, `make test` runs the tests.
# Each sets up its own virtualenv from uv.lock first; only Python 3.11+ is needed.

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: run test bench lint migrate check-migrations setup

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --quiet
	@touch $@

setup: $(VENV)/.synced

run: setup
	$(VENV)/bin/python -m cli run

test: setup
	$(VENV)/bin/python -m tests.run $(ARGS)

bench: setup
	$(VENV)/bin/python -m bench.run $(ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

migrate: setup
	$(VENV)/bin/alembic upgrade head
