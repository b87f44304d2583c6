"""Helpers of the scorer tests: scenario variables to write support scripts with, and scoring."""

from __future__ import annotations

from typing import Any

from trajgym.scenario.catalog import resolve
from trajgym.scorers import ScoreResult, ScoringContext, get_scorer
from trajgym.trajectory import Trajectory
from trajgym.world.loader import load


def variables(scenario: str, seed: int = 0) -> dict[str, Any]:
    """The variables drawn for ``scenario`` on ``seed`` (what the customer will say)."""
    return load(resolve(scenario)).instantiate(seed).variables


def score(name: str, traj: Trajectory, ctx: ScoringContext | None = None, **options: Any) -> ScoreResult | None:
    return get_scorer(name)(**options).score(traj, ctx or ScoringContext())


def scored(name: str, traj: Trajectory, ctx: ScoringContext | None = None, **options: Any) -> ScoreResult:
    """The scorer's result, which must apply to ``traj``."""
    result = score(name, traj, ctx, **options)
    assert result is not None, f"scorer {name} does not apply to {traj.scenario_id}"
    return result
