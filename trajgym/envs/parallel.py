"""The PettingZoo Parallel view: every live agent submits an action each step.

Only the action of the agent whose turn it is takes effect (its observation's ``status`` is
``act``); the others wait (``status`` is ``wait``) and their actions are ignored. Each step returns
to every agent the messages that reached it since the previous step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from trajgym.envs.core import Episode
from trajgym.envs.spaces import action_space, encode_observation, observation_space
from trajgym.envs.views import load_for_domain, render_text


class TrajgymParallelEnv(ParallelEnv[str, dict[str, str], str]):
    """Parallel view of a scenario's turn-taking conversation. Same arguments as the AEC env."""

    metadata = {"name": "trajgym_parallel_v0", "render_modes": ["ansi"]}

    def __init__(self, scenario: str, *, domain: str | None = None, render_mode: str | None = None) -> None:
        self.template = load_for_domain(scenario, domain)
        self.possible_agents: list[str] = [str(r) for r in self.template.spec.roles]
        self.agents: list[str] = []
        self.render_mode = render_mode
        self._obs_spaces = {a: observation_space() for a in self.possible_agents}
        self._act_spaces = {a: action_space() for a in self.possible_agents}
        self._np_random = np.random.default_rng()
        self.episode: Episode | None = None
        self._seen: dict[str, tuple[int, int]] = {}

    def observation_space(self, agent: str) -> spaces.Space[Any]:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space[Any]:
        return self._act_spaces[agent]

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, Any]]]:
        if seed is not None:
            self._np_random = np.random.default_rng(seed)
        episode_seed = seed if seed is not None else int(self._np_random.integers(2**62))
        trial = int((options or {}).get("trial", 0))
        self.episode = Episode.start(self.template, episode_seed, trial=trial)
        self.agents = list(self.possible_agents)
        self._seen = dict.fromkeys(self.agents, (0, 0))
        return self._deliver()

    def _deliver(self) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, Any]]]:
        """New messages and events for every agent since the last delivery."""
        ep = self._require()
        observations, infos = {}, {}
        for agent in self.agents:
            seen_m, seen_e = self._seen[agent]
            view = ep.views[agent]
            messages, events = view.messages[seen_m:], view.events[seen_e:]
            self._seen[agent] = (len(view.messages), len(view.events))
            status = "done" if ep.done else ("act" if agent == ep.turn_role else "wait")
            observations[agent] = encode_observation(messages, status)
            infos[agent] = ep.info(agent, events)
        return observations, infos

    def step(self, actions: dict[str, str]) -> tuple[
        dict[str, dict[str, str]], dict[str, float], dict[str, bool], dict[str, bool], dict[str, dict[str, Any]]
    ]:
        ep = self._require()
        actor = ep.turn_role
        action = actions.get(actor)
        ep.step(actor, action if isinstance(action, str) else repr(action))
        self._seen[actor] = (0, 0)  # stepping drained the actor's view
        observations, infos = self._deliver()
        rewards = ep.rewards() if ep.done else dict.fromkeys(self.agents, 0.0)
        terminations = dict.fromkeys(self.agents, ep.done and not ep.truncated)
        truncations = dict.fromkeys(self.agents, ep.truncated)
        if ep.done:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

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
