"""Batch rollout jobs: many work units played concurrently into one append-only JSONL file.

A job is a list of :class:`~trajgym.rollout.runner.WorkUnit` (scenario, seed, trial), played by
the agents an agents factory makes (an :class:`~trajgym.rollout.agentspec.AgentSpec`): the job
first prepares one set of them per scenario, which gives each unit its policy, the fourth part of
its key ``(scenario_id, seed, trial, policy)`` recorded in its trajectory. :func:`run_job` keeps
``concurrency`` episodes in flight on one asyncio event loop (:mod:`trajgym.rollout.inflight`:
agents' ``aact`` awaits a model server, so its continuous batching stays full) and appends each
episode the moment it ends (:mod:`trajgym.rollout.sink`): one writer, one line per episode, flushed
(and fsynced within 0.1 s). A crash loses at most the episodes in flight, and ``resume=True`` plays
only the units the file does not hold yet (or holds only as ``infra_error``;
:mod:`trajgym.rollout.output`), so a job can be killed and resumed any number of times.

The same job runs in several processes (``workers``, :mod:`trajgym.rollout.workers`) or on Ray
(:mod:`trajgym.rollout.ray_backend`); a job can also be declared in a YAML file
(:mod:`trajgym.rollout.jobfile`, ``trajgym rollout --job``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from trajgym.errors import TrajgymError
from trajgym.rollout.agentspec import AgentsFactory, assign_policies
from trajgym.rollout.inflight import in_flight, play_unit
from trajgym.rollout.output import exclusive, todo
from trajgym.rollout.runner import WorkUnit
from trajgym.rollout.runtime import collector_tuned
from trajgym.rollout.sink import JobResult, JobSink, OnEpisode, OnProgress
from trajgym.trajectory.store import TrajectoryWriter


async def arun_job(units: list[WorkUnit], out: str | Path, agents_factory: AgentsFactory, *,
                   concurrency: int = 8, resume: bool = False, command: str | None = None,
                   on_episode: OnEpisode | None = None, on_start: Callable[[JobResult, int], None] | None = None,
                   on_progress: OnProgress | None = None, fsync: bool = True, workers: int = 1) -> JobResult:
    """The async form of :func:`run_job`, for callers that already run an event loop."""
    if concurrency < 1 or workers < 1:
        raise TrajgymError("concurrency and workers must be at least 1")
    out = Path(out)
    units = await assign_policies(units, agents_factory)
    job = units[0].job_id if units else None
    with exclusive(out):
        left, skipped, torn = todo(units, out, resume)
        result = JobResult({}, skipped=skipped, torn=torn, job_id=job)
        if on_start is not None:
            on_start(result, len(left))
        with TrajectoryWriter(out, fsync=fsync) as writer:
            sink = JobSink(writer, result, on_episode, on_progress)
            async with collector_tuned():
                if workers > 1:
                    from trajgym.rollout.workers import play_in_workers

                    result.worker_cpu_s = await play_in_workers(
                        left, agents_factory, workers=workers, concurrency=concurrency, command=command,
                        on_lines=sink.lines, on_episode=sink.episode)
                else:
                    await in_flight(left, concurrency, lambda u: play_unit(u, agents_factory, command=command),
                                    sink.episode)
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
