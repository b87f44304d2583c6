"""``trajgym schema``: print the JSON Schema of a trajectory line or of a scenario file."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console


def schema_command(args: argparse.Namespace, console: Console) -> int:
    if args.which == "trajectory":
        from trajgym.trajectory.schema import Trajectory

        schema = Trajectory.model_json_schema()
    else:
        from trajgym.scenario.schema import Scenario

        schema = Scenario.model_json_schema(by_alias=True)
    sys.stdout.write(json.dumps(schema, indent=2) + "\n")
    return 0
