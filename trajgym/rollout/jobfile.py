"""A rollout job declared in a YAML file (``trajgym rollout --job JOB.yaml``).

Unknown keys and bad values are errors located as ``file:line:col``; paths in the file are
relative to its folder. :func:`load_job` gives a :class:`Job`: the scenarios, the agents, the
numbers and where the trajectories go.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trajgym.agents import DEFAULT_FOR_ROLE
from trajgym.configfile import load_config
from trajgym.errors import ConfigFileError, Problem, TrajgymError, UnknownScenarioError
from trajgym.rollout.agentspec import AgentChoice, AgentSpec, check_agent
from trajgym.rollout.runner import WorkUnit, plan
from trajgym.scenario.catalog import scenario_files
from trajgym.world.loader import ScenarioTemplate, load


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentEntry(_Strict):
    name: str = Field(description="a registered agent (see trajgym.agents.AGENTS)")
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the agent")


class RayOptions(_Strict):
    address: str | None = Field(None, description="Ray cluster address (default: start a local Ray)")
    batch_size: int = Field(4, ge=1, description="work units per Ray task")


class JobFile(_Strict):
    """A rollout job, as written in a job YAML file."""

    scenarios: list[str] = Field(min_length=1, description="scenario ids, files or folders")
    agents: dict[str, AgentEntry] = Field(
        default_factory=dict, description="agent per role: a name, or {name, options}; others play by default")
    episodes: int = Field(1, ge=1, description="variations (seeds) per scenario")
    trials: int = Field(1, ge=1, description="episodes per variation")
    seed: int = Field(0, description="job seed; episode seeds are derived from it")
    max_turns: int | None = Field(None, ge=1, description="cap on every scenario's limits.max_turns")
    concurrency: int = Field(8, ge=1, description="episodes in flight")
    workers: int = Field(1, ge=1, description="processes that share the episodes in flight (local backend)")
    output: str = Field(description="JSONL file to append trajectories to")
    backend: Literal["local", "ray"] = "local"
    ray: RayOptions = Field(default_factory=RayOptions)

    @field_validator("agents", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        """``support: oracle`` is short for ``support: {name: oracle}``."""
        if isinstance(value, dict):
            return {k: {"name": v} if isinstance(v, str) else v for k, v in value.items()}
        return value


class JobFileError(ConfigFileError):
    """A job file is broken. Carries every problem found, each located in the file."""


@dataclass
class Job:
    """A loaded job: everything needed to run it."""

    templates: list[ScenarioTemplate]
    agents: AgentSpec
    episodes: int = 1
    trials: int = 1
    seed: int = 0
    max_turns: int | None = None
    concurrency: int = 8
    workers: int = 1
    output: Path = Path("rollout.jsonl")
    backend: str = "local"
    ray_address: str | None = None
    ray_batch_size: int = 4

    def units(self) -> list[WorkUnit]:
        return plan(self.templates, self.episodes, self.seed, self.trials, self.max_turns)


def load_job(path: str | Path) -> Job:
    """Read and check a job YAML file. Paths in it (scenario files and folders, the output) are
    relative to the file's folder; a scenario that is no path there is a built-in id (or a path
    relative to the working folder). Raises :class:`JobFileError` with located problems."""
    p = Path(path)
    spec, located = load_config(p, JobFile, what="job file", error=JobFileError,
                                example="scenarios: ..., agents: ..., episodes: ..., output: ...")
    problems: list[Problem] = []
    roles: dict[str, AgentChoice] = {}
    for role, entry in spec.agents.items():
        choice = AgentChoice(entry.name, entry.options)
        try:
            check_agent(role, choice.name)
        except TrajgymError as exc:
            at = ("agents", role, "name") if role in DEFAULT_FOR_ROLE else ("agents", role)
            problems.append(located.problem(at, str(exc), key=role not in DEFAULT_FOR_ROLE))
        roles[role] = choice
    base = p.parent
    files: list[Path] = []
    for i, ref in enumerate(spec.scenarios):
        local = base / ref
        try:
            files += scenario_files([str(local if local.exists() else ref)])
        except UnknownScenarioError as exc:
            problems.append(located.problem(("scenarios", i), str(exc)))
    if problems:
        raise JobFileError(problems)
    return Job(templates=[load(f) for f in files], agents=AgentSpec(roles), episodes=spec.episodes,
               trials=spec.trials, seed=spec.seed, max_turns=spec.max_turns, concurrency=spec.concurrency,
               workers=spec.workers, output=base / spec.output, backend=spec.backend,
               ray_address=spec.ray.address, ray_batch_size=spec.ray.batch_size)
