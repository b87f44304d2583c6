"""Batch rollouts: a job is a list of work units (scenario, seed, trial) played to JSONL."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trajgym.agents import Agent, default_agent, make_agent
from trajgym.errors import TrajgymError
from trajgym.rollout.episode import prepare_agents, run_episode
from trajgym.seeding import stable_seed
from trajgym.trajectory.store import TrajectoryWriter
from trajgym.trajectory.units import UnitKey
from trajgym.world.loader import ScenarioTemplate


@dataclass(frozen=True)
class WorkUnit:
    """One episode to play. Its seed is a stable hash of the job seed, scenario and index."""

    template: ScenarioTemplate
    seed: int
    trial: int = 0
    max_turns: int | None = None
    """A cap on the scenario's ``limits.max_turns`` (a job's ``max_turns``); None keeps the scenario's."""
    policy: str = ""
    """Who plays it (:func:`trajgym.agents.base.policy_of`), set by the job once its agents are prepared."""
    job_id: str | None = None
    """The job it belongs to (:func:`job_id`), recorded in its trajectory."""

    @property
    def key(self) -> UnitKey:
        """The unit's stable key, (scenario_id, seed, trial, policy): the same fields of its trajectory."""
        return UnitKey(self.template.id, self.seed, self.trial, self.policy)

    @property
    def turn_limit(self) -> int:
        """The turn limit its episode runs under (what its trajectory records as ``max_turns``)."""
        limit = self.template.spec.limits.max_turns
        return limit if self.max_turns is None else min(limit, self.max_turns)


def plan(templates: Iterable[ScenarioTemplate], episodes: int, seed: int, trials: int = 1,
         max_turns: int | None = None) -> list[WorkUnit]:
    """``episodes`` variations of every scenario, each played ``trials`` times (``max_turns``, if
    given, caps every scenario's turn limit)."""
    if max_turns is not None and max_turns < 1:
        raise TrajgymError(f"max_turns must be at least 1, got {max_turns}")
    templates = list(templates)
    by_id: dict[str, ScenarioTemplate] = {}
    for t in templates:  # a unit is keyed by scenario id: one file's episodes would silently shadow the other's
        held = by_id.setdefault(t.id, t)
        if held.path.resolve() != t.path.resolve():
            raise TrajgymError(f"two scenario files have the id '{t.id}': {held.path} and {t.path}; give each "
                               "file its own `id`, or pass only one")
    return [
        WorkUnit(t, stable_seed("job", seed, t.id, i), trial, max_turns)
        for t in templates for i in range(episodes) for trial in range(trials)
    ]


def job_id(units: Iterable[WorkUnit]) -> str:
    """A job's id: a hash of its units' keys and scenario versions, so a resumed job keeps it and
    another set of units (more episodes, another policy, changed scenarios) gets another."""
    hasher = hashlib.blake2b(digest_size=6)
    for key, content in sorted({(u.key, u.template.content_hash) for u in units}):
        hasher.update(f"{key.scenario_id}\x1f{key.seed}\x1f{key.trial}\x1f{key.policy}\x1f{content}\n".encode())
    return hasher.hexdigest()


PERSONA_TRAITS = ("mood", "language", "expertise")
"""The traits of a customer persona that a job's summary counts."""


def customer_persona(traj: dict[str, Any]) -> dict[str, Any] | None:
    """The persona the customer of an episode played (its agent record's ``persona``), if any."""
    for agent in traj["agents"]:
        if agent["role"] == "customer":
            persona = agent.get("persona")
            return persona if isinstance(persona, dict) and persona else None
    return None


def completion_tokens(traj: dict[str, Any]) -> int:
    """Tokens the model agents generated in an episode (their servers' reported usage)."""
    total = 0
    for step in traj["steps"]:
        usage = (step.get("generation") or {}).get("usage") or {}
        tokens = usage.get("completion_tokens")
        if isinstance(tokens, int):
            total += tokens
    return total


def _count(counts: dict[str, int], key: str, n: int = 1) -> None:
    counts[key] = counts.get(key, 0) + n


