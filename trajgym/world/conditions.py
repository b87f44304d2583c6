"""Goal conditions evaluated on a world state dumped to plain data."""

from __future__ import annotations

from typing import Any

from trajgym.scenario.schema import Condition

MISSING: Any = object()


def resolve(data: Any, path: str) -> Any:
    """Follow a dotted path through mappings and lists; :data:`MISSING` if it leads nowhere."""
    node = data
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING
    return node


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    return float(value) if isinstance(value, int | float) else None


def evaluate(cond: Condition, data: Any) -> tuple[bool, Any]:
    """Return (holds, the value found at the path)."""
    value = resolve(data, cond.path)
    op = cond.operator
    found = None if value is MISSING else value
    if op == "exists":
        return (value is not MISSING) == cond.exists, found
    if value is MISSING:
        return False, None
    if op == "equals":
        a, b = _num(value), _num(cond.equals)
        ok = abs(a - b) < 0.005 if a is not None and b is not None else value == cond.equals
        return ok, value
    if op == "not_equals":
        return value != cond.not_equals, value
    if op == "one_of":
        return value in (cond.one_of or []), value
    if op in ("gte", "lte"):
        num = _num(value)
        bound = cond.gte if op == "gte" else cond.lte
        if num is None or bound is None:
            return False, value
        return (num >= bound - 0.005 if op == "gte" else num <= bound + 0.005), value
    if op == "contains":
        return isinstance(value, list | str | dict) and cond.contains in value, value
    if op == "count":
        return isinstance(value, list | dict) and len(value) == cond.count, value
    raise AssertionError(f"unhandled operator {op}")
