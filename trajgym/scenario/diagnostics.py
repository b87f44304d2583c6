"""Pydantic validation errors -> located, readable problems.

A pydantic error knows *where* in the data it happened (``loc``) but says it in pydantic's words.
This module finds the model behind each location, so that an unknown key is named with the keys
allowed there (and the closest one suggested), a missing key that was merely misspelt is reported
once, union tags disappear from the path, and every message says what to write instead.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from trajgym.errors import Problem
from trajgym.registry import suggest
from trajgym.scenario.schema import ID_PATTERN
from trajgym.scenario.yamlfile import LocatedData

Loc = tuple[Any, ...]

KEY_MARK = "[key]"
"""pydantic's last ``loc`` segment for an error in a mapping's key rather than its value."""

PATTERN_HELP = {
    ID_PATTERN: "use only lower-case letters, digits, '_', '.' and '-', starting with a letter or a digit",
}


@dataclass(frozen=True)
class Frame:
    """What was validated: the ``root`` model, found at ``prefix`` in the file.

    ``label`` names the data in messages (default: its path); ``noun`` is what its keys are called.
    """

    root: type[BaseModel]
    prefix: Loc = ()
    label: str = ""
    noun: str = "key"

    def where(self, parent: Loc) -> str:
        """The mapping that holds a key at ``parent``, for 'unknown key ... in WHERE'."""
        if self.label:
            return f"{dotted(parent)} of {self.label}" if parent else self.label
        return dotted((*self.prefix, *parent)) or "the top level"

    def name(self, loc: Loc) -> str:
        """A value at ``loc``, for 'NAME should be ...'."""
        if self.label:
            return f"{self.noun} '{dotted(loc)}' of {self.label}" if loc else self.label
        return dotted((*self.prefix, *loc)) or "the scenario"


def dotted(loc: Sequence[Any]) -> str:
    """``('faults', 0, 'kind')`` -> ``faults[0].kind``."""
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# ---------------------------------------------------------------------------------------------
# finding the model behind a location


def _unwrap(ann: Any) -> Any:
    """Strip ``Annotated`` and ``Optional``."""
    while True:
        origin = get_origin(ann)
        if origin is Annotated:
            ann = get_args(ann)[0]
            continue
        if origin in (Union, types.UnionType):
            members = [a for a in get_args(ann) if a is not type(None)]
            if len(members) == 1:
                ann = members[0]
                continue
        return ann


def _is_model(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def _label(ann: Any) -> str:
    """How pydantic names a union member in ``loc`` (``int``, ``list[int]``)."""
    origin = get_origin(ann)
    if origin is None:
        return getattr(ann, "__name__", str(ann))
    return f"{getattr(origin, '__name__', origin)}[{', '.join(_label(a) for a in get_args(ann))}]"


def _literals(model: type[BaseModel]) -> list[str]:
    out: list[str] = []
    for info in model.model_fields.values():
        if get_origin(info.annotation) is Literal:
            out += [str(v) for v in get_args(info.annotation)]
    return out


def _member(union: Any, tag: str) -> Any:
    """The member of ``union`` that pydantic tagged ``tag`` in a location, or None."""
    for member in get_args(union):
        m = _unwrap(member)
        if _label(m) == tag or (_is_model(m) and tag in _literals(m)):
            return m
    return None


def _step(ann: Any, part: Any) -> Any:
    """The annotation one ``loc`` segment below ``ann``, or None when unknown."""
    if _is_model(ann):
        for name, info in ann.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
        return None
    origin, args = get_origin(ann), get_args(ann)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin in (list, set, frozenset) and args:
        return args[0]
    if origin is tuple and isinstance(part, int):
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        return args[part] if 0 <= part < len(args) else None
    return None


@dataclass
class _Resolved:
    clean: Loc
    """The location as written in the file: union tags and key marks removed."""
    ann: Any
    """The annotation of the value at the location (None when unknown)."""
    in_key: bool = False


def resolve(root: type[BaseModel], loc: Sequence[Any]) -> _Resolved:
    ann: Any = root
    clean: list[Any] = []
    in_key = False
    for part in loc:
        ann = _unwrap(ann)
        if part == KEY_MARK:
            in_key = True
            ann = get_args(ann)[0] if get_origin(ann) is dict else None
        elif get_origin(ann) in (Union, types.UnionType) and isinstance(part, str):
            ann = _member(ann, part)
        else:
            clean.append(part)
            ann = _step(ann, part) if ann is not None else None
    return _Resolved(tuple(clean), _unwrap(ann) if ann is not None else None, in_key)


def _keys_of(ann: Any) -> list[str]:
    if not _is_model(ann):
        return []
    return [info.alias or name for name, info in ann.model_fields.items()]


# ---------------------------------------------------------------------------------------------
# messages


def shown(value: Any) -> str:
    """A short description of a value from the file, for '(got ...)'."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        text = json.dumps(value)
        return text if len(text) <= 60 else text[:57] + '..."'
    return str(value)[:60]


def _expected(ctx: dict[str, Any] | None, key: str) -> list[str]:
    return re.findall(r"'([^']*)'", str((ctx or {}).get(key, "")))


