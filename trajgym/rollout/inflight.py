"""The in-flight loop: a job's units played with at most ``concurrency`` episodes at once on one
event loop, each handed on the moment it ends. The local backend, its worker processes and the Ray
backend's tasks all run it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sized
from typing import Any

from trajgym.agents.openai_agent import close_connections
from trajgym.envs.core import Episode
from trajgym.rollout.agentspec import AgentsFactory
from trajgym.rollout.episode import aplay, aprepare_agents, to_trajectory
from trajgym.rollout.runner import WorkUnit

START_BATCH = 4
"""Episodes a job sets up per turn of the event loop when it starts. Between batches the loop sends
and reads, so the first episodes' requests go out while the others are still being set up: all at
once, a job of 1,000 in flight set up every episode (about 0.7 s) before its first request left."""


async def play_unit(unit: WorkUnit, agents_factory: AgentsFactory, *, command: str | None = None) -> dict[str, Any]:
    """Play one unit with fresh agents; its trajectory record. Its policy is the unit's, which the job
    computed from the same factory's agents for the scenario (:func:`~trajgym.rollout.agentspec.assign_policies`)."""
    agents = agents_factory(unit.template)
    if unit.policy:
        for agent in agents.values():
            await agent.aprepare()
        policy = unit.policy
    else:
        policy = await aprepare_agents(agents)
    episode = await aplay(Episode.start(unit.template, unit.seed, trial=unit.trial, max_turns=unit.max_turns,
                                        policy=policy), agents)
    try:
        return to_trajectory(episode, agents, command=command, job_id=unit.job_id)
    finally:
        episode.close()


async def in_flight(units: Iterable[WorkUnit], concurrency: int,
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
