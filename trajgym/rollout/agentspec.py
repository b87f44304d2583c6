"""Who plays each role of a job: agents chosen from the registry by name, with options.

An :class:`AgentSpec` is a picklable agents factory (worker processes and Ray tasks build agents
from it); :func:`assign_policies` prepares one set of its agents per scenario and gives each work
unit the policy id they make, the fourth part of the unit's key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from trajgym.agents import AGENTS, DEFAULT_FOR_ROLE, Agent, default_agent, make_agent
from trajgym.errors import TrajgymError
from trajgym.rollout.episode import aprepare_agents
from trajgym.rollout.runner import WorkUnit, job_id
from trajgym.world.loader import ScenarioTemplate

AgentsFactory = Callable[[ScenarioTemplate], dict[str, Agent]]
"""Fresh agents, one per role, for one episode of a scenario."""

ROLE_ONLY = {name: role for role, name in DEFAULT_FOR_ROLE.items() if name.startswith("scripted_")}
"""Registered agents that simulate one particular role and cannot play another."""


@dataclass(frozen=True)
class AgentChoice:
    """An agent from the registry by name, built with keyword ``options``."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


def check_agent(role: str, name: str) -> None:
    """Raise a clear TrajgymError unless agent ``name`` can play ``role``."""
    if role not in DEFAULT_FOR_ROLE:
        raise TrajgymError(f"no role '{role}' (roles: {', '.join(DEFAULT_FOR_ROLE)})")
    if name not in AGENTS:
        make_agent(name)  # raises: unknown agent, with a suggestion
    if ROLE_ONLY.get(name, role) != role:
        players = ", ".join(k for k in sorted(AGENTS) if ROLE_ONLY.get(k, role) == role)
        raise TrajgymError(f"agent '{name}' cannot play {role} (choose: {players})")


def build_agent(choice: AgentChoice) -> Agent:
    if choice.name not in AGENTS:
        return make_agent(choice.name)  # raises
    factory = cast(Callable[..., Agent], AGENTS[choice.name])
    try:
        return factory(**dict(choice.options))
    except TypeError as exc:
        raise TrajgymError(f"agent '{choice.name}': bad options {dict(choice.options)}: {exc}") from None


@dataclass(frozen=True)
class AgentSpec:
    """Who plays each role: the chosen agents, the default ones for roles left out. Callable as an
    :data:`AgentsFactory`, and picklable, so remote workers (the Ray backend) can build agents too."""

    roles: Mapping[str, AgentChoice] = field(default_factory=dict)

    @classmethod
    def support(cls, name: str, **options: Any) -> AgentSpec:
        return cls({"support": AgentChoice(name, options)})

    def check(self) -> None:
        for role, choice in self.roles.items():
            check_agent(role, choice.name)

    def __call__(self, template: ScenarioTemplate) -> dict[str, Agent]:
        return {role: build_agent(self.roles[role]) if role in self.roles else default_agent(role)
                for role in template.spec.roles}

    def label(self) -> str:
        return ", ".join(f"{r}: {c.name}" for r, c in self.roles.items()) or "defaults"


async def assign_policies(units: list[WorkUnit], agents_factory: AgentsFactory) -> list[WorkUnit]:
    """``units`` with their policy and their job's id: for each scenario, the policy id of the agents
    the factory makes for it, prepared (a model agent asks its server once for the served model and
    weights); the job's id (:func:`~trajgym.rollout.runner.job_id`) from the keys that gives."""
    policies: dict[int, str] = {}
    for template in {id(u.template): u.template for u in units}.values():
        policies[id(template)] = await aprepare_agents(agents_factory(template))
    keyed = [WorkUnit(u.template, u.seed, u.trial, u.max_turns, policies[id(u.template)]) for u in units]
    job = job_id(keyed)
    return [WorkUnit(u.template, u.seed, u.trial, u.max_turns, u.policy, job) for u in keyed]
