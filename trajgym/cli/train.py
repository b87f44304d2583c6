"""``trajgym train sft|dpo CONFIG.yaml``: train a policy on an exported dataset (TRL), into a run folder
whose ``model/`` vLLM serves as is (``trajgym serve --model RUN/model``)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.markup import escape


def add_train_parser(sub: Any) -> None:
    t = sub.add_parser("train", help="train a policy: sft or dpo on exported trajectories (TRL), grpo online",
                       description="Train with TRL on a `trajgym export` folder. The config (YAML) names the model, "
                                   "the data and the run folder; a killed run resumes from its last checkpoint when "
                                   "started again with the same config. Needs `make train-setup`.")
    t.add_argument("method", choices=["sft", "dpo", "grpo"],
                   help="sft: fine-tune on whole learner conversations; dpo: preference pairs; grpo: online RL on "
                        "episodes the policy plays (served by vLLM, new weights swapped in after every step)")
    t.add_argument("config", metavar="CONFIG.yaml", help="the training config (see README: Training)")
    t.add_argument("--out", help="the run folder (overrides the config's output)")
    t.add_argument("--max-steps", type=int, help="stop after N optimizer steps (overrides the config)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")


def train_command(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from trajgym.trainers.config import load_train_config

    config = load_train_config(args.config, args.method)
    overrides: list[str] = []
    if args.out:
        config = config.model_copy(update={"output": str(Path(args.out).resolve())})
        overrides.append("output")
    if args.max_steps is not None:
        config = config.model_copy(update={"max_steps": args.max_steps})
        overrides.append("max_steps")
    if args.method == "sft":
        from trajgym.trainers.config import SFTRunConfig
        from trajgym.trainers.sft import train_sft

        assert isinstance(config, SFTRunConfig)
        summary = train_sft(config, progress=not args.no_progress, overrides=tuple(overrides))
    elif args.method == "dpo":
        from trajgym.trainers.config import DPORunConfig
        from trajgym.trainers.dpo import train_dpo

        assert isinstance(config, DPORunConfig)
        summary = train_dpo(config, progress=not args.no_progress, overrides=tuple(overrides))
    else:
        from trajgym.trainers.config import GRPORunConfig
        from trajgym.trainers.grpo import train_grpo

        assert isinstance(config, GRPORunConfig)
        summary = train_grpo(config, progress=not args.no_progress, overrides=tuple(overrides))
    model = Path(config.output) / "model"
    loss = (f"loss {summary['first_loss']:.3f} -> {summary['final_loss']:.3f}"
            if summary.get("final_loss") is not None else "no loss logged")
    acc = summary.get("final_reward_accuracy")
    if summary.get("final_reward") is not None:
        loss += f"; mean reward {summary['first_reward']:.3f} -> {summary['final_reward']:.3f}"
    console.print(f"trained {args.method}: {summary['steps']} steps on {summary['records']} records in "
                  f"{summary['seconds']:.0f} s ({summary['tokens_per_s']} tokens/s); {loss}"
                  + (f"; reward accuracy {acc:.2f}" if acc is not None else ""), highlight=False)
    console.print(f"model: [bold]{escape(str(model))}[/] (weights {summary['weights_id']}); curves: "
                  f"{escape(str(Path(config.output) / 'curves.png'))}; serve it: trajgym serve --model "
                  f"{escape(str(model))}", highlight=False, soft_wrap=True)
    return 0
