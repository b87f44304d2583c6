"""``trajgym report``: one self-contained HTML page about scored trajectory files."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.markup import escape

from trajgym.errors import ReportError


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to ``subparsers`` (what ``ArgumentParser.add_subparsers`` returned)."""
    from trajgym.report import DEFAULT_MAX_TRANSCRIPTS

    p: argparse.ArgumentParser = subparsers.add_parser(
        "report", help="write one self-contained HTML report about scored trajectory files",
        description="Success and pass^k per scenario, score distributions, failure blame, fault recovery, "
                    "diversity and plots, with a table of episodes linked to their transcripts. Needs the "
                    "`report` extra (matplotlib).")
    p.add_argument("files", nargs="+", metavar="SCORED.jsonl",
                   help="scored trajectory files (`trajgym score` output), or a `trajgym loop` run folder")
    p.add_argument("--out", metavar="REPORT.html", help="the HTML file to write (default for a loop run folder: "
                                                        "RUN_DIR/report.html)")
    p.add_argument("--max-transcripts", type=int, default=DEFAULT_MAX_TRANSCRIPTS, metavar="N",
                   help=f"embed the transcripts of the first N episodes of the table (default "
                        f"{DEFAULT_MAX_TRANSCRIPTS}; -1 for all); the page says how many were left out")
    p.add_argument("--title", default="trajgym report", help="the page's title")
    p.add_argument("--labels", metavar="LABELS.sqlite",
                   help="human review labels (`trajgym review`): adds how often each scorer agreed with the reviewers")
    return p


def report(args: argparse.Namespace, console: Console) -> int:
    from trajgym.report import read_scored, write_report

    if args.max_transcripts < -1:
        raise ReportError(f"--max-transcripts must be -1 (all), 0 or more, got {args.max_transcripts}")
    from pathlib import Path

    from trajgym.report.loop import is_loop_run, read_loop

    loop = None
    files = list(args.files)
    if len(files) == 1 and Path(files[0]).is_dir():
        if not is_loop_run(files[0]):
            raise ReportError(f"{files[0]} is a folder but no `trajgym loop` run folder (it has no loop.json): give "
                              "scored files, or a loop's run folder")
        loop = files[0]
        files = [str(p) for p in read_loop(loop)[1]]
        args.out = args.out or str(Path(loop) / "report.html")
        if args.title == "trajgym report":
            args.title = f"trajgym loop {Path(loop).resolve().name}"
    if not args.out:
        raise ReportError("give --out REPORT.html (only a loop run folder has a default)")
    records = read_scored(files)
    if not records:
        raise ReportError(f"no scored episodes in {', '.join(files) or args.files[0]}: score trajectories first with "
                          "`trajgym score FILE.jsonl --out SCORED.jsonl`")
    summary = write_report(records, args.out, title=args.title, sources=files, loop=loop, labels=args.labels,
                           max_transcripts=None if args.max_transcripts == -1 else args.max_transcripts)
    data = summary.data
    rate = f"{100 * data.success_rate:.0f}%" if data.success_rate is not None else "n/a"
    left_out = f", {summary.left_out:,} left out (--max-transcripts)" if summary.left_out else ""
    console.print(f"wrote [bold]{escape(str(summary.path))}[/] ({summary.bytes / 1e6:.1f} MB): {len(data.rows):,} "
                  f"episodes of {len(data.scenarios)} scenarios, success {rate}, {summary.transcripts:,} transcripts"
                  f"{left_out}", highlight=False)
    return 0
