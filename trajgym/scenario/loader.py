"""Read scenario files on their own: YAML -> located data -> a :class:`Scenario` checked without
its domain.

This is the scenario language alone: the schema, the ``${...}`` templates and their variables.
What needs the domain a file names (its tools, its state model, building a seeded instance) is
checked one layer up, in :mod:`trajgym.world.loader`, whose ``load`` is the entry point. Every
problem in a file is reported as ``file:line:col: message`` through
:class:`~trajgym.errors.ScenarioError`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from trajgym.errors import Problem, ScenarioError
from trajgym.scenario import diagnostics as diag
from trajgym.scenario import variables as tvars
from trajgym.scenario.schema import SCHEMA_VERSION, Checkpoint, GoalChange, RefAction, Scenario
from trajgym.scenario.yamlfile import EMPTY, LocatedData, load_located
from trajgym.seeding import Draws

CHECK_SEEDS = (0, 1, 2, 3)
"""The seeds a file is instantiated with to check it: a problem that shows with one is reported."""


# ---------------------------------------------------------------------------------------------
# entry points


def read_spec(text: str, filename: str) -> tuple[LocatedData, Scenario]:
    """Read scenario ``text`` (named ``filename`` in messages) and validate it against the schema,
    without its domain. Raises ScenarioError."""
    located = load_located(text, filename)
    data = located.data
    if data is None:
        raise ScenarioError([Problem(filename, 1, 1, EMPTY)])
    if not isinstance(data, dict):
        raise ScenarioError([located.problem((), f"a scenario is a YAML mapping of keys to values "
                                                 f"(schema_version: {SCHEMA_VERSION}, id: ...), "
                                                 f"but this file holds {diag.shown(data)}")])
    version = data.get("schema_version")
    if "schema_version" not in data:
        raise ScenarioError([located.problem((), "missing required key 'schema_version' in the top level; "
                                                 f"write schema_version: {SCHEMA_VERSION} as the first line")])
    if type(version) is not int or version != SCHEMA_VERSION:
        raise ScenarioError([located.problem(("schema_version",),
                                             f"schema_version {diag.shown(version)} is not supported; this trajgym "
                                             f"reads version {SCHEMA_VERSION} (write schema_version: "
                                             f"{SCHEMA_VERSION})")])
    try:
        spec = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(diag.problems(exc, located, diag.Frame(Scenario))) from None
    return located, spec


def content_hash(data: Any) -> str:
    """A short digest of a scenario file's data, the same whatever its key order or layout."""
    canonical = json.dumps(_text_keys(data), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _text_keys(data: Any) -> Any:
    """``data`` with every mapping key as text, so that it can be dumped with sorted keys."""
    if isinstance(data, dict):
        return {str(k): _text_keys(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_text_keys(v) for v in data]
    return data


def _decode(raw: bytes, shown: str) -> str:
    """``raw`` as UTF-8 text; a ScenarioError located at the first byte that is not."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        start_of_line = raw.rfind(b"\n", 0, exc.start) + 1
        col = len(raw[start_of_line:exc.start].decode("utf-8", errors="replace")) + 1
        raise ScenarioError([Problem(shown, line, col,
                                     f"the file is not UTF-8 text: byte 0x{raw[exc.start]:02x} cannot start or "
                                     "continue a character; save the file as UTF-8")]) from None


def read_text(path: Path, shown: str) -> str:
    """The text of the scenario file ``path`` (named ``shown`` in messages). Raises ScenarioError."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ScenarioError([Problem(shown, 1, 1, f"cannot read file: {exc.strerror}")]) from None
    return _decode(raw, shown)


# ---------------------------------------------------------------------------------------------
# checks and walks that need no domain


def template_problems(raw: dict[str, Any], spec: Scenario, located: LocatedData) -> list[Problem]:
    """Every ``${...}`` names a defined variable and a field it has, and can be filled in."""
    problems = [located.problem(p, m, key=k) for p, m, k in tvars.check_defined(spec, raw)]
    problems += [located.problem(p, m, key=k) for p, m, k in tvars.check_fields(spec, raw)]
    if problems:
        return problems
    refs = sorted({(path, in_key) for path, _name, _field, in_key in tvars.template_references(raw)}, key=str)
    seen: set[tuple[tuple[int, int], str]] = set()
    for seed in CHECK_SEEDS:
        try:
            values = tvars.draw(spec.variables, spec.today, Draws(seed, "variables"))
        except tvars.DrawError as exc:
            return [located.problem(("variables", exc.name), str(exc))]
        for path, in_key in refs:
            try:
                if in_key:
                    tvars.fill_key(path[-1], values)
                else:
                    tvars.fill(_at(raw, path), values)
            except tvars.TemplateError as exc:
                problem = located.problem(path, str(exc), key=in_key)
                if ((problem.line, problem.col), problem.message) not in seen:
                    seen.add(((problem.line, problem.col), problem.message))
                    problems.append(problem)
        if problems:
            break
    return problems


def _at(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def checkpoints(spec: Scenario) -> Iterator[tuple[tuple[str | int, ...], list[Checkpoint]]]:
    """Every list of milestones and minefields of a scenario, with its path in the file."""
    yield ("milestones",), list(spec.milestones)
    yield ("minefields",), list(spec.minefields)
    for i, fault in enumerate(spec.faults):
        if isinstance(fault, GoalChange):
            yield ("faults", i, "milestones"), list(fault.milestones or [])
            yield ("faults", i, "minefields"), list(fault.minefields)


def reference_actions(actions: list[RefAction], base: tuple[str | int, ...]
                      ) -> Iterator[tuple[tuple[str | int, ...], RefAction]]:
    """Every action of a reference list with its path, the actions of fallbacks included."""
    for i, action in enumerate(actions):
        yield (*base, i), action
        if action.fallback:
            yield from reference_actions(action.fallback, (*base, i, "fallback"))
