"""The PettingZoo AEC view: the scenario's roles take turns, as the episode engine says."""

from __future__ import annotations

from typing import Any

from pettingzoo import AECEnv

from trajgym.envs.spaces import encode_observation
from trajgym.envs.views import MultiAgentView


class TrajgymAECEnv(MultiAgentView, AECEnv[str, dict[str, str], str]):
    """Every role of a scenario is an agent; whose turn it is follows the conversation.

    Args:
        scenario: a built-in scenario id or a path to a scenario file.
        domain: the domain the scenario must belong to (set by the env module).
        render_mode: ``ansi`` returns the latest messages as text.
    """

    metadata = {"name": "trajgym_v0", "render_modes": ["ansi"], "is_parallelizable": False}

    def __init__(self, scenario: str, *, domain: str | None = None, render_mode: str | None = None) -> None:
        super().__init__()
        self._setup(scenario, domain, render_mode)

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        episode = self._start(seed, options)
        self.agents = list(self.possible_agents)
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self.infos = {a: episode.info(a) for a in self.agents}
        self.agent_selection = episode.turn_role

    def observe(self, agent: str) -> dict[str, str]:
        ep = self._require()
        status = "done" if ep.done else ("act" if agent == ep.turn_role else "wait")
        return encode_observation(ep.peek(agent), status)

    def step(self, action: str | None) -> None:
        ep = self._require()
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        self._cumulative_rewards[agent] = 0.0
        ep.step(agent, action if isinstance(action, str) else repr(action))
        self.infos = {a: ep.info(a) for a in self.agents}
        if ep.done:
            self.rewards = ep.rewards()
            self.terminations = dict.fromkeys(self.agents, not ep.truncated)
            self.truncations = dict.fromkeys(self.agents, ep.truncated)
        else:
            self.rewards = dict.fromkeys(self.agents, 0.0)
            self.agent_selection = ep.turn_role
        self._accumulate_rewards()
