# DataBourse — developer entry points. Only Python 3.11+ is needed on the machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: venv migrate seed run test lint bench clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

migrate: venv
	$(BIN)/databourse db upgrade

seed: migrate
	DATABOURSE_PUBLIC_URL=http://$(HOST):$(PORT) $(BIN)/databourse demo seed

run: seed
	DATABOURSE_DEMO_UPSTREAM=true DATABOURSE_DEMO_NODES=true DATABOURSE_PUBLIC_URL=http://$(HOST):$(PORT) \
		$(BIN)/databourse serve --host $(HOST) --port $(PORT)

test: venv
	$(BIN)/databourse db upgrade
	$(BIN)/databourse demo seed
	$(BIN)/python -m pytest -q -n auto --dist worksteal

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src/databourse

bench: venv
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
