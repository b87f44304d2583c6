"""Batch rollout jobs: many work units played concurrently into one append-only JSONL file.

A job is a list of :class:`~trajgym.rollout.runner.WorkUnit` (scenario, seed, trial); each unit's
key ``(scenario_id, seed, trial)`` is recorded in its trajectory. :func:`run_job` keeps
``concurrency`` episodes in flight on one asyncio event loop (agents' ``aact`` awaits a model
server, so its continuous batching stays full) and appends each episode the moment it ends, from the
loop itself: one writer, one line per episode, flushed (and fsynced within 0.1 s). A crash loses at
most the episodes in flight, and ``resume=True`` plays only the units the file does not hold yet
(or holds only as ``infra_error``), so a job can be killed and resumed any number of times.

A job can also be declared in a YAML file (:func:`load_job`), see ``trajgym rollout --job``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trajgym import jsonio
from trajgym.agents import AGENTS, DEFAULT_FOR_ROLE, Agent, default_agent, make_agent
from trajgym.agents.openai_agent import close_connections
from trajgym.configfile import load_config
from trajgym.envs.core import Episode
from trajgym.errors import Problem, ScenarioError, TrajgymError, UnknownScenarioError
from trajgym.rollout.episode import aplay, to_trajectory
from trajgym.rollout.runner import ScenarioSummary, WorkUnit, digest, plan, total
from trajgym.rollout.runtime import collector_tuned
from trajgym.scenario.catalog import scenario_files
from trajgym.scenario.loader import ScenarioTemplate, load
from trajgym.trajectory.store import (
    INFRA_ERROR,
    TrajectoryWriter,
    UnitKey,
    iter_episodes,
    repair_torn_tail,
    unit_key,
)

AgentsFactory = Callable[[ScenarioTemplate], dict[str, Agent]]
"""Fresh agents, one per role, for one episode of a scenario."""

OnEpisode = Callable[[dict[str, Any]], None]
OnProgress = Callable[["JobResult"], None]

# ---------------------------------------------------------------------------------------------
# agents


@dataclass(frozen=True)
class AgentChoice:
    """An agent from the registry by name, built with keyword ``options``."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


START_BATCH = 4
"""Episodes a job sets up per turn of the event loop when it starts. Between batches the loop sends
and reads, so the first episodes' requests go out while the others are still being set up: all at
once, a job of 1,000 in flight set up every episode (about 0.7 s) before its first request left."""

ROLE_ONLY = {name: role for role, name in DEFAULT_FOR_ROLE.items() if name.startswith("scripted_")}
"""Registered agents that simulate one particular role and cannot play another."""


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


# ---------------------------------------------------------------------------------------------
# the output file


@dataclass
class JobResult:
    """What one run of a job did."""

    summary: dict[str, ScenarioSummary]
    ran: int = 0
    skipped: int = 0
    """Units the output already held (resume)."""
    torn: Path | None = None
    """Where a torn last line of the output was moved (resume after a crash)."""
    totals: ScenarioSummary = field(default_factory=ScenarioSummary)
    """The counts of every episode this run played, all scenarios together, kept as they end."""
    worker_cpu_s: float = 0.0
    """CPU seconds the job's worker processes spent (``workers`` > 1; this process's own not included)."""

    def record(self, d: dict[str, Any]) -> None:
        """Count one episode that was written, from its :func:`~trajgym.rollout.runner.digest`."""
        self.ran += 1
        self.summary.setdefault(d["scenario_id"], ScenarioSummary()).add_digest(d)
        self.totals.add_digest(d)

    @property
    def persona_mix(self) -> dict[str, dict[str, int]]:
        """The customer personas this run played, counted per trait (mood, language, expertise)."""
        return total(self.summary).personas


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (POSIX), so two jobs never append to one file."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TrajgymError(f"{path} is being written by another running job") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def finished_units(out: Path, units: list[WorkUnit]) -> set[UnitKey]:
    """Keys of the units of ``units`` that ``out`` holds with a normal ending. Refuses a file whose
    episodes of those units were played with another version of the scenario."""
    by_key = {u.key: u for u in units}
    done: set[UnitKey] = set()
    changed: set[str] = set()
    limits: set[str] = set()
    for ep in iter_episodes(out, validate=False, skip_broken=True):
        key = unit_key(ep)
        if key not in by_key or ep["termination"] == INFRA_ERROR:
            continue
        if ep["scenario_hash"] != by_key[key].template.content_hash:
            changed.add(ep["scenario_id"])
        if ep.get("max_turns") not in (None, by_key[key].turn_limit):  # files before max_turns: None
            limits.add(f"{ep['scenario_id']} ({ep['max_turns']}, now {by_key[key].turn_limit})")
        done.add(key)
    if changed:
        raise TrajgymError(f"{out} holds episodes of another version of scenario(s) "
                           f"{', '.join(sorted(changed))} (their content hash differs); "
                           "resume with the same scenario files, or choose another output file")
    if limits:
        raise TrajgymError(f"{out} holds episodes played under another turn limit: {', '.join(sorted(limits))}; "
                           "resume with the same --max-turns (job file: max_turns), or choose another output file")
    return done


