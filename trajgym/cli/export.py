"""``trajgym export``: scored files into a training dataset (SFT conversations or DPO pairs), with a
summary of what was kept and what was skipped, and why."""

from __future__ import annotations

import argparse

from rich.console import Console


def add_export_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    e = sub.add_parser("export", help="turn scored episodes into a Hugging Face dataset for `trajgym train` "
                                      "(SFT conversations or DPO pairs)")
    e.add_argument("files", nargs="+", metavar="SCORED.jsonl",
                   help="scored files (from trajgym score or trajgym filter; read, never changed)")
    e.add_argument("--format", required=True, choices=["sft", "dpo"], dest="format",
                   help="sft: one conversation of the learner per episode; dpo: pairs of episodes of one scenario "
                        "variation, split at the first assistant turn where they differ")
    e.add_argument("--out", required=True, metavar="DIR",
                   help="a new folder: DIR/dataset (load_from_disk), DIR/data.parquet, DIR/export.json")
    e.add_argument("--filters", metavar="FILTERS.yaml",
                   help="a filter chain (as for trajgym filter) applied first; for dpo it picks the episodes that "
                        "may be either side of a pair")
    e.add_argument("--role", default="support", help="whose conversation to learn (default: support)")
    e.add_argument("--min-margin", type=float, default=0.1,
                   help="dpo: the least difference of totals between the chosen and the rejected episode")
    e.add_argument("--force", action="store_true", help="replace an earlier export in --out")
    e.add_argument("--device", default="cpu", help="torch device of the embedding model for near duplicates")
    e.add_argument("--labels", metavar="LABELS.sqlite",
                   help="human review labels (`trajgym review`): accepted episodes join, rejected ones go, edited turns "
                        "become corrected SFT records and DPO pairs, accept against reject in a variation a DPO pair")


def export_command(args: argparse.Namespace, console: Console) -> int:
    from trajgym.filters.embed import Embedder
    from trajgym.trainers.export import export

    with console.status(f"exporting {len(args.files)} scored file(s) as {args.format} records"):
        result = export(args.files, args.out, fmt=args.format, role=args.role, filters=args.filters,
                        min_margin=args.min_margin, force=args.force, labels=args.labels,
                        embedder=Embedder(device=args.device) if args.filters else None)
    if result.filtered is not None:
        from trajgym.cli.filter import steps_table

        console.print(steps_table(result.filtered))
    unit = "pairs" if args.format == "dpo" else "records"
    console.print(f"{result.records} {args.format} {unit} from {result.read} scored episodes; wrote {result.out}/ "
                  "(dataset/, data.parquet, export.json)", highlight=False)
    human = result.manifest.get("labels")
    if human:
        console.print(f"labels: {human['accepted']} accepted, {human['rejected']} rejected, {human['edited_turns']} "
                      f"edited turns -> {human['records_from_labels']} {unit} made from them"
                      + (f"; {human['unknown_episodes']} labelled episodes not in these files"
                         if human["unknown_episodes"] else ""), highlight=False)
    for why, n in result.skipped.items():
        console.print(f"  skipped {n}: {why}", highlight=False)
    return 0
