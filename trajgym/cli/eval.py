"""``trajgym eval``: a policy's success and pass^k on held-out seeds and held-out scenarios."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def add_eval_parser(sub: Any) -> None:
    e = sub.add_parser("eval", help="play, score and summarise a policy on variations training never saw",
                       description="Serve MODEL with vLLM (or use --base-url), play the scenarios with seeds its "
                                   "training never used (variations it was trained on are left out), score the "
                                   "episodes and print success and pass^k per scenario, split into held-out seeds "
                                   "(scenarios it trained on) and held-out scenarios. Needs `make vllm-setup`.")
    e.add_argument("scenarios", nargs="+", metavar="SCENARIO_OR_DIR", help="scenario ids, files or folders")
    e.add_argument("--model", help="a transformers folder to serve (a run's model/); 'bundled' for the base model")
    e.add_argument("--base-url", help="a running OpenAI-compatible server instead of --model")
    e.add_argument("--out", required=True, help="a new folder for the episodes, scores and eval.json")
    e.add_argument("--hold-out-from", action="append", default=[], metavar="MODEL_DIR",
                   help="also leave out what this trained model folder was trained on, and count its scenarios as "
                        "'held-out seeds' (evaluate a base model on a trained model's split); repeatable")
    e.add_argument("--episodes", type=int, default=10, help="variations (seeds) per scenario (default 10)")
    e.add_argument("--trials", type=int, default=1, help="episodes per variation, for pass^k (default 1)")
    e.add_argument("--seed", type=int, default=1000, help="job seed of the held-out variations (default 1000)")
    e.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0: greedy)")
    e.add_argument("--max-tokens", type=int, default=256, help="tokens per model answer at most (default 256)")
    e.add_argument("--max-turns", type=int, help="end every episode after at most N turns")
    e.add_argument("--api", choices=["chat", "tokens"], default="tokens",
                   help="send chat messages, or token ids (default: tokens, exactly as trained)")
    e.add_argument("--tool-choice", choices=["auto", "required"], default="auto", help="default auto")
    e.add_argument("--concurrency", type=int, default=64, help="episodes in flight (default 64)")
    e.add_argument("--log", help="vLLM's log file (default: in --out)")


def eval_command(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from trajgym.errors import TrajgymError
    from trajgym.trainers.evaluate import EvalOptions, evaluate

    if bool(args.model) == bool(args.base_url):
        raise TrajgymError("give --model (a folder to serve) or --base-url (a running server), one of them")
    model = args.model
    if model == "bundled":
        from trajgym.serving.convert import convert_bundled_model

        model = str(convert_bundled_model())
    if args.episodes < 1 or args.trials < 1:
        raise TrajgymError("--episodes and --trials must be at least 1")
    options = EvalOptions(episodes=args.episodes, trials=args.trials, seed=args.seed, max_turns=args.max_turns,
                          temperature=args.temperature, max_tokens=args.max_tokens, api=args.api,
                          tool_choice=args.tool_choice, concurrency=args.concurrency)
    with console.status("evaluating...") as status:
        result = evaluate(model, args.scenarios, args.out, options=options, base_url=args.base_url,
                          hold_out_from=args.hold_out_from, vllm_log=args.log or Path(args.out) / "vllm.log",
                          on_progress=lambda msg: status.update(escape(msg) + "..."))
    console.print(eval_table(result))
    for split in ("held-out seeds", "held-out scenario"):
        ok, n = result.split_success(split)
        if n:
            console.print(f"{split}: {ok}/{n} = {ok / n:.0%}", highlight=False)
    if result.dropped:
        console.print(f"left out {result.dropped} trained-on variations", highlight=False)
    console.print(f"wrote {escape(str(Path(args.out) / 'eval.json'))}", highlight=False)
    return 0


def eval_table(result: Any) -> Table:
    kmax = max((max(r.pass_k) for r in result.rows if r.pass_k), default=1)
    table = Table(title=f"Evaluation of {result.model} ({result.weights_id or 'served'})")
    table.add_column("scenario", overflow="fold")
    table.add_column("split")
    table.add_column("episodes", justify="right")
    table.add_column("success", justify="right")
    for k in range(1, kmax + 1):
        table.add_column(f"pass^{k}", justify="right")
    table.add_column("mean total", justify="right")
    for r in sorted(result.rows, key=lambda r: (r.split, r.scenario_id)):
        table.add_row(r.scenario_id, r.split, str(r.episodes), f"{r.success:.0%}",
                      *[f"{r.pass_k[k]:.2f}" if k in r.pass_k else "" for k in range(1, kmax + 1)],
                      f"{r.mean_total:.2f}")
    return table