def check_output(out: str | Path, *, resume: bool) -> bool:
    """Whether ``out`` holds anything; without ``resume`` that is an error (jobs never mix)."""
    p = Path(out)
    if p.is_dir():
        raise TrajgymError(f"output {p} is a folder; give a .jsonl file")
    if not p.exists() or p.stat().st_size == 0:
        return False
    if not resume:
        raise TrajgymError(f"output {p} already holds episodes; pass --resume to continue that job "
                           "(units already finished are skipped), or choose another output file")
    return True


def prepare_output(out: str | Path, units: list[WorkUnit], *, resume: bool) -> tuple[set[UnitKey], Path | None]:
    """Check ``out`` before a job appends to it: the keys already finished, and where a torn last
    line went. Without ``resume`` a non-empty file is an error."""
    p = Path(out)
    if not check_output(p, resume=resume):
        return set(), None
    torn = repair_torn_tail(p)
    return finished_units(p, units), torn


# ---------------------------------------------------------------------------------------------
# running


async def play_unit(unit: WorkUnit, agents_factory: AgentsFactory, *, command: str | None = None) -> dict[str, Any]:
    """Play one unit with fresh agents; its trajectory record."""
    agents = agents_factory(unit.template)
    episode = await aplay(Episode.start(unit.template, unit.seed, trial=unit.trial, max_turns=unit.max_turns),
                          agents)
    try:
        return to_trajectory(episode, agents, command=command)
    finally:
        episode.close()


def _unique(units: list[WorkUnit]) -> list[WorkUnit]:
    seen: set[UnitKey] = set()
    out = []
    for u in units:
        if u.key not in seen:
            seen.add(u.key)
            out.append(u)
    return out


