"""Scenario variables: drawn from the episode seed, substituted into ``${name}`` templates.

A string that is exactly one reference (``"${amount}"``) takes the variable's typed value; a
reference inside a longer string is formatted in place, with an optional format spec
(``"${amount:.2f}"``). ``${var.field}`` reads a field of a mapping drawn by ``choice``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from trajgym.scenario.schema import Scenario, VariableSpec

REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z0-9_]+)*)(?::([^}]*))?\}")
BUILTINS = ("today",)

POOLS: dict[str, tuple[str, ...]] = {
    "first_name": ("Ana", "Ben", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines",
                   "Jamal", "Kofi", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa",
                   "Sven", "Tomas", "Uma", "Victor", "Wen", "Yara", "Zoe"),
    "last_name": ("Smith", "Garcia", "Nguyen", "Okafor", "Muller", "Rossi", "Kowalski", "Tanaka",
                  "Haddad", "Silva", "Novak", "Dubois", "Patel", "Jensen", "Moreau", "Costa"),
    "city": ("Austin", "Lyon", "Porto", "Leeds", "Osaka", "Denver", "Graz", "Tampere", "Cork",
             "Bergen", "Turin", "Quebec"),
    "street": ("Maple Ave", "Harbor Rd", "Elm St", "Mill Lane", "Station Rd", "Oak Blvd",
               "River St", "Hill Crescent", "Market St", "Cedar Way"),
    "product": ("desk lamp", "rain jacket", "coffee grinder", "yoga mat", "headphones",
                "backpack", "kettle", "desk chair", "running shoes", "blender"),
    "color": ("black", "navy", "red", "green", "grey", "white"),
    "size": ("XS", "S", "M", "L", "XL"),
}


def draw(specs: dict[str, VariableSpec], today: dt.date, rng: np.random.Generator) -> dict[str, Any]:
    """Draw every variable, in declaration order, from ``rng``."""
    values: dict[str, Any] = {"today": today.isoformat()}
    for name, spec in specs.items():
        values[name] = _draw_one(spec, today, rng)
    return values


def _draw_one(spec: VariableSpec, today: dt.date, rng: np.random.Generator) -> Any:
    if spec.choice is not None:
        return spec.choice[int(rng.integers(len(spec.choice)))]
    if spec.int_range is not None:
        return int(rng.integers(spec.int_range[0], spec.int_range[1] + 1))
    if spec.float_range is not None:
        return round(float(rng.uniform(*spec.float_range)), 2)
    if spec.date_ago is not None:
        days = int(rng.integers(spec.date_ago[0], spec.date_ago[1] + 1))
        return (today - dt.timedelta(days=days)).isoformat()
    if spec.date_ahead is not None:
        days = int(rng.integers(spec.date_ahead[0], spec.date_ahead[1] + 1))
        return (today + dt.timedelta(days=days)).isoformat()
    if spec.pool is not None:
        pool = POOLS[spec.pool]
        return pool[int(rng.integers(len(pool)))]
    if spec.pattern is not None:
        out = []
        for ch in spec.pattern:
            if ch == "#":
                out.append(str(int(rng.integers(10))))
            elif ch == "?":
                out.append(chr(ord("A") + int(rng.integers(26))))
            else:
                out.append(ch)
        return "".join(out)
    return spec.value


class TemplateError(ValueError):
    """A reference that cannot be filled in (unknown variable, missing field, bad format)."""


def _lookup(values: dict[str, Any], name: str, fields: str) -> Any:
    if name not in values:
        raise TemplateError(f"variable '{name}' is never defined (add it under 'variables')")
    value = values[name]
    for part in fields.split(".")[1:]:
        if not isinstance(value, dict) or part not in value:
            raise TemplateError(f"variable '{name}' has no field '{part}'")
        value = value[part]
    return value


def fill(obj: Any, values: dict[str, Any]) -> Any:
    """Return a copy of ``obj`` with every ``${...}`` reference replaced."""
    if isinstance(obj, str):
        if "${" not in obj:
            return obj
        whole = REF.fullmatch(obj)
        if whole and whole.group(3) is None:
            return _lookup(values, whole.group(1), whole.group(2))

        def repl(m: re.Match[str]) -> str:
            value = _lookup(values, m.group(1), m.group(2))
            try:
                return format(value, m.group(3) or "")
            except (ValueError, TypeError) as exc:
                raise TemplateError(f"cannot format '{m.group(0)}': {exc}") from None

        return REF.sub(repl, obj)
    if isinstance(obj, dict):
        return {fill(k, values): fill(v, values) for k, v in obj.items()}
    if isinstance(obj, list):
        return [fill(v, values) for v in obj]
    return obj


def references(obj: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str, str]]:
    """Yield (path, variable name, field suffix) for every reference in ``obj``."""
    if isinstance(obj, str):
        for m in REF.finditer(obj):
            yield path, m.group(1), m.group(2)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from references(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from references(v, (*path, i))


def check_defined(scenario: Scenario, raw: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """Every reference names a defined variable (or a built-in such as ``today``)."""
    known = set(scenario.variables) | set(BUILTINS)
    problems = []
    for path, name, _ in references({k: v for k, v in raw.items() if k != "variables"}):
        if name not in known:
            hint = _suggest(name, known)
            problems.append((path, f"variable '{name}' is never defined{hint}; "
                                   "define it under 'variables'"))
    return problems


def _suggest(name: str, known: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
