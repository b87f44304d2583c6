"""Recorded episodes for examples, tests and quick experiments: a scenario played once through the
real engine, with the oracle or any registered agent as support (:func:`played`), or with support's
actions written out one by one (:func:`scripted`); the customer and the supervisor are the scenario's
scripted ones.

    >>> from trajgym.envs.actions import call, say
    >>> from trajgym.scorers.examples import played, scripted
    >>> played("refund_damaged_item").outcome.success
    True
    >>> traj = scripted("refund_damaged_item", [call("get_order", order_id="O1"),
    ...                                         call("transfer_to_human", summary="refund request")])
    >>> [s.role for s in traj.steps], traj.termination
    (['customer', 'support', 'support'], 'transferred_to_human')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trajgym.agents import Agent, default_agent
from trajgym.envs.core import Episode
from trajgym.rollout.episode import play, run_episode, to_trajectory
from trajgym.rollout.runner import agents_for
from trajgym.scenario.catalog import resolve
from trajgym.trajectory.schema import Trajectory
from trajgym.world.loader import load


def played(scenario: str, support: str = "oracle", seed: int = 0) -> Trajectory:
    """``scenario`` (a built-in id or a file) played once with agent ``support`` on ``seed``."""
    template = load(resolve(scenario))
    return Trajectory.model_validate(run_episode(template, seed, agents_for(template, support)))


class ScriptedSupport(Agent):
    """Plays the given action texts in order (see :func:`trajgym.envs.actions.call` and ``say``)."""

    kind = "scripted_support"

    def __init__(self, actions: Sequence[str]) -> None:
        super().__init__()
        self.actions = list(actions)
        self.next = 0

    def act(self, messages: list[dict[str, Any]], info: dict[str, Any]) -> str:
        if self.next >= len(self.actions):
            raise ValueError(f"the script of {len(self.actions)} support action(s) ran out at turn {info.get('turn')} "
                             "and the episode is not over: end it, e.g. with call('transfer_to_human', ...)")
        self.next += 1
        return self.actions[self.next - 1]


def scripted(scenario: str, support: Sequence[str], seed: int = 0) -> Trajectory:
    """``scenario`` played once on ``seed`` with support's ``actions`` in this order."""
    template = load(resolve(scenario))
    episode = Episode.start(template, seed)
    agents = {role: ScriptedSupport(support) if role == "support" else default_agent(role) for role in episode.roles}
    return Trajectory.model_validate(to_trajectory(play(episode, agents), agents))