def _value_message(err: ErrorDetails, what: str) -> str:
    """The message of an error about a value (not a missing or unknown key)."""
    kind, msg, got = err["type"], err["msg"], err.get("input")
    ctx = err.get("ctx")
    if kind in ("value_error", "assertion_error"):
        msg = msg.split(", ", 1)[1] if msg.startswith(("Value error, ", "Assertion failed, ")) else msg
        return f"{what}: {msg}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{what} should be a mapping of keys to values, not {shown(got)}"
    if kind in ("list_type", "tuple_type", "set_type"):
        return f"{what} should be a list, not {shown(got)}"
    if kind in ("literal_error", "enum"):
        options = _expected(ctx, "expected")
        close = suggest(str(got), options) if isinstance(got, str) else None
        hint = f"; did you mean '{close}'?" if close else ""
        return f"{what} should be one of {', '.join(repr(o) for o in options)}, not {shown(got)}{hint}"
    if kind in ("too_short", "too_long"):
        bound = (ctx or {}).get("min_length" if kind == "too_short" else "max_length")
        most = "at least" if kind == "too_short" else "at most"
        return f"{what} should have {most} {bound} item(s), not {len(got) if hasattr(got, '__len__') else got}"
    if kind == "string_pattern_mismatch":
        pattern = str((ctx or {}).get("pattern", ""))
        if pattern in PATTERN_HELP:
            example = re.sub(r"[^a-z0-9_.\-]+", "_", str(got).lower()).strip("_.-")
            hint = f", e.g. '{example}'" if example and re.fullmatch(pattern, example) else ""
            return f"{what} {shown(got)} is not valid: {PATTERN_HELP[pattern]}{hint}"
    if msg.startswith("Input should be "):
        return f"{what} should be {msg[len('Input should be '):]} (got {shown(got)})"
    return f"{what}: {msg} (got {shown(got)})"


def problems(exc: ValidationError, located: LocatedData, frame: Frame) -> list[Problem]:
    """Every error of ``exc`` as a located problem; ``frame`` says what was validated."""
    errors = exc.errors(include_url=False)
    resolved = [resolve(frame.root, err["loc"]) for err in errors]
    missing: dict[Loc, set[str]] = {}
    for err, res in zip(errors, resolved, strict=True):
        if err["type"] == "missing" and res.clean:
            missing.setdefault(res.clean[:-1], set()).add(str(res.clean[-1]))
    renamed: set[tuple[Loc, str]] = set()
    out: list[Problem] = []
    merged: dict[Loc, int] = {}
    for err, res in zip(errors, resolved, strict=True):
        where = (*frame.prefix, *res.clean)
        kind = err["type"]
        if kind == "extra_forbidden" and res.clean:
            parent, key = res.clean[:-1], str(res.clean[-1])
            allowed = _keys_of(resolve(frame.root, parent).ann)
            close = suggest(key, allowed)
            if close is not None and close in missing.get(parent, set()):
                renamed.add((parent, close))
            hint = (f"; did you mean '{close}'?" if close else
                    f" (allowed: {', '.join(allowed)})" if allowed else "; remove it")
            out.append(located.problem(where, f"unknown {frame.noun} '{key}' in {frame.where(parent)}{hint}",
                                       key=True))
        elif kind == "missing" and res.clean:
            continue  # reported below, unless an unknown key was the same one misspelt
        elif kind == "invalid_key" and res.clean:
            key = res.clean[-1]
            quoted = f": '{key}'" if isinstance(key, int | float) and not isinstance(key, bool) else ""
            out.append(located.problem(where, f"{frame.noun} {shown(key)} in {frame.where(res.clean[:-1])} "
                                              f"should be text; write it in quotes{quoted}", key=True))
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            out.append(_tag_problem(err, res, located, frame))
        else:
            what = frame.name(res.clean)
            if res.in_key:
                what = f"{frame.noun} '{res.clean[-1]}' in {frame.where(res.clean[:-1])}"
            message = _value_message(err, what)
            if where in merged:  # the same value failed every member of a union
                index = merged[where]
                first = out[index]
                out[index] = Problem(first.file, first.line, first.col, f"{first.message}; or {message}")
                continue
            merged[where] = len(out)
            out.append(located.problem(where, message, key=res.in_key))
    for parent, names in missing.items():
        for name in sorted(names):
            if (parent, name) not in renamed:
                out.append(located.problem((*frame.prefix, *parent),
                                           f"missing required {frame.noun} '{name}' in {frame.where(parent)}"))
    return out


def _tag_problem(err: ErrorDetails, res: _Resolved, located: LocatedData, frame: Frame) -> Problem:
    ctx = err.get("ctx") or {}
    key = str(ctx.get("discriminator", "kind")).strip("'")
    options = _expected(ctx, "expected_tags") or _tags_of(res.ann)
    listed = ", ".join(repr(o) for o in options)
    if err["type"] == "union_tag_not_found":
        return located.problem((*frame.prefix, *res.clean),
                               f"missing required {frame.noun} '{key}' in {frame.where(res.clean)}; "
                               f"it is one of {listed}")
    tag = str(ctx.get("tag", ""))
    close = suggest(tag, options)
    hint = f"; did you mean '{close}'?" if close else ""
    return located.problem((*frame.prefix, *res.clean, key),
                           f"{frame.name((*res.clean, key))}: unknown {key} '{tag}'{hint} "
                           f"(one of {listed})")


def _tags_of(union: Any) -> list[str]:
    out: list[str] = []
    for member in get_args(union):
        m = _unwrap(member)
        if _is_model(m):
            out += _literals(m)
    return out
