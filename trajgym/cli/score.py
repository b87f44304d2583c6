"""``trajgym score``: score trajectory files into a scored file, then print a summary table."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trajgym.errors import TrajgymError
from trajgym.scorers.base import ScoringContext
from trajgym.scorers.config import load_scoring_config
from trajgym.scorers.pipeline import Scoring, score_files
from trajgym.scorers.writer import ScoringSummary

MAX_K_COLUMNS = 4


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def add_score_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    s = sub.add_parser("score", help="score trajectory files (outcome, policy, recovery, ...) into a scored JSONL file")
    s.add_argument("files", nargs="+", metavar="FILE.jsonl", help="trajectory files (read, never changed)")
    s.add_argument("--scorers", metavar="CONFIG.yaml",
                   help="scorers, options and weights (default: outcome, milestones, policy, recovery, efficiency)")
    s.add_argument("--out", required=True, help="the scored JSONL file to write")
    s.add_argument("--scenarios", action="append", default=[], metavar="DIR",
                   help="where to find scenario files a trajectory names but this machine lacks (repeatable)")
    s.add_argument("--concurrency", type=int, default=16, help="episodes scored at once by model-based scorers")
    s.add_argument("--workers", type=int, default=usable_cpus(), metavar="N",
                   help="processes scoring at once with the rule-based scorers (default: the CPUs this process may "
                        "use); the scored file is the same with any number")
    s.add_argument("--skip-torn", action="store_true",
                   help="leave out a torn last line of an input (a job killed mid-write) with a warning, instead of "
                        "stopping")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")


def score(args: argparse.Namespace, console: Console) -> int:
    if args.workers < 1:
        raise TrajgymError("--workers must be at least 1")
    config, scorers = load_scoring_config(args.scorers)
    scoring = Scoring(config, scorers, ScoringContext(scenario_dirs=[Path(d) for d in args.scenarios]))
    progress = Progress(TextColumn("[bold]score"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, disable=args.no_progress)
    with progress:
        task = progress.add_task("score", total=None)

        def on_progress() -> None:
            progress.update(task, advance=1)

        summary = score_files(args.files, args.out, scoring, concurrency=args.concurrency, workers=args.workers,
                              on_progress=on_progress, skip_torn=args.skip_torn)
    console.print(summary_table(summary, [s.name for s in scorers]))
    blame = ", ".join(f"{k} {v}" for k, v in summary.blame.most_common()) or "none"
    console.print(f"{summary.scored} episodes scored, {summary.excluded} excluded (infra_error); "
                  f"failures blamed on: {blame}", highlight=False)
    console.print(f"wrote {args.out}; see the report: trajgym report {args.out} --out report.html", highlight=False)
    return 0


def summary_table(summary: ScoringSummary, scorers: list[str]) -> Table:
    kmax = min(MAX_K_COLUMNS, max((max(v) for v in summary.pass_k.values() if v), default=1))
    table = Table(title=f"Scores ({', '.join(scorers)})")
    table.add_column("scenario", overflow="fold")
    table.add_column("episodes", justify="right")
    table.add_column("success", justify="right")
    for k in range(1, kmax + 1):
        table.add_column(f"pass^{k}", justify="right")
    table.add_column("mean total", justify="right")
    for scenario, row in summary.per_scenario.items():
        ks = summary.pass_k.get(scenario, {})
        table.add_row(scenario, str(int(row["episodes"])), f"{row['successes'] / row['episodes']:.0%}",
                      *[f"{ks[k]:.2f}" if k in ks else "" for k in range(1, kmax + 1)], f"{row['total']:.2f}")
    return table
