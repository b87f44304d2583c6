"""``make demo`` (``python -m trajgym.cli.demo``): the bundled SmolLM2 model, served by vLLM, plays
the built-in scenarios.

Converts the bundled model (once), starts vLLM on it, runs a rollout job in which SmolLM2 plays the
support agent and the customer (tool calls forced with ``tool_choice=required``), prints the summary
table (episodes, success, faults met, tokens/s) and the customer persona mix, and stops the server.

Every episode of the job is in flight at once (vLLM's continuous batching gives its best tokens/s
with the most requests in flight), and each is cut after ``--max-turns`` turns, so the demo takes
minutes on two CPU cores (about 7 when other jobs share them) rather than the better part of an
hour. ``make demo-oracle`` is the fast run with the scripted oracle instead of a model.

It drives ``trajgym rollout`` with the CLI's own console, so it lives with the CLI, above
:mod:`trajgym.serving` (which it uses and which imports nothing of the CLI).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from rich.markup import escape

from trajgym.cli.main import console
from trajgym.cli.main import main as cli_main
from trajgym.errors import TrajgymError
from trajgym.serving.convert import convert_bundled_model
from trajgym.serving.server import VLLMServer


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trajgym.cli.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", default="runs/demo.jsonl", help="trajectories (default runs/demo.jsonl)")
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO_OR_DIR", help="default: every built-in scenario")
    p.add_argument("--episodes", type=int, default=1, help="variations per scenario (default 1)")
    p.add_argument("--max-turns", type=int, default=12, help="turns per episode at most (default 12)")
    p.add_argument("--max-tokens", type=int, default=128, help="tokens per model answer at most (default 128)")
    p.add_argument("--concurrency", type=int, default=64, help="episodes in flight (default 64)")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    p.add_argument("--request-timeout", type=float, default=600.0,
                   help="seconds a model request may take (default 600: every episode's first request waits "
                        "for all the prompts before it on a busy CPU)")
    p.add_argument("--log", default="runs/vllm-demo.log", help="vLLM's log (default runs/vllm-demo.log)")
    return p


def rollout_argv(args: argparse.Namespace, base_url: str) -> list[str]:
    """The ``trajgym rollout`` command line of the demo's job against the server at ``base_url``."""
    return ["rollout", *args.scenarios, "--agent", "openai", "--base-url", base_url, "--tool-choice", "required",
            "--strict", "--temperature", str(args.temperature), "--max-tokens", str(args.max_tokens),
            "--customer", "llm_customer", "--episodes", str(args.episodes), "--max-turns", str(args.max_turns),
            "--concurrency", str(args.concurrency), "--request-timeout", str(args.request_timeout),
            "--out", args.out]


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    started = time.perf_counter()
    try:
        with console.status("converting the bundled SmolLM2-135M-Instruct (once)..."):
            model = convert_bundled_model()
        with console.status("starting vLLM (CPU)..."):
            server = VLLMServer(model, max_model_len=8192, log_path=args.log).start()
    except TrajgymError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 1
    try:
        console.print(f"vLLM serving {escape(server.served_model_name)} at {server.base_url} "
                      f"(up after {time.perf_counter() - started:.0f} s; log {escape(args.log)})", highlight=False)
        return cli_main(rollout_argv(args, server.base_url))
    finally:
        server.stop()
        console.print(f"demo done in {time.perf_counter() - started:.0f} s", highlight=False)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
