"""The figures of a report, computed from scored trajectories: pure functions, no formatting.

An episode counts as a success when its record says so (the outcome scorer's verdict); a record
the outcome scorer did not judge falls back to the episode's own outcome (the env's verdict).
Excluded episodes (``infra_error``) are counted as excluded and kept out of every rate.

pass^k is :func:`trajgym.scorers.rank.pass_hat_k_by_scenario`'s, the numbers ``trajgym score``
prints: for k up to the fewest trials of any variation, C(successes, k) / C(trials, k) per
variation, averaged over the variations. Failures are counted by blame; excluded episodes count as
``infrastructure`` failures (they are kept out of every rate).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trajgym.filters.diversity import diversity as default_diversity
from trajgym.scorers.base import BLAMES
from trajgym.scorers.rank import pass_hat_k_by_scenario
from trajgym.trajectory.schema import Trajectory
from trajgym.trajectory.scored import ScoredTrajectory

DiversityFn = Callable[[Sequence[Trajectory]], Mapping[str, float]]
"""Diversity figures of a set of trajectories: name -> value (distinct decision chains, entropies...)."""

UNATTRIBUTED = "unattributed"
BLAME_KEYS: tuple[str, ...] = (*BLAMES, UNATTRIBUTED)
"""Failure causes in the order the report shows them; ``unattributed``: a failure with no blame."""

RECOVERY_SCORER = "recovery"


def is_success(record: ScoredTrajectory) -> bool:
    """The record's verdict, or the episode's own outcome where no outcome scorer judged it."""
    return record.success if record.success is not None else record.trajectory.outcome.success


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
    """k -> pass^k averaged over the scenario's variations (k up to the fewest trials of one)."""
    mean_total: float | None = None
    blame: dict[str, int] = field(default_factory=dict)
    """failure cause -> failed or excluded episodes (keys of :data:`BLAME_KEYS`)."""
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
    """k -> pass^k averaged over every variation of every scenario (k up to the fewest trials of one)."""
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

    Per-fault credit is the recovery scorer's ``details["faults"]`` (``{"kind": ..., "credit": ...}``
    per fault incident); a recovery result without it counts its score once per fault kind injected.
    """
    result = record.scores.get(RECOVERY_SCORER)
    if result is None:
        return []
    per_fault = result.details.get("faults")
    if per_fault:
        return [(f["kind"], float(f["credit"])) for f in per_fault]
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
    """Failures by cause; an excluded episode (``infra_error``) is an infrastructure failure."""
    counts = dict.fromkeys(BLAME_KEYS, 0)
    for row in rows:
        if row.success is None:
            counts["infrastructure"] += 1
        elif not row.success:
            counts[row.record.blame or UNATTRIBUTED] += 1
    return counts


def _pass_k(rows: Sequence[EpisodeRow]) -> dict[str, dict[int, float]]:
    """scenario id -> k -> pass^k, from the scored rows."""
    return pass_hat_k_by_scenario((r.trajectory.scenario_id, r.record.group, bool(r.success)) for r in rows)


def summarize(records: Sequence[ScoredTrajectory], *, diversity: DiversityFn = default_diversity,
              sources: Sequence[str] = ()) -> ReportData:
    """The report's figures for ``records`` (episodes of any scenarios, in any order).

    ``diversity`` computes the diversity figures, of the whole set and of each scenario's scored
    episodes; the default counts distinct decision chains and action n-gram entropies.
    """
    rows = [_row(i, r) for i, r in enumerate(sorted(records, key=_order))]
    by_scenario: dict[str, list[EpisodeRow]] = defaultdict(list)
    for row in rows:
        by_scenario[row.trajectory.scenario_id].append(row)
    scored_rows = [r for r in rows if r.success is not None]
    pass_k = _pass_k(scored_rows)
    scenarios = []
    for sid, its in by_scenario.items():
        scored = [r for r in its if r.success is not None]
        totals = [r.record.total for r in scored if r.record.total is not None]
        scenarios.append(ScenarioStats(
            scenario_id=sid, domain=its[0].trajectory.domain, episodes=len(scored),
            excluded=len(its) - len(scored), successes=sum(1 for r in scored if r.success),
            variations=len({r.record.group for r in scored}), pass_k=pass_k.get(sid, {}),
            mean_total=statistics.fmean(totals) if totals else None, blame=_blame(its),
            first_row=its[0].index, diversity=diversity([r.trajectory for r in scored]) if scored else {}))
    every_variation = pass_hat_k_by_scenario(("", r.record.group, bool(r.success)) for r in scored_rows)
    return ReportData(
        rows=rows, scenarios=scenarios, scorers=_scorer_stats(scored_rows), faults=_fault_stats(scored_rows),
        blame=_blame(rows), pass_k=every_variation.get("", {}),
        diversity=diversity([r.trajectory for r in scored_rows]) if scored_rows else {}, sources=list(sources))
