"""Score trajectory files into a scored file: every episode through every configured scorer, a
weighted total, blame, and a rank within its scenario variation.

The inputs are read, never written. For each work unit of an input file, ``(scenario, seed, trial,
policy)``, only the line that counts is scored (:func:`trajgym.trajectory.units.counting`: a resumed
job re-runs units that ended in ``infra_error``), so the episodes of several policies on the same
seeds, even in one file, are all scored and ranked together per variation; a unit that only has
``infra_error`` episodes is written as excluded (``excluded: infra_error``, no scores) so the report
can count it. Scoring streams: records are written to ``<out>.partial`` as they are scored, then
ranked per group and moved to ``out`` in one step, so a crash never leaves a half-written ``out``
(:mod:`trajgym.scorers.writer`). The rule-based scorers can score in several processes
(``score_files(workers=N)``, :mod:`trajgym.scorers.workers`), into the same file.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trajgym.errors import TrajectoryFileError, TrajgymError
from trajgym.scorers.base import Blame, ScoreResult, ScoringContext
from trajgym.scorers.blame import attribute
from trajgym.scorers.config import ActiveScorer, ScoringConfig
from trajgym.scorers.rank import combine
from trajgym.scorers.workers import Item, can_fork, score_in_workers
from trajgym.scorers.writer import RankTail, ScoredFileWriter, ScoringSummary
from trajgym.trajectory.lines import open_lines
from trajgym.trajectory.schema import INFRA_ERROR, Trajectory
from trajgym.trajectory.scored import ScoredTrajectory, group_key
from trajgym.trajectory.store import parse_trajectory, read_heads
from trajgym.trajectory.units import Head, counting
from trajgym.trajectory.units import group_key as variation_key

log = logging.getLogger(__name__)


def select_lines(path: Path, *, skip_torn: bool = False) -> list[int]:
    """Line numbers (1-based) to score in a trajectory file: the line that counts for each work unit
    (:func:`trajgym.trajectory.units.counting`), in the order of the file."""
    return [n for n, _ in _selected(path, skip_torn)]


def _selected(path: Path, skip_torn: bool = False) -> list[tuple[int, Head]]:
    """(line number, head) of each line :func:`select_lines` picks. A torn last line (a job killed
    mid-write) is an error unless ``skip_torn``; any other broken line is an error naming it."""
    return counting(read_heads(path, skip_torn=skip_torn))


def _read_lines(path: Path, wanted: list[int]) -> Iterator[tuple[int, bytes]]:
    want = set(wanted)
    for n, raw, _torn in open_lines(path, "trajectory"):
        if n in want:
            yield n, raw


class Scoring:
    """One scoring run: built scorers, their weights, the context they share."""

    def __init__(self, config: ScoringConfig, scorers: list[ActiveScorer], ctx: ScoringContext | None = None) -> None:
        self.config = config
        self.scorers = scorers
        self.ctx = ctx or ScoringContext()
        self.weights = {s.name: s.weight for s in scorers}
        self.meta = {"config": config.digest(),
                     "scorers": {s.name: {"weight": s.weight, **_jsonable(s.scorer.config())} for s in scorers}}

    async def score_one(self, traj: Trajectory, source: str) -> ScoredTrajectory:
        """Score one trajectory (ranks are filled in later, per group)."""
        if traj.termination == INFRA_ERROR:
            return self._excluded(traj, source)
        scores = self._sync_scores(traj, source)
        pending = [a for a in self.scorers if a.scorer.is_async]
        if pending:
            results = await asyncio.gather(*(_arun(a, traj, source, self.ctx) for a in pending))
            scores.update({a.name: r for a, r in zip(pending, results, strict=True)})
        return self._record(traj, source, scores)

    def score_sync(self, traj: Trajectory, source: str) -> ScoredTrajectory:
        """:meth:`score_one` for a run whose scorers are all synchronous, outside an event loop."""
        if any(a.scorer.is_async for a in self.scorers):
            raise TypeError("score_sync cannot run scorers that wait on a model server; use score_one")
        if traj.termination == INFRA_ERROR:
            return self._excluded(traj, source)
        return self._record(traj, source, self._sync_scores(traj, source))

    def _sync_scores(self, traj: Trajectory, source: str) -> dict[str, ScoreResult | None]:
        return {a.name: _run(a, traj, source, self.ctx) for a in self.scorers if not a.scorer.is_async}

    def _excluded(self, traj: Trajectory, source: str) -> ScoredTrajectory:
        return ScoredTrajectory(trajectory=traj, source=source, scores={}, total=None, success=None,
                                blame="infrastructure", excluded=INFRA_ERROR, group=group_key(traj), group_size=0,
                                weights=self.weights, scoring=self.meta)

    def _record(self, traj: Trajectory, source: str, scores: dict[str, ScoreResult | None]) -> ScoredTrajectory:
        scores = {a.name: scores[a.name] for a in self.scorers}  # config order
        verdict = scores.get(self.config.success_from)
        success = verdict.passed if verdict is not None else None
        total = combine({k: (v.score if v is not None else None) for k, v in scores.items()}, self.weights,
                        veto=any(v is not None and v.veto for v in scores.values()))
        blame: Blame | None = attribute(traj, scores, success)
        return ScoredTrajectory(trajectory=traj, source=source, scores=scores, total=total, success=success,
                                blame=blame, group=group_key(traj), weights=self.weights, scoring=self.meta)

    async def aclose(self) -> None:
        for active in self.scorers:
            await active.scorer.aclose()


def _run(active: ActiveScorer, traj: Trajectory, source: str, ctx: ScoringContext) -> ScoreResult | None:
    try:
        return active.scorer.score(traj, ctx)
    except Exception as exc:  # a scorer's bug fails the run loudly, saying where
        exc.add_note(f"while scorer '{active.name}' scored episode {traj.episode_id} ({source})")
        raise


async def _arun(active: ActiveScorer, traj: Trajectory, source: str, ctx: ScoringContext) -> ScoreResult | None:
    try:
        return await active.scorer.ascore(traj, ctx)
    except Exception as exc:
        exc.add_note(f"while scorer '{active.name}' scored episode {traj.episode_id} ({source})")
        raise


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


async def ascore_files(inputs: Sequence[str | Path], out: str | Path, scoring: Scoring, *, concurrency: int = 16,
                       on_scored: Callable[[ScoredTrajectory], None] | None = None,
                       on_progress: Callable[[], None] | None = None, skip_torn: bool = False) -> ScoringSummary:
    """Score every input file into ``out`` (see the module docstring); returns the summary.

    ``concurrency`` episodes are scored at once when a scorer waits on a model server; with only
    synchronous scorers, one after the other (concurrency would only add overhead). ``on_scored``
    gets each record as it is written, ``on_progress`` is called then. A torn last line of an input
    (a job killed mid-write) is an error unless ``skip_torn``, which leaves it out with a warning."""
    paths, writer = _start(inputs, out, scoring)
    at_once = concurrency if any(a.scorer.is_async for a in scoring.scorers) else 1
    sink = _Sink(writer, on_scored, on_progress)
    try:
        with _fewer_collections():
            for path in paths:
                await _score_file(path, scoring, sink, at_once, skip_torn)
    except TrajectoryFileError:
        writer.discard()
        raise
    finally:
        writer.close()
        await scoring.aclose()
    return writer.finish()


def _start(inputs: Sequence[str | Path], out: str | Path, scoring: Scoring) -> tuple[list[Path], ScoredFileWriter]:
    """The input files, checked, and the writer of ``out``."""
    out_path = Path(out)
    paths = [Path(p) for p in inputs]
    for p in paths:
        if p.resolve() == out_path.resolve():
            raise TrajgymError(f"--out {out_path} is an input file: scoring never overwrites its input")
        if not p.is_file():
            raise TrajgymError(f"no trajectory file {p}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return paths, ScoredFileWriter(out_path, RankTail(scoring.weights, scoring.meta))


@dataclass
class _Sink:
    """Where scored records go: the scored file, and the caller's callbacks."""

    writer: ScoredFileWriter
    on_scored: Callable[[ScoredTrajectory], None] | None
    on_progress: Callable[[], None] | None

    def put(self, rec: ScoredTrajectory) -> None:
        self.writer.write(rec)
        if self.on_scored is not None:
            self.on_scored(rec)
        if self.on_progress is not None:
            self.on_progress()


