"""The scored-trajectory file: one JSON line per episode, the original trajectory plus its scores.

``trajgym score IN.jsonl --out SCORED.jsonl`` writes these; the input file is never touched.
Filters, exports, the report and the trainers read them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from trajgym.scorers.base import Blame, ScoreResult
from trajgym.trajectory.schema import Trajectory

SCORED_VERSION: Literal[1] = 1


class ScoredTrajectory(BaseModel):
    """One scored episode."""

    model_config = ConfigDict(extra="forbid")

    scored_version: Literal[1] = SCORED_VERSION
    trajectory: Trajectory
    source: str = Field(default="", description="'<input file>:<line>' the trajectory was read from (episode ids "
                        "repeat across files, e.g. two agents' jobs with one seed)")
    scores: dict[str, ScoreResult | None] = Field(
        description="scorer name -> its result; None where the scorer does not apply to this episode")
    total: float | None = Field(description="weighted combination of the scores in [0, 1]; None when excluded")
    success: bool | None = Field(description="the outcome scorer's verdict; None when excluded or not scored")
    blame: Blame | None = Field(description="who caused the failure (infrastructure for an infra_error episode); None for a success")
    excluded: str | None = Field(default=None, description="why the episode is kept out of scoring (infra_error)")
    group: str = Field(description="the scenario variation, '<scenario_id>@<seed>': trials of one group are ranked")
    rank: int | None = Field(default=None, description="1 = best of its group; None when excluded")
    group_size: int = Field(default=1, description="scored (not excluded) episodes in the group")
    weights: dict[str, float] = Field(default_factory=dict, description="the weights the total was made with")
    scoring: dict[str, Any] = Field(default_factory=dict, description="scorer configs and the config file's hash")


def group_key(traj: Trajectory | dict[str, Any]) -> str:
    """The scenario variation of a trajectory: trials of one variation form a ranking group."""
    if isinstance(traj, Trajectory):
        return f"{traj.scenario_id}@{traj.seed}"
    return f"{traj['scenario_id']}@{traj['seed']}"
