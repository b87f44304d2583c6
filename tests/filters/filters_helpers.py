"""Helpers of the filter tests (a module of its own: conftest files are not for importing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trajgym.scorers.base import Blame
from trajgym.trajectory.schema import Trajectory
from trajgym.trajectory.scored import ScoredTrajectory, group_key

Rollout = Callable[..., Trajectory]
MakeScored = Callable[..., ScoredTrajectory]


def scored(traj: Trajectory, total: float | None = 1.0, *, success: bool | None = None, blame: Blame | None = None,
           rank: int | None = None, excluded: str | None = None, source: str = "",
           scores: dict[str, Any] | None = None) -> ScoredTrajectory:
    """A scored record of ``traj`` with the given verdicts (success defaults to total == 1; an
    excluded episode is blamed on the infrastructure, as the scoring pipeline does)."""
    if success is None and total is not None:
        success = total == 1.0
    if excluded is not None and blame is None:
        blame = "infrastructure"
    return ScoredTrajectory(trajectory=traj, source=source, scores=scores or {}, total=total, success=success,
                            blame=blame, excluded=excluded, group=group_key(traj), rank=rank)


def with_actions(traj: Trajectory, actions: list[str], *, scenario: str | None = None,
                 episode: str | None = None) -> Trajectory:
    """A copy of ``traj`` whose agent (support) took exactly ``actions``, after the customer's
    opening: ``say`` a message, ``malformed`` an invalid action, any other name a tool call."""
    copy = traj.model_copy(deep=True)
    opening = copy.steps[0]
    template = next(s for s in copy.steps if s.role == "support" and s.tool_calls)
    call = template.tool_calls[0]
    steps = [opening]
    for turn, action in enumerate(actions, 1):
        step = template.model_copy(deep=True, update={"turn": turn, "tool_calls": [], "message": None, "error": None})
        if action == "say":
            step.message = f"message {turn}"
        elif action == "malformed":
            step.error = "an action is the JSON of an assistant message"
        else:
            step.tool_calls = [call.model_copy(update={"name": action, "arguments": {"turn": turn}})]
        steps.append(step)
    copy.steps = steps
    if scenario is not None:
        copy.scenario_id = scenario
    if episode is not None:
        copy.episode_id = episode
    return copy
