"""The garbage collector while a job runs: off, with a periodic collection; restored after."""

from __future__ import annotations

import asyncio
import gc
import weakref

from trajgym.rollout.runtime import collector_tuned


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_collector_is_off_in_the_block_and_collects_periodically() -> None:
    async def go() -> None:
        async with collector_tuned(every_s=0.01):
            assert not gc.isenabled() and gc.get_freeze_count() > 0
            ref = weakref.ref(Node())
            for _ in range(500):  # the periodic collection frees the cycle
                await asyncio.sleep(0.01)
                if ref() is None:
                    break
            assert ref() is None

    assert gc.isenabled()
    thresholds = gc.get_threshold()
    asyncio.run(go())
    assert gc.isenabled() and gc.get_freeze_count() == 0 and gc.get_threshold() == thresholds


def test_overlapping_blocks_share_the_setting_until_the_last_ends() -> None:
    async def job(started: asyncio.Event, release: asyncio.Event) -> None:
        async with collector_tuned():
            started.set()
            await release.wait()

    async def go() -> None:
        a_started, b_started, a_release, b_release = (asyncio.Event() for _ in range(4))
        a = asyncio.create_task(job(a_started, a_release))
        await a_started.wait()
        b = asyncio.create_task(job(b_started, b_release))
        await b_started.wait()
        a_release.set()
        await a
        assert not gc.isenabled()  # b still runs
        b_release.set()
        await b
        assert gc.isenabled() and gc.get_freeze_count() == 0
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "trajgym-gc"]

    asyncio.run(go())


def test_a_disabled_collector_stays_disabled() -> None:
    async def go() -> None:
        async with collector_tuned():
            pass

    gc.disable()
    try:
        asyncio.run(go())
        assert not gc.isenabled()
    finally:
        gc.enable()
