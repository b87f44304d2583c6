"""The subcommand table: one row per subcommand, each runner a lazy "module:function" that exists."""

from __future__ import annotations

import argparse
import subprocess
import sys

from trajgym.cli.main import COMMANDS, _parser
from trajgym.registry import resolve


def test_every_subcommand_has_one_row_in_help_order() -> None:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == [command.name for command in COMMANDS]
    for command in COMMANDS:
        assert callable(resolve(command.run)), command


def test_the_runners_are_imported_only_when_their_command_runs() -> None:
    code = ("import sys; from trajgym.cli.main import main; "
            "assert 'trajgym.cli.validate' not in sys.modules and 'trajgym.cli.rollout' not in sys.modules; "
            "main(['schema', 'scenario']); "
            "assert 'trajgym.cli.schema' in sys.modules and 'trajgym.cli.rollout' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
