"""The PettingZoo AEC view: the scenario's roles take turns, as the episode engine says."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv

from trajgym.envs.core import Episode
from trajgym.envs.spaces import action_space, encode_observation, observation_space
from trajgym.envs.views import load_for_domain, render_text


class TrajgymAECEnv(AECEnv[str, dict[str, str], str]):
    """Every role of a scenario is an agent; whose turn it is follows the conversation.

    Args:
        scenario: a built-in scenario id or a path to a scenario file.
        domain: the domain the scenario must belong to (set by the env module).
        render_mode: ``ansi`` returns the latest messages as text.
    """

    metadata = {"name": "trajgym_v0", "render_modes": ["ansi"], "is_parallelizable": False}

    def __init__(self, scenario: str, *, domain: str | None = None, render_mode: str | None = None) -> None:
        super().__init__()
        self.template = load_for_domain(scenario, domain)
        self.possible_agents: list[str] = [str(r) for r in self.template.spec.roles]
        self.render_mode = render_mode
        self._obs_spaces = {a: observation_space() for a in self.possible_agents}
        self._act_spaces = {a: action_space() for a in self.possible_agents}
        self._np_random = np.random.default_rng()
        self.episode: Episode | None = None

    def observation_space(self, agent: str) -> spaces.Space[Any]:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space[Any]:
        return self._act_spaces[agent]

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        if seed is not None:
            self._np_random = np.random.default_rng(seed)
        episode_seed = seed if seed is not None else int(self._np_random.integers(2**62))
        trial = int((options or {}).get("trial", 0))
        self.episode = Episode.start(self.template, episode_seed, trial=trial)
        self.agents = list(self.possible_agents)
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self.infos = {a: self.episode.info(a) for a in self.agents}
        self.agent_selection = self.episode.turn_role

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

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.episode is None:
            return None
        return render_text(self.episode)

    def close(self) -> None:
        self.episode = None

    def _require(self) -> Episode:
        if self.episode is None:
            raise RuntimeError("call reset() before using the env")
        return self.episode
