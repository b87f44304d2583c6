"""Where a job's episodes go: the one writer of its output file, its counts, and the caller's
callbacks. The local loop, the worker processes' lines and the Ray backend's results all end here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trajgym import jsonio
from trajgym.rollout.runner import ScenarioSummary, digest, total
from trajgym.trajectory.store import TrajectoryWriter

OnEpisode = Callable[[dict[str, Any]], None]
OnProgress = Callable[["JobResult"], None]


@dataclass
class JobResult:
    """What one run of a job did."""

    summary: dict[str, ScenarioSummary]
    ran: int = 0
    skipped: int = 0
    """Units the output already held (resume)."""
    torn: Path | None = None
    """Where a torn last line of the output was moved (resume after a crash)."""
    totals: ScenarioSummary = field(default_factory=ScenarioSummary)
    """The counts of every episode this run played, all scenarios together, kept as they end."""
    worker_cpu_s: float = 0.0
    """CPU seconds the job's worker processes spent (``workers`` > 1; this process's own not included)."""
    job_id: str | None = None
    """The job's id, recorded in every trajectory it wrote (:func:`trajgym.rollout.runner.job_id`)."""

    def record(self, d: dict[str, Any]) -> None:
        """Count one episode that was written, from its :func:`~trajgym.rollout.runner.digest`."""
        self.ran += 1
        self.summary.setdefault(d["scenario_id"], ScenarioSummary()).add_digest(d)
        self.totals.add_digest(d)

    @property
    def persona_mix(self) -> dict[str, dict[str, int]]:
        """The customer personas this run played, counted per trait (mood, language, expertise)."""
        return total(self.summary).personas


class JobSink:
    """Writes each ended episode (a trajectory, or a worker's encoded line with its digest), counts
    it in ``result`` and calls ``on_episode`` and ``on_progress``."""

    def __init__(self, writer: TrajectoryWriter, result: JobResult, on_episode: OnEpisode | None = None,
                 on_progress: OnProgress | None = None) -> None:
        self.writer = writer
        self.result = result
        self.on_episode = on_episode
        self.on_progress = on_progress

    def episode(self, traj: dict[str, Any]) -> None:
        """An episode played in this process."""
        self.writer.write(traj)
        self._counted(digest(traj), traj)

    def lines(self, lines: list[tuple[bytes, dict[str, Any]]]) -> None:
        """Episodes another process played: their encoded lines, written together, and their digests
        (a line is decoded only for an ``on_episode``)."""
        self.writer.write_lines([line for line, _ in lines])
        for line, d in lines:
            self._counted(d, None if self.on_episode is None else jsonio.loads(line))

    def _counted(self, d: dict[str, Any], traj: dict[str, Any] | None) -> None:
        self.result.record(d)
        if self.on_episode is not None and traj is not None:
            self.on_episode(traj)
        if self.on_progress is not None:
            self.on_progress(self.result)
