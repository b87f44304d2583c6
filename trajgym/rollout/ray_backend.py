"""The Ray backend of batch jobs: the same job, spread over a Ray cluster.

Remote tasks play batches of work units (each batch with its own in-flight concurrency) and return
the trajectory dicts; the driver writes them with the same writer as the local backend, so the
output format, crash safety and ``resume`` are identical. Workers need trajgym installed (the
scenario templates travel with the tasks, the scenario files need not exist there).

Ray is optional: ``pip install 'trajgym[ray]'``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trajgym.errors import TrajgymError
from trajgym.rollout.agentspec import AgentSpec, assign_policies
from trajgym.rollout.inflight import in_flight, play_unit
from trajgym.rollout.output import exclusive, todo
from trajgym.rollout.runner import WorkUnit
from trajgym.rollout.sink import JobResult, JobSink, OnEpisode, OnProgress
from trajgym.trajectory.store import TrajectoryWriter


def batches(units: list[WorkUnit], size: int) -> list[list[WorkUnit]]:
    """``units`` cut into lists of at most ``size``."""
    n = max(1, size)
    return [units[i:i + n] for i in range(0, len(units), n)] if units else []


def default_batch_size(n_units: int, workers: int) -> int:
    """Enough batches to keep ``workers`` busy (about four each), at most 16 units a batch."""
    return max(1, min(16, math.ceil(n_units / max(1, 4 * workers))))


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise TrajgymError("the ray backend needs Ray, which is not installed: "
                           "pip install 'trajgym[ray]' (the `ray` extra)") from None
    return ray


def play_batch(units: list[WorkUnit], agents: AgentSpec, concurrency: int, command: str | None) -> list[dict[str, Any]]:
    """Play a batch of units (in a Ray worker); their trajectories, in the order they ended."""
    out: list[dict[str, Any]] = []
    asyncio.run(in_flight(units, concurrency, lambda u: play_unit(u, agents, command=command), out.append))
    return out


def run_job_ray(units: list[WorkUnit], out: str | Path, agents: AgentSpec, *, address: str | None = None,
                batch_size: int | None = None, concurrency: int = 8, resume: bool = False,
                command: str | None = None, on_episode: OnEpisode | None = None,
                on_start: Callable[[JobResult, int], None] | None = None,
                on_progress: OnProgress | None = None, fsync: bool = True,
                init_kwargs: dict[str, Any] | None = None) -> JobResult:
    """:func:`trajgym.rollout.jobs.run_job` on Ray. Connects to ``address`` (or starts a local Ray,
    without its dashboard) unless Ray is already initialized; shuts down only what it started.
    ``concurrency`` is the episodes in flight within each task."""
    if concurrency < 1:
        raise TrajgymError("concurrency must be at least 1")
    ray = import_ray()
    out = Path(out)
    units = asyncio.run(assign_policies(units, agents))
    job = units[0].job_id if units else None
    with exclusive(out):
        left, skipped, torn = todo(units, out, resume)
        result = JobResult({}, skipped=skipped, torn=torn, job_id=job)
        if on_start is not None:
            on_start(result, len(left))
        if not left:
            return result
        started = False
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False, **(init_kwargs or {})}
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise TrajgymError(f"cannot start or reach Ray at {address or 'a new local cluster'}: {exc}") from None
            started = True
        try:
            cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
            size = batch_size or default_batch_size(len(left), cpus)
            remote = ray.remote(num_cpus=1)(play_batch)
            queue = batches(left, size)
            queue.reverse()
            running: list[Any] = []
            with TrajectoryWriter(out, fsync=fsync) as writer:
                sink = JobSink(writer, result, on_episode, on_progress)
                while queue or running:
                    while queue and len(running) < 2 * cpus:
                        running.append(remote.remote(queue.pop(), agents, concurrency, command))
                    ready, running = ray.wait(running, num_returns=1)
                    for traj in ray.get(ready[0]):
                        sink.episode(traj)
        finally:
            if started:
                ray.shutdown()
    return result
