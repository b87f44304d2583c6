"""Episodes of several policies on the same seeds: every one is scored, none shadows another, and they
are ranked together within each scenario variation."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from trajgym.cli.main import main
from trajgym.scorers.config import load_scoring_config
from trajgym.scorers.pipeline import Scoring, score_files
from trajgym.trajectory import iter_scored, policy_id, read
from trajgym.trajectory.scored import ScoredTrajectory

SCENARIOS = ["refund_damaged_item", "large_refund_needs_approval"]
EPISODES = 3


def _support(rec: ScoredTrajectory) -> str:
    return next(a.name for a in rec.trajectory.agents if a.role == "support")


@pytest.fixture(scope="module")
def two_policies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``a``: the oracle's episodes, ``b``: the random agent's on the same seeds, ``c``: both files'
    bytes one after the other."""
    root = tmp_path_factory.mktemp("policies")
    files = {}
    for name, agent in (("a", "oracle"), ("b", "random")):
        files[name] = root / f"{name}.jsonl"
        assert main(["rollout", *SCENARIOS, "--agent", agent, "--episodes", str(EPISODES), "--out", str(files[name]),
                     "--no-progress"]) == 0
    files["c"] = root / "c.jsonl"
    files["c"].write_bytes(files["a"].read_bytes() + files["b"].read_bytes())
    return files


def _policies(path: Path) -> dict[str, set[str]]:
    """scenario id -> the policies of its episodes in a trajectory file."""
    out: dict[str, set[str]] = defaultdict(set)
    for t in read(path):
        out[t.scenario_id].add(t.policy)
    return dict(out)


def test_every_episode_of_two_policies_on_the_same_seeds_is_scored_and_ranked(
        two_policies: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    assert main(["score", str(two_policies["c"]), "--out", str(out), "--no-progress"]) == 0
    records = list(iter_scored(out))
    n = len(SCENARIOS) * EPISODES * 2
    assert len(records) == n, "an episode of one policy shadowed the other's on the same seed"
    assert len({r.trajectory.episode_id for r in records}) == n
    keys = {(r.trajectory.scenario_id, r.trajectory.seed, r.trajectory.trial, r.trajectory.policy) for r in records}
    assert len(keys) == n
    assert all(r.excluded is None and r.total is not None for r in records)
    # the policy is a hash of the agents' identities, not of how they were reached or the persona drawn
    for r in records:
        assert r.trajectory.policy == policy_id([a.model_dump() for a in r.trajectory.agents])
    groups: dict[str, list[ScoredTrajectory]] = defaultdict(list)
    for r in records:
        assert r.group == f"{r.trajectory.scenario_id}@{r.trajectory.seed}"
        groups[r.group].append(r)
    assert len(groups) == len(SCENARIOS) * EPISODES
    differ = 0
    for group in groups.values():
        assert sorted(_support(r) for r in group) == ["oracle", "random"]
        assert [r.group_size for r in group] == [2, 2]
        assert sorted(r.rank or 0 for r in group) == [1, 2]
        oracle, rand = sorted(group, key=lambda r: _support(r) != "oracle")
        assert oracle.total is not None and rand.total is not None
        if oracle.total != rand.total:
            differ += 1
            assert oracle.total > rand.total and (oracle.rank, rand.rank) == (1, 2)
    assert differ, "the random agent tied the oracle everywhere: the ranking was not exercised"


def test_the_python_api_scores_both_policies(two_policies: dict[str, Path], tmp_path: Path) -> None:
    a, b = _policies(two_policies["a"]), _policies(two_policies["b"])
    assert set(a) == set(b) == set(SCENARIOS)
    assert all(len(a[s]) == len(b[s]) == 1 and a[s] != b[s] for s in SCENARIOS)
    config, scorers = load_scoring_config(None)
    out = tmp_path / "api.jsonl"
    summary = score_files([two_policies["c"]], out, Scoring(config, scorers), workers=1)
    records = list(iter_scored(out))
    assert summary.scored == len(records) == len(SCENARIOS) * EPISODES * 2
    by_scenario: dict[str, list[str]] = defaultdict(list)
    for r in records:
        by_scenario[r.trajectory.scenario_id].append(r.trajectory.policy)
    for s in SCENARIOS:
        assert set(by_scenario[s]) == a[s] | b[s]
        assert by_scenario[s].count(next(iter(a[s]))) == EPISODES
