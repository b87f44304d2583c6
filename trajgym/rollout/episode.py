"""Play one episode with one agent per role, and turn it into a trajectory record (schema 2)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from trajgym.agents.base import Agent, AgentContext, policy_of
from trajgym.envs.core import Episode
from trajgym.errors import InfraError
from trajgym.scenario.catalog import scenario_ref
from trajgym.trajectory.schema import TRAJECTORY_VERSION
from trajgym.trajectory.store import provenance
from trajgym.world.loader import ScenarioTemplate


def prepare_agents(agents: Mapping[str, Agent]) -> str:
    """Let every agent learn what its identity needs (:meth:`Agent.prepare`); the agents' policy id."""
    for agent in agents.values():
        agent.prepare()
    return policy_of(agents)


async def aprepare_agents(agents: Mapping[str, Agent]) -> str:
    """:func:`prepare_agents` for agents that ask a model server."""
    for agent in agents.values():
        await agent.aprepare()
    return policy_of(agents)


def reset_agents(episode: Episode, agents: dict[str, Agent], *, every_role: bool = False) -> None:
    """Start the agents on ``episode``; with ``every_role``, each role must have one."""
    missing = set(episode.roles) - set(agents)
    if every_role and missing:
        raise ValueError(f"no agent for role(s) {sorted(missing)}")
    inst = episode.instance
    for role, agent in agents.items():
        agent.reset(AgentContext(role, inst, episode.tool_schemas.get(role, []), inst.seed, episode.trial))


def play(episode: Episode, agents: dict[str, Agent]) -> Episode:
    """Run ``episode`` to its end, each role played by its agent."""
    reset_agents(episode, agents, every_role=True)
    while not episode.done:
        role = episode.turn_role
        agent = agents[role]
        action = agent.act(episode.peek(role), episode.info(role))
        episode.step(role, action, agent.generation)
    return episode


async def aplay(episode: Episode, agents: dict[str, Agent]) -> Episode:
    """Run ``episode`` to its end with the agents' async ``aact``. A model server that stays down
    (:class:`InfraError`) ends it as ``infra_error``: the steps so far are kept, nothing is scored."""
    reset_agents(episode, agents, every_role=True)
    while not episode.done:
        role = episode.turn_role
        agent = agents[role]
        try:
            action = await agent.aact(episode.peek(role), episode.info(role))
        except InfraError as exc:
            episode.abort(f"{role} ({agent.name}): {exc}")
            break
        episode.step(role, action, agent.generation)
    return episode


def to_trajectory(episode: Episode, agents: dict[str, Agent], *, command: str | None = None,
                  job_id: str | None = None) -> dict[str, Any]:
    """The trajectory record (schema :class:`trajgym.trajectory.Trajectory`) of a finished episode."""
    outcome = dict(episode.outcome)
    final_state = outcome.pop("final_state")
    inst = episode.instance
    return {
        "schema_version": TRAJECTORY_VERSION,
        "episode_id": episode.episode_id,
        "job_id": job_id,
        "scenario_id": inst.id,
        "scenario_hash": inst.template.content_hash,
        "scenario_path": scenario_ref(inst.template.path),
        "domain": inst.domain.name,
        "seed": inst.seed,
        "trial": episode.trial,
        "policy": episode.policy,
        "variables": inst.variables,
        "agents": [agents[r].describe(r) for r in episode.roles],
        "tools": episode.tool_schemas,
        "steps": episode.steps,
        "faults": episode.fault_log,
        "final_state": final_state,
        "termination": episode.termination,
        "infra_error": episode.infra_error,
        "truncated": episode.truncated,
        "max_turns": episode.max_turns,
        "rewards": episode.rewards(),
        "outcome": outcome,
        "provenance": provenance(command),
        "wall_started_at": episode.wall_started,
        "wall_duration_s": time.time() - episode.wall_started,
    }


def run_episode(template: ScenarioTemplate, seed: int, agents: dict[str, Agent], *, trial: int = 0,
                command: str | None = None, max_turns: int | None = None, job_id: str | None = None,
                policy: str | None = None) -> dict[str, Any]:
    """Instantiate, play and record one episode (``max_turns`` caps the scenario's turn limit).
    ``policy``: the agents' policy id when the caller knows it already (a job, once per scenario)."""
    if policy is None:
        policy = prepare_agents(agents)
    else:
        for agent in agents.values():
            agent.prepare()
    episode = play(Episode.start(template, seed, trial=trial, max_turns=max_turns, policy=policy), agents)
    return to_trajectory(episode, agents, command=command, job_id=job_id)
