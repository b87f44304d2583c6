"""The PettingZoo Parallel view: every live agent submits an action each step.

Only the action of the agent whose turn it is takes effect (its observation's ``status`` is
``act``); the others wait (``status`` is ``wait``) and their actions are ignored. Each step returns
to every agent the messages that reached it since the previous step.
"""

from __future__ import annotations

from typing import Any

from pettingzoo import ParallelEnv

from trajgym.envs.spaces import encode_observation
from trajgym.envs.views import MultiAgentView


class TrajgymParallelEnv(MultiAgentView, ParallelEnv[str, dict[str, str], str]):
    """Parallel view of a scenario's turn-taking conversation. Same arguments as the AEC env."""

    metadata = {"name": "trajgym_parallel_v0", "render_modes": ["ansi"]}

    def __init__(self, scenario: str, *, domain: str | None = None, render_mode: str | None = None) -> None:
        self._setup(scenario, domain, render_mode)
        self.agents: list[str] = []
        self._seen: dict[str, tuple[int, int]] = {}

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, Any]]]:
        self._start(seed, options)
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
