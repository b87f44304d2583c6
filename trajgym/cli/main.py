"""The ``trajgym`` command line. It owns the terminal: progress bars, tables, error messages.

Every expected failure (a broken scenario, an unknown id, an unreadable trajectory file) ends with a
one-line message and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape

from trajgym._version import __version__
from trajgym.cli.eval import add_eval_parser
from trajgym.cli.export import add_export_parser
from trajgym.cli.filter import add_filter_parser
from trajgym.cli.loop import add_loop_parser
from trajgym.cli.report import add_report_parser
from trajgym.cli.review import add_review_parser
from trajgym.cli.score import add_score_parser
from trajgym.cli.serve import add_serve_parser
from trajgym.cli.train import add_train_parser
from trajgym.errors import TrajgymError
from trajgym.registry import resolve

# Logs and CI are not terminals: give tables room there instead of rich's default 80 columns.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, what adds its parser, and what runs it.

    ``run`` is a lazy ``"module:function"``, imported only when the command runs (``trajgym --help``
    and every other command stay fast); the function takes the parsed arguments and the console
    and returns the exit code.
    """

    name: str
    add_parser: Callable[[Any], object]
    run: str


def _add_validate_parser(sub: Any) -> None:
    v = sub.add_parser("validate", help="check scenario files; print problems as file:line:col: message")
    v.add_argument("paths", nargs="+", metavar="PATH", help="scenario files or folders (searched for *.yaml)")


def _add_list_parser(sub: Any) -> None:
    ls = sub.add_parser("list", help="list the registered envs and the built-in scenarios")
    ls.add_argument("what", nargs="?", choices=["envs", "scenarios", "all"], default="all")


def _add_rollout_parser(sub: Any) -> None:
    r = sub.add_parser("rollout", help="play episodes and append their trajectories to a JSONL file")
    r.add_argument("scenarios", nargs="*", metavar="SCENARIO_OR_DIR",
                   help="scenario ids, files or folders (default: every built-in scenario)")
    r.add_argument("--job", metavar="JOB.yaml", help="run the job a YAML file declares (scenarios, agents, "
                   "episodes, trials, seed, concurrency, workers, output, backend)")
    r.add_argument("--agent", help="who plays support (default oracle)")
    r.add_argument("--episodes", type=int, help="variations (seeds) per scenario (default 1)")
    r.add_argument("--trials", type=int, help="episodes per variation (default 1)")
    r.add_argument("--seed", type=int, help="job seed; episode seeds are derived from it (default 0)")
    r.add_argument("--max-turns", type=int, metavar="N",
                   help="end every episode after at most N turns (the scenario's own limit if lower)")
    r.add_argument("--concurrency", type=int, help="episodes in flight (default 8)")
    r.add_argument("--workers", type=int, help="processes that share the episodes in flight, this one included (default 1; "
                   "more for thousands in flight on a machine with cores to spare)")
    r.add_argument("--out", help="JSONL file to append trajectories to (required without --job)")
    r.add_argument("--resume", action="store_true",
                   help="continue the job in --out: skip finished units, rerun missing and infra_error ones")
    r.add_argument("--backend", choices=["local", "ray"], help="where episodes run (default local)")
    r.add_argument("--ray-address", help="Ray cluster address for --backend ray (default: a local Ray)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    m = r.add_argument_group("model agents (--agent openai or hf, --customer llm_customer)")
    m.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 "
                                      "(default $OPENAI_BASE_URL)")
    m.add_argument("--model", help="served model name (default $OPENAI_MODEL, else the server's first); "
                                   "for --agent hf a local transformers folder (default: the bundled SmolLM2)")
    m.add_argument("--api", choices=["chat", "tokens"],
                   help="how a server agent sends its prompt: chat messages the server renders (default), or "
                        "the conversation as token ids to /completions (vLLM), so every turn extends the last "
                        "exactly (needs the served model's tokenizer folder on this machine)")
    m.add_argument("--tool-choice", choices=["auto", "required", "none"],
                   help="tool_choice sent to the server (small models need 'required'); "
                        "with --agent hf, 'required' starts every answer with <tool_call>")
    m.add_argument("--strict", action="store_true", help='send "strict": true on every tool schema')
    m.add_argument("--temperature", type=float, help="sampling temperature")
    m.add_argument("--max-tokens", type=int, help="most tokens per model answer")
    m.add_argument("--request-timeout", type=float, metavar="S",
                   help="seconds a request to the model server may take before it is retried (default 120; openai, llm_customer)")
    m.add_argument("--customer", help="who plays the customer: scripted_customer (default) or llm_customer")
    m.add_argument("--customer-base-url", help="server of the LLM customer (default: --base-url)")
    m.add_argument("--customer-model", help="model of the LLM customer (default: --model)")


def _add_show_parser(sub: Any) -> None:
    s = sub.add_parser("show", help="print an episode of a trajectory file readably")
    s.add_argument("file", help="a trajectory JSONL file")
    s.add_argument("--episode", help="episode id (default: the first episode)")
    s.add_argument("--list", action="store_true", help="list the episodes instead")
    s.add_argument("--skip-torn", action="store_true",
                   help="leave out a torn last line (a job killed mid-write) with a warning, instead of stopping")


def _add_schema_parser(sub: Any) -> None:
    sc = sub.add_parser("schema", help="print a JSON Schema")
    sc.add_argument("which", choices=["trajectory", "scenario"])


COMMANDS: tuple[Command, ...] = (
    Command("validate", _add_validate_parser, "trajgym.cli.validate:validate_command"),
    Command("list", _add_list_parser, "trajgym.cli.listing:list_command"),
    Command("rollout", _add_rollout_parser, "trajgym.cli.rollout:rollout_command"),
    Command("show", _add_show_parser, "trajgym.cli.show:show_command"),
    Command("serve", add_serve_parser, "trajgym.cli.serve:serve"),
    Command("score", add_score_parser, "trajgym.cli.score:score"),
    Command("filter", add_filter_parser, "trajgym.cli.filter:filter_command"),
    Command("export", add_export_parser, "trajgym.cli.export:export_command"),
    Command("train", add_train_parser, "trajgym.cli.train:train_command"),
    Command("eval", add_eval_parser, "trajgym.cli.eval:eval_command"),
    Command("loop", add_loop_parser, "trajgym.cli.loop:loop_command"),
    Command("report", add_report_parser, "trajgym.cli.report:report"),
    Command("review", add_review_parser, "trajgym.cli.review:review_command"),
    Command("schema", _add_schema_parser, "trajgym.cli.schema:schema_command"),
)
"""The subcommands, in the order ``trajgym --help`` lists them. A new subcommand is a new row."""
_BY_NAME = {command.name: command for command in COMMANDS}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trajgym", description="Turn simulated work into training data for AI agents.")
    p.add_argument("--version", action="version", version=f"trajgym {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # the command line as typed, for the records of what made a file (trajgym rollout)
    args.command_line = "trajgym " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    try:
        run: Callable[[argparse.Namespace, Console], int] = resolve(_BY_NAME[args.command].run)
        return run(args, console)
    except TrajgymError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 1
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
