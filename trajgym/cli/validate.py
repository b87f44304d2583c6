"""``trajgym validate``: every problem of every file, as ``file:line:col: message``."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from trajgym.errors import Problem, ScenarioError, TrajgymError
from trajgym.scenario.catalog import scenario_files
from trajgym.scenario.loader import load


def check_file(path: Path) -> tuple[str | None, list[Problem]]:
    """(scenario id, problems) of one file. Never raises."""
    try:
        template = load(path)
    except ScenarioError as exc:
        return None, exc.problems
    except TrajgymError as exc:
        return None, [Problem(str(path), 1, 1, str(exc))]
    except Exception as exc:  # whatever the input, no traceback: report it located at the file
        return None, [Problem(str(path), 1, 1, f"internal error while validating ({type(exc).__name__}: {exc}); "
                                               "please report it with this file")]
    return template.id, []


def validate(paths: list[str], console: Console) -> int:
    problems: list[Problem] = []
    try:
        files = scenario_files(paths)
    except TrajgymError as exc:
        console.print(f"{exc}", highlight=False, markup=False)
        return 1
    if not files:
        console.print(f"no scenario files (*.yaml) under {' '.join(paths)}", highlight=False)
        return 1
    ids: dict[str, Path] = {}
    good = 0
    for path in files:
        scenario_id, found = check_file(path)
        problems += found
        if scenario_id is not None:
            good += 1
            if scenario_id in ids:
                problems.append(Problem(str(path), 1, 1, f"scenario id '{scenario_id}' is also used by {ids[scenario_id]}"))
            ids[scenario_id] = path
    for problem in problems:
        console.print(str(problem), highlight=False, markup=False, soft_wrap=True)
    if problems:
        console.print(f"{len(problems)} problem(s) in {len(files) - good if good < len(files) else 1} of {len(files)} file(s)",
                      style="red", highlight=False)
        return 1
    console.print(f"ok: {len(files)} scenario file(s) valid", style="green", highlight=False)
    return 0
