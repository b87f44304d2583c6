"""``trajgym show``: one episode of a trajectory file, readable in a terminal."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from trajgym.errors import TrajgymError
from trajgym.trajectory.store import episode_at, iter_episodes, read_heads

ROLE_STYLE = {"customer": "cyan", "support": "green", "supervisor": "magenta"}


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def show_command(args: argparse.Namespace, console: Console) -> int:
    return show(args.file, args.episode, args.list, console, skip_torn=args.skip_torn)


def show(path: str, episode_id: str | None, list_only: bool, console: Console, *, skip_torn: bool = False) -> int:
    """Print the episode ``episode_id`` of a trajectory file (the first when None), or list them all.
    Every line of the file is read first, so a broken line anywhere is an error naming it, not only
    one before the episode shown (``skip_torn`` leaves out a torn last line with a warning)."""
    if list_only:
        rows = list(iter_episodes(path, skip_torn=skip_torn))
        table = Table(title=path)
        table.add_column("episode", no_wrap=True, min_width=max((len(e["episode_id"]) for e in rows), default=7))
        for col in ("scenario", "seed", "trial", "policy", "steps", "faults", "ending", "success"):
            table.add_column(col, overflow="fold")
        for ep in rows:
            table.add_row(ep["episode_id"], ep["scenario_id"], str(ep["seed"]), str(ep["trial"]), ep["policy"],
                          str(len(ep["steps"])), str(len(ep["faults"])), ep["termination"],
                          "yes" if ep["outcome"]["success"] else "no")
        console.print(table)
        return 0
    at = None
    for n, head in read_heads(path, skip_torn=skip_torn):
        if at is None and (episode_id is None or head.episode_id == episode_id):
            at = n
    if at is None and episode_id is None:
        raise TrajgymError(f"no episodes in {path}: make one with `trajgym rollout`")
    if at is None:
        raise TrajgymError(f"no episode '{episode_id}' in {path} (see `trajgym show {path} --list`)")
    render(episode_at(path, at), console)
    return 0


def render(ep: dict[str, Any], console: Console) -> None:
    agents = ", ".join(f"{a['role']}={a['name']}" + (f" ({a['model']}" + (f", {a['weights_id']}" if a.get("weights_id")
                                                                           else "") + ")" if a.get("model") else "")
                       for a in ep["agents"])
    ok = ep["outcome"]["success"]
    head = (f"[bold]{ep['episode_id']}[/]  scenario [bold]{ep['scenario_id']}[/] ({ep['scenario_hash']})  "
            f"seed {ep['seed']}  trial {ep['trial']}\nagents: {agents}  policy {ep['policy']}\n"
            f"ended: {ep['termination']}  success: {'[green]yes[/]' if ok else '[red]no[/]'}  "
            f"faults injected: {len(ep['faults'])}")
    console.print(Panel(head, title="episode", expand=False))
    for step in ep["steps"]:
        style = ROLE_STYLE.get(step["role"], "white")
        prefix = Text(f"{step['turn']:>3} {step['role']:<10} ", style=f"bold {style}")
        if step["error"]:
            console.print(prefix + Text(f"malformed action: {_short(step['action'], 80)}  ({step['error']})", style="red"))
        for tc in step["tool_calls"]:
            line = prefix + Text(f"{tc['name']}({_short(tc['arguments'], 100)})", style=style)
            result = Text(f" -> {_short(tc['content'])}", style="dim" if tc["ok"] else "red")
            console.print(line + result)
            for f in tc["faults"]:
                console.print(Text(f"      fault injected: {f['kind']} (call {f['call']}, applied={f['applied']})",
                                   style="bold red"))
            for v in tc["violations"]:
                console.print(Text(f"      policy violation [{v['rule']}]: {v['message']}", style="bold yellow"))
        if step["message"]:
            console.print(prefix + Text(step["message"]))
    out = ep["outcome"]
    table = Table(title="outcome", show_header=True)
    table.add_column("check")
    table.add_column("expected")
    table.add_column("actual")
    table.add_column("ok")
    for c in out["conditions"]:
        table.add_row(f"{c['path']} {c['operator']}", _short(c["expected"], 40), _short(c["actual"], 40),
                      "✓" if c["ok"] else "✗")
    for f in out["facts"]:
        table.add_row(f"told: {f['name']}", "told", "told" if f["told"] else "not told", "✓" if f["told"] else "✗")
    table.add_row("ending", "|".join(ep["outcome"].get("allowed_endings", [])) or "allowed", ep["termination"],
                  "✓" if out["end_ok"] else "✗")
    table.add_row("policy violations", "0", str(len(out["violations"])), "✓" if not out["violations"] else "✗")
    table.add_row("forbidden calls", "0", str(len(out["forbidden"])), "✓" if not out["forbidden"] else "✗")
    console.print(table)
