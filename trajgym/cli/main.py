"""The ``trajgym`` command line. It owns the terminal: progress bars, tables, error messages.

Every expected failure (a broken scenario, an unknown id, an unreadable trajectory file) ends with a
one-line message and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from trajgym._version import __version__
from trajgym.cli.filter import add_filter_parser
from trajgym.cli.report import add_report_parser
from trajgym.cli.score import add_score_parser
from trajgym.cli.serve import add_serve_parser
from trajgym.errors import TrajgymError

# Logs and CI are not terminals: give tables room there instead of rich's default 80 columns.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trajgym", description="Turn simulated work into training data for AI agents.")
    p.add_argument("--version", action="version", version=f"trajgym {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    v = sub.add_parser("validate", help="check scenario files; print problems as file:line:col: message")
    v.add_argument("paths", nargs="+", metavar="PATH", help="scenario files or folders (searched for *.yaml)")

    ls = sub.add_parser("list", help="list the registered envs and the built-in scenarios")
    ls.add_argument("what", nargs="?", choices=["envs", "scenarios", "all"], default="all")

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

    s = sub.add_parser("show", help="print an episode of a trajectory file readably")
    s.add_argument("file", help="a trajectory JSONL file")
    s.add_argument("--episode", help="episode id (default: the first episode)")
    s.add_argument("--list", action="store_true", help="list the episodes instead")

    add_serve_parser(sub)
    add_score_parser(sub)
    add_filter_parser(sub)
    add_report_parser(sub)

    sc = sub.add_parser("schema", help="print a JSON Schema")
    sc.add_argument("which", choices=["trajectory", "scenario"])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "validate":
            from trajgym.cli.validate import validate

            return validate(args.paths, console)
        if args.command == "list":
            from trajgym.cli.listing import list_all

            return list_all(args.what, console)
        if args.command == "rollout":
            from trajgym.cli.rollout import rollout

            command = "trajgym " + shlex.join(sys.argv[1:] if argv is None else list(argv))
            return rollout(args, console, command)
        if args.command == "show":
            from trajgym.cli.show import show

            return show(args.file, args.episode, args.list, console)
        if args.command == "serve":
            from trajgym.cli.serve import serve

            return serve(args, console)
        if args.command == "score":
            from trajgym.cli.score import score

            return score(args, console)
        if args.command == "report":
            from trajgym.cli.report import report

            return report(args, console)
        if args.command == "filter":
            from trajgym.cli.filter import filter_command

            return filter_command(args, console)
        if args.command == "schema":
            return _schema(args.which)
    except TrajgymError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 1
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    return 2


def _schema(which: str) -> int:
    if which == "trajectory":
        from trajgym.trajectory.schema import Trajectory

        schema = Trajectory.model_json_schema()
    else:
        from trajgym.scenario.schema import Scenario

        schema = Scenario.model_json_schema(by_alias=True)
    sys.stdout.write(json.dumps(schema, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
