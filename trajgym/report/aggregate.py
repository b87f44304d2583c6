"""The figures of a report, computed from scored trajectories: pure functions, no formatting.

An episode counts as a success when its record says so (the outcome scorer's verdict); a record
the outcome scorer did not judge falls back to the episode's own outcome (the env's verdict).
Excluded episodes (``infra_error``) are counted as excluded and kept out of every rate.

Example::

    >>> pass_hat_k(successes=3, trials=4, k=2)   # C(3, 2) / C(4, 2)
    0.5
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trajgym.report.diversity import simple_diversity
from trajgym.scorers.base import BLAMES
from trajgym.scorers.records import ScoredTrajectory
from trajgym.trajectory.schema import Trajectory

DiversityFn = Callable[[Sequence[Trajectory]], Mapping[str, float]]
"""Diversity figures of a set of trajectories: name -> value (distinct decision chains, entropies...)."""

UNATTRIBUTED = "unattributed"
BLAME_KEYS: tuple[str, ...] = (*BLAMES, UNATTRIBUTED)
"""Failure causes in the order the report shows them; ``unattributed``: a failure with no blame."""

RECOVERY_SCORER = "recovery"


def pass_hat_k(successes: int, trials: int, k: int) -> float:
    """pass^k of one scenario variation: the chance that ``k`` of its ``trials`` drawn without
    replacement all succeed, C(successes, k) / C(trials, k) (tau-bench's estimator).

    NOTE(merge): the one pass^k of the report; dedupe with the scorers' own when both are on main.

    >>> pass_hat_k(2, 2, 2), pass_hat_k(1, 2, 2), pass_hat_k(1, 2, 1)
    (1.0, 0.0, 0.5)
    """
    if not 1 <= k <= trials:
        raise ValueError(f"pass^k needs 1 <= k <= trials, got k={k}, trials={trials}")
    if not 0 <= successes <= trials:
        raise ValueError(f"pass^k needs 0 <= successes <= trials, got successes={successes}, trials={trials}")
    return math.comb(successes, k) / math.comb(trials, k)


def is_success(record: ScoredTrajectory) -> bool:
    """The record's verdict, or the episode's own outcome where no outcome scorer judged it."""
    return record.success if record.success is not None else record.trajectory.outcome.success


def mean_pass_hat_k(groups: Sequence[tuple[int, int]], k: int) -> float | None:
    """pass^k averaged over variations given as (successes, trials); those with fewer than ``k``
    trials are left out; None when none has ``k``."""
    values = [pass_hat_k(s, n, k) for s, n in groups if n >= k]
    return statistics.fmean(values) if values else None


@dataclass
class ScenarioStats:
    """One scenario's row of the summary table."""

    scenario_id: str
    domain: str
    episodes: int = 0
    excluded: int = 0
    successes: int = 0
    variations: int = 0
    pass_k: dict[int, float] = field(default_factory=dict)
    """k -> pass^k averaged over the variations played at least k times."""
    mean_total: float | None = None
    blame: dict[str, int] = field(default_factory=dict)
    """failure cause -> failed episodes (keys of :data:`BLAME_KEYS`)."""
    first_row: int = 0
    """index in :attr:`ReportData.rows` of the scenario's first episode."""
    diversity: Mapping[str, float] = field(default_factory=dict)

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.episodes if self.episodes else None


@dataclass
class ScorerStats:
    """How one scorer's scores are distributed."""

    name: str
    values: list[float] = field(default_factory=list)
    not_applicable: int = 0
    passed: int = 0
    failed: int = 0
    vetoes: int = 0
    findings: int = 0

    @property
    def applied(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None


@dataclass
class FaultStats:
    """How episodes went when a fault of one kind was injected.

    ``success_rate``: episodes with this fault kind that still succeeded. ``recovery``: the mean
    credit the recovery scorer gave for faults of this kind (None when it did not run).
    """

    kind: str
    injected: int = 0
    episodes: int = 0
    successes: int = 0
    credits: list[float] = field(default_factory=list)

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.episodes if self.episodes else None

    @property
    def recovery(self) -> float | None:
        return statistics.fmean(self.credits) if self.credits else None


@dataclass
class EpisodeRow:
    """One episode of the report, in table order; ``index`` makes its anchor ``#ep-<index>``."""

    index: int
    record: ScoredTrajectory
    success: bool | None
    """None when the episode is excluded from scoring."""
    turns: int
    tool_calls: int
    malformed: int

    @property
    def trajectory(self) -> Trajectory:
        return self.record.trajectory


@dataclass
class ReportData:
    """Everything the report shows, before formatting."""

    rows: list[EpisodeRow]
    scenarios: list[ScenarioStats]
    scorers: list[ScorerStats]
    faults: list[FaultStats]
    blame: dict[str, int]
    pass_k: dict[int, float]
    """k -> pass^k averaged over every variation of every scenario played at least k times."""
    diversity: Mapping[str, float]
    sources: list[str] = field(default_factory=list)

    @property
    def scored(self) -> list[EpisodeRow]:
        return [r for r in self.rows if r.success is not None]

    @property
    def excluded(self) -> int:
        return len(self.rows) - len(self.scored)

    @property
    def successes(self) -> int:
        return sum(1 for r in self.scored if r.success)

    @property
    def success_rate(self) -> float | None:
        return self.successes / len(self.scored) if self.scored else None

    @property
    def mean_total(self) -> float | None:
        totals = [r.record.total for r in self.scored if r.record.total is not None]
        return statistics.fmean(totals) if totals else None


def _order(record: ScoredTrajectory) -> tuple[Any, ...]:
    t = record.trajectory
    rank = record.rank if record.rank is not None else math.inf
    return (t.scenario_id, t.seed, record.group, rank, t.trial, record.source)


def _row(index: int, record: ScoredTrajectory) -> EpisodeRow:
    steps = record.trajectory.steps
    return EpisodeRow(
        index=index, record=record, success=None if record.excluded is not None else is_success(record),
        turns=len(steps), tool_calls=sum(len(s.tool_calls) for s in steps),
        malformed=sum(1 for s in steps if s.error))


def fault_credits(record: ScoredTrajectory) -> list[tuple[str, float]]:
    """(fault kind, credit) pairs the recovery scorer gave this episode, if it ran.

    Per-fault credit is read from ``details["faults"]`` when the scorer reports it there as a list
    of ``{"kind": ..., "credit": ...}`` (or ``"score"``, or a boolean ``"recovered"``); otherwise the episode's recovery score
    counts once for each fault kind injected into it.
    """
    result = record.scores.get(RECOVERY_SCORER)
    if result is None:
        return []
    per_fault = result.details.get("faults")
    if isinstance(per_fault, list) and per_fault and all(isinstance(f, dict) for f in per_fault):
        pairs = []
        for f in per_fault:
            credit = f.get("credit", f.get("score", f.get("recovered")))
            if isinstance(f.get("kind"), str) and isinstance(credit, int | float):
                pairs.append((f["kind"], float(credit)))
        if pairs:
            return pairs
    kinds = sorted({f.kind for f in record.trajectory.faults})
    return [(kind, result.score) for kind in kinds]


def _scorer_stats(rows: Sequence[EpisodeRow]) -> list[ScorerStats]:
    stats: dict[str, ScorerStats] = {}
    for row in rows:
        for name, result in row.record.scores.items():
            s = stats.setdefault(name, ScorerStats(name))
            if result is None:
                s.not_applicable += 1
                continue
            s.values.append(result.score)
            s.passed += result.passed is True
            s.failed += result.passed is False
            s.vetoes += result.veto
            s.findings += len(result.findings)
    return [stats[name] for name in sorted(stats)]


def _fault_stats(rows: Sequence[EpisodeRow]) -> list[FaultStats]:
    stats: dict[str, FaultStats] = {}
    for row in rows:
        kinds = Counter(f.kind for f in row.trajectory.faults)
        for kind, n in kinds.items():
            s = stats.setdefault(kind, FaultStats(kind))
            s.injected += n
            s.episodes += 1
            s.successes += bool(row.success)
        for kind, credit in fault_credits(row.record):
            stats.setdefault(kind, FaultStats(kind)).credits.append(credit)
    return [stats[kind] for kind in sorted(stats)]


def _blame(rows: Sequence[EpisodeRow]) -> dict[str, int]:
    counts = dict.fromkeys(BLAME_KEYS, 0)
    for row in rows:
        if row.success is False:
            counts[row.record.blame or UNATTRIBUTED] += 1
    return counts


def _groups(rows: Sequence[EpisodeRow]) -> list[tuple[int, int]]:
    """(successes, trials) of each scenario variation among scored rows."""
    by_group: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        by_group[row.record.group].append(bool(row.success))
    return [(sum(v), len(v)) for v in by_group.values()]


def _pass_k(groups: Sequence[tuple[int, int]]) -> dict[int, float]:
    out: dict[int, float] = {}
    for k in range(1, max((n for _, n in groups), default=0) + 1):
        value = mean_pass_hat_k(groups, k)
        if value is not None:
            out[k] = value
    return out


def summarize(records: Sequence[ScoredTrajectory], *, diversity: DiversityFn = simple_diversity,
              sources: Sequence[str] = ()) -> ReportData:
    """The report's figures for ``records`` (episodes of any scenarios, in any order).

    ``diversity`` computes the diversity figures, of the whole set and of each scenario's scored
    episodes; the default counts distinct decision chains and action n-gram entropies.
    """
    rows = [_row(i, r) for i, r in enumerate(sorted(records, key=_order))]
    by_scenario: dict[str, list[EpisodeRow]] = defaultdict(list)
    for row in rows:
        by_scenario[row.trajectory.scenario_id].append(row)
    scenarios = []
    for sid, its in by_scenario.items():
        scored = [r for r in its if r.success is not None]
        totals = [r.record.total for r in scored if r.record.total is not None]
        groups = _groups(scored)
        scenarios.append(ScenarioStats(
            scenario_id=sid, domain=its[0].trajectory.domain, episodes=len(scored),
            excluded=len(its) - len(scored), successes=sum(1 for r in scored if r.success),
            variations=len(groups), pass_k=_pass_k(groups),
            mean_total=statistics.fmean(totals) if totals else None, blame=_blame(scored),
            first_row=its[0].index, diversity=diversity([r.trajectory for r in scored]) if scored else {}))
    scored_rows = [r for r in rows if r.success is not None]
    return ReportData(
        rows=rows, scenarios=scenarios, scorers=_scorer_stats(scored_rows), faults=_fault_stats(scored_rows),
        blame=_blame(scored_rows), pass_k=_pass_k(_groups(scored_rows)),
        diversity=diversity([r.trajectory for r in scored_rows]) if scored_rows else {}, sources=list(sources))
