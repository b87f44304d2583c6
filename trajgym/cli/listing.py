"""``trajgym list``: registered envs and built-in scenarios."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from trajgym.envs.registration import ENVS
from trajgym.errors import TrajgymError
from trajgym.scenario.catalog import builtin_scenarios
from trajgym.world.loader import load


def list_command(args: argparse.Namespace, console: Console) -> int:
    return list_all(args.what, console)


def list_all(what: str, console: Console) -> int:
    if what in ("envs", "all"):
        table = Table(title="Environments")
        table.add_column("Gymnasium id")
        table.add_column("PettingZoo module")
        table.add_column("default scenario")
        for env_id, (_entry, kwargs, module) in ENVS.items():
            table.add_row(env_id, module, str(kwargs.get("scenario")))
        console.print(table)
    if what in ("scenarios", "all"):
        table = Table(title="Built-in scenarios")
        for col in ("id", "domain", "roles", "tags", "faults", "description"):
            table.add_column(col, overflow="fold")
        for scenario_id, path in builtin_scenarios().items():
            try:
                spec = load(path).spec
            except TrajgymError as exc:
                table.add_row(scenario_id, "?", "", "", "", f"[red]invalid: {str(exc).splitlines()[0]}[/]")
                continue
            table.add_row(spec.id, spec.domain, ",".join(spec.roles), ",".join(spec.tags),
                          str(len(spec.faults)), " ".join(spec.description.split())[:90])
        console.print(table)
    return 0