async def _score_file(path: Path, scoring: Scoring, sink: _Sink, at_once: int, skip_torn: bool) -> None:
    batch: list[tuple[Trajectory, str]] = []
    for n, line in _read_lines(path, select_lines(path, skip_torn=skip_torn)):
        batch.append((parse_trajectory(path, n, line), f"{path}:{n}"))
        if len(batch) >= at_once:
            await _score_batch(batch, scoring, sink)
            batch = []
    await _score_batch(batch, scoring, sink)


async def _score_batch(batch: list[tuple[Trajectory, str]], scoring: Scoring, sink: _Sink) -> None:
    if len(batch) == 1:
        records = [await scoring.score_one(*batch[0])]
    else:
        records = await asyncio.gather(*(scoring.score_one(t, s) for t, s in batch))
    for rec in records:
        sink.put(rec)


@contextlib.contextmanager
def _fewer_collections(young: int = 20_000) -> Iterator[None]:
    """Collect the youngest generation every ``young`` allocations instead of every 700, while
    scoring. Each trajectory allocates thousands of short-lived objects (its validated model, the
    scorers' working data); at the default threshold the collector runs several times per trajectory
    and promotes whatever is alive at that moment, which then sets off full collections of the whole
    heap. Nothing is kept from being collected, only collected in fewer, larger passes (13% less
    CPU time for bench/score.py when this was added). The process's thresholds are restored after."""
    before = gc.get_threshold()
    gc.set_threshold(max(young, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def score_files(inputs: Sequence[str | Path], out: str | Path, scoring: Scoring, *, concurrency: int = 16,
                workers: int = 1, on_scored: Callable[[ScoredTrajectory], None] | None = None,
                on_progress: Callable[[], None] | None = None, skip_torn: bool = False) -> ScoringSummary:
    """Synchronous :func:`ascore_files`. With ``workers`` > 1, the trajectories are scored in that
    many worker processes (:mod:`trajgym.scorers.workers`) when every scorer can be forked and no
    ``on_scored`` wants the records in this process; the scored file is the same either way."""
    if workers > 1 and on_scored is None and can_fork(scoring):
        return _score_in_workers(inputs, out, scoring, workers, on_progress, skip_torn=skip_torn)
    if workers > 1:
        log.info("scoring in this process: %s", "on_scored wants the records here" if on_scored is not None
                 else "a scorer cannot run in a forked worker process (Scorer.forkable)")
    return asyncio.run(ascore_files(inputs, out, scoring, concurrency=concurrency, on_scored=on_scored,
                                    on_progress=on_progress, skip_torn=skip_torn))


def _score_in_workers(inputs: Sequence[str | Path], out: str | Path, scoring: Scoring, workers: int,
                      on_progress: Callable[[], None] | None, *, skip_torn: bool) -> ScoringSummary:
    paths, writer = _start(inputs, out, scoring)
    try:
        selections = [(path, _selected(path, skip_torn)) for path in paths]
        for _, selected in selections:  # loaded once here, not once in every worker
            for _, head in selected:
                scoring.ctx.template_of(head.scenario_path, head.scenario_hash, head.episode_id)
        with _fewer_collections():  # the workers inherit the thresholds
            score_in_workers(_items(selections), scoring, writer, workers, on_progress)
    except TrajectoryFileError:
        writer.discard()
        raise
    finally:
        writer.close()
        asyncio.run(scoring.aclose())
    return writer.finish()


def _items(selections: list[tuple[Path, list[tuple[int, Head]]]]) -> Iterator[tuple[str, Item]]:
    """(scenario variation, item) of every line to score, in input order."""
    seq = 0
    for path, selected in selections:
        heads = dict(selected)
        for n, line in _read_lines(path, list(heads)):
            key = heads[n].key
            yield variation_key(key.scenario_id, key.seed), (seq, str(path), n, line)
            seq += 1
