"""Worker processes for a batch job: the client's CPU spread over several cores.

At 1,000 episodes in flight a job is bound by one event loop's CPU (envs, agents, HTTP, records),
not by the model server. ``arun_job(..., workers=N)`` plays in ``N`` processes: the job's own and
``N - 1`` started for it, each with a share of the concurrency on its own event loop. The units are
not dealt out in advance: each process takes the next unit from a counter they share whenever it
has a free slot, so the job's process starts at once, a worker joins when it has started, and a
slower process takes fewer units. A worker
sends each trajectory, already encoded as its JSONL line, with its digest (the few counts a job's
summary and progress need), to the job's process, which alone appends to the output: one writer,
one append-only file, the same crash safety and ``resume``. The job's process does not decode the
lines (unless it was given an ``on_episode``), and a worker sends the episodes that ended within
:data:`BATCH_S` of each other in one message: the job's process plays too, so what it spends per
worker's episode is taken from its own. A worker that fails ends the job with its error (after
sending the episodes it ended), as an episode's error does in one process; a worker that dies ends
it with a :class:`~trajgym.errors.TrajgymError` (the episodes it had in flight, and those it ended
in its last :data:`BATCH_S`, are not in the output, and ``resume`` plays them).

Workers are forked from multiprocessing's fork server (``forkserver``; ``spawn`` where there is none):
a process started once, the first time a job needs it (or earlier, by :func:`start_server`), which
imports trajgym and the main module, then forks each worker from that single-threaded state, never
from the job's process with its threads and event loop. A worker starts in milliseconds once the
server runs (a fresh interpreter takes most of a second); the job's process starts its workers on
threads, so it plays meanwhile. The agents factory and the units must pickle, as for the Ray
backend, and, as for any ``spawn`` or ``forkserver`` process, a script that runs such a job needs
the ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import pickle
import signal
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from trajgym import jsonio
from trajgym.errors import TrajgymError
from trajgym.rollout.runner import WorkUnit, digest
from trajgym.rollout.runtime import collector_tuned

LINES, DONE, ERROR, DIED = b"L", b"D", b"E", b"X"
"""The first byte of a worker's message: episodes; the end of its units; its error (DIED: the job's
own mark for a worker that ended without either)."""
FRAME = struct.Struct(">II")
"""Each episode of a LINES message: the lengths of its digest and of its line, then both."""
BATCH_S = 0.05
"""A worker sends the episodes that ended within this many seconds together."""
PIPE_BYTES = 1 << 20
"""The pipe from a worker, enlarged where Linux allows, so a worker seldom waits to send."""
CPU = struct.Struct(">d")
"""A DONE message's payload: the worker's CPU seconds."""
PRELOAD = ("__main__", "trajgym.rollout.jobs", "trajgym.agents.openai_agent", "trajgym.rollout._forkserver")
"""What the fork server imports before it forks workers (``__main__``: the script or command that
runs the job, which the workers would import otherwise; last, :mod:`trajgym.rollout._forkserver`:
the built-in domains, then its heap collected and frozen)."""


def context() -> Any:
    """The multiprocessing context of worker processes: the fork server where the platform has one."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(PRELOAD))
        return ctx
    return multiprocessing.get_context("spawn")


