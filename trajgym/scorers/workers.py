"""Scoring in several worker processes, for the rule-based scorers: CPU-bound Python, so one
process scores on one core.

The main process picks the lines to score (:func:`trajgym.scorers.pipeline.select_lines`) and deals
them out in chunks; each worker validates its lines, scores them and serializes the records; the
main process writes the lines back in input order and ranks them (:mod:`trajgym.scorers.writer`),
so the scored file is byte for byte the one a single process writes. The trials of a scenario
variation go to one worker (in blocks of :data:`BLOCK`), which plays the variation's reference run
once; blocks go to the worker with the fewest lines so far.

Workers are forked: each inherits the run's scorers and scenario cache as they are when it starts,
so only scorers that say they can be copied that way (``Scorer.forkable``) run in workers, and only
where the platform forks safely (:func:`can_fork`); elsewhere one process scores. A bad input line
or a scorer's exception stops the run at that line, as in one process (the exception, with the
worker's traceback in a note); a worker that dies stops it too.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.context import ForkProcess
from typing import TYPE_CHECKING, Any

from trajgym.errors import TrajectoryFileError, TrajgymError
from trajgym.scorers.writer import Entry, ScoredFileWriter
from trajgym.trajectory.store import parse_trajectory

if TYPE_CHECKING:
    from trajgym.scorers.pipeline import Scoring

CHUNK = 16
"""Lines sent to a worker at once."""
BLOCK = 8
"""Consecutive trials of a scenario variation that go to the same worker."""
QUEUED = 4
"""Chunks waiting for each worker at most."""
POLL_S = 1.0
"""How often a waiting main process checks that its workers are alive."""

Item = tuple[int, str, int, bytes]
"""(sequence number, input file, line number, line) of one line to score."""


@dataclass(frozen=True)
class _Scored:
    line: str
    entry: Entry


@dataclass(frozen=True)
class _Invalid:
    path: str
    n: int
    message: str


@dataclass(frozen=True)
class _Failed:
    error: BaseException


Outcome = _Scored | _Invalid | _Failed


def can_fork(scoring: Scoring) -> bool:
    """Whether ``scoring`` can run in forked workers here: every scorer is forkable and synchronous,
    and the platform forks safely (not Windows, which cannot, nor macOS, whose system libraries may
    not survive a fork)."""
    return ("fork" in multiprocessing.get_all_start_methods() and sys.platform != "darwin"
            and all(a.scorer.forkable and not a.scorer.is_async for a in scoring.scorers))


def score_in_workers(items: Iterable[tuple[str, Item]], scoring: Scoring, writer: ScoredFileWriter, workers: int,
                     on_progress: Callable[[], None] | None) -> None:
    """Score ``items`` ((group, item) in input order) in ``workers`` forked processes into ``writer``."""
    context = multiprocessing.get_context("fork")
    inboxes = [context.Queue(maxsize=QUEUED) for _ in range(workers)]
    outbox = context.Queue()
    procs: list[ForkProcess] = []
    sys.stdout.flush()  # a worker flushes what it inherited when it ends: nothing, then
    sys.stderr.flush()
    gc.freeze()  # the workers' collections leave what they inherit alone: no copies of its pages
    try:
        for inbox in inboxes:  # forked: the worker inherits ``scoring`` as it is, nothing is pickled
            proc = context.Process(target=_work, args=(scoring, inbox, outbox, os.getpid()), daemon=True,
                                   name="trajgym-score")
            proc.start()
            procs.append(proc)
    finally:
        gc.unfreeze()
    collected = _InOrder(writer, on_progress, outbox, procs)
    try:
        sent = _deal(items, inboxes, collected)
        for inbox in inboxes:
            _put(inbox, None, collected)
        while collected.next < sent:
            collected.wait()
        for proc in procs:
            proc.join(POLL_S)  # they have sent everything and were told to stop
    finally:
        for inbox in inboxes:  # nothing left to send matters now: never wait at exit to send it
            inbox.cancel_join_thread()
            inbox.close()
        outbox.close()
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()


def _deal(items: Iterable[tuple[str, Item]], inboxes: list[Any], collected: _InOrder) -> int:
    """Send every item to a worker, in chunks; returns how many were sent."""
    chunks: list[list[Item]] = [[] for _ in inboxes]
    load = [0] * len(inboxes)
    home: dict[tuple[str, int], int] = {}  # (group, block) -> worker
    trials: Counter[str] = Counter()
    sent = 0
    for group, item in items:
        block = (group, trials[group] // BLOCK)
        trials[group] += 1
        if block not in home:
            home[block] = load.index(min(load))
        w = home[block]
        load[w] += 1
        chunks[w].append(item)
        sent += 1
        if len(chunks[w]) >= CHUNK:
            _put(inboxes[w], chunks[w], collected)
            chunks[w] = []
            collected.take(block=False)
    for inbox, chunk in zip(inboxes, chunks, strict=True):
        if chunk:
            _put(inbox, chunk, collected)
    return sent


def _put(inbox: Any, chunk: list[Item] | None, collected: _InOrder) -> None:
    """Queue ``chunk`` for a worker, writing what comes back while its queue is full."""
    while True:
        try:
            inbox.put(chunk, timeout=POLL_S)
            return
        except queue.Full:
            collected.take(block=False)
            collected.check_alive()


class _InOrder:
    """Receives the workers' results and writes them in input order."""

    def __init__(self, writer: ScoredFileWriter, on_progress: Callable[[], None] | None, outbox: Any,
                 procs: list[ForkProcess]) -> None:
        self.writer, self.on_progress, self.outbox, self.procs = writer, on_progress, outbox, procs
        self.next = 0
        self.waiting: dict[int, Outcome] = {}

    def wait(self) -> None:
        """Block until a worker sends something, then write what is in order."""
        while not self.take(block=True):
            self.check_alive()

    def take(self, *, block: bool) -> bool:
        """Write whatever results are in (waiting up to :data:`POLL_S` with ``block``); False if none were."""
        try:
            results: list[tuple[int, Outcome]] = self.outbox.get(block=block, timeout=POLL_S if block else None)
        except queue.Empty:
            return False
        self.waiting.update(results)
        while self.next in self.waiting:
            self._write(self.waiting.pop(self.next))
            self.next += 1
        return True

    def _write(self, outcome: Outcome) -> None:
        if isinstance(outcome, _Invalid):
            raise TrajectoryFileError(outcome.path, outcome.n, outcome.message)
        if isinstance(outcome, _Failed):
            raise outcome.error
        self.writer.add(outcome.line, outcome.entry)
        if self.on_progress is not None:
            self.on_progress()

    def check_alive(self) -> None:
        dead = [p for p in self.procs if p.exitcode not in (None, 0)]
        if dead:
            raise TrajgymError(f"a scoring worker process died (exit code {dead[0].exitcode}) before it sent "
                               "all its results; score with --workers 1 to see the error in this process")


