"""Fuzzing the scenario loader: whatever the text, a scenario or located problems, never a crash.

Random mutations of the valid example must either load or raise ScenarioError whose problems lie
inside the text: mutations of its text (lines deleted, duplicated, swapped or re-indented, keys
renamed, values replaced, random characters or bytes inserted), which mostly break the YAML, and
mutations of its data (values replaced, keys deleted, renamed or added), which reach the schema
and the semantic checks.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trajgym.errors import ScenarioError
from trajgym.world.loader import parse

EXAMPLE = (Path(__file__).resolve().parents[2] / "scenarios" / "customer_support"
           / "refund_damaged_item.yaml").read_text()
KEY = re.compile(r"^(\s*(?:-\s+)?)([A-Za-z_][A-Za-z0-9_]*)(:)")

VALUES = st.one_of(
    st.sampled_from([
        "", "null", "~", "[]", "{}", "0", "-1", "1e999", ".nan", "99999999999999999999999", "true", "no",
        "2026-02-30", "2026-13-01", "12:30:00", "'${price}'", "${nope}", "${price.x}", "${price:%Y}",
        "${first}", "[${zip}]", "{a: 1, a: 2}", "&anchor x", "*anchor", "!!int x", "!!float y",
        "!!binary zz", "!custom tag", "[1, [2, [3", "{x: y", "'unterminated", '"\\q"', "|", ">-",
        "? complex", "- item", "outage", "customer_goal_change", "refund_order", "C9", "O7",
        "[customer, support, supervisor]", "{kind: outage}", "{kind: customer_goal_change}",
        "{date_ago: [1, 99999999999]}", "{int: [1, 99999999999999999999]}", "{choice: []}",
    ]),
    st.text(max_size=12),
    st.integers().map(str),
)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    lines = EXAMPLE.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "indent", "rename", "value", "insert",
                                     "bytes"]))
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "indent":
            lines[i] = " " * draw(st.integers(0, 8)) + lines[i].lstrip()
        elif kind == "rename" and (key := KEY.match(lines[i])):
            new = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_ 0123456789:#", min_size=1, max_size=10))
            lines[i] = key.group(1) + new + lines[i][key.end(2):]
        elif kind == "value" and ": " in lines[i]:
            key, _, _old = lines[i].partition(": ")
            lines[i] = f"{key}: {draw(VALUES)}"
        elif kind == "insert":
            col = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:col] + draw(st.text(max_size=6)) + lines[i][col:]
        elif kind == "bytes":
            col = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:col] + draw(st.binary(min_size=1, max_size=6)).decode("latin-1") + lines[i][col:]
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n"]))


def check(text: str) -> None:
    try:
        parse(text, "fuzz.yaml")
    except ScenarioError as exc:
        assert exc.problems
        last = max(1, len(text.splitlines()))
        for problem in exc.problems:
            assert problem.file == "fuzz.yaml"
            assert 1 <= problem.line <= last, (problem, last)
            assert problem.col >= 1, problem
            assert problem.message.strip(), problem


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_texts_load_or_give_located_problems(text: str) -> None:
    check(text)


DATA = yaml.safe_load(EXAMPLE)
NAMES = ["kind", "tool", "turns", "nth_call", "probability", "path", "equals", "in", "exists", "count",
         "say", "call", "args", "choice", "int", "value", "keywords", "says", "faults", "policy", "rules",
         "supervisor", "catalog", "tickets", "approvals", "tools", "x"]
LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(), st.text(max_size=8),
    st.sampled_from(["${price}", "${nope}", "${price.x}", "${price:%Y}", "${first}", "C9", "O7", "outage",
                     "customer_goal_change", "refund_order", "supervisor", "*", "orders.O1.status", "orders",
                     "outbox.0", "today", dt.date(2026, 1, 1)]),
    st.just([]), st.just({}), st.lists(st.integers(-3, 10**12), max_size=3),
    st.dictionaries(st.sampled_from(NAMES), st.one_of(st.none(), st.integers(-2, 5), st.text(max_size=4),
                                                      st.lists(st.integers(-1, 5), max_size=3)), max_size=3),
)


def _paths(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if path:
        yield path
    children = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for key, value in children:
        yield from _paths(value, (*path, key))


@st.composite
def mutated_data(draw: st.DrawFn) -> str:
    data = copy.deepcopy(DATA)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(data))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        kind = draw(st.sampled_from(["set", "delete", "rename", "add"]))
        if kind == "set":
            parent[path[-1]] = draw(LEAVES)
        elif kind == "delete":
            del parent[path[-1]]
        elif kind == "rename" and isinstance(parent, dict):
            parent[draw(st.one_of(st.sampled_from(NAMES), st.text(max_size=6), st.integers(0, 3)))] = parent.pop(path[-1])
        elif kind == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(NAMES))] = draw(LEAVES)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_data())
def test_mutated_data_loads_or_gives_located_problems(text: str) -> None:
    check(text)


@pytest.mark.parametrize("text", [
    "", "\n", "# only a comment\n", "---\n", "...\n", "- a\n- b\n", "just text\n", "42\n", "a: &a [*a]\n",
    "a: &a\n  b: *a\n", "? [a]\n: b\n", "a: [b\n", "a: 'b\n", "\x00", "\ufeffschema_version: 1\n",
    "a: 1\n---\nb: 2\n", "schema_version: 1\nschema_version: 1\n", "schema_version: [1]\n",
    "schema_version: true\n", "schema_version: 1.0\n", "schema_version: 1\nid: x\n",
    "[" * 2000, "{a: " * 300 + "}" * 300,
    "x: &a [0, 0]\n" + "".join(f"x{i}: &a{i} [*{'a' if i == 0 else f'a{i - 1}'}, *{'a' if i == 0 else f'a{i - 1}'}]\n"
                               for i in range(40)),
])
def test_odd_texts_give_located_problems(text: str) -> None:
    check(text)


def test_a_key_of_digits_that_are_not_ascii_is_located() -> None:
    """'²'.isdigit() is true but int('²') fails: once found by the fuzzer, in the error's position lookup."""
    data = yaml.safe_load(EXAMPLE)
    data["world"]["customers"]["²"] = {"name": 1}
    data["variables"]["²"] = {"pool": "nope"}
    check(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def test_the_example_itself_loads() -> None:
    assert parse(EXAMPLE, "example.yaml").id == "refund_damaged_item"
