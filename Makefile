# Two entry points: `make run` (install + main job on the embedded defaults) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test lint clean

$(BIN)/llmrec: pyproject.toml scripts/setup_env.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup_env.sh
	@touch $@

install: $(BIN)/llmrec

run: install
	$(BIN)/llmrec demo

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check llmrec tests eval
	$(BIN)/mypy llmrec --ignore-missing-imports

clean:
	rm -rf $(VENV) build *.egg-info