def digest(traj: dict[str, Any]) -> dict[str, Any]:
    """What a job's counts need of an episode (a few hundred bytes of JSON, where the trajectory is
    tens of KB): a worker process sends it beside the line, so the job's process counts episodes
    without decoding them."""
    persona = customer_persona(traj) or {}
    steps = traj["steps"]
    return {"scenario_id": traj["scenario_id"], "success": bool(traj["outcome"]["success"]),
            "steps": len(steps), "tool_calls": sum(len(s["tool_calls"]) for s in steps),
            "faults": len(traj["faults"]), "malformed": sum(1 for s in steps if s["error"]),
            "tokens": completion_tokens(traj), "termination": traj["termination"],
            "persona": {t: str(persona[t]) for t in PERSONA_TRAITS if persona.get(t) is not None} or None}


@dataclass
class ScenarioSummary:
    episodes: int = 0
    successes: int = 0
    steps: int = 0
    tool_calls: int = 0
    faults: int = 0
    malformed: int = 0
    tokens: int = 0
    """Tokens the model agents generated."""
    terminations: dict[str, int] = field(default_factory=dict)
    personas: dict[str, dict[str, int]] = field(default_factory=dict)
    """Customer personas played, counted per trait: ``{"mood": {"calm": 3, "angry": 1}, ...}``."""

    def add(self, traj: dict[str, Any]) -> None:
        self.add_digest(digest(traj))

    def add_digest(self, d: dict[str, Any]) -> None:
        """Count one episode from its :func:`digest`."""
        self.episodes += 1
        self.successes += bool(d["success"])
        self.steps += d["steps"]
        self.tool_calls += d["tool_calls"]
        self.faults += d["faults"]
        self.malformed += d["malformed"]
        self.tokens += d["tokens"]
        _count(self.terminations, d["termination"])
        for trait, value in (d["persona"] or {}).items():
            _count(self.personas.setdefault(trait, {}), value)

    def merge(self, other: ScenarioSummary) -> None:
        """Add ``other``'s counts to these."""
        self.episodes += other.episodes
        self.successes += other.successes
        self.steps += other.steps
        self.tool_calls += other.tool_calls
        self.faults += other.faults
        self.malformed += other.malformed
        self.tokens += other.tokens
        for k, v in other.terminations.items():
            _count(self.terminations, k, v)
        for trait, counts in other.personas.items():
            mine = self.personas.setdefault(trait, {})
            for value, n in counts.items():
                _count(mine, value, n)


def total(summary: dict[str, ScenarioSummary]) -> ScenarioSummary:
    """Every scenario's counts added up."""
    out = ScenarioSummary()
    for s in summary.values():
        out.merge(s)
    return out


def agents_for(template: ScenarioTemplate, support: str) -> dict[str, Agent]:
    """Fresh agents for a scenario's roles: ``support`` plays support, the rest are scripted."""
    return {role: make_agent(support) if role == "support" else default_agent(role)
            for role in template.spec.roles}


def run(units: list[WorkUnit], out: str | Path, *, support: str = "oracle", command: str | None = None,
        on_episode: Callable[[dict[str, Any]], None] | None = None, fsync: bool = True) -> dict[str, ScenarioSummary]:
    """Play every unit in order, appending each episode to ``out`` as soon as it ends
    (flushed, and fsynced unless ``fsync`` is false). The episodes are those a job of the same
    units writes (:func:`trajgym.rollout.jobs.run_job`), job id included."""
    policies = {id(t): prepare_agents(agents_for(t, support)) for t in {id(u.template): u.template for u in units}.values()}
    units = [dataclasses.replace(u, policy=policies[id(u.template)]) for u in units]
    job = job_id(units)
    summary: dict[str, ScenarioSummary] = {}
    with TrajectoryWriter(out, fsync=fsync) as writer:
        for unit in units:
            traj = run_episode(unit.template, unit.seed, agents_for(unit.template, support), trial=unit.trial,
                               command=command, max_turns=unit.max_turns, job_id=job, policy=unit.policy)
            writer.write(traj)
            summary.setdefault(traj["scenario_id"], ScenarioSummary()).add(traj)
            if on_episode is not None:
                on_episode(traj)
    return summary
