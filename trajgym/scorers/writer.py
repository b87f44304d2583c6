"""Writing the scored file: records streamed to ``<out>.partial``, then ranked per group into ``out``.

Each record is serialized once, by pydantic, as it is scored; its rank is not known until every
trial of its group is scored, so the line is written with ``"rank":null``. The rank pass then
copies the partial file into ``out`` and splices each line's rank and group size in front of its
tail (the weights and scorer configs, the same in every record of a run), without parsing the line
again: ranking costs a copy of the file, not a second JSON round trip of every trajectory. The
summary (success and pass^k per scenario, blame, mean scores) is tallied from the records as they
are written.

    >>> tail = RankTail(weights={"outcome": 1.0}, scoring={"config": "abc"})
    >>> tail.ranked(2, 3)
    ',"rank":2,"group_size":3,"weights":{"outcome":1.0},"scoring":{"config":"abc"}}'
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from trajgym.scorers.rank import pass_hat_k_by_scenario, ranks
from trajgym.trajectory.scored import ScoredTrajectory


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


_WEIGHTS = TypeAdapter(dict[str, float])
_SCORING = TypeAdapter(dict[str, Any])


class RankTail:
    """The end of a scored line from its ``rank`` on: rank, group size, then the run's weights and
    scorer configs, serialized as pydantic serializes those fields of a :class:`ScoredTrajectory`."""

    def __init__(self, weights: dict[str, float], scoring: dict[str, Any]) -> None:
        self.after = (f',"weights":{_WEIGHTS.dump_json(weights).decode()}'
                      f',"scoring":{_SCORING.dump_json(scoring).decode()}}}')
        """``,"weights":{...},"scoring":{...}}``: what follows the group size."""

    def ranked(self, rank: int | None, group_size: int) -> str:
        return f',"rank":{"null" if rank is None else rank},"group_size":{group_size}{self.after}'


@dataclass(frozen=True)
class Entry:
    """What the rank pass and the summary need of one written record: all a worker process sends
    (:mod:`trajgym.scorers.workers`) besides the record's line."""

    group: str
    total: float | None
    excluded: bool
    blame: str | None
    scenario: str
    success: bool
    scores: tuple[tuple[str, float], ...]
    """(scorer, score) of the scorers that applied."""

    @classmethod
    def of(cls, rec: ScoredTrajectory) -> Entry:
        return cls(group=rec.group, total=rec.total, excluded=rec.excluded is not None, blame=rec.blame,
                   scenario=rec.trajectory.scenario_id, success=bool(rec.success),
                   scores=tuple((name, r.score) for name, r in rec.scores.items() if r is not None))


class ScoredFileWriter:
    """Writes a run's records to ``<out>.partial``; :meth:`finish` ranks them into ``out``."""

    def __init__(self, out: Path, tail: RankTail) -> None:
        self.out = out
        self.partial = out.with_name(out.name + ".partial")
        self.tail = tail
        self._fh = self.partial.open("w", encoding="utf-8")
        self._index: list[tuple[str, float | None]] = []  # (group, total) per written line
        self._unranked = {excluded: tail.ranked(None, 0 if excluded else 1) for excluded in (False, True)}
        self._tally = _Tally()
        self.written = 0

    def write(self, rec: ScoredTrajectory) -> None:
        """Append one unranked record (``rank`` None, ``group_size`` 1, or 0 when excluded)."""
        self.add(rec.model_dump_json(), Entry.of(rec))

    def add(self, line: str, entry: Entry) -> None:
        """Append the line of one unranked record (see :meth:`write`) and what it says."""
        if not line.endswith(self._unranked[entry.excluded]):
            raise ValueError(f"{entry.group}: a record to rank must have rank None, group size 1 (0 when excluded) "
                             "and the run's weights and scorer configs")
        self._fh.write(line + "\n")
        self._index.append((entry.group, entry.total))
        self._tally.add(entry)
        self.written += 1

    def close(self) -> None:
        """Close the partial file (a run that failed in a scorer leaves it for a look)."""
        self._fh.close()

    def discard(self) -> None:
        """Close and delete the partial file (an input file was broken)."""
        self._fh.close()
        self.partial.unlink(missing_ok=True)

    def finish(self) -> ScoringSummary:
        """Rank every scored record within its group, write ``out`` in one step, return the summary."""
        self._fh.close()
        rank_of = self._ranks()
        cut = len(self._unranked[False]) + 1  # the unranked tail and the newline
        tmp = self.out.with_name(self.out.name + ".tmp")
        with self.partial.open(encoding="utf-8") as src, tmp.open("w", encoding="utf-8") as dst:
            for i, line in enumerate(src):
                if i in rank_of:
                    rank, size = rank_of[i]
                    dst.write(line[:-cut] + self.tail.ranked(rank, size) + "\n")
                else:
                    dst.write(line)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, self.out)
        self.partial.unlink()
        return self._tally.summary()

    def _ranks(self) -> dict[int, tuple[int, int]]:
        """Line index -> (rank in its group, group size), for every scored (not excluded) line."""
        members: dict[str, list[int]] = defaultdict(list)
        for i, (group, total) in enumerate(self._index):
            if total is not None:
                members[group].append(i)
        rank_of: dict[int, tuple[int, int]] = {}
        for rows in members.values():
            for i, r in zip(rows, ranks([self._index[i][1] or 0.0 for i in rows]), strict=True):
                rank_of[i] = (r, len(rows))
        return rank_of


class _Tally:
    """The summary's sums, added up record by record."""

    def __init__(self) -> None:
        self.result = ScoringSummary()
        self.per: dict[str, dict[str, float]] = defaultdict(lambda: {"episodes": 0, "successes": 0, "total": 0.0})
        self.sums: dict[str, list[float]] = defaultdict(list)
        self.outcomes: list[tuple[str, str, bool]] = []

    def add(self, entry: Entry) -> None:
        summary = self.result
        if entry.blame is not None:
            summary.blame[entry.blame] += 1
        if entry.excluded:
            summary.excluded += 1
            return
        summary.scored += 1
        row = self.per[entry.scenario]
        row["episodes"] += 1
        row["successes"] += 1 if entry.success else 0
        row["total"] += entry.total or 0.0
        self.outcomes.append((entry.scenario, entry.group, entry.success))
        for name, score in entry.scores:
            self.sums[name].append(score)

    def summary(self) -> ScoringSummary:
        summary = self.result
        for row in self.per.values():
            row["total"] = row["total"] / row["episodes"] if row["episodes"] else 0.0
        summary.per_scenario = dict(sorted(self.per.items()))
        summary.pass_k = pass_hat_k_by_scenario(self.outcomes)
        summary.means = {k: sum(v) / len(v) for k, v in self.sums.items()}
        return summary
