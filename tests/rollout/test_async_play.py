"""Async play: agents' aact, generation metadata in steps, infra errors end the episode unscored."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers import EXAMPLE

from trajgym.agents import OracleAgent
from trajgym.agents.chat import generation
from trajgym.envs.core import Episode
from trajgym.errors import InfraError
from trajgym.rollout.episode import aplay, to_trajectory
from trajgym.rollout.runner import agents_for
from trajgym.trajectory import Trajectory
from trajgym.world.loader import load


class FlakyServerAgent(OracleAgent):
    """The oracle, with generation metadata, whose 'server' dies after ``ok`` actions."""

    def __init__(self, ok: int) -> None:
        super().__init__()
        self.ok = ok

    async def aact(self, messages: list[dict[str, Any]], info: dict[str, Any]) -> str:
        if self.ok == 0:
            raise InfraError("model server unreachable at http://127.0.0.1:9/v1 after 3 retries")
        self.ok -= 1
        action = self.act(messages, info)
        self.generation = generation("openai", token_ids=[1, 2, 3], logprobs=[-0.1, -0.2, -0.3],
                                     sampling={"temperature": 0})
        return action


def _agents(agent: OracleAgent) -> dict:
    template = load(EXAMPLE)
    agents = agents_for(template, "oracle")
    agents["support"] = agent
    return agents


def test_aplay_matches_play_and_records_generation() -> None:
    template = load(EXAMPLE)
    agents = _agents(FlakyServerAgent(ok=100))
    episode = asyncio.run(aplay(Episode.start(template, 3), agents))
    traj = Trajectory.model_validate(to_trajectory(episode, agents))
    assert traj.outcome.success and traj.infra_error is None
    support_steps = [s for s in traj.steps if s.role == "support"]
    assert all(s.generation and s.generation["token_ids"] == [1, 2, 3] for s in support_steps)
    assert all(s.generation is None for s in traj.steps if s.role == "customer")


def test_a_dead_server_is_an_infra_error_not_an_agent_failure() -> None:
    template = load(EXAMPLE)
    agents = _agents(FlakyServerAgent(ok=2))
    episode = asyncio.run(aplay(Episode.start(template, 3), agents))
    traj = Trajectory.model_validate(to_trajectory(episode, agents))
    assert traj.termination == "infra_error" and "unreachable" in (traj.infra_error or "")
    assert not traj.outcome.success and traj.rewards == {"customer": 0.0, "support": 0.0}
    assert [s.role for s in traj.steps] == ["customer", "support", "customer", "support"]  # kept
