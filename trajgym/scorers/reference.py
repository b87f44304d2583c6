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

A goal change draws from the seed alone, so switching it off changes the reference run only where
the trajectory ended before the change's turn (or another change fired first): the reference then
plays a customer who never changes their mind, a path the scenario as written never takes, and it
may miss the episode's goal where the scenario's own reference does not (refund_then_exchange: the
customer who would have asked for the exchange leaves once the refund is offered). A reference run
that misses its goal is therefore played again as the scenario is written: only if that one fails
too is the scenario broken; otherwise the replay could not be matched to the episode
(``ReferenceRun.matched`` false), and the warning says so.

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
from trajgym.scenario.schema import GoalChange
from trajgym.scorers.base import ScoringContext
from trajgym.trajectory.schema import Trajectory
from trajgym.world.loader import ScenarioInstance

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
    matched: bool = True
    """False when the replay could not be matched to the episode: played with the episode's goal
    changes (those that did not fire switched off), the reference misses the goal the episode was
    judged against, while played as the scenario is written it meets its own goal. The scenario is
    not broken, but scores that compare with this run are unreliable."""


def reference_run(ctx: ScoringContext, traj: Trajectory) -> ReferenceRun:
    """The reference run for ``traj``'s variation, computed once per scoring context."""
    fired = tuple(sorted({f.index for f in traj.faults if f.kind == "customer_goal_change"}))
    key = f"rules.reference\0{traj.scenario_path}\0{traj.seed}\0{fired}"
    run: ReferenceRun = ctx.memo(key, lambda: play_reference(ctx.instance(traj), frozenset(fired)))
    return run


def play_reference(inst: ScenarioInstance, goal_changes: frozenset[int]) -> ReferenceRun:
    """Play the oracle on a fresh episode of ``inst``, with only the goal changes ``goal_changes``
    (indices in the scenario's faults) able to fire."""
    run = _play(inst, goal_changes)
    changes = {i: f for i, f in enumerate(inst.spec.faults) if isinstance(f, GoalChange)}
    off = sorted(set(changes) - goal_changes)
    if not run.success:
        as_written = _play(inst, frozenset(changes)) if off else run
        if as_written.success:  # the replay's doing: without the change the reference loses its way
            run = dataclasses.replace(run, matched=False)
            log.warning("%s (seed %d): the reference run cannot be matched to this episode: goal change %s did "
                        "not fire in the episode, and played without it (to answer the episode's goal) the reference "
                        "misses that goal (conditions %s, ending %s); the scenario is not broken (with the change, "
                        "its reference meets its goal), but scores that compare with the reference run are "
                        "unreliable", inst.id, inst.seed,
                        ", ".join(f"{i} (the customer's turn {changes[i].at_customer_turn})" for i in off),
                        [c for c in run.conditions if not c["ok"]], run.termination)
        else:
            log.warning("the reference solution of %s (seed %d) does not meet its goal (conditions %s, ending %s): "
                        "the scenario is broken; scores that compare with it are unreliable", inst.id, inst.seed,
                        [c for c in as_written.conditions if not c["ok"]], as_written.termination)
    if run.goal_changed != bool(goal_changes):
        log.warning("%s (seed %d): the reference run's goal change %s, unlike the episode's; its final world "
                    "answers another goal", inst.id, inst.seed, "fired" if run.goal_changed else "did not fire")
    return run


def _play(inst: ScenarioInstance, goal_changes: frozenset[int]) -> ReferenceRun:
    """The reference run of ``inst`` with the goal changes not in ``goal_changes`` switched off."""
    faults = [f.model_copy(update={"probability": 0.0}) if isinstance(f, GoalChange) and i not in goal_changes
              else f for i, f in enumerate(inst.spec.faults)]
    variant = dataclasses.replace(inst, spec=inst.spec.model_copy(update={"faults": faults}))
    agents: dict[str, Agent] = {role: OracleAgent() if role == "support" else default_agent(role)
                                for role in variant.spec.roles}
    episode = play(Episode(variant), agents)
    outcome = episode.outcome
    support = [s for s in episode.steps if s["role"] == "support"]
    return ReferenceRun(
        final_state=outcome["final_state"], success=bool(outcome["success"]), conditions=outcome["conditions"],
        support_actions=len(support), support_calls=sum(len(s["tool_calls"]) for s in support),
        goal_changed=outcome["goal_changed_at"] is not None, termination=str(episode.termination))