async def _in_flight(units: Iterable[WorkUnit], concurrency: int,
                     play: Callable[[WorkUnit], Any], done: Callable[[Any], None]) -> None:
    """Run ``play`` over ``units`` with at most ``concurrency`` in flight, calling ``done`` with
    each result (in the event loop) as soon as it is ready. The first exception cancels the rest.
    ``units`` may be shared with other processes (:class:`~trajgym.rollout.workers.SharedUnits`)."""
    count = len(units) if isinstance(units, Sized) else concurrency
    if not count:
        return
    pending = iter(units)

    async def worker() -> None:
        for unit in pending:  # one shared iterator: each unit is taken once
            done(await play(unit))
            await asyncio.sleep(0)  # let the other workers run even if the agents never await

    tasks: list[asyncio.Task[None]] = []
    failed: list[asyncio.Task[None]] = []

    def on_end(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            failed.append(task)

    try:
        for i in range(min(concurrency, count)):
            if i and i % START_BATCH == 0:
                await asyncio.sleep(0)  # the started episodes send and read while the rest start
                if failed:
                    break
            tasks.append(asyncio.create_task(worker()))
            tasks[-1].add_done_callback(on_end)
        finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in finished:
            exc = task.exception()
            if exc is not None:
                raise exc
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close_connections()  # the model agents' connections of this event loop


def _todo(units: list[WorkUnit], out: str | Path, resume: bool) -> tuple[list[WorkUnit], int, Path | None]:
    units = _unique(units)
    done, torn = prepare_output(out, units, resume=resume)
    todo = [u for u in units if u.key not in done]
    return todo, len(units) - len(todo), torn


async def arun_job(units: list[WorkUnit], out: str | Path, agents_factory: AgentsFactory, *,
                   concurrency: int = 8, resume: bool = False, command: str | None = None,
                   on_episode: OnEpisode | None = None, on_start: Callable[[JobResult, int], None] | None = None,
                   on_progress: OnProgress | None = None, fsync: bool = True, workers: int = 1) -> JobResult:
    """The async form of :func:`run_job`, for callers that already run an event loop."""
    if concurrency < 1 or workers < 1:
        raise TrajgymError("concurrency and workers must be at least 1")
    out = Path(out)
    with _exclusive(out):
        todo, skipped, torn = _todo(units, out, resume)
        result = JobResult({}, skipped=skipped, torn=torn)
        if on_start is not None:
            on_start(result, len(todo))
        with TrajectoryWriter(out, fsync=fsync) as writer:
            def done(traj: dict[str, Any]) -> None:
                writer.write(traj)
                result.record(digest(traj))
                if on_episode is not None:
                    on_episode(traj)
                if on_progress is not None:
                    on_progress(result)

            def done_elsewhere(lines: list[tuple[bytes, dict[str, Any]]]) -> None:
                """Episodes a worker played: their lines, written together, and their digests."""
                writer.write_lines([line for line, _ in lines])
                for line, d in lines:
                    result.record(d)
                    if on_episode is not None:
                        on_episode(jsonio.loads(line))
                    if on_progress is not None:
                        on_progress(result)

            async with collector_tuned():
                if workers > 1:
                    from trajgym.rollout.workers import play_in_workers

                    result.worker_cpu_s = await play_in_workers(
                        todo, agents_factory, workers=workers, concurrency=concurrency, command=command,
                        on_lines=done_elsewhere, on_episode=done)
                else:
                    await _in_flight(todo, concurrency, lambda u: play_unit(u, agents_factory, command=command),
                                     done)
    return result


def run_job(units: list[WorkUnit], out: str | Path, agents_factory: AgentsFactory, *,
            concurrency: int = 8, resume: bool = False, command: str | None = None,
            on_episode: OnEpisode | None = None, on_start: Callable[[JobResult, int], None] | None = None,
            on_progress: OnProgress | None = None, fsync: bool = True, workers: int = 1) -> JobResult:
    """Play ``units`` with ``concurrency`` episodes in flight, appending each to ``out`` as it ends.

    Without ``resume`` a non-empty ``out`` is an error. With it, a torn last line (a crash) is moved
    aside, units the file holds with a normal ending are skipped, and units that are missing or
    ended ``infra_error`` are played again (the old infra-error line stays: read the file with
    :func:`trajgym.trajectory.latest_per_unit`). ``on_start(result, n_to_run)`` is called once the
    output has been checked, ``on_episode(trajectory)`` after each episode is written, and
    ``on_progress(result)`` then too, with the counts so far in ``result.totals`` (a progress bar
    needs no trajectory: it costs the job nothing to decode).

    ``workers`` > 1 plays the units in that many processes, this one included, the concurrency shared
    among them (:mod:`trajgym.rollout.workers`): for thousands of episodes in flight on a machine with
    cores to spare. ``on_episode`` then gets a worker's trajectory decoded from its line (this
    process's CPU: leave it out of big jobs, ``on_progress`` decodes nothing).
    """
    return asyncio.run(arun_job(units, out, agents_factory, concurrency=concurrency, resume=resume,
                                command=command, on_episode=on_episode, on_start=on_start,
                                on_progress=on_progress, fsync=fsync, workers=workers))


# ---------------------------------------------------------------------------------------------
# job files


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


class JobFileError(ScenarioError):
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


def batches(units: list[WorkUnit], size: int) -> list[list[WorkUnit]]:
    """``units`` cut into lists of at most ``size``."""
    n = max(1, size)
    return [units[i:i + n] for i in range(0, len(units), n)] if units else []


def default_batch_size(n_units: int, workers: int) -> int:
    """Enough batches to keep ``workers`` busy (about four each), at most 16 units a batch."""
    return max(1, min(16, math.ceil(n_units / max(1, 4 * workers))))
