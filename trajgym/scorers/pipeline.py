"""Score trajectory files into a scored file: every episode through every configured scorer, a
weighted total, blame, and a rank within its scenario variation.

The inputs are read, never written. For each work unit of an input file only its latest episode is
scored (a resumed job re-runs units that ended in ``infra_error``); a unit that only has
``infra_error`` episodes is written as excluded (``excluded: infra_error``, no scores) so the report
can count it. Scoring streams: records are written to ``<out>.partial`` as they are scored, then
ranked per group and moved to ``out`` in one step, so a crash never leaves a half-written ``out``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from trajgym.errors import TrajectoryFileError, TrajgymError
from trajgym.scorers.base import Blame, ScoreResult, ScoringContext
from trajgym.scorers.blame import attribute
from trajgym.scorers.config import ActiveScorer, ScoringConfig
from trajgym.scorers.rank import combine
from trajgym.scorers.records import ScoredTrajectory, group_key
from trajgym.scorers.writer import RankTail, ScoredFileWriter, ScoringSummary
from trajgym.trajectory.schema import Trajectory
from trajgym.trajectory.store import INFRA_ERROR

log = logging.getLogger(__name__)


class _Unit(BaseModel):
    """What picks the lines to score: a trajectory line's work unit and ending. The rest of the line
    is checked by the JSON parser but never built into Python objects."""

    model_config = ConfigDict(extra="ignore")

    scenario_id: str
    seed: int
    trial: int
    termination: str


def select_lines(path: Path) -> list[int]:
    """Line numbers (1-based) to score in a trajectory file: each unit's latest episode that did not
    end in ``infra_error``, else its latest ``infra_error`` one; in the order units first appear."""
    chosen: dict[tuple[str, int, int], tuple[int, bool]] = {}
    for n, ep in _numbered(path):
        key = (ep.scenario_id, ep.seed, ep.trial)  # trajgym.trajectory.store.unit_key
        infra = ep.termination == INFRA_ERROR
        if key not in chosen or not infra or chosen[key][1]:
            chosen[key] = (n, infra)
    return sorted(n for n, _ in chosen.values())


def _numbered(path: Path) -> Iterator[tuple[int, _Unit]]:
    """(line number, unit) for every episode line of a trajectory file. A torn last line (a job
    killed mid-write) is skipped with a warning; any other broken line is an error naming it."""
    with path.open(encoding="utf-8") as fh:
        lines = enumerate(fh, 1)
        ahead = next(lines, None)
        while ahead is not None:
            n, line = ahead
            ahead = next(lines, None)
            if not line.strip():
                continue
            try:
                ep = _Unit.model_validate_json(line)
            except ValidationError as exc:
                if ahead is None and not line.endswith("\n"):
                    log.warning("%s:%d: skipped the torn last line of a killed job", path, n)
                    continue
                raise TrajectoryFileError(path, n, _why(exc)) from None
            yield n, ep


def _why(exc: ValidationError) -> str:
    """What is wrong with a line that is no trajectory, in a few words."""
    error = exc.errors(include_url=False)[0]
    if error["type"] == "json_invalid":
        return str(error["msg"])
    if error["type"] == "model_type":
        return "not a trajectory (not a JSON object)"
    return f"not a trajectory ({'.'.join(map(str, error['loc']))}: {error['msg']})"


def _read_lines(path: Path, wanted: list[int]) -> Iterator[tuple[int, str]]:
    want = set(wanted)
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if n in want:
                yield n, line


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
        group = group_key(traj)
        if traj.termination == INFRA_ERROR:
            return ScoredTrajectory(trajectory=traj, source=source, scores={}, total=None, success=None,
                                    blame="infrastructure", excluded=INFRA_ERROR, group=group, group_size=0,
                                    weights=self.weights, scoring=self.meta)
        scores: dict[str, ScoreResult | None] = {}
        pending = []
        for active in self.scorers:
            if active.scorer.is_async:
                pending.append(active)
                continue
            scores[active.name] = _run(active, traj, source, self.ctx)
        if pending:
            results = await asyncio.gather(*(_arun(a, traj, source, self.ctx) for a in pending))
            scores.update({a.name: r for a, r in zip(pending, results, strict=True)})
        scores = {a.name: scores[a.name] for a in self.scorers}  # config order
        verdict = scores.get(self.config.success_from)
        success = verdict.passed if verdict is not None else None
        total = combine({k: (v.score if v is not None else None) for k, v in scores.items()}, self.weights,
                        veto=any(v is not None and v.veto for v in scores.values()))
        blame: Blame | None = attribute(traj, scores, success)
        return ScoredTrajectory(trajectory=traj, source=source, scores=scores, total=total, success=success,
                                blame=blame, group=group, weights=self.weights, scoring=self.meta)

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
                       on_scored: Callable[[ScoredTrajectory], None] | None = None) -> ScoringSummary:
    """Score every input file into ``out`` (see the module docstring); returns the summary.

    ``concurrency`` episodes are scored at once when a scorer waits on a model server; with only
    synchronous scorers, one after the other (concurrency would only add overhead)."""
    out_path = Path(out)
    paths = [Path(p) for p in inputs]
    for p in paths:
        if p.resolve() == out_path.resolve():
            raise TrajgymError(f"--out {out_path} is an input file: scoring never overwrites its input")
        if not p.is_file():
            raise TrajgymError(f"no trajectory file {p}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    at_once = concurrency if any(a.scorer.is_async for a in scoring.scorers) else 1
    writer = ScoredFileWriter(out_path, RankTail(scoring.weights, scoring.meta))
    try:
        with _fewer_collections():
            for path in paths:
                await _score_file(path, scoring, writer, at_once, on_scored)
    except TrajectoryFileError:
        writer.discard()
        raise
    finally:
        writer.close()
        await scoring.aclose()
    return writer.finish()


async def _score_file(path: Path, scoring: Scoring, writer: ScoredFileWriter, at_once: int,
                      on_scored: Callable[[ScoredTrajectory], None] | None) -> None:
    batch: list[tuple[Trajectory, str]] = []
    for n, line in _read_lines(path, select_lines(path)):
        try:
            traj = Trajectory.model_validate_json(line)
        except ValueError as exc:
            raise TrajectoryFileError(path, n, str(exc).splitlines()[0]) from None
        batch.append((traj, f"{path}:{n}"))
        if len(batch) >= at_once:
            await _score_batch(batch, scoring, writer, on_scored)
            batch = []
    await _score_batch(batch, scoring, writer, on_scored)


@contextlib.contextmanager
def _fewer_collections(young: int = 20_000) -> Iterator[None]:
    """Collect the youngest generation every ``young`` allocations instead of every 700, while
    scoring. Each trajectory allocates thousands of short-lived objects (its validated model, the
    scorers' working data); at the default threshold the collector runs several times per trajectory
    and promotes whatever is alive at that moment, which then sets off full collections of the whole
    heap. Nothing is kept from being collected, only collected in fewer, larger passes: ~15% of the
    CPU time of the rule-based scorers. The process's thresholds are restored afterwards."""
    before = gc.get_threshold()
    gc.set_threshold(max(young, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


async def _score_batch(batch: list[tuple[Trajectory, str]], scoring: Scoring, writer: ScoredFileWriter,
                       on_scored: Callable[[ScoredTrajectory], None] | None) -> None:
    if len(batch) == 1:
        records = [await scoring.score_one(*batch[0])]
    else:
        records = await asyncio.gather(*(scoring.score_one(t, s) for t, s in batch))
    for rec in records:
        writer.write(rec)
        if on_scored is not None:
            on_scored(rec)


def score_files(inputs: Sequence[str | Path], out: str | Path, scoring: Scoring, *, concurrency: int = 16,
                on_scored: Callable[[ScoredTrajectory], None] | None = None) -> ScoringSummary:
    """Synchronous :func:`ascore_files`."""
    return asyncio.run(ascore_files(inputs, out, scoring, concurrency=concurrency, on_scored=on_scored))


def iter_scored(path: str | Path) -> Iterator[ScoredTrajectory]:
    """Read a scored file, one validated :class:`ScoredTrajectory` per line."""
    p = Path(path)
    try:
        fh = p.open(encoding="utf-8")
    except OSError as exc:
        raise TrajgymError(f"cannot open scored file {p}: {exc.strerror}") from None
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield ScoredTrajectory.model_validate_json(line)
            except ValueError as exc:
                raise TrajgymError(f"{p}:{n}: not a scored trajectory ({str(exc).splitlines()[0]}); "
                                   f"make one with `trajgym score`") from None
