"""The Ray backend of batch jobs: the same job, spread over a Ray cluster.

Remote tasks play batches of work units (each batch with its own in-flight concurrency) and return
the trajectory dicts; the driver writes them with the same writer as the local backend, so the
output format, crash safety and ``resume`` are identical. Workers need trajgym installed (the
scenario templates travel with the tasks, the scenario files need not exist there).

Ray is optional: ``pip install 'trajgym[ray]'``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trajgym.errors import TrajgymError
from trajgym.rollout.jobs import (
    AgentSpec,
    JobResult,
    OnEpisode,
    OnProgress,
    _exclusive,
    _in_flight,
    _todo,
    batches,
    default_batch_size,
    play_unit,
)
from trajgym.rollout.runner import WorkUnit, digest
from trajgym.trajectory.store import TrajectoryWriter


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
    asyncio.run(_in_flight(units, concurrency, lambda u: play_unit(u, agents, command=command), out.append))
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
    with _exclusive(out):
        todo, skipped, torn = _todo(units, out, resume)
        result = JobResult({}, skipped=skipped, torn=torn)
        if on_start is not None:
            on_start(result, len(todo))
        if not todo:
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
            size = batch_size or default_batch_size(len(todo), cpus)
            remote = ray.remote(num_cpus=1)(play_batch)
            queue = batches(todo, size)
            queue.reverse()
            in_flight: list[Any] = []
            with TrajectoryWriter(out, fsync=fsync) as writer:
                while queue or in_flight:
                    while queue and len(in_flight) < 2 * cpus:
                        in_flight.append(remote.remote(queue.pop(), agents, concurrency, command))
                    ready, in_flight = ray.wait(in_flight, num_returns=1)
                    for traj in ray.get(ready[0]):
                        writer.write(traj)
                        result.record(digest(traj))
                        if on_episode is not None:
                            on_episode(traj)
                        if on_progress is not None:
                            on_progress(result)
        finally:
            if started:
                ray.shutdown()
    return result
