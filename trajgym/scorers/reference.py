"""The reference run of a scenario variation: its reference solution played on a fresh world.

The oracle plays the scenario's ``reference`` (and, when the customer changed their mind in the
trajectory, the goal change's ``reference`` from that point on) against the scripted customer and
supervisor, in a new episode of the same scenario and seed. Its final world is what a correct
trajectory of this variation should end in; its length is what a correct trajectory costs.

Why the injected tool faults stay on: a reference may declare a ``fallback`` for a call the
scenario's faults block for good (an outage for the whole episode), and its goal expects that
fallback's result (steps undone, the case handed over). Replayed without faults, such a reference
would reach the opposite of its goal. Transient faults do not change where the oracle ends up, only
how many retries it takes. A goal change that did *not* fire in the trajectory is switched off in
the reference run (probability 0, so no other fault's random stream moves), so both are judged
against the same goal.

Tool-use scenarios run their reference in a sandbox like any episode of theirs (bubblewrap,
``unshare`` without it): the reference's check result is replayed, not assumed. Runs are cached per
(scenario file, seed, goal changes that fired) in the scoring context.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from trajgym.agents import OracleAgent, default_agent
from trajgym.agents.base import Agent
from trajgym.envs.core import Episode
from trajgym.rollout.episode import play
from trajgym.scenario.loader import ScenarioInstance
from trajgym.scenario.schema import GoalChange
from trajgym.scorers.base import ScoringContext
from trajgym.trajectory.schema import Trajectory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReferenceRun:
    """What the reference solution does on a fresh copy of a variation's world."""

    final_state: dict[str, Any]
    success: bool
    """Whether the reference run met its own goal (a scenario whose reference fails is broken)."""
    conditions: list[dict[str, Any]]
    support_actions: int
    """Actions (turns) the support role took, retries after faults included."""
    support_calls: int
    goal_changed: bool
    termination: str


def reference_run(ctx: ScoringContext, traj: Trajectory) -> ReferenceRun:
    """The reference run for ``traj``'s variation, computed once per scoring context."""
    fired = tuple(sorted({f.index for f in traj.faults if f.kind == "customer_goal_change"}))
    key = f"rules.reference\0{traj.scenario_path}\0{traj.seed}\0{fired}"
    run: ReferenceRun = ctx.memo(key, lambda: play_reference(ctx.instance(traj), frozenset(fired)))
    return run


def play_reference(inst: ScenarioInstance, goal_changes: frozenset[int]) -> ReferenceRun:
    """Play the oracle on a fresh episode of ``inst``, with only the goal changes ``goal_changes``
    (indices in the scenario's faults) able to fire."""
    faults = [f.model_copy(update={"probability": 0.0}) if isinstance(f, GoalChange) and i not in goal_changes
              else f for i, f in enumerate(inst.spec.faults)]
    variant = dataclasses.replace(inst, spec=inst.spec.model_copy(update={"faults": faults}))
    agents: dict[str, Agent] = {role: OracleAgent() if role == "support" else default_agent(role)
                                for role in variant.spec.roles}
    episode = play(Episode(variant), agents)
    outcome = episode.outcome
    support = [s for s in episode.steps if s["role"] == "support"]
    run = ReferenceRun(
        final_state=outcome["final_state"], success=bool(outcome["success"]), conditions=outcome["conditions"],
        support_actions=len(support), support_calls=sum(len(s["tool_calls"]) for s in support),
        goal_changed=outcome["goal_changed_at"] is not None, termination=str(episode.termination))
    if not run.success:
        log.warning("the reference solution of %s (seed %d) does not meet its goal (conditions %s, ending %s): "
                    "the scenario is broken; scores that compare with it are unreliable", inst.id, inst.seed,
                    [c for c in run.conditions if not c["ok"]], run.termination)
    if run.goal_changed != bool(goal_changes):
        log.warning("%s (seed %d): the reference run's goal change %s, unlike the episode's; its final world "
                    "answers another goal", inst.id, inst.seed, "fired" if run.goal_changed else "did not fire")
    return run
