"""The report: one self-contained HTML page about a set of scored trajectories.

Success and pass^k per scenario, score distributions, failure blame, fault recovery, diversity,
plots, and an episode table whose rows link to each episode's transcript on the same page.
Three stages: :mod:`~trajgym.report.aggregate` computes the figures, :mod:`~trajgym.report.plots`
draws them (matplotlib, the ``report`` extra), :mod:`~trajgym.report.page` writes the HTML.

Example::

    from trajgym.report import read_scored, write_report
    write_report(read_scored(["runs/scored.jsonl"]), "report.html")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trajgym.errors import ReportError
from trajgym.filters.diversity import diversity as default_diversity
from trajgym.report.aggregate import DiversityFn, ReportData, summarize
from trajgym.report.page import render_page
from trajgym.report.plots import draw_all
from trajgym.trajectory.scored import ScoredTrajectory, iter_scored

DEFAULT_MAX_TRANSCRIPTS = 1000


@dataclass(frozen=True)
class ReportSummary:
    """What :func:`write_report` wrote."""

    path: Path
    data: ReportData
    transcripts: int
    bytes: int

    @property
    def left_out(self) -> int:
        return len(self.data.rows) - self.transcripts


def read_scored(paths: Sequence[str | Path]) -> list[ScoredTrajectory]:
    """Every record of the scored files (``trajgym score`` output), in order."""
    return [record for path in paths for record in iter_scored(path)]


def build_report(records: Sequence[ScoredTrajectory], *, title: str = "trajgym report",
                 max_transcripts: int | None = DEFAULT_MAX_TRANSCRIPTS, diversity: DiversityFn = default_diversity,
                 sources: Sequence[str] = (), loop: str | Path | None = None,
                 labels: str | Path | None = None) -> tuple[str, ReportData]:
    """The report page for ``records`` and the figures it shows; with ``loop`` (a ``trajgym loop``
    run folder) a section of its generations comes first; with ``labels`` (``trajgym review``'s
    SQLite file) a section on how often each scorer agreed with the reviewers."""
    if not records:
        raise ReportError("nothing to report on: no scored episodes were given")
    if max_transcripts is not None and max_transcripts < 0:
        raise ReportError(f"max_transcripts must be 0 or more, got {max_transcripts}")
    data = summarize(records, diversity=diversity, sources=sources)
    extra = []
    if loop is not None:
        from trajgym.report.loop import loop_section, read_loop

        extra.append(("loop", "Loop", loop_section(read_loop(loop)[0], str(loop))))
    if labels is not None:
        from trajgym.report.page import agreement_section

        extra.append(("agreement", "Reviewers and scorers", agreement_section(records, labels)))
    return render_page(data, draw_all(data), title=title, max_transcripts=max_transcripts, extra=extra), data


def write_report(records: Sequence[ScoredTrajectory], out: str | Path, *, title: str = "trajgym report",
                 max_transcripts: int | None = DEFAULT_MAX_TRANSCRIPTS, diversity: DiversityFn = default_diversity,
                 sources: Sequence[str] = (), loop: str | Path | None = None,
                 labels: str | Path | None = None) -> ReportSummary:
    """Write the report page of :func:`build_report` to ``out``."""
    page, data = build_report(records, title=title, max_transcripts=max_transcripts, diversity=diversity,
                              sources=sources, loop=loop, labels=labels)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    shown = len(data.rows) if max_transcripts is None else min(max_transcripts, len(data.rows))
    return ReportSummary(path, data, shown, len(page.encode("utf-8")))


__all__ = ["DEFAULT_MAX_TRANSCRIPTS", "DiversityFn", "ReportData", "ReportSummary", "build_report", "read_scored",
           "summarize", "write_report"]
