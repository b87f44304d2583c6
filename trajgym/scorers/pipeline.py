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
import json
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trajgym.errors import TrajectoryFileError, TrajgymError
from trajgym.scorers.base import Blame, ScoreResult, ScoringContext
from trajgym.scorers.blame import attribute
from trajgym.scorers.config import ActiveScorer, ScoringConfig
from trajgym.scorers.rank import combine, pass_hat_k_by_scenario, ranks
from trajgym.scorers.records import ScoredTrajectory, group_key
from trajgym.trajectory.schema import Trajectory
from trajgym.trajectory.store import INFRA_ERROR, unit_key

log = logging.getLogger(__name__)


@dataclass
class ScoringSummary:
    """What a scoring run found, for the CLI's table (the report shows much more)."""

    scored: int = 0
    excluded: int = 0
    per_scenario: dict[str, dict[str, float]] = field(default_factory=dict)
    """scenario -> episodes, successes, mean total."""
    pass_k: dict[str, dict[int, float]] = field(default_factory=dict)
    blame: Counter[str] = field(default_factory=Counter)
    means: dict[str, float] = field(default_factory=dict)
    """scorer -> mean score over the episodes it applied to."""


def select_lines(path: Path) -> list[int]:
    """Line numbers (1-based) to score in a trajectory file: each unit's latest episode that did not
    end in ``infra_error``, else its latest ``infra_error`` one; in the order units first appear."""
    chosen: dict[tuple[str, int, int], tuple[int, bool]] = {}
    for n, ep in _numbered(path):
        key = unit_key(ep)
        infra = ep["termination"] == INFRA_ERROR
        if key not in chosen or not infra or chosen[key][1]:
            chosen[key] = (n, infra)
    return sorted(n for n, _ in chosen.values())


def _numbered(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, episode) for every episode line of a trajectory file. A torn last line (a job
    killed mid-write) is skipped with a warning; any other broken line is an error naming it."""
    with path.open(encoding="utf-8") as fh:
        lines = list(enumerate(fh, 1))
    for n, line in lines:
        if not line.strip():
            continue
        try:
            ep = json.loads(line)
            if not isinstance(ep, dict) or "scenario_id" not in ep or "termination" not in ep:
                raise ValueError("not a trajectory (no scenario_id/termination)")
        except ValueError as exc:
            if n == len(lines) and not line.endswith("\n"):
                log.warning("%s:%d: skipped the torn last line of a killed job", path, n)
                continue
            raise TrajectoryFileError(path, n, str(exc).splitlines()[0]) from None
        yield n, ep


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
    """Score every input file into ``out`` (see the module docstring); returns the summary."""
    out_path = Path(out)
    paths = [Path(p) for p in inputs]
    for p in paths:
        if p.resolve() == out_path.resolve():
            raise TrajgymError(f"--out {out_path} is an input file: scoring never overwrites its input")
        if not p.is_file():
            raise TrajgymError(f"no trajectory file {p}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    index: list[tuple[str, float | None]] = []  # (group, total) per written line
    summary = ScoringSummary()
    try:
        with partial.open("w", encoding="utf-8") as fh:
            for path in paths:
                batch: list[tuple[Trajectory, str]] = []
                for n, line in _read_lines(path, select_lines(path)):
                    try:
                        traj = Trajectory.model_validate_json(line)
                    except ValueError as exc:
                        raise TrajectoryFileError(path, n, str(exc).splitlines()[0]) from None
                    batch.append((traj, f"{path}:{n}"))
                    if len(batch) >= concurrency:
                        await _score_batch(batch, scoring, fh, index, on_scored)
                        batch = []
                await _score_batch(batch, scoring, fh, index, on_scored)
        _rank_into(partial, out_path, index, summary)
    except TrajectoryFileError:
        partial.unlink(missing_ok=True)
        raise
    finally:
        await scoring.aclose()
    return summary


async def _score_batch(batch: list[tuple[Trajectory, str]], scoring: Scoring, fh: Any,
                       index: list[tuple[str, float | None]],
                       on_scored: Callable[[ScoredTrajectory], None] | None) -> None:
    if not batch:
        return
    records = await asyncio.gather(*(scoring.score_one(t, s) for t, s in batch))
    for rec in records:
        fh.write(rec.model_dump_json() + "\n")
        index.append((rec.group, rec.total))
        if on_scored is not None:
            on_scored(rec)


def _rank_into(partial: Path, out: Path, index: list[tuple[str, float | None]], summary: ScoringSummary) -> None:
    """Fill in each record's rank in its group, write ``out`` and the summary."""
    members: dict[str, list[int]] = defaultdict(list)
    for i, (group, total) in enumerate(index):
        if total is not None:
            members[group].append(i)
    rank_of: dict[int, tuple[int, int]] = {}
    for rows in members.values():
        for i, r in zip(rows, ranks([index[i][1] or 0.0 for i in rows]), strict=True):
            rank_of[i] = (r, len(rows))
    per: dict[str, dict[str, float]] = defaultdict(lambda: {"episodes": 0, "successes": 0, "total": 0.0})
    sums: dict[str, list[float]] = defaultdict(list)
    outcomes: list[tuple[str, str, bool]] = []
    tmp = out.with_name(out.name + ".tmp")
    with partial.open(encoding="utf-8") as src, tmp.open("w", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            rec = json.loads(line)
            traj = rec["trajectory"]
            if i in rank_of:
                rec["rank"], rec["group_size"] = rank_of[i]
            if rec["blame"] is not None:
                summary.blame[rec["blame"]] += 1
            if rec["excluded"] is not None:
                summary.excluded += 1
            else:
                summary.scored += 1
                row = per[traj["scenario_id"]]
                row["episodes"] += 1
                row["successes"] += 1 if rec["success"] else 0
                row["total"] += rec["total"]
                outcomes.append((traj["scenario_id"], rec["group"], bool(rec["success"])))
                for name, result in rec["scores"].items():
                    if result is not None:
                        sums[name].append(result["score"])
            dst.write(json.dumps(rec, ensure_ascii=False) + "\n")
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(tmp, out)
    partial.unlink()
    for row in per.values():
        row["total"] = row["total"] / row["episodes"] if row["episodes"] else 0.0
    summary.per_scenario = dict(sorted(per.items()))
    summary.pass_k = pass_hat_k_by_scenario(outcomes)
    summary.means = {k: sum(v) / len(v) for k, v in sums.items()}


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
