"""The Gymnasium single-agent view: one role learns, the others are played by policies.

It lives with the rollout code, above the agents, because it plays agents: the episode engine and
the PettingZoo views (:mod:`trajgym.envs`) know nothing of them. Registered as
``trajgym/<Name>-v<N>`` by :mod:`trajgym.envs.registration` (a lazy ``"module:Class"`` entry point).

By default the support agent learns and the other roles are trajgym's scripted simulators; pass
``policies={"customer": my_agent}`` to plug in another (an LLM customer, say). A policy is a
:class:`trajgym.agents.Agent` or the name of a registered one.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym

from trajgym.agents import Agent, default_agent, make_agent
from trajgym.envs.core import Episode
from trajgym.envs.spaces import action_space, encode_observation, observation_space
from trajgym.envs.views import EpisodeView, load_for_domain
from trajgym.errors import TrajgymError
from trajgym.rollout.episode import prepare_agents, reset_agents
from trajgym.scenario.catalog import DEFAULT_SCENARIO


class TrajgymGymEnv(EpisodeView, gym.Env[dict[str, str], str]):
    """Single-agent view of a scenario.

    Args:
        scenario: a built-in scenario id or a path to a scenario file.
        learner: the role the caller plays (default ``support``).
        policies: who plays the other roles (default: the scripted simulators).
        domain: the domain the scenario must belong to (set by the registration).
        render_mode: ``ansi`` returns the latest messages as text.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, scenario: str = DEFAULT_SCENARIO, learner: str = "support",
                 policies: dict[str, Agent | str] | None = None, *, domain: str | None = None,
                 render_mode: str | None = None) -> None:
        self.template = load_for_domain(scenario, domain)
        roles = list(self.template.spec.roles)
        if learner not in roles:
            raise TrajgymError(f"learner '{learner}' is not a role of scenario '{self.template.id}' "
                               f"(roles: {', '.join(roles)})")
        self.learner = learner
        given = dict(policies or {})
        unknown = set(given) - set(roles)
        if unknown or learner in given:
            raise TrajgymError(f"policies are for the other roles {sorted(set(roles) - {learner})}, "
                               f"got {sorted(given)}")
        self.policies: dict[str, Agent] = {}
        for role in roles:
            if role == learner:
                continue
            policy = given.get(role)
            self.policies[role] = (default_agent(role) if policy is None
                                   else make_agent(policy) if isinstance(policy, str) else policy)
        prepare_agents(self.policies)
        self.observation_space = observation_space()  # type: ignore[assignment]
        self.action_space = action_space()
        self.render_mode = render_mode
        self.episode: Episode | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, str], dict[str, Any]]:
        super().reset(seed=seed)
        episode_seed = seed if seed is not None else int(self.np_random.integers(2**62))
        trial = int((options or {}).get("trial", 0))
        if self.episode is not None:
            self.episode.close()
        self.episode = Episode.start(self.template, episode_seed, trial=trial)
        reset_agents(self.episode, self.policies)
        self._play_others()
        return self._observe(), self.episode.info(self.learner)

    def step(self, action: str) -> tuple[dict[str, str], SupportsFloat, bool, bool, dict[str, Any]]:
        ep = self.episode
        if ep is None:
            raise RuntimeError("call reset() before step()")
        ep.step(self.learner, action if isinstance(action, str) else repr(action))
        self._play_others()
        reward = ep.rewards()[self.learner] if ep.done else 0.0
        info = ep.info(self.learner)
        if ep.done:
            info["outcome"] = {k: v for k, v in ep.outcome.items() if k != "final_state"}
            info["termination"] = ep.termination
        return self._observe(), reward, ep.done and not ep.truncated, ep.truncated, info

    def _play_others(self) -> None:
        ep = self.episode
        assert ep is not None
        while not ep.done and ep.turn_role != self.learner:
            role = ep.turn_role
            policy = self.policies[role]
            ep.step(role, policy.act(ep.peek(role), ep.info(role)), policy.generation)

    def _observe(self) -> dict[str, str]:
        ep = self.episode
        assert ep is not None
        return encode_observation(ep.peek(self.learner), "done" if ep.done else "act")

