"""Batch rollouts: a job is a list of work units (scenario, seed, trial) played to JSONL."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trajgym.agents import Agent, default_agent, make_agent
from trajgym.rollout.episode import run_episode
from trajgym.scenario.loader import ScenarioTemplate
from trajgym.seeding import stable_seed
from trajgym.trajectory.store import TrajectoryWriter, UnitKey


@dataclass(frozen=True)
class WorkUnit:
    """One episode to play. Its seed is a stable hash of the job seed, scenario and index."""

    template: ScenarioTemplate
    seed: int
    trial: int = 0

    @property
    def key(self) -> UnitKey:
        """The unit's stable key, (scenario_id, seed, trial): the same fields of its trajectory."""
        return (self.template.id, self.seed, self.trial)


def plan(templates: Iterable[ScenarioTemplate], episodes: int, seed: int, trials: int = 1) -> list[WorkUnit]:
    """``episodes`` variations of every scenario, each played ``trials`` times."""
    return [
        WorkUnit(t, stable_seed("job", seed, t.id, i), trial)
        for t in templates for i in range(episodes) for trial in range(trials)
    ]


@dataclass
class ScenarioSummary:
    episodes: int = 0
    successes: int = 0
    steps: int = 0
    tool_calls: int = 0
    faults: int = 0
    malformed: int = 0
    terminations: dict[str, int] = field(default_factory=dict)

    def add(self, traj: dict[str, Any]) -> None:
        self.episodes += 1
        self.successes += bool(traj["outcome"]["success"])
        self.steps += len(traj["steps"])
        self.tool_calls += sum(len(s["tool_calls"]) for s in traj["steps"])
        self.faults += len(traj["faults"])
        self.malformed += sum(1 for s in traj["steps"] if s["error"])
        self.terminations[traj["termination"]] = self.terminations.get(traj["termination"], 0) + 1


def agents_for(template: ScenarioTemplate, support: str) -> dict[str, Agent]:
    """Fresh agents for a scenario's roles: ``support`` plays support, the rest are scripted."""
    return {role: make_agent(support) if role == "support" else default_agent(role)
            for role in template.spec.roles}


def run(units: list[WorkUnit], out: str | Path, *, support: str = "oracle", command: str | None = None,
        on_episode: Callable[[dict[str, Any]], None] | None = None, fsync: bool = True) -> dict[str, ScenarioSummary]:
    """Play every unit in order, appending each episode to ``out`` as soon as it ends
    (flushed, and fsynced unless ``fsync`` is false)."""
    summary: dict[str, ScenarioSummary] = {}
    with TrajectoryWriter(out, fsync=fsync) as writer:
        for unit in units:
            traj = run_episode(unit.template, unit.seed, agents_for(unit.template, support),
                               trial=unit.trial, command=command)
            writer.write(traj)
            summary.setdefault(traj["scenario_id"], ScenarioSummary()).add(traj)
            if on_episode is not None:
                on_episode(traj)
    return summary
