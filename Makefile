# The two commands of the README: `make demo` and `make test`. Both create the virtualenv and
# install what is missing (Python packages here; Debian packages via `replicator stack up` as root).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install bytecode demo test lint unit integration down clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,dev]'
	@touch $(STAMP)

# Our modules' bytecode, as an installed package has it: the editable install writes none, and under
# PYTHONDONTWRITEBYTECODE=1 every replicator process would compile every module again (up to date
# files are skipped).
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q replicator connectors

install: bytecode

demo: bytecode
	$(BIN)/replicator stack demo

lint: bytecode
	$(BIN)/ruff check replicator connectors tests
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

unit: bytecode
	$(BIN)/pytest tests/unit

integration: bytecode
	$(BIN)/pytest tests/integration

down: $(STAMP)
	$(BIN)/replicator stack down
	$(BIN)/replicator stack down --run-dir .stack-test

clean: down
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
