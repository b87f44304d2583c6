# trajgym: every target sets up .venv from scratch when it is missing or pyproject.toml changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JOBS   ?= 2

.PHONY: setup demo test test-quick lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Set up, then play every built-in scenario (3 variations each) with the oracle agent and print a summary.
demo: $(STAMP)
	@mkdir -p runs
	@rm -f runs/demo.jsonl
	$(BIN)/trajgym rollout --episodes 3 --seed 0 --out runs/demo.jsonl
	@echo "see an episode: $(BIN)/trajgym show runs/demo.jsonl"

# Set up, lint, type-check and run the whole test suite.
test: $(STAMP) lint
	$(BIN)/pytest -q -n $(JOBS)

# The edit-test loop: no lint, no slow tests (official API checkers over every scenario, fuzzing).
test-quick: $(STAMP)
	$(BIN)/pytest -q -m "not slow" -x

lint: $(STAMP)
	$(BIN)/ruff check trajgym tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/env_step.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache test-artifacts
