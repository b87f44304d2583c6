"""Config files in YAML (jobs, scorer configs, filter chains): loaded with positions, validated by a
pydantic model, every problem reported as ``file:line:col: message``."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from trajgym.errors import ConfigFileError, Problem, ScenarioError, TrajgymError
from trajgym.scenario import diagnostics as diag
from trajgym.scenario.yamlfile import EMPTY, LocatedData, load_located

M = TypeVar("M", bound=BaseModel)


def load_config(path: str | Path, model: type[M], *, what: str, example: str,
                error: type[ConfigFileError] = ConfigFileError) -> tuple[M, LocatedData]:
    """Read the YAML file ``path`` and validate it with ``model``.

    ``what`` names the file in messages ("job file"), ``example`` shows the keys a valid one starts
    with ("scenarios: ..., output: ..."). Raises ``error`` (a :class:`ConfigFileError`) with located
    problems, or :class:`TrajgymError` when the file cannot be read.
    """
    p = Path(path)
    filename = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrajgymError(f"cannot read {what} {p}: {getattr(exc, 'strerror', None) or exc}") from None
    empty = f"the {what} is empty; write a YAML mapping ({example})"
    try:
        located = load_located(text, filename)
    except ScenarioError as exc:  # what load_located raises, config file or not
        raise error([Problem(q.file, q.line, q.col, empty if q.message == EMPTY else q.message)
                     for q in exc.problems]) from None
    if not isinstance(located.data, dict):
        raise error([located.problem((), f"a {what} is a YAML mapping of keys to values ({example}), "
                                         f"but this file holds {diag.shown(located.data)}")])
    try:
        return model.model_validate(located.data), located
    except ValidationError as exc:
        raise error(diag.problems(exc, located, diag.Frame(model))) from None