def start_server() -> None:
    """Start the fork server now, if it is not running (it returns at once; the server imports
    trajgym on its own core meanwhile): call it early where a job with workers will follow."""
    if context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def shares(concurrency: int, workers: int, units: int) -> list[int]:
    """The slots of each of at most ``workers`` processes: ``concurrency`` split as evenly as it goes
    (at least 1 each, together ``concurrency`` or fewer when units are few)."""
    n = max(1, min(workers, concurrency, units))
    return [concurrency // n + (i < concurrency % n) for i in range(n)]


class SharedUnits:
    """The units of a job, taken one at a time by every process that plays it: an iterator over
    ``units`` that claims each index from a counter in shared memory, so each unit is played once."""

    def __init__(self, units: list[WorkUnit], counter: Any, lock: Any) -> None:
        self.units = units
        self.counter = counter
        self.lock = lock

    def __iter__(self) -> SharedUnits:
        return self

    def __len__(self) -> int:
        return len(self.units)

    def __next__(self) -> WorkUnit:
        with self.lock:
            i = self.counter.value
            if i >= len(self.units):
                raise StopIteration
            self.counter.value = i + 1
        unit: WorkUnit = self.units[i]
        return unit


def _worker(units_file: str, shared: tuple[Any, Any], agents_factory: Any, conn: Connection, *,
            concurrency: int, command: str | None, environ: dict[str, str]) -> None:
    """A worker process: play units taken from the shared counter and send each trajectory line,
    then DONE or the error. (The units travel in a file: a process's arguments that fill the pipe
    they are sent through leave the parent blocked on it if the new process fails before reading.)
    ``environ`` is the job's environment: the fork server's is that of when it started."""
    from trajgym.rollout.inflight import in_flight, play_unit

    os.environ.clear()
    os.environ.update(environ)  # OPENAI_BASE_URL, OPENAI_API_KEY, ... as the job's process has them
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the job's process, which ends this one
    units = SharedUnits(pickle.loads(Path(units_file).read_bytes()), *shared)

    batch = _Batch(conn)

    async def main() -> None:
        try:
            async with collector_tuned():
                await in_flight(units, concurrency, lambda u: play_unit(u, agents_factory, command=command),
                                 batch.add)
        finally:
            batch.send()  # the episodes that ended, before the end or the error

    try:
        asyncio.run(main())
    except BaseException as exc:
        conn.send_bytes(ERROR + _pickled(exc))
    else:
        conn.send_bytes(DONE + CPU.pack(time.process_time()))
    finally:
        conn.close()


class _Batch:
    """A worker's ended episodes not sent yet: each as its digest and line (:data:`FRAME`), sent as
    one LINES message :data:`BATCH_S` after the first of them ended."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.parts: list[bytes] = [LINES]
        self.timer: asyncio.TimerHandle | None = None

    def add(self, traj: dict[str, Any]) -> None:
        line, head = jsonio.dumps_line(traj), jsonio.dumps(digest(traj))
        self.parts += [FRAME.pack(len(head), len(line)), head, line]
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(BATCH_S, self.send)

    def send(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if len(self.parts) > 1:
            data, self.parts = b"".join(self.parts), [LINES]
            self.conn.send_bytes(data)


def episodes_of(payload: bytes) -> list[tuple[bytes, dict[str, Any]]]:
    """The (line, digest) of each episode of a LINES message's payload."""
    out = []
    at, end = 0, len(payload)
    while at < end:
        n_head, n_line = FRAME.unpack_from(payload, at)
        at += FRAME.size
        head = jsonio.loads(payload[at:at + n_head])
        at += n_head
        out.append((payload[at:at + n_line], head))
        at += n_line
    return out


def _pickled(exc: BaseException) -> bytes:
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)  # some exceptions pickle but cannot be rebuilt
    except Exception:
        data = pickle.dumps(TrajgymError(f"{type(exc).__name__}: {exc}"))
    return data


def _read(conn: Connection, sentinel: int, loop: asyncio.AbstractEventLoop,
          queue: asyncio.Queue[tuple[int, bytes]], index: int) -> None:
    """A reader thread: pass each of a worker's messages to the job's loop, until its last (DONE or
    its error); DIED when the process ended without one (the pipe may never read EOF then: a worker
    that dies before it took its end of the pipe leaves a copy open in this process)."""
    try:
        while True:
            if conn not in wait([conn, sentinel]) and not conn.poll(0):
                raise EOFError  # the process ended, and everything it sent has been read
            msg = conn.recv_bytes()
            loop.call_soon_threadsafe(queue.put_nowait, (index, msg))
            if msg[:1] != LINES:
                return
    except (EOFError, OSError):
        loop.call_soon_threadsafe(queue.put_nowait, (index, DIED))
    finally:
        conn.close()


