# Two entry points: `make run` (install + main job on the embedded defaults) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test verify lint clean

$(BIN)/llmrec: pyproject.toml scripts/setup_env.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup_env.sh
	@touch $@

install: $(BIN)/llmrec

run: install
	$(BIN)/llmrec demo

test: install
	$(BIN)/python -m pytest -q

# Replay every committed study that kept per-user results (eval/results/<name>/users.jsonl.gz) with this checkout's
# code: `llmrec eval CONFIG --verify`. Studies made before reports kept them are listed, not replayed; an LLM arm
# whose adapter was retired from the package (adapters/README.md) is skipped with its recipe named; a knowledge probe
# (its models are not fetched in CI) is listed with its replay command.
verify: install
	@status=0; for config in eval/*.yaml; do \
		name=$$(sed -n 's/^name: *//p' $$config | head -1); \
		if grep -q "kind: knowledge_probe" $$config; then \
			echo "$$name: a knowledge probe of base models CI does not fetch (7 GB); replay it: llmrec eval $$config --verify"; \
		elif [ -f eval/results/$$name/users.jsonl.gz ]; then \
			$(BIN)/llmrec eval $$config --verify --no-progress || status=1; \
		else \
			echo "$$name: not replayable (made before reports kept per-user results; re-run: llmrec eval $$config)"; \
		fi; \
	done; exit $$status

lint: install
	$(BIN)/ruff check llmrec tests eval
	$(BIN)/mypy llmrec --ignore-missing-imports

clean:
	rm -rf $(VENV) build *.egg-info
