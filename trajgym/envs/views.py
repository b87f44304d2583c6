"""Helpers the env views share: loading a scenario for a domain, text rendering."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from trajgym.envs.core import Episode
from trajgym.envs.spaces import action_space, observation_space
from trajgym.errors import TrajgymError
from trajgym.scenario.catalog import resolve
from trajgym.world.loader import ScenarioTemplate, load


def load_for_domain(scenario: str, domain: str | None) -> ScenarioTemplate:
    """Load ``scenario`` (id or path) and check it belongs to ``domain``."""
    template = load(resolve(scenario))
    if domain is not None and template.spec.domain != domain:
        raise TrajgymError(f"scenario '{template.id}' is a {template.spec.domain} scenario; this env "
                           f"runs {domain} scenarios")
    return template


def render_text(episode: Episode, last: int = 6) -> str:
    """The latest steps of an episode as plain text."""
    lines = [f"[{episode.spec.id} turn {episode.turn}]"]
    for step in episode.steps[-last:]:
        if step["message"]:
            lines.append(f"{step['role']}: {step['message']}")
        for tc in step["tool_calls"]:
            lines.append(f"{step['role']} -> {tc['name']}({tc['arguments']}) = {'ok' if tc['ok'] else tc['error_type']}")
        if step["error"]:
            lines.append(f"{step['role']}: (malformed) {step['error']}")
    if episode.done:
        lines.append(f"[ended: {episode.termination}]")
    return "\n".join(lines)


class EpisodeView:
    """What every view of a running episode shares: ``ansi`` rendering and closing."""

    episode: Episode | None
    render_mode: str | None

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.episode is None:
            return None
        return render_text(self.episode)

    def close(self) -> None:
        if self.episode is not None:
            self.episode.close()
        self.episode = None


class MultiAgentView(EpisodeView):
    """What the AEC and Parallel views share: the scenario, per-agent spaces, and an episode view's parts."""

    def _setup(self, scenario: str, domain: str | None, render_mode: str | None) -> None:
        self.template = load_for_domain(scenario, domain)
        self.possible_agents: list[str] = [str(r) for r in self.template.spec.roles]
        self.render_mode = render_mode
        self._obs_spaces = {a: observation_space() for a in self.possible_agents}
        self._act_spaces = {a: action_space() for a in self.possible_agents}
        self._np_random = np.random.default_rng()
        self.episode = None

    def observation_space(self, agent: str) -> spaces.Space[Any]:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space[Any]:
        return self._act_spaces[agent]

    def _start(self, seed: int | None, options: dict[str, Any] | None) -> Episode:
        """A new episode: ``seed`` if given, else the next seed of the env's own stream."""
        if seed is not None:
            self._np_random = np.random.default_rng(seed)
        episode_seed = seed if seed is not None else int(self._np_random.integers(2**62))
        if self.episode is not None:
            self.episode.close()
        self.episode = Episode.start(self.template, episode_seed, trial=int((options or {}).get("trial", 0)))
        return self.episode

    def _require(self) -> Episode:
        if self.episode is None:
            raise RuntimeError("call reset() before using the env")
        return self.episode
