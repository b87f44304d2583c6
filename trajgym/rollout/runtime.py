"""The Python runtime tuned for a batch job: thousands of live episodes in one process.

CPython's cyclic garbage collector runs a young collection every 700 net container allocations
and, every tenth and hundredth time, older ones. A young collection walks every young object and
what it refers to (a model answer's 600 prompt token ids included), and at 1,000 episodes in flight
the young generation is always full of live episodes: in the rollout throughput bench the
collector took nearly half of the client's CPU time with the default thresholds and still a
sixth with a young threshold of 50,000, and found nothing: an episode's objects form no reference cycles
and are freed by reference counting when it ends.

:func:`collector_tuned` therefore freezes what lives before the job (modules, scenario templates:
never garbage during it), turns automatic collection off while the job runs, and collects every
``every_s`` seconds instead, so reference cycles that agents or libraries do leave behind are still
freed; while those collections find nothing, they come less and less often, for each walks every
live episode (a tenth of a second of CPU or more at 1,000 in flight). Everything is restored when the job ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

log = logging.getLogger(__name__)

COLLECT_EVERY_S = 10.0
"""Seconds between two collections while a job runs and they find reference cycles."""

MAX_INTERVAL_S = 320.0
"""Seconds between two collections at the most, while they find none."""


@dataclass
class _Tuning:
    """The process's one tuning: how many blocks run, and what to restore after the last."""

    depth: int = 0
    enabled: bool = True
    collector: asyncio.Task[None] | None = None


_tuning = _Tuning()


@contextlib.asynccontextmanager
async def collector_tuned(every_s: float = COLLECT_EVERY_S) -> AsyncIterator[None]:
    """Run the block with the garbage collector tuned for many live episodes (see the module's
    docstring). The setting is process-wide: blocks that overlap (jobs run concurrently on one
    event loop) share the first one's, and the collector comes back as it was when the last ends."""
    state = _tuning
    if state.depth == 0:
        state.enabled = gc.isenabled()
        gc.collect()
        gc.freeze()
        gc.disable()
        state.collector = asyncio.create_task(_collect_every(every_s), name="trajgym-gc")
    state.depth += 1
    try:
        yield
    finally:
        state.depth -= 1
        if state.depth == 0:
            task, state.collector = state.collector, None
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            gc.unfreeze()
            if state.enabled:
                gc.enable()


async def _collect_every(seconds: float) -> None:
    """Collect every ``seconds``; while collections find nothing, half as often each time (down to
    every :data:`MAX_INTERVAL_S`): a full collection of 1,000 live episodes takes 0.1 s of CPU or more."""
    interval = seconds
    while True:
        await asyncio.sleep(interval)
        found = gc.collect()
        interval = seconds if found else min(2 * interval, max(seconds, MAX_INTERVAL_S))
        log.debug("collected %d unreachable objects; next collection in %.0f s", found, interval)