async def play_in_workers(units: list[WorkUnit], agents_factory: Any, *, workers: int, concurrency: int,
                          command: str | None, on_lines: Callable[[list[tuple[bytes, dict[str, Any]]]], None],
                          on_episode: Callable[[dict[str, Any]], None]) -> float:
    """Play ``units`` here and in ``workers - 1`` worker processes: ``on_episode(trajectory)`` for
    each episode played here, ``on_lines([(line, digest), ...])`` for the episodes of each message
    of a worker (both in this event loop). Returns the CPU seconds the workers spent."""
    from trajgym.rollout.inflight import in_flight, play_unit

    slots = shares(concurrency, workers, len(units))
    if not units:
        return 0.0
    try:
        pickle.dumps(agents_factory)
    except Exception as exc:
        raise TrajgymError(f"workers > 1 needs agents that can be sent to other processes (an AgentSpec, "
                           f"or another picklable factory): {exc}") from None
    ctx = context()
    counter, lock = ctx.RawValue("q", 0), ctx.Lock()
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    procs: list[Any] = []
    sends: list[Connection] = []
    starters: list[threading.Thread] = []
    readers: list[threading.Thread] = []
    cpu = 0.0

    async def from_workers() -> None:
        nonlocal cpu
        running = len(slots) - 1
        while running:
            index, msg = await queue.get()
            tag, payload = msg[:1], msg[1:]
            if tag == LINES:
                on_lines(episodes_of(payload))
            elif tag == DONE:
                running -= 1
                cpu += CPU.unpack(payload)[0]
            elif tag == ERROR:
                raise _unpickled(payload)
            else:
                await asyncio.to_thread(procs[index].join, 5)
                raise TrajgymError(f"worker process {index + 1} ended (exit code {procs[index].exitcode}) "
                                   "before its episodes did; those in flight are not in the output: run "
                                   "the job again with resume to play them")

    with tempfile.TemporaryDirectory(prefix="trajgym-workers-") as tmp:
        try:
            units_file = Path(tmp) / "units.pickle"
            units_file.write_bytes(pickle.dumps(units))

            async def start_workers() -> None:
                """Start each worker on a thread (the fork server may still be importing), then
                its reader; this loop plays meanwhile."""
                for index, conc in enumerate(slots[1:]):
                    receive, send = ctx.Pipe(duplex=False)
                    sends.append(send)
                    _enlarge(send)
                    proc = ctx.Process(target=_worker,
                                       args=(str(units_file), (counter, lock), agents_factory, send),
                                       kwargs={"concurrency": conc, "command": command,
                                               "environ": dict(os.environ)},
                                       name=f"trajgym-worker-{index + 1}", daemon=True)
                    procs.append(proc)
                    failed: list[BaseException] = []
                    starters.append(threading.Thread(target=_start, args=(proc, failed), daemon=True,
                                                     name=f"trajgym-worker-{index + 1}-start"))
                    starters[-1].start()
                    await asyncio.to_thread(starters[-1].join)
                    send.close()  # the worker holds it now
                    if failed:
                        receive.close()
                        raise failed[0]
                    readers.append(threading.Thread(target=_read, args=(receive, proc.sentinel, loop, queue, index),
                                                    name=f"trajgym-worker-{index + 1}-reader", daemon=True))
                    readers[-1].start()

            here = in_flight(SharedUnits(units, counter, lock), slots[0],
                              lambda u: play_unit(u, agents_factory, command=command), on_episode)
            tasks = [asyncio.ensure_future(here), asyncio.ensure_future(from_workers()),
                     asyncio.ensure_future(start_workers())]
            try:
                finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in finished:
                    if task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for starter in starters:  # a worker still starting is started before it is ended
                await asyncio.to_thread(starter.join, 60)
            for send in sends:
                send.close()
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
            for proc in procs:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(proc.join, 10)
            for reader in readers:  # each ends at its worker's end; before this loop does
                await asyncio.to_thread(reader.join, 10)
    return cpu


def _start(proc: Any, failed: list[BaseException]) -> None:
    """Start ``proc`` (on a thread: with the fork server, until it has imported trajgym)."""
    try:
        proc.start()
    except BaseException as exc:
        failed.append(exc)


def _enlarge(conn: Connection) -> None:
    """Make the pipe under ``conn`` hold :data:`PIPE_BYTES` (Linux; elsewhere, or past the system's
    limit, it keeps its size)."""
    try:
        import fcntl

        fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass


def _unpickled(payload: bytes) -> BaseException:
    exc = pickle.loads(payload)
    return exc if isinstance(exc, BaseException) else TrajgymError(f"a worker failed: {exc!r}")
