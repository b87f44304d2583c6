"""On oracle and random rollouts of every shipped scenario, the oracle ranks above random in every
group (scenario variation), and pass^k is computed per scenario."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from trajgym.rollout.agentspec import AgentSpec
from trajgym.rollout.jobs import run_job
from trajgym.rollout.runner import plan
from trajgym.scenario import builtin_scenarios
from trajgym.scorers.config import load_scoring_config
from trajgym.scorers.pipeline import Scoring, score_files
from trajgym.trajectory.scored import iter_scored
from trajgym.world.loader import load

pytestmark = pytest.mark.slow


def test_oracle_ranks_above_random_in_every_group(tmp_path: Path) -> None:
    templates = [load(p) for p in builtin_scenarios().values()]
    files = []
    for agent in ("oracle", "random"):
        files.append(tmp_path / f"{agent}.jsonl")
        run_job(plan(templates, episodes=2, seed=11), files[-1], AgentSpec.support(agent), fsync=False)
    config, scorers = load_scoring_config(None)  # the default rule-based scorers
    summary = score_files(files, tmp_path / "scored.jsonl", Scoring(config, scorers))
    groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for rec in iter_scored(tmp_path / "scored.jsonl"):
        assert rec.excluded is None and rec.rank is not None
        agent = "oracle" if rec.source.startswith(str(files[0])) else "random"
        groups[rec.group][agent].append(rec.rank)
        if agent == "oracle":
            assert rec.success, f"{rec.group}: the oracle failed: {rec.scores}"
    assert len(groups) == 2 * len(templates)
    for group, by_agent in groups.items():
        assert by_agent["oracle"] == [1], group
        assert min(by_agent["random"]) > 1, f"{group}: random tied with or beat the oracle"
    assert set(summary.pass_k) == {t.id for t in templates}
    for scenario, ks in summary.pass_k.items():
        assert sorted(ks) == [1, 2], scenario  # two trials per variation (one per agent)
        assert 0.0 <= ks[2] <= ks[1] <= 1.0
        assert ks[1] >= 0.5  # the oracle's half always succeeds
