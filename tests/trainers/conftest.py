"""Fixtures of the trainer tests: real oracle (and random) episodes, one per domain, scored by the
real pipeline; the bundled model's tokenizer (the ``train`` extra: skipped without it)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from trainers_helpers import SCENARIOS

from trajgym.rollout.agentspec import AgentSpec
from trajgym.rollout.episode import run_episode
from trajgym.rollout.jobs import run_job
from trajgym.rollout.runner import agents_for, plan
from trajgym.scenario.catalog import resolve
from trajgym.scorers.config import load_scoring_config
from trajgym.scorers.pipeline import Scoring, score_files
from trajgym.trajectory.schema import Trajectory
from trajgym.world.loader import load

# Without the train extra the test modules skip (pytest.importorskip); .ci/run installs it and sets
# TRAJGYM_REQUIRE_TRAIN=1, and then a missing package fails the run instead of skipping its tests.
_MISSING = [m for m in ("torch", "transformers", "trl", "datasets", "peft") if importlib.util.find_spec(m) is None]
if _MISSING and os.environ.get("TRAJGYM_REQUIRE_TRAIN") == "1":
    raise pytest.UsageError(f"TRAJGYM_REQUIRE_TRAIN=1 but {', '.join(_MISSING)} not installed: run `make train-setup`")


@pytest.fixture(scope="session")
def oracle_episodes() -> dict[str, Trajectory]:
    """scenario id -> the oracle's episode on seed 7."""
    out = {}
    for sid in SCENARIOS:
        template = load(resolve(sid))
        out[sid] = Trajectory.model_validate(run_episode(template, 7, agents_for(template, "oracle")))
    return out


@pytest.fixture(scope="session")
def scored_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Oracle and random support on every scenario of :data:`SCENARIOS`, one variation each (same
    seeds: oracle and random share groups), scored with the default scorers."""
    root = tmp_path_factory.mktemp("scored")
    templates = [load(resolve(s)) for s in SCENARIOS]
    files = []
    for agent in ("oracle", "random"):
        files.append(root / f"{agent}.jsonl")
        run_job(plan(templates, episodes=1, seed=7), files[-1], AgentSpec.support(agent), fsync=False)
    out = root / "scored.jsonl"
    score_files(files, out, Scoring(*load_scoring_config(None)))
    return out


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    """The bundled model's tokenizer, with its (serving) chat template."""
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from trajgym.serving.convert import convert_bundled_model

    return AutoTokenizer.from_pretrained(str(convert_bundled_model()))


@pytest.fixture(scope="session")
def tiny_model(converted_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama with random weights and the bundled model's tokenizer and chat template."""
    pytest.importorskip("transformers")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("tiny") / "model"
    config = AutoConfig.from_pretrained(converted_model)
    config.update({"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "head_dim": 16, "dtype": "float32"})
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copyfile(converted_model / name, folder / name)
    return folder