def _work(scoring: Scoring, inbox: Any, outbox: Any, parent: int) -> None:
    """A worker's loop: score each chunk it is sent, send back the results, until it is sent None
    (or its parent is gone). Ctrl-C is the main process's to handle: it ends the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            chunk = inbox.get(timeout=POLL_S)
        except queue.Empty:
            if os.getppid() != parent:
                return
            continue
        if chunk is None:
            return
        outbox.put([(seq, _score(scoring, path, n, line)) for seq, path, n, line in chunk])


def _score(scoring: Scoring, path: str, n: int, line: bytes) -> Outcome:
    try:
        traj = parse_trajectory(path, n, line)
    except TrajectoryFileError as exc:
        return _Invalid(path, n, exc.message)
    try:
        rec = scoring.score_sync(traj, f"{path}:{n}")
    except Exception as exc:
        return _Failed(_sendable(exc))
    return _Scored(rec.model_dump_json(), Entry.of(rec))


def _sendable(exc: Exception) -> BaseException:
    """``exc`` with the worker's traceback in a note, or, if it does not survive pickling, an error
    that carries its text and notes."""
    exc.add_note("in a scoring worker process:\n" + "".join(traceback.format_exception(exc)).rstrip())
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        stand_in = TrajgymError(f"{type(exc).__name__}: {exc}")
        for note in getattr(exc, "__notes__", []):
            stand_in.add_note(note)
        return stand_in
    return exc
