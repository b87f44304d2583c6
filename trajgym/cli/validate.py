"""``trajgym validate``: every problem of every file, as ``file:line:col: message``."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from trajgym.errors import Problem, ScenarioError, TrajgymError
from trajgym.scenario.catalog import scenario_files
from trajgym.world.loader import ScenarioTemplate, load


def check_file(path: Path) -> tuple[ScenarioTemplate | None, list[Problem]]:
    """(the scenario, or None if broken; its problems) of one file. Never raises."""
    try:
        template = load(path)
    except ScenarioError as exc:
        return None, exc.problems
    except TrajgymError as exc:
        return None, [Problem(str(path), 1, 1, str(exc))]
    except Exception as exc:  # whatever the input, no traceback: report it located at the file
        return None, [Problem(str(path), 1, 1, f"internal error while validating ({type(exc).__name__}: {exc}); "
                                               "please report it with this file")]
    return template, []


def _expand(paths: list[str]) -> tuple[list[Path], list[str]]:
    """The scenario files named by ``paths``, and a message for each path that names none."""
    files: list[Path] = []
    errors: list[str] = []
    for ref in paths:
        try:
            found = scenario_files([ref])
        except TrajgymError as exc:
            errors.append(str(exc))
            continue
        except (OSError, ValueError) as exc:
            errors.append(f"cannot read '{ref}': {exc}")
            continue
        if not found:
            errors.append(f"no scenario files (*.yaml, *.yml) under '{ref}'")
        files += [f for f in found if f not in files]
    return files, errors


def _printable(text: str, console: Console) -> str:
    """``text`` with what the terminal cannot encode escaped (a file may hold any character)."""
    encoding = getattr(console.file, "encoding", None) or "utf-8"
    try:
        return text.encode(encoding, errors="backslashreplace").decode(encoding)
    except LookupError:
        return text


def validate_command(args: argparse.Namespace, console: Console) -> int:
    return validate(args.paths, console)


def validate(paths: list[str], console: Console) -> int:
    files, errors = _expand(paths)
    for message in errors:
        console.print(_printable(f"error: {message}", console), highlight=False, markup=False, soft_wrap=True)
    problems: list[Problem] = []
    ids: dict[str, Path] = {}
    for path in files:
        template, found = check_file(path)
        problems += found
        if template is not None:
            if template.id in ids:
                line, col = template.located.position(("id",))
                problems.append(Problem(str(path), line, col,
                                        f"scenario id '{template.id}' is also used by {ids[template.id]}; "
                                        "ids must be unique"))
            ids.setdefault(template.id, path)
    for problem in problems:
        console.print(_printable(str(problem), console), highlight=False, markup=False, soft_wrap=True)
    if problems:
        broken = len({p.file for p in problems})
        console.print(f"{len(problems)} problem(s) in {broken} of {len(files)} file(s)",
                      style="red", highlight=False)
        return 1
    if errors:
        return 1
    console.print(f"ok: {len(files)} scenario file(s) valid", style="green", highlight=False)
    return 0
