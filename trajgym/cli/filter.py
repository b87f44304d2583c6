"""``trajgym filter``: a scored file through a filter chain into a smaller one, with a table of what
each step kept and dropped, and why."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from trajgym.filters.chain import FilterResult


def add_filter_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    f = sub.add_parser("filter", help="keep the episodes of a scored file that pass a filter chain (score, blame, "
                                      "duplicates, ...)")
    f.add_argument("file", metavar="SCORED.jsonl", help="a scored file (from trajgym score; read, never changed)")
    f.add_argument("--config", required=True, metavar="FILTERS.yaml",
                   help="the filter chain: filters: [{min_score: 0.7}, {no_blame: [simulator]}, {dedup: {near: 0.9}}]")
    f.add_argument("--out", required=True, metavar="KEPT.jsonl", help="where the kept episodes go (not the input)")
    f.add_argument("--device", default="cpu", help="torch device of the embedding model for near duplicates")
    f.add_argument("--labels", metavar="LABELS.sqlite",
                   help="human review labels (`trajgym review`) that override the chain: accepted kept, rejected dropped")


def filter_command(args: argparse.Namespace, console: Console) -> int:
    from trajgym.filters.chain import filter_file
    from trajgym.filters.embed import Embedder

    with console.status(f"filtering {args.file} (a near-duplicate step embeds every decision chain: minutes for "
                        "thousands of episodes on a CPU)"):
        result = filter_file(args.file, args.config, args.out, embedder=Embedder(device=args.device),
                             labels=args.labels)
    console.print(steps_table(result))
    console.print(f"kept {len(result.kept)} of {result.total} episodes; wrote {args.out}, and the dropped ones with "
                  f"the step and reason that dropped each to {result.sidecar}", highlight=False)
    return 0


def steps_table(result: FilterResult) -> Table:
    table = Table(title="Filter chain")
    table.add_column("#", justify="right")
    table.add_column("step", overflow="fold")
    table.add_column("in", justify="right")
    table.add_column("kept", justify="right")
    table.add_column("dropped", justify="right")
    table.add_column("why", overflow="fold")
    for n, step in enumerate(result.steps, 1):
        why = ", ".join(f"{reason}: {count}" for reason, count in sorted(step.reasons.items(), key=lambda kv: -kv[1]))
        table.add_row(str(n), step.step, str(step.before), str(step.after), str(step.dropped), why)
    return table
