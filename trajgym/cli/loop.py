"""``trajgym loop CONFIG.yaml``: generations of generate -> score -> filter -> train -> serve ->
evaluate, into one run folder (:mod:`trajgym.trainers.loop`)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def add_loop_parser(sub: Any) -> None:
    p = sub.add_parser("loop", help="the self-improvement loop: generate, score, filter, train, serve, evaluate",
                       description="Run N generations of the loop the config describes (see README: The loop). A "
                                   "killed loop goes on where it stopped with --resume. Needs `make train-setup "
                                   "vllm-setup` (unless the config's player is a scripted agent).")
    p.add_argument("config", metavar="CONFIG.yaml", help="the loop config")
    p.add_argument("--resume", action="store_true", help="go on with the loop in the config's output folder")
    p.add_argument("--generations", type=int, help="run this many generations (overrides the config)")


def loop_command(args: argparse.Namespace, console: Console) -> int:
    from trajgym.trainers.loop import Loop, load_loop_config
    from trajgym.trainers.run import require_train_extra

    config = load_loop_config(args.config)
    if args.generations is not None:
        config = config.model_copy(update={"generations": args.generations})
    require_train_extra()
    loop = Loop(config, resume=args.resume,
                say=lambda msg: console.print(escape(msg), highlight=False, soft_wrap=True,
                                              style="bold yellow" if "COLLAPSE" in msg else None))
    records = loop.run()
    table = Table(title=f"loop {config.output} ({config.data})")
    for col in ("gen", "held-out seeds", "held-out scenarios", "kept", "reward", "distinct chains", "2-gram bits", "warnings", "s"):
        table.add_column(col, justify="right")
    for r in records:
        ev = r.get("eval") or {}

        def frac(split: str, ev: dict[str, Any] = ev) -> str:
            s = ev.get(split) or {}
            return f"{s['successes']}/{s['episodes']}" if s.get("episodes") else "-"

        figures = r.get("collapse") or {}
        entropy = figures.get("action_2gram_entropy_bits")
        share = figures.get("distinct_chain_share")
        table.add_row(str(r["generation"]), frac("held-out seeds"), frac("held-out scenario"),
                      str(r.get("kept", "-")), f"{r['reward']:.3f}" if r.get("reward") is not None else "-",
                      f"{share:.0%}" if share is not None else "-", f"{entropy:.2f}" if entropy is not None else "-",
                      str(len(r.get("warnings") or [])),
                      f"{sum((r.get('seconds') or {}).values()):.0f}")
    console.print(table)
    console.print(f"run folder: {escape(config.output)}; curves: trajgym report {escape(config.output)}",
                  highlight=False, soft_wrap=True)
    return 0
