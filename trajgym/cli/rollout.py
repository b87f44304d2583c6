"""``trajgym rollout``: play episodes with a progress bar, then print a summary table."""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trajgym.agents import AGENTS
from trajgym.errors import TrajgymError
from trajgym.rollout.runner import ScenarioSummary, plan, run
from trajgym.scenario.catalog import builtin_dir, scenario_files
from trajgym.scenario.loader import load


def rollout(args: argparse.Namespace, console: Console, command: str) -> int:
    if args.agent not in ("oracle", "random"):
        known = ", ".join(k for k in AGENTS if k in ("oracle", "random"))
        raise TrajgymError(f"--agent {args.agent!r} cannot play support here (choose: {known})")
    if args.episodes < 1 or args.trials < 1:
        raise TrajgymError("--episodes and --trials must be at least 1")
    files = scenario_files(args.scenarios or [str(builtin_dir())])
    templates = [load(f) for f in files]
    units = plan(templates, args.episodes, args.seed, args.trials)
    stats = {"done": 0, "faults": 0, "malformed": 0, "success": 0, "steps": 0}
    started = time.perf_counter()

    progress = Progress(
        TextColumn("[bold]rollout[/]"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} ep/s  {task.fields[sps]:.0f} steps/s"),
        TextColumn("success {task.fields[success]}  faults {task.fields[faults]}  "
                   "malformed {task.fields[malformed]}"),
        TimeElapsedColumn(), console=console, disable=args.no_progress,
    )
    with progress:
        task = progress.add_task("rollout", total=len(units), rate=0.0, sps=0.0, success=0, faults=0, malformed=0)

        def on_episode(traj: dict[str, Any]) -> None:
            stats["done"] += 1
            stats["faults"] += len(traj["faults"])
            stats["malformed"] += sum(1 for s in traj["steps"] if s["error"])
            stats["success"] += bool(traj["outcome"]["success"])
            stats["steps"] += len(traj["steps"])
            elapsed = max(time.perf_counter() - started, 1e-9)
            progress.update(task, advance=1, rate=stats["done"] / elapsed, sps=stats["steps"] / elapsed,
                            success=stats["success"], faults=stats["faults"], malformed=stats["malformed"])

        summary = run(units, args.out, support=args.agent, command=command, on_episode=on_episode)
    elapsed = time.perf_counter() - started
    console.print(summary_table(summary, args.agent))
    console.print(f"{stats['done']} episodes, {stats['steps']} steps in {elapsed:.2f} s "
                  f"({stats['done'] / elapsed:.1f} episodes/s); appended to {args.out}", highlight=False)
    return 0


def summary_table(summary: dict[str, ScenarioSummary], agent: str) -> Table:
    table = Table(title=f"Rollout summary (support: {agent})")
    table.add_column("scenario", no_wrap=True, min_width=max((len(s) for s in summary), default=8))
    for col in ("eps", "success", "turns", "calls", "faults", "bad"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("endings", overflow="fold")
    table.caption = ("turns: mean per episode; faults: injected faults met; bad: malformed actions; "
                     "endings: done = customer ended, human = customer asked for one, "
                     "transfer = agent transferred, limit = max turns")
    total = ScenarioSummary()
    for scenario_id, s in sorted(summary.items()):
        table.add_row(*_row(scenario_id, s))
        total.episodes += s.episodes
        total.successes += s.successes
        total.steps += s.steps
        total.tool_calls += s.tool_calls
        total.faults += s.faults
        total.malformed += s.malformed
        for k, v in s.terminations.items():
            total.terminations[k] = total.terminations.get(k, 0) + v
    table.add_section()
    table.add_row(*_row("all", total), style="bold")
    return table


def _row(name: str, s: ScenarioSummary) -> list[str]:
    rate = s.successes / s.episodes if s.episodes else 0.0
    endings = " ".join(f"{SHORT_ENDING.get(k, k)}:{v}" for k, v in sorted(s.terminations.items()))
    return [name, str(s.episodes), f"{rate:.0%}", f"{s.steps / max(s.episodes, 1):.1f}",
            str(s.tool_calls), str(s.faults), str(s.malformed), endings]


SHORT_ENDING = {"customer_ended": "done", "customer_requested_human": "human",
                "transferred_to_human": "transfer", "max_turns": "limit"}
