"""Fixtures of the review tests: a scored file of real oracle and random episodes, each variation
played by both (so every episode has a sibling to compare and pair with)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "report"))  # the shared DevTools client (chromium_cdp)

pytest.importorskip("aiohttp")
pytest.importorskip("jsonschema")

from trajgym.rollout.agentspec import AgentSpec
from trajgym.rollout.jobs import run_job
from trajgym.rollout.runner import plan
from trajgym.scenario.catalog import resolve
from trajgym.scorers.config import load_scoring_config
from trajgym.scorers.pipeline import Scoring, score_files
from trajgym.world.loader import load


def make_scored(folder: Path, scenarios: tuple[str, ...] = ("refund_damaged_item", "order_status_inquiry")) -> Path:
    """Oracle and random support on 2 variations of each scenario, interleaved by variation (the
    oracle's episode, then the random agent's), scored."""
    templates = [load(resolve(s)) for s in scenarios]
    units = plan(templates, episodes=2, seed=11)
    raw = {}
    for agent in ("oracle", "random"):
        raw[agent] = folder / f"{agent}.jsonl"
        run_job(units, raw[agent], AgentSpec.support(agent), fsync=False)
    both = folder / "episodes.jsonl"
    o, r = raw["oracle"].read_text().splitlines(), raw["random"].read_text().splitlines()
    both.write_text("".join(f"{a}\n{b}\n" for a, b in zip(o, r, strict=True)))
    out = folder / "scored.jsonl"
    score_files([both], out, Scoring(*load_scoring_config(None)))
    return out


@pytest.fixture
def scored(tmp_path: Path) -> Path:
    return make_scored(tmp_path)
